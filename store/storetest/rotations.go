package storetest

import (
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/openkps/kps"
	"github.com/openkps/kps/service"
)

// The rotation machine of kps-v3-api.md §8 as every engine keeps it: one AdvanceRotation step
// records the servers whose tasks ended and submits the next ones in one transaction.
var rotationTests = map[string]func(*testing.T, *env){
	"BatchesAndCompletion":    testRotationBatches,
	"HaltPastMaxFailures":     testRotationHalt,
	"CanaryPause":             testRotationCanary,
	"InterruptedRetried":      testRotationInterrupted,
	"CancelSkipsPending":      testRotationCancel,
	"FromBoundKeyPair":        testRotationFromKeyPair,
	"RefusedServerFails":      testRotationRefused,
	"StepNamesTheVerifyKey":   testRotationStep,
	"FinishAdvancesTogether":  testRotationFinishAdvances,
	"DeletedWithTheirProject": testRotationsDeletedWithProject,
}

// rotation creates a rotation of alice to key pair "new" over servers s0..s(n-1), each with a
// service credential, bound to "old".
func (e *env) rotation(n, batch, maxFailures, canary int) (*kps.Rotation, []string) {
	e.t.Helper()
	e.keyPair(project, "old", kps.ScopeUser, alice)
	e.keyPair(project, "new", kps.ScopeUser, alice)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("s%d", i)
		e.server(project, ids[i], true)
	}
	r := &kps.Rotation{ID: uuid.NewString(), ProjectID: project, UserID: alice, KeyPairName: "new", BatchSize: batch,
		MaxFailures: maxFailures, Canary: canary, MayExport: true, PrivateKey: []byte("sealed:given")}
	must(e.t, e.s.CreateRotation(e.ctx, r, ids))
	return r, ids
}

func (e *env) advance(r *kps.Rotation) int {
	e.t.Helper()
	submit := func(r *kps.Rotation, serverID string) kps.TaskSubmission {
		return kps.TaskSubmission{ID: newTaskID(), ProjectID: r.ProjectID, UserID: r.UserID, Operation: kps.OpReset,
			KeyPairName: r.KeyPairName, ServerID: serverID, MayExport: r.MayExport}
	}
	n, err := e.s.AdvanceRotation(e.ctx, kps.RotationRef{ProjectID: r.ProjectID, ID: r.ID}, submit, service.AdmitTask)
	must(e.t, err)
	return n
}

// readRotation reads r, and checks that the totals kept on its row are its servers counted,
// in the read of one rotation and in the list alike.
func (e *env) readRotation(r *kps.Rotation) *kps.Rotation {
	e.t.Helper()
	got, err := e.s.Rotation(e.ctx, r.ProjectID, r.ID)
	must(e.t, err)
	var counted kps.RotationTotals
	for _, s := range got.Servers {
		counted.Servers++
		switch s.State {
		case kps.RotationServerPending:
			counted.Pending++
		case kps.RotationServerRunning:
			counted.Running++
		case kps.RotationServerSucceeded:
			counted.Succeeded++
		case kps.RotationServerFailed:
			counted.Failed++
		case kps.RotationServerSkipped:
			counted.Skipped++
		}
	}
	if got.Totals != counted {
		e.t.Fatalf("rotation totals %+v, its servers counted %+v", got.Totals, counted)
	}
	list, _, err := e.s.ListRotations(e.ctx, r.ProjectID, kps.Page{})
	must(e.t, err)
	for _, l := range list {
		if l.ID == r.ID && l.Totals != counted {
			e.t.Fatalf("listed totals %+v, its servers counted %+v", l.Totals, counted)
		}
	}
	return got
}

// finishRunning ends every task of the rotation in flight: fail names the servers that fail,
// with code.
func (e *env) finishRunning(r *kps.Rotation, code string, fail ...string) {
	e.t.Helper()
	failing := map[string]bool{}
	for _, id := range fail {
		failing[id] = true
	}
	for _, s := range e.readRotation(r).Servers {
		if s.State != kps.RotationServerRunning {
			continue
		}
		t := e.claim(s.TaskID)
		o := kps.TaskOutcome{Success: true, PublicKey: t.PublicKey}
		if failing[s.ServerID] {
			o = kps.TaskOutcome{ErrorCode: code, ErrorMsg: "failed"}
		}
		must(e.t, e.s.FinishTask(e.ctx, t, o))
	}
}

func wantTotals(t *testing.T, r *kps.Rotation, state kps.RotationState, want kps.RotationTotals) {
	t.Helper()
	if r.State != state || r.Totals != want {
		t.Fatalf("rotation %s %+v, want %s %+v", r.State, r.Totals, state, want)
	}
}

