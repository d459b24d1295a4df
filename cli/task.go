package cli

import (
	"context"
	"fmt"
	"io"
	"iter"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
)

func (a *app) taskCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "task", Short: "follow, list, retry and delete tasks",
		Long:    "Task IDs may be shortened to a prefix that names one task of the running or failed list.",
		Example: "kps task list-failed\nkps task retry 3f2c\nkps task retry --all --code KPS.6601"}
	cmd.AddCommand(a.taskShow(), a.taskWait(), a.taskList(false), a.taskList(true), a.taskRetry(), a.taskDeleteFailed(), a.taskClearFailed())
	return cmd
}

// taskLister is a task list of the client, read page by page.
type taskLister func(context.Context, int) iter.Seq2[client.TaskEntry, error]

// uuidLen is the length of a task ID; shorter arguments are prefixes.
const uuidLen = 36

// taskFilter selects failed or running tasks.
type taskFilter struct{ server, keyPair, code string }

func (f *taskFilter) define(cmd *cobra.Command, a *app, codes bool) {
	cmd.Flags().StringVar(&f.server, "server", "", "only tasks of this server")
	cmd.Flags().StringVar(&f.keyPair, "keypair", "", "only tasks of this key pair")
	cmd.RegisterFlagCompletionFunc("server", a.completeServerList)
	cmd.RegisterFlagCompletionFunc("keypair", a.completeKeyPairs(1))
	if codes {
		cmd.Flags().StringVar(&f.code, "code", "", "only tasks that failed with this code (KPS.6603) or code prefix (KPS.66)")
	}
}

func (f *taskFilter) set() bool { return f.server != "" || f.keyPair != "" || f.code != "" }

func (f *taskFilter) match(t client.TaskEntry) bool {
	return (f.server == "" || t.ServerID == f.server) && (f.keyPair == "" || t.KeyPairName == f.keyPair) &&
		(f.code == "" || strings.HasPrefix(t.ErrorCode, f.code))
}

// findTasks resolves task IDs and prefixes against a task list: each argument must name one
// task. With full IDs only, the list is read only as far as needed (newest first).
func findTasks(ctx context.Context, list taskLister, args []string, which string) ([]client.TaskEntry, error) {
	matches := map[string][]client.TaskEntry{}
	full := true
	for _, arg := range args {
		if arg == "" {
			return nil, usagef("a task ID must not be empty")
		}
		full = full && len(arg) == uuidLen
	}
	found := 0
	for t, err := range list(ctx, 1000) {
		if err != nil {
			return nil, err
		}
		for _, arg := range args {
			if strings.HasPrefix(t.TaskID, arg) {
				if len(matches[arg]) == 0 {
					found++
				}
				matches[arg] = append(matches[arg], t)
			}
		}
		if full && found == len(args) {
			break
		}
	}
	out := make([]client.TaskEntry, 0, len(args))
	seen := map[string]bool{}
	for _, arg := range args {
		m := matches[arg]
		switch {
		case len(m) == 0:
			return nil, usagef("task %s is not in the %s-task list (kps task list-%s)", arg, which, which)
		case len(m) > 1:
			ids := make([]string, 0, 4)
			for _, t := range m[:min(len(m), 4)] {
				ids = append(ids, t.TaskID)
			}
			return nil, usagef("task ID prefix %s names %d %s tasks (%s…): give more of it", arg, len(m), which, strings.Join(ids, ", "))
		}
		if !seen[m[0].TaskID] {
			seen[m[0].TaskID] = true
			out = append(out, m[0])
		}
	}
	return out, nil
}

// taskView is a task with what the lists know of it: one object whatever its state.
type taskView struct {
	TaskID      string `json:"task_id"`
	ServerID    string `json:"server_id"`
	Status      string `json:"task_status"`
	ServerName  string `json:"server_name,omitempty"`
	KeyPairName string `json:"keypair_name,omitempty"`
	TaskTime    string `json:"task_time,omitempty"`
	ErrorCode   string `json:"task_error_code,omitempty"`
	ErrorMsg    string `json:"task_error_msg,omitempty"`
}

