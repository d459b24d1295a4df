package store

import (
	"context"
	"time"
)

const (
	upsertReplica = `INSERT INTO replicas (id, expires) VALUES (?, ?)
ON CONFLICT (id) DO UPDATE SET expires = excluded.expires`
	// A replica whose heartbeat has expired is as good as absent to the claim rule; its row
	// goes so that the table stays as small as the set of live replicas.
	deleteDeadReplicas = `DELETE FROM replicas WHERE expires < ?`
	deleteReplica      = `DELETE FROM replicas WHERE id = ?`
	deleteAllReplicas  = `DELETE FROM replicas`
)

// HeartbeatReplica records that replica id is alive until now+ttl and forgets replicas whose
// heartbeat has expired. Tasks whose caller credential id holds wait for id while it lives.
func (db *DB) HeartbeatReplica(ctx context.Context, id string, ttl time.Duration) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.exec(ctx, upsertReplica, id, millis(tx.now.Add(ttl))); err != nil {
		return err
	}
	if _, err := tx.exec(ctx, deleteDeadReplicas, millis(tx.now)); err != nil {
		return err
	}
	return tx.Commit()
}

// RemoveReplica forgets replica id — it stopped, and the credentials it held went with it —
// or every replica when all is set (the start of a sole instance: nobody else can be alive).
// Tasks they held become claimable by anyone, who fails them with KPS.6609.
func (db *DB) RemoveReplica(ctx context.Context, id string, all bool) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if all {
		_, err = tx.exec(ctx, deleteAllReplicas)
	} else {
		_, err = tx.exec(ctx, deleteReplica, id)
	}
	if err != nil {
		return err
	}
	return tx.Commit()
}

// selectHeldTasks reads the READY queue (its partial index) for one holder's tasks.
const selectHeldTasks = `SELECT id FROM tasks WHERE phase = 'READY' AND caller_auth AND holder = ?`

// HeldTasks returns the IDs of the READY tasks whose caller credential replica id holds.
func (db *DB) HeldTasks(ctx context.Context, id string) ([]string, error) {
	rows, err := db.read.QueryContext(ctx, db.bind(selectHeldTasks), id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := []string{}
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		ids = append(ids, t)
	}
	return ids, rows.Err()
}
