package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/service"
)

// groupTable is a table of its own for the group commit tests.
func groupTable(t *testing.T, db *DB) {
	t.Helper()
	tx, err := db.beginWrite(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.exec(t.Context(), `CREATE TABLE gc (k TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func insert(ctx context.Context, db *DB, k string, commit bool) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.exec(ctx, `INSERT INTO gc (k) VALUES (?)`, k); err != nil {
		return err
	}
	if !commit {
		return tx.Rollback()
	}
	return tx.Commit()
}

func keys(t *testing.T, db *DB) map[string]bool {
	t.Helper()
	rows, err := db.read.QueryContext(t.Context(), `SELECT k FROM gc`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		out[k] = true
	}
	return out
}

// TestGroupCommit: write transactions that arrive together share commits (fewer COMMITs than
// transactions), each one's Commit returns once its change is visible to the other connections,
// a rolled-back or failed transaction of a group leaves the others' changes, and a second
// process would find all of them (the file is closed and opened again).
func TestGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kps.db")
	db, err := OpenSQLite(t.Context(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	groupTable(t, db)
	if err := insert(t.Context(), db, "dup", true); err != nil {
		t.Fatal(err)
	}
	before := db.group.commits.Load()
	const n = 200
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := fmt.Sprintf("k%03d", i)
			switch i % 10 {
			case 3: // rolled back
				errs[i] = insert(t.Context(), db, k, false)
			case 7: // fails: the key exists
				if err := insert(t.Context(), db, "dup", true); err == nil {
					errs[i] = errors.New("a duplicate key was inserted")
				}
			default:
				if errs[i] = insert(t.Context(), db, k, true); errs[i] == nil {
					// Committed means visible to the other connections.
					var one int
					if err := db.read.QueryRowContext(t.Context(), `SELECT 1 FROM gc WHERE k = ?`, k).Scan(&one); err != nil {
						errs[i] = fmt.Errorf("%s committed but not visible: %w", k, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	commits := db.group.commits.Load() - before
	t.Logf("%d transactions in %d commits", n, commits)
	if commits >= n {
		t.Errorf("%d commits for %d concurrent transactions: none shared", commits, n)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, path, nil)
	got := keys(t, db)
	for i := range n {
		k := fmt.Sprintf("k%03d", i)
		if want := i%10 != 3 && i%10 != 7; got[k] != want {
			t.Errorf("%s stored: %v, want %v", k, got[k], want)
		}
	}
}

// TestGroupCommitWaiterGivesUp: a writer that gives up while waiting (its context ends) does
// not leave the transaction it waited behind uncommitted.
func TestGroupCommitWaiterGivesUp(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), nil)
	groupTable(t, db)
	first, err := db.beginWrite(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.exec(t.Context(), `INSERT INTO gc (k) VALUES ('first')`); err != nil {
		t.Fatal(err)
	}
	// A second writer waits for the first, then gives up.
	ctx, cancel := context.WithCancel(t.Context())
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- insert(ctx, db, "second", true) }()
	deadline := time.Now().Add(10 * time.Second)
	for waiting(db) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the second writer never waited")
		}
		time.Sleep(time.Millisecond) // poll interval
	}
	// The first commits while the second still waits: its commit is left to the second…
	committed := make(chan error, 1)
	go func() { committed <- first.Commit() }()
	cancel() // …which gives up.
	if err := <-gaveUp; !errors.Is(err, context.Canceled) && err != nil {
		t.Fatalf("the second writer: %v", err)
	}
	select {
	case err := <-committed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first writer's commit never came")
	}
	if !keys(t, db)["first"] {
		t.Fatal("the first writer's change is not stored")
	}
}

func waiting(db *DB) int {
	db.group.mu.Lock()
	defer db.group.mu.Unlock()
	return db.group.waiting
}

// TestTaskTransitionsKeepTheWriteVersion: submitting, claiming, marking, extending and finishing
// a task do not move WriteVersion (the version iam's validation cache and the lockout cache
// are kept on), so that a fleet's task transitions do not make its polling clients validate
// their token again on every request; any other write does.
func TestTaskTransitionsKeepTheWriteVersion(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), nil)
	ctx := t.Context()
	fixture(t, db, "s1")
	v0, ok := db.WriteVersion()
	if !ok {
		t.Fatal("no write version on SQLite")
	}
	submitReset(t, db, "00000000-0000-4000-8000-000000000001", "s1")
	task, err := db.ClaimTask(ctx, "w", time.Minute)
	if err != nil || task == nil {
		t.Fatalf("claim: %v %v", task, err)
	}
	if err := db.MarkTaskWrite(ctx, task, kps.WriteKey); err != nil {
		t.Fatal(err)
	}
	if err := db.ExtendLease(ctx, task, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := db.FinishTask(ctx, task, kps.TaskOutcome{Success: true, PublicKey: "ssh-ed25519 AAAA"}); err != nil {
		t.Fatal(err)
	}
	if v, _ := db.WriteVersion(); v != v0 {
		t.Fatalf("task transitions moved the write version from %d to %d", v0, v)
	}
	if err := db.CreateServer(ctx, &kps.Server{ProjectID: "p", ID: "s2", Name: "s2", Address: "h", Port: 22,
		User: "root", SSHDConfig: kps.DefaultSSHDConfig, ReachByAdmin: true}, 0); err != nil {
		t.Fatal(err)
	}
	if v, _ := db.WriteVersion(); v == v0 { // a server registered: not a task transition
		t.Fatal("other writes do not move the write version")
	}
}

// joinBehind begins a write transaction that inserts k, starts a second writer (run) that
// waits behind it, and commits the first once the second waits, so that the first's commit is
// left to the second's group. It returns the first's Commit result (a channel) and the
// second's.
func joinBehind(t *testing.T, db *DB, k string, run func() error) (first, second chan error) {
	t.Helper()
	tx, err := db.beginWrite(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.exec(t.Context(), `INSERT INTO gc (k) VALUES (?)`, k); err != nil {
		t.Fatal(err)
	}
	first, second = make(chan error, 1), make(chan error, 1)
	go func() { second <- run() }()
	deadline := time.Now().Add(10 * time.Second)
	for waiting(db) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the second writer never waited")
		}
		time.Sleep(time.Millisecond) // poll interval
	}
	go func() { first <- tx.Commit() }()
	return first, second
}

func within(t *testing.T, c chan error, what string) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s never returned", what)
		return nil
	}
}

// TestGroupCommitBrokenGroupTellsEveryMember: when a member's statement makes SQLite roll back
// the whole transaction (here a trigger's RAISE(ROLLBACK); in production a full disk or an I/O
// error), the members that had already committed into the group are told their commit failed
// (it did: their change is not stored), the member that broke it gets its own error, and the
// next transaction starts a sound group.
func TestGroupCommitBrokenGroupTellsEveryMember(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), nil)
	groupTable(t, db)
	tx, err := db.beginWrite(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.exec(t.Context(), `CREATE TRIGGER gc_boom BEFORE INSERT ON gc WHEN NEW.k = 'boom'
BEGIN SELECT RAISE(ROLLBACK, 'boom'); END`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	first, second := joinBehind(t, db, "first", func() error { return insert(t.Context(), db, "boom", true) })
	if err := within(t, second, "the breaking writer"); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("the breaking writer: %v, want its own error", err)
	}
	if err := within(t, first, "the first writer's commit"); err == nil {
		t.Fatal("the first writer was told its change is committed, though the group rolled back")
	}
	if keys(t, db)["first"] {
		t.Fatal("the first writer's change is stored, though its commit failed")
	}
	if err := insert(t.Context(), db, "after", true); err != nil {
		t.Fatalf("a transaction after the broken group: %v", err)
	}
	if !keys(t, db)["after"] {
		t.Fatal("the transaction after the broken group is not stored")
	}
}

// TestGroupCommitCancelledMemberKeepsOthers: a member whose context ends in the middle of its
// transaction, even during a statement, rolls back only itself; the change of the member before it in the group, whose
// commit it carried, is committed and stored.
func TestGroupCommitCancelledMemberKeepsOthers(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), nil)
	groupTable(t, db)
	ctx, cancel := context.WithCancel(t.Context())
	first, second := joinBehind(t, db, "first", func() error {
		tx, err := db.beginWrite(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		// The context ends while a long INSERT runs: interrupted, SQLite would roll back the
		// whole transaction, the first member's change with it.
		// About half a second either way: 300,000 rows, or 20,000 under the race detector.
		rows := 300000
		if raceEnabled {
			rows = 20000
		}
		time.AfterFunc(20*time.Millisecond, cancel)
		if _, err := tx.exec(ctx, `INSERT INTO gc (k) WITH RECURSIVE c(i) AS (
    SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) SELECT 'second' || i FROM c`, rows); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return tx.Rollback() // the caller gave up: its change goes
		}
		return tx.Commit()
	})
	if err := within(t, second, "the cancelled writer"); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled writer: %v", err)
	}
	if err := within(t, first, "the first writer's commit"); err != nil {
		t.Fatalf("the first writer's commit: %v", err)
	}
	got := keys(t, db)
	if !got["first"] || got["second1"] {
		t.Fatalf("stored first: %v, second: %v; want first and not second", got["first"], got["second1"])
	}
}

// waitFor waits until n writers wait for the group writer.
func waitFor(t *testing.T, db *DB, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for waiting(db) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d writers never waited", n)
		}
		time.Sleep(time.Millisecond) // poll interval
	}
}

// pendingClaimInGroup makes a pending claim that leaves its group's commit to a later writer:
// a first writer holds the group writer, the claim waits behind it and next behind the claim;
// once the first commits, the claim runs and returns while next holds the group open. It
// returns the claim, its committed and the first writer's Commit result (a channel), and next,
// which the caller ends.
func pendingClaimInGroup(t *testing.T, db *DB, next func() error) (task *kps.Task, committed func() error, first, nextDone chan error) {
	t.Helper()
	ctx := t.Context()
	db.group.maxAge = time.Hour // the group must not commit for its age while the test looks
	holder, err := db.beginWrite(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type claim struct {
		task      *kps.Task
		committed func() error
		err       error
	}
	claimed := make(chan claim, 1)
	go func() {
		var c claim
		c.task, c.committed, c.err = db.ClaimTaskPending(ctx, "w", time.Minute)
		claimed <- c
	}()
	waitFor(t, db, 1)
	nextDone = make(chan error, 1)
	go func() { nextDone <- next() }()
	waitFor(t, db, 2)
	first = make(chan error, 1)
	go func() { first <- holder.Commit() }()
	var c claim
	select {
	case c = <-claimed:
	case <-time.After(20 * time.Second):
		t.Fatal("the pending claim did not return while its group was open")
	}
	if c.err != nil || c.task == nil {
		t.Fatalf("pending claim: %v, %v", c.task, c.err)
	}
	return c.task, c.committed, first, nextDone
}

// TestClaimTaskPendingReturnsBeforeItsCommit (issue 18): on SQLite a pending claim returns while
// its commit group is still open — the claim is not yet visible to the other connections and
// committed has not returned — and committed returns nil once the group commits, from when the
// task reads RUNNING under the claim's lease and its project's task version has moved.
func TestClaimTaskPendingReturnsBeforeItsCommit(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), nil)
	ctx := t.Context()
	fixture(t, db, "s1")
	submitted := submitReset(t, db, "00000000-0000-4000-8000-000000000001", "s1")
	v0, _ := db.TaskVersion(ctx, "p")
	release := make(chan struct{})
	task, committed, first, next := pendingClaimInGroup(t, db, func() error {
		tx, err := db.beginWrite(ctx)
		if err != nil {
			return err
		}
		<-release // holds the group open
		return tx.Commit()
	})
	if task.ID != submitted.ID || task.Phase != kps.PhaseRunning || task.LeaseOwner != "w" || task.Attempt != 1 {
		t.Fatalf("claimed %+v", task)
	}
	done := make(chan error, 1)
	go func() { done <- committed() }()
	select {
	case err := <-done:
		t.Fatalf("committed returned (%v) while the claim's group was open", err)
	case <-time.After(50 * time.Millisecond):
	}
	if read, err := db.Task(ctx, "p", task.ID); err != nil || read.Phase != kps.PhaseReady {
		t.Fatalf("before the group's commit another connection reads %+v, %v; want it READY", read, err)
	}
	if v, _ := db.TaskVersion(ctx, "p"); v != v0 {
		t.Fatalf("the task version moved to %d before the claim was committed", v)
	}
	close(release)
	for what, c := range map[string]chan error{"committed": done, "the first writer": first, "the writer after": next} {
		if err := within(t, c, what); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	read, err := db.Task(ctx, "p", task.ID)
	if err != nil || read.Phase != kps.PhaseRunning || read.LeaseOwner != "w" || read.Attempt != 1 {
		t.Fatalf("after the commit the task reads %+v, %v", read, err)
	}
	if v, _ := db.TaskVersion(ctx, "p"); v == v0 {
		t.Fatal("the claim's commit did not move the task version")
	}
}

// TestClaimTaskPendingUndoneWithItsGroup: a pending claim whose group is rolled back (a later
// member breaks it, as a full disk would) is told so by committed; the task is READY again,
// and so is the first writer of the group; the lost claim's write mark and outcome are refused (its worker changes nothing), and the
// next claim takes the task.
func TestClaimTaskPendingUndoneWithItsGroup(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), nil)
	ctx := t.Context()
	fixture(t, db, "s1")
	groupTable(t, db)
	tx, err := db.beginWrite(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.exec(ctx, `CREATE TRIGGER gc_boom BEFORE INSERT ON gc WHEN NEW.k = 'boom'
BEGIN SELECT RAISE(ROLLBACK, 'boom'); END`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	submitReset(t, db, "00000000-0000-4000-8000-000000000001", "s1")
	task, committed, first, next := pendingClaimInGroup(t, db, func() error { return insert(ctx, db, "boom", true) })
	if err := committed(); err == nil {
		t.Fatal("committed returned nil for a claim rolled back with its group")
	}
	if err := within(t, next, "the breaking writer"); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("the breaking writer: %v", err)
	}
	if err := within(t, first, "the first writer"); err == nil {
		t.Fatal("the first writer, of the same group, was told its change is committed")
	}
	if read, err := db.Task(ctx, "p", task.ID); err != nil || read.Phase != kps.PhaseReady {
		t.Fatalf("after the rollback the task reads %+v, %v; want READY", read, err)
	}
	if err := db.MarkTaskWrite(ctx, task, kps.WriteKey); !errors.Is(err, kps.ErrLeaseLost) {
		t.Fatalf("the undone claim's write mark: %v, want ErrLeaseLost", err)
	}
	if err := db.FinishTask(ctx, task, kps.TaskOutcome{Success: true}); !errors.Is(err, kps.ErrLeaseLost) {
		t.Fatalf("the undone claim's outcome: %v, want ErrLeaseLost", err)
	}
	again, err := db.ClaimTask(ctx, "w2", time.Minute)
	if err != nil || again == nil || again.ID != task.ID || again.LeaseOwner != "w2" {
		t.Fatalf("claim after the rollback: %+v, %v", again, err)
	}
}

// TestPendingClaimSharesTheNextCommit: a pending claim made while nobody waits for the writer
// leaves its group open for the next writer, whose commit it shares (one COMMIT for both); with
// no next writer its group commits on its own shortly after.
func TestPendingClaimSharesTheNextCommit(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), nil)
	ctx := t.Context()
	fixture(t, db, "s1", "s2")
	submitReset(t, db, "00000000-0000-4000-8000-000000000001", "s1")
	submitReset(t, db, "00000000-0000-4000-8000-000000000002", "s2")

	// No timer within the test, and no group too old (the race detector can make a claim take
	// longer than groupMaxAge): only the next writer commits it.
	db.group.lazy, db.group.maxAge = time.Hour, time.Hour
	before := db.group.commits.Load()
	task, committed, err := db.ClaimTaskPending(ctx, "w", time.Minute)
	if err != nil || task == nil {
		t.Fatalf("pending claim: %v, %v", task, err)
	}
	done := make(chan error, 1)
	go func() { done <- committed() }()
	select {
	case err := <-done:
		t.Fatalf("the lone pending claim committed at once (%v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := db.MarkTaskWrite(ctx, task, kps.WriteKey); err != nil { // the next writer
		t.Fatal(err)
	}
	if err := within(t, done, "committed"); err != nil {
		t.Fatal(err)
	}
	if n := db.group.commits.Load() - before; n != 1 {
		t.Fatalf("%d commits for the claim and the mark after it, want 1", n)
	}

	db.group.lazy, db.group.maxAge = lazyCommitDelay, groupMaxAge
	task, committed, err = db.ClaimTaskPending(ctx, "w", time.Minute)
	if err != nil || task == nil {
		t.Fatalf("pending claim: %v, %v", task, err)
	}
	go func() { done <- committed() }()
	if err := within(t, done, "the lone claim's commit"); err != nil {
		t.Fatal(err)
	}
	if read, err := db.Task(ctx, "p", task.ID); err != nil || read.Phase != kps.PhaseRunning {
		t.Fatalf("after its commit the task reads %+v, %v", read, err)
	}
}

// TestPendingClaimDoesNotHoldBackAWaitingMember: a pending claim that is the last of a group in
// which another member waits for the commit (it left the commit to the claim, which was
// waiting) commits the group at once rather than leave it open for the next writer.
func TestPendingClaimDoesNotHoldBackAWaitingMember(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), nil)
	ctx := t.Context()
	fixture(t, db, "s1")
	submitReset(t, db, "00000000-0000-4000-8000-000000000001", "s1")
	db.group.maxAge, db.group.lazy = time.Hour, time.Hour // only an eager commit ends the group
	holder, err := db.beginWrite(ctx)
	if err != nil {
		t.Fatal(err)
	}
	claimed := make(chan func() error, 1)
	go func() {
		task, committed, err := db.ClaimTaskPending(ctx, "w", time.Minute)
		if err != nil || task == nil {
			t.Errorf("pending claim: %v, %v", task, err)
		}
		claimed <- committed
	}()
	waitFor(t, db, 1)
	first := make(chan error, 1)
	go func() { first <- holder.Commit() }() // leaves its commit to the claim
	if err := within(t, first, "the first writer, whose commit the claim carried"); err != nil {
		t.Fatal(err)
	}
	if committed := <-claimed; committed == nil || committed() != nil {
		t.Fatal("the claim was not committed with the first writer")
	}
}

// TestPendingClaimOfAnUncommittedTaskWaitsForIt: a claim whose commit group holds changes not
// committed yet — here the submission of the very task it claims, as a rotation submits a
// server's task in the transaction that ends the one before — sees them, and the worker's next
// reads (its plan: the task's rotation, its server's binding) come from other connections,
// which do not until the group commits. So that claim returns only once it is committed: when
// ClaimTaskPending returns, another connection reads the task as claimed. Before, the claim
// returned at once and the planner found no such task (KPS.6609 in TestCLIBinary/RotateFleet).
func TestPendingClaimOfAnUncommittedTaskWaitsForIt(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), nil)
	ctx := t.Context()
	fixture(t, db, "s1")
	db.group.maxAge, db.group.lazy = time.Hour, time.Hour // only an eager commit ends the group
	holder, err := db.beginWrite(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const id = "00000000-0000-4000-8000-000000000001"
	submitted := make(chan error, 1)
	go func() {
		_, err := db.SubmitTask(ctx, kps.TaskSubmission{ID: id, ProjectID: "p", UserID: "u",
			Operation: kps.OpReset, KeyPairName: "kp", ServerID: "s1"}, service.AdmitTask)
		submitted <- err
	}()
	waitFor(t, db, 1)
	type claim struct {
		task *kps.Task
		err  error
	}
	claimed := make(chan claim, 1)
	go func() {
		task, committed, err := db.ClaimTaskPending(ctx, "w", time.Minute)
		if err == nil && task != nil {
			// What the worker reads next, through another connection.
			if read, rerr := db.Task(ctx, "p", task.ID); rerr != nil || read.Phase != kps.PhaseRunning {
				err = fmt.Errorf("when the claim returned another connection read %+v, %v; want it RUNNING", read, rerr)
			} else {
				err = committed()
			}
		}
		claimed <- claim{task, err}
	}()
	waitFor(t, db, 2)
	release := make(chan struct{})
	next := make(chan error, 1)
	go func() {
		tx, err := db.beginWrite(ctx)
		if err != nil {
			next <- err
			return
		}
		<-release // holds the group open
		next <- tx.Commit()
	}()
	waitFor(t, db, 3)
	first := make(chan error, 1)
	go func() { first <- holder.Commit() }()
	select {
	case c := <-claimed:
		t.Fatalf("the claim returned (%+v, %v) before the submission it saw was committed", c.task, c.err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	var c claim
	select {
	case c = <-claimed:
	case <-time.After(20 * time.Second):
		t.Fatal("the claim never returned")
	}
	if c.err != nil || c.task == nil || c.task.ID != id {
		t.Fatalf("claim: %+v, %v", c.task, c.err)
	}
	for what, ch := range map[string]chan error{"the holder": first, "the submission": submitted, "the writer after": next} {
		if err := within(t, ch, what); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
}
