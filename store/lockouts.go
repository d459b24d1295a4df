package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/openkps/kps"
)

// The lockout counters of auth.md §12.4 in the database: every replica on one database counts
// failures and reserves attempts under the same rows, so N replicas behind a balancer do not
// give a client N times the attempts. The counting rules are kps.LockState's, the same as in
// memory; the store only makes each read-modify-write atomic: every method that changes rows
// runs in one write transaction that first locks the rows of its keys (upsertLockout: the
// upsert takes the row lock on PostgreSQL, in key order so that two transactions never wait on
// each other crosswise; SQLite has a single writer), then reads, decides and writes them. A
// reservation under several keys is therefore all or nothing.

const (
	selectLockedUntil = `SELECT COALESCE(MAX(locked_until), 0) FROM lockouts WHERE lock_key IN (%s)`
	// The no-op update makes the upsert lock an existing row and return it, so that a row
	// purged by another replica meanwhile is simply inserted again.
	upsertLockout = `INSERT INTO lockouts (lock_key, failures, window_end, locked_until, in_flight, in_flight_until)
VALUES (?, 0, 0, 0, 0, 0)
ON CONFLICT (lock_key) DO UPDATE SET lock_key = excluded.lock_key
RETURNING failures, window_end, locked_until, in_flight, in_flight_until`
	updateLockout = `UPDATE lockouts SET failures = ?, window_end = ?, locked_until = ?, in_flight = ?,
    in_flight_until = ? WHERE lock_key = ?`
	deleteLockout = `DELETE FROM lockouts WHERE lock_key = ?`
	// A success forgets the count, not a lock in force nor the attempts under way.
	resetLockout         = `DELETE FROM lockouts WHERE lock_key = ? AND locked_until <= ? AND in_flight_until <= ?`
	resetLockoutInFlight = `UPDATE lockouts SET failures = 0, window_end = 0
WHERE lock_key = ? AND locked_until <= ? AND in_flight_until > ?`
	purgeLockouts     = `DELETE FROM lockouts WHERE window_end <= ? AND locked_until <= ? AND in_flight_until <= ?`
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
	until, err := l.lockedUntil(ctx, args)
	if err != nil {
		return 0, err
	}
	return lockWait(until, now), nil
}

// lockedUntil returns MAX(locked_until) of the keys (epoch ms). On SQLite a read of one key
// stays exact while this process, the only writer, has committed nothing, and is remembered.
func (l *lockouts) lockedUntil(ctx context.Context, keys []any) (int64, error) {
	version, cacheable := l.db.WriteVersion()
	cacheKey := ""
	if cacheable && len(keys) == 1 {
		cacheKey = keys[0].(string)
		if until, ok := l.cache.get(cacheKey, version); ok {
			return until, nil
		}
	}
	var until int64
	q := fmt.Sprintf(selectLockedUntil, placeholders(len(keys)))
	if err := l.db.read.QueryRowContext(ctx, l.db.bind(q), keys...).Scan(&until); err != nil {
		return 0, fmt.Errorf("lockout state: %w", err)
	}
	if cacheKey != "" {
		l.cache.put(cacheKey, version, until)
	}
	return until, nil
}

// Reserve implements kps.Limiter: the check and the reservation of every key in one write
// transaction, so that attempts on several replicas at once are admitted one after the other.
func (l *lockouts) Reserve(ctx context.Context, now time.Time, attempts ...kps.Attempt) (time.Duration, error) {
	var wait time.Duration
	err := l.update(ctx, now, attempts, func(states map[string]kps.LockState) bool {
		for _, a := range attempts {
			if a.Key == "" {
				continue
			}
			s, w := states[a.Key].Reserve(now, a.Policy)
			states[a.Key] = s
			wait = max(wait, w)
		}
		return wait == 0
	})
	if err != nil {
		return 0, fmt.Errorf("lockout reservation: %w", err)
	}
	return wait, nil
}

// Settle implements kps.Limiter.
func (l *lockouts) Settle(ctx context.Context, now time.Time, attempts ...kps.Attempt) error {
	err := l.update(ctx, now, attempts, func(states map[string]kps.LockState) bool {
		for _, a := range attempts {
			if a.Key != "" {
				states[a.Key] = states[a.Key].Settle(now, a.Policy, a.Outcome)
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("lockout settlement: %w", err)
	}
	return nil
}

// Fail implements kps.Limiter: one failure of key at now, counted under p in one write
// transaction, so that concurrent failures on several replicas are all counted.
func (l *lockouts) Fail(ctx context.Context, now time.Time, p kps.LockPolicy, key string) (time.Duration, error) {
	if key == "" {
		return 0, nil
	}
	var locked time.Duration
	err := l.update(ctx, now, []kps.Attempt{{Key: key}}, func(states map[string]kps.LockState) bool {
		s := states[key]
		if s.Locked(now) {
			locked = s.LockedUntil.Sub(now)
			return false
		}
		states[key] = s.Fail(now, p)
		return true
	})
	return locked, err
}

// update runs change on the states of the attempts' keys, read under their row locks in one
// write transaction, and writes them back when it returns true (rows that say nothing any more
// are deleted); when it returns false nothing is written.
func (l *lockouts) update(ctx context.Context, now time.Time, attempts []kps.Attempt, change func(map[string]kps.LockState) bool) error {
	keys := make([]string, 0, len(attempts))
	for _, a := range attempts {
		if a.Key != "" {
			keys = append(keys, a.Key)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	// One lock order for every transaction: no two wait on each other crosswise.
	slices.Sort(keys)
	keys = slices.Compact(keys)
	tx, err := l.db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	states := make(map[string]kps.LockState, len(keys))
	for _, k := range keys {
		var (
			s                                   kps.LockState
			windowEnd, lockedTo, inFlightExpiry int64
		)
		if err := tx.queryRow(ctx, upsertLockout, k).Scan(&s.Failures, &windowEnd, &lockedTo, &s.InFlight, &inFlightExpiry); err != nil {
			return err
		}
		s.WindowEnd, s.LockedUntil, s.InFlightUntil = fromMillis(windowEnd), fromMillis(lockedTo), fromMillis(inFlightExpiry)
		states[k] = s
	}
	if !change(states) {
		return nil
	}
	for _, k := range keys {
		s := states[k]
		if s.Expired(now) {
			if _, err := tx.exec(ctx, deleteLockout, k); err != nil {
				return err
			}
			continue
		}
		if _, err := tx.exec(ctx, updateLockout, s.Failures, millis(s.WindowEnd), millis(s.LockedUntil),
			s.InFlight, millis(s.InFlightUntil), k); err != nil {
			return err
		}
	}
	if l.purgeDue(now) {
		ms := now.UnixMilli()
		if _, err := tx.exec(ctx, tx.eng.purgeLockouts, ms, ms, ms); err != nil {
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
	ms := now.UnixMilli()
	if _, err := tx.exec(ctx, resetLockout, key, ms, ms); err != nil {
		return err
	}
	if _, err := tx.exec(ctx, resetLockoutInFlight, key, ms, ms); err != nil {
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
