package iam

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/openkps/kps"
)

// Lockout and rate limits of failed authentications (auth.md §12.4, §4.2 step 6). Three kinds
// of key are counted:
//
//   - a login name, (domain, user name) as the request gives it, and the user's ID once the
//     user is found (so that naming the same user three ways does not triple the attempts):
//     5 failed logins within 15 minutes lock it for 5 minutes; a correct password resets it;
//   - an (AK, client IP) pair: 5 signature mismatches within 15 minutes lock the pair for
//     5 minutes; a verified signature resets it. Keying on the pair keeps a third party who
//     has seen an AK from locking out its owner, and date or header mistakes do not count;
//   - a client IP: 30 refused credentials (bad password, unknown or expired token or AK, bad
//     signature or security token) within a minute lock it for the rest of that minute,
//     whatever it sends. Malformed requests do not count: they cost no store lookup and guess
//     nothing.
//
// Every lock expires, so nobody can lock a user out for good. A lock is consulted as soon as
// its key is known and before any store lookup or hash computation.
//
// A password verification (a login, a password change's original password) is reserved before
// the hash, atomically with the lock check (Limiter.Reserve, guess): a reservation counts like a
// failure until it is settled, so guesses sent at once are bounded exactly as guesses sent one
// after the other — at most 5 per user per window and 30 per client IP per minute, done or under
// way — and a user is verified by one request at a time (MaxInFlight 1: a second concurrent
// attempt is refused with 429 and Retry-After: 1 rather than queued, docs/decisions.md). Token
// and signature checks are cheap and not guessable, so they are not reserved: their lock is
// checked before and their failure counted after (Limiter.Fail), which tells a request whose
// key was locked meanwhile, so that it too is answered 429.
//
// The client IP is the one the api package passes: the TCP peer, or the address a trusted proxy
// forwarded (router.Config.TrustedProxies). IPv6 peers are counted per /64, the block a single
// host usually controls.

// LockPolicy says when the failures counted under one key lock it.
type LockPolicy = kps.LockPolicy

// The policies of auth.md §12.4 (auth.lockout.* keeps its defaults: it is not configurable
// yet).
var (
	loginLockPolicy     = LockPolicy{Threshold: 5, Window: 15 * time.Minute, Lock: 5 * time.Minute, MaxInFlight: 1}
	signatureLockPolicy = LockPolicy{Threshold: 5, Window: 15 * time.Minute, Lock: 5 * time.Minute}
	clientIPLockPolicy  = LockPolicy{Threshold: 30, Window: time.Minute}
)

// Limiter keeps failure counters and locks by key. MemoryLimiter serves a single instance;
// the store's limiter (store.DB.Lockouts) serves several replicas on one database
// (auth.md §12.4).
type Limiter = kps.Limiter

// Reasons of a LockoutError, for the log.
const (
	ReasonLockedOut       = "locked-out"        // the key is locked
	ReasonAttemptInFlight = "attempt-in-flight" // the key's allowance is taken by attempts under way
	ReasonHashQueueFull   = "hash-queue-full"   // too many logins wait for a password hash slot
)

// LockoutError refuses a request whose key is locked, whose allowance is taken by attempts
// under way, or that finds the queue of password verifications full: 429 KPS.6105, with the
// seconds the Retry-After header announces.
type LockoutError struct {
	Seconds int
	Reason  string // ReasonLockedOut, ReasonAttemptInFlight or ReasonHashQueueFull
	// User names the user of a refused login or password change for the log: their ID when
	// known, else the name as the request gave it; "" otherwise.
	User string
	Err  *kps.Error
}

func lockedOut(wait time.Duration) *LockoutError {
	n := max(1, int(math.Ceil(wait.Seconds())))
	return &LockoutError{Seconds: n, Reason: ReasonLockedOut, Err: kps.Errorf(kps.ErrLockedOut,
		"Too many failed authentication attempts; retry after %d seconds.", n)}
}

