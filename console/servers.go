package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
)

// serverList is a page of the inventory. Each record carries its last task (the newest the
// service keeps, a succeeded one included: inventory.md), which the page shows as it is.
type serverList struct {
	Servers []client.Server
	offsetPager
}

// servers is the inventory, a page at a time (limit/offset, inventory.md).
func (c *Console) servers(w http.ResponseWriter, r *http.Request, s *session) error {
	limit := intParam(r, "limit", 50, 1, 1000)
	offset := intParam(r, "offset", 0, 0, 1<<31-1)
	pg, err := s.api.ListServers(r.Context(), limit, offset)
	if err != nil {
		return err
	}
	d := serverList{Servers: pg.Servers,
		offsetPager: newOffsetPager(Prefix+"servers", "servers", nil, pg.Total, len(pg.Servers), limit, offset)}
	c.render(w, r, s, http.StatusOK, "servers", &page{Title: "Servers", Section: "servers", Data: d})
	return nil
}

// serverForm is the add or edit form of a server, with what was typed (never a secret).
type serverForm struct {
	New                                                 bool
	ID, Name, Address, Port, User, HostKeys, SSHDConfig string
	Server                                              *client.Server      // the record, when editing
	Drift                                               *client.DriftResult // the last drift check's finding
	Error                                               string
}

func formOf(srv *client.Server) serverForm {
	return serverForm{ID: srv.ID, Name: srv.Name, Address: srv.Address, Port: strconv.Itoa(srv.Port), User: srv.User,
		HostKeys: strings.Join(srv.HostKeys, "\n"), SSHDConfig: srv.SSHDConfig, Server: srv}
}

func (c *Console) newServerForm(w http.ResponseWriter, r *http.Request, s *session) error {
	d := serverForm{New: true, Port: "22", User: "root"}
	c.render(w, r, s, http.StatusOK, "server", &page{Title: "Add a server", Section: "servers", Data: d})
	return nil
}

