package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/openkps/kps"
)

const (
	insertServer = `INSERT INTO servers (project_id, id, name, address, port, login_user, host_keys,
    sshd_config, credential, reach_by_admin, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

	// The binding's key pair and flag are read-only members of a server (inventory.md).
	serverColumns = `s.project_id, s.id, s.name, s.address, s.port, s.login_user, s.host_keys,
    s.sshd_config, s.credential, s.reach_by_admin, s.created, s.updated,
    COALESCE(b.keypair_name, ''), COALESCE(b.password_disabled, FALSE), COALESCE(b.expires_at, 0),
    s.last_drift_check, s.drift, lt.id, lt.operation, lt.phase, lt.created, lt.error_code`
	// The server's last task (inventory.md): its newest task the service still keeps, found
	// by the subquery on tasks_by_server (project_id, server_id, seq) as the one highest seq,
	// read from the index alone, then fetched by its primary key (docs/query-plans.md).
	serverJoins = `
LEFT JOIN bindings b ON b.project_id = s.project_id AND b.server_id = s.id
LEFT JOIN tasks lt ON lt.seq = (SELECT t.seq FROM tasks t WHERE t.project_id = s.project_id AND t.server_id = s.id
    ORDER BY t.seq DESC LIMIT 1)`
	selectServer = `SELECT ` + serverColumns + `
FROM servers s` + serverJoins + `
WHERE s.project_id = ? AND s.id = ?`
	// Ordered by id (inventory.md); total by COUNT(*) OVER () with the page. The page is cut
	// first, so that the binding and the last task are looked up for its rows only.
	listServers = `SELECT ` + serverColumns + `, s.total
FROM (SELECT *, COUNT(*) OVER () AS total FROM servers WHERE project_id = ? ORDER BY id LIMIT ? OFFSET ?) s` +
		serverJoins + `
ORDER BY s.id`
	countServers = `SELECT COUNT(*) FROM servers WHERE project_id = ?`

	updateServer = `UPDATE servers SET name = ?, address = ?, port = ?, login_user = ?, host_keys = ?,
    sshd_config = ?, credential = ?, reach_by_admin = ?, updated = ?
WHERE project_id = ? AND id = ?`
	deleteServer        = `DELETE FROM servers WHERE project_id = ? AND id = ?`
	deleteServerBinding = `DELETE FROM bindings WHERE project_id = ? AND server_id = ?`

	// Trust on first use: the guard makes a concurrent second pin a no-op. reach_by_admin stays
	// as it is: a key learnt by connecting where the inventory points belongs to that reach.
	pinHostKey = `UPDATE servers SET host_keys = ?, updated = ?
WHERE project_id = ? AND id = ? AND host_keys = '[]'`
	selectHostKeys = `SELECT host_keys FROM servers WHERE project_id = ? AND id = ?`

	// Literal phases, not placeholders: that is what lets SQLite use the partial index
	// tasks_one_active_per_server.
	selectServerBusy = `SELECT 1 FROM tasks
WHERE project_id = ? AND server_id = ? AND phase IN ('READY', 'RUNNING')`
)

func errServerNotFound(id string) error { return kps.ServerNotFound(id) }

func errServerBusy(id string) error {
	return kps.Errorf(kps.ErrServerBusy, "Server '%s' already has a task in progress.", id)
}

// CreateServer registers s; its creation and update times are set to now. Defaults and
// validation are the caller's job. An ID already registered in the project is KPS.6306; a
// project holding quota servers already is KPS.6402 (quota ≤ 0: unlimited). The count and the
// insert are one transaction.
func (db *DB) CreateServer(ctx context.Context, s *kps.Server, quota int) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if quota > 0 {
		if err := tx.lock(ctx, lockServerQuota, s.ProjectID); err != nil {
			return err
		}
		var n int
		if err := tx.queryRow(ctx, countServers, s.ProjectID).Scan(&n); err != nil {
			return err
		}
		if n >= quota {
			// Conflict (409) before quota (403), as for key pairs (§1.4).
			if _, err := findServer(ctx, tx, s.ProjectID, s.ID); err == nil {
				return kps.Errorf(kps.ErrServerExists, "Server '%s' is already registered.", s.ID)
			} else if kps.ErrorCode(err) != kps.ErrServerNotFound {
				return err
			}
			return kps.Errorf(kps.ErrServerQuota, "The project holds %d servers, the most one project may register.", n)
		}
	}
	if err := createServer(ctx, tx, s); err != nil {
		return err
	}
	return tx.Commit()
}

func createServer(ctx context.Context, tx *txn, s *kps.Server) error {
	now := millis(tx.now)
	_, err := tx.exec(ctx, insertServer, s.ProjectID, s.ID, s.Name, s.Address, s.Port, s.User,
		encodeList(s.HostKeys), s.SSHDConfig, s.Credential, s.ReachByAdmin, now, now)
	if tx.eng.isUniqueViolation(err) {
		return kps.Errorf(kps.ErrServerExists, "Server '%s' is already registered.", s.ID)
	}
	if err != nil {
		return err
	}
	s.Created, s.Updated = tx.now, tx.now
	s.KeyPairName, s.PasswordDisabled = "", false
	return nil
}

// Server returns the server with its binding's key pair name and flag, or KPS.6204.
func (db *DB) Server(ctx context.Context, projectID, id string) (*kps.Server, error) {
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return findServer(ctx, tx, projectID, id)
}

func findServer(ctx context.Context, tx *txn, projectID, id string) (*kps.Server, error) {
	s, err := scanServer(tx.queryRow(ctx, selectServer, projectID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errServerNotFound(id)
	}
	return s, err
}

type scanner interface{ Scan(dest ...any) error }

func scanServer(row scanner, extra ...any) (*kps.Server, error) {
	var (
		s                kps.Server
		hostKeys         string
		created, updated int64
		expires, drifted int64
		// The last task's columns are NULL when the service keeps no task of the server.
		taskID, taskOp, taskPhase, taskError sql.NullString
		taskCreated                          sql.NullInt64
	)
	dest := append([]any{&s.ProjectID, &s.ID, &s.Name, &s.Address, &s.Port, &s.User, &hostKeys,
		&s.SSHDConfig, &s.Credential, &s.ReachByAdmin, &created, &updated, &s.KeyPairName, &s.PasswordDisabled,
		&expires, &drifted, &s.Drift, &taskID, &taskOp, &taskPhase, &taskCreated, &taskError}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	var err error
	if s.HostKeys, err = decodeList(hostKeys); err != nil {
		return nil, err
	}
	s.Created, s.Updated = fromMillis(created), fromMillis(updated)
	if expires > 0 {
		s.BindingExpires = fromMillis(expires)
	}
	if drifted > 0 {
		s.LastDriftCheck = fromMillis(drifted)
	}
	if taskID.Valid {
		s.LastTask = &kps.ServerTask{ID: taskID.String, Operation: kps.Operation(taskOp.String),
			Phase: kps.Phase(taskPhase.String), Created: fromMillis(taskCreated.Int64)}
		if s.LastTask.Phase == kps.PhaseFailed {
			s.LastTask.ErrorCode = taskError.String
		}
	}
	return &s, nil
}

// ListServers returns a page of the project's servers ordered by ID, and their total.
func (db *DB) ListServers(ctx context.Context, projectID string, p kps.Page) ([]kps.Server, int, error) {
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()

	rows, err := tx.query(ctx, listServers, projectID, p.Limit, p.Offset)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	servers, total := []kps.Server{}, 0
	for rows.Next() {
		s, err := scanServer(rows, &total)
		if err != nil {
			return nil, 0, err
		}
		servers = append(servers, *s)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	if len(servers) == 0 {
		// Past the end the window yields no row to carry the total.
		if err := tx.queryRow(ctx, countServers, projectID).Scan(&total); err != nil {
			return nil, 0, err
		}
	}
	return servers, total, nil
}

// UpdateServer applies u and bumps the update time. Changing the address, port or user while
// the server has a READY/RUNNING task is KPS.6302 (the worker may be connecting with the old
// values); validation is the caller's job.
func (db *DB) UpdateServer(ctx context.Context, projectID, id string, u kps.ServerUpdate) (*kps.Server, error) {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	s, err := updateServerTx(ctx, tx, projectID, id, u)
	if err != nil {
		return nil, err
	}
	return s, tx.Commit()
}

func updateServerTx(ctx context.Context, tx *txn, projectID, id string, u kps.ServerUpdate) (*kps.Server, error) {
	if err := tx.lock(ctx, lockServer, projectID, id); err != nil {
		return nil, err
	}
	s, err := findServer(ctx, tx, projectID, id)
	if err != nil {
		return nil, err
	}
	if u.ChangesConnection(s) {
		busy, err := tx.exists(ctx, selectServerBusy, projectID, id)
		if err != nil {
			return nil, err
		}
		if busy {
			return nil, kps.Errorf(kps.ErrServerBusy,
				"Server '%s' has a task in progress; its address, port and user cannot change now.", id)
		}
	}
	u.Apply(s)
	s.Updated = tx.now
	if _, err := tx.exec(ctx, updateServer, s.Name, s.Address, s.Port, s.User, encodeList(s.HostKeys),
		s.SSHDConfig, s.Credential, s.ReachByAdmin, millis(s.Updated), projectID, id); err != nil {
		return nil, err
	}
	return s, nil
}

// DeleteServer removes the server, or fails with KPS.6302 while it has a READY/RUNNING task.
// A bound server may be removed: its binding goes with it (the key stays installed on the
// host; the record that the service put it there is dropped). Finished tasks of the server are
// kept, with the server name they were submitted with.
func (db *DB) DeleteServer(ctx context.Context, projectID, id string) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := deleteServerTx(ctx, tx, projectID, id); err != nil {
		return err
	}
	return tx.Commit()
}

func deleteServerTx(ctx context.Context, tx *txn, projectID, id string) error {
	if err := tx.lock(ctx, lockServer, projectID, id); err != nil {
		return err
	}
	if _, err := findServer(ctx, tx, projectID, id); err != nil {
		return err
	}
	busy, err := tx.exists(ctx, selectServerBusy, projectID, id)
	if err != nil {
		return err
	}
	if busy {
		return errServerBusy(id)
	}
	if _, err := tx.exec(ctx, deleteServerBinding, projectID, id); err != nil {
		return err
	}
	_, err = tx.exec(ctx, deleteServer, projectID, id)
	return err
}

// PinHostKey records key as the server's only pinned host key if it has none (trust on first
// use) and returns the pins in force afterwards: key itself, or the pins that were already
// there (a concurrent first use, or pins set through the inventory).
func (db *DB) PinHostKey(ctx context.Context, projectID, id, key string) ([]string, error) {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	if _, err := tx.exec(ctx, pinHostKey, encodeList([]string{key}), millis(tx.now), projectID, id); err != nil {
		return nil, err
	}
	var hostKeys string
	err = tx.queryRow(ctx, selectHostKeys, projectID, id).Scan(&hostKeys)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errServerNotFound(id)
	}
	if err != nil {
		return nil, err
	}
	pins, err := decodeList(hostKeys)
	if err != nil {
		return nil, err
	}
	return pins, tx.Commit()
}