func testRotationBatches(t *testing.T, e *env) {
	r, _ := e.rotation(5, 2, 0, 0)
	if n := e.advance(r); n != 2 {
		t.Fatalf("first step submitted %d, want 2", n)
	}
	if n := e.advance(r); n != 0 {
		t.Fatalf("a step with the batch in flight submitted %d", n)
	}
	wantTotals(t, e.readRotation(r), kps.RotationRunning, kps.RotationTotals{Servers: 5, Pending: 3, Running: 2})
	for range 3 {
		e.finishRunning(r, "")
		e.advance(r)
	}
	got := e.readRotation(r)
	wantTotals(t, got, kps.RotationCompleted, kps.RotationTotals{Servers: 5, Succeeded: 5})
	if got.PrivateKey != nil {
		t.Fatal("a completed rotation keeps its private key")
	}
	for _, s := range got.Servers {
		if s.Attempts != 1 || e.binding(project, s.ServerID).KeyPairName != "new" {
			t.Fatalf("server %+v", s)
		}
	}
	if refs, err := e.s.ActiveRotations(e.ctx); err != nil || len(refs) != 0 {
		t.Fatalf("active after completion: %v %v", refs, err)
	}
}

func testRotationHalt(t *testing.T, e *env) {
	r, _ := e.rotation(6, 2, 1, 0)
	e.advance(r)
	e.finishRunning(r, kps.TaskAuthFailed, "s0") // one failure: tolerated
	e.advance(r)
	wantTotals(t, e.readRotation(r), kps.RotationRunning, kps.RotationTotals{Servers: 6, Pending: 2, Running: 2, Succeeded: 1, Failed: 1})
	e.finishRunning(r, kps.TaskWriteFailed, "s2") // the second is past max_failures
	e.advance(r)
	wantTotals(t, e.readRotation(r), kps.RotationHalted, kps.RotationTotals{Servers: 6, Pending: 2, Succeeded: 2, Failed: 2})
	if n := e.advance(r); n != 0 {
		t.Fatalf("a halted rotation submitted %d", n)
	}
	// Resuming accepts the failures so far.
	_, err := e.s.SetRotationState(e.ctx, project, r.ID, []kps.RotationState{kps.RotationPaused, kps.RotationHalted}, kps.RotationRunning, "")
	must(t, err)
	if n := e.advance(r); n != 2 {
		t.Fatalf("resumed rotation submitted %d, want 2", n)
	}
}

func testRotationCanary(t *testing.T, e *env) {
	r, _ := e.rotation(5, 3, 0, 2)
	if n := e.advance(r); n != 2 {
		t.Fatalf("canary step submitted %d, want the 2 canaries", n)
	}
	e.finishRunning(r, "")
	e.advance(r)
	got := e.readRotation(r)
	wantTotals(t, got, kps.RotationPaused, kps.RotationTotals{Servers: 5, Pending: 3, Succeeded: 2})
	if !got.CanaryDone || got.Reason == "" {
		t.Fatalf("paused after the canaries: %+v", got)
	}
	_, err := e.s.SetRotationState(e.ctx, project, r.ID, []kps.RotationState{kps.RotationRunning}, kps.RotationPaused, "")
	wantCode(t, err, kps.ErrRotationState)
	_, err = e.s.SetRotationState(e.ctx, project, r.ID, []kps.RotationState{kps.RotationPaused}, kps.RotationRunning, "")
	must(t, err)
	if n := e.advance(r); n != 3 {
		t.Fatalf("after the resume %d submitted, want 3", n)
	}
}

// A task interrupted by a restart (KPS.6609) is submitted again, with a new task; one that
// succeeded never is.
func testRotationInterrupted(t *testing.T, e *env) {
	r, _ := e.rotation(2, 2, 0, 0)
	e.advance(r)
	first := e.readRotation(r).Servers
	e.finishRunning(r, kps.TaskInterrupted, "s0")
	e.advance(r)
	got := e.readRotation(r)
	if got.Servers[0].State != kps.RotationServerRunning || got.Servers[0].Attempts != 2 || got.Servers[0].TaskID == first[0].TaskID {
		t.Fatalf("interrupted server: %+v (first task %s)", got.Servers[0], first[0].TaskID)
	}
	if got.Servers[1].State != kps.RotationServerSucceeded || got.Servers[1].Attempts != 1 {
		t.Fatalf("succeeded server: %+v", got.Servers[1])
	}
	e.finishRunning(r, "")
	e.advance(r)
	wantTotals(t, e.readRotation(r), kps.RotationCompleted, kps.RotationTotals{Servers: 2, Succeeded: 2})
}

