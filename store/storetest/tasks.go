package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/service"
)

var taskTests = map[string]func(*testing.T, *env){
	"SubmitBindChecksInOrder":          testSubmitBindChecksInOrder,
	"SubmitBatchRefusesBoundServer":    testSubmitBatchBound,
	"SubmitUnbindChecksInOrder":        testSubmitUnbindChecksInOrder,
	"SubmitRecordsTheTask":             testSubmitRecordsTask,
	"SubmitLoginWhereAdminSent":        testSubmitLoginWhereAdminSent,
	"SubmitHostedKeyOnlyIfExportable":  testSubmitHostedKeyOnlyIfExportable,
	"SubmitQueueCapacityIsServiceWide": testSubmitCapacity,
	"SubmitConcurrentOneServerOneWins": testSubmitConcurrentOneServer,
	"SubmitUnknownOperation":           testSubmitUnknownOperation,
	"SubmitReusedTaskID":               testSubmitReusedTaskID,
	"SubmitTasksBatchOneTransaction":   testSubmitTasks,
	"ClaimOrderAndLease":               testClaimOrderAndLease,
	"ClaimConcurrentEachOnce":          testClaimConcurrent,
	"ClaimPendingIsAClaim":             testClaimPending,
	"ExtendLease":                      testExtendLease,
	"ExpiredLeaseFencesTheWorker":      testExpiredLeaseFencesWorker,
	"StaleHandlesAreFenced":            testStaleHandlesFenced,
	"FailExpiredTasksAll":              testFailExpiredAll,
	"BindingChangesOnlyOnSuccess":      testBindingOnlyOnSuccess,
	"UnconfirmedKeysOfFailedBinds":     testUnconfirmedKeys,
	"FailureWithoutCodeGetsOne":        testFailureWithoutCode,
	"ReadyLeavesOnlyByClaim":           testReadyLeavesOnlyByClaim,
	"GetTask":                          testGetTask,
	"ListOrderAndTieBreak":             testListOrder,
	"ListPhasesAndProjects":            testListPhases,
	"ListPagesAndTotal":                testListPages,
	"ListPagesAreSlicesOfTheList":      testListPagesSlices,
	"DeleteFailedTask":                 testDeleteFailedTask,
	"DeleteFailedTasks":                testDeleteFailedTasks,
	"PurgeSucceededTasks":              testPurgeSucceeded,
	"ConcurrentWorkload":               testConcurrentWorkload,
	"QueueDepthOfEveryProject":         testTaskQueue,
}

// submitErr submits s and returns the error (the task must not be created on error).
func (e *env) submitErr(s kps.TaskSubmission) error {
	e.t.Helper()
	t, err := e.s.SubmitTask(e.ctx, s, service.AdmitTask)
	if err == nil {
		return nil
	}
	if t != nil {
		e.t.Fatalf("SubmitTask returned a task with error %v", err)
	}
	if _, gerr := e.s.Task(e.ctx, s.ProjectID, s.ID); kps.ErrorCode(gerr) != kps.ErrTaskNotFound {
		e.t.Fatalf("refused submission %v left a task behind (%v)", err, gerr)
	}
	return err
}

func testSubmitBindChecksInOrder(t *testing.T, e *env) {
	// Each step removes the obstacle of the previous one; every later obstacle stays in place,
	// so each code proves it is checked before all the following ones.
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.keyPair(project, "bobs", kps.ScopeUser, bob)
	cert := &kps.KeyPair{ProjectID: project, Name: "cert", Type: kps.TypeX509, Scope: kps.ScopeDomain,
		UserID: alice, PublicKey: "-----BEGIN CERTIFICATE-----", Fingerprint: "f", Algorithm: "X509"}
	must(t, e.s.CreateKeyPair(e.ctx, cert, kps.KeyPairQuota{}))
	e.server(project, "nocred", false) // no service credential
	e.server(project, "free", false)
	e.server(project, "other", true)
	e.submit(resetOf(project, "kp", "other"))    // one queued task
	e.submit(replaceOf(project, "kp", "nocred")) // makes "nocred" busy, and a second queued task
	const full = 2

	reset := func(keyPair, server string) kps.TaskSubmission {
		s := resetOf(project, keyPair, server)
		s.MaxQueued = full
		return s
	}
	wantCode(t, e.submitErr(reset("missing", "missing")), kps.ErrKeyPairNotFound)
	// Invisible is missing.
	wantCode(t, e.submitErr(reset("bobs", "missing")), kps.ErrKeyPairNotFound)
	wantCode(t, e.submitErr(reset("cert", "missing")), kps.ErrX509NotBindable)
	wantCode(t, e.submitErr(reset("kp", "missing")), kps.ErrServerNotFound)
	// RESET on a busy server without a credential: the credential is checked first.
	wantCode(t, e.submitErr(reset("kp", "nocred")), kps.ErrNoCredential)
	// REPLACE needs no stored credential; busy comes before the full queue.
	replace := replaceOf(project, "kp", "nocred")
	replace.MaxQueued = full
	wantCode(t, e.submitErr(replace), kps.ErrServerBusy)
	replace.ServerID = "free"
	wantCode(t, e.submitErr(replace), kps.ErrUnavailable)
	replace.MaxQueued = 3
	got, err := e.s.SubmitTask(e.ctx, replace, service.AdmitTask)
	must(t, err)
	if got.Phase != kps.PhaseReady || got.Operation != kps.OpReplace {
		t.Fatalf("task = %+v", got)
	}
}

func testSubmitBatchBound(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.keyPair(project, "kp2", kps.ScopeDomain, alice)
	e.server(project, "bound", false)
	e.bind(project, "kp", "bound", false)
	e.server(project, "queue", true)
	e.submit(replaceOf(project, "kp2", "bound")) // busy as well
	e.submit(resetOf(project, "kp2", "queue"))   // and the queue is full

	// Batch: "already bound" comes before the credential, busy and capacity checks.
	s := resetOf(project, "kp2", "bound")
	s.Batch, s.MaxQueued = true, 1
	wantCode(t, e.submitErr(s), kps.ErrServerBound)
	// But after the key pair checks.
	s.KeyPairName = "missing"
	wantCode(t, e.submitErr(s), kps.ErrKeyPairNotFound)
	// Outside a batch, binding a bound server again (re-bind) is allowed.
	rebind := resetOf(project, "kp2", "bound")
	wantCode(t, e.submitErr(rebind), kps.ErrNoCredential)
}

func testSubmitUnbindChecksInOrder(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "unbound", false)
	e.server(project, "bound", false)
	e.bind(project, "kp", "bound", true)
	e.server(project, "other", true)
	e.submit(resetOf(project, "kp", "other")) // the queue holds 1

	unbind := func(server string, callerAuth bool) kps.TaskSubmission {
		s := unbindOf(project, server, callerAuth)
		s.MaxQueued = 1
		return s
	}
	wantCode(t, e.submitErr(unbind("missing", false)), kps.ErrServerNotFound)
	// Not bound comes before the missing credential.
	wantCode(t, e.submitErr(unbind("unbound", false)), kps.ErrServerNotBound)
	wantCode(t, e.submitErr(unbind("bound", false)), kps.ErrNoCredential)
	// With the caller's credential; the queue is full.
	wantCode(t, e.submitErr(unbind("bound", true)), kps.ErrUnavailable)
	// Busy before the full queue.
	e.submit(replaceOf(project, "kp", "bound"))
	wantCode(t, e.submitErr(unbind("bound", true)), kps.ErrServerBusy)
}

