package kps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// LockPolicy says when the failed authentications counted under one key lock it, and how many
// attempts may be under way under it at once (auth.md §12.4).
type LockPolicy struct {
	// Threshold failures within Window of the first one lock the key. Attempts reserved and not
	// yet settled count towards it too (Reserve), so that attempts sent at once cannot
	// together exceed it.
	Threshold int
	Window    time.Duration
	// Lock is how long the key stays locked; zero means until the window ends.
	Lock time.Duration
	// MaxInFlight bounds the attempts reserved and not yet settled under the key; zero means
	// only Threshold bounds them.
	MaxInFlight int
}

// Outcome is how an attempt reserved under a key ended (Limiter.Settle).
type Outcome int

const (
	// AttemptVoid gives the reservation back: nothing was verified (a refusal before the
	// verification, an internal error), or the key counts failures only.
	AttemptVoid Outcome = iota
	// AttemptFailed counts a failure, which may lock the key.
	AttemptFailed
	// AttemptSucceeded gives the reservation back and forgets the key's failures; a lock in
	// force stays.
	AttemptSucceeded
)

// Attempt is one key an authentication attempt is reserved and settled under, with the key's
// policy and, for Settle, how the attempt ended there.
type Attempt struct {
	Key     string
	Policy  LockPolicy
	Outcome Outcome
}

// The bounds of a reservation (LockState.Reserve).
const (
	// AttemptTTL is how long a reservation counts at most: longer than any attempt takes, so
	// that an attempt whose process died while it was under way stops counting.
	AttemptTTL = time.Minute
	// AttemptRetry is the wait announced to an attempt refused because others are under way
	// under its key: they end within a verification or so.
	AttemptRetry = time.Second
)

// Limiter keeps failure counters, attempts under way and locks by key (auth.md §12.4). One
// process may keep them in memory; several replicas share them through the store. Keys are
// short opaque strings; implementations need not understand them. Every Limiter counts with
// the methods of LockState, so that memory and the shared store lock alike.
type Limiter interface {
	// LockedFor returns how much longer the most restrictive of keys stays locked at now;
	// zero when none is locked. Empty keys are ignored.
	LockedFor(ctx context.Context, now time.Time, keys ...string) (time.Duration, error)
	// Reserve admits one attempt under all of the attempts' keys at once, or under none: when
	// any key is locked, or its failures and reservations under way have reached its
	// Threshold, or its reservations its MaxInFlight, it reserves nothing and returns how long
	// to wait (the lock's rest, or AttemptRetry). Otherwise it counts one reservation under
	// each key, atomically with the check. Empty keys are ignored.
	Reserve(ctx context.Context, now time.Time, attempts ...Attempt) (wait time.Duration, err error)
	// Settle ends a reservation made by Reserve under each of the attempts' keys, as its
	// Outcome says. Empty keys are ignored.
	Settle(ctx context.Context, now time.Time, attempts ...Attempt) error
	// Fail counts one failure of key at now under p, and locks the key when p says so. It
	// returns how much longer the key was locked already, in which case nothing was counted:
	// a caller that checked the lock before its verification learns here that attempts
	// settled meanwhile have locked the key.
	Fail(ctx context.Context, now time.Time, p LockPolicy, key string) (lockedFor time.Duration, err error)
	// Reset forgets the failures of key after a success at now; a lock in force and
	// reservations under way stay.
	Reset(ctx context.Context, now time.Time, key string) error
}

// LockState is what a Limiter remembers of one key: the failures counted in the current
// window, the lock, if any, and the attempts reserved and not yet settled. The zero value is a
// key nothing is known of.
type LockState struct {
	Failures    int
	WindowEnd   time.Time // failures are counted until then
	LockedUntil time.Time
	// InFlight attempts are reserved and not yet settled; they count until InFlightUntil (the
	// last reservation's time plus AttemptTTL).
	InFlight      int
	InFlightUntil time.Time
}

// Expired reports whether the state says nothing any more at now: no window, no lock, no
// attempt under way.
func (s LockState) Expired(now time.Time) bool {
	return !now.Before(s.WindowEnd) && !now.Before(s.LockedUntil) && !now.Before(s.InFlightUntil)
}

// Locked reports whether the key is locked at now.
func (s LockState) Locked(now time.Time) bool { return now.Before(s.LockedUntil) }

// at is the state as it stands at now: the failures of an ended window and reservations past
// their time forgotten.
func (s LockState) at(now time.Time) LockState {
	if !now.Before(s.InFlightUntil) {
		s.InFlight, s.InFlightUntil = 0, time.Time{}
	}
	if !s.Locked(now) && !now.Before(s.WindowEnd) {
		s.Failures, s.WindowEnd, s.LockedUntil = 0, time.Time{}, time.Time{}
	}
	return s
}

// Fail is the state after one more failure at now under p.
func (s LockState) Fail(now time.Time, p LockPolicy) LockState {
	if s.Locked(now) {
		// A request that passed the check just before the lock: it does not extend it.
		return s
	}
	s = s.at(now)
	if s.WindowEnd.IsZero() {
		s.WindowEnd = now.Add(p.Window)
	}
	s.Failures++
	if s.Failures >= p.Threshold {
		until := s.WindowEnd
		if p.Lock > 0 {
			until = now.Add(p.Lock)
		}
		// Counting starts afresh once the lock is over.
		s.Failures, s.WindowEnd, s.LockedUntil = 0, until, until
	}
	return s
}

// Reserve is the state after admitting one attempt at now under p, or the state unchanged and
// how long to wait when p admits none (see Limiter.Reserve).
func (s LockState) Reserve(now time.Time, p LockPolicy) (LockState, time.Duration) {
	s = s.at(now)
	switch {
	case s.Locked(now):
		return s, s.LockedUntil.Sub(now)
	case s.Failures+s.InFlight >= p.Threshold, p.MaxInFlight > 0 && s.InFlight >= p.MaxInFlight:
		return s, AttemptRetry
	}
	s.InFlight++
	s.InFlightUntil = now.Add(AttemptTTL)
	return s, 0
}

// Settle is the state after one reservation ended at now with outcome o under p.
func (s LockState) Settle(now time.Time, p LockPolicy, o Outcome) LockState {
	s = s.at(now)
	// A reservation already forgotten (past AttemptTTL) is not taken twice.
	if s.InFlight > 0 {
		s.InFlight--
	}
	if s.InFlight == 0 {
		s.InFlightUntil = time.Time{}
	}
	switch o {
	case AttemptFailed:
		s = s.Fail(now, p)
	case AttemptSucceeded:
		s = s.Reset(now)
	}
	return s
}

// Reset is the state after a success at now: no failures; a lock in force and the
// reservations under way stay.
func (s LockState) Reset(now time.Time) LockState {
	s = s.at(now)
	if !s.Locked(now) {
		s.Failures, s.WindowEnd = 0, time.Time{}
	}
	return s
}

// LockKey builds a fixed-size lock key of kind from request values, which may be long or
// contain any byte.
func LockKey(kind string, parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(strconv.Quote(p))
		b.WriteByte(' ')
	}
	sum := sha256.Sum256([]byte(b.String()))
	return kind + ":" + hex.EncodeToString(sum[:16])
}

// ClientLockKey is the lock key of a client IP (auth.md §12.4); "" (no peer known) counts
// nothing.
func ClientLockKey(ip string) string {
	if ip == "" {
		return ""
	}
	return LockKey("ip", ClientBlock(ip))
}

// ClientBlock is what one client is counted as: its IPv4 address or its IPv6 /64, the block a
// single host usually controls.
func ClientBlock(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
