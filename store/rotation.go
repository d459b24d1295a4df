package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/openkps/kps"
)

// Rotations (kps-v3-api.md §8): the rotation and its servers' progress are rows, and every step
// of the rotation machine is one transaction (AdvanceRotation) that records the outcome of the
// tasks that ended and submits the next ones, so that a restart — a SIGKILL included — finds
// exactly what was submitted, and submits nothing twice.

// rotationRetries is how many tasks a server of a rotation gets in all: one interrupted by a
// restart (KPS.6609) is submitted again, each of its steps being idempotent.
const rotationRetries = 3

const (
	rotationColumns = `r.project_id, r.id, r.user_id, r.keypair_name, r.from_keypair, r.batch_size, r.max_failures,
    r.canary, r.canary_done, r.may_export, r.state, r.reason, r.private_key, r.login, r.created, r.updated, r.failed_base,
    r.n_pending, r.n_running, r.n_succeeded, r.n_failed, r.n_skipped`
	insertRotation = `INSERT INTO rotations (project_id, id, user_id, keypair_name, from_keypair, batch_size,
    max_failures, canary, may_export, state, private_key, login, created, updated, n_pending)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'RUNNING', ?, ?, ?, ?, ?)`
	insertRotationServer = `INSERT INTO rotation_servers (project_id, rotation_id, seq, server_id, state, updated)
VALUES (?, ?, ?, ?, 'PENDING', ?)`
	selectBoundServers = `SELECT server_id FROM bindings WHERE project_id = ? AND keypair_name = ? ORDER BY server_id`
	selectServerExists = `SELECT 1 FROM servers WHERE project_id = ? AND id = ?`
	selectRotation     = `SELECT ` + rotationColumns + ` FROM rotations r WHERE r.project_id = ? AND r.id = ?`
	listRotations      = `SELECT ` + rotationColumns + `, COUNT(*) OVER () FROM rotations r WHERE r.project_id = ?
ORDER BY r.created DESC, r.id LIMIT ? OFFSET ?`
	selectRotationServers = `SELECT server_id, state, task_id, attempts, error_code, error_msg, updated
FROM rotation_servers WHERE project_id = ? AND rotation_id = ? ORDER BY seq`
	// The servers in flight with their tasks; a task that is gone (deleted) reads as NULL.
	selectRotationRunning = `SELECT rs.seq, rs.task_id, rs.attempts, t.phase, t.error_code, t.error_msg
FROM rotation_servers rs LEFT JOIN tasks t ON t.id = rs.task_id
WHERE rs.project_id = ? AND rs.rotation_id = ? AND rs.state = 'RUNNING'`
	// The one server of a task that ended, as the task's outcome settles it.
	selectRotationTaskRunning = selectRotationRunning + ` AND rs.task_id = ?`
	selectRotationPending     = `SELECT seq, server_id FROM rotation_servers
WHERE project_id = ? AND rotation_id = ? AND state = 'PENDING' AND seq < ? ORDER BY seq LIMIT ?`
	settleRotationServer = `UPDATE rotation_servers SET state = ?, error_code = ?, error_msg = ?, updated = ?
WHERE project_id = ? AND rotation_id = ? AND seq = ?`
	startRotationServer = `UPDATE rotation_servers SET state = 'RUNNING', task_id = ?, attempts = attempts + 1, updated = ?
WHERE project_id = ? AND rotation_id = ? AND seq = ? AND state = 'PENDING'`
	countCanaryLeft = `SELECT COUNT(*) FROM rotation_servers
WHERE project_id = ? AND rotation_id = ? AND seq < ? AND state IN ('PENDING', 'RUNNING')`
	updateRotation = `UPDATE rotations SET state = ?, reason = ?, canary_done = ?, failed_base = ?, private_key = ?, login = ?, updated = ?,
    n_pending = ?, n_running = ?, n_succeeded = ?, n_failed = ?, n_skipped = ?
WHERE project_id = ? AND id = ?`
	skipPendingServers = `UPDATE rotation_servers SET state = 'SKIPPED', updated = ?
WHERE project_id = ? AND rotation_id = ? AND state = 'PENDING'`
	// Its condition is the one of the partial index rotations_active.
	selectActiveRotations = `SELECT project_id, id FROM rotations WHERE state = 'RUNNING' OR n_running > 0
ORDER BY created, id`
	// The private key a rotation's task verifies with: the one given to the rotation, else
	// the target key pair's hosted one.
	selectTaskRotation = `SELECT rotation_id FROM rotation_servers WHERE task_id = ? AND project_id = ?`
	selectRotationStep = `SELECT r.id, r.keypair_name, r.private_key, k.private_key, r.login
FROM rotation_servers rs JOIN rotations r ON r.project_id = rs.project_id AND r.id = rs.rotation_id
LEFT JOIN keypairs k ON k.project_id = r.project_id AND k.name = r.keypair_name
WHERE rs.task_id = ? AND rs.project_id = ?`
)

