package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/openkps/kps"
)

const (
	insertToken = `INSERT INTO tokens (hash, user_id, project_id, domain_id, methods, audit_ids, audit_id,
    issued_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	selectTokenByHash = `SELECT hash, user_id, project_id, domain_id, methods, audit_ids, issued_at,
    expires_at, revoked_at FROM tokens WHERE hash = ?`
	deleteExpiredTokens = `DELETE FROM tokens WHERE expires_at <= ?`
	// The cap on a user's live tokens (auth.md §5.3), through tokens_unrevoked_by_user.
	countLiveTokens  = `SELECT COUNT(*) FROM tokens WHERE user_id = ? AND revoked_at = 0 AND expires_at > ?`
	oldestLiveTokens = `SELECT hash FROM tokens
WHERE user_id = ? AND revoked_at = 0 AND expires_at > ? AND hash <> ?
ORDER BY issued_at, hash LIMIT ?`

	// Implicit revocations (auth.md §5.5). The "revoked_at = 0" guard keeps the first revocation
	// time. A temporary credential is revoked by deleting it; those derived from a token name
	// the token's own audit ID (auth.md §3.6).
	revokeTokenByHash = `UPDATE tokens SET revoked_at = ? WHERE hash = ? AND revoked_at = 0`
	deleteTokenCreds  = `DELETE FROM temporary_credentials
WHERE source_audit_id IN (SELECT audit_id FROM tokens WHERE hash = ? AND audit_id <> '')`

	revokeUserTokens = `UPDATE tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at = 0`
	deleteUserCreds  = `DELETE FROM temporary_credentials WHERE user_id = ?`

	revokeProjectTokens = `UPDATE tokens SET revoked_at = ? WHERE project_id = ? AND revoked_at = 0`
	deleteProjectCreds  = `DELETE FROM temporary_credentials
WHERE scope_project_id = ?
   OR source_audit_id IN (SELECT audit_id FROM tokens WHERE project_id = ? AND audit_id <> '')`

	// A domain's tokens: those of its users and those scoped to it or to its projects.
	revokeDomainTokens = `UPDATE tokens SET revoked_at = ?
WHERE revoked_at = 0
  AND (domain_id = ?
    OR user_id IN (SELECT id FROM users WHERE domain_id = ?)
    OR project_id IN (SELECT id FROM projects WHERE domain_id = ?))`
	deleteDomainCreds = `DELETE FROM temporary_credentials
WHERE user_id IN (SELECT id FROM users WHERE domain_id = ?)
   OR scope_project_id IN (SELECT id FROM projects WHERE domain_id = ?)`

	accessKeyColumns = `access, user_id, secret, status, description, created, last_used`
	selectAccessKey  = `SELECT ` + accessKeyColumns + ` FROM access_keys WHERE access = ?`
	listAccessKeys   = `SELECT ` + accessKeyColumns + ` FROM access_keys WHERE user_id = ?
ORDER BY created, access`
	countAccessKeys = `SELECT COUNT(*) FROM access_keys WHERE user_id = ?`
	insertAccessKey = `INSERT INTO access_keys (access, user_id, secret, status, description, created, last_used)
VALUES (?, ?, ?, ?, ?, ?, 0)`
	updateAccessKey = `UPDATE access_keys SET status = ?, description = ? WHERE access = ?`
	deleteAccessKey = `DELETE FROM access_keys WHERE access = ?`
	selectLastUsed  = `SELECT last_used FROM access_keys WHERE access = ?`
	// The guard makes concurrent touches within one interval write once.
	touchAccessKey = `UPDATE access_keys SET last_used = ? WHERE access = ? AND last_used <= ?`

	selectTemporaryAccess = `SELECT 1 FROM temporary_credentials WHERE access = ?`
	selectPermanentAccess = `SELECT 1 FROM access_keys WHERE access = ?`

	temporaryCredentialColumns = `access, user_id, COALESCE(scope_project_id, ''), secret,
    security_token_hash, expires_at, source_audit_id`
	insertTemporaryCredential = `INSERT INTO temporary_credentials (access, user_id, scope_project_id, secret,
    security_token_hash, expires_at, source_audit_id) VALUES (?, ?, ?, ?, ?, ?, ?)`
	selectTemporaryCredential = `SELECT ` + temporaryCredentialColumns + `
FROM temporary_credentials WHERE access = ?`
	deleteExpiredTemporaryCredentials = `DELETE FROM temporary_credentials WHERE expires_at <= ?`
)

// Tokens --------------------------------------------------------------------------------------

// CreateToken stores the token record (by its hash) and, with maxLive > 0, revokes the user's
// oldest live tokens beyond maxLive in the same transaction (auth.md §5.3).
func (db *DB) CreateToken(ctx context.Context, t *kps.Token, maxLive int) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if maxLive > 0 {
		// PostgreSQL: concurrent logins of one user on several replicas would each count the
		// others' tokens out and revoke too few; they take turns on the user's row.
		if err := tx.lock(ctx, lockUser, t.UserID); err != nil {
			return err
		}
	}
	audit := ""
	if len(t.AuditIDs) > 0 {
		audit = t.AuditIDs[0]
	}
	if _, err := tx.exec(ctx, insertToken, t.Hash, t.UserID, t.ProjectID, t.DomainID, encodeList(t.Methods),
		encodeList(t.AuditIDs), audit, millis(t.IssuedAt), millis(t.ExpiresAt), millis(t.RevokedAt)); err != nil {
		return err
	}
	if maxLive > 0 {
		if err := capLiveTokens(ctx, tx, t.UserID, t.Hash, maxLive); err != nil {
			return fmt.Errorf("cap the tokens of user %s: %w", t.UserID, err)
		}
	}
	return tx.Commit()
}

// capLiveTokens revokes the oldest live tokens of the user other than keep until maxLive are
// left, with the temporary credentials derived from them.
func capLiveTokens(ctx context.Context, tx *txn, userID, keep string, maxLive int) error {
	var live int
	if err := tx.queryRow(ctx, countLiveTokens, userID, millis(tx.now)).Scan(&live); err != nil {
		return err
	}
	if live <= maxLive {
		return nil
	}
	rows, err := tx.query(ctx, oldestLiveTokens, userID, millis(tx.now), keep, live-maxLive)
	if err != nil {
		return err
	}
	var oldest []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			rows.Close()
			return err
		}
		oldest = append(oldest, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, h := range oldest {
		if _, err := tx.exec(ctx, revokeTokenByHash, millis(tx.now), h); err != nil {
			return err
		}
		if _, err := tx.exec(ctx, deleteTokenCreds, h); err != nil {
			return err
		}
	}
	return nil
}

// TokenByHash returns the token record, expired or revoked ones included (the caller judges),
// or nil when there is none.
func (db *DB) TokenByHash(ctx context.Context, hash string) (*kps.Token, error) {
	var (
		t                          kps.Token
		methods, audits            string
		issued, expiresAt, revoked int64
	)
	err := db.read.QueryRowContext(ctx, db.bind(selectTokenByHash), hash).Scan(&t.Hash, &t.UserID, &t.ProjectID,
		&t.DomainID, &methods, &audits, &issued, &expiresAt, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if t.Methods, err = decodeList(methods); err != nil {
		return nil, err
	}
	if t.AuditIDs, err = decodeList(audits); err != nil {
		return nil, err
	}
	t.IssuedAt, t.ExpiresAt, t.RevokedAt = fromMillis(issued), fromMillis(expiresAt), fromMillis(revoked)
	return &t, nil
}

// RevokeToken revokes the token, if it exists and is not revoked yet, and deletes the temporary
// credentials derived from it (auth.md §3.6).
func (db *DB) RevokeToken(ctx context.Context, hash string) error {
	return db.revoke(ctx, func(tx *txn) error {
		if _, err := tx.exec(ctx, revokeTokenByHash, millis(tx.now), hash); err != nil {
			return err
		}
		_, err := tx.exec(ctx, deleteTokenCreds, hash)
		return err
	})
}

// RevokeUserTokens revokes every token of the user and deletes their temporary credentials.
func (db *DB) RevokeUserTokens(ctx context.Context, userID string) error {
	return db.revoke(ctx, func(tx *txn) error { return revokeUser(ctx, tx, userID) })
}

func (db *DB) revoke(ctx context.Context, fn func(tx *txn) error) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

func revokeUser(ctx context.Context, tx *txn, userID string) error {
	if _, err := tx.exec(ctx, revokeUserTokens, millis(tx.now), userID); err != nil {
		return fmt.Errorf("revoke the tokens of user %s: %w", userID, err)
	}
	_, err := tx.exec(ctx, deleteUserCreds, userID)
	return err
}

func revokeProject(ctx context.Context, tx *txn, projectID string) error {
	if _, err := tx.exec(ctx, deleteProjectCreds, projectID, projectID); err != nil {
		return err
	}
	if _, err := tx.exec(ctx, revokeProjectTokens, millis(tx.now), projectID); err != nil {
		return fmt.Errorf("revoke the tokens of project %s: %w", projectID, err)
	}
	return nil
}

func revokeDomain(ctx context.Context, tx *txn, domainID string) error {
	if _, err := tx.exec(ctx, deleteDomainCreds, domainID, domainID); err != nil {
		return err
	}
	if _, err := tx.exec(ctx, revokeDomainTokens, millis(tx.now), domainID, domainID, domainID); err != nil {
		return fmt.Errorf("revoke the tokens of domain %s: %w", domainID, err)
	}
	return nil
}

// DeleteExpiredTokens deletes the tokens that expired more than grace ago; within the grace a
// just-expired token still reads as expired rather than unknown (auth.md §5.3).
func (db *DB) DeleteExpiredTokens(ctx context.Context, grace time.Duration) (int, error) {
	return db.deleteBefore(ctx, deleteExpiredTokens, grace)
}

// deleteBefore runs query, a DELETE of what is older than its one parameter (milliseconds):
// now less grace. It returns how many rows went.
func (db *DB) deleteBefore(ctx context.Context, query string, grace time.Duration) (n int, err error) {
	_, err = db.inWrite(ctx, func(tx *txn) error {
		n, err = tx.execCount(ctx, query, millis(tx.now.Add(-grace)))
		return err
	})
	return n, err
}

// Access keys ---------------------------------------------------------------------------------

func errAccessKeyNotFound(access string) error {
	return kps.Errorf(kps.ErrIdentityNotFound, "The access key %s could not be found.", access)
}

func errAccessKeyTaken() error {
	// The AK is not quoted: it is random, and a clash would mean a broken generator.
	return kps.Errorf(kps.ErrIdentityConflict, "The access key is already in use.")
}

// CreateAccessKey stores k for an existing user and sets its creation time; LastUsed starts
// zero. A user's third key is KPS.6003 (auth.md §3.5), an AK already used by a permanent or
// temporary credential KPS.6111, a missing user KPS.6110.
func (db *DB) CreateAccessKey(ctx context.Context, k *kps.AccessKey) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// PostgreSQL: the user's row lock queues concurrent creations for the user.
	if err := tx.lock(ctx, lockUser, k.UserID); err != nil {
		return err
	}
	if _, err := findUser(ctx, tx, k.UserID); err != nil {
		return err
	}
	// Counted in the write transaction, which SQLite serialises with every other writer (and
	// PostgreSQL after the user lock), so two concurrent creations cannot both see one key; the
	// trigger of 0002_identity is the backstop.
	var n int
	if err := tx.queryRow(ctx, countAccessKeys, k.UserID).Scan(&n); err != nil {
		return err
	}
	if n >= kps.MaxAccessKeysPerUser {
		// The exact KPS.6003 text of auth.md §11.3; the limit is documented (§3.5).
		return kps.InvalidParameter("credential")
	}
	if taken, err := tx.exists(ctx, selectTemporaryAccess, k.Access); err != nil || taken {
		if err == nil {
			err = errAccessKeyTaken()
		}
		return err
	}
	_, err = tx.exec(ctx, insertAccessKey, k.Access, k.UserID, k.Secret, k.Status, k.Description, millis(tx.now))
	if tx.eng.isUniqueViolation(err) {
		return errAccessKeyTaken()
	}
	if err != nil {
		return err
	}
	k.Created, k.LastUsed = tx.now, time.Time{}
	return tx.Commit()
}

// AccessKey returns the access key, whatever its status, or nil when there is none.
func (db *DB) AccessKey(ctx context.Context, access string) (*kps.AccessKey, error) {
	return nilIfNone(scanAccessKey(db.read.QueryRowContext(ctx, db.bind(selectAccessKey), access)))
}

func scanAccessKey(row scanner) (*kps.AccessKey, error) {
	var (
		k                 kps.AccessKey
		created, lastUsed int64
	)
	if err := row.Scan(&k.Access, &k.UserID, &k.Secret, &k.Status, &k.Description, &created, &lastUsed); err != nil {
		return nil, err
	}
	k.Created, k.LastUsed = fromMillis(created), fromMillis(lastUsed)
	return &k, nil
}

// ListAccessKeys returns the user's access keys, oldest first; empty when none.
func (db *DB) ListAccessKeys(ctx context.Context, userID string) ([]kps.AccessKey, error) {
	rows, err := db.read.QueryContext(ctx, db.bind(listAccessKeys), userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	keys := []kps.AccessKey{}
	for rows.Next() {
		k, err := scanAccessKey(rows)
		if err != nil {
			return nil, err
		}
		keys = append(keys, *k)
	}
	return keys, rows.Err()
}

// UpdateAccessKey applies u to the key, or fails with KPS.6110 when there is none.
// Deactivating a key revokes no token (auth.md §5.5).
func (db *DB) UpdateAccessKey(ctx context.Context, access string, u kps.AccessKeyUpdate) (*kps.AccessKey, error) {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	k, err := nilIfNone(scanAccessKey(tx.queryRow(ctx, selectAccessKey, access)))
	if err != nil {
		return nil, err
	}
	if k == nil {
		return nil, errAccessKeyNotFound(access)
	}
	u.Apply(k)
	if _, err := tx.exec(ctx, updateAccessKey, k.Status, k.Description, access); err != nil {
		return nil, err
	}
	return k, tx.Commit()
}

// DeleteAccessKey removes the key, or fails with KPS.6110 when there is none.
func (db *DB) DeleteAccessKey(ctx context.Context, access string) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	ok, err := tx.execOne(ctx, deleteAccessKey, access)
	if err != nil {
		return err
	}
	if !ok {
		return errAccessKeyNotFound(access)
	}
	return tx.Commit()
}

// TouchAccessKey records a use of the key now unless one was recorded less than
// kps.AccessKeyTouchInterval ago (auth.md §3.5). The check runs on a read connection first, so
// a key in steady use costs one read per request and one write per interval; an unknown key is
// ignored.
func (db *DB) TouchAccessKey(ctx context.Context, access string) error {
	now := db.clock()
	stale := millis(now.Add(-kps.AccessKeyTouchInterval))
	var lastUsed int64
	err := db.read.QueryRowContext(ctx, db.bind(selectLastUsed), access).Scan(&lastUsed)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && lastUsed > stale) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = db.inWrite(ctx, func(tx *txn) error {
		_, err := tx.exec(ctx, touchAccessKey, millis(tx.now), access, millis(tx.now.Add(-kps.AccessKeyTouchInterval)))
		return err
	})
	return err
}

// Temporary credentials -----------------------------------------------------------------------

// CreateTemporaryCredential stores c for an existing user and, when bound, an existing project
// of the user's domain (KPS.6110 otherwise). An AK already used by a permanent or temporary
// credential is KPS.6111.
func (db *DB) CreateTemporaryCredential(ctx context.Context, c *kps.TemporaryCredential) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	u, err := findUser(ctx, tx, c.UserID)
	if err != nil {
		return err
	}
	if c.ScopeProjectID != "" {
		p, err := findProject(ctx, tx, c.ScopeProjectID)
		if err != nil {
			return err
		}
		if p.DomainID != u.DomainID {
			return errProjectNotFound(c.ScopeProjectID)
		}
	}
	if taken, err := tx.exists(ctx, selectPermanentAccess, c.Access); err != nil || taken {
		if err == nil {
			err = errAccessKeyTaken()
		}
		return err
	}
	_, err = tx.exec(ctx, insertTemporaryCredential, c.Access, c.UserID, nullString(c.ScopeProjectID), c.Secret,
		c.SecurityTokenHash, millis(c.ExpiresAt), c.SourceAuditID)
	if tx.eng.isUniqueViolation(err) {
		return errAccessKeyTaken()
	}
	if err != nil {
		return err
	}
	return tx.Commit()
}

// TemporaryCredential returns the credential, expired ones included (the caller judges), or
// nil when there is none.
func (db *DB) TemporaryCredential(ctx context.Context, access string) (*kps.TemporaryCredential, error) {
	var (
		c       kps.TemporaryCredential
		expires int64
	)
	err := db.read.QueryRowContext(ctx, db.bind(selectTemporaryCredential), access).Scan(&c.Access, &c.UserID,
		&c.ScopeProjectID, &c.Secret, &c.SecurityTokenHash, &expires, &c.SourceAuditID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	c.ExpiresAt = fromMillis(expires)
	return &c, nil
}

// DeleteExpiredTemporaryCredentials deletes the credentials that expired more than grace ago.
func (db *DB) DeleteExpiredTemporaryCredentials(ctx context.Context, grace time.Duration) (int, error) {
	return db.deleteBefore(ctx, deleteExpiredTemporaryCredentials, grace)
}
