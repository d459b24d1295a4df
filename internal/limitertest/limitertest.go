// Package limitertest is the conformance suite of kps.Limiter (auth.md §12.4): the same cases
// run against the in-memory limiter (iam.MemoryLimiter) and the database one on both engines
// (store/storetest), so that one replica and several on PostgreSQL count, reserve and lock
// alike — under concurrency too. Test code only; it imports the domain package.
package limitertest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openkps/kps"
)

// Epoch is where the cases' clocks start: a round millisecond, as the database stores times.
var Epoch = time.Date(2026, 6, 1, 12, 0, 0, 123_000_000, time.UTC)

// Cases are the conformance cases by name. Each takes a limiter that nothing has counted under
// yet; the cases run in parallel when the caller lets them.
var Cases = map[string]func(t *testing.T, l kps.Limiter){
	"CountsAndLocks":               testCountsAndLocks,
	"UntilWindowEnd":               testUntilWindowEnd,
	"Keys":                         testKeys,
	"ConcurrentFailures":           testConcurrentFailures,
	"FailReportsLock":              testFailReportsLock,
	"ReserveCountsLikeFailures":    testReserveCountsLikeFailures,
	"ReserveMaxInFlight":           testReserveMaxInFlight,
	"ReserveAllOrNothing":          testReserveAllOrNothing,
	"SettleOutcomes":               testSettleOutcomes,
	"ReservationExpires":           testReservationExpires,
	"ConcurrentReservations":       testConcurrentReservations,
	"ConcurrentOneInFlight":        testConcurrentOneInFlight,
	"ConcurrentMultiKeyAllocation": testConcurrentMultiKey,
}

// Run runs every case against a fresh limiter from open, in parallel.
func Run(t *testing.T, open func(t *testing.T) kps.Limiter) {
	for name, c := range Cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c(t, open(t))
		})
	}
}

var (
	ctx = context.Background()
	// policy locks for 5 minutes after 3 failures within 10.
	policy = kps.LockPolicy{Threshold: 3, Window: 10 * time.Minute, Lock: 5 * time.Minute}
)

