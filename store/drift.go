package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/openkps/kps"
)

// Drift checks (kps-v3-api.md §7.2): one row per check, its per-server results one JSON array
// written when it ends, and each checked server's record updated in the same transaction.

const (
	insertDriftCheck = `INSERT INTO drift_checks (id, project_id, state, scheduled, servers, results, created, lease)
VALUES (?, ?, 'RUNNING', ?, ?, '[]', ?, ?)`
	finishDriftCheck = `UPDATE drift_checks SET state = 'DONE', results = ?, finished = ?
WHERE id = ? AND state = 'RUNNING'`
	setServerDrift   = `UPDATE servers SET last_drift_check = ?, drift = ? WHERE project_id = ? AND id = ?`
	selectDriftCheck = `SELECT id, project_id, state, scheduled, servers, results, created, finished
FROM drift_checks WHERE project_id = ? AND id = ?`
	listDriftChecks = `SELECT id, project_id, state, scheduled, servers, '[]', created, finished, COUNT(*) OVER ()
FROM drift_checks WHERE project_id = ? ORDER BY created DESC, id LIMIT ? OFFSET ?`
	countDriftChecks      = `SELECT COUNT(*) FROM drift_checks WHERE project_id = ?`
	interruptDriftChecks  = `UPDATE drift_checks SET state = 'INTERRUPTED', finished = ? WHERE state = 'RUNNING'`
	interruptDeadChecks   = `UPDATE drift_checks SET state = 'INTERRUPTED', finished = ? WHERE state = 'RUNNING' AND lease < ?`
	renewDriftCheck       = `UPDATE drift_checks SET lease = ? WHERE id = ? AND state = 'RUNNING'`
	selectServerProjects  = `SELECT DISTINCT project_id FROM servers ORDER BY project_id`
	driftCheckNotFoundMsg = "Drift check '%s' does not exist."
)

// CreateDriftCheck implements kps.DriftStore: c is inserted RUNNING, created now.
func (db *DB) CreateDriftCheck(ctx context.Context, c *kps.DriftCheck) error {
	ids, err := json.Marshal(nonNil(c.ServerIDs))
	if err != nil {
		return err
	}
	lease := c.Lease
	if lease <= 0 {
		lease = kps.DriftCheckLease
	}
	now, err := db.inWrite(ctx, func(tx *txn) error {
		tx.auditTarget(c.ID)
		_, err := tx.exec(ctx, insertDriftCheck, c.ID, c.ProjectID, c.Scheduled, string(ids), millis(tx.now),
			millis(tx.now.Add(lease)))
		return err
	})
	if err != nil {
		return err
	}
	c.State, c.Created = kps.DriftRunning, now
	return nil
}

// FinishDriftCheck implements kps.DriftStore.
func (db *DB) FinishDriftCheck(ctx context.Context, c *kps.DriftCheck) error {
	results, err := json.Marshal(nonNil(c.Results))
	if err != nil {
		return err
	}
	// Each server's record keeps its own result (last_drift_check, drift).
	now, err := db.inWrite(ctx, func(tx *txn) error {
		if _, err := tx.exec(ctx, finishDriftCheck, string(results), millis(tx.now), c.ID); err != nil {
			return err
		}
		for _, r := range c.Results {
			summary, err := json.Marshal(r)
			if err != nil {
				return err
			}
			at := r.CheckTime
			if at == 0 {
				at = millis(tx.now)
			}
			if _, err := tx.exec(ctx, setServerDrift, at, string(summary), c.ProjectID, r.ServerID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.State, c.Finished = kps.DriftDone, now
	return nil
}

func scanDriftCheck(row scanner, extra ...any) (*kps.DriftCheck, error) {
	var (
		c                 kps.DriftCheck
		ids, results      string
		created, finished int64
	)
	if err := row.Scan(append([]any{&c.ID, &c.ProjectID, &c.State, &c.Scheduled, &ids, &results, &created, &finished}, extra...)...); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(ids), &c.ServerIDs); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(results), &c.Results); err != nil {
		return nil, err
	}
	c.Created, c.Finished = fromMillis(created), fromMillis(finished)
	return &c, nil
}

// DriftCheck implements kps.DriftStore: KPS.6208 when the project has no such check.
func (db *DB) DriftCheck(ctx context.Context, projectID, id string) (*kps.DriftCheck, error) {
	c, err := scanDriftCheck(db.read.QueryRowContext(ctx, db.bind(selectDriftCheck), projectID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, kps.Errorf(kps.ErrDriftCheckNotFound, driftCheckNotFoundMsg, kps.Clip(id))
	}
	return c, err
}

// ListDriftChecks implements kps.DriftStore.
func (db *DB) ListDriftChecks(ctx context.Context, projectID string, p kps.Page) ([]kps.DriftCheck, int, error) {
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	rows, err := tx.query(ctx, listDriftChecks, projectID, p.Limit, p.Offset)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	out, total := []kps.DriftCheck{}, 0
	for rows.Next() {
		c, err := scanDriftCheck(rows, &total)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, *c)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	if len(out) == 0 {
		if err := tx.queryRow(ctx, countDriftChecks, projectID).Scan(&total); err != nil {
			return nil, 0, err
		}
	}
	return out, total, nil
}

// InterruptDriftChecks implements kps.DriftStore.
func (db *DB) InterruptDriftChecks(ctx context.Context, all bool) (n int, err error) {
	_, err = db.inWrite(ctx, func(tx *txn) error {
		if all {
			n, err = tx.execCount(ctx, interruptDriftChecks, millis(tx.now))
		} else {
			n, err = tx.execCount(ctx, interruptDeadChecks, millis(tx.now), millis(tx.now))
		}
		return err
	})
	return n, err
}

// RenewDriftChecks implements kps.DriftStore.
func (db *DB) RenewDriftChecks(ctx context.Context, ids []string, lease time.Duration) error {
	if len(ids) == 0 {
		return nil
	}
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, id := range ids {
		if _, err := tx.exec(ctx, renewDriftCheck, millis(tx.now.Add(lease)), id); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// DriftProjects implements kps.DriftStore.
func (db *DB) DriftProjects(ctx context.Context) ([]string, error) {
	rows, err := db.read.QueryContext(ctx, db.bind(selectServerProjects))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

var _ kps.DriftStore = (*DB)(nil)
