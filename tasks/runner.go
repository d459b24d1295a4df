// Package tasks executes KPS tasks: a bounded pool of workers claims READY tasks from the
// store under a lease, keeps the lease alive with a heartbeat while the host job runs, and
// ends every task exactly once through a guarded transition. A sweeper fails tasks whose
// worker vanished. The state machine is written down in docs/task-state-machine.md. What a
// task does on its host is decided by a kps.HostPlanner (package service) and done by a
// kps.HostExecutor (package sshhost); the runner holds the callers' credentials in memory
// between submission and claim. It imports the domain package only: the store, the planner
// and the executor come in as interfaces.
package tasks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/sshkey"
)

// Store is what the runner needs from persistence: the claims, leases, write marks and
// outcomes of tasks, the replicas' heartbeats, and the trust-on-first-use pin of a host key.
type Store interface {
	ClaimTaskPending(ctx context.Context, owner string, lease time.Duration) (*kps.Task, func() error, error)
	ClaimIdleProjectTask(ctx context.Context, owner string, lease time.Duration) (*kps.Task, error)
	ExtendLease(ctx context.Context, t *kps.Task, lease time.Duration) error
	MarkTaskWrite(ctx context.Context, t *kps.Task, step kps.HostWrite) error
	FinishTask(ctx context.Context, t *kps.Task, o kps.TaskOutcome) error
	FailExpiredTasks(ctx context.Context, all bool) (int, error)
	PurgeSucceededTasks(ctx context.Context, olderThan time.Duration) (int, error)
	kps.ReplicaStore
	PinHostKey(ctx context.Context, projectID, id, key string) ([]string, error)
}

// Config tunes the runner; zero values take the defaults.
type Config struct {
	Workers int // concurrent host jobs of any project, default 16
	// ReserveWorkers run, while all Workers are busy, only tasks of projects that have nothing
	// running: a project whose tasks hold every worker on hosts that stall cannot make another
	// project wait for the task timeout. Default 4; negative: none.
	ReserveWorkers int
	Lease          time.Duration // default 30s; heartbeats renew it every Lease/3
	TaskTimeout    time.Duration // whole task, default 120s (§3.1)
	Poll           time.Duration // idle polling interval, default 1s (Wake short-circuits it)
	Retention      time.Duration // SUCCESS tasks kept, default 7 days
	// SoleInstance fails every RUNNING task at start (nobody else can hold a lease), instead
	// of waiting for leases to expire. True with the embedded SQLite store.
	SoleInstance bool
	// Metrics counts the tasks this runner ends; nil counts nothing.
	Metrics Metrics
}

// Metrics counts what the runner ends (package metrics implements it).
type Metrics interface {
	// TaskEnded counts a task whose outcome this runner recorded: its operation, whether it
	// succeeded, the KPS code of its failure, and the time since its submission.
	TaskEnded(op kps.Operation, success bool, code string, sinceSubmission time.Duration)
	// TasksSwept counts tasks this runner's sweeper failed because their worker vanished.
	TasksSwept(n int)
}

// noMetrics counts nothing.
type noMetrics struct{}

func (noMetrics) TaskEnded(kps.Operation, bool, string, time.Duration) {}
func (noMetrics) TasksSwept(int)                                       {}

