package kpsv3

import (
	"net/http"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
	"github.com/openkps/kps/api/wire"
)

// The rotations extension (kps-v3-api.md §8): staged rotation of a key pair over servers. The
// routes need the associate's role (member) to change, a reader's to look.
func (a *API) rotationRoutes(route func(pattern string, min kps.Role, h handlerFunc), audited func(pattern string, min kps.Role, ar api.AuditRoute, h handlerFunc)) {
	audited("POST /v3/{project_id}/rotations", kps.RoleMember, api.AuditRoute{Action: kps.ActionRotationCreate, Status: http.StatusCreated, Target: kps.TargetRotation}, a.createRotation)
	route("GET /v3/{project_id}/rotations", kps.RoleReader, a.listRotations)
	route("GET /v3/{project_id}/rotations/{rotation_id}", kps.RoleReader, a.showRotation)
	audited("POST /v3/{project_id}/rotations/{rotation_id}/action", kps.RoleMember, api.AuditRoute{Action: kps.ActionRotationAction, Status: http.StatusOK, Target: kps.TargetRotation, PathTarget: "rotation_id"}, a.rotationAction)
}

// decodeRotation validates the body of a rotation's creation (§8.1).
func decodeRotation(root api.Object) (kps.RotationCreate, error) {
	var c kps.RotationCreate
	o, _, err := root.Object("rotation", true)
	if err != nil {
		return c, err
	}
	if c.KeyPairName, _, err = o.Str("keypair_name", true); err != nil {
		return c, err
	}
	if err := kps.ValidateKeyPairName(c.KeyPairName); err != nil {
		return c, err
	}
	if c.ServerIDs, _, err = o.StringArray("servers"); err != nil {
		return c, err
	}
	from, ok, err := o.Str("from_keypair", false)
	if err != nil {
		return c, err
	}
	if ok {
		if err := kps.ValidateKeyPairName(from); err != nil {
			return c, err
		}
		c.FromKeyPair = from
	}
	for _, m := range []struct {
		name string
		to   *int
	}{{"batch_size", &c.BatchSize}, {"max_failures", &c.MaxFailures}, {"canary", &c.Canary}} {
		v, ok, err := o.Integer(m.name)
		if err != nil {
			return c, err
		}
		if ok && (v < 0 || v > kps.RotationMaxServers) {
			return c, kps.Errorf(kps.ErrInvalid, "Invalid parameter %s: it must be from 0 to %d.", o.Name(m.name), kps.RotationMaxServers)
		}
		if ok && m.name == "batch_size" && v == 0 {
			return c, kps.Errorf(kps.ErrInvalid, "Invalid parameter %s: it must be at least 1.", o.Name(m.name))
		}
		*m.to = int(v)
	}
	if c.PrivateKey, _, err = o.Str("private_key", false); err != nil {
		return c, err
	}
	a, ok, err := o.Object("auth", false, kps.ErrAuth)
	if err != nil {
		return c, err
	}
	if ok {
		cred, err := decodeCredential(a)
		if err != nil {
			return c, err
		}
		c.Login = &cred
	}
	keep, _, err := o.Boolean("keep_login_key")
	if err != nil {
		return c, err
	}
	if keep {
		if c.Login == nil || c.Login.Type != kps.CredentialKeyPair {
			return c, kps.Errorf(kps.ErrInvalid, "Invalid parameter %s: it applies only with auth of type 'keypair'.", o.Name("keep_login_key"))
		}
		c.Login.KeepOnHost = true
	}
	return c, nil
}

func (a *API) createRotation(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	root, err := readObject(r)
	if err != nil {
		return err
	}
	c, err := decodeRotation(root)
	if err != nil {
		return err
	}
	rot, err := a.rotate.CreateRotation(r.Context(), p, c)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusCreated, wire.RotationBody{Rotation: viewRotation(rot)})
	return nil
}

func (a *API) listRotations(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	page, err := pageQuery(r)
	if err != nil {
		return err
	}
	list, total, err := a.rotate.ListRotations(r.Context(), p, page)
	if err != nil {
		return err
	}
	out := wire.RotationList{Total: total, Rotations: make([]wire.Rotation, 0, len(list))}
	for i := range list {
		out.Rotations = append(out.Rotations, viewRotation(&list[i]))
	}
	api.WriteJSON(w, http.StatusOK, out)
	return nil
}

// pathRotationID validates {rotation_id}: a rotation ID is a UUID, so anything else cannot
// exist (404).
func pathRotationID(r *http.Request) (string, error) {
	id := r.PathValue("rotation_id")
	if len(id) != 36 {
		return "", kps.Errorf(kps.ErrRotationNotFound, "Rotation '%s' does not exist.", kps.Clip(id))
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c == '-') {
			return "", kps.Errorf(kps.ErrRotationNotFound, "Rotation '%s' does not exist.", kps.Clip(id))
		}
	}
	return id, nil
}

func (a *API) showRotation(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	id, err := pathRotationID(r)
	if err != nil {
		return err
	}
	rot, err := a.rotate.Rotation(r.Context(), p, id)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, wire.RotationBody{Rotation: viewRotation(rot)})
	return nil
}

func (a *API) rotationAction(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	id, err := pathRotationID(r)
	if err != nil {
		return err
	}
	root, err := readObject(r)
	if err != nil {
		return err
	}
	action, _, err := root.Str("action", true)
	if err != nil {
		return err
	}
	rot, err := a.rotate.RotationAction(r.Context(), p, id, action)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, wire.RotationBody{Rotation: viewRotation(rot)})
	return nil
}

func viewRotation(r *kps.Rotation) wire.Rotation {
	out := wire.Rotation{ID: r.ID, KeyPairName: r.KeyPairName, FromKeyPair: r.FromKeyPair, State: string(r.State),
		Reason: r.Reason, BatchSize: r.BatchSize, MaxFailures: r.MaxFailures, Canary: r.Canary,
		UserID: r.UserID, Created: r.Created.UTC().Format(time.RFC3339), Updated: r.Updated.UTC().Format(time.RFC3339),
		Totals: wire.RotationTotals{Servers: r.Totals.Servers, Pending: r.Totals.Pending, Running: r.Totals.Running,
			Succeeded: r.Totals.Succeeded, Failed: r.Totals.Failed, Skipped: r.Totals.Skipped}}
	for _, s := range r.Servers {
		out.Servers = append(out.Servers, wire.RotationServer{ServerID: s.ServerID, State: string(s.State), TaskID: s.TaskID,
			Attempts: s.Attempts, ErrorCode: s.ErrorCode, ErrorMsg: s.ErrorMsg})
	}
	return out
}
