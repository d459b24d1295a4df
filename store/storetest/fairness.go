package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/service"
)

// The write marks of docs/SECURITY.md §3 (only writes the service may have made are undone).
var taskWriteTests = map[string]func(*testing.T, *env){
	"MarksAreRecordedAndRead":   testWriteMarks,
	"MarksAreGuardedByTheLease": testWriteMarksFenced,
}

// Fairness between projects, docs/SECURITY.md §5.1.
var fairnessTests = map[string]func(*testing.T, *env){
	"ClaimPrefersProjectWithFewestRunning": testClaimFair,
	"ClaimIdleProjectOnly":                 testClaimIdleProject,
	"ClaimFairKeepsHolderRule":             testClaimFairHolder,
	"ProjectTaskLimit":                     testProjectTaskLimit,
	"ProjectTaskLimitInBatch":              testProjectTaskLimitBatch,
	"ServerQuota":                          testServerQuota,
}

func testWriteMarks(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "a", true)
	task := e.claim(e.submit(resetOf(project, "kp", "a")).ID)
	if task.KeyWriteReached || task.ConfigWriteReached {
		t.Fatalf("a claimed task carries marks: %+v", task)
	}
	must(t, e.s.MarkTaskWrite(e.ctx, task, kps.WriteKey))
	if got := e.task(project, task.ID); !got.KeyWriteReached || got.ConfigWriteReached || !task.KeyWriteReached {
		t.Fatalf("after the key mark: stored %+v, handle %+v", got, task)
	}
	// Marking again is harmless (a write retried after a concurrent edit).
	must(t, e.s.MarkTaskWrite(e.ctx, task, kps.WriteKey))
	must(t, e.s.MarkTaskWrite(e.ctx, task, kps.WriteConfig))
	if got := e.task(project, task.ID); !got.KeyWriteReached || !got.ConfigWriteReached {
		t.Fatalf("after both marks: %+v", got)
	}
	if err := e.s.MarkTaskWrite(e.ctx, task, kps.HostWrite("elsewhere")); err == nil || errors.Is(err, kps.ErrLeaseLost) {
		t.Fatalf("an unknown step: %v", err)
	}
	// A mark is not a change any list shows.
	before := e.version(project)
	must(t, e.s.MarkTaskWrite(e.ctx, task, kps.WriteKey))
	if after := e.version(project); after != before {
		t.Fatalf("a mark moved the task version %d → %d", before, after)
	}
	must(t, e.s.FinishTask(e.ctx, task, kps.TaskOutcome{ErrorCode: kps.TaskInterrupted, ErrorMsg: "x"}))
	if got := e.task(project, task.ID); !got.KeyWriteReached || !got.ConfigWriteReached {
		t.Fatalf("the marks did not survive the end of the task: %+v", got)
	}
}

func testWriteMarksFenced(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "a", true)
	e.server(project, "b", true)
	task := e.claim(e.submit(resetOf(project, "kp", "a")).ID)
	queued := e.submit(resetOf(project, "kp", "b"))
	// A READY task, a stale owner, a stale attempt: nothing is recorded, and the worker learns
	// it before it writes.
	otherOwner, oldAttempt := *task, *task
	otherOwner.LeaseOwner, oldAttempt.Attempt = "worker-2", 0
	for name, h := range map[string]*kps.Task{"ready": queued, "other owner": &otherOwner, "old attempt": &oldAttempt} {
		for _, step := range []kps.HostWrite{kps.WriteKey, kps.WriteConfig} {
			if err := e.s.MarkTaskWrite(e.ctx, h, step); !errors.Is(err, kps.ErrLeaseLost) {
				t.Errorf("%s, %s: MarkTaskWrite = %v, want ErrLeaseLost", name, step, err)
			}
		}
	}
	if got := e.task(project, queued.ID); got.KeyWriteReached || got.ConfigWriteReached {
		t.Fatalf("a READY task was marked: %+v", got)
	}
	// The sweeper fails the task once its lease expires: a late worker can no longer mark it.
	e.clock.Advance(lease + time.Millisecond)
	n, err := e.s.FailExpiredTasks(e.ctx, false)
	must(t, err)
	if n != 1 {
		t.Fatalf("FailExpiredTasks = %d", n)
	}
	if err := e.s.MarkTaskWrite(e.ctx, task, kps.WriteKey); !errors.Is(err, kps.ErrLeaseLost) {
		t.Fatalf("mark after the sweep: %v, want ErrLeaseLost", err)
	}
	if got := e.task(project, task.ID); got.KeyWriteReached {
		t.Fatalf("a swept task was marked: %+v", got)
	}
	if keys, _, err := e.s.UnconfirmedKeys(e.ctx, project, "a"); err != nil || len(keys) != 0 {
		t.Fatalf("UnconfirmedKeys after a swept, unmarked bind = %q %v", keys, err)
	}
}

