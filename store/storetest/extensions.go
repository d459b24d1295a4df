package storetest

import (
	"testing"
	"time"

	"github.com/openkps/kps"
)

// The OpenKPS extensions (kps-v3-api.md §7): expiring bindings and drift checks.
var extensionTests = map[string]func(*testing.T, *env){
	"ExpiringBindingLifecycle":   testExpiringBindingLifecycle,
	"ExpiringBindMustBeUndoable": testExpiringBindMustBeUndoable,
	"DriftChecks":                testDriftChecks,
	"DriftCheckLease":            testDriftCheckLease,
}

// A bind's expiry reaches the binding only with its success; the binding is due once the
// expiry passed; its UNBIND is submitted once (the submission clears the expiry), and a bind
// without expiry clears one.
func testExpiringBindingLifecycle(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	k, err := e.s.KeyPair(e.ctx, project, "kp", alice)
	must(t, err)
	e.server(project, "web", true)
	e.server(project, "db", true)
	at := e.clock.Now().Add(8 * time.Second)
	bind := resetOf(project, "kp", "web")
	bind.ExpiresAt = at
	// A failed bind leaves nothing due.
	e.run(bind, kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "down"})
	due, err := e.s.DueExpiries(e.ctx, at.Add(time.Hour), 10)
	must(t, err)
	if len(due) != 0 {
		t.Fatalf("due after a failed bind: %v", due)
	}
	bind.ID = newTaskID()
	e.run(bind, kps.TaskOutcome{Success: true, PublicKey: k.PublicKey})
	other := resetOf(project, "kp", "db")
	other.ExpiresAt = at.Add(time.Second)
	e.run(other, kps.TaskOutcome{Success: true, PublicKey: k.PublicKey})
	srv, err := e.s.Server(e.ctx, project, "web")
	must(t, err)
	if !srv.BindingExpires.Equal(at) {
		t.Fatalf("server's binding expires %v, want %v", srv.BindingExpires, at)
	}
	due, err = e.s.DueExpiries(e.ctx, at.Add(-time.Millisecond), 10)
	must(t, err)
	if len(due) != 0 {
		t.Fatalf("due before the expiry: %v", due)
	}
	// Not yet due on the store's clock: the expiry's UNBIND is refused.
	expiry := kps.TaskSubmission{ID: newTaskID(), ProjectID: project, Operation: kps.OpUnbind, ServerID: "web", Expiry: true, MayExport: true}
	wantCode(t, e.submitErr(expiry), kps.ErrServerNotBound)

	e.clock.Advance(8500 * time.Millisecond)
	due, err = e.s.DueExpiries(e.ctx, e.clock.Now(), 10)
	must(t, err)
	if len(due) != 1 || due[0].ServerID != "web" || !due[0].ExpiresAt.Equal(at) || due[0].KeyPairName != "kp" {
		t.Fatalf("due: %+v", due)
	}
	expiry.ID = newTaskID()
	task := e.submit(expiry)
	if task.Operation != kps.OpUnbind || task.Login != kps.LoginService || task.CallerAuth {
		t.Fatalf("expiry task: %+v", task)
	}
	due, err = e.s.DueExpiries(e.ctx, e.clock.Now().Add(time.Second), 10)
	must(t, err)
	if len(due) != 1 || due[0].ServerID != "db" {
		t.Fatalf("due after the submission: %+v", due)
	}
	// A second submission (another replica's) finds nothing due.
	again := expiry
	again.ID = newTaskID()
	if err := e.submitErr(again); kps.ErrorCode(err) != kps.ErrServerBusy && kps.ErrorCode(err) != kps.ErrServerNotBound {
		t.Fatalf("second expiry submission: %v", err)
	}
	must(t, e.s.FinishTask(e.ctx, e.claim(task.ID), kps.TaskOutcome{Success: true}))
	if b := e.binding(project, "web"); b != nil {
		t.Fatalf("binding after the expiry's unbind: %+v", b)
	}
	// A bind without expiry replaces an expiring binding: nothing is due any more.
	e.run(resetOf(project, "kp", "db"), kps.TaskOutcome{Success: true, PublicKey: k.PublicKey})
	due, err = e.s.DueExpiries(e.ctx, e.clock.Now().Add(time.Hour), 10)
	must(t, err)
	if len(due) != 0 {
		t.Fatalf("due after a bind without expiry: %+v", due)
	}
}

// An expiring bind is refused (KPS.6026) unless the service could undo it: a stored credential,
// or the hosted private key of the key pair for a caller who may export it — and with
// disable_password only the hosted key.
func testExpiringBindMustBeUndoable(t *testing.T, e *env) {
	e.keyPair(project, "plain", kps.ScopeDomain, alice)
	e.keyPair(project, "hosted", kps.ScopeDomain, alice)
	must(t, e.s.SetPrivateKey(e.ctx, project, "hosted", alice, []byte("sealed-key")))
	e.server(project, "nocred", false)
	e.server(project, "cred", true)
	in := func(s kps.TaskSubmission) kps.TaskSubmission {
		s.ExpiresAt = e.clock.Now().Add(time.Hour)
		return s
	}
	wantCode(t, e.submitErr(in(resetOf(project, "plain", "nocred"))), kps.ErrNoCredential) // the bind itself has no login
	wantCode(t, e.submitErr(in(replaceOf(project, "plain", "nocred"))), kps.ErrUndoableExpiry)
	noExport := in(replaceOf(project, "hosted", "nocred"))
	noExport.MayExport = false
	wantCode(t, e.submitErr(noExport), kps.ErrUndoableExpiry)
	pwOff := in(resetOf(project, "plain", "cred"))
	pwOff.DisablePassword = true
	wantCode(t, e.submitErr(pwOff), kps.ErrUndoableExpiry)

	e.submit(in(replaceOf(project, "hosted", "nocred")))
	pwOff = in(resetOf(project, "hosted", "cred"))
	pwOff.DisablePassword = true
	e.submit(pwOff)
}

