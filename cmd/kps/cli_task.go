package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/openkps/kps/api"
)

func taskCommand() *cliCommand {
	return &cliCommand{name: "task", short: "show, list, retry and delete tasks",
		examples: []string{"kps task list-failed", "kps task retry 3f2c…"},
		subs: []*cliCommand{
			{name: "show", args: "TASK_ID", short: "status of one task",
				examples: []string{"kps task show 3f2c…", "kps task show 3f2c… -o json"},
				setup:    taskShow},
			{name: "list-running", short: "tasks being processed (all pages unless --limit)",
				examples: []string{"kps task list-running"}, setup: taskList("/running-tasks", "task_id", "operate_type", "server_id", "server_name", "keypair_name", "task_time")},
			{name: "list-failed", short: "failed tasks with their error codes (all pages unless --limit)",
				examples: []string{"kps task list-failed", "kps task list-failed -o json | jq '.[].task_error_code'"},
				setup:    taskList("/failed-tasks", "task_id", "operate_type", "server_id", "keypair_name", "task_error_code", "task_error_msg")},
			{name: "delete-failed", args: "TASK_ID...", short: "delete failed-task records",
				examples: []string{"kps task delete-failed 3f2c… 9a1b…"}, setup: taskDeleteFailed},
			{name: "clear-failed", short: "delete every failed-task record of the project",
				examples: []string{"kps task clear-failed"}, setup: taskClearFailed},
			{name: "retry", args: "TASK_ID...", short: "re-submit failed tasks; a success deletes the failed record",
				long: "Each failed task is submitted again with the same key pair, server and operation. A REPLACE\n" +
					"needs the login credential again (--auth-password-stdin or --auth-key-file). The original\n" +
					"port and disable_password are not kept by the service: give --port / --disable-password again.",
				examples: []string{"kps task retry 3f2c…", "kps task retry 3f2c… --auth-key-file old.pem"},
				setup:    taskRetry},
		}}
}

func taskShow(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		id, err := exactlyOne(args, "task ID")
		if err != nil {
			return err
		}
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		var t map[string]any
		if err := cl.Do(ctx, "GET", base+"/tasks/"+url.PathEscape(id), nil, &t); err != nil {
			return err
		}
		return c.emit(t, func(w io.Writer) { detailTable(w, t) })
	}
}

// pageTasks reads a limit/offset task list, all of it unless limit > 0.
func pageTasks(ctx context.Context, cl *api.Client, path string, limit int) ([]map[string]any, error) {
	all := []map[string]any{}
	for {
		size := 1000
		if limit > 0 {
			size = min(size, limit-len(all))
		}
		var resp struct {
			Total int              `json:"total"`
			Tasks []map[string]any `json:"tasks"`
		}
		q := url.Values{"limit": {strconv.Itoa(size)}, "offset": {strconv.Itoa(len(all))}}
		if err := cl.Do(ctx, "GET", path+"?"+q.Encode(), nil, &resp); err != nil {
			return nil, err
		}
		all = append(all, resp.Tasks...)
		if len(resp.Tasks) == 0 || len(all) >= resp.Total || (limit > 0 && len(all) >= limit) {
			return all, nil
		}
	}
}

func taskList(path string, cols ...string) func(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	return func(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
		limit := fs.Int("limit", 0, "at most this many tasks (default: all, page by page)")
		return func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unexpected arguments %q", args)}
			}
			cl, base, err := c.client()
			if err != nil {
				return err
			}
			tasks, err := pageTasks(ctx, cl, base+path, *limit)
			if err != nil {
				return err
			}
			return c.emit(tasks, func(w io.Writer) { listTable(w, tasks, cols...) })
		}
	}
}

var taskDeleteFailed = deleteEach("task ID", "deleted", func(base, id string) string {
	return base + "/failed-tasks/" + url.PathEscape(id)
})

func taskClearFailed(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Errorf("unexpected arguments %q", args)}
		}
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		if err := cl.Do(ctx, "DELETE", base+"/failed-tasks", nil, nil); err != nil {
			return err
		}
		fmt.Fprintln(c.con.stdout, "failed tasks cleared")
		return nil
	}
}

// authFlags are the caller's login credential for a host: a password on standard input or a
// private key file, never a flag value.
type authFlags struct {
	passwordStdin bool
	keyFile       string
}

