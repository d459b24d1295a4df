package iam

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net/netip"
	"strconv"
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
// The client IP is the one the api package passes: the TCP peer, or the address a trusted proxy
// forwarded (api.Config.TrustedProxies). IPv6 peers are counted per /64, the block a single
// host usually controls.

// LockPolicy says when the failures counted under one key lock it.
type LockPolicy = kps.LockPolicy

// The policies of auth.md §12.4 (auth.lockout.* keeps its defaults: it is not configurable
// yet).
var (
	loginLockPolicy     = LockPolicy{Threshold: 5, Window: 15 * time.Minute, Lock: 5 * time.Minute}
	signatureLockPolicy = LockPolicy{Threshold: 5, Window: 15 * time.Minute, Lock: 5 * time.Minute}
	clientIPLockPolicy  = LockPolicy{Threshold: 30, Window: time.Minute}
)

// Limiter keeps failure counters and locks by key. MemoryLimiter serves a single instance;
// the store's limiter (store.DB.Lockouts) serves several replicas on one database
// (auth.md §12.4).
type Limiter = kps.Limiter

// LockoutError refuses a request whose key is locked: 429 KPS.6105, with the seconds the
// Retry-After header announces.
type LockoutError struct {
	Seconds int
	Err     *kps.Error
}

func lockedOut(wait time.Duration) *LockoutError {
	n := max(1, int(math.Ceil(wait.Seconds())))
	return &LockoutError{Seconds: n, Err: kps.Errorf(kps.ErrLockedOut,
		"Too many failed authentication attempts; retry after %d seconds.", n)}
}

func (e *LockoutError) Error() string { return e.Err.Error() + " (locked-out)" }

// Unwrap exposes the KPS error.
func (e *LockoutError) Unwrap() error { return e.Err }

// RetryAfter is the value of the Retry-After header.
func (e *LockoutError) RetryAfter() time.Duration { return time.Duration(e.Seconds) * time.Second }

// lockKey builds a fixed-size key from a kind and request values, which may be long or contain
// any byte.
func lockKey(kind string, parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(strconv.Quote(p))
		b.WriteByte(' ')
	}
	sum := sha256.Sum256([]byte(b.String()))
	return kind + ":" + hex.EncodeToString(sum[:16])
}

// clientKey is the per-IP key; "" (no peer known) counts nothing.
func clientKey(ip string) string {
	if ip == "" {
		return ""
	}
	return lockKey("ip", clientBlock(ip))
}

// clientBlock is what one client is counted as: its IPv4 address or its IPv6 /64.
func clientBlock(ip string) string {
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
	wait, err := s.lockout().LockedFor(ctx, now, keys...)
	if err != nil {
		return fmt.Errorf("iam: lockout state: %w", err)
	}
	if wait > 0 {
		return lockedOut(wait)
	}
	return nil
}

// refuse counts the refusal err under each of keys, with the policy of the key's kind, and
// returns err. Empty keys count nothing. When a count cannot be recorded the request fails
// with that internal error instead: a limiter that silently stopped counting would let
// guessing go on unchecked.
func (s *Service) refuse(ctx context.Context, now time.Time, err error, keys ...string) error {
	for _, k := range keys {
		if k == "" {
			continue
		}
		if ferr := s.lockout().Fail(ctx, now, lockPolicyOf(k), k); ferr != nil {
			return fmt.Errorf("iam: counting a failed authentication: %w", ferr)
		}
	}
	return err
}

// lockPolicyOf is the policy of a key made by clientKey, signatureKey, loginNameKey or userKey.
func lockPolicyOf(key string) LockPolicy {
	kind, _, _ := strings.Cut(key, ":")
	switch kind {
	case "ip":
		return clientIPLockPolicy
	case "aksk":
		return signatureLockPolicy
	}
	return loginLockPolicy
}

// MemoryLimiter is a Limiter for one instance. Its memory is bounded: expired entries are
// swept, and when MaxEntries are live a new key evicts an entry that is not locked if it can
// find one among a few, so a flood of distinct keys forgets half-counted keys before locks.
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

// Fail implements Limiter.
func (m *MemoryLimiter) Fail(_ context.Context, now time.Time, p LockPolicy, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.sweptAt) >= limiterSweepInterval {
		m.sweep(now)
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
	*e = e.Fail(now, p)
	return nil
}

// Reset implements Limiter.
func (m *MemoryLimiter) Reset(_ context.Context, now time.Time, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.entries[key]; e != nil && !e.Locked(now) {
		delete(m.entries, key)
	}
	return nil
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
// a second), else an unlocked one among a random sample, else the sampled lock that ends first.
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
			if !e.Locked(now) {
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
