package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
)

// The claim rule of tasks that need the caller's credential (kept in one replica's memory,
// kps-v3-api.md §2.11) and the shared lockout counters of auth.md §12.4.
var replicaTests = map[string]func(*testing.T, *env){
	"HolderRecordedOnlyWithCallerAuth": testHolderRecorded,
	"HeldTasks":                        testHeldTasks,
	"ClaimHeldTaskOnlyByLiveHolder":    testClaimHeldByLiveHolder,
	"ClaimHeldTaskAfterHolderDied":     testClaimHeldAfterHolderDied,
	"ClaimHeldTaskAfterHolderStopped":  testClaimHeldAfterHolderStopped,
	"ClaimHeldTaskConcurrently":        testClaimHeldConcurrently,
	"LockoutCountsAndLocks":            testLockoutCountsAndLocks,
	"LockoutUntilWindowEnd":            testLockoutUntilWindowEnd,
	"LockoutKeys":                      testLockoutKeys,
	"LockoutConcurrentFailures":        testLockoutConcurrentFailures,
}

const (
	replicaA = "kps-replica-a"
	replicaB = "kps-replica-b"
)

// heldReplace is a REPLACE whose caller credential replica holder keeps in memory.
func heldReplace(keyPair, serverID, holder string) kps.TaskSubmission {
	s := replaceOf(project, keyPair, serverID)
	s.Holder = holder
	return s
}

// claimBy claims as replica owner and returns the task's ID, "" when nothing was claimable.
func (e *env) claimBy(owner string) string {
	e.t.Helper()
	t, err := e.s.ClaimTask(e.ctx, owner, lease)
	must(e.t, err)
	if t == nil {
		return ""
	}
	if t.LeaseOwner != owner || t.Phase != kps.PhaseRunning {
		e.t.Fatalf("claimed %+v as %s", t, owner)
	}
	return t.ID
}

func testHolderRecorded(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "a", true)
	e.server(project, "b", true)
	held := e.submit(heldReplace("kp", "a", replicaA))
	reset := resetOf(project, "kp", "b")
	reset.Holder = replicaA // no caller credential: nothing to hold
	plain := e.submit(reset)
	if got := e.task(project, held.ID); got.Holder != replicaA || !got.CallerAuth || held.Holder != replicaA {
		t.Fatalf("held task = %+v", got)
	}
	if got := e.task(project, plain.ID); got.Holder != "" || plain.Holder != "" {
		t.Fatalf("task without caller auth has holder %q", got.Holder)
	}
}

func testHeldTasks(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	for _, id := range []string{"a", "b", "c", "d"} {
		e.server(project, id, true)
	}
	must(t, e.s.HeartbeatReplica(e.ctx, replicaA, lease))
	first := e.submit(heldReplace("kp", "a", replicaA))
	second := e.submit(heldReplace("kp", "b", replicaA))
	e.submit(heldReplace("kp", "c", replicaB))
	e.submit(resetOf(project, "kp", "d"))
	if got := e.claimBy(replicaA); got != first.ID {
		t.Fatalf("claimed %q, want %s", got, first.ID)
	}
	ids, err := e.s.HeldTasks(e.ctx, replicaA)
	must(t, err)
	if len(ids) != 1 || ids[0] != second.ID {
		t.Fatalf("A holds %v, want only the queued %s", ids, second.ID)
	}
	ids, err = e.s.HeldTasks(e.ctx, "kps-nobody")
	must(t, err)
	if len(ids) != 0 {
		t.Fatalf("nobody holds %v", ids)
	}
}

func testClaimHeldByLiveHolder(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "a", true)
	e.server(project, "b", true)
	must(t, e.s.HeartbeatReplica(e.ctx, replicaA, lease))
	must(t, e.s.HeartbeatReplica(e.ctx, replicaB, lease))
	held := e.submit(heldReplace("kp", "a", replicaA))
	e.clock.Advance(time.Millisecond)
	other := e.submit(resetOf(project, "kp", "b"))

	// B skips the older task A holds and takes the next one.
	if got := e.claimBy(replicaB); got != other.ID {
		t.Fatalf("replica B claimed %q, want %s (the task it may run)", got, other.ID)
	}
	if got := e.claimBy(replicaB); got != "" {
		t.Fatalf("replica B claimed %s, held by live replica A", got)
	}
	// Heartbeats keep A alive past the first ttl.
	e.clock.Advance(lease * 2 / 3)
	must(t, e.s.HeartbeatReplica(e.ctx, replicaA, lease))
	e.clock.Advance(lease * 2 / 3)
	if got := e.claimBy(replicaB); got != "" {
		t.Fatalf("replica B claimed %s, held by replica A that heartbeats", got)
	}
	// A at the edge of its ttl is still alive.
	e.clock.Advance(lease / 3)
	if got := e.claimBy(replicaB); got != "" {
		t.Fatalf("replica B claimed %s at the last millisecond of A's ttl", got)
	}
	if got := e.claimBy(replicaA); got != held.ID {
		t.Fatalf("replica A claimed %q, want its task %s", got, held.ID)
	}
	e.wantPhase(project, held.ID, kps.PhaseRunning)
}