func testSubmitRecordsTask(t *testing.T, e *env) {
	k := e.keyPair(project, "kp", kps.ScopeUser, alice)
	e.server(project, "web-01", true)
	noName := &kps.Server{ProjectID: project, ID: "web-02", Address: "h", Port: 22, User: "root",
		SSHDConfig: kps.DefaultSSHDConfig, Credential: []byte("c")}
	must(t, e.s.CreateServer(e.ctx, noName, 0))
	pinned := &kps.Server{ProjectID: project, ID: "web-03", Name: "web-03", Address: "h", Port: 22, User: "root",
		HostKeys: []string{"ssh-ed25519 AAAA"}, SSHDConfig: kps.DefaultSSHDConfig}
	must(t, e.s.CreateServer(e.ctx, pinned, 0))

	s := resetOf(project, "kp", "web-01")
	s.DisablePassword = true
	got := e.submit(s)
	want := kps.Task{ID: s.ID, ProjectID: project, Operation: kps.OpReset, Phase: kps.PhaseReady,
		ServerID: "web-01", ServerName: "web-01 (name)", KeyPairName: "kp", PublicKey: k.PublicKey,
		DisablePassword: true, Login: kps.LoginService, Created: Epoch, Updated: Epoch}
	if *got != want {
		t.Fatalf("submitted task = %+v\nwant %+v", got, want)
	}
	if read := e.task(project, s.ID); *read != want {
		t.Fatalf("read task = %+v\nwant %+v", read, want)
	}
	if got.Status() != "READY_RESET" {
		t.Fatalf("status %s", got.Status())
	}

	// Port 0 stays 0 (the worker resolves the inventory port); a server without a name shows its ID.
	s2 := replaceOf(project, "kp", "web-02")
	got = e.submit(s2)
	if got.Port != 0 || got.ServerName != "web-02" || !got.CallerAuth || got.DisablePassword || got.Login != kps.LoginCaller {
		t.Fatalf("task = %+v", got)
	}
	// A port of the task's own is recorded (the caller's credential, a pinned server).
	s3 := replaceOf(project, "kp", "web-03")
	s3.Port = 2222
	if got = e.submit(s3); got.Port != 2222 || e.task(project, s3.ID).Port != 2222 {
		t.Fatalf("task with a port = %+v", got)
	}

	// UNBIND names the bound key pair and its public key, whoever submits it.
	must(t, e.s.FinishTask(e.ctx, e.claim(s.ID), kps.TaskOutcome{Success: true, PublicKey: k.PublicKey}))
	u := unbindOf(project, "web-01", false)
	u.UserID = bob // the key pair is alice's user-scope one
	got = e.submit(u)
	if got.Operation != kps.OpUnbind || got.KeyPairName != "kp" || got.PublicKey != k.PublicKey || got.CallerAuth ||
		got.Login != kps.LoginService || got.LoginKeyPair != "" {
		t.Fatalf("unbind task = %+v", got)
	}
}

// testSubmitLoginWhereAdminSent: a stored credential goes neither to a task's own port nor, on
// trust on first use, to a server whose reach no admin set; the caller's own credential goes
// to a task's own port only on a pinned server. Each refusal leaves no task; the checks come
// after the credential's existence and before the busy server.
func testSubmitLoginWhereAdminSent(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	add := func(id string, byAdmin, pinned, credential bool) {
		s := &kps.Server{ProjectID: project, ID: id, Name: id, Address: "192.0.2.20", Port: 22, User: "root",
			SSHDConfig: kps.DefaultSSHDConfig, ReachByAdmin: byAdmin}
		if pinned {
			s.HostKeys = []string{"ssh-ed25519 AAAApin"}
		}
		if credential {
			s.Credential = []byte("sealed")
		}
		must(t, e.s.CreateServer(e.ctx, s, 0))
	}
	add("member-open", false, false, true)
	add("member-pinned", false, true, true)
	add("admin-open", true, false, true)
	add("admin-pinned", true, true, true)
	add("nocred-open", true, false, false)
	add("nocred-pinned", false, true, false)
	// Bound servers for UNBIND (binds first: e.bind claims the next task in the queue).
	e.server(project, "bound", true)
	e.bind(project, "kp", "bound", false)
	must(t, e.s.CreateServer(e.ctx, &kps.Server{ProjectID: project, ID: "bound-member", Name: "bound-member",
		Address: "192.0.2.21", Port: 22, User: "root", SSHDConfig: kps.DefaultSSHDConfig}, 0))
	e.bind(project, "kp", "bound-member", false) // the caller's credential pinned nothing here (no worker)
	_, err := e.s.UpdateServer(e.ctx, project, "bound-member", kps.ServerUpdate{SetCredential: true, Credential: []byte("c")})
	must(t, err)

	// On first use, only to a reach an admin set.
	wantCode(t, e.submitErr(resetOf(project, "kp", "member-open")), kps.ErrUnconfirmedReach)
	// A task's own port: never with a stored credential, pinned or not, admin or not.
	for _, id := range []string{"member-open", "member-pinned", "admin-open", "admin-pinned"} {
		wantCode(t, e.submitErr(withPortOf(resetOf(project, "kp", id), 2222)), kps.ErrPortOverride)
	}
	// With the caller's credential: only to a pinned server.
	wantCode(t, e.submitErr(withPortOf(replaceOf(project, "kp", "nocred-open"), 2222)), kps.ErrPortOverride)
	// The inventory's own port given again is no override.
	e.submit(withPortOf(resetOf(project, "kp", "admin-open"), 22))
	e.submit(resetOf(project, "kp", "member-pinned"))
	e.submit(resetOf(project, "kp", "admin-pinned"))
	caller := e.submit(withPortOf(replaceOf(project, "kp", "nocred-pinned"), 2222))
	if caller.Login != kps.LoginCaller || caller.Port != 2222 {
		t.Fatalf("caller's task = %+v", caller)
	}
	// The caller's credential to an unpinned server whose reach a member set: theirs to send.
	e.submit(replaceOf(project, "kp", "member-open"))

	// The credential's absence is reported before the port; busy comes after the port.
	wantCode(t, e.submitErr(withPortOf(resetOf(project, "kp", "nocred-open"), 2222)), kps.ErrNoCredential)
	wantCode(t, e.submitErr(withPortOf(resetOf(project, "kp", "member-pinned"), 2222)), kps.ErrPortOverride)
	wantCode(t, e.submitErr(resetOf(project, "kp", "member-pinned")), kps.ErrServerBusy)

	// UNBIND without the caller's credential obeys the same rule.
	wantCode(t, e.submitErr(unbindOf(project, "bound-member", false)), kps.ErrUnconfirmedReach)
	e.submit(unbindOf(project, "bound-member", true))
	if u := e.submit(unbindOf(project, "bound", false)); u.Login != kps.LoginService {
		t.Fatalf("unbind task = %+v", u)
	}

	// A batch item is refused alone.
	e.server(project, "batch-ok", true)
	items := []kps.TaskSubmission{withPortOf(resetOf(project, "kp", "batch-ok"), 2200), resetOf(project, "kp", "batch-ok")}
	for i := range items {
		items[i].Batch = true
	}
	tasks, refused, err := e.s.SubmitTasks(e.ctx, items, service.AdmitTask)
	must(t, err)
	wantCode(t, refused[0], kps.ErrPortOverride)
	if tasks[0] != nil || refused[1] != nil || tasks[1] == nil || tasks[1].Login != kps.LoginService {
		t.Fatalf("batch: tasks %+v, refused %v", tasks, refused)
	}
}

