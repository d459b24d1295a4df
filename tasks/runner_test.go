package tasks

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/openkps/kps"
	"github.com/openkps/kps/secrets"
	"github.com/openkps/kps/service"
	"github.com/openkps/kps/store"
)

// executorFunc performs host jobs in process. It stands in for SSH only where a test needs a
// job to block, fail or succeed on cue; the store underneath is the real SQLite engine.
type executorFunc func(ctx context.Context, job kps.HostJob) (kps.HostResult, error)

func (f executorFunc) Execute(ctx context.Context, job kps.HostJob) (kps.HostResult, error) {
	return f(ctx, job)
}

type fixture struct {
	db      *store.DB
	path    string // the SQLite file
	sealer  *secrets.Sealer
	project string
	user    string
}

// setup opens a real SQLite store with a project, a key pair and two servers.
func setup(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kps.db")
	db, err := store.OpenSQLite(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ring, err := secrets.NewKeyRing(map[uint32][]byte{1: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Bootstrap(ctx, kps.Bootstrap{DomainName: "Default", ProjectName: "local-1", AdminName: "admin", AdminPasswordHash: "x"}); err != nil {
		t.Fatal(err)
	}
	d, _ := db.DomainByName(ctx, "Default")
	p, _ := db.ProjectByName(ctx, d.ID, "local-1")
	u, _ := db.UserByName(ctx, d.ID, "admin")
	f := &fixture{db: db, path: path, sealer: secrets.NewSealer(ring), project: p.ID, user: u.ID}
	if err := db.CreateKeyPair(ctx, &kps.KeyPair{ProjectID: p.ID, Name: "k", Type: kps.TypeSSH, Scope: kps.ScopeUser, UserID: u.ID,
		PublicKey: "ssh-ed25519 AAAA k", Fingerprint: "00", Algorithm: "ED25519"}, kps.KeyPairQuota{}); err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"s1", "s2"} {
		if err := db.CreateServer(ctx, &kps.Server{ProjectID: p.ID, ID: id, Name: id, Address: "127.0.0.1", Port: 22 + i, User: "root", SSHDConfig: kps.DefaultSSHDConfig}, 0); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// submit queues a REPLACE on server with a caller credential held by r.
func (f *fixture) submit(t *testing.T, r *Runner, server string) string {
	t.Helper()
	id := uuid.NewString()
	holder := r.Hold(id, kps.Credential{Type: kps.CredentialPassword, Key: "pw"})
	if _, err := f.db.SubmitTask(context.Background(), kps.TaskSubmission{ID: id, ProjectID: f.project, UserID: f.user,
		Operation: kps.OpReplace, KeyPairName: "k", ServerID: server, CallerAuth: true, Holder: holder}, service.AdmitTask); err != nil {
		t.Fatal(err)
	}
	r.Wake()
	return id
}

// wait polls a task until it is terminal.
func (f *fixture) wait(t *testing.T, id string) *kps.Task {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		task, err := f.db.Task(context.Background(), f.project, id)
		if err != nil {
			t.Fatal(err)
		}
		if !task.Active() {
			return task
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("task %s did not end", id)
	return nil
}

func start(t *testing.T, f *fixture, ex kps.HostExecutor, cfg Config) *Runner {
	t.Helper()
	r := New(f.db, service.NewPlanner(f.db, f.sealer), ex, nil, cfg)
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.Stop(ctx)
	})
	return r
}

func TestHeartbeatKeepsLongJobs(t *testing.T) {
	t.Parallel()
	f := setup(t)
	r := start(t, f, executorFunc(func(ctx context.Context, job kps.HostJob) (kps.HostResult, error) {
		if job.Login.Key != "pw" || job.InstallKey != "ssh-ed25519 AAAA k" || job.Address != "127.0.0.1" {
			return kps.HostResult{}, errors.New("job not prepared")
		}
		select { // over two leases long: only heartbeats keep the task
		case <-time.After(4 * time.Second):
			return kps.HostResult{PasswordDisabled: true}, nil
		case <-ctx.Done():
			return kps.HostResult{}, ctx.Err()
		}
	}), Config{Workers: 1, Lease: 1500 * time.Millisecond, Poll: 10 * time.Millisecond})
	task := f.wait(t, f.submit(t, r, "s1"))
	if task.Status() != "SUCCESS_REPLACE" {
		t.Fatalf("status %s (%s %s)", task.Status(), task.ErrorCode, task.ErrorMsg)
	}
	b, _ := f.db.Binding(context.Background(), f.project, "s1")
	if b == nil || b.KeyPairName != "k" || !b.PasswordDisabled {
		t.Fatalf("binding %+v", b)
	}
}

// TestLostLeaseNeverSucceeds: while a job runs, another instance declares the task dead (as a
// sole instance does at start). The job is cancelled and its success is never recorded.
func TestLostLeaseNeverSucceeds(t *testing.T) {
	t.Parallel()
	f := setup(t)
	running := make(chan struct{})
	var cancelled atomic.Bool
	r := start(t, f, executorFunc(func(ctx context.Context, job kps.HostJob) (kps.HostResult, error) {
		close(running)
		<-ctx.Done()
		cancelled.Store(true)
		return kps.HostResult{}, nil // claims success anyway
	}), Config{Workers: 1, Lease: 300 * time.Millisecond, Poll: 10 * time.Millisecond})
	id := f.submit(t, r, "s1")
	<-running
	if n, err := f.db.FailExpiredTasks(context.Background(), true); err != nil || n != 1 {
		t.Fatalf("FailExpiredTasks: %d %v", n, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !cancelled.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !cancelled.Load() {
		t.Fatal("the job was not cancelled after its lease was lost")
	}
	time.Sleep(100 * time.Millisecond) // give a wrong FinishTask the chance to land
	task := f.wait(t, id)
	if task.Status() != "FAILED_REPLACE" || task.ErrorCode != kps.TaskInterrupted {
		t.Fatalf("status %s %s", task.Status(), task.ErrorCode)
	}
	if b, _ := f.db.Binding(context.Background(), f.project, "s1"); b != nil {
		t.Fatalf("a lost lease wrote a binding: %+v", b)
	}
}

func TestFailures(t *testing.T) {
	t.Parallel()
	f := setup(t)
	r := start(t, f, executorFunc(func(ctx context.Context, job kps.HostJob) (kps.HostResult, error) {
		if job.Port == 23 { // server s2
			<-ctx.Done() // outlives the task deadline
			return kps.HostResult{}, ctx.Err()
		}
		return kps.HostResult{}, kps.Errorf(kps.TaskAuthFailed, "SSH authentication as 'root' on 127.0.0.1:22 failed.")
	}), Config{Workers: 2, TaskTimeout: 300 * time.Millisecond, Poll: 10 * time.Millisecond})
	auth := f.wait(t, f.submit(t, r, "s1"))
	if auth.ErrorCode != kps.TaskAuthFailed || auth.ErrorMsg == "" {
		t.Fatalf("auth failure recorded as %s %q", auth.ErrorCode, auth.ErrorMsg)
	}
	timeout := f.wait(t, f.submit(t, r, "s2"))
	if timeout.ErrorCode != kps.TaskTimeout {
		t.Fatalf("deadline recorded as %s %q", timeout.ErrorCode, timeout.ErrorMsg)
	}
}

// TestCredentialLostWithRestart: a REPLACE queued by another process run has no credential
// in this one's memory; it fails with KPS.6609 without touching the host.
func TestCredentialLostWithRestart(t *testing.T) {
	t.Parallel()
	f := setup(t)
	earlier := New(f.db, service.NewPlanner(f.db, f.sealer), nil, nil, Config{})
	id := f.submit(t, earlier, "s1")
	var ran atomic.Bool
	start(t, f, executorFunc(func(ctx context.Context, job kps.HostJob) (kps.HostResult, error) {
		ran.Store(true)
		return kps.HostResult{}, nil
	}), Config{Workers: 1, Poll: 10 * time.Millisecond})
	task := f.wait(t, id)
	if task.ErrorCode != kps.TaskInterrupted || ran.Load() {
		t.Fatalf("status %s %s, executor ran: %v", task.Status(), task.ErrorCode, ran.Load())
	}
}

// TestStopInterruptsJobs: a job still running when the shutdown grace ends is cancelled and
// its task ends FAILED with KPS.6609, never left RUNNING.
func TestStopInterruptsJobs(t *testing.T) {
	t.Parallel()
	f := setup(t)
	running := make(chan struct{})
	r := New(f.db, service.NewPlanner(f.db, f.sealer), executorFunc(func(ctx context.Context, job kps.HostJob) (kps.HostResult, error) {
		close(running)
		<-ctx.Done()
		return kps.HostResult{}, ctx.Err()
	}), nil, Config{Workers: 1, Poll: 10 * time.Millisecond})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	id := f.submit(t, r, "s1")
	<-running
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r.Stop(ctx)
	task, err := f.db.Task(context.Background(), f.project, id)
	if err != nil || task.Status() != "FAILED_REPLACE" || task.ErrorCode != kps.TaskInterrupted {
		t.Fatalf("after stop: %+v %v", task, err)
	}
}

// TestHeldTaskWaitsForItsHolder: two replicas on one store. A task whose caller credential
// replica A holds is not claimed by idle replica B while A lives, however long A's queue
// keeps it waiting (A's heartbeat outlives several leases); A runs it with the credential.
func TestHeldTaskWaitsForItsHolder(t *testing.T) {
	t.Parallel()
	f := setup(t)
	release := make(chan struct{})
	var ranOnA, ranOnB atomic.Int32
	// A lease of 3 s: A heartbeats every third of it, and a heartbeat delayed past the lease
	// (a loaded machine under the race detector delayed one past 1 s) would rightly let B in.
	cfg := Config{Workers: 1, Lease: 3 * time.Second, Poll: 10 * time.Millisecond}
	a := start(t, f, executorFunc(func(ctx context.Context, job kps.HostJob) (kps.HostResult, error) {
		if job.Port == 22 { // s1: keeps A's only worker busy
			select {
			case <-release:
			case <-ctx.Done():
				return kps.HostResult{}, ctx.Err()
			}
		} else if job.Login.Key != "pw" {
			return kps.HostResult{}, errors.New("the held credential did not reach the job")
		}
		ranOnA.Add(1)
		return kps.HostResult{}, nil
	}), cfg)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	first := f.submit(t, a, "s1")
	deadline := time.Now().Add(5 * time.Second)
	for f.task(t, first).Phase != kps.PhaseRunning && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	held := f.submit(t, a, "s2")
	start(t, f, executorFunc(func(ctx context.Context, job kps.HostJob) (kps.HostResult, error) {
		ranOnB.Add(1)
		return kps.HostResult{}, nil
	}), cfg)
	time.Sleep(5 * cfg.Lease / 2) // past the ttl of the heartbeat A sent at its start
	if got := f.task(t, held); got.Phase != kps.PhaseReady || ranOnB.Load() != 0 {
		t.Fatalf("held task is %s (%s) under %s, B ran %d jobs, A ran %d, first %+v: B took what A holds", got.Phase, got.ErrorCode, got.LeaseOwner, ranOnB.Load(), ranOnA.Load(), f.task(t, first))
	}
	unblock()
	if task := f.wait(t, held); task.Status() != "SUCCESS_REPLACE" || task.LeaseOwner != a.owner {
		t.Fatalf("held task ended %s (%s) under %s, want SUCCESS under A %s", task.Status(), task.ErrorCode, task.LeaseOwner, a.owner)
	}
	if ranOnA.Load() != 2 || ranOnB.Load() != 0 {
		t.Fatalf("A ran %d jobs, B ran %d", ranOnA.Load(), ranOnB.Load())
	}
}

// TestHeldTaskFailedOnceHolderDies: the holder stops heartbeating (it was SIGKILLed); once its
// heartbeat has expired, another replica claims the task and fails it with KPS.6609 without
// touching the host. A holder that stops cleanly lets its tasks go at once.
func TestHeldTaskFailedOnceHolderDies(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	const lease = 300 * time.Millisecond
	// The dead replica: it heartbeated once, then vanished without a word.
	dead := New(f.db, service.NewPlanner(f.db, f.sealer), nil, nil, Config{Lease: lease})
	if err := f.db.HeartbeatReplica(ctx, dead.owner, lease); err != nil {
		t.Fatal(err)
	}
	submitted := time.Now()
	id := f.submit(t, dead, "s1")
	var ran atomic.Bool
	start(t, f, executorFunc(func(ctx context.Context, job kps.HostJob) (kps.HostResult, error) {
		ran.Store(true)
		return kps.HostResult{}, nil
	}), Config{Workers: 1, Lease: lease, Poll: 10 * time.Millisecond})
	task := f.wait(t, id)
	if task.ErrorCode != kps.TaskInterrupted || ran.Load() {
		t.Fatalf("status %s %s, executor ran: %v", task.Status(), task.ErrorCode, ran.Load())
	}
	if waited := task.Updated.Sub(submitted); waited < lease-20*time.Millisecond {
		t.Fatalf("failed %v after submission, before the holder's heartbeat (%v) expired", waited, lease)
	}

	// A clean stop: the holder's tasks fail without waiting for its heartbeat (an hour) to
	// expire. Its only worker is busy, so the held task is still queued when it stops.
	stopping := New(f.db, service.NewPlanner(f.db, f.sealer), executorFunc(func(ctx context.Context, job kps.HostJob) (kps.HostResult, error) {
		<-ctx.Done()
		return kps.HostResult{}, ctx.Err()
	}), nil, Config{Workers: 1, Lease: time.Hour, Poll: 10 * time.Millisecond})
	if err := stopping.Start(ctx); err != nil {
		t.Fatal(err)
	}
	busy := f.submit(t, stopping, "s1")
	for deadline := time.Now().Add(5 * time.Second); f.task(t, busy).Phase != kps.PhaseRunning; {
		if time.Now().After(deadline) {
			t.Fatal("the stopping replica did not claim its first task")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopped := f.submit(t, stopping, "s2")
	sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	stopping.Stop(sctx)
	if task := f.wait(t, stopped); task.ErrorCode != kps.TaskInterrupted || ran.Load() {
		t.Fatalf("task of a stopped holder: %s %s, executor ran: %v", task.Status(), task.ErrorCode, ran.Load())
	}
}

func (f *fixture) task(t *testing.T, id string) *kps.Task {
	t.Helper()
	task, err := f.db.Task(context.Background(), f.project, id)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

// TestOneWakeStartsEveryWaitingTask: tasks submitted in one transaction with a single Wake
// (as batch-associate does) all start at once on idle workers, each claim waking the next
// worker, without waiting for the idle poll (an hour here) or for a running task to end.
func TestOneWakeStartsEveryWaitingTask(t *testing.T) {
	t.Parallel()
	f := setup(t)
	const n = 6
	ctx := context.Background()
	for i := 3; i <= n; i++ {
		id := "s" + string(rune('0'+i))
		if err := f.db.CreateServer(ctx, &kps.Server{ProjectID: f.project, ID: id, Name: id, Address: "127.0.0.1", Port: 22 + i, User: "root", SSHDConfig: kps.DefaultSSHDConfig}, 0); err != nil {
			t.Fatal(err)
		}
	}
	var started atomic.Int32
	all := make(chan struct{})
	r := start(t, f, executorFunc(func(ctx context.Context, job kps.HostJob) (kps.HostResult, error) {
		if started.Add(1) == n {
			close(all)
		}
		select { // every job runs until all have started
		case <-all:
			return kps.HostResult{}, nil
		case <-ctx.Done():
			return kps.HostResult{}, ctx.Err()
		}
	}), Config{Workers: n + 2, Poll: time.Hour})
	time.Sleep(100 * time.Millisecond) // the workers are idle, waiting for a wake
	subs := make([]kps.TaskSubmission, n)
	for i := range subs {
		id := uuid.NewString()
		subs[i] = kps.TaskSubmission{ID: id, ProjectID: f.project, UserID: f.user, Operation: kps.OpReplace, KeyPairName: "k",
			ServerID: "s" + string(rune('1'+i)), CallerAuth: true, Holder: r.Hold(id, kps.Credential{Type: kps.CredentialPassword, Key: "pw"}), Batch: true}
	}
	_, refused, err := f.db.SubmitTasks(ctx, subs, service.AdmitTask)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range refused {
		if e != nil {
			t.Fatalf("item %d refused: %v", i, e)
		}
	}
	r.Wake()
	select {
	case <-all:
	case <-time.After(20 * time.Second):
		t.Fatalf("%d of %d tasks started after one wake", started.Load(), n)
	}
	for _, s := range subs {
		if task := f.wait(t, s.ID); task.Status() != "SUCCESS_REPLACE" {
			t.Fatalf("status %s (%s %s)", task.Status(), task.ErrorCode, task.ErrorMsg)
		}
	}
}

// TestTaskLogsInWithWhatWasDecided: the worker logs in with exactly the login the submission
// recorded (docs/SECURITY.md §1–2) and nothing else: a service credential stored after a task
// chose the hosted key is not used, a hosted key is no fallback for a service credential
// removed since, and a task queued before logins were recorded fails with KPS.6609. The
// refused tasks never reach the executor.
func TestTaskLogsInWithWhatWasDecided(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	seal := func(c kps.Credential, server string) []byte {
		t.Helper()
		plain, _ := json.Marshal(c)
		sealed, err := f.sealer.Seal(plain, kps.CredentialAAD(f.project, server))
		if err != nil {
			t.Fatal(err)
		}
		return sealed
	}
	for _, id := range []string{"svc", "hosted", "legacy"} {
		if err := f.db.CreateServer(ctx, &kps.Server{ProjectID: f.project, ID: id, Name: id, Address: "127.0.0.1", Port: 22,
			User: "root", SSHDConfig: kps.DefaultSSHDConfig, ReachByAdmin: true}, 0); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	logins := map[string]kps.Credential{} // task ID → the login the executor was given
	run := func() *Runner {
		return start(t, f, executorFunc(func(ctx context.Context, job kps.HostJob) (kps.HostResult, error) {
			mu.Lock()
			defer mu.Unlock()
			logins[job.TaskID] = job.Login
			return kps.HostResult{}, nil
		}), Config{Workers: 1, Poll: 10 * time.Millisecond})
	}
	// Bind k to "svc" and "hosted" with the caller's credential, then host k's private key.
	r := run()
	for _, id := range []string{"svc", "hosted"} {
		if task := f.wait(t, f.submit(t, r, id)); task.Phase != kps.PhaseSuccess {
			t.Fatalf("bind %s: %s %s", id, task.Status(), task.ErrorMsg)
		}
	}
	r.Stop(ctx)
	sealedKey, _ := f.sealer.Seal([]byte("hosted-private-key"), kps.PrivateKeyAAD(f.project, "k"))
	if err := f.db.SetPrivateKey(ctx, f.project, "k", f.user, sealedKey); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.UpdateServer(ctx, f.project, "svc", kps.ServerUpdate{SetCredential: true,
		Credential: seal(kps.Credential{Type: kps.CredentialPassword, Key: "service-pw"}, "svc")}); err != nil {
		t.Fatal(err)
	}
	reset := func(server string) *kps.Task {
		t.Helper()
		task, err := f.db.SubmitTask(ctx, kps.TaskSubmission{ID: uuid.NewString(), ProjectID: f.project, UserID: f.user,
			Operation: kps.OpReset, KeyPairName: "k", ServerID: server, MayExport: true}, service.AdmitTask)
		if err != nil {
			t.Fatal(err)
		}
		return task
	}
	if _, err := f.db.UpdateServer(ctx, f.project, "legacy", kps.ServerUpdate{SetCredential: true,
		Credential: seal(kps.Credential{Type: kps.CredentialPassword, Key: "legacy-pw"}, "legacy")}); err != nil {
		t.Fatal(err)
	}
	svc, hosted, legacy := reset("svc"), reset("hosted"), reset("legacy")
	// The legacy task as a service before migration 0009 queued it: no login recorded.
	raw, err := sql.Open("sqlite", f.path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.ExecContext(ctx, `UPDATE tasks SET login_source = '' WHERE id = ?`, legacy.ID); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if svc.Login != kps.LoginService || hosted.Login != kps.LoginHosted || hosted.LoginKeyPair != "k" {
		t.Fatalf("logins decided: %s, %s %s", svc.Login, hosted.Login, hosted.LoginKeyPair)
	}
	// After the submissions: the service credential goes, another arrives where the hosted
	// key was chosen.
	if _, err := f.db.UpdateServer(ctx, f.project, "svc", kps.ServerUpdate{SetCredential: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.UpdateServer(ctx, f.project, "hosted", kps.ServerUpdate{SetCredential: true,
		Credential: seal(kps.Credential{Type: kps.CredentialPassword, Key: "late-pw"}, "hosted")}); err != nil {
		t.Fatal(err)
	}
	run()
	if task := f.wait(t, svc.ID); task.ErrorCode != kps.TaskAuthFailed {
		t.Errorf("service credential removed: %s %s %q", task.Status(), task.ErrorCode, task.ErrorMsg)
	}
	if task := f.wait(t, hosted.ID); task.Phase != kps.PhaseSuccess {
		t.Errorf("hosted key: %s %s %q", task.Status(), task.ErrorCode, task.ErrorMsg)
	}
	if task := f.wait(t, legacy.ID); task.ErrorCode != kps.TaskInterrupted {
		t.Errorf("task queued before logins were recorded: %s %s %q", task.Status(), task.ErrorCode, task.ErrorMsg)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range []string{svc.ID, legacy.ID} {
		if got, ran := logins[id]; ran {
			t.Errorf("task %s logged in with %v", id, got)
		}
	}
	if got := logins[hosted.ID]; got.Type != kps.CredentialKeyPair || got.Key != "hosted-private-key" {
		t.Errorf("the hosted-key task logged in with %v, not the hosted key it was submitted with", got)
	}
}

// TestOnlyAnnouncedWritesAreUndone: a bind that announced its write (HostJob.BeforeWrite) and
// then failed counts as having maybe written its key, and the next task removes that key; a
// bind refused before (a wrong password) does not, whatever key it carried: the next task
// leaves it alone (docs/SECURITY.md §3.1). A worker whose lease is lost cannot announce.
func TestOnlyAnnouncedWritesAreUndone(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	for _, name := range []string{"glass", "written"} {
		if err := f.db.CreateKeyPair(ctx, &kps.KeyPair{ProjectID: f.project, Name: name, Type: kps.TypeSSH, Scope: kps.ScopeUser,
			UserID: f.user, PublicKey: "ssh-ed25519 AAAA" + name, Fingerprint: name, Algorithm: "ED25519"}, kps.KeyPairQuota{}); err != nil {
			t.Fatal(err)
		}
	}
	jobs := make(chan kps.HostJob, 10)
	r := start(t, f, executorFunc(func(ctx context.Context, job kps.HostJob) (kps.HostResult, error) {
		jobs <- job
		switch job.InstallKey {
		case "ssh-ed25519 AAAAglass": // refused at login: never announces
			return kps.HostResult{}, kps.Errorf(kps.TaskAuthFailed, "SSH authentication failed.")
		case "ssh-ed25519 AAAAwritten": // announced, then cut
			if err := job.BeforeWrite(ctx, kps.WriteKey); err != nil {
				return kps.HostResult{}, err
			}
			return kps.HostResult{}, kps.Errorf(kps.TaskRemoteFailed, "the SSH session ended unexpectedly")
		}
		return kps.HostResult{}, nil
	}), Config{Workers: 1, Poll: 10 * time.Millisecond})
	bind := func(keyPair string) *kps.Task {
		t.Helper()
		id := uuid.NewString()
		holder := r.Hold(id, kps.Credential{Type: kps.CredentialPassword, Key: "pw"})
		if _, err := f.db.SubmitTask(ctx, kps.TaskSubmission{ID: id, ProjectID: f.project, UserID: f.user,
			Operation: kps.OpReplace, KeyPairName: keyPair, ServerID: "s1", CallerAuth: true, Holder: holder}, service.AdmitTask); err != nil {
			t.Fatal(err)
		}
		r.Wake()
		return f.wait(t, id)
	}
	if task := bind("glass"); task.ErrorCode != kps.TaskAuthFailed || task.KeyWriteReached {
		t.Fatalf("refused bind: %+v", task)
	}
	<-jobs
	if task := bind("written"); task.ErrorCode != kps.TaskRemoteFailed || !task.KeyWriteReached {
		t.Fatalf("announced bind: %+v", task)
	}
	<-jobs
	bind("k")
	next := <-jobs
	if !slices.Contains(next.RemoveKeys, "ssh-ed25519 AAAAwritten") || slices.Contains(next.RemoveKeys, "ssh-ed25519 AAAAglass") {
		t.Fatalf("the next task removes %q: want the announced bind's key, not the refused one's", next.RemoveKeys)
	}
}

// TestReserveWorkerStartsAnIdleProject: project A's tasks hold every worker (hosts that
// stall); project B's task starts at once on a reserve worker, while A's queued tasks wait for
// a worker. Without reserve workers B waits behind A.
func TestReserveWorkerStartsAnIdleProject(t *testing.T) {
	t.Parallel()
	for _, reserve := range []int{2, -1} {
		f := setup(t)
		ctx := context.Background()
		const other = "b0b00000000000000000000000000002"
		if err := f.db.CreateKeyPair(ctx, &kps.KeyPair{ProjectID: other, Name: "k", Type: kps.TypeSSH, Scope: kps.ScopeUser,
			UserID: f.user, PublicKey: "ssh-ed25519 AAAA k", Fingerprint: "00", Algorithm: "ED25519"}, kps.KeyPairQuota{}); err != nil {
			t.Fatal(err)
		}
		for i, id := range []string{"s3", "s4"} {
			if err := f.db.CreateServer(ctx, &kps.Server{ProjectID: f.project, ID: id, Name: id, Address: "127.0.0.1", Port: 30 + i, User: "root", SSHDConfig: kps.DefaultSSHDConfig}, 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.db.CreateServer(ctx, &kps.Server{ProjectID: other, ID: "b1", Name: "b1", Address: "127.0.0.1", Port: 40, User: "root", SSHDConfig: kps.DefaultSSHDConfig}, 0); err != nil {
			t.Fatal(err)
		}
		stall := make(chan struct{})
		var running atomic.Int32
		r := start(t, f, executorFunc(func(ctx context.Context, job kps.HostJob) (kps.HostResult, error) {
			if job.Port == 40 { // project B's host answers
				return kps.HostResult{}, nil
			}
			running.Add(1)
			defer running.Add(-1)
			select {
			case <-stall:
				return kps.HostResult{}, nil
			case <-ctx.Done():
				return kps.HostResult{}, ctx.Err()
			}
		}), Config{Workers: 2, ReserveWorkers: reserve, Poll: 20 * time.Millisecond})
		var a []string
		for _, s := range []string{"s1", "s2", "s3", "s4"} {
			a = append(a, f.submit(t, r, s))
		}
		deadline := time.Now().Add(10 * time.Second)
		for running.Load() < 2 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		id := uuid.NewString()
		holder := r.Hold(id, kps.Credential{Type: kps.CredentialPassword, Key: "pw"})
		if _, err := f.db.SubmitTask(ctx, kps.TaskSubmission{ID: id, ProjectID: other, UserID: f.user,
			Operation: kps.OpReplace, KeyPairName: "k", ServerID: "b1", CallerAuth: true, Holder: holder}, service.AdmitTask); err != nil {
			t.Fatal(err)
		}
		r.Wake()
		time.Sleep(500 * time.Millisecond)
		b, err := f.db.Task(ctx, other, id)
		if err != nil {
			t.Fatal(err)
		}
		if reserve > 0 && b.Phase != kps.PhaseSuccess {
			t.Fatalf("reserve %d: B's task is %s while A holds the workers", reserve, b.Status())
		}
		if reserve < 0 && b.Phase != kps.PhaseReady {
			t.Fatalf("without reserve workers B's task is %s, want READY behind A", b.Status())
		}
		// A's queued tasks never ran on the reserve.
		if n := running.Load(); n != 2 {
			t.Fatalf("reserve %d: %d of A's tasks run, want 2 (the workers)", reserve, n)
		}
		for _, id := range a[2:] {
			if task := f.task(t, id); task.Phase != kps.PhaseReady {
				t.Fatalf("reserve %d: A's queued task is %s", reserve, task.Status())
			}
		}
		close(stall)
		for _, id := range a {
			if task := f.wait(t, id); task.Phase != kps.PhaseSuccess {
				t.Fatalf("reserve %d: %s", reserve, task.Status())
			}
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if b, err := f.db.Task(ctx, other, id); err != nil || b.Phase == kps.PhaseSuccess {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("reserve %d: B's task is %s once A's ended", reserve, b.Status())
			}
		}
	}
}

// undoneClaims is the real store whose pending claims are reported undone (as when their
// SQLite commit group is rolled back: a full disk, an I/O error). The claim itself is made, so
// the task stays RUNNING under it: what the test looks at is what the runner does.
type undoneClaims struct{ *store.DB }

func (s undoneClaims) ClaimTaskPending(ctx context.Context, owner string, lease time.Duration) (*kps.Task, func() error, error) {
	t, committed, err := s.DB.ClaimTaskPending(ctx, owner, lease)
	if t != nil {
		if cerr := committed(); cerr != nil {
			return nil, nil, cerr
		}
		committed = func() error { return errors.New("the commit group was rolled back") }
	}
	return t, committed, err
}

// TestUndoneClaimChangesNothing (issue 18): a worker whose claim was not committed stops at
// AfterLogin, before the host may change, records no outcome (the task is not its own), and
// keeps the caller's credential for the task's next claim.
func TestUndoneClaimChangesNothing(t *testing.T) {
	t.Parallel()
	f := setup(t)
	stopped := make(chan error, 1)
	var wrote atomic.Bool
	ex := executorFunc(func(ctx context.Context, job kps.HostJob) (kps.HostResult, error) {
		if job.AfterLogin == nil {
			stopped <- errors.New("the job has no AfterLogin")
			return kps.HostResult{}, nil
		}
		if err := job.AfterLogin(ctx); err != nil { // as sshhost does once logged in
			stopped <- err
			return kps.HostResult{}, err
		}
		wrote.Store(true)
		stopped <- nil
		return kps.HostResult{}, nil
	})
	r := New(undoneClaims{f.db}, service.NewPlanner(f.db, f.sealer), ex, nil,
		Config{Workers: 1, ReserveWorkers: -1, Poll: time.Hour})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	id := f.submit(t, r, "s1")
	var err error
	select {
	case err = <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("the task never ran")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Before Stop, which forgets every credential.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) { // poll interval
		if _, held := r.vault.Load(id); held {
			break
		}
		if time.Now().After(deadline) {
			t.Error("the caller's credential was not kept for the task's next claim")
			break
		}
	}
	r.Stop(ctx) // waits for the outcome the worker would have recorded
	if kps.ErrorCode(err) != kps.TaskInterrupted || wrote.Load() {
		t.Fatalf("the job went on past AfterLogin (%v) for a claim that was not committed", err)
	}
	if task := f.task(t, id); task.Phase != kps.PhaseRunning || task.ErrorCode != "" {
		t.Fatalf("an outcome was recorded for a claim that was not committed: %+v", task)
	}
	if b, _ := f.db.Binding(context.Background(), f.project, "s1"); b != nil {
		t.Fatalf("a binding was written: %+v", b)
	}
}
