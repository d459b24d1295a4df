package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/openkps/kps"
)

// Submission and reads of tasks. A submission's rules are the service's (kps.TaskAdmission):
// the store reads their facts under the submission's locks, and keeps what needs the
// transaction — the locks, the busy check backed by the unique index, the limits' counts.

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

	selectTask        = `SELECT ` + taskColumns + ` FROM tasks WHERE project_id = ? AND id = ?`
	deleteFailedTask  = `DELETE FROM tasks WHERE project_id = ? AND id = ? AND phase = 'FAILED'`
	deleteFailedTasks = `DELETE FROM tasks WHERE project_id = ? AND phase = 'FAILED'`

	// The bound key pair's hosted private key rides along: with it the service can log in to
	// a server that has no service credential.
	selectBinding = `SELECT b.project_id, b.server_id, b.keypair_name, b.public_key, b.password_disabled,
    k.private_key
FROM bindings b LEFT JOIN keypairs k ON k.project_id = b.project_id AND k.name = b.keypair_name
WHERE b.project_id = ? AND b.server_id = ?`
	// selectBindingFacts is selectBinding for a submission, with whether the bound key pair is
	// visible to the caller (the visibility rule of visibleKeyPairs; args: user, project, server).
	selectBindingFacts = `SELECT b.project_id, b.server_id, b.keypair_name, b.public_key, b.password_disabled,
    k.private_key, COALESCE(k.scope = 'domain' OR k.user_id = ?, FALSE)
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
)

// SubmitTask reads the facts of s under its locks, lets admit decide the task, and persists it
// READY after the checks only the transaction can make (§2.11–2.13, in the spec's order: the
// admission's refusals first, then a busy server, the project's limit and the queue's). The
// server name is copied into the task, so finished tasks keep it after the server is removed.
func (db *DB) SubmitTask(ctx context.Context, s kps.TaskSubmission, admit kps.TaskAdmission) (*kps.Task, error) {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	tx.tasksOnly = true
	t, err := submitTask(ctx, tx, s, admit)
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
func (db *DB) SubmitTasks(ctx context.Context, subs []kps.TaskSubmission, admit kps.TaskAdmission) (tasks []*kps.Task, refused []error, err error) {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback()
	tx.tasksOnly = true
	tasks, refused, err = submitBatch(ctx, tx, subs, admit)
	if err != nil {
		return nil, nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, err
	}
	return tasks, refused, nil
}

// submitBatch is SubmitTasks inside tx (a rotation's step submits its servers' tasks in the
// transaction that records the step, store/rotation.go); the task versions of the projects
// concerned move with it.
func submitBatch(ctx context.Context, tx *txn, subs []kps.TaskSubmission, admit kps.TaskAdmission) (tasks []*kps.Task, refused []error, err error) {
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
		t, err := submitTask(ctx, tx, s, admit)
		if err != nil {
			var ke *kps.Error
			if !errors.As(err, &ke) || ke.Code == kps.ErrInternal {
				return nil, nil, err
			}
			if _, err := tx.exec(ctx, "ROLLBACK TO SAVEPOINT submit_item"); err != nil {
				return nil, nil, err
			}
			refused[i] = err
			// The item's refusal is part of the batch's answer: its event says so, with the
			// batch (the events are inserted at the commit, outside the savepoint).
			if s.Audit != nil {
				s.Audit.Code, s.Audit.TaskID = ke.Code, ""
				tx.addAudit(s.Audit)
			}
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
	return tasks, refused, nil
}

func submitTask(ctx context.Context, tx *txn, s kps.TaskSubmission, admit kps.TaskAdmission) (*kps.Task, error) {
	if admit == nil {
		return nil, errors.New("submit task: no admission")
	}
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
	bind := s.Operation == kps.OpReset || s.Operation == kps.OpReplace
	if bind {
		if err := tx.lock(ctx, lockKeyPairUse, s.ProjectID, s.KeyPairName); err != nil {
			return nil, err
		}
	}
	f, err := readTaskFacts(ctx, tx, &s, bind)
	if err != nil {
		return nil, err
	}
	if err := admit(&s, f, t); err != nil {
		return nil, err
	}
	if s.Expiry {
		if err := expiryDue(ctx, tx, &s); err != nil {
			return nil, err
		}
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
	if err := recordExpiry(ctx, tx, &s); err != nil {
		return nil, err
	}
	tx.addAudit(s.Audit)
	return t, nil
}

// readTaskFacts reads what a submission's admission decides on: the key pair a bind names as
// the caller sees it, the server, its binding and whether the bound key pair is visible to
// the caller. What does not exist (or is invisible) is nil.
func readTaskFacts(ctx context.Context, tx *txn, s *kps.TaskSubmission, bind bool) (*kps.TaskFacts, error) {
	f := &kps.TaskFacts{}
	var err error
	if bind {
		if f.KeyPair, err = findKeyPair(ctx, tx, s.ProjectID, s.KeyPairName, s.UserID); kps.ErrorCode(err) == kps.ErrKeyPairNotFound {
			f.KeyPair = nil
		} else if err != nil {
			return nil, err
		}
	}
	if f.Server, err = findServer(ctx, tx, s.ProjectID, s.ServerID); kps.ErrorCode(err) == kps.ErrServerNotFound {
		return f, nil
	} else if err != nil {
		return nil, err
	}
	var b kps.Binding
	err = tx.queryRow(ctx, selectBindingFacts, s.UserID, s.ProjectID, s.ServerID).Scan(&b.ProjectID, &b.ServerID,
		&b.KeyPairName, &b.PublicKey, &b.PasswordDisabled, &b.PrivateKey, &f.BoundKeyPairVisible)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, err
	default:
		f.Binding = &b
	}
	return f, nil
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