// testSubmitHostedKeyOnlyIfExportable: without a stored credential, a task logs in with the
// hosted private key of the bound key pair only for a caller who could export it: the key pair
// is visible to them and their role allows the export. The task records which key pair.
func testSubmitHostedKeyOnlyIfExportable(t *testing.T, e *env) {
	e.keyPair(project, "alices", kps.ScopeUser, alice)
	e.keyPair(project, "shared", kps.ScopeDomain, alice)
	e.keyPair(project, "next", kps.ScopeDomain, bob)
	for _, id := range []string{"a", "s"} {
		e.server(project, id, false)
	}
	e.bind(project, "alices", "a", false)
	e.bind(project, "shared", "s", false)
	// A server a member registered.
	must(t, e.s.CreateServer(e.ctx, &kps.Server{ProjectID: project, ID: "m", Name: "m", Address: "192.0.2.22",
		Port: 22, User: "root", SSHDConfig: kps.DefaultSSHDConfig}, 0))
	e.bind(project, "shared", "m", false)
	must(t, e.s.SetPrivateKey(e.ctx, project, "alices", alice, []byte("sealed-a")))
	must(t, e.s.SetPrivateKey(e.ctx, project, "shared", alice, []byte("sealed-s")))

	asBob := func(s kps.TaskSubmission) kps.TaskSubmission { s.UserID = bob; return s }
	noExport := func(s kps.TaskSubmission) kps.TaskSubmission { s.MayExport = false; return s }
	// Another user's key pair, invisible to bob: neither RESET nor UNBIND may log in with it.
	wantCode(t, e.submitErr(asBob(resetOf(project, "next", "a"))), kps.ErrHostedKeyForbidden)
	wantCode(t, e.submitErr(asBob(unbindOf(project, "a", false))), kps.ErrHostedKeyForbidden)
	// A role that may not export.
	wantCode(t, e.submitErr(noExport(resetOf(project, "next", "s"))), kps.ErrHostedKeyForbidden)
	// With their own auth, bob may unbind (the task is failed again, to free the server).
	u := e.submit(asBob(unbindOf(project, "a", true)))
	if u.Login != kps.LoginCaller || u.LoginKeyPair != "" {
		t.Fatalf("unbind task = %+v", u)
	}
	e.clock.Advance(time.Millisecond)
	must(t, e.s.FinishTask(e.ctx, e.claim(u.ID), kps.TaskOutcome{ErrorCode: kps.TaskAuthFailed, ErrorMsg: "x"}))
	// A visible (domain) key pair and a role that may export: the task logs in with it.
	got := e.submit(asBob(resetOf(project, "next", "s")))
	if got.Login != kps.LoginHosted || got.LoginKeyPair != "shared" {
		t.Fatalf("task = %+v", got)
	}
	if read := e.task(project, got.ID); read.Login != kps.LoginHosted || read.LoginKeyPair != "shared" {
		t.Fatalf("read task = %+v", read)
	}
	got = e.submit(resetOf(project, "next", "a"))
	if got.Login != kps.LoginHosted || got.LoginKeyPair != "alices" {
		t.Fatalf("alice's task = %+v", got)
	}

	// Hosted keys obey where a login may go too: not on first use to a member's reach.
	wantCode(t, e.submitErr(withPortOf(resetOf(project, "next", "m"), 2222)), kps.ErrPortOverride)
	wantCode(t, e.submitErr(resetOf(project, "next", "m")), kps.ErrUnconfirmedReach)
}

func withPortOf(s kps.TaskSubmission, port int) kps.TaskSubmission { s.Port = port; return s }

func testSubmitCapacity(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.keyPair(otherProject, "kp", kps.ScopeDomain, alice)
	for _, id := range []string{"a", "b", "c"} {
		e.server(project, id, true)
	}
	e.server(otherProject, "x", true)
	x := e.submit(resetOf(otherProject, "kp", "x")) // another project's READY task counts
	withCap := func(s kps.TaskSubmission, n int) kps.TaskSubmission { s.MaxQueued = n; return s }
	wantCode(t, e.submitErr(withCap(resetOf(project, "kp", "a"), 1)), kps.ErrUnavailable)
	e.submit(withCap(resetOf(project, "kp", "a"), 2))
	wantCode(t, e.submitErr(withCap(resetOf(project, "kp", "b"), 2)), kps.ErrUnavailable)
	// RUNNING tasks have left the queue.
	e.claim(x.ID)
	e.submit(withCap(resetOf(project, "kp", "b"), 2))
	wantCode(t, e.submitErr(withCap(resetOf(project, "kp", "c"), 2)), kps.ErrUnavailable)
	// 0 is unlimited.
	e.submit(withCap(resetOf(project, "kp", "c"), 0))
}

func testSubmitConcurrentOneServer(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "web-01", true)
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			s := resetOf(project, "kp", "web-01")
			if i%2 == 1 {
				s = replaceOf(project, "kp", "web-01")
			}
			_, errs[i] = e.s.SubmitTask(e.ctx, s, service.AdmitTask)
		})
	}
	close(start)
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
			continue
		}
		wantCode(t, err, kps.ErrServerBusy)
	}
	if won != 1 {
		t.Fatalf("%d concurrent submissions for one server succeeded, want exactly 1", won)
	}
	_, total, err := e.listTasks(project, kps.RunningPhases, kps.Page{Limit: 10})
	must(t, err)
	if total != 1 {
		t.Fatalf("%d active tasks for one server", total)
	}
}

func testSubmitUnknownOperation(t *testing.T, e *env) {
	e.server(project, "web-01", true)
	s := unbindOf(project, "web-01", true)
	s.Operation = "REBOOT"
	err := e.submitErr(s)
	if err == nil || kps.ErrorCode(err) != kps.ErrInternal {
		t.Fatalf("unknown operation: %v, want an internal error", err)
	}
}

func testSubmitReusedTaskID(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "a", true)
	e.server(project, "b", true)
	first := e.submit(resetOf(project, "kp", "a"))
	s := resetOf(project, "kp", "b")
	s.ID = first.ID
	_, err := e.s.SubmitTask(e.ctx, s, service.AdmitTask)
	if err == nil || kps.ErrorCode(err) != kps.ErrInternal {
		t.Fatalf("reused task ID: %v, want an internal error (not a busy server)", err)
	}
}

// testSubmitTasks: a batch submitted in one transaction refuses items one by one, with
// SubmitTask's checks (an earlier item of the same batch counts: the same server again is
// busy), leaves nothing of a refused item, and keeps the others; a failure of the whole
// batch submits none of it.
func testSubmitTasks(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.keyPair(project, "kp2", kps.ScopeDomain, alice)
	for _, id := range []string{"a", "b", "c", "d"} {
		e.server(project, id, true)
	}
	e.server(project, "bound", true)
	e.bind(project, "kp2", "bound", false)
	batch := func(s kps.TaskSubmission) kps.TaskSubmission { s.Batch = true; return s }
	subs := []kps.TaskSubmission{
		batch(resetOf(project, "kp", "a")),
		batch(resetOf(project, "kp", "bound")),
		batch(replaceOf(project, "kp", "b")),
		batch(resetOf(project, "kp", "a")),
		batch(resetOf(project, "kp", "missing")),
	}
	tasks, refused, err := e.s.SubmitTasks(e.ctx, subs, service.AdmitTask)
	must(t, err)
	if len(tasks) != len(subs) || len(refused) != len(subs) {
		t.Fatalf("%d tasks and %d refusals for %d items", len(tasks), len(refused), len(subs))
	}
	for i, code := range []string{"", kps.ErrServerBound, "", kps.ErrServerBusy, kps.ErrServerNotFound} {
		got, gerr := e.s.Task(e.ctx, project, subs[i].ID)
		if code != "" {
			wantCode(t, refused[i], code)
			if tasks[i] != nil || kps.ErrorCode(gerr) != kps.ErrTaskNotFound {
				t.Errorf("item %d refused (%v) but left a task (%v, %v)", i, refused[i], tasks[i], gerr)
			}
			continue
		}
		must(t, gerr)
		if refused[i] != nil || tasks[i] == nil || got.Phase != kps.PhaseReady || got.ServerID != subs[i].ServerID || !reflect.DeepEqual(got, tasks[i]) {
			t.Errorf("item %d: refused %v, returned %+v, stored %+v", i, refused[i], tasks[i], got)
		}
	}

	// A reused task ID is an internal error: the whole batch fails and submits nothing.
	first := batch(resetOf(project, "kp", "c"))
	reused := batch(resetOf(project, "kp", "d"))
	reused.ID = subs[0].ID
	if _, _, err := e.s.SubmitTasks(e.ctx, []kps.TaskSubmission{first, reused}, service.AdmitTask); err == nil || kps.ErrorCode(err) != kps.ErrInternal {
		t.Fatalf("batch with a reused task ID: %v, want an internal error", err)
	}
	if _, err := e.s.Task(e.ctx, project, first.ID); kps.ErrorCode(err) != kps.ErrTaskNotFound {
		t.Errorf("the failed batch left its first item behind: %v", err)
	}
	tasks, refused, err = e.s.SubmitTasks(e.ctx, []kps.TaskSubmission{first}, service.AdmitTask)
	must(t, err)
	if refused[0] != nil || tasks[0] == nil {
		t.Errorf("server c after the failed batch: %v", refused[0])
	}
}