func lockedFor(t *testing.T, l kps.Limiter, now time.Time, keys ...string) time.Duration {
	t.Helper()
	d, err := l.LockedFor(ctx, now, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func fail(t *testing.T, l kps.Limiter, now time.Time, p kps.LockPolicy, key string, n int) {
	t.Helper()
	for range n {
		if _, err := l.Fail(ctx, now, p, key); err != nil {
			t.Fatal(err)
		}
	}
}

func reserve(t *testing.T, l kps.Limiter, now time.Time, attempts ...kps.Attempt) time.Duration {
	t.Helper()
	wait, err := l.Reserve(ctx, now, attempts...)
	if err != nil {
		t.Fatal(err)
	}
	return wait
}

func settle(t *testing.T, l kps.Limiter, now time.Time, o kps.Outcome, attempts ...kps.Attempt) {
	t.Helper()
	for i := range attempts {
		attempts[i].Outcome = o
	}
	if err := l.Settle(ctx, now, attempts...); err != nil {
		t.Fatal(err)
	}
}

func testCountsAndLocks(t *testing.T, l kps.Limiter) {
	now := Epoch
	fail(t, l, now, policy, "k", 2)
	if d := lockedFor(t, l, now, "k"); d != 0 {
		t.Fatalf("locked after 2 failures: %v", d)
	}
	// A success resets the count.
	if err := l.Reset(ctx, now, "k"); err != nil {
		t.Fatal(err)
	}
	fail(t, l, now.Add(time.Minute), policy, "k", 2)
	if d := lockedFor(t, l, now.Add(time.Minute), "k"); d != 0 {
		t.Fatalf("the reset did not take: locked for %v", d)
	}
	// The third consecutive failure locks for Lock, from that failure.
	at := now.Add(2 * time.Minute)
	fail(t, l, at, policy, "k", 1)
	if d := lockedFor(t, l, at.Add(time.Second), "k"); d != 5*time.Minute-time.Second {
		t.Fatalf("locked for %v, want 4m59s", d)
	}
	// Failures and a success during the lock change nothing.
	fail(t, l, at.Add(time.Minute), policy, "k", 5)
	if err := l.Reset(ctx, at.Add(time.Minute), "k"); err != nil {
		t.Fatal(err)
	}
	if d := lockedFor(t, l, at.Add(time.Minute), "k"); d != 4*time.Minute {
		t.Fatalf("locked for %v after more failures, want 4m", d)
	}
	// The lock ends, and counting starts afresh.
	after := at.Add(5 * time.Minute)
	if d := lockedFor(t, l, after, "k"); d != 0 {
		t.Fatalf("still locked at its end: %v", d)
	}
	fail(t, l, after, policy, "k", 2)
	if d := lockedFor(t, l, after, "k"); d != 0 {
		t.Fatalf("locked after the lock ended and 2 new failures: %v", d)
	}
	// Failures outside one window do not add up.
	fail(t, l, after.Add(11*time.Minute), policy, "k", 2)
	if d := lockedFor(t, l, after.Add(11*time.Minute), "k"); d != 0 {
		t.Fatalf("failures of two windows added up: locked for %v", d)
	}
}

func testUntilWindowEnd(t *testing.T, l kps.Limiter) {
	// Lock 0: locked for the rest of the window (the per-IP rule of auth.md §12.4).
	p := kps.LockPolicy{Threshold: 4, Window: time.Minute}
	now := Epoch
	fail(t, l, now, p, "ip", 1)
	fail(t, l, now.Add(20*time.Second), p, "ip", 3)
	if d := lockedFor(t, l, now.Add(30*time.Second), "ip"); d != 30*time.Second {
		t.Fatalf("locked for %v, want the 30s left of the window", d)
	}
	if d := lockedFor(t, l, now.Add(time.Minute), "ip"); d != 0 {
		t.Fatalf("locked after the window: %v", d)
	}
}

func testKeys(t *testing.T, l kps.Limiter) {
	now := Epoch
	fail(t, l, now, policy, "a", 3)
	fail(t, l, now.Add(time.Minute), policy, "b", 3)
	fail(t, l, now, policy, "c", 2)
	if d := lockedFor(t, l, now.Add(time.Minute), "", "a", "b", "c", "unknown"); d != 5*time.Minute {
		t.Fatalf("the most restrictive lock is %v, want 5m (b's)", d)
	}
	if d := lockedFor(t, l, now.Add(time.Minute), "c", "unknown"); d != 0 {
		t.Fatalf("unlocked keys locked for %v", d)
	}
	if d := lockedFor(t, l, now, ""); d != 0 {
		t.Fatalf("no key locked for %v", d)
	}
	if _, err := l.Fail(ctx, now, policy, ""); err != nil {
		t.Fatal(err)
	}
	if err := l.Reset(ctx, now, ""); err != nil {
		t.Fatal(err)
	}
	if d := reserve(t, l, now, kps.Attempt{Policy: policy}); d != 0 {
		t.Fatalf("an empty key refused a reservation for %v", d)
	}
	// Keys are compared exactly.
	if d := lockedFor(t, l, now, "A", "a "); d != 0 {
		t.Fatalf("other spellings locked for %v", d)
	}
}

func testConcurrentFailures(t *testing.T, l kps.Limiter) {
	// Failures counted at once (as by several replicas) are all counted: one short of the
	// threshold does not lock, the next failure does.
	const n = 24
	p := kps.LockPolicy{Threshold: n + 1, Window: time.Hour, Lock: time.Minute}
	now := Epoch
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := l.Fail(ctx, now, p, "shared"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if d := lockedFor(t, l, now, "shared"); d != 0 {
		t.Fatalf("locked after %d of %d failures: %v", n, n+1, d)
	}
	fail(t, l, now, p, "shared", 1)
	if d := lockedFor(t, l, now, "shared"); d != time.Minute {
		t.Fatalf("not locked after %d concurrent failures and one more: %v", n, d)
	}
}

func testFailReportsLock(t *testing.T, l kps.Limiter) {
	now := Epoch
	for i := range 3 {
		wait, err := l.Fail(ctx, now, policy, "k")
		if err != nil || wait != 0 {
			t.Fatalf("failure %d: locked for %v, %v", i+1, wait, err)
		}
	}
	// The key is locked now: a failure that comes later learns it and is not counted.
	wait, err := l.Fail(ctx, now.Add(time.Minute), policy, "k")
	if err != nil || wait != 4*time.Minute {
		t.Fatalf("a failure during the lock: locked for %v, %v; want 4m", wait, err)
	}
	if d := lockedFor(t, l, now.Add(time.Minute), "k"); d != 4*time.Minute {
		t.Fatalf("the failure during the lock extended it: %v", d)
	}
}

func testReserveCountsLikeFailures(t *testing.T, l kps.Limiter) {
	now := Epoch
	a := kps.Attempt{Key: "user", Policy: policy}
	fail(t, l, now, policy, "user", 1)
	// One failure and two attempts under way take the allowance of three.
	for i := range 2 {
		if d := reserve(t, l, now, a); d != 0 {
			t.Fatalf("reservation %d refused for %v", i+1, d)
		}
	}
	if d := reserve(t, l, now, a); d != kps.AttemptRetry {
		t.Fatalf("a reservation beyond the allowance: wait %v, want %v", d, kps.AttemptRetry)
	}
	if d := lockedFor(t, l, now, "user"); d != 0 {
		t.Fatalf("attempts under way locked the key for %v", d)
	}
	// One attempt given back frees a place; the others fail and lock the key.
	settle(t, l, now, kps.AttemptVoid, a)
	if d := reserve(t, l, now, a); d != 0 {
		t.Fatalf("a place given back was not free: wait %v", d)
	}
	settle(t, l, now.Add(time.Second), kps.AttemptFailed, a)
	settle(t, l, now.Add(time.Second), kps.AttemptFailed, a)
	if d := lockedFor(t, l, now.Add(time.Second), "user"); d != 5*time.Minute {
		t.Fatalf("three failures, two of them settled reservations: locked for %v, want 5m", d)
	}
	if d := reserve(t, l, now.Add(time.Minute), a); d != 4*time.Minute+time.Second {
		t.Fatalf("a reservation during the lock: wait %v, want the lock's 4m1s", d)
	}
}

func testReserveMaxInFlight(t *testing.T, l kps.Limiter) {
	now := Epoch
	one := kps.LockPolicy{Threshold: 5, Window: 15 * time.Minute, Lock: 5 * time.Minute, MaxInFlight: 1}
	a := kps.Attempt{Key: "name", Policy: one}
	if d := reserve(t, l, now, a); d != 0 {
		t.Fatalf("first reservation refused: %v", d)
	}
	if d := reserve(t, l, now, a); d != kps.AttemptRetry {
		t.Fatalf("a second attempt under way: wait %v, want %v", d, kps.AttemptRetry)
	}
	settle(t, l, now, kps.AttemptFailed, a)
	if d := reserve(t, l, now, a); d != 0 {
		t.Fatalf("the next attempt after the first settled: wait %v", d)
	}
}

func testReserveAllOrNothing(t *testing.T, l kps.Limiter) {
	now := Epoch
	ip := kps.Attempt{Key: "ip", Policy: kps.LockPolicy{Threshold: 10, Window: time.Minute}}
	full := kps.Attempt{Key: "full", Policy: policy}
	fail(t, l, now, policy, "full", 3) // locked
	if d := reserve(t, l, now, ip, full); d != 5*time.Minute {
		t.Fatalf("a reservation with a locked key: wait %v, want 5m", d)
	}
	// Nothing was reserved under ip: its ten places are all free.
	for i := range 10 {
		if d := reserve(t, l, now, ip); d != 0 {
			t.Fatalf("place %d of ip taken by a refused reservation: wait %v", i+1, d)
		}
	}
	if d := reserve(t, l, now, ip); d != kps.AttemptRetry {
		t.Fatalf("an eleventh reservation: wait %v", d)
	}
}

func testSettleOutcomes(t *testing.T, l kps.Limiter) {
	now := Epoch
	user := kps.Attempt{Key: "user", Policy: policy}
	ip := kps.Attempt{Key: "ip", Policy: kps.LockPolicy{Threshold: 3, Window: time.Minute}}
	fail(t, l, now, policy, "user", 2)
	fail(t, l, now, ip.Policy, "ip", 2)
	if d := reserve(t, l, now, user); d != 0 {
		t.Fatalf("two failures of three: wait %v", d)
	}
	if d := reserve(t, l, now, user); d != kps.AttemptRetry {
		t.Fatalf("two failures and one attempt under way take the allowance: wait %v", d)
	}
	if d := reserve(t, l, now, ip); d != 0 {
		t.Fatalf("ip: wait %v", d)
	}
	// A success forgets the user's failures; given back, the IP's stay.
	settle(t, l, now, kps.AttemptSucceeded, user)
	settle(t, l, now, kps.AttemptVoid, ip)
	for i := range 3 {
		if d := reserve(t, l, now, user); d != 0 {
			t.Fatalf("after a success, reservation %d: wait %v", i+1, d)
		}
	}
	settle(t, l, now, kps.AttemptSucceeded, user)
	settle(t, l, now, kps.AttemptSucceeded, user)
	settle(t, l, now, kps.AttemptFailed, user)
	if d := lockedFor(t, l, now, "user"); d != 0 {
		t.Fatalf("one failure after successes locked the user for %v", d)
	}
	fail(t, l, now, ip.Policy, "ip", 1)
	if d := lockedFor(t, l, now, "ip"); d != time.Minute {
		t.Fatalf("the IP's failures did not survive a void settlement: locked for %v", d)
	}
	// A success during a lock leaves it.
	fail(t, l, now, policy, "user", 3)
	settle(t, l, now.Add(time.Minute), kps.AttemptSucceeded, user)
	if d := lockedFor(t, l, now.Add(time.Minute), "user"); d != 4*time.Minute {
		t.Fatalf("a success lifted a lock: %v", d)
	}
}

func testReservationExpires(t *testing.T, l kps.Limiter) {
	now := Epoch
	one := kps.Attempt{Key: "name", Policy: kps.LockPolicy{Threshold: 5, Window: 15 * time.Minute, Lock: time.Minute, MaxInFlight: 1}}
	if d := reserve(t, l, now, one); d != 0 {
		t.Fatalf("first reservation: wait %v", d)
	}
	// Its process died: the reservation stops counting after AttemptTTL.
	if d := reserve(t, l, now.Add(kps.AttemptTTL-time.Millisecond), one); d != kps.AttemptRetry {
		t.Fatalf("before AttemptTTL: wait %v", d)
	}
	later := now.Add(kps.AttemptTTL)
	if d := reserve(t, l, later, one); d != 0 {
		t.Fatalf("at AttemptTTL: wait %v", d)
	}
	// Settling twice (the forgotten one and the new one) leaves nothing under way, never less.
	settle(t, l, later, kps.AttemptVoid, one)
	settle(t, l, later, kps.AttemptVoid, one)
	if d := reserve(t, l, later, one); d != 0 {
		t.Fatalf("after settling: wait %v", d)
	}
	if d := reserve(t, l, later, one); d != kps.AttemptRetry {
		t.Fatalf("a second attempt under way after a surplus settlement: wait %v", d)
	}
}

// testConcurrentReservations: of many attempts reserved at once under one key, exactly the
// allowance is admitted.
func testConcurrentReservations(t *testing.T, l kps.Limiter) {
	const n = 48
	now := Epoch
	p := kps.LockPolicy{Threshold: 5, Window: 15 * time.Minute, Lock: 5 * time.Minute}
	var admitted atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			wait, err := l.Reserve(ctx, now, kps.Attempt{Key: "user", Policy: p})
			switch {
			case err != nil:
				t.Error(err)
			case wait == 0:
				admitted.Add(1)
			case wait != kps.AttemptRetry:
				t.Errorf("refused with wait %v, want %v", wait, kps.AttemptRetry)
			}
		})
	}
	wg.Wait()
	if got := admitted.Load(); got != 5 {
		t.Fatalf("%d of %d attempts at once admitted, want exactly 5", got, n)
	}
	// The five fail at once: the key locks, and nothing more is admitted.
	for range 5 {
		wg.Go(func() {
			if err := l.Settle(ctx, now, kps.Attempt{Key: "user", Policy: p, Outcome: kps.AttemptFailed}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if d := reserve(t, l, now, kps.Attempt{Key: "user", Policy: p}); d != 5*time.Minute {
		t.Fatalf("after 5 concurrent failures: wait %v, want 5m", d)
	}
}

// testConcurrentOneInFlight: with MaxInFlight 1, attempts that reserve, verify and settle in a
// loop from many goroutines are never under way two at a time.
func testConcurrentOneInFlight(t *testing.T, l kps.Limiter) {
	const workers, rounds = 16, 8
	now := Epoch
	a := kps.Attempt{Key: "name", Policy: kps.LockPolicy{Threshold: 1000, Window: time.Hour, Lock: time.Minute, MaxInFlight: 1}}
	var inside, most, admitted atomic.Int32
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				wait, err := l.Reserve(ctx, now, a)
				if err != nil {
					t.Error(err)
					return
				}
				if wait != 0 {
					continue
				}
				admitted.Add(1)
				n := inside.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				inside.Add(-1)
				if err := l.Settle(ctx, now, kps.Attempt{Key: a.Key, Policy: a.Policy, Outcome: kps.AttemptVoid}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if most.Load() != 1 || admitted.Load() == 0 {
		t.Fatalf("at most %d attempts under way at once (want 1), %d admitted", most.Load(), admitted.Load())
	}
}

// testConcurrentMultiKey: attempts for different users from one client, reserved at once, are
// admitted up to the client's allowance exactly, and each user key holds only its own.
func testConcurrentMultiKey(t *testing.T, l kps.Limiter) {
	const n = 40
	now := Epoch
	ip := kps.Attempt{Key: "ip", Policy: kps.LockPolicy{Threshold: 12, Window: time.Minute}}
	user := kps.LockPolicy{Threshold: 5, Window: 15 * time.Minute, Lock: 5 * time.Minute, MaxInFlight: 1}
	var admitted atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			wait, err := l.Reserve(ctx, now, ip, kps.Attempt{Key: "user-" + string(rune('A'+i)), Policy: user})
			if err != nil {
				t.Error(err)
			} else if wait == 0 {
				admitted.Add(1)
			}
		})
	}
	wg.Wait()
	if got := admitted.Load(); got != 12 {
		t.Fatalf("%d of %d attempts from one client admitted, want exactly 12", got, n)
	}
}
