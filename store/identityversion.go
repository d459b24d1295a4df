package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
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
//     query, which a request makes together with its other per-request reads (WithRequestReads).

const (
	selectIdentityVersion = `SELECT version FROM identity_version WHERE id = 1`
	// selectRequestReads is what an authenticated request reads before its handler: the
	// identity version, the task version of its project and the lockout of its keys, in one
	// round trip. %s are the lockout keys' placeholders; with no keys the IN list is NULL.
	selectRequestReads = `SELECT (SELECT version FROM identity_version WHERE id = 1),
    COALESCE((SELECT version FROM task_versions WHERE project_id = ?), 0),
    COALESCE((SELECT MAX(locked_until) FROM lockouts WHERE lock_key IN (%s)), 0)`
)

// IdentityVersion returns the identity version and whether the engine keeps one. A version
// read before the reads of a validation, and equal to the version read later, proves that
// nothing the validation read has changed in between, on any replica.
func (db *DB) IdentityVersion(ctx context.Context) (int64, bool, error) {
	if db.eng.name == "sqlite" {
		v, ok := db.WriteVersion()
		return v, ok, nil
	}
	if m := requestReadsOf(ctx, db); m != nil {
		if err := m.fill(ctx, nil); err != nil {
			return 0, false, err
		}
		return m.identity, true, nil
	}
	var v int64
	if err := db.read.QueryRowContext(ctx, selectIdentityVersion).Scan(&v); err != nil {
		return 0, false, fmt.Errorf("identity version: %w", err)
	}
	return v, true, nil
}

// WithRequestReads returns a context under which this store answers the first lockout check,
// the identity version and the task version of projectID ("" for none) from one query, made
// when the first of them is asked for. The values are read after the request arrived, so every
// change committed before the request is in them, which is what the caches keyed on them need
// (a change committed while the request runs may or may not show, as with separate reads). Only
// the first lockout check is answered from it (lockedUntil). On SQLite, where those reads cost
// no round trip, it returns ctx.
func (db *DB) WithRequestReads(ctx context.Context, projectID string) context.Context {
	if db.eng.name == "sqlite" {
		return ctx
	}
	return context.WithValue(ctx, requestReadsKey{}, &requestReads{db: db, project: projectID})
}

type requestReadsKey struct{}

// requestReads are the per-request reads of WithRequestReads.
type requestReads struct {
	db      *DB
	project string

	mu       sync.Mutex
	filled   bool
	lockRead bool // whether the query read the lockout of lockKeys
	lockKeys []string
	identity int64
	task     int64
	locked   int64 // MAX(locked_until) of lockKeys, epoch ms
}

func requestReadsOf(ctx context.Context, db *DB) *requestReads {
	m, _ := ctx.Value(requestReadsKey{}).(*requestReads)
	if m == nil || m.db != db {
		return nil
	}
	return m
}

// fill makes the query unless it was made, with the lockout of keys.
func (m *requestReads) fill(ctx context.Context, keys []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.filled {
		return nil
	}
	args := make([]any, 0, 1+len(keys))
	args = append(args, m.project)
	in := "NULL"
	if len(keys) > 0 {
		in = placeholders(len(keys))
		for _, k := range keys {
			args = append(args, k)
		}
	}
	q := m.db.bind(fmt.Sprintf(selectRequestReads, in))
	// Concurrent requests with the same arguments share the query, each one a query that
	// started after it asked (readGroup).
	vals, err := m.db.requestReads.do(ctx, func(ctx context.Context) (v [3]int64, err error) {
		err = m.db.read.QueryRowContext(ctx, q, args...).Scan(&v[0], &v[1], &v[2])
		return v, err
	}, append([]string{m.project}, keys...)...)
	if err != nil {
		return fmt.Errorf("identity and task versions: %w", err)
	}
	m.identity, m.task, m.locked = vals[0], vals[1], vals[2]
	m.filled, m.lockRead, m.lockKeys = true, len(keys) > 0, keys
	return nil
}

// lockedUntil answers the request's first lockout check, of keys (without empty ones), from
// the request's query; any later check queries on its own, so that it sees a failure the
// request itself counted meanwhile.
func (m *requestReads) lockedUntil(ctx context.Context, keys []string) (int64, bool, error) {
	m.mu.Lock()
	filled := m.filled
	m.mu.Unlock()
	if filled {
		return 0, false, nil
	}
	if err := m.fill(ctx, keys); err != nil {
		return 0, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.lockRead || !slices.Equal(m.lockKeys, keys) {
		return 0, false, nil
	}
	m.lockRead = false // answered once
	return m.locked, true, nil
}

// taskVersion answers TaskVersion for the request's project.
func (m *requestReads) taskVersion(ctx context.Context, projectID string) (int64, bool, error) {
	if projectID != m.project {
		return 0, false, nil
	}
	if err := m.fill(ctx, nil); err != nil {
		return 0, false, err
	}
	return m.task, true, nil
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