func testClaimOrderAndLease(t *testing.T, e *env) {
	t0, err := e.s.ClaimTask(e.ctx, worker, lease)
	must(t, err)
	if t0 != nil {
		t.Fatalf("claim of an empty queue = %+v", t0)
	}
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	for _, id := range []string{"a", "b", "c", "d"} {
		e.server(project, id, true)
	}
	// Same millisecond: insertion order. An earlier clock reading: creation order.
	first := e.submit(resetOf(project, "kp", "a"))
	second := e.submit(resetOf(project, "kp", "b"))
	e.clock.Advance(-time.Second)
	earliest := e.submit(resetOf(project, "kp", "c"))
	e.clock.Advance(2 * time.Second)
	last := e.submit(resetOf(project, "kp", "d"))

	claimed := e.claim(earliest.ID)
	if claimed.Phase != kps.PhaseRunning || claimed.LeaseOwner != worker || claimed.Attempt != 1 ||
		!claimed.LeaseExpires.Equal(e.clock.Now().Add(lease)) || !claimed.Updated.Equal(e.clock.Now()) ||
		!claimed.Created.Equal(earliest.Created) || claimed.KeyPairName != "kp" || claimed.ServerName != "c (name)" {
		t.Fatalf("claimed task = %+v", claimed)
	}
	if read := e.task(project, earliest.ID); *read != *claimed {
		t.Fatalf("read back %+v, claimed %+v", read, claimed)
	}
	e.claim(first.ID)
	e.claim(second.ID)
	e.claim(last.ID)
	none, err := e.s.ClaimTask(e.ctx, worker, lease)
	must(t, err)
	if none != nil {
		t.Fatalf("claimed %s twice", none.ID)
	}
}

// testClaimPending: ClaimTaskPending takes the task ClaimTask would (fair order, lease, attempt),
// and once its committed returned nil the claim is what every reader sees; on an empty queue
// it returns no task and no committed.
func testClaimPending(t *testing.T, e *env) {
	task, committed, err := e.s.ClaimTaskPending(e.ctx, worker, lease)
	if err != nil || task != nil || committed != nil {
		t.Fatalf("pending claim of an empty queue = %+v, %v, %v", task, committed != nil, err)
	}
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "a", true)
	e.server(project, "b", true)
	e.server(otherProject, "c", true)
	e.keyPair(otherProject, "kp", kps.ScopeDomain, alice)
	first := e.submit(resetOf(project, "kp", "a"))
	e.submit(resetOf(project, "kp", "b"))
	other := e.submit(resetOf(otherProject, "kp", "c"))
	var claimed []*kps.Task
	for _, want := range []string{first.ID, other.ID} { // fewest running first
		task, committed, err := e.s.ClaimTaskPending(e.ctx, worker, lease)
		must(t, err)
		if task == nil || task.ID != want {
			t.Fatalf("pending claim took %+v, want %s", task, want)
		}
		must(t, committed())
		if task.Phase != kps.PhaseRunning || task.LeaseOwner != worker || task.Attempt != 1 ||
			!task.LeaseExpires.Equal(e.clock.Now().Add(lease)) {
			t.Fatalf("pending claim = %+v", task)
		}
		if read := e.task(task.ProjectID, task.ID); *read != *task {
			t.Fatalf("read back %+v, claimed %+v", read, task)
		}
		claimed = append(claimed, task)
	}
	for _, task := range claimed {
		must(t, e.s.MarkTaskWrite(e.ctx, task, kps.WriteKey))
		must(t, e.s.FinishTask(e.ctx, task, kps.TaskOutcome{Success: true, PublicKey: "ssh-ed25519 AAAA"}))
	}
}

func testClaimConcurrent(t *testing.T, e *env) {
	const tasks, workers = 60, 8
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	want := map[string]bool{}
	for i := range tasks {
		id := fmt.Sprintf("s%02d", i)
		e.server(project, id, true)
		want[e.submit(resetOf(project, "kp", id)).ID] = true
	}
	var (
		mu      sync.Mutex
		claimed = map[string]string{}
		wg      sync.WaitGroup
		errs    = make(chan error, workers)
	)
	start := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			<-start
			owner := fmt.Sprintf("worker-%d", w)
			for {
				task, err := e.s.ClaimTask(e.ctx, owner, lease)
				if err != nil {
					errs <- err
					return
				}
				if task == nil {
					return
				}
				if task.LeaseOwner != owner || task.Attempt != 1 {
					errs <- fmt.Errorf("claimed %+v as %s", task, owner)
					return
				}
				mu.Lock()
				if prev, dup := claimed[task.ID]; dup {
					errs <- fmt.Errorf("task %s claimed by %s and %s", task.ID, prev, owner)
				}
				claimed[task.ID] = owner
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(claimed) != tasks {
		t.Fatalf("%d tasks claimed, want %d", len(claimed), tasks)
	}
	for id := range want {
		if _, ok := claimed[id]; !ok {
			t.Errorf("task %s never claimed", id)
		}
	}
}

func testExtendLease(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "a", true)
	task := e.claim(e.submit(resetOf(project, "kp", "a")).ID)
	e.clock.Advance(20 * time.Second)
	must(t, e.s.ExtendLease(e.ctx, task, lease))
	if !task.LeaseExpires.Equal(e.clock.Now().Add(lease)) {
		t.Fatalf("lease expires %v, want %v", task.LeaseExpires, e.clock.Now().Add(lease))
	}
	e.clock.Advance(20 * time.Second) // 40 s after the claim, 20 s after the renewal
	n, err := e.s.FailExpiredTasks(e.ctx, false)
	must(t, err)
	if n != 0 {
		t.Fatalf("the sweeper failed %d task(s) with a renewed lease", n)
	}
	// Exactly at expiry the lease still holds ("expired before now").
	e.clock.Advance(10 * time.Second)
	n, err = e.s.FailExpiredTasks(e.ctx, false)
	must(t, err)
	if n != 0 {
		t.Fatalf("the sweeper failed %d task(s) at the expiry instant", n)
	}
	must(t, e.s.FinishTask(e.ctx, task, kps.TaskOutcome{Success: true, PublicKey: "k"}))
	// A finished task's lease cannot be extended.
	if err := e.s.ExtendLease(e.ctx, task, lease); !errors.Is(err, kps.ErrLeaseLost) {
		t.Fatalf("ExtendLease after finish: %v, want ErrLeaseLost", err)
	}
}