func (a *app) taskShow() *cobra.Command {
	cmd := &cobra.Command{Use: "show TASK_ID", Short: "status of one task; a failed one with its code and message",
		Args: exactArgs(1, "task ID"), ValidArgsFunction: a.completeTasks(true, true),
		Example: "kps task show 3f2c\nkps task show 3f2c9a1e-… -o json"}
	cmd.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		v, err := a.lookUpTask(ctx, cl, args[0])
		if err != nil {
			return err
		}
		return a.emit(v, func(w io.Writer) {
			details(w, "task_id", v.TaskID, "status", v.Status, "server", v.ServerID, "server_name", v.ServerName,
				"keypair", v.KeyPairName, "created", client.TaskEntry{TaskTime: v.TaskTime}.Created(),
				"error_code", v.ErrorCode, "error_msg", v.ErrorMsg)
		})
	})
	return cmd
}

// lookUpTask reads a task by ID or prefix, with the details of the list it is in.
func (a *app) lookUpTask(ctx context.Context, cl *client.Client, arg string) (*taskView, error) {
	id := arg
	if len(arg) != uuidLen {
		var hits []client.TaskEntry
		for _, list := range []taskLister{cl.FailedTasks, cl.RunningTasks} {
			for t, err := range list(ctx, 1000) {
				if err != nil {
					return nil, err
				}
				if strings.HasPrefix(t.TaskID, arg) {
					hits = append(hits, t)
				}
			}
		}
		switch len(hits) {
		case 0:
			// Not a prefix of a listed task: the service says whether the ID exists.
		case 1:
			id = hits[0].TaskID
		default:
			return nil, usagef("task ID prefix %s names %d tasks: give more of it", arg, len(hits))
		}
	}
	st, err := cl.Task(ctx, id)
	if err != nil {
		return nil, err
	}
	v := &taskView{TaskID: st.TaskID, ServerID: st.ServerID, Status: st.Status}
	var list taskLister
	switch client.StatusPhase(st.Status) {
	case kps.PhaseFailed:
		list = cl.FailedTasks
	case kps.PhaseReady, kps.PhaseRunning:
		list = cl.RunningTasks
	default:
		return v, nil
	}
	for t, err := range list(ctx, 1000) {
		if err != nil {
			return nil, err
		}
		if t.TaskID == id {
			v.ServerName, v.KeyPairName, v.TaskTime, v.ErrorCode, v.ErrorMsg = t.ServerName, t.KeyPairName, t.TaskTime, t.ErrorCode, t.ErrorMsg
			break
		}
	}
	return v, nil
}

func (a *app) taskList(failed bool) *cobra.Command {
	var limit int
	var f taskFilter
	cmd := &cobra.Command{Use: "list-running", Short: "tasks queued or running, newest first (all pages unless --limit)",
		Args: noArgs, Example: "kps task list-running\nkps task list-running --server web-01 -o json"}
	if failed {
		cmd.Use, cmd.Short = "list-failed", "failed tasks with time, server, code and message, newest first (all pages unless --limit)"
		cmd.Example = "kps task list-failed\nkps task list-failed --code KPS.6603\nkps task list-failed -o json | jq -r '.[].task_error_code'"
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many tasks")
	f.define(cmd, a, failed)
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		if limit < 0 {
			return usagef("--limit must not be negative")
		}
		cl, err := a.client()
		if err != nil {
			return err
		}
		list := cl.RunningTasks
		if failed {
			list = cl.FailedTasks
		}
		rows := []client.TaskEntry{}
		for t, err := range list(ctx, 1000) {
			if err != nil {
				return err
			}
			if !f.match(t) {
				continue
			}
			rows = append(rows, t)
			if limit > 0 && len(rows) == limit {
				break
			}
		}
		return a.emit(rows, func(w io.Writer) {
			cols := []string{"time", "task_id", "status", "server", "server_name", "keypair"}
			if failed {
				cols = append(cols, "code", "message")
			}
			t := newTable(w, cols...)
			for _, r := range rows {
				cells := []any{r.Created(), r.TaskID, r.Status, r.ServerID, r.ServerName, r.KeyPairName}
				if failed {
					cells = append(cells, r.ErrorCode, r.ErrorMsg)
				}
				t.row(cells...)
			}
			t.flush()
		})
	})
	return cmd
}