func (a *authFlags) define(fs *flag.FlagSet) {
	fs.BoolVar(&a.passwordStdin, "auth-password-stdin", false, "read the hosts' login password from standard input (REPLACE)")
	fs.StringVar(&a.keyFile, "auth-key-file", "", "private key file that logs in to the hosts (REPLACE)")
}

// auth returns the associate `auth` object, nil when none was given.
func (a *authFlags) auth(con console) (map[string]any, error) {
	switch {
	case a.passwordStdin && a.keyFile != "":
		return nil, usageError{errors.New("give --auth-password-stdin or --auth-key-file, not both")}
	case a.passwordStdin:
		pw, err := readSecret(con, true, "", "")
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "password", "key": pw}, nil
	case a.keyFile != "":
		b, err := os.ReadFile(a.keyFile)
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "keypair", "key": string(b)}, nil
	}
	return nil, nil
}

// serverList reads --servers a,b,c and --servers-from FILE (one ID a line, # comments).
func serverList(servers, from string, con console) ([]string, error) {
	var ids []string
	for _, s := range strings.Split(servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			ids = append(ids, s)
		}
	}
	if from != "" {
		text, err := readFileFlag(con, from)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(strings.NewReader(text))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line != "" && !strings.HasPrefix(line, "#") {
				ids = append(ids, strings.Fields(line)[0])
			}
		}
	}
	seen := map[string]bool{}
	out := ids[:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return nil, usageError{errors.New("give --servers a,b,c or --servers-from FILE")}
	}
	return out, nil
}

// outcome is one server's line of a fleet summary.
type outcome struct {
	Server    string `json:"server_id"`
	TaskID    string `json:"task_id,omitempty"`
	Status    string `json:"status"`
	ErrorCode string `json:"error_code,omitempty"`
	ErrorMsg  string `json:"error_msg,omitempty"`
}

func (o outcome) failed() bool { return !strings.HasPrefix(o.Status, "SUCCESS") }

func keypairBind(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	var servers, from string
	var port int
	var disablePassword, noWait bool
	var a authFlags
	fs.StringVar(&servers, "servers", "", "comma-separated server IDs")
	fs.StringVar(&from, "servers-from", "", "file with one server ID a line (- for standard input)")
	fs.IntVar(&port, "port", 0, "SSH port for these tasks (default: each server's)")
	fs.BoolVar(&disablePassword, "disable-password", false, "disable password login on the hosts")
	fs.BoolVar(&noWait, "no-wait", false, "submit and print the task IDs without waiting")
	a.define(fs)
	return func(ctx context.Context, args []string) error {
		name, err := exactlyOne(args, "key pair name")
		if err != nil {
			return err
		}
		ids, err := serverList(servers, from, c.con)
		if err != nil {
			return err
		}
		if from == "-" && a.passwordStdin {
			return usageError{errors.New("standard input cannot carry both the server list and the password")}
		}
		auth, err := a.auth(c.con)
		if err != nil {
			return err
		}
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		var results []outcome
		for start := 0; start < len(ids); start += 10 {
			batch := ids[start:min(start+10, len(ids))]
			items := make([]any, len(batch))
			for i, id := range batch {
				srv := map[string]any{"id": id}
				if disablePassword {
					srv["disable_password"] = true
				}
				if port != 0 {
					srv["port"] = port
				}
				if auth != nil {
					srv["auth"] = auth
				}
				items[i] = map[string]any{"keypair_name": name, "server": srv}
			}
			var resp struct {
				Tasks []outcome `json:"tasks"`
			}
			if err := cl.Do(ctx, "POST", base+"/keypairs/batch-associate", map[string]any{"batch_keypairs": items}, &resp); err != nil {
				if len(results) == 0 {
					return err
				}
				// Earlier batches are running: report this one as refused and go on waiting.
				for _, id := range batch {
					results = append(results, outcome{Server: id, Status: "FAILED", ErrorCode: kpsCode(err), ErrorMsg: err.Error()})
				}
				continue
			}
			results = append(results, resp.Tasks...)
		}
		return c.fleetSummary(ctx, cl, base, results, noWait)
	}
}