// claimAs claims with ClaimTask (idle false) or ClaimIdleProjectTask and returns the task's ID,
// "" when there was none.
func (e *env) claimAs(owner string, idle bool) string {
	e.t.Helper()
	claim := e.s.ClaimTask
	if idle {
		claim = e.s.ClaimIdleProjectTask
	}
	t, err := claim(e.ctx, owner, lease)
	must(e.t, err)
	if t == nil {
		return ""
	}
	return t.ID
}

func testClaimFair(t *testing.T, e *env) {
	for _, p := range []string{project, otherProject} {
		e.keyPair(p, "kp", kps.ScopeDomain, alice)
		for i := range 4 {
			e.server(p, fmt.Sprintf("s%d", i), true)
		}
	}
	// Project A queued four tasks first; B queued two later.
	var a, b []string
	for i := range 4 {
		a = append(a, e.submit(resetOf(project, "kp", fmt.Sprintf("s%d", i))).ID)
		e.clock.Advance(time.Millisecond)
	}
	for i := range 2 {
		b = append(b, e.submit(resetOf(otherProject, "kp", fmt.Sprintf("s%d", i))).ID)
		e.clock.Advance(time.Millisecond)
	}
	// Neither runs anything: the older task (A's). Then B has fewer running: B's. Then a tie
	// (one each): the older task, A's. Then B again, then A's rest once B has nothing queued.
	want := []string{a[0], b[0], a[1], b[1], a[2], a[3]}
	for i, id := range want {
		if got := e.claimAs(worker, false); got != id {
			t.Fatalf("claim %d: got %s, want %s (A %v, B %v)", i, got, id, a, b)
		}
	}
	if got := e.claimAs(worker, false); got != "" {
		t.Fatalf("claimed %s from an empty queue", got)
	}
	// A task that ends frees its project's share: A now runs 4, B 2. B submits one more and
	// A one more; B's is taken first although it is newer.
	e.clock.Advance(time.Millisecond)
	ended, err := e.s.Task(e.ctx, otherProject, b[0])
	must(t, err)
	must(t, e.s.FinishTask(e.ctx, ended, kps.TaskOutcome{Success: true, PublicKey: "pk"}))
	e.server(project, "s4", true)
	e.server(otherProject, "s4", true)
	olderA := e.submit(resetOf(project, "kp", "s4")).ID
	e.clock.Advance(time.Millisecond)
	newerB := e.submit(resetOf(otherProject, "kp", "s4")).ID
	if got := e.claimAs(worker, false); got != newerB {
		t.Fatalf("claim with A running 4 and B 1: got %s, want B's %s (A's older %s)", got, newerB, olderA)
	}
	if got := e.claimAs(worker, false); got != olderA {
		t.Fatalf("then: got %s, want %s", got, olderA)
	}
}

func testClaimIdleProject(t *testing.T, e *env) {
	for _, p := range []string{project, otherProject} {
		e.keyPair(p, "kp", kps.ScopeDomain, alice)
		for i := range 3 {
			e.server(p, fmt.Sprintf("s%d", i), true)
		}
	}
	if got := e.claimAs(worker, true); got != "" {
		t.Fatalf("idle claim of an empty queue: %s", got)
	}
	a0 := e.submit(resetOf(project, "kp", "s0")).ID
	a1 := e.submit(resetOf(project, "kp", "s1")).ID
	// A runs nothing yet: its oldest task is an idle project's.
	if got := e.claimAs(worker, true); got != a0 {
		t.Fatalf("idle claim: got %s, want %s", got, a0)
	}
	// A runs one now: its second task is not for the reserve.
	if got := e.claimAs(worker, true); got != "" {
		t.Fatalf("idle claim while A runs a task: got %s", got)
	}
	e.clock.Advance(time.Millisecond)
	b0 := e.submit(resetOf(otherProject, "kp", "s0")).ID
	b1 := e.submit(resetOf(otherProject, "kp", "s1")).ID
	if got := e.claimAs(worker, true); got != b0 {
		t.Fatalf("idle claim with B idle: got %s, want %s", got, b0)
	}
	if got := e.claimAs(worker, true); got != "" {
		t.Fatalf("idle claim with both running: got %s", got)
	}
	// The ordinary claim still takes everything: A's (older, one running each).
	if got := e.claimAs(worker, false); got != a1 {
		t.Fatalf("claim: got %s, want %s", got, a1)
	}
	if got := e.claimAs(worker, false); got != b1 {
		t.Fatalf("claim: got %s, want %s", got, b1)
	}
}

