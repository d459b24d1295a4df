package console

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
)

// taskRow is a task of a list, formatted once in Go: a page of 1,000 rows then costs the
// template little more than copying strings (BenchmarkRenderFailedPage1000).
type taskRow struct {
	TaskID, Short, When, ISO, Ago string
	ServerID, ServerName          string // ServerName only when it differs from ServerID
	KeyPairName, Operation        string
	Status, Phase                 string
	ErrorCode, ErrorMsg           string
}

func rowOf(t client.TaskEntry) taskRow {
	created := t.Created()
	r := taskRow{TaskID: t.TaskID, Short: t.TaskID[:min(8, len(t.TaskID))], When: formatTime(created),
		ISO: created.UTC().Format(time.RFC3339), Ago: ago(created), ServerID: t.ServerID, KeyPairName: t.KeyPairName,
		Operation: string(client.StatusOperation(t.Status)), Status: t.Status,
		Phase: strings.ToLower(string(client.StatusPhase(t.Status))), ErrorCode: t.ErrorCode, ErrorMsg: t.ErrorMsg}
	if t.ServerName != t.ServerID {
		r.ServerName = t.ServerName
	}
	return r
}

// taskList is a page of the running or the failed tasks, with the API's limit and offset.
type taskList struct {
	Tasks          []taskRow
	Ready, Running int // running list: how many of the page wait, how many run
	Self           string
	Back           string // this page, where a delete returns to
	offsetPager
}

func newTaskList(r *http.Request, noun string, pg client.TaskPage, limit, offset int) taskList {
	rows := make([]taskRow, len(pg.Tasks))
	for i, t := range pg.Tasks {
		rows[i] = rowOf(t)
	}
	d := taskList{Tasks: rows, Self: r.URL.RequestURI(), Back: r.URL.RequestURI(),
		offsetPager: newOffsetPager(r.URL.Path, noun, nil, pg.Total, len(pg.Tasks), limit, offset)}
	for _, t := range pg.Tasks {
		if client.StatusPhase(t.Status) == kps.PhaseRunning {
			d.Running++
		} else {
			d.Ready++
		}
	}
	return d
}

// taskPage reads one page of a task list at the request's limit (def when not given) and
// offset, and the list's total.
func taskPage(r *http.Request, noun string, def int, list func(ctx context.Context, limit, offset int) (client.TaskPage, error)) (taskList, int, error) {
	limit := intParam(r, "limit", def, 1, 1000)
	offset := intParam(r, "offset", 0, 0, 1<<31-1)
	pg, err := list(r.Context(), limit, offset)
	if err != nil {
		return taskList{}, 0, err
	}
	return newTaskList(r, noun, pg, limit, offset), pg.Total, nil
}

// failedTasks is the failed-task list of kps-v3-api.md §2.16, a page at a time.
func (c *Console) failedTasks(w http.ResponseWriter, r *http.Request, s *session) error {
	list, _, err := taskPage(r, "failed tasks", 50, s.api.ListFailedTasks)
	if err != nil {
		return err
	}
	c.render(w, r, s, http.StatusOK, "failed", &page{Title: "Failed tasks", Section: "failed", Data: list})
	return nil
}

// runningTasks is the list of queued and running tasks (§2.15), updated live.
func (c *Console) runningTasks(w http.ResponseWriter, r *http.Request, s *session) error {
	list, total, err := taskPage(r, "running tasks", 100, s.api.ListRunningTasks)
	if err != nil {
		return err
	}
	p := &page{Title: "Running tasks", Section: "running", Data: list}
	if total > 0 {
		p.Refresh = 3
	}
	c.render(w, r, s, http.StatusOK, "running", p)
	return nil
}

// retryData is the retry form of one failed task.
type retryData struct {
	Task        client.TaskStatus
	Operation   string
	KeyPairName string
	Error       string
}

// failedTask reads a task that must be failed, with the key pair the list link named.
func failedTask(r *http.Request, s *session, keyPair string) (*retryData, error) {
	st, err := s.api.Task(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if client.StatusPhase(st.Status) != kps.PhaseFailed {
		return nil, kps.Errorf(kps.ErrFailedNotFound, "Task %s has not failed (it is %s): there is nothing to retry.", st.TaskID, st.Status)
	}
	return &retryData{Task: st, Operation: string(client.StatusOperation(st.Status)), KeyPairName: keyPair}, nil
}

func (c *Console) retryForm(w http.ResponseWriter, r *http.Request, s *session) error {
	d, err := failedTask(r, s, r.URL.Query().Get("keypair"))
	if err != nil {
		return err
	}
	c.render(w, r, s, http.StatusOK, "retry", &page{Title: "Retry task", Section: "failed", Data: d})
	return nil
}

// retry submits a failed task again with the same key pair, server and operation, and deletes
// its failed record once the new task is accepted, as `kps task retry` does: a task that fails
// again leaves one record, its own. A REPLACE needs the login credential again (the service
// never keeps it).
func (c *Console) retry(w http.ResponseWriter, r *http.Request, s *session) error {
	f := r.PostForm
	d, err := failedTask(r, s, f.Get("keypair"))
	if err != nil {
		return err
	}
	cred, keep, err := loginCredential(f)
	if err == nil && d.Operation == string(kps.OpReplace) && cred == nil {
		err = formError("This task was a REPLACE: give the password or private key to log in with again.")
	}
	if err != nil {
		d.Error = err.Error()
		c.render(w, r, s, http.StatusBadRequest, "retry", &page{Title: "Retry task", Section: "failed", Data: d})
		return nil
	}
	var sub client.Submitted
	switch kps.Operation(d.Operation) {
	case kps.OpUnbind:
		sub, err = s.api.Unbind(r.Context(), d.Task.ServerID, cred)
	default:
		sub, err = s.api.Bind(r.Context(), client.Bind{KeyPairName: d.KeyPairName, ServerID: d.Task.ServerID, Auth: cred,
			KeepLoginKey: keep, DisablePassword: f.Get("disable_password") != ""})
	}
	if err != nil {
		return err
	}
	if err := s.api.DeleteFailedTask(r.Context(), d.Task.TaskID); err != nil && client.Code(err) != kps.ErrFailedNotFound {
		c.cfg.Log.Warn("console: a retried task's failed record could not be deleted", "task_id", d.Task.TaskID, "err", err)
	}
	c.flash(w, r, "info", "Task "+d.Task.TaskID[:8]+" submitted again as "+sub.TaskID[:8]+".")
	http.Redirect(w, r, progressURL([]string{sub.TaskID}, nil)+"&k="+url.QueryEscape(d.KeyPairName), http.StatusSeeOther)
	return nil
}

func (c *Console) deleteFailedTask(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	if err := s.api.DeleteFailedTask(r.Context(), id); err != nil {
		return err
	}
	c.flash(w, r, "ok", "Failed task "+id[:min(8, len(id))]+" deleted.")
	http.Redirect(w, r, backTo(r, Prefix+"tasks/failed"), http.StatusSeeOther)
	return nil
}

func (c *Console) deleteFailedTasks(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := s.api.DeleteFailedTasks(r.Context()); err != nil {
		return err
	}
	c.flash(w, r, "ok", "Every failed task of the project was deleted.")
	http.Redirect(w, r, Prefix+"tasks/failed", http.StatusSeeOther)
	return nil
}

// backTo is the console page a form names in "back", else def.
func backTo(r *http.Request, def string) string {
	if b := r.PostForm.Get("back"); b != "" {
		return safeNext(b)
	}
	return def
}