func testClaimHeldAfterHolderDied(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "a", true)
	e.server(project, "b", true)
	must(t, e.s.HeartbeatReplica(e.ctx, replicaA, lease))
	held := e.submit(heldReplace("kp", "a", replicaA))
	// A never registered holder is no holder either.
	unknown := e.submit(heldReplace("kp", "b", "kps-never-seen"))
	if got := e.claimBy(replicaB); got != unknown.ID {
		t.Fatalf("replica B claimed %q, want %s (its holder never lived)", got, unknown.ID)
	}
	if got := e.claimBy(replicaB); got != "" {
		t.Fatalf("replica B claimed %s while A lives", got)
	}
	// A's heartbeat expires: it died, and the credential with it.
	e.clock.Advance(lease + time.Millisecond)
	if got := e.claimBy(replicaB); got != held.ID {
		t.Fatalf("replica B claimed %q after A died, want %s", got, held.ID)
	}
}

func testClaimHeldAfterHolderStopped(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "a", true)
	e.server(project, "b", true)
	must(t, e.s.HeartbeatReplica(e.ctx, replicaA, lease))
	must(t, e.s.HeartbeatReplica(e.ctx, replicaB, lease))
	ofA := e.submit(heldReplace("kp", "a", replicaA))
	ofB := e.submit(heldReplace("kp", "b", replicaB))
	// A stopped cleanly: its tasks are anyone's at once.
	must(t, e.s.RemoveReplica(e.ctx, replicaA, false))
	if got := e.claimBy(replicaB); got != ofA.ID {
		t.Fatalf("replica B claimed %q, want %s of stopped A", got, ofA.ID)
	}
	if got := e.claimBy("kps-replica-c"); got != "" {
		t.Fatalf("replica C claimed %s held by live B", got)
	}
	// A sole instance starting forgets every replica.
	must(t, e.s.RemoveReplica(e.ctx, "", true))
	if got := e.claimBy("kps-replica-c"); got != ofB.ID {
		t.Fatalf("replica C claimed %q after all replicas were forgotten, want %s", got, ofB.ID)
	}
}

