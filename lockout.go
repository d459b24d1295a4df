package kps

import (
	"context"
	"time"
)

// LockPolicy says when the failed authentications counted under one key lock it
// (auth.md §12.4).
type LockPolicy struct {
	// Threshold failures within Window of the first one lock the key.
	Threshold int
	Window    time.Duration
	// Lock is how long the key stays locked; zero means until the window ends.
	Lock time.Duration
}

// Limiter keeps failure counters and locks by key (auth.md §12.4). One process may keep them
// in memory; several replicas share them through the store. Keys are short opaque strings;
// implementations need not understand them.
type Limiter interface {
	// LockedFor returns how much longer the most restrictive of keys stays locked at now;
	// zero when none is locked. Empty keys are ignored.
	LockedFor(ctx context.Context, now time.Time, keys ...string) (time.Duration, error)
	// Fail counts one failure of key at now under p, and locks the key when p says so.
	Fail(ctx context.Context, now time.Time, p LockPolicy, key string) error
	// Reset forgets the failures of key after a success at now; a lock in force stays.
	Reset(ctx context.Context, now time.Time, key string) error
}

// LockState is what a Limiter remembers of one key: the failures counted in the current
// window and the lock, if any. The zero value is a key nothing is known of.
type LockState struct {
	Failures    int
	WindowEnd   time.Time // failures are counted until then
	LockedUntil time.Time
}

// Expired reports whether the state says nothing any more at now: no window, no lock.
func (s LockState) Expired(now time.Time) bool {
	return !now.Before(s.WindowEnd) && !now.Before(s.LockedUntil)
}

// Locked reports whether the key is locked at now.
func (s LockState) Locked(now time.Time) bool { return now.Before(s.LockedUntil) }

// Fail is the state after one more failure at now under p. Every Limiter counts with it, so
// that memory and the shared store lock alike.
func (s LockState) Fail(now time.Time, p LockPolicy) LockState {
	if s.Locked(now) {
		// A request that passed the check just before the lock: it does not extend it.
		return s
	}
	if s.Expired(now) {
		s = LockState{WindowEnd: now.Add(p.Window)}
	}
	s.Failures++
	if s.Failures >= p.Threshold {
		until := s.WindowEnd
		if p.Lock > 0 {
			until = now.Add(p.Lock)
		}
		// Counting starts afresh once the lock is over.
		s = LockState{WindowEnd: until, LockedUntil: until}
	}
	return s
}