func testRotationCancel(t *testing.T, e *env) {
	r, _ := e.rotation(4, 1, 0, 0)
	e.advance(r)
	got, err := e.s.SetRotationState(e.ctx, project, r.ID, []kps.RotationState{kps.RotationRunning}, kps.RotationCancelled, "cancelled")
	must(t, err)
	wantTotals(t, got, kps.RotationCancelled, kps.RotationTotals{Servers: 4, Running: 1, Skipped: 3})
	if got.PrivateKey == nil {
		t.Fatal("the private key went while a task may still need it")
	}
	e.finishRunning(r, "")
	e.advance(r)
	got = e.readRotation(r)
	wantTotals(t, got, kps.RotationCancelled, kps.RotationTotals{Servers: 4, Succeeded: 1, Skipped: 3})
	if got.PrivateKey != nil {
		t.Fatal("an ended rotation keeps its private key")
	}
}

func testRotationFromKeyPair(t *testing.T, e *env) {
	e.keyPair(project, "old", kps.ScopeUser, alice)
	e.keyPair(project, "new", kps.ScopeUser, alice)
	for _, id := range []string{"b", "a", "c"} {
		e.server(project, id, true)
	}
	e.bind(project, "old", "b", false)
	e.bind(project, "old", "a", false)
	r := &kps.Rotation{ID: uuid.NewString(), ProjectID: project, UserID: alice, KeyPairName: "new", FromKeyPair: "old", BatchSize: 5}
	must(t, e.s.CreateRotation(e.ctx, r, nil))
	got := e.readRotation(r)
	if len(got.Servers) != 2 || got.Servers[0].ServerID != "a" || got.Servers[1].ServerID != "b" {
		t.Fatalf("servers of the bound key pair: %+v", got.Servers)
	}
	none := &kps.Rotation{ID: uuid.NewString(), ProjectID: project, UserID: alice, KeyPairName: "old", FromKeyPair: "new", BatchSize: 5}
	wantCode(t, e.s.CreateRotation(e.ctx, none, nil), kps.ErrInvalid)
	missing := &kps.Rotation{ID: uuid.NewString(), ProjectID: project, UserID: alice, KeyPairName: "new", BatchSize: 5}
	wantCode(t, e.s.CreateRotation(e.ctx, missing, []string{"a", "nowhere"}), kps.ErrServerNotFound)
	if _, err := e.s.Rotation(e.ctx, otherProject, r.ID); kps.ErrorCode(err) != kps.ErrRotationNotFound {
		t.Fatalf("another project reads the rotation: %v", err)
	}
}

// A server the admission refuses for good (no credential to log in with) fails at once with
// the refusal's code; one that is busy waits.
func testRotationRefused(t *testing.T, e *env) {
	e.keyPair(project, "new", kps.ScopeUser, alice)
	e.server(project, "bare", false)
	e.server(project, "busy", true)
	e.submit(resetOf(project, "new", "busy"))
	r := &kps.Rotation{ID: uuid.NewString(), ProjectID: project, UserID: alice, KeyPairName: "new", BatchSize: 5, MaxFailures: 5}
	must(t, e.s.CreateRotation(e.ctx, r, []string{"bare", "busy"}))
	if n := e.advance(r); n != 0 {
		t.Fatalf("submitted %d", n)
	}
	got := e.readRotation(r)
	if got.Servers[0].State != kps.RotationServerFailed || got.Servers[0].ErrorCode != kps.ErrNoCredential {
		t.Fatalf("server without a login: %+v", got.Servers[0])
	}
	if got.Servers[1].State != kps.RotationServerPending {
		t.Fatalf("busy server: %+v", got.Servers[1])
	}
}

func testRotationStep(t *testing.T, e *env) {
	r, _ := e.rotation(1, 1, 0, 0)
	e.advance(r)
	s := e.readRotation(r).Servers[0]
	step, err := e.s.RotationStep(e.ctx, project, s.TaskID)
	must(t, err)
	if step == nil || step.RotationID != r.ID || string(step.Sealed) != "sealed:given" || string(step.AAD) != string(kps.RotationKeyAAD(project, r.ID)) {
		t.Fatalf("step: %+v", step)
	}
	if step, err := e.s.RotationStep(e.ctx, project, newTaskID()); err != nil || step != nil {
		t.Fatalf("a task of no rotation: %+v %v", step, err)
	}
}