func keypairUnbind(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	var servers, from string
	var noWait bool
	var a authFlags
	fs.StringVar(&servers, "servers", "", "comma-separated server IDs")
	fs.StringVar(&from, "servers-from", "", "file with one server ID a line")
	fs.BoolVar(&noWait, "no-wait", false, "submit and print the task IDs without waiting")
	a.define(fs)
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Errorf("unexpected arguments %q: unbind takes --servers", args)}
		}
		ids, err := serverList(servers, from, c.con)
		if err != nil {
			return err
		}
		auth, err := a.auth(c.con)
		if err != nil {
			return err
		}
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		var results []outcome
		for _, id := range ids {
			o, err := submitUnbind(ctx, cl, base, id, auth)
			if err != nil {
				o = outcome{Server: id, Status: "FAILED", ErrorCode: kpsCode(err), ErrorMsg: err.Error()}
			}
			results = append(results, o)
		}
		return c.fleetSummary(ctx, cl, base, results, noWait)
	}
}

func submitUnbind(ctx context.Context, cl *api.Client, base, server string, auth map[string]any) (outcome, error) {
	srv := map[string]any{"id": server}
	if auth != nil {
		srv["auth"] = auth
	}
	var o outcome
	err := cl.Do(ctx, "POST", base+"/keypairs/disassociate", map[string]any{"server": srv}, &o)
	return o, err
}

// kpsCode is the KPS code an error carries ("" when none).
func kpsCode(err error) string {
	if err == nil {
		return ""
	}
	code, _, _ := strings.Cut(err.Error(), ":")
	if strings.HasPrefix(code, "KPS.") {
		return code
	}
	return ""
}

// fleetSummary waits for the submitted tasks with a progress display, fills in the error codes
// of the failed ones and prints the summary. Some failures are exit code 3, all of them 1.
func (c *cliContext) fleetSummary(ctx context.Context, cl *api.Client, base string, results []outcome, noWait bool) error {
	if !noWait {
		if err := c.waitTasks(ctx, cl, base, results); err != nil {
			return err
		}
	}
	failed := 0
	for _, r := range results {
		if r.failed() {
			failed++
		}
	}
	rows := make([]map[string]any, len(results))
	for i, r := range results {
		rows[i] = map[string]any{"server_id": r.Server, "task_id": r.TaskID, "status": r.Status, "error_code": r.ErrorCode, "error_msg": r.ErrorMsg}
	}
	if err := c.emit(results, func(w io.Writer) {
		listTable(w, rows, "server_id", "task_id", "status", "error_code", "error_msg")
		fmt.Fprintf(w, "%d succeeded, %d failed\n", len(results)-failed, failed)
	}); err != nil {
		return err
	}
	return batchOutcome(failed, len(results), "servers")
}

// pollInterval is how often task status is read while waiting.
const pollInterval = 200 * time.Millisecond