// reserveRefused is the refusal of a reservation that had to wait.
func reserveRefused(wait time.Duration) *LockoutError {
	e := lockedOut(wait)
	if wait <= kps.AttemptRetry {
		// A lock never ends within a second of its start: this is an attempt under way.
		e.Reason = ReasonAttemptInFlight
	}
	return e
}

func (e *LockoutError) Error() string { return e.Err.Error() + " (" + e.Reason + ")" }

// Unwrap exposes the KPS error.
func (e *LockoutError) Unwrap() error { return e.Err }

// RetryAfter is the value of the Retry-After header.
func (e *LockoutError) RetryAfter() time.Duration { return time.Duration(e.Seconds) * time.Second }

// lockKey, clientKey and clientBlock are kps.LockKey, kps.ClientLockKey and kps.ClientBlock:
// the api package reads a client's lock with a request's other reads under the same key.
func lockKey(kind string, parts ...string) string { return kps.LockKey(kind, parts...) }

func clientKey(ip string) string { return kps.ClientLockKey(ip) }

func clientBlock(ip string) string { return kps.ClientBlock(ip) }

// signatureKey is the key of an (AK, client IP) pair.
func signatureKey(ak, ip string) string { return lockKey("aksk", ak, clientBlock(ip)) }

// loginNameKey is the key of the user a login request names, as it names them.
func loginNameKey(req IssueRequest) string {
	switch {
	case req.UserID != "":
		return userKey(req.UserID)
	case req.UserDomainID != "":
		return lockKey("login", "domain-id", req.UserDomainID, req.UserName)
	default:
		return lockKey("login", "domain-name", req.UserDomainName, req.UserName)
	}
}

// userKey is the key of a user found by a login, however the request named them.
func userKey(userID string) string { return lockKey("login", "user-id", userID) }

// lockout returns the configured Limiter, or this instance's own in memory.
func (s *Service) lockout() Limiter {
	if s.Limiter != nil {
		return s.Limiter
	}
	s.limiterOnce.Do(func() { s.memLimiter = &MemoryLimiter{} })
	return s.memLimiter
}

// checkLocked refuses the request when any of keys is locked.
func (s *Service) checkLocked(ctx context.Context, now time.Time, keys ...string) error {
	return checkLockedAt(ctx, nil, s.lockout(), now, keys...)
}

// checkLockedAt refuses the request when any of keys is locked (§4.2 step 6). A lone key that
// reads were made for (the client's IP, kps.RequestReads) is answered from them; anything else
// asks l.
func checkLockedAt(ctx context.Context, reads *kps.RequestReads, l Limiter, now time.Time, keys ...string) error {
	wait, known := time.Duration(0), false
	if len(keys) == 1 {
		wait, known = reads.ClientLockedFor(now, keys[0])
	}
	if !known {
		var err error
		if wait, err = l.LockedFor(ctx, now, keys...); err != nil {
			return fmt.Errorf("iam: lockout state: %w", err)
		}
	}
	if wait > 0 {
		return lockedOut(wait)
	}
	return nil
}

// refuse counts the refusal err under each of keys, with the policy of the key's kind, and
// returns err, or a LockoutError when a key was locked by the time the failure came (requests
// sent at once get the answers they would get one after the other). Empty keys count nothing.
// When a count cannot be recorded the request fails with that internal error instead: a
// limiter that silently stopped counting would let guessing go on unchecked.
func (s *Service) refuse(ctx context.Context, now time.Time, err error, keys ...string) error {
	return countFailure(ctx, s.lockout(), now, err, keys...)
}

func countFailure(ctx context.Context, l Limiter, now time.Time, err error, keys ...string) error {
	var locked time.Duration
	for _, k := range keys {
		if k == "" {
			continue
		}
		wait, ferr := l.Fail(ctx, now, lockPolicyOf(k), k)
		if ferr != nil {
			return fmt.Errorf("iam: counting a failed authentication: %w", ferr)
		}
		locked = max(locked, wait)
	}
	if locked > 0 {
		return lockedOut(locked)
	}
	return err
}

