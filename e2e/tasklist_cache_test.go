package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestTaskListCacheAcrossReplicas: two replicas on one PostgreSQL, each caching the task list
// pages it renders. Whatever changes the tasks — a submission or a deletion through replica
// a, a task ending on whichever replica ran it — the very next list on replica b shows it.
func TestTaskListCacheAcrossReplicas(t *testing.T) {
	t.Parallel()
	rs := replicas(t, 2)
	a, b := rs[0], rs[0].on(rs[1])
	a.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "ops"}})

	// list reads a list on b twice (the second answer comes from b's cache when nothing
	// changed) and checks its total and that a, reading the same page, agrees.
	list := func(path string, total int) map[string]any {
		t.Helper()
		first := b.must(200, "GET", path, nil)
		again := b.must(200, "GET", path, nil)
		onA := a.must(200, "GET", path, nil)
		if first["total"] != float64(total) || fmt.Sprint(again) != fmt.Sprint(first) || fmt.Sprint(onA) != fmt.Sprint(first) {
			t.Fatalf("GET %s: b says %v then %v, a says %v; want total %d", path, first, again, onA, total)
		}
		return first
	}
	server := func(id string, port int) {
		a.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": id, "address": "127.0.0.1",
			"port": port, "credential": map[string]any{"type": "password", "key": "x"}}})
	}
	associate := func(s *service, id string) string {
		return s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "ops",
			"server": map[string]any{"id": id}})["task_id"].(string)
	}

	list("/failed-tasks", 0)
	list("/running-tasks", 0)
	list("/failed-tasks?limit=1&offset=1", 0)

	// A task that cannot connect, submitted on a: once a sees it failed, so does b.
	closed := closedPort(t)
	server("h1", closed)
	first := associate(a, "h1")
	if st := a.waitTask(first); st != "FAILED_RESET" {
		t.Fatalf("task ended %s", st)
	}
	list("/failed-tasks", 1)
	list("/failed-tasks?limit=1&offset=1", 1)

	// One submitted on b, listed failed on both.
	server("h2", closed)
	second := associate(b, "h2")
	if st := b.waitTask(second); st != "FAILED_RESET" {
		t.Fatalf("task ended %s", st)
	}
	list("/failed-tasks", 2)

	// A task that stalls on its handshake: b lists it as running once a worker holds it, and as failed as
	// soon as it has failed.
	server("stall", silentListener(t))
	stalled := associate(a, "stall")
	// Wait until a worker has claimed it: the step READY → RUNNING is itself a change, and a
	// list taken while it happens would rightly differ between the two reads.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st := a.must(200, "GET", "/tasks/"+stalled, nil)["task_status"]
		if st == "RUNNING_RESET" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stalled task is %v, not running", st)
		}
	}
	if running := list("/running-tasks", 1)["tasks"].([]any); running[0].(map[string]any)["task_id"] != stalled {
		t.Fatalf("running tasks on b: %v", running)
	}
	if st := a.waitTask(stalled); st != "FAILED_RESET" {
		t.Fatalf("stalled task ended %s", st)
	}
	list("/running-tasks", 0)
	list("/failed-tasks", 3)
	list("/failed-tasks?limit=1&offset=1", 3)

	// Deletions through a.
	a.must(200, "DELETE", "/failed-tasks/"+first, nil)
	for _, it := range list("/failed-tasks", 2)["tasks"].([]any) {
		if it.(map[string]any)["task_id"] == first {
			t.Fatalf("b still lists the deleted task %s", first)
		}
	}
	a.must(200, "DELETE", "/failed-tasks", nil)
	list("/failed-tasks", 0)
	list("/failed-tasks?limit=1&offset=1", 0)
}