func testExpiredLeaseFencesWorker(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "a", true)
	e.server(project, "b", true)
	slow := e.claim(e.submit(resetOf(project, "kp", "a")).ID)
	e.clock.Advance(lease / 2)
	fresh := e.claim(e.submit(resetOf(project, "kp", "b")).ID)
	e.clock.Advance(lease/2 + time.Millisecond) // slow's lease expired 1 ms ago; fresh's has not

	n, err := e.s.FailExpiredTasks(e.ctx, false)
	must(t, err)
	if n != 1 {
		t.Fatalf("FailExpiredTasks = %d, want 1", n)
	}
	failed := e.wantPhase(project, slow.ID, kps.PhaseFailed)
	if failed.ErrorCode != kps.TaskInterrupted || failed.ErrorMsg != "Task interrupted by a service restart." {
		t.Fatalf("expired task = %+v", failed)
	}
	e.wantPhase(project, fresh.ID, kps.PhaseRunning)

	// The slow worker comes back: its success is never recorded, its heartbeat is refused.
	if err := e.s.ExtendLease(e.ctx, slow, lease); !errors.Is(err, kps.ErrLeaseLost) {
		t.Fatalf("ExtendLease of a swept task: %v, want ErrLeaseLost", err)
	}
	err = e.s.FinishTask(e.ctx, slow, kps.TaskOutcome{Success: true, PublicKey: "ssh-ed25519 AAAA"})
	if !errors.Is(err, kps.ErrLeaseLost) {
		t.Fatalf("FinishTask of a swept task: %v, want ErrLeaseLost", err)
	}
	after := e.wantPhase(project, slow.ID, kps.PhaseFailed)
	if after.ErrorCode != kps.TaskInterrupted {
		t.Fatalf("the fenced finish changed the task: %+v", after)
	}
	if b := e.binding(project, "a"); b != nil {
		t.Fatalf("the fenced success created a binding: %+v", b)
	}
	// The sweep freed the server.
	e.submit(resetOf(project, "kp", "a"))
}

func testStaleHandlesFenced(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "a", true)
	task := e.claim(e.submit(resetOf(project, "kp", "a")).ID)
	otherOwner, oldAttempt, nextAttempt := *task, *task, *task
	otherOwner.LeaseOwner = "worker-2"
	oldAttempt.Attempt = 0
	nextAttempt.Attempt = 2
	for name, h := range map[string]*kps.Task{"other owner": &otherOwner, "old attempt": &oldAttempt,
		"other attempt": &nextAttempt} {
		if err := e.s.ExtendLease(e.ctx, h, lease); !errors.Is(err, kps.ErrLeaseLost) {
			t.Errorf("%s: ExtendLease = %v, want ErrLeaseLost", name, err)
		}
		if err := e.s.FinishTask(e.ctx, h, kps.TaskOutcome{Success: true, PublicKey: "x"}); !errors.Is(err, kps.ErrLeaseLost) {
			t.Errorf("%s: FinishTask = %v, want ErrLeaseLost", name, err)
		}
	}
	if got := e.wantPhase(project, task.ID, kps.PhaseRunning); got.LeaseOwner != worker || got.Attempt != 1 {
		t.Fatalf("stale handles changed the task: %+v", got)
	}
	if b := e.binding(project, "a"); b != nil {
		t.Fatalf("a stale handle bound the server: %+v", b)
	}
	// The real holder still finishes; a second finish is refused.
	must(t, e.s.FinishTask(e.ctx, task, kps.TaskOutcome{Success: true, PublicKey: "pk"}))
	again := *task
	again.Phase = kps.PhaseRunning
	if err := e.s.FinishTask(e.ctx, &again, kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "x"}); !errors.Is(err, kps.ErrLeaseLost) {
		t.Fatalf("second FinishTask = %v, want ErrLeaseLost", err)
	}
	e.wantPhase(project, task.ID, kps.PhaseSuccess)
}

func testFailExpiredAll(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.keyPair(otherProject, "kp", kps.ScopeDomain, alice)
	e.server(project, "a", true)
	e.server(project, "b", true)
	e.server(otherProject, "c", true)
	e.server(project, "d", true)
	done := e.run(resetOf(project, "kp", "d"), kps.TaskOutcome{Success: true, PublicKey: "pk"})
	r1 := e.claim(e.submit(resetOf(project, "kp", "a")).ID)
	r2 := e.claim(e.submit(resetOf(otherProject, "kp", "c")).ID)
	ready := e.submit(resetOf(project, "kp", "b"))

	n, err := e.s.FailExpiredTasks(e.ctx, false)
	must(t, err)
	if n != 0 {
		t.Fatalf("FailExpiredTasks(false) with live leases = %d", n)
	}
	n, err = e.s.FailExpiredTasks(e.ctx, true)
	must(t, err)
	if n != 2 {
		t.Fatalf("FailExpiredTasks(true) = %d, want 2", n)
	}
	for _, r := range []*kps.Task{r1, r2} {
		got := e.wantPhase(r.ProjectID, r.ID, kps.PhaseFailed)
		if got.ErrorCode != kps.TaskInterrupted || got.ErrorMsg != "Task interrupted by a service restart." {
			t.Fatalf("task = %+v", got)
		}
	}
	e.wantPhase(project, ready.ID, kps.PhaseReady)
	e.wantPhase(project, done.ID, kps.PhaseSuccess)
	n, err = e.s.FailExpiredTasks(e.ctx, true)
	must(t, err)
	if n != 0 {
		t.Fatalf("second FailExpiredTasks(true) = %d", n)
	}
}

func testBindingOnlyOnSuccess(t *testing.T, e *env) {
	k1 := e.keyPair(project, "kp1", kps.ScopeDomain, alice)
	k2 := e.keyPair(project, "kp2", kps.ScopeDomain, alice)
	e.server(project, "a", true)

	// READY and RUNNING: not yet bound. FAILED: still not.
	task := e.submit(resetOf(project, "kp1", "a"))
	if b := e.binding(project, "a"); b != nil {
		t.Fatalf("bound while READY: %+v", b)
	}
	running := e.claim(task.ID)
	if b := e.binding(project, "a"); b != nil {
		t.Fatalf("bound while RUNNING: %+v", b)
	}
	must(t, e.s.FinishTask(e.ctx, running, kps.TaskOutcome{ErrorCode: kps.TaskAuthFailed,
		ErrorMsg: "SSH authentication as 'root' on a:22 failed."}))
	if running.Phase != kps.PhaseFailed || running.ErrorCode != kps.TaskAuthFailed {
		t.Fatalf("handle after a failed finish: %+v", running)
	}
	failed := e.wantPhase(project, task.ID, kps.PhaseFailed)
	if failed.ErrorCode != kps.TaskAuthFailed || failed.ErrorMsg != "SSH authentication as 'root' on a:22 failed." {
		t.Fatalf("failed task = %+v", failed)
	}
	if b := e.binding(project, "a"); b != nil {
		t.Fatalf("bound after a failure: %+v", b)
	}

	// RESET success binds.
	e.clock.Advance(time.Second)
	ok := e.run(resetOf(project, "kp1", "a"), kps.TaskOutcome{Success: true, PublicKey: k1.PublicKey, PasswordDisabled: true})
	if ok.Phase != kps.PhaseSuccess || ok.ErrorCode != "" || !ok.Updated.Equal(e.clock.Now()) {
		t.Fatalf("handle after success: %+v", ok)
	}
	want := kps.Binding{ProjectID: project, ServerID: "a", KeyPairName: "kp1", PublicKey: k1.PublicKey, PasswordDisabled: true}
	if b := e.binding(project, "a"); b == nil || !reflect.DeepEqual(*b, want) {
		t.Fatalf("binding = %+v, want %+v", b, want)
	}
	// REPLACE with another key pair re-binds; a failed one leaves the binding alone.
	e.run(replaceOf(project, "kp2", "a"), kps.TaskOutcome{ErrorCode: kps.TaskWriteFailed, ErrorMsg: "x"})
	if b := e.binding(project, "a"); b == nil || !reflect.DeepEqual(*b, want) {
		t.Fatalf("binding after a failed replace = %+v", b)
	}
	e.run(replaceOf(project, "kp2", "a"), kps.TaskOutcome{Success: true, PublicKey: k2.PublicKey})
	want = kps.Binding{ProjectID: project, ServerID: "a", KeyPairName: "kp2", PublicKey: k2.PublicKey}
	if b := e.binding(project, "a"); b == nil || !reflect.DeepEqual(*b, want) {
		t.Fatalf("binding after replace = %+v, want %+v", b, want)
	}
	// A failed UNBIND keeps it, a successful one removes it.
	e.run(unbindOf(project, "a", false), kps.TaskOutcome{ErrorCode: kps.TaskSSHDConfig, ErrorMsg: "x"})
	if b := e.binding(project, "a"); b == nil || !reflect.DeepEqual(*b, want) {
		t.Fatalf("binding after a failed unbind = %+v", b)
	}
	e.run(unbindOf(project, "a", true), kps.TaskOutcome{Success: true})
	if b := e.binding(project, "a"); b != nil {
		t.Fatalf("binding after unbind = %+v", b)
	}
	// Bindings are per project.
	if b := e.binding(otherProject, "a"); b != nil {
		t.Fatalf("other project's binding = %+v", b)
	}
}

