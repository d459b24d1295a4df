package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/openkps/kps"
)

const (
	keyPairColumns = `id, project_id, name, type, scope, user_id, public_key, fingerprint, algorithm,
    description, private_key, created, updated`

	selectKeyPairExists = `SELECT 1 FROM keypairs WHERE project_id = ? AND name = ?`
	countKeyPairs       = `SELECT COUNT(*) FROM keypairs WHERE project_id = ?`
	countOwnedKeyPairs  = `SELECT COUNT(*) FROM keypairs WHERE project_id = ? AND user_id = ?`
	insertKeyPair       = `INSERT INTO keypairs (project_id, name, type, scope, user_id, public_key,
    fingerprint, algorithm, description, private_key, created, updated)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING id`

	// visibleKeyPairs is the visibility rule of §1.2: domain scope, or the caller's own.
	visibleKeyPairs = `project_id = ? AND (scope = 'domain' OR user_id = ?)`

	selectVisibleKeyPair = `SELECT ` + keyPairColumns + ` FROM keypairs
WHERE ` + visibleKeyPairs + ` AND name = ?`

	// The page: visible names strictly after the marker in byte order (the name column is
	// declared COLLATE BINARY, so comparisons and ORDER BY need no clause here); one extra row
	// tells whether more follow.
	listKeyPairsAfter = `SELECT ` + keyPairColumns + ` FROM keypairs
WHERE ` + visibleKeyPairs + ` AND name > ?
ORDER BY name
LIMIT ?`
	// Names at or before the marker, nearest first: the previous_marker of §4.2 is the
	// (limit+1)-th of them, "" when there are fewer, absent when there are none.
	listKeyPairNamesUpTo = `SELECT name FROM keypairs
WHERE ` + visibleKeyPairs + ` AND name <= ?
ORDER BY name DESC
LIMIT ?`

	selectKeyPairBinding = `SELECT server_id FROM bindings WHERE project_id = ? AND keypair_name = ?
ORDER BY server_id LIMIT 1`
	selectKeyPairActiveTask = `SELECT 1 FROM tasks
WHERE project_id = ? AND keypair_name = ? AND phase IN ('READY', 'RUNNING')`
	deleteKeyPair            = `DELETE FROM keypairs WHERE id = ?`
	updateKeyPairDescription = `UPDATE keypairs SET description = ?, updated = ? WHERE id = ?`
	updateKeyPairPrivateKey  = `UPDATE keypairs SET private_key = ?, updated = ? WHERE id = ?`
)

func errKeyPairNotFound(name string) error { return kps.KeyPairNotFound(name) }

// CreateKeyPair inserts k and sets its ID and times. A name used by any key pair of the project
// (visible to the caller or not) is KPS.6301; a project holding quota.Project key pairs already
// (≤ 0: unlimited), or with quota.PerUser an owner holding quota.User, is KPS.6401. The counts
// and the insert are one transaction, under the project's quota lock.
func (db *DB) CreateKeyPair(ctx context.Context, k *kps.KeyPair, quota kps.KeyPairQuota) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := createKeyPair(ctx, tx, k, quota); err != nil {
		return err
	}
	return tx.Commit()
}

func createKeyPair(ctx context.Context, tx *txn, k *kps.KeyPair, quota kps.KeyPairQuota) error {
	conflict := kps.Errorf(kps.ErrKeyPairExists, "Key pair name '%s' already exists.", k.Name)
	if quota.Project > 0 || quota.PerUser {
		if err := tx.lock(ctx, lockKeyPairQuota, k.ProjectID); err != nil {
			return err
		}
	}
	// Conflict (409) before quota (403): the validation order of §1.4.
	exists, err := tx.exists(ctx, selectKeyPairExists, k.ProjectID, k.Name)
	if err != nil {
		return err
	}
	if exists {
		return conflict
	}
	if quota.Project > 0 {
		var n int
		if err := tx.queryRow(ctx, countKeyPairs, k.ProjectID).Scan(&n); err != nil {
			return err
		}
		if n >= quota.Project {
			return kps.Errorf(kps.ErrQuota, "The key pair quota of %d per project is exceeded.", quota.Project)
		}
	}
	if quota.PerUser {
		var n int
		if err := tx.queryRow(ctx, countOwnedKeyPairs, k.ProjectID, k.UserID).Scan(&n); err != nil {
			return err
		}
		if n >= quota.User {
			return kps.Errorf(kps.ErrQuota, "The key pair quota of %d per user is exceeded.", quota.User)
		}
	}
	now := millis(tx.now)
	var id int64
	err = tx.queryRow(ctx, insertKeyPair, k.ProjectID, k.Name, k.Type, k.Scope, k.UserID, k.PublicKey,
		k.Fingerprint, k.Algorithm, k.Description, k.PrivateKey, now, now).Scan(&id)
	if tx.eng.isUniqueViolation(err) {
		return conflict
	}
	if err != nil {
		return err
	}
	k.ID, k.Created, k.Updated = id, tx.now, tx.now
	return nil
}

