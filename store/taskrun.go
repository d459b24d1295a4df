package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/openkps/kps"
)

// The task state machine (kps.CanTransition) is enforced by guarded statements: every change of
// phase names the phase it expects in its WHERE clause, and a worker's changes also name the
// lease (owner and attempt) it holds. A statement that changes no row did not happen.
// guardedTransitions lists them; TestGuardedTransitions holds them to kps.CanTransition and to
// docs/task-state-machine.md.

const (
	extendLease = `UPDATE tasks SET lease_expires = ?
WHERE id = ? AND phase = 'RUNNING' AND lease_owner = ? AND attempt = ?`
	finishRunningTask = `UPDATE tasks SET phase = ?, error_code = ?, error_msg = ?, updated = ?
WHERE id = ? AND phase = 'RUNNING' AND lease_owner = ? AND attempt = ?
RETURNING project_id, operation, server_id, keypair_name`
	// The statements that change tasks of several projects, or of a project the caller did not
	// name, return the projects: their task versions change with them (taskversion.go).
	failExpiredTasks = `UPDATE tasks SET phase = 'FAILED', error_code = ?, error_msg = ?, updated = ?
WHERE phase = 'RUNNING' AND lease_expires < ?
RETURNING project_id`
	failRunningTasks = `UPDATE tasks SET phase = 'FAILED', error_code = ?, error_msg = ?, updated = ?
WHERE phase = 'RUNNING'
RETURNING project_id`
	purgeSucceededTasks = `DELETE FROM tasks WHERE phase = 'SUCCESS' AND created < ?
RETURNING project_id`

	upsertBinding = `INSERT INTO bindings (project_id, server_id, keypair_name, public_key,
    password_disabled, updated)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (project_id, server_id) DO UPDATE SET keypair_name = excluded.keypair_name,
    public_key = excluded.public_key, password_disabled = excluded.password_disabled,
    updated = excluded.updated`
	deleteBinding = `DELETE FROM bindings WHERE project_id = ? AND server_id = ?`
	// The write marks, guarded like the heartbeat: a worker that lost its lease records nothing
	// and is told so before it writes.
	markKeyWrite = `UPDATE tasks SET key_write_reached = TRUE
WHERE id = ? AND phase = 'RUNNING' AND lease_owner = ? AND attempt = ?`
	markConfigWrite = `UPDATE tasks SET config_write_reached = TRUE
WHERE id = ? AND phase = 'RUNNING' AND lease_owner = ? AND attempt = ?`
)

// claimable is the claim rule every engine's claim statement applies to a READY task of the
// table named alias (args: owner, now): a task without the caller's credential is anyone's;
// one with it is its holder's, or anyone's once the holder has no fresh heartbeat (it died, and
// the credential with it).
func claimable(alias string) string {
	return `(NOT ` + alias + `.caller_auth OR ` + alias + `.holder = ?
      OR NOT EXISTS (SELECT 1 FROM replicas r WHERE r.id = ` + alias + `.holder AND r.expires >= ?))`
}