func (a *app) taskDeleteFailed() *cobra.Command {
	cmd := &cobra.Command{Use: "delete-failed TASK_ID...", Short: "delete failed-task records", Args: minArgs(1, "task ID"),
		ValidArgsFunction: a.completeTasks(true, false), Example: "kps task delete-failed 3f2c 9a1b"}
	cmd.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		ids := make([]string, 0, len(args))
		var prefixes []string
		for _, arg := range args {
			if len(arg) == uuidLen {
				ids = append(ids, arg)
			} else {
				prefixes = append(prefixes, arg)
			}
		}
		if len(prefixes) > 0 {
			found, err := findTasks(ctx, cl.FailedTasks, prefixes, "failed")
			if err != nil {
				return err
			}
			for _, t := range found {
				ids = append(ids, t.TaskID)
			}
		}
		return a.eachName(ids, "deleted", func(id string) error { return cl.DeleteFailedTask(ctx, id) })
	})
	return cmd
}

func (a *app) taskClearFailed() *cobra.Command {
	cmd := &cobra.Command{Use: "clear-failed", Short: "delete every failed-task record of the project", Args: noArgs,
		Example: "kps task clear-failed"}
	cmd.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		if err := cl.DeleteFailedTasks(ctx); err != nil {
			return err
		}
		return a.emitDone([]doneRow{{Name: "failed tasks", Result: "cleared"}})
	})
	return cmd
}

func (a *app) taskWait() *cobra.Command {
	cmd := &cobra.Command{Use: "wait TASK_ID...", Short: "wait for tasks to end, with progress and a summary (exit 3 if some failed)",
		Args: minArgs(1, "task ID"), ValidArgsFunction: a.completeTasks(false, true),
		Example: "kps task wait 3f2c 9a1b\nkps keypair bind web --servers-from fleet.txt --no-wait -o json | jq -r '.[].task_id' | xargs kps task wait"}
	cmd.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		var results []*outcome
		for _, arg := range args {
			v, err := a.lookUpTask(ctx, cl, arg)
			if err != nil {
				return err
			}
			results = append(results, &outcome{Server: v.ServerID, KeyPair: v.KeyPairName, TaskID: v.TaskID, Status: v.Status,
				Operation: string(client.StatusOperation(v.Status)), ErrorCode: v.ErrorCode, ErrorMsg: v.ErrorMsg})
		}
		return a.finishFleet(ctx, cl, results, false, "tasks")
	})
	return cmd
}