// server shows one server: its record, binding and last task, as a form for those who may
// change it.
func (c *Console) server(w http.ResponseWriter, r *http.Request, s *session) error {
	srv, err := s.api.Server(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	d := formOf(srv)
	if len(srv.Drift) > 0 && string(srv.Drift) != "null" {
		var dr client.DriftResult
		if json.Unmarshal(srv.Drift, &dr) == nil {
			d.Drift = &dr
		}
	}
	c.render(w, r, s, http.StatusOK, "server", &page{Title: "Server " + srv.ID, Section: "servers", Data: d})
	return nil
}

// hostKeyLines reads pinned host keys from a text area: key lines ("ssh-ed25519 AAAA…"), or
// ssh-keyscan and known_hosts lines, whose first field names the host. The API checks each key.
func hostKeyLines(text string) []string {
	out := []string{}
	for _, line := range strings.Split(text, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if !isKeyType(fields[0]) && len(fields) >= 3 {
			fields = fields[1:]
		}
		if len(fields) > 2 {
			fields = fields[:2]
		}
		out = append(out, strings.Join(fields, " "))
	}
	return out
}

// isKeyType tells a key line from a known_hosts line, whose first field names hosts.
func isKeyType(s string) bool {
	return strings.HasPrefix(s, "ssh-") || strings.HasPrefix(s, "ecdsa-sha2-") || strings.HasPrefix(s, "sk-")
}

// serverCredential reads the credential fields of the server form: nil and false when the
// form keeps the stored one.
func serverCredential(f url.Values) (cred *kps.Credential, clear bool, err error) {
	switch f.Get("credential") {
	case "password":
		if f.Get("credential_password") == "" {
			return nil, false, formError("Give the password to store, or keep the credential as it is.")
		}
		return &kps.Credential{Type: kps.CredentialPassword, Key: f.Get("credential_password")}, false, nil
	case "keypair":
		if strings.TrimSpace(f.Get("credential_key")) == "" {
			return nil, false, formError("Paste the private key to store, or keep the credential as it is.")
		}
		return &kps.Credential{Type: kps.CredentialKeyPair, Key: strings.TrimSpace(f.Get("credential_key")) + "\n"}, false, nil
	case "remove":
		return nil, true, nil
	}
	return nil, false, nil
}

// createServer registers a server; a project admin may store a credential with it.
func (c *Console) createServer(w http.ResponseWriter, r *http.Request, s *session) error {
	f := r.PostForm
	d := serverForm{New: true, ID: strings.TrimSpace(f.Get("id")), Name: strings.TrimSpace(f.Get("name")),
		Address: strings.TrimSpace(f.Get("address")), Port: strings.TrimSpace(f.Get("port")), User: strings.TrimSpace(f.Get("user")),
		HostKeys: f.Get("host_keys"), SSHDConfig: strings.TrimSpace(f.Get("sshd_config"))}
	again := func(status int, msg string) error {
		d.Error = msg
		c.render(w, r, s, status, "server", &page{Title: "Add a server", Section: "servers", Data: d})
		return nil
	}
	spec := client.ServerSpec{ID: d.ID}
	set := func(v string) *string {
		if v == "" {
			return nil
		}
		return &v
	}
	spec.Name, spec.Address, spec.User, spec.SSHDConfig = set(d.Name), set(d.Address), set(d.User), set(d.SSHDConfig)
	if d.Port != "" {
		p, err := strconv.Atoi(d.Port)
		if err != nil {
			return again(http.StatusBadRequest, "The port is a number from 1 to 65535.")
		}
		spec.Port = &p
	}
	if keys := hostKeyLines(d.HostKeys); len(keys) > 0 {
		spec.HostKeys = &keys
	}
	cred, _, err := serverCredential(f)
	if err != nil {
		return again(http.StatusBadRequest, err.Error())
	}
	spec.Credential = cred
	srv, err := s.api.CreateServer(r.Context(), spec)
	if err != nil {
		if code := client.Code(err); code != "" {
			return again(statusOf(code), code+": "+errorText(err))
		}
		return err
	}
	c.flash(w, r, "ok", "Server "+srv.ID+" added.")
	http.Redirect(w, r, Prefix+"servers", http.StatusSeeOther)
	return nil
}

// updateServer saves the edit form: a member changes the name only; a project admin also how
// the service reaches the server and its credential (inventory.md, "Who may do what").
func (c *Console) updateServer(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	srv, err := s.api.Server(r.Context(), id)
	if err != nil {
		return err
	}
	f := r.PostForm
	d := formOf(srv)
	d.Name = strings.TrimSpace(f.Get("name"))
	spec := client.ServerSpec{}
	if d.Name != "" && d.Name != srv.Name {
		spec.Name = &d.Name
	}
	if f.Has("address") {
		// The admin form: every member of how the server is reached is sent, which confirms
		// the reach as the admin's (reach_by_admin) even when nothing changed.
		d.Address, d.Port, d.User = strings.TrimSpace(f.Get("address")), strings.TrimSpace(f.Get("port")), strings.TrimSpace(f.Get("user"))
		d.HostKeys, d.SSHDConfig = f.Get("host_keys"), strings.TrimSpace(f.Get("sshd_config"))
		port, perr := strconv.Atoi(d.Port)
		if perr != nil {
			d.Error = "The port is a number from 1 to 65535."
			c.render(w, r, s, http.StatusBadRequest, "server", &page{Title: "Server " + id, Section: "servers", Data: d})
			return nil
		}
		keys := hostKeyLines(d.HostKeys)
		spec.Address, spec.Port, spec.User, spec.HostKeys = &d.Address, &port, &d.User, &keys
		if d.SSHDConfig != "" {
			spec.SSHDConfig = &d.SSHDConfig
		}
	}
	cred, clear, err := serverCredential(f)
	if err != nil {
		d.Error = err.Error()
		c.render(w, r, s, http.StatusBadRequest, "server", &page{Title: "Server " + id, Section: "servers", Data: d})
		return nil
	}
	spec.Credential, spec.ClearCredential = cred, clear
	if _, err := s.api.UpdateServer(r.Context(), id, spec); err != nil {
		if code := client.Code(err); code != "" {
			d.Error = code + ": " + errorText(err)
			c.render(w, r, s, statusOf(code), "server", &page{Title: "Server " + id, Section: "servers", Data: d})
			return nil
		}
		return err
	}
	c.flash(w, r, "ok", "Server "+id+" saved.")
	http.Redirect(w, r, Prefix+"servers/"+url.PathEscape(id), http.StatusSeeOther)
	return nil
}

func (c *Console) deleteServer(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	if err := s.api.DeleteServer(r.Context(), id); err != nil {
		return err
	}
	c.flash(w, r, "ok", "Server "+id+" removed.")
	http.Redirect(w, r, Prefix+"servers", http.StatusSeeOther)
	return nil
}

// unbindServer removes the server's key pair, logging in as the form says, and follows the
// task on the progress page.
func (c *Console) unbindServer(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	cred, _, err := loginCredential(r.PostForm)
	if err != nil {
		c.refuse(w, r, http.StatusBadRequest, "Unbind refused", err.Error())
		return nil
	}
	sub, err := s.api.Unbind(r.Context(), id, cred)
	if err != nil {
		return err
	}
	http.Redirect(w, r, progressURL([]string{sub.TaskID}, nil), http.StatusSeeOther)
	return nil
}