// claimStatement is the fair claim (args: owner, lease_expires, updated, owner, now): of the
// projects with a claimable READY task, the one with the fewest RUNNING tasks (idleOnly: only
// one with none) gives its oldest claimable task (creation time, then insertion order); ties
// between projects go to the project whose oldest READY task is older. Fewest running first is
// what shares the workers: a project with a thousand queued tasks gets the next free worker
// only when no project with fewer running tasks waits.
//
// It reads no row per READY task. ready walks the projects that have READY tasks through the
// index tasks_ready_by_project, one lookup per project (a loose index scan, written as a
// recursive query because neither engine skips through an index by itself); for each,
// candidates has the RUNNING count (a range of tasks_by_project_phase) and the oldest READY
// task (the first entry of tasks_ready_by_project, from the index alone). So a claim costs a
// few index lookups per project that has READY tasks (docs/RELIABILITY.md §8). In the order
// of the candidates, the first project with a claimable task (claimable: the caller's
// credential rule) gives it.
//
// PostgreSQL runs the claims of several workers and replicas at once, under READ COMMITTED
// (rowLocks): the claimable task is looked up project after project, in candidate order, with
// FOR UPDATE SKIP LOCKED, so a claim whose project's next task another claim has locked takes
// the task after it, and only the row taken is locked (its phase is checked again once locked:
// a task claimed since the statement's snapshot is passed over). SQLite has one writer: the
// claimable task of every candidate is looked up, and the best one taken.
func claimStatement(rowLocks, idleOnly bool) string {
	idle := ""
	if idleOnly {
		idle = "WHERE c.running = 0"
	}
	return `WITH RECURSIVE ready(project_id) AS (
    SELECT (SELECT project_id FROM tasks WHERE phase = 'READY' ORDER BY project_id LIMIT 1)
    UNION ALL
    SELECT (SELECT t.project_id FROM tasks t WHERE t.phase = 'READY' AND t.project_id > ready.project_id
            ORDER BY t.project_id LIMIT 1)
    FROM ready WHERE ready.project_id IS NOT NULL
),
candidates(project_id, running, created, seq) AS MATERIALIZED (
    SELECT ready.project_id,
        (SELECT COUNT(*) FROM tasks r WHERE r.project_id = ready.project_id AND r.phase = 'RUNNING'),
        (SELECT t.created FROM tasks t WHERE t.project_id = ready.project_id AND t.phase = 'READY'
         ORDER BY t.created, t.seq LIMIT 1),
        (SELECT t.seq FROM tasks t WHERE t.project_id = ready.project_id AND t.phase = 'READY'
         ORDER BY t.created, t.seq LIMIT 1)
    FROM ready WHERE ready.project_id IS NOT NULL
)
UPDATE tasks
SET phase = 'RUNNING', lease_owner = ?, lease_expires = ?, attempt = attempt + 1, updated = ?
WHERE seq = (` + claimChoice(rowLocks, idle) + `)
  AND phase = 'READY'
RETURNING ` + taskColumns
}

// claimChoice is the last step of claimStatement: the claimable task of the first candidate
// that has one.
func claimChoice(rowLocks bool, idle string) string {
	next := `FROM tasks t WHERE t.project_id = c.project_id AND t.phase = 'READY' AND ` + claimable("t") + `
                ORDER BY t.created, t.seq LIMIT 1`
	if rowLocks {
		// The candidates are sorted first and the lateral lookups run in that order, lazily:
		// the Limit stops at the first project that gives a task.
		return `SELECT x.seq FROM (SELECT * FROM candidates c ` + idle + ` ORDER BY c.running, c.created, c.seq) c
        CROSS JOIN LATERAL (SELECT t.seq ` + next + ` FOR UPDATE SKIP LOCKED) AS x
        ORDER BY c.running, c.created, c.seq LIMIT 1`
	}
	return `SELECT x.seq FROM (SELECT (SELECT t.seq ` + next + `) AS seq, c.running, c.created, c.seq AS first
            FROM candidates c ` + idle + `) x
        WHERE x.seq IS NOT NULL ORDER BY x.running, x.created, x.first LIMIT 1`
}

// maxErrorMsg caps the error message a failed task keeps, in bytes. The messages are the
// service's own, but some quote what a host sent (its offered algorithms, a refused prompt);
// the failed-task index (migration 0006) holds the message, and a PostgreSQL index entry must
// stay under about 2,700 bytes with the server's name and ID beside it.
const maxErrorMsg = 1000

// capErrorMsg cuts msg to maxErrorMsg bytes at a character boundary, marking the cut with "…".
func capErrorMsg(msg string) string {
	if len(msg) <= maxErrorMsg {
		return msg
	}
	const ellipsis = "…"
	cut := maxErrorMsg - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + ellipsis
}

// interruptedMessage is the outcome of a task whose worker vanished (§3.1).
const interruptedMessage = "Task interrupted by a service restart."