func (c *Config) defaults() {
	if c.Workers <= 0 {
		c.Workers = 16
	}
	if c.ReserveWorkers == 0 {
		c.ReserveWorkers = 4
	}
	if c.Lease <= 0 {
		c.Lease = 30 * time.Second
	}
	if c.TaskTimeout <= 0 {
		c.TaskTimeout = 120 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if c.Retention <= 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.Metrics == nil {
		c.Metrics = noMetrics{}
	}
}

// Runner is the worker pool. Start it once; Stop it once.
type Runner struct {
	store    Store
	planner  kps.HostPlanner
	executor kps.HostExecutor
	log      *slog.Logger
	cfg      Config
	owner    string

	wake        chan struct{}
	wakeReserve chan struct{}
	busy        atomic.Int64 // Workers running a task (reserve workers not counted)
	vault       sync.Map     // task ID → heldCredential of the caller, memory only (§2.11)
	cancel      context.CancelFunc
	jobs        context.Context // cancelled when Stop gives up waiting
	abort       context.CancelFunc
	wg          sync.WaitGroup
}

// New returns a runner that executes, with executor, the host jobs planner makes of the tasks
// it claims. It draws this process's replica ID, which names it in leases, in the replicas
// table and as the holder of the caller credentials it keeps.
func New(store Store, planner kps.HostPlanner, executor kps.HostExecutor, log *slog.Logger, cfg Config) *Runner {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := make([]byte, 8)
	rand.Read(b)
	return &Runner{store: store, planner: planner, executor: executor, log: log, cfg: cfg,
		owner: "kps-" + hex.EncodeToString(b), wake: make(chan struct{}, 1), wakeReserve: make(chan struct{}, 1)}
}

// Hold keeps a caller credential in memory for a task about to be submitted, and returns this
// replica's ID, which the submission records as the task's holder: only this replica claims
// the task while it is alive. The credential is never persisted: when this replica dies or
// stops, another one fails the task with KPS.6609 instead.
func (r *Runner) Hold(taskID string, c kps.Credential) string {
	r.vault.Store(taskID, heldCredential{cred: c, since: time.Now()})
	return r.owner
}

// heldCredential is a caller credential in the vault and when it was put there.
type heldCredential struct {
	cred  kps.Credential
	since time.Time
}

// Forget drops a held credential (the submission was refused).
func (r *Runner) Forget(taskID string) { r.vault.Delete(taskID) }

// Wake tells an idle worker that a task is waiting. One call is enough for any number of
// tasks: a worker that claims one wakes the next (see work). A reserve worker is told too: it
// looks only when every worker is busy.
func (r *Runner) Wake() {
	signal(r.wake)
	signal(r.wakeReserve)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Start recovers tasks left by a previous process, announces this replica (its heartbeat)
// and starts the workers and the sweeper.
func (r *Runner) Start(ctx context.Context) error {
	n, err := r.store.FailExpiredTasks(ctx, r.cfg.SoleInstance)
	if err != nil {
		return err
	}
	if n > 0 {
		r.log.Warn("tasks interrupted by a restart were failed", "count", n, "code", kps.TaskInterrupted)
		r.cfg.Metrics.TasksSwept(n)
	}
	if r.cfg.SoleInstance {
		// Nobody else can be alive: the credentials of tasks queued before the restart are
		// gone, so those tasks are anyone's (and fail with KPS.6609) without waiting. The
		// tasks this process will hold are its own to claim without a heartbeat, and nobody
		// else looks, so it announces nothing: no write every lease/3 on the single writer.
		if err := r.store.RemoveReplica(ctx, "", true); err != nil {
			return err
		}
	} else if err := r.store.HeartbeatReplica(ctx, r.owner, r.cfg.Lease); err != nil {
		return err
	}
	loop, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	r.jobs, r.abort = context.WithCancel(context.WithoutCancel(ctx))
	for range r.cfg.Workers {
		r.wg.Add(1)
		go r.work(loop)
	}
	for range max(r.cfg.ReserveWorkers, 0) {
		r.wg.Add(1)
		go r.reserve(loop)
	}
	r.wg.Add(1)
	go r.sweep(loop)
	if !r.cfg.SoleInstance {
		r.wg.Add(1)
		go r.announce(loop)
	}
	return nil
}

// Stop stops claiming, waits for jobs in flight until ctx ends, then interrupts them; each
// interrupted task ends FAILED with KPS.6609, so nothing is left RUNNING.
func (r *Runner) Stop(ctx context.Context) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		r.abort()
		<-done
	}
	r.abort()
	// The credentials held here die with the process: say so, so that other replicas fail
	// the tasks that needed them at once rather than after this replica's heartbeat expires.
	r.vault.Clear()
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	if err := r.store.RemoveReplica(rctx, r.owner, false); err != nil {
		r.log.Error("removing this replica from the replicas table failed", "replica", r.owner, "err", err)
	}
}

// announce renews this replica's heartbeat every Lease/3, so that the tasks whose caller
// credential it holds wait for it, however long the queue.
func (r *Runner) announce(ctx context.Context) {
	defer r.wg.Done()
	every(ctx, r.cfg.Lease/3, func() bool {
		if err := r.store.HeartbeatReplica(ctx, r.owner, r.cfg.Lease); err != nil && ctx.Err() == nil {
			r.log.Error("renewing the replica heartbeat failed", "replica", r.owner, "err", err)
		}
		return true
	})
}

