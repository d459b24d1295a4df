package kpsv3

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
	"github.com/openkps/kps/api/wire"
)

// viewServer is the wire form of an inventory record.
func viewServer(s *kps.Server) wire.Server {
	keys := s.HostKeys
	if keys == nil {
		keys = []string{}
	}
	v := wire.Server{ID: s.ID, Name: s.Name, Address: s.Address, Port: s.Port, User: s.User,
		HostKeys: keys, SSHDConfig: s.SSHDConfig, HasCredential: s.Credential != nil,
		ReachByAdmin: s.ReachByAdmin, KeyPairName: s.KeyPairName, PasswordDisabled: s.PasswordDisabled,
		CreateTime: s.Created.UnixMilli(), UpdateTime: s.Updated.UnixMilli(), Drift: json.RawMessage("null")}
	if !s.BindingExpires.IsZero() {
		v.BindingExpiresAt = s.BindingExpires.UTC().Format(time.RFC3339)
	}
	if !s.LastDriftCheck.IsZero() {
		v.LastDriftCheck = s.LastDriftCheck.UnixMilli()
	}
	if s.Drift != "" {
		v.Drift = json.RawMessage(s.Drift)
	}
	if t := s.LastTask; t != nil {
		v.LastTask = &wire.ServerTask{ID: t.ID, TaskStatus: t.Status(), CreateTime: t.Created.UnixMilli(), ErrorCode: t.ErrorCode}
	}
	return v
}

// decodeServer decodes the members shared by register and update: the update, and the
// credential to store when the update sets one (nil with u.SetCredential: remove it).
func decodeServer(o api.Object) (u kps.ServerUpdate, cred *kps.Credential, err error) {
	if v, ok, err := o.Str("name", false); err != nil {
		return u, nil, err
	} else if ok {
		u.Name = &v
	}
	if v, ok, err := o.Str("address", false); err != nil {
		return u, nil, err
	} else if ok {
		u.Address = &v
	}
	if v, ok, err := o.Integer("port", kps.ErrPort); err != nil {
		return u, nil, err
	} else if ok {
		if !kps.ValidPort(v) {
			return u, nil, kps.Errorf(kps.ErrPort, "Invalid parameter server.port: it must be from 1 to 65535.")
		}
		port := int(v)
		u.Port = &port
	}
	if v, ok, err := o.Str("user", false); err != nil {
		return u, nil, err
	} else if ok {
		u.User = &v
	}
	if v, ok, err := o.Str("sshd_config", false); err != nil {
		return u, nil, err
	} else if ok {
		u.SSHDConfig = &v
	}
	if keys, ok, err := o.StringArray("host_keys", kps.ErrPublicKey); err != nil {
		return u, nil, err
	} else if ok {
		for i, k := range keys {
			pk, comment, options, rest, err := ssh.ParseAuthorizedKey([]byte(k))
			if err != nil || len(rest) != 0 || options != nil || strings.ContainsAny(strings.TrimSuffix(k, "\n"), "\r\n") {
				return u, nil, kps.Errorf(kps.ErrPublicKey, "Invalid parameter server.host_keys[%d]: '<type> <base64>' is required.", i)
			}
			keys[i] = strings.TrimSpace(pk.Type() + " " + encodeBlob(pk) + " " + comment)
		}
		u.HostKeys = &keys
	}
	if o.ExplicitNull("credential") {
		u.SetCredential = true
	} else if c, ok, err := o.Object("credential", false, kps.ErrAuth); err != nil {
		return u, nil, err
	} else if ok {
		decoded, err := decodeCredential(c)
		if err != nil {
			return u, nil, err
		}
		u.SetCredential, cred = true, &decoded
	}
	return u, cred, nil
}

func encodeBlob(pk ssh.PublicKey) string {
	line := string(ssh.MarshalAuthorizedKey(pk))
	_, blob, _ := strings.Cut(strings.TrimSpace(line), " ")
	return blob
}