func testClaimHeldConcurrently(t *testing.T, e *env) {
	// Two replicas claim at once from a queue of tasks held by each: each runs exactly its own.
	const perReplica = 10
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	must(t, e.s.HeartbeatReplica(e.ctx, replicaA, lease))
	must(t, e.s.HeartbeatReplica(e.ctx, replicaB, lease))
	holderOf := map[string]string{}
	for i := range 2 * perReplica {
		id := string(rune('a'+i%26)) + string(rune('a'+i/26))
		e.server(project, id, true)
		h := []string{replicaA, replicaB}[i%2]
		holderOf[e.submit(heldReplace("kp", id, h)).ID] = h
	}
	var mu sync.Mutex
	claimed := map[string]string{}
	var wg sync.WaitGroup
	for _, r := range []string{replicaA, replicaA, replicaB, replicaB} {
		wg.Go(func() {
			for {
				got, err := e.s.ClaimTask(e.ctx, r, lease)
				if err != nil {
					t.Error(err)
					return
				}
				if got == nil {
					return
				}
				mu.Lock()
				if prev, dup := claimed[got.ID]; dup {
					t.Errorf("task %s claimed by %s and %s", got.ID, prev, r)
				}
				claimed[got.ID] = r
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(claimed) != len(holderOf) {
		t.Fatalf("%d tasks claimed, want %d", len(claimed), len(holderOf))
	}
	for id, r := range claimed {
		if holderOf[id] != r {
			t.Errorf("task %s held by %s was claimed by %s", id, holderOf[id], r)
		}
	}
}

var testLockPolicy = kps.LockPolicy{Threshold: 3, Window: 10 * time.Minute, Lock: 5 * time.Minute}

func (e *env) lockedFor(now time.Time, keys ...string) time.Duration {
	e.t.Helper()
	d, err := e.s.Lockouts().LockedFor(e.ctx, now, keys...)
	must(e.t, err)
	return d
}

func (e *env) fail(now time.Time, p kps.LockPolicy, key string, n int) {
	e.t.Helper()
	for range n {
		must(e.t, e.s.Lockouts().Fail(e.ctx, now, p, key))
	}
}

func testLockoutCountsAndLocks(t *testing.T, e *env) {
	l, now := e.s.Lockouts(), Epoch
	e.fail(now, testLockPolicy, "k", 2)
	if d := e.lockedFor(now, "k"); d != 0 {
		t.Fatalf("locked after 2 failures: %v", d)
	}
	// A success resets the count.
	must(t, l.Reset(e.ctx, now, "k"))
	e.fail(now.Add(time.Minute), testLockPolicy, "k", 2)
	if d := e.lockedFor(now.Add(time.Minute), "k"); d != 0 {
		t.Fatalf("the reset did not take: locked for %v", d)
	}
	// The third consecutive failure locks for Lock, from that failure.
	at := now.Add(2 * time.Minute)
	e.fail(at, testLockPolicy, "k", 1)
	if d := e.lockedFor(at.Add(time.Second), "k"); d != 5*time.Minute-time.Second {
		t.Fatalf("locked for %v, want 4m59s", d)
	}
	// Failures and a success during the lock change nothing.
	e.fail(at.Add(time.Minute), testLockPolicy, "k", 5)
	must(t, l.Reset(e.ctx, at.Add(time.Minute), "k"))
	if d := e.lockedFor(at.Add(time.Minute), "k"); d != 4*time.Minute {
		t.Fatalf("locked for %v after more failures, want 4m", d)
	}
	// The lock ends, and counting starts afresh.
	after := at.Add(5 * time.Minute)
	if d := e.lockedFor(after, "k"); d != 0 {
		t.Fatalf("still locked at its end: %v", d)
	}
	e.fail(after, testLockPolicy, "k", 2)
	if d := e.lockedFor(after, "k"); d != 0 {
		t.Fatalf("locked after the lock ended and 2 new failures: %v", d)
	}
	// Failures outside one window do not add up.
	e.fail(after.Add(11*time.Minute), testLockPolicy, "k", 2)
	if d := e.lockedFor(after.Add(11*time.Minute), "k"); d != 0 {
		t.Fatalf("failures of two windows added up: locked for %v", d)
	}
}

func testLockoutUntilWindowEnd(t *testing.T, e *env) {
	// Lock 0: locked for the rest of the window (the per-IP rule of auth.md §12.4).
	p := kps.LockPolicy{Threshold: 4, Window: time.Minute}
	now := Epoch
	e.fail(now, p, "ip", 1)
	e.fail(now.Add(20*time.Second), p, "ip", 3)
	if d := e.lockedFor(now.Add(30*time.Second), "ip"); d != 30*time.Second {
		t.Fatalf("locked for %v, want the 30s left of the window", d)
	}
	if d := e.lockedFor(now.Add(time.Minute), "ip"); d != 0 {
		t.Fatalf("locked after the window: %v", d)
	}
}

func testLockoutKeys(t *testing.T, e *env) {
	now := Epoch
	e.fail(now, testLockPolicy, "a", 3)
	e.fail(now.Add(time.Minute), testLockPolicy, "b", 3)
	e.fail(now, testLockPolicy, "c", 2)
	if d := e.lockedFor(now.Add(time.Minute), "", "a", "b", "c", "unknown"); d != 5*time.Minute {
		t.Fatalf("the most restrictive lock is %v, want 5m (b's)", d)
	}
	if d := e.lockedFor(now.Add(time.Minute), "c", "unknown"); d != 0 {
		t.Fatalf("unlocked keys locked for %v", d)
	}
	if d := e.lockedFor(now, ""); d != 0 {
		t.Fatalf("no key locked for %v", d)
	}
	must(t, e.s.Lockouts().Fail(e.ctx, now, testLockPolicy, ""))
	must(t, e.s.Lockouts().Reset(e.ctx, now, ""))
	// Keys are compared exactly.
	if d := e.lockedFor(now, "A", "a "); d != 0 {
		t.Fatalf("other spellings locked for %v", d)
	}
}

func testLockoutConcurrentFailures(t *testing.T, e *env) {
	// Failures counted at once (as by several replicas) are all counted: one short of the
	// threshold does not lock, the next failure does.
	const n = 24
	p := kps.LockPolicy{Threshold: n + 1, Window: time.Hour, Lock: time.Minute}
	now := Epoch
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if err := e.s.Lockouts().Fail(e.ctx, now, p, "shared"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if d := e.lockedFor(now, "shared"); d != 0 {
		t.Fatalf("locked after %d of %d failures: %v", n, n+1, d)
	}
	e.fail(now, p, "shared", 1)
	if d := e.lockedFor(now, "shared"); d != time.Minute {
		t.Fatalf("not locked after %d concurrent failures and one more: %v", n, d)
	}
}