// every calls f every d until ctx ends or f returns false.
func every(ctx context.Context, d time.Duration, f func() bool) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !f() {
			return
		}
	}
}

// dropStaleCredentials forgets credentials held for tasks that are no longer this replica's
// to run: another replica failed them while this one's heartbeat was late, or they ended.
// Credentials held for less than a lease are kept: their submission may still be in flight.
func (r *Runner) dropStaleCredentials(ctx context.Context) error {
	stale := false
	r.vault.Range(func(_, v any) bool {
		stale = time.Since(v.(heldCredential).since) > r.cfg.Lease
		return !stale
	})
	if !stale {
		return nil
	}
	ids, err := r.store.HeldTasks(ctx, r.owner)
	if err != nil {
		return err
	}
	ready := make(map[string]bool, len(ids))
	for _, id := range ids {
		ready[id] = true
	}
	r.vault.Range(func(k, v any) bool {
		if !ready[k.(string)] && time.Since(v.(heldCredential).since) > r.cfg.Lease {
			r.vault.CompareAndDelete(k, v)
		}
		return true
	})
	return nil
}

// work is a worker: it claims the tasks of any project, fairly (ClaimTask), one at a time.
func (r *Runner) work(ctx context.Context) {
	// The claim returns before it is durable: the worker logs in to the host while it commits,
	// and waits for it only before the host may change (run).
	claim := func(ctx context.Context) (*kps.Task, func() error, error) {
		return r.store.ClaimTaskPending(ctx, r.owner, r.cfg.Lease)
	}
	// After a claim more may be waiting: an idle sibling looks now, not once this task ends.
	// The claims follow one another (one writer), and the chain stops at the first worker that
	// finds nothing, so a batch costs one empty claim, not one per task. The reserve workers
	// are not woken: while one project keeps every worker busy they would look, after every
	// claim, for a project with nothing running; a submission (Wake) or their poll lets them
	// look.
	r.claimLoop(ctx, "", r.wake, claim, func(t *kps.Task, committed func() error) {
		r.busy.Add(1)
		r.run(t, committed)
		r.busy.Add(-1)
	})
}

// claimLoop claims a task with claim and runs it, until ctx ends; when there is nothing to
// claim it waits on wake, which it signals after each claim. who names the worker in a log
// line.
func (r *Runner) claimLoop(ctx context.Context, who string, wake chan struct{}, claim func(context.Context) (*kps.Task, func() error, error), run func(*kps.Task, func() error)) {
	defer r.wg.Done()
	for ctx.Err() == nil {
		t, committed, err := claim(ctx)
		if err != nil && ctx.Err() == nil {
			r.log.Error("claiming a task"+who+" failed", "err", err)
		}
		if t == nil {
			r.idle(ctx, wake)
			continue
		}
		signal(wake)
		run(t, committed)
	}
}

// reserve is a reserve worker (Config.ReserveWorkers). While every worker is busy, it claims
// only a task of a project that has nothing running (ClaimIdleProjectTask): the first task of
// a project waiting behind others starts at once, whatever holds the workers. A project
// running anything (a single project loading the fleet, say) never gets a reserve worker, so
// the reserve adds no concurrency to it; while a worker is free, the reserve leaves the claim
// to it. The claim is fair in either case: a worker that frees up takes a task of the project
// with the fewest running tasks (ClaimTask).
func (r *Runner) reserve(ctx context.Context) {
	claim := func(ctx context.Context) (*kps.Task, func() error, error) {
		if r.busy.Load() < int64(r.cfg.Workers) {
			return nil, nil, nil
		}
		t, err := r.store.ClaimIdleProjectTask(ctx, r.owner, r.cfg.Lease)
		return t, nil, err
	}
	// After a claim another idle project may be waiting too: the next reserve worker looks.
	r.claimLoop(ctx, " for a reserve worker", r.wakeReserve, claim, r.run)
}