// decodeCredential validates an auth/credential object (§2.11): password 1–1024 bytes, or an
// unencrypted private key.
func decodeCredential(o api.Object) (kps.Credential, error) {
	typ, _, err := o.Str("type", true, kps.ErrAuth)
	if err != nil {
		return kps.Credential{}, err
	}
	key, _, err := o.Str("key", true, kps.ErrAuth)
	if err != nil {
		return kps.Credential{}, err
	}
	switch typ {
	case kps.CredentialPassword:
		if len(key) > 1024 {
			return kps.Credential{}, kps.Errorf(kps.ErrAuth, "Invalid parameter %s: a password has at most 1024 bytes.", o.Name("key"))
		}
	case kps.CredentialKeyPair:
		if len(key) > 16384 {
			return kps.Credential{}, kps.Errorf(kps.ErrPrivateKey, "Invalid parameter %s: a private key has at most 16384 bytes.", o.Name("key"))
		}
		if _, err := ssh.ParsePrivateKey([]byte(key)); err != nil {
			return kps.Credential{}, kps.Errorf(kps.ErrPrivateKey, "Invalid parameter %s: an unencrypted PEM or OpenSSH private key is required.", o.Name("key"))
		}
	default:
		return kps.Credential{}, kps.Errorf(kps.ErrAuth, "Invalid parameter %s: 'password' or 'keypair' is required.", o.Name("type"))
	}
	return kps.Credential{Type: typ, Key: key}, nil
}

func serverBody(r *http.Request) (api.Object, error) {
	root, err := readObject(r)
	if err != nil {
		return api.Object{}, err
	}
	o, _, err := root.Object("server", true)
	return o, err
}

func (a *API) createServer(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	o, err := serverBody(r)
	if err != nil {
		return err
	}
	id, ok, err := o.Str("id", false)
	if err != nil {
		return err
	}
	if ok {
		if err := kps.ValidateServerID(id); err != nil {
			return err
		}
	}
	u, cred, err := decodeServer(o)
	if err != nil {
		return err
	}
	srv, err := a.servers.CreateServer(r.Context(), p, id, u, cred)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusCreated, map[string]any{"server": viewServer(srv)})
	return nil
}

func (a *API) listServers(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	page, err := pageQuery(r)
	if err != nil {
		return err
	}
	list, total, err := a.servers.ListServers(r.Context(), p, page)
	if err != nil {
		return err
	}
	out := make([]wire.Server, 0, len(list))
	for i := range list {
		out = append(out, viewServer(&list[i]))
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"total": total, "servers": out})
	return nil
}

// pathServerID validates the {server_id} path value; an invalid one cannot exist (404).
func pathServerID(r *http.Request) (string, error) {
	id := r.PathValue("server_id")
	if !kps.ValidServerID(id) {
		return "", kps.ServerNotFound(kps.Clip(id))
	}
	return id, nil
}

func (a *API) showServer(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	id, err := pathServerID(r)
	if err != nil {
		return err
	}
	srv, err := a.servers.Server(r.Context(), p, id)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"server": viewServer(srv)})
	return nil
}

func (a *API) updateServer(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	id, err := pathServerID(r)
	if err != nil {
		return err
	}
	o, err := serverBody(r)
	if err != nil {
		return err
	}
	if v, ok, err := o.Str("id", false); err != nil {
		return err
	} else if ok && v != id {
		return kps.Errorf(kps.ErrInvalid, "Invalid parameter server.id: the ID of a server cannot be changed.")
	}
	u, cred, err := decodeServer(o)
	if err != nil {
		return err
	}
	srv, err := a.servers.UpdateServer(r.Context(), p, id, u, cred)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"server": viewServer(srv)})
	return nil
}

func (a *API) deleteServer(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	id, err := pathServerID(r)
	if err != nil {
		return err
	}
	if err := a.servers.DeleteServer(r.Context(), p, id); err != nil {
		return err
	}
	api.WriteEmpty(w, http.StatusNoContent)
	return nil
}
