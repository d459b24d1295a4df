package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/openkps/kps"
)

// exportRole is the role ExportPrivateKey needs (auth.md §3.3); a task logs in with a hosted
// private key only for a caller who holds it.
const exportRole = kps.RoleMember

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
	keep, _, err := srv.boolean("keep_login_key")
	if err != nil {
		return b, err
	}
	if keep {
		// An OpenKPS extension: the caller's login key stays on the host (§6.3).
		if b.auth == nil || b.auth.Type != kps.CredentialKeyPair {
			return b, kps.Errorf(kps.ErrInvalid, "Invalid parameter %s: it applies only with server.auth of type 'keypair'.", srv.name("keep_login_key"))
		}
		b.auth.KeepOnHost = true
	}
	return b, nil
}

// submit persists one task, holding the caller's credential in memory for the worker first so
// a worker that claims the task at once finds it.
func (s *Server) submit(r *http.Request, p *kps.Principal, sub kps.TaskSubmission, auth *kps.Credential) (*kps.Task, error) {
	sub = s.submission(p, sub, auth)
	t, err := s.store.SubmitTask(r.Context(), sub)
	if err != nil {
		s.tasks.Forget(sub.ID)
		return nil, err
	}
	s.tasks.Wake()
	return t, nil
}

// submission completes sub for the caller: a new task ID, the caller's project and user, the
// queue limit, and the caller's credential held in memory for the worker (before the task is
// persisted, so that a worker claiming it at once finds it).
func (s *Server) submission(p *kps.Principal, sub kps.TaskSubmission, auth *kps.Credential) kps.TaskSubmission {
	sub.ID = uuid.NewString()
	sub.ProjectID, sub.UserID, sub.MaxQueued = p.ProjectID, p.UserID, s.cfg.MaxQueued
	// A hosted private key logs in only for a caller who could export it (SECURITY.md 2.1).
	sub.MayExport = p.Has(exportRole)
	sub.MaxProjectTasks = s.cfg.MaxProjectTasks
	if auth != nil {
		sub.CallerAuth = true
		sub.Holder = s.tasks.Hold(sub.ID, *auth)
	}
	return sub
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
	// One transaction for the batch: one commit, and one turn on the database writer, whose
	// queue the running tasks' claims and outcomes share.
	subs := make([]kps.TaskSubmission, len(binds))
	for i, b := range binds {
		subs[i] = s.submission(p, bindSubmission(b, true), b.auth)
	}
	tasks, refused, err := s.store.SubmitTasks(r.Context(), subs)
	if err != nil {
		for _, sub := range subs {
			s.tasks.Forget(sub.ID)
		}
		return err
	}
	out := make([]taskAccepted, 0, len(binds))
	for i, b := range binds {
		if err := refused[i]; err != nil {
			s.tasks.Forget(subs[i].ID)
			out = append(out, taskAccepted{ServerID: b.serverID, Status: "FAILED", ErrorCode: kps.ErrorCode(err), ErrorMsg: kps.ErrorMessage(err)})
			continue
		}
		out = append(out, taskAccepted{TaskID: tasks[i].ID, ServerID: tasks[i].ServerID, Status: "SUCCESS"})
	}
	s.tasks.Wake() // one worker; each claim wakes the next
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

// runningTask and failedTask are the items of the two lists (RunningTasks, and FailedTasks of
// the seed page with the field order of Huawei's example). The lists are rendered by
// appendTaskList; these types are the reference its tests compare it with, byte for byte.
type runningTask struct {
	TaskID      string `json:"task_id"`
	OperateType string `json:"operate_type"`
	TaskTime    string `json:"task_time"`
	ServerName  string `json:"server_name"`
	ServerID    string `json:"server_id"`
	KeyPairName string `json:"keypair_name"`
}

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

func (s *Server) listRunningTasks(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	return s.serveTaskList(w, r, p, false)
}

func (s *Server) listFailedTasks(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	return s.serveTaskList(w, r, p, true)
}

// serveTaskList answers ListRunningTask or ListFailedTask (§2.15, §2.16, paging §4.1) from the
// page cache when the page it holds is as new as the project's tasks, else renders it.
func (s *Server) serveTaskList(w http.ResponseWriter, r *http.Request, p *kps.Principal, failed bool) error {
	page, err := pageQuery(r)
	if err != nil {
		return err
	}
	key := taskListKey{project: p.ProjectID, failed: failed, limit: page.Limit, offset: page.Offset}
	var version int64
	if s.pages != nil {
		if version, err = s.store.TaskVersion(r.Context(), p.ProjectID); err != nil {
			return err
		}
	}
	body, err := s.pages.page(key, version, func() ([]byte, int64, error) {
		return s.renderTaskList(r.Context(), key)
	})
	if err != nil {
		return err
	}
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(http.StatusOK)
	w.Write(body)
	return nil
}

// jsonContentType is writeJSON's Content-Type, shared rather than rebuilt per response.
var jsonContentType = []string{"application/json;charset=UTF-8"}

// taskListHeaderRoom is reserved in front of a rendered list for `{"total":N,"tasks":[`,
// which can only be written once the rows have brought the total.
const taskListHeaderRoom = len(`{"total":-2147483648,"tasks":[`)

// renderTaskList reads a page and renders it as json.Marshal renders
// struct{Total int32 `json:"total"`; Tasks []failedTask `json:"tasks"`} (or []runningTask),
// straight from the rows the store hands over. It returns the task version the page was read at.
func (s *Server) renderTaskList(ctx context.Context, key taskListKey) ([]byte, int64, error) {
	phases := kps.RunningPhases
	if key.failed {
		phases = kps.FailedPhases
	}
	buf := make([]byte, taskListHeaderRoom, taskListHeaderRoom+64+min(key.limit, 1000)*320)
	n := 0
	total, version, err := s.store.ScanTasks(ctx, key.project, phases, kps.Page{Limit: key.limit, Offset: key.offset},
		func(t *kps.TaskRow) error {
			if n > 0 {
				buf = append(buf, ',')
			}
			n++
			buf = appendTaskItem(buf, t, key.failed)
			return nil
		})
	if err != nil {
		return nil, 0, err
	}
	buf = append(buf, "]}"...)
	var head [taskListHeaderRoom]byte
	h := append(head[:0], `{"total":`...)
	h = strconv.AppendInt(h, int64(int32(total)), 10)
	h = append(h, `,"tasks":[`...)
	start := taskListHeaderRoom - len(h)
	copy(buf[start:], h)
	return buf[start:], version, nil
}

// appendTaskItem appends one item of a list: the members of failedTask or runningTask, in
// their order.
func appendTaskItem(b []byte, t *kps.TaskRow, failed bool) []byte {
	b = append(b, `{"task_id":"`...)
	b = appendJSONStringBody(b, t.ID)
	// operate_type is kps.Status: phase and operation (both plain ASCII words, by the
	// schema's CHECK constraints) joined by "_".
	b = append(b, `","operate_type":"`...)
	b = appendJSONStringBody(b, t.Phase)
	b = append(b, '_')
	b = appendJSONStringBody(b, t.Operation)
	b = append(b, `","task_time":"`...)
	b = appendJSONStringBody(b, t.Created)
	if failed {
		b = append(b, `","task_error_code":"`...)
		b = appendJSONStringBody(b, t.ErrorCode)
		b = append(b, `","task_error_msg":"`...)
		b = appendJSONStringBody(b, t.ErrorMsg)
	}
	// server_name as serverName: the server ID when the name is empty.
	name := t.ServerName
	if len(name) == 0 {
		name = t.ServerID
	}
	b = append(b, `","server_name":"`...)
	b = appendJSONStringBody(b, name)
	b = append(b, `","server_id":"`...)
	b = appendJSONStringBody(b, t.ServerID)
	b = append(b, `","keypair_name":"`...)
	b = appendJSONStringBody(b, t.KeyPairName)
	return append(b, `"}`...)
}

// appendJSONStringBody appends s as the inside of a JSON string exactly as encoding/json
// writes it (Marshal, so with HTML escaping): <, > and & as \u003c, \u003e, \u0026; the short
// escapes \b \f \n \r \t; other control bytes as \u00XX; each invalid UTF-8 byte as U+FFFD
// the way encoding/json writes it (invalidUTF8); U+2028 and U+2029 escaped.
// FuzzAppendJSONString holds it to json.Marshal.
func appendJSONStringBody(b []byte, s []byte) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, invalidUTF8...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

// invalidUTF8 is what encoding/json writes for a byte that is not UTF-8: the escape \ufffd up
// to Go 1.26, the character U+FFFD itself since Go 1.27 (encoding/json on json/v2). Both decode
// to the same string; taking it from encoding/json keeps list pages byte for byte equal to
// json.Marshal's output under either toolchain.
var invalidUTF8 = func() string {
	b, _ := json.Marshal("\xff")
	return string(b[1 : len(b)-1])
}()

// jsonSafe marks the ASCII bytes encoding/json copies as they are (its htmlSafeSet): every
// printable byte and DEL, except ", \\, <, > and &.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

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