func testClaimFairHolder(t *testing.T, e *env) {
	// A's oldest task waits for the replica holding its caller credential (alive): the fair
	// claim of another replica passes over it to A's next task, not to nothing.
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "s0", true)
	e.server(project, "s1", true)
	must(t, e.s.HeartbeatReplica(e.ctx, "holder", time.Minute))
	held := heldReplace("kp", "s0", "holder")
	heldID := e.submit(held).ID
	e.clock.Advance(time.Millisecond)
	next := e.submit(resetOf(project, "kp", "s1")).ID
	if got := e.claimAs("other-replica", true); got != next {
		t.Fatalf("idle claim by another replica: got %s, want %s", got, next)
	}
	if got := e.claimAs("other-replica", false); got != "" {
		t.Fatalf("another replica claimed the held task %s", got)
	}
	if got := e.claimAs("holder", false); got != heldID {
		t.Fatalf("the holder claimed %q, want %s", got, heldID)
	}
}

func testProjectTaskLimit(t *testing.T, e *env) {
	for _, p := range []string{project, otherProject} {
		e.keyPair(p, "kp", kps.ScopeDomain, alice)
		for i := range 4 {
			e.server(p, fmt.Sprintf("s%d", i), true)
		}
	}
	limited := func(s kps.TaskSubmission) kps.TaskSubmission {
		s.MaxProjectTasks, s.MaxQueued = 2, 10
		return s
	}
	first := e.submit(limited(resetOf(project, "kp", "s0")))
	e.submit(limited(resetOf(project, "kp", "s1")))
	// READY and RUNNING both count.
	e.claim(first.ID)
	err := e.submitErr(limited(resetOf(project, "kp", "s2")))
	wantCode(t, err, kps.ErrProjectTasks)
	// Checked after the checks of §2.11 (a busy server is still 409), before the service-wide
	// queue.
	wantCode(t, e.submitErr(limited(resetOf(project, "kp", "s1"))), kps.ErrServerBusy)
	full := limited(resetOf(project, "kp", "s2"))
	full.MaxQueued = 1
	wantCode(t, e.submitErr(full), kps.ErrProjectTasks)
	// Another project is not limited by this one's tasks.
	e.submit(limited(resetOf(otherProject, "kp", "s0")))
	e.submit(limited(resetOf(otherProject, "kp", "s1")))
	wantCode(t, e.submitErr(limited(resetOf(otherProject, "kp", "s2"))), kps.ErrProjectTasks)
	// An ended task makes room; 0 means no limit.
	running, err := e.s.Task(e.ctx, project, first.ID)
	must(t, err)
	must(t, e.s.FinishTask(e.ctx, running, kps.TaskOutcome{ErrorCode: kps.TaskAuthFailed, ErrorMsg: "x"}))
	e.submit(limited(resetOf(project, "kp", "s2")))
	unlimited := resetOf(project, "kp", "s3")
	e.submit(unlimited)
}

func testProjectTaskLimitBatch(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	var subs []kps.TaskSubmission
	for i := range 4 {
		e.server(project, fmt.Sprintf("s%d", i), true)
		s := resetOf(project, "kp", fmt.Sprintf("s%d", i))
		s.Batch, s.MaxProjectTasks = true, 3
		subs = append(subs, s)
	}
	e.submit(resetOf(project, "kp", "s0")) // s0 busy, one task active
	tasks, refused, err := e.s.SubmitTasks(e.ctx, subs, service.AdmitTask)
	must(t, err)
	wantCode(t, refused[0], kps.ErrServerBusy)
	if tasks[1] == nil || tasks[2] == nil || tasks[3] != nil {
		t.Fatalf("batch with room for two: tasks %v, refused %v", tasks, refused)
	}
	wantCode(t, refused[3], kps.ErrProjectTasks)
}

func testServerQuota(t *testing.T, e *env) {
	add := func(projectID, id string, quota int) error {
		return e.s.CreateServer(e.ctx, &kps.Server{ProjectID: projectID, ID: id, Name: id, Address: "192.0.2.1",
			Port: 22, User: "root", SSHDConfig: kps.DefaultSSHDConfig}, quota)
	}
	must(t, add(project, "a", 2))
	must(t, add(project, "b", 2))
	wantCode(t, add(project, "c", 2), kps.ErrServerQuota)
	// Conflict before quota.
	wantCode(t, add(project, "a", 2), kps.ErrServerExists)
	// Per project; 0 means no limit.
	must(t, add(otherProject, "c", 2))
	must(t, add(project, "c", 0))
	must(t, e.s.DeleteServer(e.ctx, project, "a"))
	must(t, e.s.DeleteServer(e.ctx, project, "b"))
	must(t, add(project, "d", 2))
	if _, err := e.s.Server(e.ctx, project, "d"); err != nil {
		t.Fatal(err)
	}
}