func testFailureWithoutCode(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "a", true)
	task := e.run(resetOf(project, "kp", "a"), kps.TaskOutcome{})
	got := e.wantPhase(project, task.ID, kps.PhaseFailed)
	if got.ErrorCode == "" || got.ErrorMsg == "" {
		t.Fatalf("failed task without code or message: %+v", got)
	}
}

// testReadyLeavesOnlyByClaim: a READY task leaves READY only by a claim (the state machine has
// no READY → FAILED edge, docs/task-state-machine.md). An outcome for a task nobody claimed is
// fenced, the sweeper passes over it however old it is, and the claim that takes it may fail
// it at once — what the runner does with a task whose caller credential was lost — which frees
// the server.
func testReadyLeavesOnlyByClaim(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "a", true)
	ready := e.submit(replaceOf(project, "kp", "a"))
	forged := *ready
	forged.LeaseOwner, forged.Attempt = worker, 1
	if err := e.s.FinishTask(e.ctx, &forged, kps.TaskOutcome{ErrorCode: kps.TaskInterrupted, ErrorMsg: "x"}); !errors.Is(err, kps.ErrLeaseLost) {
		t.Fatalf("FinishTask of a READY task = %v", err)
	}
	e.clock.Advance(time.Hour)
	for _, all := range []bool{false, true} {
		if n, err := e.s.FailExpiredTasks(e.ctx, all); err != nil || n != 0 {
			t.Fatalf("sweep (all %v) failed %d tasks: %v", all, n, err)
		}
	}
	e.wantPhase(project, ready.ID, kps.PhaseReady)
	running := e.claim(ready.ID)
	must(t, e.s.FinishTask(e.ctx, running, kps.TaskOutcome{ErrorCode: kps.TaskInterrupted, ErrorMsg: "Task interrupted by a service restart."}))
	got := e.wantPhase(project, ready.ID, kps.PhaseFailed)
	if got.ErrorCode != kps.TaskInterrupted || got.Attempt != 1 || got.LeaseOwner != worker {
		t.Fatalf("task = %+v", got)
	}
	// The server is free again.
	e.submit(resetOf(project, "kp", "a"))
}

func testGetTask(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "a", true)
	task := e.run(resetOf(project, "kp", "a"), kps.TaskOutcome{Success: true, PublicKey: "pk"})
	got := e.wantPhase(project, task.ID, kps.PhaseSuccess)
	if got.Status() != "SUCCESS_RESET" {
		t.Fatalf("status %s", got.Status())
	}
	for _, c := range []struct{ project, id string }{
		{otherProject, task.ID},
		{project, newTaskID()},
		{project, "not-a-uuid"},
		{project, ""},
	} {
		_, err := e.s.Task(e.ctx, c.project, c.id)
		wantCode(t, err, kps.ErrTaskNotFound)
	}
}

// ids renders a task list.
func ids(tasks []kps.Task) []string {
	out := []string{}
	for _, t := range tasks {
		out = append(out, t.ID)
	}
	return out
}

func testListOrder(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	// Three tasks in one millisecond (the clock does not move), then two later ones.
	var same []string
	for i := range 5 {
		id := fmt.Sprintf("s%d", i)
		e.server(project, id, true)
		if i == 3 {
			e.clock.Advance(time.Millisecond)
		}
		task := e.submit(resetOf(project, "kp", id))
		if i < 3 {
			same = append(same, task.ID)
		}
	}
	all, total, err := e.listTasks(project, kps.RunningPhases, kps.Page{Limit: 1000})
	must(t, err)
	if total != 5 || len(all) != 5 {
		t.Fatalf("total %d, %d tasks", total, len(all))
	}
	// Newest first; ties broken by task ID ascending.
	for i := 1; i < len(all); i++ {
		a, b := all[i-1], all[i]
		if a.Created.Before(b.Created) || (a.Created.Equal(b.Created) && a.ID >= b.ID) {
			t.Fatalf("order broken at %d: %s@%v then %s@%v", i, a.ID, a.Created, b.ID, b.Created)
		}
	}
	sort.Strings(same)
	if got := ids(all[2:]); !slices.Equal(got, same) {
		t.Fatalf("same-millisecond tasks in order %v, want ID ascending %v", got, same)
	}
	if !all[0].Created.After(all[2].Created) || !all[0].Created.Equal(all[1].Created) {
		t.Fatalf("timestamps: %v %v %v", all[0].Created, all[1].Created, all[2].Created)
	}
	// Pages cut the same order.
	var paged []string
	for off := 0; off < 5; off += 2 {
		page, _, err := e.listTasks(project, kps.RunningPhases, kps.Page{Limit: 2, Offset: off})
		must(t, err)
		paged = append(paged, ids(page)...)
	}
	if !slices.Equal(paged, ids(all)) {
		t.Fatalf("paged %v, whole %v", paged, ids(all))
	}
}

func testListPhases(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.keyPair(otherProject, "kp", kps.ScopeDomain, alice)
	for _, id := range []string{"a", "b", "c", "d"} {
		e.server(project, id, true)
	}
	e.server(otherProject, "x", true)
	failed := e.run(resetOf(project, "kp", "b"), kps.TaskOutcome{ErrorCode: kps.TaskTimeout, ErrorMsg: "slow"})
	e.clock.Advance(time.Millisecond)
	e.run(resetOf(project, "kp", "c"), kps.TaskOutcome{Success: true, PublicKey: "pk"})
	e.clock.Advance(time.Millisecond)
	running := e.claim(e.submit(resetOf(project, "kp", "d")).ID)
	e.clock.Advance(time.Millisecond)
	ready := e.submit(resetOf(project, "kp", "a"))
	e.submit(resetOf(otherProject, "kp", "x"))

	for _, c := range []struct {
		phases []kps.Phase
		want   []string
	}{
		{kps.RunningPhases, []string{ready.ID, running.ID}},
		{kps.FailedPhases, []string{failed.ID}},
	} {
		tasks, total, err := e.listTasks(project, c.phases, kps.Page{Limit: 1000})
		must(t, err)
		if !slices.Equal(ids(tasks), c.want) || total != len(c.want) {
			t.Errorf("phases %v: %v total %d, want %v", c.phases, ids(tasks), total, c.want)
		}
	}
	tasks, _, err := e.listTasks(project, kps.FailedPhases, kps.Page{Limit: 1})
	must(t, err)
	if got := tasks[0]; got.ErrorCode != kps.TaskTimeout || got.ErrorMsg != "slow" || got.ServerName != "b (name)" ||
		got.KeyPairName != "kp" || got.Operation != kps.OpReset {
		t.Errorf("failed task in list = %+v", got)
	}
	// No phases: everything of the project.
	_, total, err := e.listTasks(project, nil, kps.Page{Limit: 1000})
	must(t, err)
	if total != 4 {
		t.Errorf("all phases: total %d, want 4", total)
	}
}

