package store

import (
	"context"
	"fmt"
)

// sealedColumns are the columns holding sealed secrets: hosted private keys, service
// credentials and secret access keys (permanent and temporary). Each query pages by the table's key and updates a row only if the secret is
// still the one that was read, so a concurrent change is never overwritten.
var sealedColumns = []struct {
	scan, update string
	first        any // a key before every key of the table
}{
	{
		first:  int64(0),
		scan:   `SELECT id, private_key FROM keypairs WHERE private_key IS NOT NULL AND id > ? ORDER BY id LIMIT 100`,
		update: `UPDATE keypairs SET private_key = ? WHERE id = ? AND private_key = ?`,
	},
	{
		// project_id and id joined: servers have a composite key.
		scan: `SELECT project_id || '/' || id, credential FROM servers
WHERE credential IS NOT NULL AND project_id || '/' || id > ? ORDER BY project_id || '/' || id LIMIT 100`,
		update: `UPDATE servers SET credential = ? WHERE project_id || '/' || id = ? AND credential = ?`,
		first:  "",
	},
	{
		scan:   `SELECT access, secret FROM access_keys WHERE access > ? ORDER BY access LIMIT 100`,
		update: `UPDATE access_keys SET secret = ? WHERE access = ? AND secret = ?`,
		first:  "",
	},
	{
		scan:   `SELECT access, secret FROM temporary_credentials WHERE access > ? ORDER BY access LIMIT 100`,
		update: `UPDATE temporary_credentials SET secret = ? WHERE access = ? AND secret = ?`,
		first:  "",
	},
}

// RewrapSecrets passes every sealed secret through rewrap and stores what changed, in batches of
// one short write transaction each, so the service keeps serving while it runs.
func (db *DB) RewrapSecrets(ctx context.Context, rewrap func([]byte) ([]byte, bool, error)) (int, error) {
	n := 0
	for _, col := range sealedColumns {
		after := col.first
		for {
			keys, secrets, err := db.scanSealed(ctx, col.scan, after)
			if err != nil {
				return n, err
			}
			if len(keys) == 0 {
				break
			}
			after = keys[len(keys)-1]
			changed, err := db.rewrapBatch(ctx, col.update, keys, secrets, rewrap)
			n += changed
			if err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (db *DB) scanSealed(ctx context.Context, query string, after any) ([]any, [][]byte, error) {
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback()
	rows, err := tx.query(ctx, query, after)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var keys []any
	var secrets [][]byte
	for rows.Next() {
		var key any
		var sealed []byte
		if err := rows.Scan(&key, &sealed); err != nil {
			return nil, nil, err
		}
		keys, secrets = append(keys, key), append(secrets, sealed)
	}
	return keys, secrets, rows.Err()
}

// rewrapBatch computes the new values outside any transaction (unwrapping may be slow, for
// a KMS), then writes them in one short transaction, each guarded by the value it replaces.
func (db *DB) rewrapBatch(ctx context.Context, update string, keys []any, secrets [][]byte, rewrap func([]byte) ([]byte, bool, error)) (int, error) {
	outs := make([][]byte, len(secrets))
	for i, old := range secrets {
		out, changed, err := rewrap(old)
		if err != nil {
			return 0, fmt.Errorf("rewrapping a sealed secret: %w", err)
		}
		if changed {
			outs[i] = out
		}
	}
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	n := 0
	for i, out := range outs {
		if out == nil {
			continue
		}
		res, err := tx.exec(ctx, update, out, keys[i], secrets[i])
		if err != nil {
			return 0, err
		}
		if c, _ := res.RowsAffected(); c == 1 {
			n++
		}
	}
	return n, tx.Commit()
}
