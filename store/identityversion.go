package store

import (
	"context"
	"sync"
	"time"

	"github.com/openkps/kps"
)

// The identity version: a number that moves with every committed change to what a token
// validation reads (the token, its user, domain and project, the role assignments), so that
// iam can remember a successful validation for as long as the number has not moved
// (iam/validation_cache.go, docs/decisions.md "Read-path caches").
//
//   - SQLite: this process is the database's only writer, so the number of write transactions
//     it committed (WriteVersion) is one. It moves with every write but those of tasks and
//     bindings, not only identity writes: a needless move costs a validation, and counting
//     costs nothing.
//   - PostgreSQL: replicas write concurrently, so it is the row of identity_version (migration
//     0007), bumped by triggers in the same transaction as the change; reading it costs a
//     query, which a request makes together with its other per-request reads (ReadRequest).

// IdentityVersion implements kps.IdentityVersions. A version read before the reads of a
// validation, and equal to the version read later, proves that nothing the validation read has
// changed in between, on any replica.
func (db *DB) IdentityVersion(ctx context.Context) (int64, bool, error) {
	return db.eng.versions.identityVersion(ctx, db)
}

// ReadRequest implements kps.RequestReader: the identity version, the task version of
// projectID ("" for none) and the lock of clientLockKey ("" for none), read once the request
// has arrived, so every change committed before the request is in them, which is what the
// caches keyed on them need (a change committed while the request runs may or may not show,
// as with separate reads).
func (db *DB) ReadRequest(ctx context.Context, projectID, clientLockKey string) (*kps.RequestReads, error) {
	return db.eng.versions.readRequest(ctx, db, projectID, clientLockKey)
}

// sqliteLocks remembers lockout reads on SQLite by the write version they were made at: the
// lockout rows change only through this process's write transactions, so a read stays exact
// while no write committed; whether a lock is still in force is decided against the clock on
// every use. It spares the query most authenticated requests make.
type sqliteLocks struct {
	mu sync.Mutex
	m  map[string]sqliteLock
}

type sqliteLock struct {
	version int64
	until   int64
}

const maxSQLiteLocks = 10_000

func (c *sqliteLocks) get(key string, version int64) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.m[key]
	if !ok || l.version != version {
		return 0, false
	}
	return l.until, true
}

func (c *sqliteLocks) put(key string, version, until int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxSQLiteLocks {
		c.m = make(map[string]sqliteLock)
	}
	c.m[key] = sqliteLock{version, until}
}

// lockWait converts a MAX(locked_until) to the time left.
func lockWait(until int64, now time.Time) time.Duration {
	if wait := fromMillis(until).Sub(now); until != 0 && wait > 0 {
		return wait
	}
	return 0
}