// idle waits for a wake-up on wake, the poll interval, or the end.
func (r *Runner) idle(ctx context.Context, wake <-chan struct{}) {
	select {
	case <-ctx.Done():
	case <-wake:
	case <-time.After(r.cfg.Poll):
	}
}

func (r *Runner) sweep(ctx context.Context) {
	defer r.wg.Done()
	lastPurge := time.Time{}
	every(ctx, r.cfg.Lease/2, func() bool {
		if n, err := r.store.FailExpiredTasks(ctx, false); err != nil {
			r.log.Error("sweeping expired leases failed", "err", err)
		} else if n > 0 {
			r.log.Warn("tasks whose worker vanished were failed", "count", n, "code", kps.TaskInterrupted)
			r.cfg.Metrics.TasksSwept(n)
		}
		if err := r.dropStaleCredentials(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("checking held caller credentials failed", "err", err)
		}
		if time.Since(lastPurge) > time.Hour {
			lastPurge = time.Now()
			if _, err := r.store.PurgeSucceededTasks(ctx, r.cfg.Retention); err != nil {
				r.log.Error("purging succeeded tasks failed", "err", err)
			}
		}
		return true
	})
}

// run executes one claimed task and ends it. It never returns with the task RUNNING unless
// the lease was lost, in which case whoever holds the task now ends it. committed, when not
// nil, waits for the claim to be durable (kps.TaskStore.ClaimTaskPending): the job waits for
// it once logged in, before the host may change, and the outcome is recorded only once it
// returned nil. A claim undone with its commit group left the task READY: this worker drops it
// (the task runs again, claimed anew) and changes nothing.
func (r *Runner) run(t *kps.Task, committed func() error) {
	log := r.log.With("task_id", t.ID, "server_id", t.ServerID, "project_id", t.ProjectID, "operation", t.Operation)
	var claimErr error
	var claimOnce sync.Once
	claimed := func() error {
		claimOnce.Do(func() {
			if committed != nil {
				claimErr = committed()
			}
		})
		return claimErr
	}
	var caller *kps.Credential
	if v, held := r.vault.LoadAndDelete(t.ID); held {
		c := v.(heldCredential).cred
		caller = &c
	}

	ctx, cancel := context.WithTimeout(r.jobs, r.cfg.TaskTimeout)
	defer cancel()
	hbDone := make(chan struct{})
	lost := make(chan struct{})
	go r.heartbeat(ctx, t, cancel, hbDone, lost)

	var outcome kps.TaskOutcome
	plan, err := r.planner.PlanHostJob(ctx, t, caller)
	job := plan.Job
	// For the executor's log lines, which name the task's server and project as the runner's do.
	job.ServerID, job.ProjectID = t.ServerID, t.ProjectID
	if err == nil {
		r.attend(&job, t, claimed)
		var res kps.HostResult
		res, err = r.executor.Execute(ctx, job)
		if err != nil && plan.RetryWithoutRestore && kps.ErrorCode(err) == kps.TaskPrivileges {
			// Only a failed bind may have disabled password login, and without privileges it
			// cannot have (they are checked before any change): unbind without restoring.
			log.Info("no privileges to restore password login a failed bind may have disabled; unbinding without")
			job.RestorePassword = false
			res, err = r.executor.Execute(ctx, job)
		}
		if err == nil {
			outcome = plan.Outcome(t, res)
		}
	}
	cancel()
	<-hbDone
	if cerr := claimed(); cerr != nil {
		log.Error("the claim of the task was not committed; the task is left to run again", "err", cerr)
		if caller != nil { // for the worker that claims it again
			r.vault.Store(t.ID, heldCredential{cred: *caller, since: time.Now()})
		}
		return
	}
	select {
	case <-lost:
		log.Warn("task lease lost; its outcome is discarded", "err", err)
		return
	default:
	}
	if err != nil {
		outcome = failure(err, r.jobs.Err() != nil, job)
	}
	// The outcome is recorded while this worker goes on to claim its next task: the two
	// commits can share one (SQLite's group commit), and the worker does not wait for this
	// one's first (issue 18). The task stays RUNNING until it is recorded, so nothing else
	// can run on its server meanwhile. Stop waits for it (r.wg).
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		// Recorded even while shutting down: a fresh context, bounded in time.
		fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer fcancel()
		if ferr := r.store.FinishTask(fctx, t, outcome); errors.Is(ferr, kps.ErrLeaseLost) {
			log.Warn("task lease lost before its outcome was recorded")
		} else if ferr != nil {
			log.Error("recording a task outcome failed", "err", ferr)
		} else {
			r.cfg.Metrics.TaskEnded(t.Operation, outcome.Success, outcome.ErrorCode, time.Since(t.Created))
			if outcome.Success {
				log.Info("task succeeded")
			} else {
				log.Info("task failed", "code", outcome.ErrorCode, "reason", outcome.ErrorMsg)
			}
		}
	}()
}