// guardedTransitions are the statements that change a task's phase, each with the transition
// its guard and its SET make: the state machine as the database runs it. Every method below
// asserts its edge (transition) before it runs its statement; TestGuardedTransitions checks
// that the statements' SQL says what is listed here, and that the list is exactly
// kps.CanTransition.
var guardedTransitions = []struct {
	From, To  kps.Phase
	Statement string
	Source    string // the constant or function that makes the statement
	Used      string // the method that runs it
}{
	{kps.PhaseReady, kps.PhaseRunning, sqliteClaimTask, "claimStatement", "ClaimTask (SQLite)"},
	{kps.PhaseReady, kps.PhaseRunning, sqliteClaimIdleTask, "claimStatement", "ClaimIdleProjectTask (SQLite)"},
	{kps.PhaseReady, kps.PhaseRunning, postgresClaimTask, "claimStatement", "ClaimTask (PostgreSQL)"},
	{kps.PhaseReady, kps.PhaseRunning, postgresClaimIdleTask, "claimStatement", "ClaimIdleProjectTask (PostgreSQL)"},
	{kps.PhaseRunning, kps.PhaseSuccess, finishRunningTask, "finishRunningTask", "FinishTask"},
	{kps.PhaseRunning, kps.PhaseFailed, finishRunningTask, "finishRunningTask", "FinishTask"},
	{kps.PhaseRunning, kps.PhaseFailed, failExpiredTasks, "failExpiredTasks", "FailExpiredTasks"},
	{kps.PhaseRunning, kps.PhaseFailed, failRunningTasks, "failRunningTasks", "FailExpiredTasks (all)"},
}

// transition asserts the state machine in code: the guarded statements must only ever encode
// transitions kps.CanTransition allows.
func transition(from, to kps.Phase) error {
	if !kps.CanTransition(from, to) {
		return fmt.Errorf("task transition %s → %s is not allowed", from, to)
	}
	return nil
}

// ClaimTask moves a READY task that owner may claim to RUNNING under a lease held by owner until
// now+lease, incrementing its attempt; nil when there is none. It takes the oldest task
// (creation time, then insertion order) of the project with the fewest RUNNING tasks
// (claimStatement). owner is the claiming replica's ID: a task needing the caller's credential
// is skipped while another replica holds it and that replica's heartbeat is fresh
// (HeartbeatReplica); once the holder is gone, anyone claims it (and fails it with KPS.6609).
// One guarded statement in one write transaction: concurrent claimers never get the same task.
func (db *DB) ClaimTask(ctx context.Context, owner string, lease time.Duration) (*kps.Task, error) {
	return db.claim(ctx, db.eng.claimTask, owner, lease)
}

// ClaimIdleProjectTask is ClaimTask for the reserve workers: only a task of a project that has
// no RUNNING task.
func (db *DB) ClaimIdleProjectTask(ctx context.Context, owner string, lease time.Duration) (*kps.Task, error) {
	return db.claim(ctx, db.eng.claimIdleTask, owner, lease)
}

// ClaimTaskPending is ClaimTask that returns as soon as the claim is made, before it is durable
// (SQLite's group commit, groupcommit.go): committed waits until it is, and fails when the claim
// was rolled back with its commit group, in which case the task is READY again and the caller
// must drop it. The caller must change nothing outside the database for the task before
// committed returned nil; what it writes to the database for the task afterwards (the write
// marks, the outcome) commits after the claim, so their success implies the claim's. A worker
// logs in to the host while the claim commits instead of before (issue 18). On PostgreSQL the
// claim is committed when it returns. committed is nil when the task is.
func (db *DB) ClaimTaskPending(ctx context.Context, owner string, lease time.Duration) (t *kps.Task, committed func() error, err error) {
	tx, t, err := db.claimTx(ctx, db.eng.claimTask, owner, lease)
	if err != nil || t == nil {
		return nil, nil, err
	}
	defer tx.Rollback()
	if tx.sawUncommitted {
		// The claim may have seen what its group's earlier transactions changed — the task
		// itself, submitted in the group, or its server's binding, changed by the task before
		// it — and what the worker reads next (its plan) comes from other connections, which
		// see it only once the group commits: it waits for the commit, as ClaimTask does.
		if err := tx.Commit(); err != nil {
			return nil, nil, err
		}
		return t, func() error { return nil }, nil
	}
	committed, err = tx.commitLater()
	if err != nil {
		return nil, nil, err
	}
	return t, committed, nil
}

func (db *DB) claim(ctx context.Context, statement, owner string, lease time.Duration) (*kps.Task, error) {
	tx, t, err := db.claimTx(ctx, statement, owner, lease)
	if err != nil || t == nil {
		return nil, err
	}
	defer tx.Rollback()
	return t, tx.Commit()
}