func testListPages(t *testing.T, e *env) {
	tasks, total, err := e.listTasks(project, kps.FailedPhases, kps.Page{Limit: 10, Offset: 5})
	must(t, err)
	if tasks == nil || len(tasks) != 0 || total != 0 {
		t.Fatalf("empty: %v total %d", tasks, total)
	}
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	for i := range 5 {
		id := fmt.Sprintf("s%d", i)
		e.server(project, id, true)
		e.clock.Advance(time.Millisecond)
		e.run(resetOf(project, "kp", id), kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "down"})
	}
	for _, c := range []struct {
		page kps.Page
		n    int
	}{
		{kps.Page{Limit: 2}, 2},
		{kps.Page{Limit: 2, Offset: 4}, 1},
		{kps.Page{Limit: 1000, Offset: 0}, 5},
		{kps.Page{Limit: 2, Offset: 5}, 0}, // offset = total
		{kps.Page{Limit: 2, Offset: 6}, 0},
		{kps.Page{Limit: 1000, Offset: 2147483647}, 0},
	} {
		tasks, total, err := e.listTasks(project, kps.FailedPhases, c.page)
		must(t, err)
		if len(tasks) != c.n || total != 5 || tasks == nil {
			t.Errorf("page %+v: %d tasks (nil %v), total %d; want %d, total 5", c.page, len(tasks), tasks == nil, total, c.n)
		}
	}
}

// testListPagesSlices: every page (any offset, any limit) is exactly that slice of the whole
// list, also where the page starts among tasks created in the same millisecond, and in lists of
// several phases.
func testListPagesSlices(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	for i := range 12 {
		id := fmt.Sprintf("s%02d", i)
		e.server(project, id, true)
		if i%4 == 0 { // runs of four tasks share a millisecond
			e.clock.Advance(time.Millisecond)
		}
		switch i % 3 {
		case 0:
			e.claim(e.submit(resetOf(project, "kp", id)).ID)
		case 1:
			e.run(resetOf(project, "kp", id), kps.TaskOutcome{Success: true, PublicKey: "pk"})
		default:
			e.run(resetOf(project, "kp", id), kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "down"})
		}
	}
	for _, phases := range [][]kps.Phase{nil, kps.FailedPhases, {kps.PhaseRunning, kps.PhaseSuccess}} {
		all, total, err := e.listTasks(project, phases, kps.Page{Limit: 1000})
		must(t, err)
		if total != len(all) {
			t.Fatalf("phases %v: %d tasks, total %d", phases, len(all), total)
		}
		for offset := 0; offset <= total; offset++ {
			for _, limit := range []int{1, 2, 3, 5, 1000} {
				page, got, err := e.listTasks(project, phases, kps.Page{Limit: limit, Offset: offset})
				must(t, err)
				want := all[offset:min(offset+limit, total)]
				if got != total || len(page) != len(want) {
					t.Fatalf("phases %v offset %d limit %d: %d tasks of %d, want %d of %d", phases, offset, limit, len(page), got, len(want), total)
				}
				for i := range want {
					if page[i].ID != want[i].ID {
						t.Fatalf("phases %v offset %d limit %d: task %d is %s, want %s", phases, offset, limit, i, page[i].ID, want[i].ID)
					}
				}
			}
		}
	}
}

func testDeleteFailedTask(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	for _, id := range []string{"a", "b", "c", "d"} {
		e.server(project, id, true)
	}
	failed := e.run(resetOf(project, "kp", "a"), kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "x"})
	succeeded := e.run(resetOf(project, "kp", "b"), kps.TaskOutcome{Success: true, PublicKey: "pk"})
	running := e.claim(e.submit(resetOf(project, "kp", "d")).ID)
	ready := e.submit(resetOf(project, "kp", "c"))

	for _, c := range []struct{ project, id string }{
		{otherProject, failed.ID},
		{project, succeeded.ID},
		{project, running.ID},
		{project, newTaskID()},
		{project, "malformed"},
	} {
		wantCode(t, e.s.DeleteFailedTask(e.ctx, c.project, c.id), kps.ErrFailedNotFound)
	}
	wantCode(t, e.s.DeleteFailedTask(e.ctx, project, ready.ID), kps.ErrFailedNotFound)
	e.wantPhase(project, ready.ID, kps.PhaseReady)

	must(t, e.s.DeleteFailedTask(e.ctx, project, failed.ID))
	_, err := e.s.Task(e.ctx, project, failed.ID)
	wantCode(t, err, kps.ErrTaskNotFound)
	wantCode(t, e.s.DeleteFailedTask(e.ctx, project, failed.ID), kps.ErrFailedNotFound)
	e.wantPhase(project, succeeded.ID, kps.PhaseSuccess)
	e.wantPhase(project, running.ID, kps.PhaseRunning)
}

func testDeleteFailedTasks(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.keyPair(otherProject, "kp", kps.ScopeDomain, alice)
	for _, id := range []string{"a", "b", "c"} {
		e.server(project, id, true)
	}
	e.server(otherProject, "x", true)
	e.run(resetOf(project, "kp", "a"), kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "x"})
	e.run(resetOf(project, "kp", "a"), kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "x"})
	ok := e.run(resetOf(project, "kp", "b"), kps.TaskOutcome{Success: true, PublicKey: "pk"})
	foreign := e.run(resetOf(otherProject, "kp", "x"), kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "x"})
	ready := e.submit(resetOf(project, "kp", "c"))

	must(t, e.s.DeleteFailedTasks(e.ctx, project))
	_, total, err := e.listTasks(project, kps.FailedPhases, kps.Page{Limit: 10})
	must(t, err)
	if total != 0 {
		t.Fatalf("%d failed tasks left", total)
	}
	e.wantPhase(project, ok.ID, kps.PhaseSuccess)
	e.wantPhase(project, ready.ID, kps.PhaseReady)
	e.wantPhase(otherProject, foreign.ID, kps.PhaseFailed)
	// Nothing to delete is fine.
	must(t, e.s.DeleteFailedTasks(e.ctx, project))
}

func testPurgeSucceeded(t *testing.T, e *env) {
	const retention = 7 * 24 * time.Hour
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	for _, id := range []string{"a", "b", "c", "d"} {
		e.server(project, id, true)
	}
	old := e.run(resetOf(project, "kp", "a"), kps.TaskOutcome{Success: true, PublicKey: "pk"})
	oldFailed := e.run(resetOf(project, "kp", "b"), kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "x"})
	e.clock.Advance(time.Hour)
	recent := e.run(resetOf(project, "kp", "c"), kps.TaskOutcome{Success: true, PublicKey: "pk"})
	oldReady := e.submit(resetOf(project, "kp", "d"))
	e.clock.Advance(retention) // old is retention+1h old, recent exactly retention

	n, err := e.s.PurgeSucceededTasks(e.ctx, retention)
	must(t, err)
	if n != 1 {
		t.Fatalf("purged %d, want 1", n)
	}
	_, err = e.s.Task(e.ctx, project, old.ID)
	wantCode(t, err, kps.ErrTaskNotFound)
	e.wantPhase(project, recent.ID, kps.PhaseSuccess)
	e.wantPhase(project, oldFailed.ID, kps.PhaseFailed)
	e.wantPhase(project, oldReady.ID, kps.PhaseReady)
	// The binding of a purged task stays.
	if e.binding(project, "a") == nil {
		t.Fatal("purging a task removed its binding")
	}
}