// guess is one password verification reserved under its keys (auth.md §12.4): the client IP
// and the user as named, then the user's ID once found. It is settled exactly once, whatever
// way the verification ends.
type guess struct {
	s *Service
	// now is the request's time: the reservations and their settlement are counted at it, as
	// a check-then-count would have counted them.
	now      time.Time
	attempts []kps.Attempt
	user     string // for the log: the user's ID when known, else the name as given
	settled  bool
}

// reserveGuess reserves a verification under keys before any lookup or hash, or refuses it
// with 429 KPS.6105.
func (s *Service) reserveGuess(ctx context.Context, now time.Time, user string, keys ...string) (*guess, error) {
	g := &guess{s: s, now: now, user: user}
	return g, g.add(ctx, keys...)
}

// add reserves the verification under more keys (the user's ID, once found); when they refuse,
// the reservations made so far are given back.
func (g *guess) add(ctx context.Context, keys ...string) error {
	var more []kps.Attempt
	for _, k := range keys {
		if k != "" {
			more = append(more, kps.Attempt{Key: k, Policy: lockPolicyOf(k)})
		}
	}
	wait, err := g.s.lockout().Reserve(ctx, g.now, more...)
	if err == nil && wait == 0 {
		g.attempts = append(g.attempts, more...)
		return nil
	}
	if serr := g.settle(ctx, kps.AttemptVoid); serr != nil {
		return serr
	}
	if err != nil {
		return fmt.Errorf("iam: reserving an authentication attempt: %w", err)
	}
	e := reserveRefused(wait)
	e.User = g.user
	return e
}

// settle ends the reservations with outcome o: a success resets the user's keys and gives the
// client IP's reservation back (only failures count against an IP). It runs even when the
// request's context has ended: a reservation left behind would count until AttemptTTL.
func (g *guess) settle(ctx context.Context, o kps.Outcome) error {
	if g.settled || len(g.attempts) == 0 {
		g.settled = true
		return nil
	}
	g.settled = true
	for i := range g.attempts {
		a := &g.attempts[i]
		a.Outcome = o
		if o == kps.AttemptSucceeded && keyKind(a.Key) == "ip" {
			a.Outcome = kps.AttemptVoid
		}
	}
	if err := g.s.lockout().Settle(context.WithoutCancel(ctx), g.now, g.attempts...); err != nil {
		return fmt.Errorf("iam: settling an authentication attempt: %w", err)
	}
	return nil
}

// fail settles the verification as failed and returns err, naming the user for the log, or the
// internal error of a limiter that could not count.
func (g *guess) fail(ctx context.Context, err error) error {
	if serr := g.settle(ctx, kps.AttemptFailed); serr != nil {
		return serr
	}
	var f *Failure
	if errors.As(err, &f) {
		f.User = g.user
	}
	return err
}

// lockPolicyOf is the policy of a key made by clientKey, signatureKey, loginNameKey or userKey.
func lockPolicyOf(key string) LockPolicy {
	switch keyKind(key) {
	case "ip":
		return clientIPLockPolicy
	case "aksk":
		return signatureLockPolicy
	}
	return loginLockPolicy
}

// keyKind is the kind of a key made by clientKey ("ip"), signatureKey ("aksk"), loginNameKey or
// userKey ("login").
func keyKind(key string) string {
	kind, _, _ := strings.Cut(key, ":")
	return kind
}

// MemoryLimiter is a Limiter for one instance. Its memory is bounded: expired entries are
// swept, and when MaxEntries are live a new key evicts an entry that is neither locked nor has
// attempts under way if it can find one among a few, so a flood of distinct keys forgets
// half-counted keys before locks and reservations.
// The zero value is ready to use.
type MemoryLimiter struct {
	// MaxEntries bounds the number of keys tracked; zero means 100 000.
	MaxEntries int

	mu      sync.Mutex
	entries map[string]*kps.LockState
	sweptAt time.Time
}

const (
	defaultLimiterEntries = 100_000
	limiterSweepInterval  = time.Minute
	limiterEvictSample    = 8
)

