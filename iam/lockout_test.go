package iam

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/limitertest"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func lockedFor(t *testing.T, m Limiter, now time.Time, keys ...string) time.Duration {
	t.Helper()
	d, err := m.LockedFor(context.Background(), now, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func fail(t *testing.T, m Limiter, now time.Time, p LockPolicy, key string, n int) {
	t.Helper()
	for range n {
		if _, err := m.Fail(context.Background(), now, p, key); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMemoryLimiterConformance runs the limiter suite the database limiter passes on both
// engines (store/storetest) against the in-memory one.
func TestMemoryLimiterConformance(t *testing.T) {
	t.Parallel()
	limitertest.Run(t, func(*testing.T) kps.Limiter { return &MemoryLimiter{} })
}

func TestLimiterCountsConsecutiveFailures(t *testing.T) {
	t.Parallel()
	m := &MemoryLimiter{}
	p := loginLockPolicy
	fail(t, m, t0, p, "k", 4)
	if d := lockedFor(t, m, t0, "k"); d != 0 {
		t.Fatalf("locked after 4 failures: %v", d)
	}
	// A success resets the count: four more failures still do not lock.
	m.Reset(context.Background(), t0, "k")
	fail(t, m, t0.Add(time.Minute), p, "k", 4)
	if d := lockedFor(t, m, t0.Add(time.Minute), "k"); d != 0 {
		t.Fatalf("the reset did not take: locked for %v", d)
	}
	// The fifth locks for 5 minutes, counted from that failure.
	now := t0.Add(2 * time.Minute)
	fail(t, m, now, p, "k", 1)
	if d := lockedFor(t, m, now.Add(time.Second), "k"); d != 5*time.Minute-time.Second {
		t.Fatalf("locked for %v, want 4m59s", d)
	}
	// Failures and successes during the lock change nothing.
	fail(t, m, now.Add(time.Minute), p, "k", 10)
	m.Reset(context.Background(), now.Add(time.Minute), "k")
	if d := lockedFor(t, m, now.Add(time.Minute), "k"); d != 4*time.Minute {
		t.Fatalf("locked for %v after more failures, want 4m", d)
	}
	// The lock expires, and counting starts afresh.
	after := now.Add(5 * time.Minute)
	if d := lockedFor(t, m, after, "k"); d != 0 {
		t.Fatalf("still locked after 5 minutes: %v", d)
	}
	fail(t, m, after, p, "k", 4)
	if d := lockedFor(t, m, after, "k"); d != 0 {
		t.Fatalf("the old count survived the lock: %v", d)
	}
}

func TestLimiterWindowExpires(t *testing.T) {
	t.Parallel()
	m := &MemoryLimiter{}
	p := loginLockPolicy
	fail(t, m, t0, p, "k", 4)
	// The window of 15 minutes runs from the first failure: the fifth comes too late to lock.
	fail(t, m, t0.Add(15*time.Minute), p, "k", 1)
	if d := lockedFor(t, m, t0.Add(15*time.Minute), "k"); d != 0 {
		t.Fatalf("failures outside the window locked: %v", d)
	}
	fail(t, m, t0.Add(16*time.Minute), p, "k", 3)
	if d := lockedFor(t, m, t0.Add(16*time.Minute), "k"); d != 0 {
		t.Fatalf("locked after 4 failures of a new window: %v", d)
	}
	fail(t, m, t0.Add(29*time.Minute), p, "k", 1)
	if d := lockedFor(t, m, t0.Add(29*time.Minute), "k"); d != 5*time.Minute {
		t.Fatalf("5 failures within the window: locked for %v", d)
	}
}

func TestLimiterKeysAreIndependent(t *testing.T) {
	t.Parallel()
	m := &MemoryLimiter{}
	attacker := signatureKey("AKAKAKAKAKAKAKAKAKAK", "203.0.113.7")
	owner := signatureKey("AKAKAKAKAKAKAKAKAKAK", "198.51.100.1")
	fail(t, m, t0, signatureLockPolicy, attacker, 5)
	if d := lockedFor(t, m, t0, attacker); d != 5*time.Minute {
		t.Fatalf("attacker's pair locked for %v", d)
	}
	if d := lockedFor(t, m, t0, owner, signatureKey("AKAKAKAKAKAKAKAKAKAB", "203.0.113.7")); d != 0 {
		t.Fatalf("another pair is locked for %v", d)
	}
	// The most restrictive of several keys wins.
	fail(t, m, t0.Add(time.Minute), signatureLockPolicy, owner, 5)
	if d := lockedFor(t, m, t0.Add(time.Minute), attacker, owner, ""); d != 5*time.Minute {
		t.Fatalf("locked for %v, want the owner's 5m", d)
	}
}

func TestLimiterClientIPBudget(t *testing.T) {
	t.Parallel()
	m := &MemoryLimiter{}
	ip := clientKey("192.0.2.1")
	fail(t, m, t0, clientIPLockPolicy, ip, 29)
	if d := lockedFor(t, m, t0.Add(10*time.Second), ip); d != 0 {
		t.Fatalf("locked after 29 failures: %v", d)
	}
	// The 30th failure of the minute locks the IP for the rest of the minute, successes or not.
	fail(t, m, t0.Add(20*time.Second), clientIPLockPolicy, ip, 1)
	m.Reset(context.Background(), t0.Add(20*time.Second), ip)
	if d := lockedFor(t, m, t0.Add(20*time.Second), ip); d != 40*time.Second {
		t.Fatalf("locked for %v, want the 40 s left of the minute", d)
	}
	if d := lockedFor(t, m, t0.Add(time.Minute), ip); d != 0 {
		t.Fatalf("locked beyond the minute: %v", d)
	}
	// An IPv6 client is one /64; IPv4 addresses stay apart.
	if clientKey("2001:db8:1:2::1") != clientKey("2001:db8:1:2:ffff::9") || clientKey("2001:db8:1:2::1") == clientKey("2001:db8:1:3::1") {
		t.Error("IPv6 clients are not counted per /64")
	}
	if clientKey("192.0.2.1") == clientKey("192.0.2.2") || clientKey("::ffff:192.0.2.1") != clientKey("192.0.2.1") {
		t.Error("IPv4 clients are not counted per address")
	}
	if clientKey("") != "" {
		t.Error("an unknown peer is counted")
	}
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	t.Parallel()
	m := &MemoryLimiter{MaxEntries: 100}
	// A locked key survives a flood of new keys that are not locked.
	fail(t, m, t0, loginLockPolicy, "victim", 5)
	for i := range 1000 {
		fail(t, m, t0.Add(time.Millisecond), loginLockPolicy, fmt.Sprint("flood", i), 1)
		if n := m.Len(); n > 100 {
			t.Fatalf("%d entries tracked, want at most 100", n)
		}
	}
	if d := lockedFor(t, m, t0.Add(time.Second), "victim"); d == 0 {
		t.Error("the flood evicted a lock")
	}
	// So does an attempt under way: forgetting it would admit a second one.
	one := kps.Attempt{Key: "busy", Policy: loginLockPolicy}
	if w, _ := m.Reserve(context.Background(), t0, one); w != 0 {
		t.Fatalf("reservation refused: %v", w)
	}
	for i := range 1000 {
		fail(t, m, t0.Add(time.Millisecond), loginLockPolicy, fmt.Sprint("flood2-", i), 1)
	}
	if w, _ := m.Reserve(context.Background(), t0.Add(time.Second), one); w != kps.AttemptRetry {
		t.Errorf("the flood evicted an attempt under way: a second one waits %v", w)
	}
	// Expired entries go at the next sweep.
	later := t0.Add(time.Hour)
	fail(t, m, later, loginLockPolicy, "fresh", 1)
	if n := m.Len(); n != 1 {
		t.Errorf("%d entries after the sweep, want 1", n)
	}
	// Keys have a fixed size whatever the request held.
	long := make([]byte, 64<<10)
	if k := loginNameKey(IssueRequest{UserName: string(long), UserDomainName: "acme"}); len(k) > 64 {
		t.Errorf("key of %d bytes", len(k))
	}
}

func TestLimiterKeysDoNotCollide(t *testing.T) {
	t.Parallel()
	a := loginNameKey(IssueRequest{UserDomainName: "a b", UserName: "c"})
	b := loginNameKey(IssueRequest{UserDomainName: "a", UserName: "b c"})
	c := loginNameKey(IssueRequest{UserDomainID: "a b", UserName: "c"})
	if a == b || a == c || b == c {
		t.Error("different login names share a key")
	}
	if loginNameKey(IssueRequest{UserID: "u1", UserName: "x"}) != userKey("u1") {
		t.Error("a login by user ID is not keyed on the user")
	}
}

func TestLockoutError(t *testing.T) {
	t.Parallel()
	err := error(lockedOut(4*time.Minute + 100*time.Millisecond))
	wantCode(t, err, kps.ErrLockedOut, "Too many failed authentication attempts; retry after 241 seconds.")
	var ra interface{ RetryAfter() time.Duration }
	if !errors.As(err, &ra) || ra.RetryAfter() != 241*time.Second {
		t.Errorf("RetryAfter of %v", err)
	}
	if lockedOut(time.Millisecond).Seconds != 1 {
		t.Error("a lock about to end does not announce 1 second")
	}
}
