package client

import (
	"context"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/openkps/kps"
)

// Bind is one associate request (§2.11): with Auth the task is a REPLACE that logs in with the
// caller's credential, without it a RESET with the service's stored one.
type Bind struct {
	KeyPairName     string
	ServerID        string
	Auth            *kps.Credential
	DisablePassword bool
	Port            int // 0: the server's
	// KeepLoginKey leaves the key of Auth (type keypair) in authorized_keys, where a REPLACE
	// removes it by default (§6.3). An OpenKPS extension: server.keep_login_key.
	KeepLoginKey bool
	// TTL makes the binding expire that long after the request: the service then unbinds by
	// itself (an OpenKPS extension, server.ttl, kps-v3-api.md §7.1); 0: never.
	TTL time.Duration
}

type wireAuth struct {
	Type string `json:"type"`
	Key  string `json:"key"`
}

func auth(c *kps.Credential) *wireAuth {
	if c == nil {
		return nil
	}
	return &wireAuth{Type: c.Type, Key: c.Key}
}

type bindServer struct {
	ID              string    `json:"id"`
	Auth            *wireAuth `json:"auth,omitempty"`
	DisablePassword bool      `json:"disable_password,omitempty"`
	Port            int       `json:"port,omitempty"`
	KeepLoginKey    bool      `json:"keep_login_key,omitempty"`
	TTL             any       `json:"ttl,omitempty"`
}

type bindBody struct {
	KeyPairName string     `json:"keypair_name"`
	Server      bindServer `json:"server"`
}

func (b Bind) body() bindBody {
	return bindBody{KeyPairName: b.KeyPairName, Server: bindServer{ID: b.ServerID, Auth: auth(b.Auth),
		DisablePassword: b.DisablePassword, Port: b.Port, KeepLoginKey: b.KeepLoginKey, TTL: ttl(b.TTL)}}
}

// ttl is server.ttl: whole seconds as a number, else a duration string; nil for none.
func ttl(d time.Duration) any {
	switch {
	case d <= 0:
		return nil
	case d%time.Second == 0:
		return int64(d / time.Second)
	}
	return d.String()
}

// Submitted is the service's answer to a submission (TaskResponseBody): Status "SUCCESS" means
// the task was accepted (it has not run yet); a batch item the service refused has Status
// "FAILED" with its code and message, and no task.
type Submitted struct {
	TaskID    string `json:"task_id,omitempty"`
	ServerID  string `json:"server_id"`
	Status    string `json:"status"`
	ErrorCode string `json:"error_code,omitempty"`
	ErrorMsg  string `json:"error_msg,omitempty"`
}

// Accepted reports whether the submission created a task.
func (s Submitted) Accepted() bool { return s.TaskID != "" && s.Status == "SUCCESS" }

// Bind submits one bind; it is the only way to bind a server that already has a key pair.
func (c *Client) Bind(ctx context.Context, b Bind) (Submitted, error) {
	var out Submitted
	err := c.call(ctx, http.MethodPost, c.projectPath("/keypairs/associate"), b.body(), &out)
	return out, err
}

// BatchBind submits 1 to 10 binds of one key pair to servers that have none (§2.12); the
// answer has one item per bind, in order.
func (c *Client) BatchBind(ctx context.Context, binds []Bind) ([]Submitted, error) {
	items := make([]bindBody, len(binds))
	for i, b := range binds {
		items[i] = b.body()
	}
	var out struct {
		Tasks []Submitted `json:"tasks"`
	}
	err := c.call(ctx, http.MethodPost, c.projectPath("/keypairs/batch-associate"), struct {
		Items []bindBody `json:"batch_keypairs"`
	}{items}, &out)
	return out.Tasks, err
}

// Unbind submits the removal of a server's key pair (§2.13); without auth the service logs in
// with its stored credential.
func (c *Client) Unbind(ctx context.Context, serverID string, login *kps.Credential) (Submitted, error) {
	type server struct {
		ID   string    `json:"id"`
		Auth *wireAuth `json:"auth,omitempty"`
	}
	var out Submitted
	err := c.call(ctx, http.MethodPost, c.projectPath("/keypairs/disassociate"), struct {
		Server server `json:"server"`
	}{server{serverID, auth(login)}}, &out)
	return out, err
}

// TaskStatus is ListKeypairTask's answer (§2.14).
type TaskStatus struct {
	TaskID   string `json:"task_id"`
	ServerID string `json:"server_id"`
	Status   string `json:"task_status"`
}

