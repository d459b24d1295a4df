package kpsv3

import (
	"net/http"
	"strconv"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
)

// taskAccepted is TaskResponseBody (§2.11–2.13).
type taskAccepted struct {
	TaskID    string `json:"task_id,omitempty"`
	ServerID  string `json:"server_id"`
	Status    string `json:"status"`
	ErrorCode string `json:"error_code,omitempty"`
	ErrorMsg  string `json:"error_msg,omitempty"`
}

// decodeServerRef reads server.id and the optional server.auth shared by the three calls.
func decodeServerRef(o api.Object) (id string, auth *kps.Credential, err error) {
	srv, _, err := o.Object("server", true)
	if err != nil {
		return "", nil, err
	}
	if id, _, err = srv.Str("id", true); err != nil {
		return "", nil, err
	}
	if err := kps.ValidateServerID(id); err != nil {
		return "", nil, err
	}
	a, ok, err := srv.Object("auth", false, kps.ErrAuth)
	if err != nil || !ok {
		return id, nil, err
	}
	c, err := decodeCredential(a)
	if err != nil {
		return "", nil, err
	}
	return id, &c, nil
}

// decodeBind validates an AssociateKeypairRequestBody (§2.11).
func decodeBind(o api.Object) (kps.BindRequest, error) {
	var b kps.BindRequest
	var err error
	if b.KeyPairName, _, err = o.Str("keypair_name", true); err != nil {
		return b, err
	}
	if err := kps.ValidateKeyPairName(b.KeyPairName); err != nil {
		return b, err
	}
	if b.ServerID, b.Auth, err = decodeServerRef(o); err != nil {
		return b, err
	}
	srv, _, _ := o.Object("server", true)
	if b.DisablePassword, _, err = srv.Boolean("disable_password"); err != nil {
		return b, err
	}
	port, ok, err := srv.Integer("port", kps.ErrPort)
	if err != nil {
		return b, err
	}
	if ok {
		if !kps.ValidPort(port) {
			return b, kps.Errorf(kps.ErrPort, "Invalid parameter server.port: it must be from 1 to 65535.")
		}
		b.Port = int(port)
	}
	keep, _, err := srv.Boolean("keep_login_key")
	if err != nil {
		return b, err
	}
	if keep {
		// An OpenKPS extension: the caller's login key stays on the host (§6.3).
		if b.Auth == nil || b.Auth.Type != kps.CredentialKeyPair {
			return b, kps.Errorf(kps.ErrInvalid, "Invalid parameter %s: it applies only with server.auth of type 'keypair'.", srv.Name("keep_login_key"))
		}
		b.Auth.KeepOnHost = true
	}
	return b, nil
}

func (a *API) associate(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	root, err := readObject(r)
	if err != nil {
		return err
	}
	b, err := decodeBind(root)
	if err != nil {
		return err
	}
	t, err := a.tasks.Bind(r.Context(), p, b)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, taskAccepted{TaskID: t.ID, ServerID: t.ServerID, Status: "SUCCESS"})
	return nil
}

func (a *API) batchAssociate(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	root, err := readObject(r)
	if err != nil {
		return err
	}
	items, _, err := root.Array("batch_keypairs", true)
	if err != nil {
		return err
	}
	if len(items) < 1 || len(items) > 10 {
		return kps.Errorf(kps.ErrBatchSize, "Parameter batch_keypairs must hold 1 to 10 items, not %d.", len(items))
	}
	binds := make([]kps.BindRequest, len(items))
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			return kps.Errorf(kps.ErrInvalid, "Invalid parameter batch_keypairs[%d]: an object is required.", i)
		}
		if binds[i], err = decodeBind(api.Object{M: m, Path: "batch_keypairs[" + strconv.Itoa(i) + "]"}); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for i, b := range binds {
		if b.KeyPairName != binds[0].KeyPairName {
			return kps.Errorf(kps.ErrBatchKeyPairs, "All items of batch_keypairs must name the same key pair; item %d names '%s'.", i, b.KeyPairName)
		}
		if seen[b.ServerID] {
			return kps.Errorf(kps.ErrDuplicate, "Server '%s' appears more than once in batch_keypairs.", kps.Clip(b.ServerID))
		}
		seen[b.ServerID] = true
	}
	tasks, refused, err := a.tasks.BindBatch(r.Context(), p, binds[0].KeyPairName, binds)
	if err != nil {
		return err
	}
	out := make([]taskAccepted, 0, len(binds))
	for i, b := range binds {
		if err := refused[i]; err != nil {
			out = append(out, taskAccepted{ServerID: b.ServerID, Status: "FAILED", ErrorCode: kps.ErrorCode(err), ErrorMsg: kps.ErrorMessage(err)})
			continue
		}
		out = append(out, taskAccepted{TaskID: tasks[i].ID, ServerID: tasks[i].ServerID, Status: "SUCCESS"})
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"tasks": out})
	return nil
}

func (a *API) disassociate(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	root, err := readObject(r)
	if err != nil {
		return err
	}
	id, auth, err := decodeServerRef(root)
	if err != nil {
		return err
	}
	t, err := a.tasks.Unbind(r.Context(), p, id, auth)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, taskAccepted{TaskID: t.ID, ServerID: t.ServerID, Status: "SUCCESS"})
	return nil
}

// showTask is ListKeypairTask (§2.14): any unknown or malformed ID is 404 KPS.6202.
func (a *API) showTask(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	t, err := a.tasks.Task(r.Context(), p, r.PathValue("task_id"))
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, struct {
		ServerID   string `json:"server_id"`
		TaskID     string `json:"task_id"`
		TaskStatus string `json:"task_status"`
	}{t.ServerID, t.ID, t.Status()})
	return nil
}

func (a *API) listRunningTasks(w http.ResponseWriter, r *http.Request, p *kps.Principal, reads *kps.RequestReads) error {
	return a.serveTaskList(w, r, p, reads, false)
}

func (a *API) listFailedTasks(w http.ResponseWriter, r *http.Request, p *kps.Principal, reads *kps.RequestReads) error {
	return a.serveTaskList(w, r, p, reads, true)
}

// serveTaskList answers ListRunningTask or ListFailedTask (§2.15, §2.16, paging §4.1) with the
// page the read model renders.
func (a *API) serveTaskList(w http.ResponseWriter, r *http.Request, p *kps.Principal, reads *kps.RequestReads, failed bool) error {
	page, err := pageQuery(r)
	if err != nil {
		return err
	}
	var version *int64
	if reads != nil {
		version = &reads.TaskVersion
	}
	body, err := a.lists.Page(r.Context(), p.ProjectID, failed, page, version)
	if err != nil {
		return err
	}
	api.WriteBytes(w, http.StatusOK, body)
	return nil
}

func (a *API) deleteFailedTask(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	if err := a.tasks.DeleteFailedTask(r.Context(), p, r.PathValue("task_id")); err != nil {
		return err
	}
	api.WriteEmpty(w, http.StatusOK)
	return nil
}

func (a *API) deleteFailedTasks(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	if err := a.tasks.DeleteFailedTasks(r.Context(), p); err != nil {
		return err
	}
	api.WriteEmpty(w, http.StatusOK)
	return nil
}