// rotationRow is a rotation as stored, with what only the store uses.
type rotationRow struct {
	kps.Rotation
	failedBase int
}

func scanRotation(row scanner, extra ...any) (*rotationRow, error) {
	var (
		r                rotationRow
		state            string
		created, updated int64
	)
	dest := append([]any{&r.ProjectID, &r.ID, &r.UserID, &r.KeyPairName, &r.FromKeyPair, &r.BatchSize, &r.MaxFailures,
		&r.Canary, &r.CanaryDone, &r.MayExport, &state, &r.Reason, &r.PrivateKey, &r.Login, &created, &updated, &r.failedBase,
		&r.Totals.Pending, &r.Totals.Running, &r.Totals.Succeeded, &r.Totals.Failed, &r.Totals.Skipped}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	t := &r.Totals
	t.Servers = t.Pending + t.Running + t.Succeeded + t.Failed + t.Skipped
	r.State = kps.RotationState(state)
	r.Created, r.Updated = fromMillis(created), fromMillis(updated)
	return &r, nil
}

func errRotationNotFound(id string) error {
	return kps.Errorf(kps.ErrRotationNotFound, "Rotation '%s' does not exist.", id)
}

// CreateRotation implements kps.RotationStore.
func (db *DB) CreateRotation(ctx context.Context, r *kps.Rotation, servers []string) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if len(servers) == 0 && r.FromKeyPair != "" {
		rows, err := tx.query(ctx, selectBoundServers, r.ProjectID, r.FromKeyPair)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			servers = append(servers, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(servers) == 0 {
			return kps.Errorf(kps.ErrInvalid, "No server is bound to key pair '%s': there is nothing to rotate.", r.FromKeyPair)
		}
	}
	if len(servers) == 0 {
		return kps.Errorf(kps.ErrInvalid, "Invalid parameter servers: a rotation needs at least one server.")
	}
	if len(servers) > kps.RotationMaxServers {
		return kps.Errorf(kps.ErrInvalid, "A rotation may take at most %d servers, not %d.", kps.RotationMaxServers, len(servers))
	}
	for _, id := range servers {
		ok, err := tx.exists(ctx, selectServerExists, r.ProjectID, id)
		if err != nil {
			return err
		}
		if !ok {
			return kps.ServerNotFound(id)
		}
	}
	r.Created, r.Updated, r.State = tx.now, tx.now, kps.RotationRunning
	if _, err := tx.exec(ctx, insertRotation, r.ProjectID, r.ID, r.UserID, r.KeyPairName, r.FromKeyPair, r.BatchSize,
		r.MaxFailures, r.Canary, r.MayExport, r.PrivateKey, r.Login, millis(tx.now), millis(tx.now), len(servers)); err != nil {
		return err
	}
	tx.auditTarget(r.ID)
	for i, id := range servers {
		if _, err := tx.exec(ctx, insertRotationServer, r.ProjectID, r.ID, i, id, millis(tx.now)); err != nil {
			return err
		}
	}
	r.Totals = kps.RotationTotals{Servers: len(servers), Pending: len(servers)}
	return tx.Commit()
}

// Rotation implements kps.RotationStore: the rotation with its servers and totals.
func (db *DB) Rotation(ctx context.Context, projectID, id string) (*kps.Rotation, error) {
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	r, err := scanRotation(tx.queryRow(ctx, selectRotation, projectID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errRotationNotFound(id)
	}
	if err != nil {
		return nil, err
	}
	rows, err := tx.query(ctx, selectRotationServers, projectID, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			s       kps.RotationServer
			state   string
			updated int64
		)
		if err := rows.Scan(&s.ServerID, &state, &s.TaskID, &s.Attempts, &s.ErrorCode, &s.ErrorMsg, &updated); err != nil {
			return nil, err
		}
		s.State, s.Updated = kps.RotationServerState(state), fromMillis(updated)
		r.Servers = append(r.Servers, s)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return &r.Rotation, nil
}

// ListRotations implements kps.RotationStore: newest first, with totals.
func (db *DB) ListRotations(ctx context.Context, projectID string, pg kps.Page) ([]kps.Rotation, int, error) {
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	limit := pg.Limit
	if limit <= 0 {
		limit = -1
		if tx.eng.isPostgres() {
			limit = 1 << 30
		}
	}
	rows, err := tx.query(ctx, listRotations, projectID, limit, pg.Offset)
	if err != nil {
		return nil, 0, err
	}
	var (
		out   []kps.Rotation
		total int
	)
	for rows.Next() {
		r, err := scanRotation(rows, &total)
		if err != nil {
			rows.Close()
			return nil, 0, err
		}
		out = append(out, r.Rotation)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	return out, total, nil
}

// moveServers counts n servers of t moving from state from to state to: the totals on the
// rotation's row follow every change of a server's state in the transaction that makes it
// (saveRotation writes them).
func moveServers(t *kps.RotationTotals, from, to kps.RotationServerState, n int) {
	*totalOf(t, from) -= n
	*totalOf(t, to) += n
}

func totalOf(t *kps.RotationTotals, s kps.RotationServerState) *int {
	switch s {
	case kps.RotationServerPending:
		return &t.Pending
	case kps.RotationServerRunning:
		return &t.Running
	case kps.RotationServerSucceeded:
		return &t.Succeeded
	case kps.RotationServerFailed:
		return &t.Failed
	case kps.RotationServerSkipped:
		return &t.Skipped
	}
	// Not a state the store writes: counted nowhere rather than in the wrong total.
	return new(int)
}

// lockRotation reads a rotation for a change: on PostgreSQL its row stays locked to the
// commit, so that the steps of several replicas (and the actions) take turns; SQLite's write
// transaction is alone anyway.
func lockRotation(ctx context.Context, tx *txn, projectID, id string) (*rotationRow, error) {
	q := selectRotation
	if tx.eng.isPostgres() {
		q += ` FOR UPDATE`
	}
	r, err := scanRotation(tx.queryRow(ctx, q, projectID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errRotationNotFound(id)
	}
	return r, err
}

// saveRotation writes r's state back; idle says no server of r is in flight, so that an ended
// rotation's private key can go: the key given to verify with lives as long as a task may
// need it, and no longer.
func (tx *txn) saveRotation(ctx context.Context, r *rotationRow, idle bool) error {
	if r.State.Terminal() && idle {
		r.PrivateKey, r.Login = nil, nil
	}
	r.Updated = tx.now
	t := r.Totals
	_, err := tx.exec(ctx, updateRotation, string(r.State), r.Reason, r.CanaryDone, r.failedBase, r.PrivateKey,
		r.Login, millis(tx.now), t.Pending, t.Running, t.Succeeded, t.Failed, t.Skipped, r.ProjectID, r.ID)
	return err
}

// SetRotationState implements kps.RotationStore.
func (db *DB) SetRotationState(ctx context.Context, projectID, id string, from []kps.RotationState, to kps.RotationState, reason string) (*kps.Rotation, error) {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	r, err := lockRotation(ctx, tx, projectID, id)
	if err != nil {
		return nil, err
	}
	allowed := false
	for _, s := range from {
		allowed = allowed || r.State == s
	}
	if !allowed {
		return nil, kps.Errorf(kps.ErrRotationState, "Rotation '%s' is %s: the action does not apply.", id, r.State)
	}
	if r.State == kps.RotationHalted && to == kps.RotationRunning {
		// Resuming a halt accepts the failures so far: the next max_failures+1 halt it again.
		r.failedBase = r.Totals.Failed
	}
	if to == kps.RotationCancelled {
		n, err := tx.execCount(ctx, skipPendingServers, millis(tx.now), projectID, id)
		if err != nil {
			return nil, err
		}
		moveServers(&r.Totals, kps.RotationServerPending, kps.RotationServerSkipped, n)
	}
	r.State, r.Reason = to, reason
	if err := tx.saveRotation(ctx, r, r.Totals.Running == 0); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return db.Rotation(ctx, projectID, id)
}

// ActiveRotations implements kps.RotationStore.
func (db *DB) ActiveRotations(ctx context.Context) ([]kps.RotationRef, error) {
	rows, err := db.read.QueryContext(ctx, db.bind(selectActiveRotations))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []kps.RotationRef
	for rows.Next() {
		var ref kps.RotationRef
		if err := rows.Scan(&ref.ProjectID, &ref.ID); err != nil {
			return nil, err
		}
		out = append(out, ref)
	}
	return out, rows.Err()
}

// retryLater are the refusals of a submission that say "not now" rather than "not this
// server": a busy server, the project's limit, a full queue. The server stays PENDING.
func retryLater(code string) bool {
	return code == kps.ErrServerBusy || code == kps.ErrProjectTasks || code == kps.ErrUnavailable
}

// AdvanceRotation implements kps.RotationStore: one step of the rotation machine in one
// transaction (kps-v3-api.md §8.4).
func (db *DB) AdvanceRotation(ctx context.Context, ref kps.RotationRef, submit func(r *kps.Rotation, serverID string) kps.TaskSubmission, admit kps.TaskAdmission) (int, error) {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	r, err := lockRotation(ctx, tx, ref.ProjectID, ref.ID)
	if kps.ErrorCode(err) == kps.ErrRotationNotFound {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	submitted, err := advanceRotation(ctx, tx, r, "", submit, admit)
	if err != nil {
		return 0, err
	}
	return submitted, tx.Commit()
}

// FinishRotationTask implements kps.RotationStore: the outcome of task t recorded as
// FinishTask records it, and, when t is a server's task of a rotation, the step of that
// rotation in the same transaction — its next servers are READY when the outcome commits, and
// a worker that frees up finds them without waiting for another commit (kps-v3-api.md §8.4).
func (db *DB) FinishRotationTask(ctx context.Context, t *kps.Task, o kps.TaskOutcome, submit func(r *kps.Rotation, serverID string) kps.TaskSubmission, admit kps.TaskAdmission) (int, error) {
	to, code, msg, err := finishedPhase(o)
	if err != nil {
		return 0, err
	}
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var (
		r          *rotationRow
		rotationID string
	)
	err = tx.queryRow(ctx, selectTaskRotation, t.ID, t.ProjectID).Scan(&rotationID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		tx.tasksOnly = true
	case err != nil:
		return 0, err
	default:
		// The rotation is locked before the task is changed, in the order of a step (the
		// rotation, then its tasks), so that two replicas' transactions cannot deadlock.
		if r, err = lockRotation(ctx, tx, t.ProjectID, rotationID); kps.ErrorCode(err) == kps.ErrRotationNotFound {
			r, err = nil, nil
		}
		if err != nil {
			return 0, err
		}
	}
	if err := finishTask(ctx, tx, t, to, code, msg, o); err != nil {
		return 0, err
	}
	submitted := 0
	if r != nil {
		// Only t's server is settled here: the servers of tasks that ended otherwise (the
		// sweeper's) are the driver's, woken by their end, so that a step per finished task
		// does not read every server in flight again.
		if submitted, err = advanceRotation(ctx, tx, r, t.ID, submit, admit); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	t.Phase, t.ErrorCode, t.ErrorMsg, t.Updated = to, code, msg, tx.now
	return submitted, nil
}

// advanceRotation is one step of r, locked by tx: the servers whose tasks ended are recorded
// (only the server of task taskID when it is set), the rotation halts, pauses or completes as
// the rules say, and the next servers' tasks are submitted.
func advanceRotation(ctx context.Context, tx *txn, r *rotationRow, taskID string, submit func(r *kps.Rotation, serverID string) kps.TaskSubmission, admit kps.TaskAdmission) (int, error) {
	changed, err := settleRotationServers(ctx, tx, r, taskID)
	if err != nil {
		return 0, err
	}
	totals := &r.Totals
	before := r.State
	halt := func() {
		if r.State == kps.RotationRunning && totals.Failed-r.failedBase > r.MaxFailures {
			r.State = kps.RotationHalted
			r.Reason = fmt.Sprintf("%d servers failed, more than max_failures (%d): resume to go on, or cancel.", totals.Failed-r.failedBase, r.MaxFailures)
		}
	}
	halt()
	if r.State == kps.RotationRunning && r.Canary > 0 && !r.CanaryDone {
		var left int
		if err := tx.queryRow(ctx, countCanaryLeft, r.ProjectID, r.ID, r.Canary).Scan(&left); err != nil {
			return 0, err
		}
		if left == 0 {
			r.State, r.CanaryDone = kps.RotationPaused, true
			r.Reason = fmt.Sprintf("The %d canary servers are done: resume to rotate the others.", r.Canary)
		}
	}
	var submitted int
	if r.State == kps.RotationRunning && totals.Running < r.BatchSize && totals.Pending > 0 {
		upTo := kps.RotationMaxServers + 1
		if r.Canary > 0 && !r.CanaryDone {
			upTo = r.Canary
		}
		if submitted, err = startRotationServers(ctx, tx, r, r.BatchSize-totals.Running, upTo, submit, admit); err != nil {
			return 0, err
		}
		changed = true
		halt()
	}
	if !r.State.Terminal() && totals.Pending == 0 && totals.Running == 0 {
		r.State, r.Reason = kps.RotationCompleted, ""
	}
	if r.State != before || changed {
		if err := tx.saveRotation(ctx, r, totals.Running == 0); err != nil {
			return 0, err
		}
	}
	return submitted, nil
}

// settleRotationServers records the outcome of the servers whose tasks ended: every one in
// flight, or only task taskID's when it is set.
func settleRotationServers(ctx context.Context, tx *txn, r *rotationRow, taskID string) (changed bool, err error) {
	type running struct {
		seq, attempts    int
		taskID           string
		phase, code, msg sql.NullString
	}
	q, args := selectRotationRunning, []any{r.ProjectID, r.ID}
	if taskID != "" {
		q, args = selectRotationTaskRunning, append(args, taskID)
	}
	rows, err := tx.query(ctx, q, args...)
	if err != nil {
		return false, err
	}
	var list []running
	for rows.Next() {
		var x running
		if err := rows.Scan(&x.seq, &x.taskID, &x.attempts, &x.phase, &x.code, &x.msg); err != nil {
			rows.Close()
			return false, err
		}
		list = append(list, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, err
	}
	for _, x := range list {
		var state kps.RotationServerState
		code, msg := x.code.String, x.msg.String
		switch {
		case !x.phase.Valid:
			state, code, msg = kps.RotationServerFailed, kps.TaskInterrupted,
				"The server's task "+x.taskID+" was deleted before its outcome was recorded."
		case x.phase.String == string(kps.PhaseSuccess):
			state, code, msg = kps.RotationServerSucceeded, "", ""
		case x.phase.String == string(kps.PhaseFailed):
			state = kps.RotationServerFailed
			// Interrupted by a restart or a lost lease: every step is idempotent, so the
			// server goes again, unless the rotation was cancelled meanwhile.
			if code == kps.TaskInterrupted && x.attempts < rotationRetries && !r.State.Terminal() {
				state = kps.RotationServerPending
			}
		default:
			continue
		}
		if _, err := tx.exec(ctx, settleRotationServer, string(state), code, msg, millis(tx.now), r.ProjectID, r.ID, x.seq); err != nil {
			return false, err
		}
		moveServers(&r.Totals, kps.RotationServerRunning, state, 1)
		changed = true
	}
	return changed, nil
}

// startRotationServers submits the tasks of up to n pending servers of seq below upTo, in the
// transaction of the step: a server whose submission is refused for now stays pending, one
// refused for good (no login, say) fails with the refusal's code.
func startRotationServers(ctx context.Context, tx *txn, r *rotationRow, n, upTo int, submit func(r *kps.Rotation, serverID string) kps.TaskSubmission, admit kps.TaskAdmission) (int, error) {
	rows, err := tx.query(ctx, selectRotationPending, r.ProjectID, r.ID, upTo, n)
	if err != nil {
		return 0, err
	}
	var (
		seqs []int
		subs []kps.TaskSubmission
	)
	for rows.Next() {
		var (
			seq int
			id  string
		)
		if err := rows.Scan(&seq, &id); err != nil {
			rows.Close()
			return 0, err
		}
		seqs = append(seqs, seq)
		subs = append(subs, submit(&r.Rotation, id))
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(subs) == 0 {
		return 0, err
	}
	tasks, refused, err := submitBatch(ctx, tx, subs, admit)
	if err != nil {
		return 0, err
	}
	started := 0
	for i, seq := range seqs {
		if refused[i] != nil {
			code := kps.ErrorCode(refused[i])
			if retryLater(code) {
				continue
			}
			if _, err := tx.exec(ctx, settleRotationServer, string(kps.RotationServerFailed), code, kps.ErrorMessage(refused[i]),
				millis(tx.now), r.ProjectID, r.ID, seq); err != nil {
				return 0, err
			}
			moveServers(&r.Totals, kps.RotationServerPending, kps.RotationServerFailed, 1)
			continue
		}
		if _, err := tx.exec(ctx, startRotationServer, tasks[i].ID, millis(tx.now), r.ProjectID, r.ID, seq); err != nil {
			return 0, err
		}
		moveServers(&r.Totals, kps.RotationServerPending, kps.RotationServerRunning, 1)
		started++
	}
	return started, nil
}

// RotationStep implements kps.RotationStore.
func (db *DB) RotationStep(ctx context.Context, projectID, taskID string) (*kps.RotationStep, error) {
	var (
		id, keyPair   string
		given, hosted []byte
		login         []byte
	)
	err := db.read.QueryRowContext(ctx, db.bind(selectRotationStep), taskID, projectID).Scan(&id, &keyPair, &given, &hosted, &login)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if given != nil {
		return &kps.RotationStep{RotationID: id, Sealed: given, AAD: kps.RotationKeyAAD(projectID, id), Login: login}, nil
	}
	return &kps.RotationStep{RotationID: id, Sealed: hosted, AAD: kps.PrivateKeyAAD(projectID, keyPair), Login: login}, nil
}

// A rotation's sealed secrets move to a new master key with the others (RewrapSecrets).
func init() {
	for _, col := range []string{"private_key", "login"} {
		sealedColumns = append(sealedColumns, struct {
			scan, update string
			first        any
		}{
			scan: `SELECT project_id || '/' || id, ` + col + ` FROM rotations
WHERE ` + col + ` IS NOT NULL AND project_id || '/' || id > ? ORDER BY project_id || '/' || id LIMIT 100`,
			update: `UPDATE rotations SET ` + col + ` = ? WHERE project_id || '/' || id = ? AND ` + col + ` = ?`,
			first:  "",
		})
	}
}
