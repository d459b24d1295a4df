package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/openkps/kps"
)

// The task state machine (kps.CanTransition) is enforced by guarded statements: every change of
// phase names the phase it expects in its WHERE clause, and a worker's changes also name the
// lease (owner and attempt) it holds. A statement that changes no row did not happen.

const (
	taskColumns = `id, project_id, operation, phase, server_id, server_name, keypair_name, public_key, port,
    disable_password, caller_auth, login_source, login_keypair, holder, created, updated, error_code,
    error_msg, lease_owner, lease_expires, attempt, key_write_reached, config_write_reached`

	selectTaskIDExists = `SELECT 1 FROM tasks WHERE id = ?`
	countReadyTasks    = `SELECT COUNT(*) FROM tasks WHERE phase = 'READY'`
	// The phases are literals so that the count reads the index tasks_by_project_phase alone.
	countProjectActiveTasks = `SELECT COUNT(*) FROM tasks WHERE project_id = ? AND phase IN ('READY', 'RUNNING')`
	insertTask              = `INSERT INTO tasks (id, project_id, operation, phase, server_id, server_name,
    keypair_name, public_key, port, disable_password, caller_auth, login_source, login_keypair, holder,
    created, updated)
VALUES (?, ?, ?, 'READY', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

	selectTask = `SELECT ` + taskColumns + ` FROM tasks WHERE project_id = ? AND id = ?`
	// A page of a project's tasks in some phases, in §4.1 order (%s: the phase placeholders).
	// An OFFSET would read, and throw away, every task row before the page; instead the first
	// row of the page is found in the index tasks_by_project_phase alone (it holds the sort
	// keys: an index-only scan), and the page is read from there by a range scan of that
	// index, touching exactly the page's rows. The total is counted from the same index. So a
	// page costs the same at offset 0 and deep in the list, and as much with a million tasks in
	// the table as with a thousand (docs/query-plans.md).
	listTasks = `SELECT ` + taskColumns + ` FROM tasks WHERE project_id = ? AND phase IN (%s)
ORDER BY created DESC, id LIMIT ?`
	listTasksStart = `SELECT created, id FROM tasks WHERE project_id = ? AND phase IN (%s)
ORDER BY created DESC, id LIMIT 1 OFFSET ?`
	// From the page's first row (created, id) on: "created <= ?" is the index range; the rest
	// drops the rows of the same millisecond that sort before it.
	listTasksFrom = `SELECT ` + taskColumns + ` FROM tasks WHERE project_id = ? AND phase IN (%s)
    AND created <= ? AND (created < ? OR id >= ?)
ORDER BY created DESC, id LIMIT ?`
	countTasks = `SELECT COUNT(*) FROM tasks WHERE project_id = ? AND phase IN (%s)`
	// scanTasks is the list routes' query: the total and the page in one statement, only the
	// columns they show. The count reads only the index tasks_by_project_phase; the page's
	// rows are chosen from the same index in §4.1 order (it carries seq: SQLite's rowid,
	// PostgreSQL's INCLUDE), so an offset skips index entries, not rows; only the page's rows
	// are then read, by seq. The LEFT JOINs keep one row carrying the total (with NULL
	// columns) when the page is empty. %s: the phase placeholders, twice.
	scanTasks = `SELECT c.total, t.id, t.operation, t.phase, t.created, t.server_id, t.server_name,
    t.keypair_name, t.error_code, t.error_msg
FROM (SELECT COUNT(*) AS total FROM tasks WHERE project_id = ? AND phase IN (%[1]s)) c
LEFT JOIN (SELECT seq FROM tasks WHERE project_id = ? AND phase IN (%[1]s)
           ORDER BY created DESC, id LIMIT ? OFFSET ?) p ON TRUE
LEFT JOIN tasks t ON t.seq = p.seq
ORDER BY t.created DESC, t.id`

	// scanFailedTasks is scanTasks for the failed list, which grows without bound while the
	// running list is bounded by the queue: the total and the page come from the partial index
	// tasks_failed_list (migration 0006), which holds every column the list shows, so neither
	// touches the table. A project's failed tasks are spread over the table, one page each;
	// in the index they are neighbours. The phase is a literal so that the planners match the
	// index's predicate (SQLite only ever does; PostgreSQL not in a generic plan).
	scanFailedTasks = `SELECT c.total, p.id, p.operation, p.phase, p.created, p.server_id, p.server_name,
    p.keypair_name, p.error_code, p.error_msg
FROM (SELECT COUNT(*) AS total FROM tasks WHERE project_id = ? AND phase = 'FAILED') c
LEFT JOIN (SELECT id, operation, phase, created, server_id, server_name, keypair_name, error_code, error_msg
           FROM tasks WHERE project_id = ? AND phase = 'FAILED'
           ORDER BY created DESC, id LIMIT ? OFFSET ?) p ON TRUE
ORDER BY p.created DESC, p.id`

	deleteFailedTask  = `DELETE FROM tasks WHERE project_id = ? AND id = ? AND phase = 'FAILED'`
	deleteFailedTasks = `DELETE FROM tasks WHERE project_id = ? AND phase = 'FAILED'`

	extendLease = `UPDATE tasks SET lease_expires = ?
WHERE id = ? AND phase = 'RUNNING' AND lease_owner = ? AND attempt = ?`
	finishRunningTask = `UPDATE tasks SET phase = ?, error_code = ?, error_msg = ?, updated = ?
WHERE id = ? AND phase = 'RUNNING' AND lease_owner = ? AND attempt = ?
RETURNING project_id, operation, server_id, keypair_name`
	// The statements that change tasks of several projects, or of a project the caller did not
	// name, return the projects: their task versions change with them (taskversion.go).
	failReadyTask = `UPDATE tasks SET phase = 'FAILED', error_code = ?, error_msg = ?, updated = ?
WHERE id = ? AND phase = 'READY'
RETURNING project_id`
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
	// The bound key pair's hosted private key rides along: with it the service can log in to
	// a server that has no service credential.
	selectBinding = `SELECT b.project_id, b.server_id, b.keypair_name, b.public_key, b.password_disabled,
    k.private_key
FROM bindings b LEFT JOIN keypairs k ON k.project_id = b.project_id AND k.name = b.keypair_name
WHERE b.project_id = ? AND b.server_id = ?`
	// selectUnconfirmedKeys: binds that failed after the server's last success, having
	// reached the write of their key (marked before the host could change the file, so a bind
	// that failed before it, whatever its code, is not here). Once SUCCESS tasks are purged,
	// older failures count too, which only means that keys long gone are asked to be removed
	// again.
	selectUnconfirmedKeys = `SELECT DISTINCT public_key FROM tasks
WHERE project_id = ? AND server_id = ? AND phase = 'FAILED' AND operation IN ('RESET', 'REPLACE')
    AND key_write_reached AND seq > COALESCE((SELECT MAX(seq) FROM tasks
        WHERE project_id = ? AND server_id = ? AND phase = 'SUCCESS'), 0)
ORDER BY public_key`
	// countMaybeDisabled: binds that failed after reaching their configuration change, after
	// the server's last success that settled the daemon's configuration (an unbind, or a bind
	// with disable_password). Any code counts: even a KPS.6606 may come after the reload (the
	// daemon did not come back), and an unbind that finds nothing to restore succeeds.
	countMaybeDisabled = `SELECT COUNT(*) FROM tasks
WHERE project_id = ? AND server_id = ? AND phase = 'FAILED' AND operation IN ('RESET', 'REPLACE')
    AND config_write_reached
    AND seq > COALESCE((SELECT MAX(seq) FROM tasks
        WHERE project_id = ? AND server_id = ? AND phase = 'SUCCESS' AND (operation = 'UNBIND' OR disable_password)), 0)`

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

// transition asserts the state machine in code: the guarded statements below must only ever
// encode transitions kps.CanTransition allows.
func transition(from, to kps.Phase) error {
	if !kps.CanTransition(from, to) {
		return fmt.Errorf("task transition %s → %s is not allowed", from, to)
	}
	return nil
}

// SubmitTask runs the synchronous checks of §2.11 (RESET/REPLACE), §2.12 (the same, per batch
// item) and §2.13 (UNBIND) in the spec's order and persists a READY task, all in one
// transaction. The server name is copied into the task, so finished tasks keep it after the
// server is removed.
func (db *DB) SubmitTask(ctx context.Context, s kps.TaskSubmission) (*kps.Task, error) {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	tx.tasksOnly = true
	t, err := submitTask(ctx, tx, s)
	if err != nil {
		return nil, err
	}
	if err := tx.taskChanged(ctx, t.ProjectID); err != nil {
		return nil, err
	}
	return t, tx.Commit()
}

// SubmitTasks submits the items of a batch (§2.12) in one write transaction: each item's checks
// and insert are SubmitTask's, inside a savepoint, so that a refused item leaves nothing behind
// while the others go in, and the batch costs one commit (on SQLite one fsync, and one turn on
// the single writer) instead of one per item. refused[i] is item i's refusal (a *kps.Error),
// tasks[i] its task otherwise; err is a failure of the whole batch, which then submitted
// nothing.
func (db *DB) SubmitTasks(ctx context.Context, subs []kps.TaskSubmission) (tasks []*kps.Task, refused []error, err error) {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback()
	tx.tasksOnly = true
	// Every item takes its locks in the order server, key pair, project, queue, and holds them
	// to the commit. Taken item by item, a batch would hold the queue (and the first server) while it
	// waits for the next server, which a single submission may hold while it waits for the
	// queue: a deadlock (engines with row locks). So the batch takes them all first, in that
	// order, servers and key pairs sorted; the items then find them held.
	servers, keyPairs, limited, queue := make([][2]string, 0, len(subs)), make([][2]string, 0, 1), make([][2]string, 0, 1), false
	for _, s := range subs {
		servers = append(servers, [2]string{s.ProjectID, s.ServerID})
		if s.Operation != kps.OpUnbind {
			keyPairs = append(keyPairs, [2]string{s.ProjectID, s.KeyPairName})
		}
		if s.MaxProjectTasks > 0 {
			limited = append(limited, [2]string{s.ProjectID})
		}
		queue = queue || s.MaxQueued > 0
	}
	for _, set := range []struct {
		l    lock
		keys [][2]string
	}{{lockServer, servers}, {lockKeyPairUse, keyPairs}, {lockProjectTasks, limited}} {
		slices.SortFunc(set.keys, func(a, b [2]string) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
		for _, k := range slices.Compact(set.keys) {
			args := []any{k[0], k[1]}
			if set.l == lockProjectTasks {
				args = args[:1]
			}
			if err := tx.lock(ctx, set.l, args...); err != nil {
				return nil, nil, err
			}
		}
	}
	if queue {
		if err := tx.lock(ctx, lockTaskQueue); err != nil {
			return nil, nil, err
		}
	}
	tasks, refused = make([]*kps.Task, len(subs)), make([]error, len(subs))
	var projects []string
	for i, s := range subs {
		if _, err := tx.exec(ctx, "SAVEPOINT submit_item"); err != nil {
			return nil, nil, err
		}
		t, err := submitTask(ctx, tx, s)
		if err != nil {
			var ke *kps.Error
			if !errors.As(err, &ke) || ke.Code == kps.ErrInternal {
				return nil, nil, err
			}
			if _, err := tx.exec(ctx, "ROLLBACK TO SAVEPOINT submit_item"); err != nil {
				return nil, nil, err
			}
			refused[i] = err
		} else {
			tasks[i] = t
			projects = append(projects, t.ProjectID)
		}
		if _, err := tx.exec(ctx, "RELEASE SAVEPOINT submit_item"); err != nil {
			return nil, nil, err
		}
	}
	if len(projects) > 0 {
		if err := tx.taskChanged(ctx, projects...); err != nil {
			return nil, nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, err
	}
	return tasks, refused, nil
}

func submitTask(ctx context.Context, tx *txn, s kps.TaskSubmission) (*kps.Task, error) {
	t := &kps.Task{
		ID:              s.ID,
		ProjectID:       s.ProjectID,
		Operation:       s.Operation,
		Phase:           kps.PhaseReady,
		ServerID:        s.ServerID,
		Port:            max(s.Port, 0),
		DisablePassword: s.DisablePassword,
		CallerAuth:      s.CallerAuth,
		Created:         tx.now,
		Updated:         tx.now,
	}
	// Engines with row-level concurrency: the server's row stays as read (no concurrent update
	// or delete) until the task is in, and so does the key pair's.
	if err := tx.lock(ctx, lockServer, s.ProjectID, s.ServerID); err != nil {
		return nil, err
	}
	var srv *kps.Server
	switch s.Operation {
	case kps.OpReset, kps.OpReplace:
		if err := tx.lock(ctx, lockKeyPairUse, s.ProjectID, s.KeyPairName); err != nil {
			return nil, err
		}
		k, err := findKeyPair(ctx, tx, s.ProjectID, s.KeyPairName, s.UserID)
		if err != nil {
			return nil, err
		}
		if k.Type == kps.TypeX509 {
			return nil, kps.Errorf(kps.ErrX509NotBindable,
				"Key pair '%s' is an X.509 certificate and cannot be bound to a server.", k.Name)
		}
		if srv, err = findServer(ctx, tx, s.ProjectID, s.ServerID); err != nil {
			return nil, err
		}
		if s.Batch && srv.KeyPairName != "" {
			return nil, kps.Errorf(kps.ErrServerBound, "Server '%s' is already bound to key pair '%s'.",
				srv.ID, srv.KeyPairName)
		}
		if t.Login, t.LoginKeyPair, err = chooseLogin(ctx, tx, s, srv, nil); err != nil {
			return nil, err
		}
		t.KeyPairName, t.PublicKey = k.Name, k.PublicKey
	case kps.OpUnbind:
		var err error
		if srv, err = findServer(ctx, tx, s.ProjectID, s.ServerID); err != nil {
			return nil, err
		}
		b, err := findBinding(ctx, tx, s.ProjectID, s.ServerID)
		if err != nil {
			return nil, err
		}
		if b == nil {
			return nil, kps.Errorf(kps.ErrServerNotBound, "Server '%s' is not bound to a key pair.", srv.ID)
		}
		if t.Login, t.LoginKeyPair, err = chooseLogin(ctx, tx, s, srv, b); err != nil {
			return nil, err
		}
		t.KeyPairName, t.PublicKey = b.KeyPairName, b.PublicKey
	default:
		return nil, fmt.Errorf("submit task: unknown operation %q", s.Operation)
	}
	// Where the login may go: no stored secret to a per-task port or, on first use, to a reach
	// no admin set; the caller's own to a per-task port only when the host is pinned.
	if err := srv.CheckLogin(t.Login, s.Port); err != nil {
		return nil, err
	}
	if s.CallerAuth {
		t.Holder = s.Holder
	}
	t.ServerName = srv.Name
	if t.ServerName == "" {
		t.ServerName = srv.ID
	}

	busy, err := tx.exists(ctx, selectServerBusy, s.ProjectID, s.ServerID)
	if err != nil {
		return nil, err
	}
	if busy {
		return nil, errServerBusy(s.ServerID)
	}
	if s.MaxProjectTasks > 0 {
		if err := tx.lock(ctx, lockProjectTasks, s.ProjectID); err != nil {
			return nil, err
		}
		var active int
		if err := tx.queryRow(ctx, countProjectActiveTasks, s.ProjectID).Scan(&active); err != nil {
			return nil, err
		}
		if active >= s.MaxProjectTasks {
			return nil, kps.Errorf(kps.ErrProjectTasks,
				"The project has %d tasks queued or running, the most one project may have; retry when some have ended.", active)
		}
	}
	if s.MaxQueued > 0 {
		if err := tx.lock(ctx, lockTaskQueue); err != nil {
			return nil, err
		}
		var queued int
		if err := tx.queryRow(ctx, countReadyTasks).Scan(&queued); err != nil {
			return nil, err
		}
		if queued >= s.MaxQueued {
			return nil, kps.Errorf(kps.ErrUnavailable, "The task queue is full; retry later.")
		}
	}
	// A reused task ID is a caller bug, not a busy server: tell them apart before the insert,
	// whose unique violation then can only come from tasks_one_active_per_server.
	dup, err := tx.exists(ctx, selectTaskIDExists, t.ID)
	if err != nil {
		return nil, err
	}
	if dup {
		return nil, fmt.Errorf("submit task: task ID %s already exists", t.ID)
	}
	if err := insertReadyTask(ctx, tx, t); err != nil {
		return nil, err
	}
	return t, nil
}

// chooseLogin decides what the task will log in with (kps-v3-api.md §6.1 step 4): the caller's
// credential when they gave one; else the server's stored credential; else the hosted private
// key of the bound key pair (b, read here when nil), and that only for a caller who could
// export it (§2.8: the key pair is visible to them and their role allows the export), since
// logging in with a key is using it.
func chooseLogin(ctx context.Context, tx *txn, s kps.TaskSubmission, srv *kps.Server, b *kps.Binding) (kps.LoginSource, string, error) {
	if s.CallerAuth {
		return kps.LoginCaller, "", nil
	}
	if len(srv.Credential) > 0 {
		return kps.LoginService, "", nil
	}
	if b == nil {
		var err error
		if b, err = findBinding(ctx, tx, s.ProjectID, s.ServerID); err != nil {
			return "", "", err
		}
	}
	if b == nil || b.PrivateKey == nil {
		return "", "", errNoCredential(srv.ID)
	}
	refused := kps.Errorf(kps.ErrHostedKeyForbidden,
		"Server '%s' has no service credential, and the hosted private key of its bound key pair '%s' is not one you may export: give server.auth.",
		srv.ID, b.KeyPairName)
	if !s.MayExport {
		return "", "", refused
	}
	if _, err := findKeyPair(ctx, tx, s.ProjectID, b.KeyPairName, s.UserID); kps.ErrorCode(err) == kps.ErrKeyPairNotFound {
		return "", "", refused
	} else if err != nil {
		return "", "", err
	}
	return kps.LoginHosted, b.KeyPairName, nil
}

// errNoCredential is KPS.6021: the task could not log in. A server without a service
// credential can still be reached with the hosted private key of its bound key pair.
func errNoCredential(serverID string) error {
	return kps.Errorf(kps.ErrNoCredential,
		"Server '%s' has no service credential: give server.auth, store a credential in the inventory, or host the private key of its bound key pair.", serverID)
}

// insertReadyTask inserts t as READY. The partial unique index tasks_one_active_per_server
// rejects a second active task for the server even where the check before it raced (an engine
// with row-level concurrency); that violation is the busy server of §3.1.
func insertReadyTask(ctx context.Context, tx *txn, t *kps.Task) error {
	_, err := tx.exec(ctx, insertTask, t.ID, t.ProjectID, string(t.Operation), t.ServerID, t.ServerName,
		t.KeyPairName, t.PublicKey, t.Port, t.DisablePassword, t.CallerAuth, string(t.Login), t.LoginKeyPair, t.Holder,
		millis(t.Created), millis(t.Updated))
	if tx.eng.isUniqueViolation(err) {
		return errServerBusy(t.ServerID)
	}
	return err
}

func scanTask(row scanner, extra ...any) (*kps.Task, error) {
	var (
		t                              kps.Task
		op, phase, login               string
		created, updated, leaseExpires int64
	)
	dest := append([]any{&t.ID, &t.ProjectID, &op, &phase, &t.ServerID, &t.ServerName, &t.KeyPairName,
		&t.PublicKey, &t.Port, &t.DisablePassword, &t.CallerAuth, &login, &t.LoginKeyPair, &t.Holder, &created, &updated,
		&t.ErrorCode, &t.ErrorMsg, &t.LeaseOwner, &leaseExpires, &t.Attempt, &t.KeyWriteReached, &t.ConfigWriteReached}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	t.Operation, t.Phase, t.Login = kps.Operation(op), kps.Phase(phase), kps.LoginSource(login)
	t.Created, t.Updated, t.LeaseExpires = fromMillis(created), fromMillis(updated), fromMillis(leaseExpires)
	return &t, nil
}

// Task returns a task of the project in any phase, or KPS.6202.
func (db *DB) Task(ctx context.Context, projectID, id string) (*kps.Task, error) {
	t, err := scanTask(db.read.QueryRowContext(ctx, db.bind(selectTask), projectID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, kps.Errorf(kps.ErrTaskNotFound, "Task '%s' does not exist.", id)
	}
	return t, err
}

// ListTasks returns a page of the project's tasks in the given phases (all phases when none
// are given) in §4.1 order — newest first, ties by ID ascending — and the total. An offset past
// the end yields no tasks and the real total.
func (db *DB) ListTasks(ctx context.Context, projectID string, phases []kps.Phase, p kps.Page) ([]kps.Task, int, error) {
	if len(phases) == 0 {
		phases = []kps.Phase{kps.PhaseReady, kps.PhaseRunning, kps.PhaseSuccess, kps.PhaseFailed}
	}
	args := []any{projectID}
	for _, ph := range phases {
		args = append(args, string(ph))
	}
	in := placeholders(len(phases))

	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	// One snapshot for the total and the page.
	var total int
	if err := tx.queryRow(ctx, fmt.Sprintf(countTasks, in), args...).Scan(&total); err != nil {
		return nil, 0, err
	}
	tasks := []kps.Task{}
	if p.Offset >= total {
		return tasks, total, nil
	}
	var rows *sql.Rows
	if p.Offset == 0 {
		rows, err = tx.query(ctx, fmt.Sprintf(listTasks, in), append(args, p.Limit)...)
	} else {
		var created int64
		var id string
		if err := tx.queryRow(ctx, fmt.Sprintf(listTasksStart, in), append(args, p.Offset)...).Scan(&created, &id); err != nil {
			return nil, 0, err
		}
		rows, err = tx.query(ctx, fmt.Sprintf(listTasksFrom, in), append(args, created, created, id, p.Limit)...)
	}
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, 0, err
		}
		tasks = append(tasks, *t)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	return tasks, total, nil
}

// ScanTasks implements kps.TaskStore: ListTasks for the list routes, without the columns they
// do not show, with the page and the total from one statement and the rows handed to fn as the
// driver returns them (sql.RawBytes: no copy into strings, no mapping).
func (db *DB) ScanTasks(ctx context.Context, projectID string, phases []kps.Phase, p kps.Page, fn func(*kps.TaskRow) error) (int, int64, error) {
	var version int64
	if db.eng.name == "sqlite" {
		// Read before the snapshot (which SQLite takes at the first read): every change this
		// version counts is committed, so the page shows it.
		version = db.versions.get(projectID)
	}
	tx, err := db.beginRead(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback()
	if db.eng.name != "sqlite" {
		// The first statement takes the snapshot: the version is the one of exactly this page.
		if version, err = queryTaskVersion(tx.queryRow(ctx, selectTaskVersion, projectID)); err != nil {
			return 0, 0, err
		}
	}
	var query string
	args := make([]any, 0, 2*len(phases)+4)
	if len(phases) == 1 && phases[0] == kps.PhaseFailed {
		query = scanFailedTasks
		args = append(args, projectID, projectID, p.Limit, p.Offset)
	} else {
		args = append(args, projectID)
		for _, ph := range phases {
			args = append(args, string(ph))
		}
		args = append(args, args...)
		args = append(args, p.Limit, p.Offset)
		query = fmt.Sprintf(scanTasks, placeholders(len(phases)))
	}
	rows, err := tx.query(ctx, query, args...)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	var (
		row   kps.TaskRow
		count sql.RawBytes
		total = -1
	)
	dest := []any{&count, (*sql.RawBytes)(&row.ID), (*sql.RawBytes)(&row.Operation), (*sql.RawBytes)(&row.Phase),
		(*sql.RawBytes)(&row.Created), (*sql.RawBytes)(&row.ServerID), (*sql.RawBytes)(&row.ServerName),
		(*sql.RawBytes)(&row.KeyPairName), (*sql.RawBytes)(&row.ErrorCode), (*sql.RawBytes)(&row.ErrorMsg)}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return 0, 0, err
		}
		if total < 0 {
			if total, err = strconv.Atoi(string(count)); err != nil {
				return 0, 0, fmt.Errorf("scan tasks: total %q: %w", count, err)
			}
		}
		if row.ID == nil {
			break // the empty page's row, which only carries the total
		}
		if err := fn(&row); err != nil {
			return 0, 0, err
		}
	}
	if err := rows.Err(); err != nil {
		return 0, 0, err
	}
	if total < 0 {
		return 0, 0, errors.New("scan tasks: no total")
	}
	return total, version, nil
}

// DeleteFailedTask deletes a FAILED task of the project, or fails with KPS.6203 when there is
// none by that ID in that phase.
func (db *DB) DeleteFailedTask(ctx context.Context, projectID, id string) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	deleted, err := tx.execOne(ctx, deleteFailedTask, projectID, id)
	if err != nil {
		return err
	}
	if !deleted {
		return kps.Errorf(kps.ErrFailedNotFound, "Failed task '%s' does not exist.", id)
	}
	if err := tx.taskChanged(ctx, projectID); err != nil {
		return err
	}
	return tx.Commit()
}

// DeleteFailedTasks deletes every FAILED task of the project.
func (db *DB) DeleteFailedTasks(ctx context.Context, projectID string) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.exec(ctx, deleteFailedTasks, projectID)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err // nothing deleted: the lists are as they were
	}
	if err := tx.taskChanged(ctx, projectID); err != nil {
		return err
	}
	return tx.Commit()
}

// Binding returns the server's binding, or nil when the server is not bound.
func (db *DB) Binding(ctx context.Context, projectID, serverID string) (*kps.Binding, error) {
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return findBinding(ctx, tx, projectID, serverID)
}

// UnconfirmedKeys lists the keys failed binds of the server may have left on the host since
// its last successful task, and whether one of them may have disabled password login since the
// last success that settled the daemon's configuration.
func (db *DB) UnconfirmedKeys(ctx context.Context, projectID, serverID string) (keys []string, passwordMaybeDisabled bool, err error) {
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, false, err
	}
	defer tx.Rollback()
	rows, err := tx.query(ctx, selectUnconfirmedKeys, projectID, serverID, projectID, serverID)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, false, err
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	var n int64
	if err := tx.queryRow(ctx, countMaybeDisabled, projectID, serverID, projectID, serverID).Scan(&n); err != nil {
		return nil, false, err
	}
	return keys, n > 0, nil
}

func findBinding(ctx context.Context, tx *txn, projectID, serverID string) (*kps.Binding, error) {
	var b kps.Binding
	err := tx.queryRow(ctx, selectBinding, projectID, serverID).Scan(&b.ProjectID, &b.ServerID, &b.KeyPairName,
		&b.PublicKey, &b.PasswordDisabled, &b.PrivateKey)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &b, nil
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

func (db *DB) claim(ctx context.Context, statement, owner string, lease time.Duration) (*kps.Task, error) {
	if err := transition(kps.PhaseReady, kps.PhaseRunning); err != nil {
		return nil, err
	}
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	tx.tasksOnly = true
	t, err := scanTask(tx.queryRow(ctx, statement, owner, millis(tx.now.Add(lease)), millis(tx.now),
		owner, millis(tx.now)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// READY_x became RUNNING_x: the running list changed.
	if err := tx.taskChanged(ctx, t.ProjectID); err != nil {
		return nil, err
	}
	return t, tx.Commit()
}

// MarkTaskWrite records that t's host job reached a write step (kps.TaskStore): the guard is
// the lease, so a worker that lost its task gets kps.ErrLeaseLost and must not write. No list
// shows the marks, so the project's task version stays.
func (db *DB) MarkTaskWrite(ctx context.Context, t *kps.Task, step kps.HostWrite) error {
	var statement string
	switch step {
	case kps.WriteKey:
		statement = markKeyWrite
	case kps.WriteConfig:
		statement = markConfigWrite
	default:
		return fmt.Errorf("mark task write: unknown step %q", step)
	}
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	tx.tasksOnly = true
	held, err := tx.execOne(ctx, statement, t.ID, t.LeaseOwner, t.Attempt)
	if err != nil {
		return err
	}
	if !held {
		return kps.ErrLeaseLost
	}
	if err := tx.Commit(); err != nil {
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
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	tx.tasksOnly = true
	expires := tx.now.Add(lease)
	held, err := tx.execOne(ctx, extendLease, millis(expires), t.ID, t.LeaseOwner, t.Attempt)
	if err != nil {
		return err
	}
	if !held {
		return kps.ErrLeaseLost
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	t.LeaseExpires = expires
	return nil
}

// FinishTask ends t — RUNNING under t.LeaseOwner and t.Attempt — as SUCCESS or FAILED, and on
// success updates the binding in the same transaction: RESET/REPLACE record the key pair,
// UNBIND removes the record. A worker that lost its lease gets kps.ErrLeaseLost and nothing is
// written. A failure without a code is recorded as KPS.6610 so that failed tasks always carry
// one (§3.5 T5). A message longer than 1,000 bytes is cut (capErrorMsg).
func (db *DB) FinishTask(ctx context.Context, t *kps.Task, o kps.TaskOutcome) error {
	to, code, msg := kps.PhaseSuccess, "", ""
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
	if err := transition(kps.PhaseRunning, to); err != nil {
		return err
	}
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	tx.tasksOnly = true
	if err := finishTask(ctx, tx, t, to, code, msg, o); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	t.Phase, t.ErrorCode, t.ErrorMsg, t.Updated = to, code, msg, tx.now
	return nil
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
	case kps.OpUnbind:
		_, err = tx.exec(ctx, deleteBinding, projectID, serverID)
	default:
		err = fmt.Errorf("finish task %s: unknown operation %q", t.ID, op)
	}
	return err
}

// FailReadyTask ends a READY task as FAILED without running it (e.g. a REPLACE whose caller
// credential was lost with a restart). kps.ErrLeaseLost when the task is no longer READY.
func (db *DB) FailReadyTask(ctx context.Context, t *kps.Task, code, msg string) error {
	if err := transition(kps.PhaseReady, kps.PhaseFailed); err != nil {
		return err
	}
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	msg = capErrorMsg(msg)
	var projectID string
	err = tx.queryRow(ctx, failReadyTask, code, msg, millis(tx.now), t.ID).Scan(&projectID)
	if errors.Is(err, sql.ErrNoRows) {
		return kps.ErrLeaseLost
	}
	if err != nil {
		return err
	}
	if err := tx.taskChanged(ctx, projectID); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	t.Phase, t.ErrorCode, t.ErrorMsg, t.Updated = kps.PhaseFailed, code, msg, tx.now
	return nil
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