// claimTx runs a claim statement in a write transaction it leaves open when it claimed a task;
// it ends the transaction itself when there is none or on an error.
func (db *DB) claimTx(ctx context.Context, statement, owner string, lease time.Duration) (*txn, *kps.Task, error) {
	if err := transition(kps.PhaseReady, kps.PhaseRunning); err != nil {
		return nil, nil, err
	}
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return nil, nil, err
	}
	tx.tasksOnly = true
	if gtx, ok := tx.tx.(*groupTx); ok {
		if tx.sawUncommitted, err = gtx.sharesChanges(ctx); err != nil {
			tx.Rollback()
			return nil, nil, err
		}
	}
	t, err := scanTask(tx.queryRow(ctx, statement, owner, millis(tx.now.Add(lease)), millis(tx.now),
		owner, millis(tx.now)))
	if err == nil {
		// READY_x became RUNNING_x: the running list changed.
		err = tx.taskChanged(ctx, t.ProjectID)
	}
	if err != nil {
		tx.Rollback()
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	return tx, t, nil
}

// MarkTaskWrite records that t's host job reached a write step (kps.TaskStore): the guard is
// the lease, so a worker that lost its task gets kps.ErrLeaseLost and must not write. No list
// shows the marks, so the project's task version stays.
func (db *DB) MarkTaskWrite(ctx context.Context, t *kps.Task, step kps.HostWrite) error {
	statement := map[kps.HostWrite]string{kps.WriteKey: markKeyWrite, kps.WriteConfig: markConfigWrite}[step]
	if statement == "" {
		return fmt.Errorf("mark task write: unknown step %q", step)
	}
	if _, err := db.underLease(ctx, t, statement); err != nil {
		return err
	}
	switch step {
	case kps.WriteKey:
		t.KeyWriteReached = true
	case kps.WriteConfig:
		t.ConfigWriteReached = true
	}
	return nil
}

// ExtendLease renews t's lease to now+lease. It fails with kps.ErrLeaseLost unless t is still
// RUNNING under the same owner and attempt. An expired lease that nobody has acted on yet can
// still be renewed: expiry only matters once the sweeper (FailExpiredTasks) fails the task.
func (db *DB) ExtendLease(ctx context.Context, t *kps.Task, lease time.Duration) error {
	now, err := db.underLease(ctx, t, extendLease, func(now time.Time) any { return millis(now.Add(lease)) })
	if err == nil {
		t.LeaseExpires = now.Add(lease)
	}
	return err
}

// underLease runs statement, guarded by t's lease (its last three arguments: id, owner,
// attempt; the values args make of the transaction's now come first), in a write transaction
// of its own, and commits it; kps.ErrLeaseLost when the guard matched no row. It returns the
// transaction's now.
func (db *DB) underLease(ctx context.Context, t *kps.Task, statement string, args ...func(now time.Time) any) (time.Time, error) {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return time.Time{}, err
	}
	defer tx.Rollback()
	tx.tasksOnly = true
	values := make([]any, 0, len(args)+3)
	for _, a := range args {
		values = append(values, a(tx.now))
	}
	held, err := tx.execOne(ctx, statement, append(values, t.ID, t.LeaseOwner, t.Attempt)...)
	if err != nil {
		return time.Time{}, err
	}
	if !held {
		return time.Time{}, kps.ErrLeaseLost
	}
	return tx.now, tx.Commit()
}

// FinishTask ends t — RUNNING under t.LeaseOwner and t.Attempt — as SUCCESS or FAILED, and on
// success updates the binding in the same transaction: RESET/REPLACE record the key pair,
// UNBIND removes the record. A worker that lost its lease gets kps.ErrLeaseLost and nothing is
// written. A failure without a code is recorded as KPS.6610 so that failed tasks always carry
// one (§3.5 T5). A message longer than 1,000 bytes is cut (capErrorMsg).
func (db *DB) FinishTask(ctx context.Context, t *kps.Task, o kps.TaskOutcome) error {
	to, code, msg, err := finishedPhase(o)
	if err != nil {
		return err
	}
	now, err := db.inWrite(ctx, func(tx *txn) error {
		tx.tasksOnly = true
		return finishTask(ctx, tx, t, to, code, msg, o)
	})
	if err != nil {
		return err
	}
	t.Phase, t.ErrorCode, t.ErrorMsg, t.Updated = to, code, msg, now
	return nil
}