func (r *Runner) heartbeat(ctx context.Context, t *kps.Task, cancel context.CancelFunc, done, lost chan struct{}) {
	defer close(done)
	every(ctx, r.cfg.Lease/3, func() bool {
		if err := r.store.ExtendLease(ctx, t, r.cfg.Lease); errors.Is(err, kps.ErrLeaseLost) {
			close(lost)
			cancel()
			return false
		} else if err != nil && ctx.Err() == nil {
			r.log.Error("renewing a task lease failed", "task_id", t.ID, "server_id", t.ServerID, "project_id", t.ProjectID, "err", err)
		}
		return true
	})
}

// failure turns an executor or preparation error into the failed outcome.
func failure(err error, shuttingDown bool, job kps.HostJob) kps.TaskOutcome {
	code, msg := kps.ErrorCode(err), kps.ErrorMessage(err)
	switch {
	case shuttingDown:
		code, msg = kps.TaskInterrupted, "Task interrupted by a service shutdown."
	case errors.Is(err, context.DeadlineExceeded) && code == kps.ErrInternal:
		code, msg = kps.TaskTimeout, "The task deadline was exceeded on "+hostPort(job)+"."
	case code == kps.ErrInternal:
		code, msg = kps.TaskRemoteFailed, "The task failed unexpectedly on "+hostPort(job)+"."
	}
	return kps.TaskOutcome{ErrorCode: code, ErrorMsg: msg}
}

func hostPort(j kps.HostJob) string {
	if j.Address == "" {
		return "the server"
	}
	return net.JoinHostPort(j.Address, strconv.Itoa(j.Port))
}

// attend gives job what it tells the runner on the way: the host key it met on first use,
// which is pinned (trust on first use, under the store's guard), and each write step it is
// about to begin, which is recorded under the lease before the job may go on.
func (r *Runner) attend(job *kps.HostJob, t *kps.Task, claimed func() error) {
	// Nothing on the host changes before the claim is durable: after a crash the task is READY
	// (and nothing was done) or RUNNING (and the restart fails it, KPS.6609), as before the
	// claim returned early.
	job.AfterLogin = func(context.Context) error {
		if err := claimed(); err != nil {
			return kps.Errorf(kps.TaskInterrupted, "Task interrupted: the claim of the task was not recorded before writing to %s.", hostPort(*job))
		}
		return nil
	}
	job.PinHostKey = func(ctx context.Context, key string) error {
		pins, err := r.store.PinHostKey(ctx, t.ProjectID, t.ServerID, key)
		if err != nil {
			return err
		}
		for _, p := range pins {
			if sshkey.SameKeyLine(p, key) {
				return nil
			}
		}
		return kps.Errorf(kps.TaskHostKeyMismatch, "The host key of %s does not match the key recorded for server '%s'.", hostPort(*job), t.ServerID)
	}
	// The mark is committed (under the lease: a worker that lost its task is told so and
	// writes nothing) before the job goes on, so a crash at any point leaves a mark exactly
	// when the host may have been changed. Only a bind with a mark may have left its key
	// behind or turned password login off (kps.TaskStore.UnconfirmedKeys).
	job.BeforeWrite = func(ctx context.Context, step kps.HostWrite) error {
		err := r.store.MarkTaskWrite(ctx, t, step)
		if errors.Is(err, kps.ErrLeaseLost) {
			return kps.Errorf(kps.TaskInterrupted, "Task interrupted: this worker lost the task before writing to %s.", hostPort(*job))
		}
		if err != nil {
			return fmt.Errorf("recording the write step %s of task %s: %w", step, t.ID, err)
		}
		return nil
	}
}
