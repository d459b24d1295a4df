package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/openkps/kps"
)

// Expiring bindings (kps-v3-api.md §7.1): a bind's expiry rides on its task row until the bind
// succeeds, then on the binding; the service's expiry loop finds the due ones (DueExpiries) and
// submits their UNBIND, which clears the binding's expiry in its own transaction.

const (
	setTaskExpiry = `UPDATE tasks SET expires_at = ? WHERE id = ?`
	// The binding takes the expiry of the bind that made it; a bind without one clears it.
	setBindingExpiryFromTask = `UPDATE bindings SET expires_at = (SELECT expires_at FROM tasks WHERE id = ?)
WHERE project_id = ? AND server_id = ?`
	selectBindingExpiry = `SELECT expires_at FROM bindings WHERE project_id = ? AND server_id = ?`
	clearBindingExpiry  = `UPDATE bindings SET expires_at = NULL WHERE project_id = ? AND server_id = ?`
	selectDueExpiries   = `SELECT project_id, server_id, keypair_name, public_key, password_disabled, expires_at
FROM bindings WHERE expires_at IS NOT NULL AND expires_at <= ?
ORDER BY expires_at LIMIT ?`
)

// recordExpiry writes a bind's expiry on its task, and clears the binding's expiry when the
// submission is the expiry's own UNBIND: it is submitted once, and a failure of it stays in the
// failed-task list rather than being retried without end.
func recordExpiry(ctx context.Context, tx *txn, s *kps.TaskSubmission) error {
	switch {
	case s.Expiry:
		_, err := tx.exec(ctx, clearBindingExpiry, s.ProjectID, s.ServerID)
		return err
	case !s.ExpiresAt.IsZero() && s.Operation != kps.OpUnbind:
		_, err := tx.exec(ctx, setTaskExpiry, millis(s.ExpiresAt), s.ID)
		return err
	}
	return nil
}

// expiryDue refuses an expiry's UNBIND whose binding is no longer due under the submission's
// locks: another replica submitted it first, or a bind since replaced the binding.
func expiryDue(ctx context.Context, tx *txn, s *kps.TaskSubmission) error {
	var at sql.NullInt64
	err := tx.queryRow(ctx, selectBindingExpiry, s.ProjectID, s.ServerID).Scan(&at)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if !at.Valid || at.Int64 > millis(tx.now) {
		return kps.Errorf(kps.ErrServerNotBound, "Server '%s' has no expired binding.", s.ServerID)
	}
	return nil
}

// bindingExpiryFromTask gives the binding a successful bind made the expiry of that bind.
func bindingExpiryFromTask(ctx context.Context, tx *txn, taskID, projectID, serverID string) error {
	_, err := tx.exec(ctx, setBindingExpiryFromTask, taskID, projectID, serverID)
	return err
}

// DueExpiries implements kps.ExpiryStore.
func (db *DB) DueExpiries(ctx context.Context, now time.Time, limit int) ([]kps.Binding, error) {
	rows, err := db.read.QueryContext(ctx, db.bind(selectDueExpiries), millis(now), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []kps.Binding
	for rows.Next() {
		var b kps.Binding
		var at int64
		if err := rows.Scan(&b.ProjectID, &b.ServerID, &b.KeyPairName, &b.PublicKey, &b.PasswordDisabled, &at); err != nil {
			return nil, err
		}
		b.ExpiresAt = fromMillis(at)
		out = append(out, b)
	}
	return out, rows.Err()
}

var _ kps.ExpiryStore = (*DB)(nil)