// LockedFor implements Limiter.
func (m *MemoryLimiter) LockedFor(_ context.Context, now time.Time, keys ...string) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		e := m.entries[k]
		switch {
		case e == nil:
		case e.Expired(now):
			delete(m.entries, k)
		case e.Locked(now):
			wait = max(wait, e.LockedUntil.Sub(now))
		}
	}
	return wait, nil
}

// Reserve implements Limiter: one mutex makes the check and the reservation of every key one
// step.
func (m *MemoryLimiter) Reserve(_ context.Context, now time.Time, attempts ...kps.Attempt) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[string]kps.LockState, len(attempts))
	var wait time.Duration
	for _, a := range attempts {
		if a.Key == "" {
			continue
		}
		s, seen := next[a.Key]
		if !seen {
			s = m.state(a.Key)
		}
		s, w := s.Reserve(now, a.Policy)
		next[a.Key] = s
		wait = max(wait, w)
	}
	if wait > 0 {
		return wait, nil
	}
	for k, s := range next {
		m.store(now, k, s)
	}
	return 0, nil
}

// Settle implements Limiter.
func (m *MemoryLimiter) Settle(_ context.Context, now time.Time, attempts ...kps.Attempt) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range attempts {
		if a.Key != "" {
			m.store(now, a.Key, m.state(a.Key).Settle(now, a.Policy, a.Outcome))
		}
	}
	return nil
}

// Fail implements Limiter.
func (m *MemoryLimiter) Fail(_ context.Context, now time.Time, p LockPolicy, key string) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.state(key)
	if s.Locked(now) {
		return s.LockedUntil.Sub(now), nil
	}
	m.store(now, key, s.Fail(now, p))
	return 0, nil
}

// Reset implements Limiter.
func (m *MemoryLimiter) Reset(_ context.Context, now time.Time, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.entries[key]; e != nil {
		m.store(now, key, e.Reset(now))
	}
	return nil
}

// state is what is known of key; the caller holds m.mu.
func (m *MemoryLimiter) state(key string) kps.LockState {
	if e := m.entries[key]; e != nil {
		return *e
	}
	return kps.LockState{}
}

// store records the state of key, or forgets the key when the state says nothing; the caller
// holds m.mu.
func (m *MemoryLimiter) store(now time.Time, key string, s kps.LockState) {
	if now.Sub(m.sweptAt) >= limiterSweepInterval {
		m.sweep(now)
	}
	if s.Expired(now) {
		delete(m.entries, key)
		return
	}
	e := m.entries[key]
	if e == nil {
		m.makeRoom(now)
		if m.entries == nil {
			m.entries = make(map[string]*kps.LockState)
		}
		e = &kps.LockState{}
		m.entries[key] = e
	}
	*e = s
}

// Len returns the number of keys tracked, expired ones included until the next sweep.
func (m *MemoryLimiter) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

func (m *MemoryLimiter) sweep(now time.Time) {
	m.sweptAt = now
	for k, e := range m.entries {
		if e.Expired(now) {
			delete(m.entries, k)
		}
	}
}

// makeRoom frees an entry when the map is full: expired ones first (a full sweep at most once
// a second), else one neither locked nor with attempts under way among a random sample, else
// the sampled lock that ends first.
func (m *MemoryLimiter) makeRoom(now time.Time) {
	limit := m.MaxEntries
	if limit <= 0 {
		limit = defaultLimiterEntries
	}
	if len(m.entries) < limit {
		return
	}
	if now.Sub(m.sweptAt) >= time.Second {
		m.sweep(now)
	}
	for len(m.entries) >= limit {
		var victim string
		var soonest time.Time
		n := 0
		// Map iteration starts at a random entry, which makes this a random sample.
		for k, e := range m.entries {
			if !e.Locked(now) && e.InFlight == 0 {
				victim = k
				break
			}
			if victim == "" || e.LockedUntil.Before(soonest) {
				victim, soonest = k, e.LockedUntil
			}
			if n++; n == limiterEvictSample {
				break
			}
		}
		delete(m.entries, victim)
	}
}
