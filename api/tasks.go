package api

import (
	"net/http"

	"github.com/google/uuid"

	"github.com/openkps/kps"
)

// taskAccepted is TaskResponseBody (§2.11–2.13).
type taskAccepted struct {
	TaskID    string `json:"task_id,omitempty"`
	ServerID  string `json:"server_id"`
	Status    string `json:"status"`
	ErrorCode string `json:"error_code,omitempty"`
	ErrorMsg  string `json:"error_msg,omitempty"`
}

// bindRequest is one validated associate item.
type bindRequest struct {
	keyPairName     string
	serverID        string
	auth            *kps.Credential
	disablePassword bool
	port            int
}

// decodeServerRef reads server.id and the optional server.auth shared by the three calls.
func decodeServerRef(o object) (id string, auth *kps.Credential, err error) {
	srv, _, err := o.object("server", true)
	if err != nil {
		return "", nil, err
	}
	if id, _, err = srv.str("id", true); err != nil {
		return "", nil, err
	}
	if err := kps.ValidateServerID(id); err != nil {
		return "", nil, err
	}
	a, ok, err := srv.object("auth", false, kps.ErrAuth)
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
func decodeBind(o object) (bindRequest, error) {
	var b bindRequest
	var err error
	if b.keyPairName, _, err = o.str("keypair_name", true); err != nil {
		return b, err
	}
	if err := kps.ValidateKeyPairName(b.keyPairName); err != nil {
		return b, err
	}
	if b.serverID, b.auth, err = decodeServerRef(o); err != nil {
		return b, err
	}
	srv, _, _ := o.object("server", true)
	if b.disablePassword, _, err = srv.boolean("disable_password"); err != nil {
		return b, err
	}
	port, ok, err := srv.integer("port", kps.ErrPort)
	if err != nil {
		return b, err
	}
	if ok {
		if !kps.ValidPort(port) {
			return b, kps.Errorf(kps.ErrPort, "Invalid parameter server.port: it must be from 1 to 65535.")
		}
		b.port = int(port)
	}
	return b, nil
}

// submit persists one task, holding the caller's credential in memory for the worker first so
// a worker that claims the task at once finds it.
func (s *Server) submit(r *http.Request, p *kps.Principal, sub kps.TaskSubmission, auth *kps.Credential) (*kps.Task, error) {
	sub.ID = uuid.NewString()
	sub.ProjectID, sub.UserID, sub.MaxQueued = p.ProjectID, p.UserID, s.cfg.MaxQueued
	if auth != nil {
		sub.CallerAuth = true
		s.tasks.Hold(sub.ID, *auth)
	}
	t, err := s.store.SubmitTask(r.Context(), sub)
	if err != nil {
		s.tasks.Forget(sub.ID)
		return nil, err
	}
	s.tasks.Wake()
	return t, nil
}

func bindSubmission(b bindRequest, batch bool) kps.TaskSubmission {
	op := kps.OpReset
	if b.auth != nil {
		op = kps.OpReplace
	}
	return kps.TaskSubmission{Operation: op, KeyPairName: b.keyPairName, ServerID: b.serverID,
		Port: b.port, DisablePassword: b.disablePassword, Batch: batch}
}

func (s *Server) associate(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	root, err := readObject(r)
	if err != nil {
		return err
	}
	b, err := decodeBind(root)
	if err != nil {
		return err
	}
	t, err := s.submit(r, p, bindSubmission(b, false), b.auth)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, taskAccepted{TaskID: t.ID, ServerID: t.ServerID, Status: "SUCCESS"})
	return nil
}

func (s *Server) batchAssociate(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	root, err := readObject(r)
	if err != nil {
		return err
	}
	items, _, err := root.array("batch_keypairs", true)
	if err != nil {
		return err
	}
	if len(items) < 1 || len(items) > 10 {
		return kps.Errorf(kps.ErrBatchSize, "Parameter batch_keypairs must hold 1 to 10 items, not %d.", len(items))
	}
	binds := make([]bindRequest, len(items))
	seen := map[string]bool{}
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			return kps.Errorf(kps.ErrInvalid, "Invalid parameter batch_keypairs[%d]: an object is required.", i)
		}
		if binds[i], err = decodeBind(object{m: m, path: "batch_keypairs[" + itoa(i) + "]"}); err != nil {
			return err
		}
	}
	for i, b := range binds {
		if b.keyPairName != binds[0].keyPairName {
			return kps.Errorf(kps.ErrBatchKeyPairs, "All items of batch_keypairs must name the same key pair; item %d names '%s'.", i, b.keyPairName)
		}
		if seen[b.serverID] {
			return kps.Errorf(kps.ErrDuplicate, "Server '%s' appears more than once in batch_keypairs.", clip(b.serverID))
		}
		seen[b.serverID] = true
	}
	k, err := s.store.KeyPair(r.Context(), p.ProjectID, binds[0].keyPairName, p.UserID)
	if err != nil {
		return err
	}
	if k.Type == kps.TypeX509 {
		return kps.Errorf(kps.ErrX509NotBindable, "Key pair '%s' is an x509 key pair and cannot be bound to a server.", k.Name)
	}
	out := make([]taskAccepted, 0, len(binds))
	for _, b := range binds {
		t, err := s.submit(r, p, bindSubmission(b, true), b.auth)
		if err != nil {
			if kps.ErrorCode(err) == kps.ErrInternal {
				return err
			}
			out = append(out, taskAccepted{ServerID: b.serverID, Status: "FAILED", ErrorCode: kps.ErrorCode(err), ErrorMsg: kps.ErrorMessage(err)})
			continue
		}
		out = append(out, taskAccepted{TaskID: t.ID, ServerID: t.ServerID, Status: "SUCCESS"})
	}
	writeJSON(w, http.StatusOK, map[string]any{"tasks": out})
	return nil
}