// testConcurrentWorkload runs submitters, workers and readers at once: no call may fail (no
// "database is locked"), and every task ends bound exactly once.
func testConcurrentWorkload(t *testing.T, e *env) {
	const servers, workers, readers = 40, 4, 4
	k := e.keyPair(project, "kp", kps.ScopeDomain, alice)
	for i := range servers {
		e.server(project, fmt.Sprintf("s%02d", i), true)
	}
	var (
		wg, readWG sync.WaitGroup
		errs       = make(chan error, servers+workers+readers)
		stop       = make(chan struct{})
		finished   = make(chan struct{}, servers)
	)
	for i := range servers {
		wg.Go(func() {
			if _, err := e.s.SubmitTask(e.ctx, resetOf(project, "kp", fmt.Sprintf("s%02d", i)), service.AdmitTask); err != nil {
				errs <- fmt.Errorf("submit: %w", err)
			}
		})
	}
	for w := range workers {
		wg.Go(func() {
			owner := fmt.Sprintf("worker-%d", w)
			for {
				select {
				case <-stop:
					return
				default:
				}
				task, err := e.s.ClaimTask(e.ctx, owner, lease)
				if err != nil {
					errs <- fmt.Errorf("claim: %w", err)
					return
				}
				if task == nil {
					time.Sleep(time.Millisecond) // poll, as a runner does
					continue
				}
				if err := e.s.ExtendLease(e.ctx, task, lease); err != nil {
					errs <- fmt.Errorf("extend: %w", err)
					return
				}
				if err := e.s.FinishTask(e.ctx, task, kps.TaskOutcome{Success: true, PublicKey: k.PublicKey}); err != nil {
					errs <- fmt.Errorf("finish: %w", err)
					return
				}
				finished <- struct{}{}
			}
		})
	}
	for range readers {
		readWG.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := e.listTasks(project, kps.RunningPhases, kps.Page{Limit: 100}); err != nil {
					errs <- fmt.Errorf("list tasks: %w", err)
					return
				}
				if _, _, err := e.s.ListServers(e.ctx, project, kps.Page{Limit: 100}); err != nil {
					errs <- fmt.Errorf("list servers: %w", err)
					return
				}
			}
		})
	}
	deadline := time.After(time.Minute)
	for range servers {
		select {
		case <-finished:
		case err := <-errs:
			close(stop)
			t.Fatal(err)
		case <-deadline:
			close(stop)
			t.Fatal("the workload did not finish within a minute")
		}
	}
	close(stop)
	wg.Wait()
	readWG.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, total, err := e.s.ListServers(e.ctx, project, kps.Page{Limit: 100})
	must(t, err)
	for _, s := range list {
		if s.KeyPairName != "kp" {
			t.Errorf("server %s not bound", s.ID)
		}
	}
	if total != servers {
		t.Fatalf("%d servers", total)
	}
}

// testUnconfirmedKeys: the keys of binds that ran and failed since the server's last success,
// which a task interrupted after its write may have left on the host.
func testUnconfirmedKeys(t *testing.T, e *env) {
	k1 := e.keyPair(project, "kp1", kps.ScopeDomain, alice)
	k2 := e.keyPair(project, "kp2", kps.ScopeDomain, alice)
	k3 := e.keyPair(project, "kp3", kps.ScopeDomain, alice)
	e.keyPair(project, "kp4", kps.ScopeDomain, alice)
	e.server(project, "a", true)
	e.server(project, "b", true)
	unconfirmed := func(projectID, server string, want ...string) {
		t.Helper()
		got, disabled, err := e.s.UnconfirmedKeys(e.ctx, projectID, server)
		must(t, err)
		slices.Sort(want)
		if !slices.Equal(got, want) || disabled {
			t.Fatalf("UnconfirmedKeys(%s) = %q %v, want %q false", server, got, disabled, want)
		}
	}
	unconfirmed(project, "a")
	failed := func(code string) kps.TaskOutcome { return kps.TaskOutcome{ErrorCode: code, ErrorMsg: "x"} }
	// Binds that reached the write of their key may have left it, whatever their code: an
	// interruption, a write that failed, a cut write whose check over a new connection could
	// not log in.
	e.runMarked(resetOf(project, "kp1", "a"), failed(kps.TaskInterrupted), kps.WriteKey)
	e.runMarked(replaceOf(project, "kp2", "a"), failed(kps.TaskWriteFailed), kps.WriteKey)
	e.runMarked(replaceOf(project, "kp3", "a"), failed(kps.TaskUnreachable), kps.WriteKey)
	// Binds that failed before it never wrote, whatever their code: a refused login (the
	// attack of docs/SECURITY.md §3.1: a key someone else put on the host, imported and bound
	// with a wrong password), an interruption before the write, a key the host already held.
	for _, code := range []string{kps.TaskAuthFailed, kps.TaskUnreachable, kps.TaskHostKeyMismatch,
		kps.TaskPrivileges, kps.TaskNoUser, kps.TaskWriteFailed, kps.TaskInterrupted, kps.TaskTimeout} {
		e.runMarked(replaceOf(project, "kp4", "a"), failed(code))
	}
	// A task failed as soon as it was claimed (a lost caller credential) never touched the host.
	e.run(resetOf(project, "kp4", "a"), failed(kps.TaskInterrupted))
	unconfirmed(project, "a", k1.PublicKey, k2.PublicKey, k3.PublicKey)
	unconfirmed(project, "b")
	unconfirmed(otherProject, "a")

	// A success settles the host: earlier failures no longer count, later ones do.
	e.run(resetOf(project, "kp3", "a"), kps.TaskOutcome{Success: true, PublicKey: k3.PublicKey})
	unconfirmed(project, "a")
	e.runMarked(resetOf(project, "kp1", "a"), failed(kps.TaskInterrupted), kps.WriteKey)
	e.runMarked(resetOf(project, "kp2", "a"), failed(kps.TaskAuthFailed))
	unconfirmed(project, "a", k1.PublicKey)
	e.run(unbindOf(project, "a", false), kps.TaskOutcome{Success: true})
	unconfirmed(project, "a")

	// A bind that failed after reaching its configuration change may have disabled password
	// login, whatever its code (a KPS.6606 may come after the reload); one that failed before
	// it did not, even interrupted. A later bind without disable_password does not settle
	// that; an unbind or a bind with disable_password does.
	maybeDisabled := func(want bool) {
		t.Helper()
		if _, got, err := e.s.UnconfirmedKeys(e.ctx, project, "a"); err != nil || got != want {
			t.Fatalf("password maybe disabled = %v (%v), want %v", got, err, want)
		}
	}
	disabling := func(s kps.TaskSubmission) kps.TaskSubmission { s.DisablePassword = true; return s }
	e.runMarked(disabling(resetOf(project, "kp1", "a")), failed(kps.TaskPrivileges))
	e.runMarked(disabling(resetOf(project, "kp1", "a")), failed(kps.TaskInterrupted), kps.WriteKey)
	e.runMarked(resetOf(project, "kp2", "a"), failed(kps.TaskInterrupted))
	maybeDisabled(false)
	for _, code := range []string{kps.TaskInterrupted, kps.TaskTimeout, kps.TaskRemoteFailed, kps.TaskSSHDConfig} {
		e.runMarked(disabling(replaceOf(project, "kp2", "a")), failed(code), kps.WriteConfig)
		maybeDisabled(true)
		e.run(resetOf(project, "kp3", "a"), kps.TaskOutcome{Success: true, PublicKey: k3.PublicKey})
		maybeDisabled(true)
		e.run(unbindOf(project, "a", false), kps.TaskOutcome{Success: true})
		maybeDisabled(false)
	}
	e.runMarked(disabling(resetOf(project, "kp1", "a")), failed(kps.TaskInterrupted), kps.WriteKey, kps.WriteConfig)
	maybeDisabled(true)
	e.run(disabling(resetOf(project, "kp3", "a")), kps.TaskOutcome{Success: true, PublicKey: k3.PublicKey, PasswordDisabled: true})
	maybeDisabled(false)
}
