package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/limitertest"
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
}

// The shared lockout counters are checked by the limiter's own conformance suite, the one the
// in-memory limiter passes too: one case per entry here, "Lockout" + the case's name.
func init() {
	for name, c := range limitertest.Cases {
		replicaTests["Lockout"+name] = func(t *testing.T, e *env) { c(t, e.s.Lockouts()) }
	}
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
