package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/openkps/kps"
)

// The lockout counters of auth.md §12.4 in the database: every replica on one database counts
// failures under the same rows, so N replicas behind a balancer do not give a client N times
// the attempts. The counting rule is kps.LockState.Fail, the same as in memory; the store only
// makes its read-modify-write atomic (PostgreSQL: a row lock; SQLite: the single writer).

const (
	selectLockedUntil = `SELECT COALESCE(MAX(locked_until), 0) FROM lockouts WHERE lock_key IN (%s)`
	insertLockout     = `INSERT INTO lockouts (lock_key, failures, window_end, locked_until)
VALUES (?, 0, 0, 0) ON CONFLICT (lock_key) DO NOTHING`
	selectLockout = `SELECT failures, window_end, locked_until FROM lockouts WHERE lock_key = ?`
	updateLockout = `UPDATE lockouts SET failures = ?, window_end = ?, locked_until = ? WHERE lock_key = ?`
	// A success forgets the count, not a lock in force.
	resetLockout      = `DELETE FROM lockouts WHERE lock_key = ? AND locked_until <= ?`
	purgeLockouts     = `DELETE FROM lockouts WHERE window_end <= ? AND locked_until <= ?`
	lockoutPurgeEvery = time.Minute
)

// Lockouts returns the failure counters and locks kept in the database (kps.Limiter), shared by
// every process on it.
func (db *DB) Lockouts() kps.Limiter {
	db.lockoutsOnce.Do(func() { db.lockouts = &lockouts{db: db} })
	return db.lockouts
}

type lockouts struct {
	db *DB

	mu       sync.Mutex
	purgedAt time.Time
	cache    sqliteLocks // SQLite only
}

// LockedFor implements kps.Limiter.
func (l *lockouts) LockedFor(ctx context.Context, now time.Time, keys ...string) (time.Duration, error) {
	args := make([]any, 0, len(keys))
	for _, k := range keys {
		if k != "" {
			args = append(args, k)
		}
	}
	if len(args) == 0 {
		return 0, nil
	}
	// PostgreSQL: the request's first check comes with its other reads (WithRequestReads).
	if m := requestReadsOf(ctx, l.db); m != nil {
		keys := make([]string, len(args))
		for i, a := range args {
			keys[i] = a.(string)
		}
		if until, ok, err := m.lockedUntil(ctx, keys); err != nil {
			return 0, fmt.Errorf("lockout state: %w", err)
		} else if ok {
			return lockWait(until, now), nil
		}
	}
	// SQLite: a read stays exact while this process, the only writer, has committed nothing.
	version, cacheable := l.db.WriteVersion()
	cacheKey := ""
	if cacheable && len(args) == 1 {
		cacheKey = args[0].(string)
		if until, ok := l.cache.get(cacheKey, version); ok {
			return lockWait(until, now), nil
		}
	}
	var until int64
	q := fmt.Sprintf(selectLockedUntil, placeholders(len(args)))
	if err := l.db.read.QueryRowContext(ctx, l.db.bind(q), args...).Scan(&until); err != nil {
		return 0, fmt.Errorf("lockout state: %w", err)
	}
	if cacheKey != "" {
		l.cache.put(cacheKey, version, until)
	}
	return lockWait(until, now), nil
}

// Fail implements kps.Limiter: one failure of key at now, counted under p in one write
// transaction, so that concurrent failures on several replicas are all counted.
func (l *lockouts) Fail(ctx context.Context, now time.Time, p kps.LockPolicy, key string) error {
	if key == "" {
		return nil
	}
	tx, err := l.db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.exec(ctx, insertLockout, key); err != nil {
		return err
	}
	if err := tx.lock(ctx, lockLockout, key); err != nil {
		return err
	}
	var (
		s                   kps.LockState
		windowEnd, lockedTo int64
	)
	err = tx.queryRow(ctx, selectLockout, key).Scan(&s.Failures, &windowEnd, &lockedTo)
	if errors.Is(err, sql.ErrNoRows) {
		// Purged by another replica between the insert and the lock: count from nothing.
		if _, err := tx.exec(ctx, insertLockout, key); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	s.WindowEnd, s.LockedUntil = fromMillis(windowEnd), fromMillis(lockedTo)
	s = s.Fail(now, p)
	if _, err := tx.exec(ctx, updateLockout, s.Failures, millis(s.WindowEnd), millis(s.LockedUntil), key); err != nil {
		return err
	}
	if l.purgeDue(now) {
		if _, err := tx.exec(ctx, purgeLockouts, now.UnixMilli(), now.UnixMilli()); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Reset implements kps.Limiter.
func (l *lockouts) Reset(ctx context.Context, now time.Time, key string) error {
	if key == "" {
		return nil
	}
	tx, err := l.db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.exec(ctx, resetLockout, key, now.UnixMilli()); err != nil {
		return err
	}
	return tx.Commit()
}

// purgeDue reports whether this process should purge expired rows now (once a minute).
func (l *lockouts) purgeDue(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.purgedAt) < lockoutPurgeEvery && !l.purgedAt.After(now) {
		return false
	}
	l.purgedAt = now
	return true
}