func scanKeyPair(row scanner) (*kps.KeyPair, error) {
	var (
		k                kps.KeyPair
		created, updated int64
	)
	if err := row.Scan(&k.ID, &k.ProjectID, &k.Name, &k.Type, &k.Scope, &k.UserID, &k.PublicKey,
		&k.Fingerprint, &k.Algorithm, &k.Description, &k.PrivateKey, &created, &updated); err != nil {
		return nil, err
	}
	k.Created, k.Updated = fromMillis(created), fromMillis(updated)
	return &k, nil
}

// KeyPair returns the key pair if it exists and is visible to userID, else KPS.6201.
func (db *DB) KeyPair(ctx context.Context, projectID, name, userID string) (*kps.KeyPair, error) {
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return findKeyPair(ctx, tx, projectID, name, userID)
}

func findKeyPair(ctx context.Context, tx *txn, projectID, name, userID string) (*kps.KeyPair, error) {
	k, err := scanKeyPair(tx.queryRow(ctx, selectVisibleKeyPair, projectID, userID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errKeyPairNotFound(name)
	}
	return k, err
}

// ListKeyPairs returns the page of §4.2: the visible key pairs named strictly after marker in
// byte order, up to limit of them, with next_marker iff more follow and previous_marker per
// §4.2's formula. Both queries read one snapshot.
func (db *DB) ListKeyPairs(ctx context.Context, projectID, userID, marker string, limit int) (*kps.KeyPairPage, error) {
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	page := &kps.KeyPairPage{Items: []kps.KeyPair{}}
	if limit < 1 {
		return page, nil
	}

	rows, err := tx.query(ctx, listKeyPairsAfter, projectID, userID, marker, limit+1)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		k, err := scanKeyPair(rows)
		if err != nil {
			return nil, err
		}
		page.Items = append(page.Items, *k)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(page.Items) > limit {
		page.Items = page.Items[:limit]
		next := page.Items[limit-1].Name
		page.NextMarker = &next
	}

	if marker != "" {
		prev, err := previousMarker(ctx, tx, projectID, userID, marker, limit)
		if err != nil {
			return nil, err
		}
		page.PreviousMarker = prev
	}
	return page, nil
}

// previousMarker computes §4.2's previous_marker. With s the number of visible names ≤ marker
// (the page's start index) and p = s − limit: nil when s = 0, "" when p ≤ 0, else L[p−1], which
// is the (limit+1)-th name counting back from the marker.
func previousMarker(ctx context.Context, tx *txn, projectID, userID, marker string, limit int) (*string, error) {
	rows, err := tx.query(ctx, listKeyPairNamesUpTo, projectID, userID, marker, limit+1)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	switch {
	case len(names) == 0:
		return nil, nil
	case len(names) <= limit:
		empty := ""
		return &empty, nil
	default:
		return &names[limit], nil
	}
}

// UpdateKeyPairDescription sets the description of a visible key pair (else KPS.6201) and
// bumps its update time (§2.4). Validation is the caller's job.
func (db *DB) UpdateKeyPairDescription(ctx context.Context, projectID, name, userID, description string) error {
	return db.updateKeyPair(ctx, projectID, name, userID, updateKeyPairDescription, description)
}

// SetPrivateKey hosts a sealed private key for a visible key pair (else KPS.6201), or clears
// it when sealed is nil, and bumps the update time (§2.7, §2.10).
func (db *DB) SetPrivateKey(ctx context.Context, projectID, name, userID string, sealed []byte) error {
	return db.updateKeyPair(ctx, projectID, name, userID, updateKeyPairPrivateKey, sealed)
}

// updateKeyPair sets one column of a visible key pair with query (value, updated, id).
func (db *DB) updateKeyPair(ctx context.Context, projectID, name, userID, query string, value any) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	k, err := findKeyPair(ctx, tx, projectID, name, userID)
	if err != nil {
		return err
	}
	if _, err := tx.exec(ctx, query, value, millis(tx.now), k.ID); err != nil {
		return err
	}
	return tx.Commit()
}

// DeleteKeyPair deletes a visible key pair (else KPS.6201) unless a binding or a READY/RUNNING
// task references it (KPS.6305): unbinding needs the stored public key (§2.5).
func (db *DB) DeleteKeyPair(ctx context.Context, projectID, name, userID string) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := deleteKeyPairTx(ctx, tx, projectID, name, userID); err != nil {
		return err
	}
	return tx.Commit()
}

func deleteKeyPairTx(ctx context.Context, tx *txn, projectID, name, userID string) error {
	if err := tx.lock(ctx, lockKeyPairDelete, projectID, name); err != nil {
		return err
	}
	k, err := findKeyPair(ctx, tx, projectID, name, userID)
	if err != nil {
		return err
	}
	var serverID string
	err = tx.queryRow(ctx, selectKeyPairBinding, projectID, name).Scan(&serverID)
	if err == nil {
		return kps.Errorf(kps.ErrKeyPairInUse, "Key pair '%s' is bound to server '%s'; unbind it first.", name, serverID)
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	active, err := tx.exists(ctx, selectKeyPairActiveTask, projectID, name)
	if err != nil {
		return err
	}
	if active {
		return kps.Errorf(kps.ErrKeyPairInUse, "Key pair '%s' is used by a task in progress.", name)
	}
	_, err = tx.exec(ctx, deleteKeyPair, k.ID)
	return err
}