// A rotation's task ending records its outcome and submits the next server in one
// transaction; a task of no rotation ends as FinishTask ends it.
func testRotationFinishAdvances(t *testing.T, e *env) {
	r, _ := e.rotation(4, 2, 0, 0)
	e.advance(r)
	submit := func(r *kps.Rotation, serverID string) kps.TaskSubmission {
		return kps.TaskSubmission{ID: newTaskID(), ProjectID: r.ProjectID, UserID: r.UserID, Operation: kps.OpReset,
			KeyPairName: r.KeyPairName, ServerID: serverID, MayExport: r.MayExport}
	}
	first := e.readRotation(r).Servers[0]
	task := e.claim(first.TaskID)
	n, err := e.s.FinishRotationTask(e.ctx, task, kps.TaskOutcome{Success: true, PublicKey: task.PublicKey}, submit, service.AdmitTask)
	must(t, err)
	if n != 1 || task.Phase != kps.PhaseSuccess {
		t.Fatalf("finishing a rotation's task submitted %d (task %s), want 1", n, task.Phase)
	}
	got := e.readRotation(r)
	wantTotals(t, got, kps.RotationRunning, kps.RotationTotals{Servers: 4, Pending: 1, Running: 2, Succeeded: 1})
	if got.Servers[2].State != kps.RotationServerRunning || e.binding(project, "s0").KeyPairName != "new" {
		t.Fatalf("after the finish: %+v", got.Servers)
	}
	// Finished again (a worker whose lease was lost): refused, nothing changes.
	if _, err := e.s.FinishRotationTask(e.ctx, task, kps.TaskOutcome{Success: true}, submit, service.AdmitTask); err == nil {
		t.Fatal("a task finished twice")
	}
	wantTotals(t, e.readRotation(r), kps.RotationRunning, kps.RotationTotals{Servers: 4, Pending: 1, Running: 2, Succeeded: 1})

	e.server(project, "plain", true)
	other := e.submit(resetOf(project, "new", "plain"))
	for task = nil; task == nil || task.ID != other.ID; {
		var err error
		if task, err = e.s.ClaimTask(e.ctx, worker, lease); err != nil || task == nil {
			t.Fatalf("claiming the task of no rotation: %v %v", task, err)
		}
	}
	n, err = e.s.FinishRotationTask(e.ctx, task, kps.TaskOutcome{ErrorCode: kps.TaskAuthFailed, ErrorMsg: "no"}, submit, service.AdmitTask)
	must(t, err)
	if n != 0 || task.Phase != kps.PhaseFailed || task.ErrorCode != kps.TaskAuthFailed {
		t.Fatalf("a task of no rotation: submitted %d, %s %s", n, task.Phase, task.ErrorCode)
	}
}

// A project's rotations — their servers' rows and sealed keys included, whatever their state —
// and its drift checks go with the project, and with its domain; another project's stay.
func testRotationsDeletedWithProject(t *testing.T, e *env) {
	d, _ := e.domain("acme")
	dev, ops := e.project(d.ID, region+"_dev"), e.project(d.ID, region+"_ops")
	other, _ := e.domain("other")
	kept := e.project(other.ID, region+"_kept")
	history := func(projectID string) *kps.Rotation {
		e.server(projectID, "web", true)
		r := &kps.Rotation{ID: uuid.NewString(), ProjectID: projectID, UserID: alice, KeyPairName: "new", BatchSize: 1,
			PrivateKey: []byte("sealed:given")}
		must(t, e.s.CreateRotation(e.ctx, r, []string{"web"}))
		must(t, e.s.CreateDriftCheck(e.ctx, &kps.DriftCheck{ID: "check-" + projectID, ProjectID: projectID}))
		must(t, e.s.DeleteServer(e.ctx, projectID, "web")) // a project holding servers is not deleted
		return r
	}
	gone := func(r *kps.Rotation, want bool) {
		t.Helper()
		_, err := e.s.Rotation(e.ctx, r.ProjectID, r.ID)
		list, total, lerr := e.s.ListRotations(e.ctx, r.ProjectID, kps.Page{})
		must(t, lerr)
		_, derr := e.s.DriftCheck(e.ctx, r.ProjectID, "check-"+r.ProjectID)
		if want && (kps.ErrorCode(err) != kps.ErrRotationNotFound || len(list) != 0 || total != 0 || kps.ErrorCode(derr) != kps.ErrDriftCheckNotFound) {
			t.Fatalf("project %s deleted, its rotation: %v, listed %d; its drift check: %v", r.ProjectID, err, total, derr)
		}
		if !want && (err != nil || total != 1 || derr != nil) {
			t.Fatalf("rotation of a project not deleted: %v, listed %d; drift check: %v", err, total, derr)
		}
	}
	rDev, rOps, rKept := history(dev.ID), history(ops.ID), history(kept.ID)
	must(t, e.s.DeleteProject(e.ctx, dev.ID))
	gone(rDev, true)
	gone(rOps, false)
	must(t, e.s.DeleteDomain(e.ctx, d.ID))
	gone(rOps, true)
	gone(rKept, false)
	if refs, err := e.s.ActiveRotations(e.ctx); err != nil || len(refs) != 1 || refs[0].ID != rKept.ID {
		t.Fatalf("active rotations after the deletions: %+v %v", refs, err)
	}
}
