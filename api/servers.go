package api

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps"
)

// serverView is the wire form of an inventory record; the credential never appears.
type serverView struct {
	ID               string   `json:"id"`
	Name             string   `json:"name"`
	Address          string   `json:"address"`
	Port             int      `json:"port"`
	User             string   `json:"user"`
	HostKeys         []string `json:"host_keys"`
	SSHDConfig       string   `json:"sshd_config"`
	HasCredential    bool     `json:"has_credential"`
	ReachByAdmin     bool     `json:"reach_by_admin"`
	KeyPairName      string   `json:"keypair_name"`
	PasswordDisabled bool     `json:"password_disabled"`
	CreateTime       int64    `json:"create_time"`
	UpdateTime       int64    `json:"update_time"`
}

func viewServer(s *kps.Server) serverView {
	keys := s.HostKeys
	if keys == nil {
		keys = []string{}
	}
	return serverView{ID: s.ID, Name: s.Name, Address: s.Address, Port: s.Port, User: s.User,
		HostKeys: keys, SSHDConfig: s.SSHDConfig, HasCredential: s.Credential != nil,
		ReachByAdmin: s.ReachByAdmin, KeyPairName: s.KeyPairName, PasswordDisabled: s.PasswordDisabled,
		CreateTime: s.Created.UnixMilli(), UpdateTime: s.Updated.UnixMilli()}
}

// serverFields decodes the members shared by register and update into u.
func (s *Server) serverFields(o object, u *kps.ServerUpdate, p *kps.Principal, projectID, serverID string) error {
	if v, ok, err := o.str("name", false); err != nil {
		return err
	} else if ok {
		u.Name = &v
	}
	if v, ok, err := o.str("address", false); err != nil {
		return err
	} else if ok {
		u.Address = &v
	}
	if v, ok, err := o.integer("port", kps.ErrPort); err != nil {
		return err
	} else if ok {
		if !kps.ValidPort(v) {
			return kps.Errorf(kps.ErrPort, "Invalid parameter server.port: it must be from 1 to 65535.")
		}
		port := int(v)
		u.Port = &port
	}
	if v, ok, err := o.str("user", false); err != nil {
		return err
	} else if ok {
		u.User = &v
	}
	if v, ok, err := o.str("sshd_config", false); err != nil {
		return err
	} else if ok {
		u.SSHDConfig = &v
	}
	if keys, ok, err := o.stringArray("host_keys", kps.ErrPublicKey); err != nil {
		return err
	} else if ok {
		for i, k := range keys {
			pk, comment, options, rest, err := ssh.ParseAuthorizedKey([]byte(k))
			if err != nil || len(rest) != 0 || options != nil || strings.ContainsAny(strings.TrimSuffix(k, "\n"), "\r\n") {
				return kps.Errorf(kps.ErrPublicKey, "Invalid parameter server.host_keys[%d]: '<type> <base64>' is required.", i)
			}
			keys[i] = strings.TrimSpace(pk.Type() + " " + encodeBlob(pk) + " " + comment)
		}
		u.HostKeys = &keys
	}
	if o.explicitNull("credential") {
		u.SetCredential = true
	} else if c, ok, err := o.object("credential", false, kps.ErrAuth); err != nil {
		return err
	} else if ok {
		cred, err := decodeCredential(c)
		if err != nil {
			return err
		}
		plain, _ := json.Marshal(cred)
		sealed, err := s.sealer.Seal(plain, kps.CredentialAAD(projectID, serverID))
		if err != nil {
			return err
		}
		u.SetCredential, u.Credential = true, sealed
	}
	if u.SetCredential && !p.Has(kps.RoleAdmin) {
		// A stored credential lets anyone who may bind run a RESET on the host (inventory.md).
		return kps.Errorf(kps.ErrForbidden, "The user has no permission to perform this operation.")
	}
	return nil
}

func encodeBlob(pk ssh.PublicKey) string {
	line := string(ssh.MarshalAuthorizedKey(pk))
	_, blob, _ := strings.Cut(strings.TrimSpace(line), " ")
	return blob
}

// decodeCredential validates an auth/credential object (§2.11): password 1–1024 bytes, or an
// unencrypted private key.
func decodeCredential(o object) (kps.Credential, error) {
	typ, _, err := o.str("type", true, kps.ErrAuth)
	if err != nil {
		return kps.Credential{}, err
	}
	key, _, err := o.str("key", true, kps.ErrAuth)
	if err != nil {
		return kps.Credential{}, err
	}
	switch typ {
	case kps.CredentialPassword:
		if len(key) > 1024 {
			return kps.Credential{}, kps.Errorf(kps.ErrAuth, "Invalid parameter %s: a password has at most 1024 bytes.", o.name("key"))
		}
	case kps.CredentialKeyPair:
		if len(key) > 16384 {
			return kps.Credential{}, kps.Errorf(kps.ErrPrivateKey, "Invalid parameter %s: a private key has at most 16384 bytes.", o.name("key"))
		}
		if _, err := ssh.ParsePrivateKey([]byte(key)); err != nil {
			return kps.Credential{}, kps.Errorf(kps.ErrPrivateKey, "Invalid parameter %s: an unencrypted PEM or OpenSSH private key is required.", o.name("key"))
		}
	default:
		return kps.Credential{}, kps.Errorf(kps.ErrAuth, "Invalid parameter %s: 'password' or 'keypair' is required.", o.name("type"))
	}
	return kps.Credential{Type: typ, Key: key}, nil
}