func (s *Server) disassociate(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	root, err := readObject(r)
	if err != nil {
		return err
	}
	id, auth, err := decodeServerRef(root)
	if err != nil {
		return err
	}
	t, err := s.submit(r, p, kps.TaskSubmission{Operation: kps.OpUnbind, ServerID: id}, auth)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, taskAccepted{TaskID: t.ID, ServerID: t.ServerID, Status: "SUCCESS"})
	return nil
}

// showTask is ListKeypairTask (§2.14): any unknown or malformed ID is 404 KPS.6202.
func (s *Server) showTask(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	t, err := s.store.Task(r.Context(), p.ProjectID, r.PathValue("task_id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		ServerID   string `json:"server_id"`
		TaskID     string `json:"task_id"`
		TaskStatus string `json:"task_status"`
	}{t.ServerID, t.ID, t.Status()})
	return nil
}

type runningTask struct {
	TaskID      string `json:"task_id"`
	OperateType string `json:"operate_type"`
	TaskTime    string `json:"task_time"`
	ServerName  string `json:"server_name"`
	ServerID    string `json:"server_id"`
	KeyPairName string `json:"keypair_name"`
}

// failedTask is FailedTasks of the seed page, with the field order of Huawei's example.
type failedTask struct {
	TaskID        string `json:"task_id"`
	OperateType   string `json:"operate_type"`
	TaskTime      string `json:"task_time"`
	TaskErrorCode string `json:"task_error_code"`
	TaskErrorMsg  string `json:"task_error_msg"`
	ServerName    string `json:"server_name"`
	ServerID      string `json:"server_id"`
	KeyPairName   string `json:"keypair_name"`
}

// taskPage reads limit/offset and lists the project's tasks in the phases (§4.1).
func (s *Server) taskPage(r *http.Request, p *kps.Principal, phases []kps.Phase) ([]kps.Task, int32, error) {
	page, err := pageQuery(r)
	if err != nil {
		return nil, 0, err
	}
	list, total, err := s.store.ListTasks(r.Context(), p.ProjectID, phases, page)
	return list, int32(total), err
}

func (s *Server) listRunningTasks(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	list, total, err := s.taskPage(r, p, kps.RunningPhases)
	if err != nil {
		return err
	}
	out := make([]runningTask, 0, len(list))
	for i := range list {
		t := &list[i]
		out = append(out, runningTask{TaskID: t.ID, OperateType: t.Status(), TaskTime: t.TaskTime(),
			ServerName: serverName(t), ServerID: t.ServerID, KeyPairName: t.KeyPairName})
	}
	writeJSON(w, http.StatusOK, struct {
		Total int32         `json:"total"`
		Tasks []runningTask `json:"tasks"`
	}{total, out})
	return nil
}

func (s *Server) listFailedTasks(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	list, total, err := s.taskPage(r, p, kps.FailedPhases)
	if err != nil {
		return err
	}
	out := make([]failedTask, 0, len(list))
	for i := range list {
		t := &list[i]
		out = append(out, failedTask{TaskID: t.ID, OperateType: t.Status(), TaskTime: t.TaskTime(),
			TaskErrorCode: t.ErrorCode, TaskErrorMsg: t.ErrorMsg, ServerName: serverName(t),
			ServerID: t.ServerID, KeyPairName: t.KeyPairName})
	}
	writeJSON(w, http.StatusOK, struct {
		Total int32        `json:"total"`
		Tasks []failedTask `json:"tasks"`
	}{total, out})
	return nil
}

func serverName(t *kps.Task) string {
	if t.ServerName == "" {
		return t.ServerID
	}
	return t.ServerName
}

func (s *Server) deleteFailedTask(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	if err := s.store.DeleteFailedTask(r.Context(), p.ProjectID, r.PathValue("task_id")); err != nil {
		return err
	}
	writeEmpty(w, http.StatusOK)
	return nil
}

func (s *Server) deleteFailedTasks(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	if err := s.store.DeleteFailedTasks(r.Context(), p.ProjectID); err != nil {
		return err
	}
	writeEmpty(w, http.StatusOK)
	return nil
}