// A drift check is created RUNNING, finished with its results, which also go to the servers'
// records; RUNNING ones left by a stopped process become INTERRUPTED.
func testDriftChecks(t *testing.T, e *env) {
	e.server(project, "web", true)
	e.server(project, "db", true)
	e.server(otherProject, "x", true)
	projects, err := e.s.DriftProjects(e.ctx)
	must(t, err)
	if len(projects) != 2 {
		t.Fatalf("projects with servers: %v", projects)
	}
	c := &kps.DriftCheck{ID: "c1", ProjectID: project, ServerIDs: []string{"web"}}
	must(t, e.s.CreateDriftCheck(e.ctx, c))
	e.clock.Advance(time.Second)
	c2 := &kps.DriftCheck{ID: "c2", ProjectID: project, Scheduled: true}
	must(t, e.s.CreateDriftCheck(e.ctx, c2))
	got, err := e.s.DriftCheck(e.ctx, project, "c1")
	must(t, err)
	if got.State != kps.DriftRunning || len(got.ServerIDs) != 1 || len(got.Results) != 0 || !got.Created.Equal(Epoch) {
		t.Fatalf("created: %+v", got)
	}
	_, err = e.s.DriftCheck(e.ctx, otherProject, "c1")
	wantCode(t, err, kps.ErrDriftCheckNotFound)

	e.clock.Advance(time.Second)
	c.Results = []kps.DriftResult{{ServerID: "web", Checked: true, Drift: true, BoundKey: "missing",
		Unmanaged: []kps.DriftKey{{Fingerprint: "SHA256:x", Type: "ssh-ed25519", Line: 2}}, CheckTime: e.clock.Now().UnixMilli()}}
	must(t, e.s.FinishDriftCheck(e.ctx, c))
	got, err = e.s.DriftCheck(e.ctx, project, "c1")
	must(t, err)
	if got.State != kps.DriftDone || len(got.Results) != 1 || got.Results[0].BoundKey != "missing" ||
		got.Results[0].Unmanaged[0].Line != 2 || !got.Finished.Equal(e.clock.Now()) {
		t.Fatalf("finished: %+v", got)
	}
	srv, err := e.s.Server(e.ctx, project, "web")
	must(t, err)
	if !srv.LastDriftCheck.Equal(e.clock.Now()) || srv.Drift == "" {
		t.Fatalf("server record: %v %q", srv.LastDriftCheck, srv.Drift)
	}
	if srv, _ := e.s.Server(e.ctx, project, "db"); !srv.LastDriftCheck.IsZero() || srv.Drift != "" {
		t.Fatalf("unchecked server record: %v %q", srv.LastDriftCheck, srv.Drift)
	}

	list, total, err := e.s.ListDriftChecks(e.ctx, project, kps.Page{Limit: 1})
	must(t, err)
	if total != 2 || len(list) != 1 || list[0].ID != "c2" || !list[0].Scheduled {
		t.Fatalf("list: %d %+v", total, list)
	}
	if n, err := e.s.InterruptDriftChecks(e.ctx, true); err != nil || n != 1 {
		t.Fatalf("interrupting every running check: %d, %v", n, err)
	}
	if got, _ := e.s.DriftCheck(e.ctx, project, "c2"); got.State != kps.DriftInterrupted {
		t.Fatalf("after the interruption: %+v", got)
	}
	if got, _ := e.s.DriftCheck(e.ctx, project, "c1"); got.State != kps.DriftDone {
		t.Fatalf("a finished check was interrupted: %+v", got)
	}
}

// A running check whose lease passed — its process stopped renewing it — is INTERRUPTED by a
// sweep of anyone; one whose lease is renewed, or has not passed, is not; a renewal does not
// bring an ended check back.
func testDriftCheckLease(t *testing.T, e *env) {
	e.server(project, "web", true)
	for _, id := range []string{"dead", "alive", "young"} {
		must(t, e.s.CreateDriftCheck(e.ctx, &kps.DriftCheck{ID: id, ProjectID: project, Lease: 10 * time.Second}))
	}
	sweep := func(want int) {
		t.Helper()
		if n, err := e.s.InterruptDriftChecks(e.ctx, false); err != nil || n != want {
			t.Fatalf("sweep interrupted %d (%v), want %d", n, err, want)
		}
	}
	state := func(id string) string {
		t.Helper()
		c, err := e.s.DriftCheck(e.ctx, project, id)
		must(t, err)
		return c.State
	}
	sweep(0)
	e.clock.Advance(8 * time.Second)
	must(t, e.s.RenewDriftChecks(e.ctx, []string{"alive"}, 10*time.Second))
	e.clock.Advance(5 * time.Second)                                                     // dead and young: 13s old, lease 10s; alive renewed 5s ago
	must(t, e.s.CreateDriftCheck(e.ctx, &kps.DriftCheck{ID: "new", ProjectID: project})) // the default lease
	sweep(2)
	if state("dead") != kps.DriftInterrupted || state("young") != kps.DriftInterrupted || state("alive") != kps.DriftRunning || state("new") != kps.DriftRunning {
		t.Fatalf("after the sweep: dead %s, young %s, alive %s, new %s", state("dead"), state("young"), state("alive"), state("new"))
	}
	must(t, e.s.RenewDriftChecks(e.ctx, []string{"dead"}, time.Hour))
	if state("dead") != kps.DriftInterrupted {
		t.Fatal("a renewal brought an interrupted check back")
	}
	e.clock.Advance(kps.DriftCheckLease + time.Second)
	sweep(2)
}