// finishedPhase is the phase, code and message a running task ends with for outcome o.
func finishedPhase(o kps.TaskOutcome) (to kps.Phase, code, msg string, err error) {
	to = kps.PhaseSuccess
	if !o.Success {
		to, code, msg = kps.PhaseFailed, o.ErrorCode, o.ErrorMsg
		if code == "" {
			code = kps.TaskRemoteFailed
		}
		if msg == "" {
			msg = "Task failed."
		}
		msg = capErrorMsg(msg)
	}
	return to, code, msg, transition(kps.PhaseRunning, to)
}

func finishTask(ctx context.Context, tx *txn, t *kps.Task, to kps.Phase, code, msg string, o kps.TaskOutcome) error {
	var projectID, op, serverID, keyPairName string
	err := tx.queryRow(ctx, finishRunningTask, string(to), code, msg, millis(tx.now), t.ID, t.LeaseOwner, t.Attempt).
		Scan(&projectID, &op, &serverID, &keyPairName)
	if errors.Is(err, sql.ErrNoRows) {
		return kps.ErrLeaseLost
	}
	if err != nil {
		return err
	}
	if err := tx.taskChanged(ctx, projectID); err != nil {
		return err
	}
	if to != kps.PhaseSuccess {
		return nil
	}
	// The operation, server and key pair come from the row, not from the caller's copy.
	switch kps.Operation(op) {
	case kps.OpReset, kps.OpReplace:
		_, err = tx.exec(ctx, upsertBinding, projectID, serverID, keyPairName, o.PublicKey, o.PasswordDisabled,
			millis(tx.now))
		if err == nil {
			err = bindingExpiryFromTask(ctx, tx, t.ID, projectID, serverID)
		}
	case kps.OpUnbind:
		_, err = tx.exec(ctx, deleteBinding, projectID, serverID)
	default:
		err = fmt.Errorf("finish task %s: unknown operation %q", t.ID, op)
	}
	return err
}

// FailExpiredTasks fails with KPS.6609 every RUNNING task whose lease expired before now, or
// every RUNNING task when all is set (at the start of the sole instance), and returns how many.
// Their workers, should they still be alive, are fenced: their FinishTask gets ErrLeaseLost.
func (db *DB) FailExpiredTasks(ctx context.Context, all bool) (int, error) {
	if err := transition(kps.PhaseRunning, kps.PhaseFailed); err != nil {
		return 0, err
	}
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var rows *sql.Rows
	if all {
		rows, err = tx.query(ctx, failRunningTasks, kps.TaskInterrupted, interruptedMessage, millis(tx.now))
	} else {
		rows, err = tx.query(ctx, failExpiredTasks, kps.TaskInterrupted, interruptedMessage, millis(tx.now),
			millis(tx.now))
	}
	if err != nil {
		return 0, err
	}
	return changeTasks(ctx, tx, rows)
}

// changeTasks finishes a transaction whose statement changed tasks of any number of projects
// and returned their project_id (rows): it bumps their versions, commits and returns how many
// tasks changed.
func changeTasks(ctx context.Context, tx *txn, rows *sql.Rows) (int, error) {
	projects, n, err := projectsOf(rows)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		// Nothing changed: no commit, so that an idle sweep every Lease/2 does not move this
		// process's write count, which the SQLite validation cache is keyed on (IdentityVersion).
		return 0, tx.Rollback()
	}
	if err := tx.taskChanged(ctx, projects...); err != nil {
		return 0, err
	}
	return n, tx.Commit()
}

// PurgeSucceededTasks deletes SUCCESS tasks created before now−olderThan (the retention of
// §3.1) and returns how many.
func (db *DB) PurgeSucceededTasks(ctx context.Context, olderThan time.Duration) (int, error) {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	rows, err := tx.query(ctx, purgeSucceededTasks, millis(tx.now.Add(-olderThan)))
	if err != nil {
		return 0, err
	}
	return changeTasks(ctx, tx, rows)
}