// Task reads the status of one task.
func (c *Client) Task(ctx context.Context, id string) (TaskStatus, error) {
	var out TaskStatus
	err := c.call(ctx, http.MethodGet, c.projectPath("/tasks/%s", id), nil, &out)
	return out, err
}

// TaskEntry is an item of the running or failed task list (§2.15, §2.16); the error members
// are set in the failed list only.
type TaskEntry struct {
	TaskID      string `json:"task_id"`
	Status      string `json:"operate_type"`
	TaskTime    string `json:"task_time"`
	ServerID    string `json:"server_id"`
	ServerName  string `json:"server_name"`
	KeyPairName string `json:"keypair_name"`
	ErrorCode   string `json:"task_error_code,omitempty"`
	ErrorMsg    string `json:"task_error_msg,omitempty"`
}

// Created is the task's creation time (zero when task_time cannot be read).
func (e TaskEntry) Created() time.Time {
	ms, err := strconv.ParseInt(e.TaskTime, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// Operation is the operation of the entry's status (FAILED_REPLACE → REPLACE).
func (e TaskEntry) Operation() kps.Operation { return StatusOperation(e.Status) }

// StatusOperation is the operation of a wire status (RUNNING_UNBIND → UNBIND).
func StatusOperation(status string) kps.Operation {
	_, op, _ := strings.Cut(status, "_")
	return kps.Operation(op)
}

// StatusPhase is the phase of a wire status (FAILED_RESET → FAILED).
func StatusPhase(status string) kps.Phase {
	p, _, _ := strings.Cut(status, "_")
	return kps.Phase(p)
}

// Ended reports whether a wire status is final (SUCCESS_* or FAILED_*).
func Ended(status string) bool {
	p := StatusPhase(status)
	return p == kps.PhaseSuccess || p == kps.PhaseFailed
}

// TaskPage is one page of a task list and the size of the whole list.
type TaskPage struct {
	Total int         `json:"total"`
	Tasks []TaskEntry `json:"tasks"`
}

func (c *Client) taskPage(ctx context.Context, list string, limit, offset int) (TaskPage, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}, "offset": {strconv.Itoa(offset)}}
	var out TaskPage
	err := c.call(ctx, http.MethodGet, c.projectPath("/%s?", list)+q.Encode(), nil, &out)
	return out, err
}

// ListRunningTasks reads one page of the READY/RUNNING tasks, newest first.
func (c *Client) ListRunningTasks(ctx context.Context, limit, offset int) (TaskPage, error) {
	return c.taskPage(ctx, "running-tasks", limit, offset)
}

// ListFailedTasks reads one page of the failed tasks, newest first.
func (c *Client) ListFailedTasks(ctx context.Context, limit, offset int) (TaskPage, error) {
	return c.taskPage(ctx, "failed-tasks", limit, offset)
}

// RunningTasks yields every READY/RUNNING task, a page of pageSize at a time as the caller
// goes on.
func (c *Client) RunningTasks(ctx context.Context, pageSize int) iter.Seq2[TaskEntry, error] {
	return c.eachTask(ctx, "running-tasks", pageSize)
}

// FailedTasks yields every failed task, newest first, a page of pageSize at a time as the
// caller goes on; a caller looking for recent tasks stops after the first page.
func (c *Client) FailedTasks(ctx context.Context, pageSize int) iter.Seq2[TaskEntry, error] {
	return c.eachTask(ctx, "failed-tasks", pageSize)
}

func (c *Client) eachTask(ctx context.Context, list string, pageSize int) iter.Seq2[TaskEntry, error] {
	return func(yield func(TaskEntry, error) bool) {
		// Pages are not snapshots (§4.1): a task that ended between two reads shifts the
		// next page, so an item seen twice is yielded once.
		seen := map[string]bool{}
		for offset := 0; ; {
			page, err := c.taskPage(ctx, list, pageSize, offset)
			if err != nil {
				yield(TaskEntry{}, err)
				return
			}
			for _, t := range page.Tasks {
				if seen[t.TaskID] {
					continue
				}
				seen[t.TaskID] = true
				if !yield(t, nil) {
					return
				}
			}
			offset += len(page.Tasks)
			if len(page.Tasks) == 0 || offset >= page.Total {
				return
			}
		}
	}
}

// DeleteFailedTask deletes the record of one failed task.
func (c *Client) DeleteFailedTask(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, c.projectPath("/failed-tasks/%s", id), nil, nil)
}

// DeleteFailedTasks deletes every failed-task record of the project.
func (c *Client) DeleteFailedTasks(ctx context.Context) error {
	return c.call(ctx, http.MethodDelete, c.projectPath("/failed-tasks"), nil, nil)
}