func (a *app) taskRetry() *cobra.Command {
	var f fleetFlags
	var filter taskFilter
	var all bool
	cmd := &cobra.Command{
		Use:   "retry [TASK_ID...]",
		Short: "submit failed tasks again; each new task replaces the failed record it retries",
		Long: "Each failed task is submitted again with the same key pair, server and operation, and its failed\n" +
			"record is deleted as soon as the new task is accepted: a task that fails again leaves one record,\n" +
			"its own. Select the tasks by ID (or prefix), or with --all and the filters. A REPLACE logs in\n" +
			"with the caller's credential, which the service never keeps: give it again (--auth-password-stdin,\n" +
			"--ask-auth-password or --auth-key-file). The original port and disable_password are not kept by\n" +
			"the service either: give --port and --disable-password again.",
		Example: "kps task retry 3f2c\n" +
			"kps task retry --all --code KPS.6601\n" +
			"kps task retry --all --keypair web --auth-key-file web-old.pem",
		ValidArgsFunction: a.completeTasks(true, false),
	}
	cmd.Flags().BoolVar(&all, "all", false, "retry every failed task (that the filters select)")
	filter.define(cmd, a, true)
	f.defineLogin(cmd, true)
	cmd.Flags().IntVar(&f.port, "port", 0, "SSH port for the new tasks (default: each server's)")
	cmd.Flags().BoolVar(&f.disablePassword, "disable-password", false, "turn password login off (binds only)")
	cmd.Flags().BoolVar(&f.noWait, "no-wait", false, "submit, print the new task IDs as SUBMITTED and return without waiting")
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		if len(args) == 0 && !all && !filter.set() {
			return usagef("give failed task IDs, or --all (with --server, --keypair or --code to select)")
		}
		if len(args) > 0 && all {
			return usagef("give task IDs or --all, not both")
		}
		login, cl, err := a.loginClient(&f)
		if err != nil {
			return err
		}
		var tasks []client.TaskEntry
		if len(args) > 0 {
			if tasks, err = findTasks(ctx, cl.FailedTasks, args, "failed"); err != nil {
				return err
			}
			var kept []client.TaskEntry
			for _, t := range tasks {
				if filter.match(t) {
					kept = append(kept, t)
				}
			}
			tasks = kept
		} else {
			for t, err := range cl.FailedTasks(ctx, 1000) {
				if err != nil {
					return err
				}
				if filter.match(t) {
					tasks = append(tasks, t)
				}
			}
		}
		if len(tasks) == 0 {
			return fmt.Errorf("no failed task to retry")
		}
		// Oldest first: on one server, the last task submitted is the one that counts.
		sort.SliceStable(tasks, func(i, j int) bool { return tasks[i].Created().Before(tasks[j].Created()) })
		var need []string
		for _, t := range tasks {
			if t.Operation() == kps.OpReplace && login == nil {
				need = append(need, t.TaskID)
			}
		}
		if len(need) > 0 {
			return usagef("task %s was a REPLACE: give the login credential again (--auth-password-stdin, --ask-auth-password or --auth-key-file)", strings.Join(need, ", "))
		}
		var cred *kps.Credential
		if login != nil {
			cred = login.cred
		}
		results := make([]*outcome, 0, len(tasks))
		for _, t := range tasks {
			o := &outcome{Server: t.ServerID, FailedTaskID: t.TaskID, KeyPair: t.KeyPairName, Operation: string(t.Operation())}
			results = append(results, o)
			if ctx.Err() != nil {
				continue
			}
			var s client.Submitted
			switch t.Operation() {
			case kps.OpUnbind:
				o.KeyPair, o.Previous = "", t.KeyPairName
				s, err = cl.Unbind(ctx, t.ServerID, cred)
			case kps.OpReset, kps.OpReplace:
				b := client.Bind{KeyPairName: t.KeyPairName, ServerID: t.ServerID, Port: f.port, DisablePassword: f.disablePassword}
				if t.Operation() == kps.OpReplace {
					b.Auth, b.KeepLoginKey = cred, f.keepLoginKey
				}
				s, err = cl.Bind(ctx, b)
			default:
				err = fmt.Errorf("task %s has an operation this command does not know: %s", t.TaskID, t.Status)
			}
			if ctx.Err() != nil || !o.submitted(s, err) {
				continue // not submitted: the interruption or the refusal says so
			}
			// The new task carries the retry now: whatever it ends with, it is the record.
			if err := cl.DeleteFailedTask(ctx, t.TaskID); err != nil && client.Code(err) != kps.ErrFailedNotFound {
				fmt.Fprintf(a.con.Stderr, "kps: task %s was submitted again as %s, but deleting its failed record failed: %v\n", t.TaskID, s.TaskID, inWords(err.Error()))
			}
		}
		return a.finishFleet(ctx, cl, results, f.noWait, "retries")
	})
	return cmd
}
