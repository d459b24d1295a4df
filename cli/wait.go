package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
)

// pollInterval is how often the service is asked while tasks run; heartbeat is how long a
// wait without news stays silent when standard error is not a terminal.
const (
	pollInterval = 250 * time.Millisecond
	heartbeat    = 10 * time.Second
)

// waitTasks polls the submitted tasks of results until each has ended, updating results in
// place, then reads the error codes of the failed ones. On a terminal it redraws one progress
// line on standard error: done/failed/total, the time, and the host it waits on; otherwise it
// prints a line per finished task and, every ten seconds without one, the host it waits on.
// Ctrl-C returns an interruptedError saying what goes on.
func (a *app) waitTasks(ctx context.Context, cl *client.Client, results []*outcome) error {
	w := a.con.Stderr
	bar := isTerminal(w)
	start := time.Now()
	var pending []*outcome
	for _, o := range results {
		if o.TaskID != "" && !client.Ended(o.Status) {
			pending = append(pending, o)
		}
	}
	total, done, failed := len(pending), 0, 0
	runningSince := map[string]time.Time{}
	news := time.Now()
	if !bar {
		fmt.Fprintf(w, "kps: waiting for %s (Ctrl-C stops waiting; the tasks go on)\n", plural(total, "task"))
	}
	for {
		if err := poll(ctx, cl, pending, runningSince); err != nil {
			if ctx.Err() != nil {
				if bar {
					fmt.Fprintln(w)
				}
				return a.interrupted(results)
			}
			return err
		}
		still := pending[:0]
		for _, o := range pending {
			if !client.Ended(o.Status) {
				still = append(still, o)
				continue
			}
			done++
			if o.failed() {
				failed++
			}
			news = time.Now()
			if !bar {
				fmt.Fprintf(w, "%s: %s (%d/%d)\n", o.Server, o.Status, done, total)
			}
		}
		pending = still
		elapsed := time.Since(start).Round(time.Second)
		if bar {
			const width = 20
			n := done * width / max(total, 1)
			fmt.Fprintf(w, "\r[%s%s] %d/%d done, %d failed, %s%s\x1b[K", strings.Repeat("#", n), strings.Repeat(" ", width-n),
				done, total, failed, elapsed, waitingOn(pending, runningSince))
		} else if len(pending) > 0 && time.Since(news) >= heartbeat {
			fmt.Fprintf(w, "kps: %d of %d tasks left after %s%s\n", len(pending), total, elapsed, waitingOn(pending, runningSince))
			news = time.Now()
		}
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			if bar {
				fmt.Fprintln(w)
			}
			return a.interrupted(results)
		case <-time.After(pollInterval):
		}
	}
	if bar {
		fmt.Fprintln(w)
	}
	return failureCodes(ctx, cl, results)
}

// poll reads the status of the pending tasks: one by one when they are few, else through the
// running-task list (one request for many tasks) and one read per task that left it.
func poll(ctx context.Context, cl *client.Client, pending []*outcome, runningSince map[string]time.Time) error {
	set := func(o *outcome, status string) {
		o.Status = status
		if client.StatusPhase(status) == kps.PhaseRunning {
			if _, ok := runningSince[o.TaskID]; !ok {
				runningSince[o.TaskID] = time.Now()
			}
		}
	}
	read := func(o *outcome) error {
		t, err := cl.Task(ctx, o.TaskID)
		if err != nil {
			if client.Code(err) == kps.ErrTaskNotFound {
				// Deleted meanwhile (a failed record cleared by someone): it ended, how is unknown.
				o.Status, o.ErrorMsg = "FAILED", "the task's record is gone"
				return nil
			}
			return err
		}
		set(o, t.Status)
		return nil
	}
	if len(pending) <= 5 {
		for _, o := range pending {
			if err := read(o); err != nil {
				return err
			}
		}
		return nil
	}
	running := map[string]string{}
	for t, err := range cl.RunningTasks(ctx, 1000) {
		if err != nil {
			return err
		}
		running[t.TaskID] = t.Status
	}
	for _, o := range pending {
		if st, ok := running[o.TaskID]; ok {
			set(o, st)
			continue
		}
		if err := read(o); err != nil {
			return err
		}
	}
	return nil
}

// waitingOn names the task running longest, the host a slow wait is most likely stuck on.
func waitingOn(pending []*outcome, runningSince map[string]time.Time) string {
	var oldest *outcome
	var since time.Time
	for _, o := range pending {
		if t, ok := runningSince[o.TaskID]; ok && client.StatusPhase(o.Status) == kps.PhaseRunning && (oldest == nil || t.Before(since)) {
			oldest, since = o, t
		}
	}
	switch {
	case oldest != nil:
		return fmt.Sprintf(", waiting on %s (running %s)", oldest.Server, time.Since(since).Round(time.Second))
	case len(pending) > 0:
		return ", waiting for a worker (queued)"
	}
	return ""
}

// failureCodes fills in the code and message of the failed tasks from the failed-task list,
// newest first, reading only as far as needed.
func failureCodes(ctx context.Context, cl *client.Client, results []*outcome) error {
	need := map[string]*outcome{}
	for _, o := range results {
		if o.TaskID != "" && client.StatusPhase(o.Status) == kps.PhaseFailed && o.ErrorCode == "" {
			need[o.TaskID] = o
		}
	}
	if len(need) == 0 {
		return nil
	}
	for t, err := range cl.FailedTasks(ctx, 1000) {
		if err != nil {
			return err
		}
		if o := need[t.TaskID]; o != nil {
			o.ErrorCode, o.ErrorMsg = t.ErrorCode, t.ErrorMsg
			delete(need, t.TaskID)
			if len(need) == 0 {
				break
			}
		}
	}
	return nil
}