func serverBody(r *http.Request) (object, error) {
	root, err := readObject(r)
	if err != nil {
		return object{}, err
	}
	o, _, err := root.object("server", true)
	return o, err
}

func (s *Server) createServer(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	o, err := serverBody(r)
	if err != nil {
		return err
	}
	id, ok, err := o.str("id", false)
	if err != nil {
		return err
	}
	if !ok {
		id = uuid.NewString()
	} else if err := kps.ValidateServerID(id); err != nil {
		return err
	}
	srv := &kps.Server{ProjectID: p.ProjectID, ID: id, Name: id, Port: 22, User: "root", SSHDConfig: kps.DefaultSSHDConfig}
	var u kps.ServerUpdate
	if err := s.serverFields(o, &u, p, p.ProjectID, id); err != nil {
		return err
	}
	if u.Address == nil {
		return kps.Errorf(kps.ErrMissing, "Missing required parameter: server.address.")
	}
	u.Apply(srv)
	// A member's server is never trusted on first use with a stored credential or hosted key
	// until an admin confirms where it points (kps.Server.CheckLogin).
	srv.ReachByAdmin = p.Has(kps.RoleAdmin)
	if err := srv.Validate(); err != nil {
		return err
	}
	if err := s.cfg.AllowedTargets.CheckServer(srv.Address, srv.Port); err != nil {
		return err
	}
	if err := s.store.CreateServer(r.Context(), srv, s.cfg.ServerQuota); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"server": viewServer(srv)})
	return nil
}

func (s *Server) listServers(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	page, err := pageQuery(r)
	if err != nil {
		return err
	}
	list, total, err := s.store.ListServers(r.Context(), p.ProjectID, page)
	if err != nil {
		return err
	}
	out := make([]serverView, 0, len(list))
	for i := range list {
		out = append(out, viewServer(&list[i]))
	}
	writeJSON(w, http.StatusOK, map[string]any{"total": total, "servers": out})
	return nil
}

// pathServerID validates the {server_id} path value; an invalid one cannot exist (404).
func pathServerID(r *http.Request) (string, error) {
	id := r.PathValue("server_id")
	if !kps.ValidServerID(id) {
		return "", kps.Errorf(kps.ErrServerNotFound, "Server '%s' does not exist.", clip(id))
	}
	return id, nil
}

func (s *Server) showServer(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	id, err := pathServerID(r)
	if err != nil {
		return err
	}
	srv, err := s.store.Server(r.Context(), p.ProjectID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"server": viewServer(srv)})
	return nil
}

func (s *Server) updateServer(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	id, err := pathServerID(r)
	if err != nil {
		return err
	}
	o, err := serverBody(r)
	if err != nil {
		return err
	}
	if v, ok, err := o.str("id", false); err != nil {
		return err
	} else if ok && v != id {
		return kps.Errorf(kps.ErrInvalid, "Invalid parameter server.id: the ID of a server cannot be changed.")
	}
	var u kps.ServerUpdate
	if err := s.serverFields(o, &u, p, p.ProjectID, id); err != nil {
		return err
	}
	cur, err := s.store.Server(r.Context(), p.ProjectID, id)
	if err != nil {
		return err
	}
	if !p.Has(kps.RoleAdmin) {
		if u.ChangesReach(cur) {
			// Otherwise a member could aim a stored credential, a hosted key or another
			// caller's password at a host of their own (docs/SECURITY.md 1.1).
			return kps.Errorf(kps.ErrForbidden, "Changing how the service reaches a server (address, port, user, host_keys, sshd_config) needs the admin role on the project.")
		}
		u.DropReach()
	} else {
		u.ReachByAdmin = u.NamesReach()
	}
	next := *cur
	u.Apply(&next)
	if err := next.Validate(); err != nil {
		return err
	}
	if u.Address != nil || u.Port != nil {
		if err := s.cfg.AllowedTargets.CheckServer(next.Address, next.Port); err != nil {
			return err
		}
	}
	srv, err := s.store.UpdateServer(r.Context(), p.ProjectID, id, u)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"server": viewServer(srv)})
	return nil
}

func (s *Server) deleteServer(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	id, err := pathServerID(r)
	if err != nil {
		return err
	}
	if err := s.store.DeleteServer(r.Context(), p.ProjectID, id); err != nil {
		return err
	}
	writeEmpty(w, http.StatusNoContent)
	return nil
}

// pageQuery reads limit/offset (§4.1); either given twice is refused (§1.4).
func pageQuery(r *http.Request) (kps.Page, error) {
	q, err := queryOnce(r, "limit", "offset")
	if err != nil {
		return kps.Page{}, err
	}
	_, hasLimit := q["limit"]
	_, hasOffset := q["offset"]
	return kps.ParsePage(q.Get("limit"), hasLimit, q.Get("offset"), hasOffset, 1000)
}