// waitTasks polls the accepted tasks of results until each has ended, updating results in
// place. On a terminal it draws a progress bar on standard error; otherwise it prints one
// plain line per finished task there.
func (c *cliContext) waitTasks(ctx context.Context, cl *api.Client, base string, results []outcome) error {
	bar := isTerminal(c.con.stderr)
	pending, done := 0, 0
	for _, r := range results {
		if r.TaskID != "" {
			pending++
		}
	}
	total := pending
	for i, r := range results {
		if r.TaskID == "" {
			// Refused at submission: the answer carried its code.
			results[i].Status = "FAILED"
			if !bar {
				fmt.Fprintf(c.con.stderr, "%s: refused %s %s\n", r.Server, r.ErrorCode, r.ErrorMsg)
			}
		} else {
			results[i].Status = ""
		}
	}
	draw := func() {
		if bar && total > 0 {
			const width = 30
			n := done * width / total
			fmt.Fprintf(c.con.stderr, "\r[%s%s] %d/%d", strings.Repeat("#", n), strings.Repeat(" ", width-n), done, total)
		}
	}
	draw()
	for pending > 0 {
		for i, r := range results {
			if r.TaskID == "" || r.Status != "" {
				continue
			}
			var t struct {
				Status string `json:"task_status"`
			}
			if err := cl.Do(ctx, "GET", base+"/tasks/"+url.PathEscape(r.TaskID), nil, &t); err != nil {
				return err
			}
			if strings.HasPrefix(t.Status, "SUCCESS_") || strings.HasPrefix(t.Status, "FAILED_") {
				results[i].Status = t.Status
				pending--
				done++
				if !bar {
					fmt.Fprintf(c.con.stderr, "%s: %s (%d/%d)\n", r.Server, t.Status, done, total)
				}
				draw()
			}
		}
		if pending == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
	if bar && total > 0 {
		fmt.Fprintln(c.con.stderr)
	}
	// The codes of failed tasks are in the failed-task list.
	var need bool
	for _, r := range results {
		need = need || (r.TaskID != "" && r.failed())
	}
	if !need {
		return nil
	}
	failedList, err := pageTasks(ctx, cl, base+"/failed-tasks", 0)
	if err != nil {
		return err
	}
	byID := map[string]map[string]any{}
	for _, f := range failedList {
		byID[cell("", f["task_id"])] = f
	}
	for i, r := range results {
		if f, ok := byID[r.TaskID]; ok && r.TaskID != "" {
			results[i].ErrorCode, results[i].ErrorMsg = cell("", f["task_error_code"]), cell("", f["task_error_msg"])
		}
	}
	return nil
}

// operation is the operation of a failed-task entry, whose operate_type is its wire status
// (FAILED_REPLACE).
func operation(f map[string]any) string {
	op := cell("", f["operate_type"])
	return op[strings.LastIndex(op, "_")+1:]
}

func taskRetry(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	var a authFlags
	var port int
	var disablePassword bool
	a.define(fs)
	fs.IntVar(&port, "port", 0, "SSH port for the new tasks (default: each server's)")
	fs.BoolVar(&disablePassword, "disable-password", false, "disable password login (binds only)")
	return func(ctx context.Context, args []string) error {
		if len(args) == 0 {
			return usageError{errors.New("give at least one failed task ID")}
		}
		auth, err := a.auth(c.con)
		if err != nil {
			return err
		}
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		failedList, err := pageTasks(ctx, cl, base+"/failed-tasks", 0)
		if err != nil {
			return err
		}
		byID := map[string]map[string]any{}
		for _, f := range failedList {
			byID[cell("", f["task_id"])] = f
		}
		var results []outcome
		var olds []string
		for _, id := range args {
			f, ok := byID[id]
			if !ok {
				return usageError{fmt.Errorf("task %s is not in the failed-task list", id)}
			}
			if operation(f) == "REPLACE" && auth == nil {
				return usageError{fmt.Errorf("task %s was a REPLACE: give the login credential again (--auth-password-stdin or --auth-key-file)", id)}
			}
		}
		for _, id := range args {
			f := byID[id]
			server := cell("", f["server_id"])
			var o outcome
			switch op := operation(f); op {
			case "UNBIND":
				o, err = submitUnbind(ctx, cl, base, server, auth)
			case "RESET", "REPLACE":
				srv := map[string]any{"id": server}
				if op == "REPLACE" {
					srv["auth"] = auth
				}
				if port != 0 {
					srv["port"] = port
				}
				if disablePassword {
					srv["disable_password"] = true
				}
				err = cl.Do(ctx, "POST", base+"/keypairs/associate", map[string]any{"keypair_name": f["keypair_name"], "server": srv}, &o)
			default:
				err = fmt.Errorf("task %s: unknown operation %q", id, op)
			}
			if err != nil {
				o = outcome{Server: server, Status: "FAILED", ErrorCode: kpsCode(err), ErrorMsg: err.Error()}
			}
			results = append(results, o)
			olds = append(olds, id)
		}
		if err := c.waitTasks(ctx, cl, base, results); err != nil {
			return err
		}
		rows := make([]map[string]any, len(results))
		failed := 0
		for i, r := range results {
			if r.failed() {
				failed++
			} else if err := cl.Do(ctx, "DELETE", base+"/failed-tasks/"+url.PathEscape(olds[i]), nil, nil); err != nil {
				fmt.Fprintf(c.con.stderr, "kps: retry of %s succeeded but deleting its failed record failed: %v\n", olds[i], err)
			}
			rows[i] = map[string]any{"failed_task_id": olds[i], "server_id": r.Server, "task_id": r.TaskID, "status": r.Status, "error_code": r.ErrorCode, "error_msg": r.ErrorMsg}
		}
		if err := c.emit(rows, func(w io.Writer) {
			listTable(w, rows, "failed_task_id", "server_id", "task_id", "status", "error_code", "error_msg")
		}); err != nil {
			return err
		}
		return batchOutcome(failed, len(results), "retries")
	}
}
