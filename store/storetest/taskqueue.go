package storetest

import (
	"testing"
	"time"

	"github.com/openkps/kps"
)

// testTaskQueue: the queue's depth (kps.TaskQueueReader, the metrics' gauges) counts the READY
// and RUNNING tasks of every project, and dates the oldest READY one by its submission, against
// the store's own clock; finished tasks are not counted.
func testTaskQueue(t *testing.T, e *env) {
	want := func(ready, running int, oldest time.Time) {
		t.Helper()
		q, err := e.s.TaskQueue(e.ctx)
		must(t, err)
		if q.Ready != ready || q.Running != running || !q.OldestReady.Equal(oldest) || !q.Now.Equal(e.clock.Now()) {
			t.Fatalf("queue %+v, want %d ready, %d running, oldest ready %v, now %v", q, ready, running, oldest, e.clock.Now())
		}
	}
	want(0, 0, time.Time{})
	for _, id := range []string{"q-a", "q-b"} {
		e.server(project, id, true)
	}
	e.server(otherProject, "q-c", true)
	e.keyPair(project, "qk", kps.ScopeDomain, alice)
	e.keyPair(otherProject, "qk", kps.ScopeDomain, alice)

	first := e.submit(resetOf(project, "qk", "q-a"))
	e.clock.Advance(time.Second)
	second := e.submit(resetOf(project, "qk", "q-b"))
	e.clock.Advance(time.Second)
	third := e.submit(resetOf(otherProject, "qk", "q-c"))
	e.clock.Advance(time.Second)
	want(3, 0, first.Created)

	// A claim moves one to RUNNING; the oldest READY is then the oldest left.
	claimed, err := e.s.ClaimTask(e.ctx, worker, lease)
	must(t, err)
	if claimed == nil {
		t.Fatal("no task to claim")
	}
	var oldest time.Time
	for _, left := range []*kps.Task{first, second, third} {
		if left.ID != claimed.ID && (oldest.IsZero() || left.Created.Before(oldest)) {
			oldest = left.Created
		}
	}
	want(2, 1, oldest)

	// Ended tasks leave the queue, failed or not.
	must(t, e.s.FinishTask(e.ctx, claimed, kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "unreachable"}))
	want(2, 0, oldest)
	for range 2 {
		c, err := e.s.ClaimTask(e.ctx, worker, lease)
		must(t, err)
		must(t, e.s.FinishTask(e.ctx, c, kps.TaskOutcome{Success: true, PublicKey: c.PublicKey}))
	}
	want(0, 0, time.Time{})
}
