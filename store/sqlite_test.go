package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/pgtest"
	"github.com/openkps/kps/service"
	"github.com/openkps/kps/store/storetest"
)

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) kps.Store {
		return openTest(t, filepath.Join(t.TempDir(), "kps.db"), now)
	})
}

func openTest(t *testing.T, path string, now func() time.Time) *DB {
	t.Helper()
	db, err := OpenSQLite(t.Context(), path, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}

// fixture registers a server with a credential and a domain key pair in project "p".
func fixture(t *testing.T, db *DB, servers ...string) {
	t.Helper()
	ctx := t.Context()
	if err := db.CreateKeyPair(ctx, &kps.KeyPair{ProjectID: "p", Name: "kp", Type: kps.TypeSSH,
		Scope: kps.ScopeDomain, UserID: "u", PublicKey: "ssh-ed25519 AAAA", Fingerprint: "f", Algorithm: "ED25519"}, kps.KeyPairQuota{Project: 0}); err != nil {
		t.Fatal(err)
	}
	for _, id := range servers {
		if err := db.CreateServer(ctx, &kps.Server{ProjectID: "p", ID: id, Name: id, Address: "h", Port: 22,
			User: "root", SSHDConfig: kps.DefaultSSHDConfig, Credential: []byte("c"), ReachByAdmin: true}, 0); err != nil {
			t.Fatal(err)
		}
	}
}

func submitReset(t *testing.T, db *DB, id, server string) *kps.Task {
	t.Helper()
	task, err := db.SubmitTask(t.Context(), kps.TaskSubmission{ID: id, ProjectID: "p", UserID: "u",
		Operation: kps.OpReset, KeyPairName: "kp", ServerID: server}, service.AdmitTask)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func TestSecondOpenIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kps.db")
	first := openTest(t, path, nil)
	_, err := OpenSQLite(t.Context(), path, Options{})
	want := "database " + path + " is in use by another kps process"
	if err == nil || err.Error() != want {
		t.Fatalf("second open: %v, want %q", err, want)
	}
	// Closing releases the lock; the data is still there.
	fixture(t, first, "s1")
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again := openTest(t, path, nil)
	if _, err := again.Server(t.Context(), "p", "s1"); err != nil {
		t.Fatalf("after reopening: %v", err)
	}
}

const lockHelperEnv = "KPS_STORE_LOCK_HELPER_DB"

// TestLockHelper is not a test: it is the child process of TestSecondProcessIsRefused.
func TestLockHelper(t *testing.T) {
	path := os.Getenv(lockHelperEnv)
	if path == "" {
		t.Skip("child process of TestSecondProcessIsRefused")
	}
	_, err := OpenSQLite(context.Background(), path, Options{})
	if err == nil {
		os.Exit(4)
	}
	os.Stderr.WriteString(err.Error())
	os.Exit(3)
}

func TestSecondProcessIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kps.db")
	openTest(t, path, nil)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelper$")
	cmd.Env = append(os.Environ(), lockHelperEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("child: %v (exit 4: it opened the database)", err)
	}
	if want := "database " + path + " is in use by another kps process"; stderr.String() != want {
		t.Fatalf("child's error %q, want %q", stderr.String(), want)
	}
}

func TestOpenNeedsAFile(t *testing.T) {
	for _, p := range []string{"", ":memory:"} {
		if _, err := OpenSQLite(t.Context(), p, Options{}); err == nil {
			t.Errorf("OpenSQLite(%q) succeeded", p)
		}
	}
}

func TestPathWithURISpecialCharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?with#odd%20chars")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "kps.db")
	db := openTest(t, path, nil)
	fixture(t, db, "s1")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the database is not where it was asked to be: %v", err)
	}
}

func TestFileAndConnectionSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kps.db")
	db := openTest(t, path, nil)
	fixture(t, db, "s1")
	for _, f := range []string{path, path + "-wal", path + ".lock"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v; it must not be readable by others", f, fi.Mode().Perm())
		}
	}
	ctx := t.Context()
	var mode string
	var sync, fk int
	if err := db.write.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if err := db.write.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		t.Fatal(err)
	}
	if err := db.write.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || sync != 2 || fk != 1 {
		t.Errorf("writer: journal_mode %s, synchronous %d, foreign_keys %d; want wal, 2 (FULL), 1", mode, sync, fk)
	}
	if _, err := db.read.ExecContext(ctx, "DELETE FROM servers"); err == nil {
		t.Error("the read pool accepted a write")
	}
}

func TestMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kps.db")
	db := openTest(t, path, nil)
	var n, v int
	if err := db.read.QueryRowContext(t.Context(), "SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	ms, err := loadMigrations(sqliteEngine().migrations)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(ms) || v != ms[len(ms)-1].version {
		t.Fatalf("schema_migrations: %d rows, version %d; want %d, %d", n, v, len(ms), ms[len(ms)-1].version)
	}
	// A newer binary's migration is refused, not ignored.
	if _, err := db.write.ExecContext(t.Context(), "INSERT INTO schema_migrations VALUES (9999, 'future', 0)"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = OpenSQLite(t.Context(), path, Options{})
	if err == nil || !strings.Contains(err.Error(), "9999") {
		t.Fatalf("open of a newer schema: %v", err)
	}
	// Reopening a current database applies nothing twice.
	path2 := filepath.Join(t.TempDir(), "kps.db")
	openTest(t, path2, nil).Close()
	db2 := openTest(t, path2, nil)
	if err := db2.read.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) {
		t.Fatalf("%d migration rows after reopening", n)
	}
}

func TestLoadMigrationsRejectsBadNames(t *testing.T) {
	ms, err := loadMigrations(sqliteEngine().migrations)
	if err != nil || len(ms) == 0 || ms[0].version != 1 || ms[0].name != "init" {
		t.Fatalf("embedded migrations: %v, %v", ms, err)
	}
}

// TestPartialUniqueIndex checks the index itself, past the in-transaction busy check: a second
// READY/RUNNING task for a server is refused by the database and reported as KPS.6302.
func TestPartialUniqueIndex(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), nil)
	fixture(t, db, "s1")
	first := submitReset(t, db, "00000000-0000-4000-8000-000000000001", "s1")

	insert := func(id string) error {
		tx, err := db.beginWrite(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		task := *first
		task.ID = id
		if err := insertReadyTask(t.Context(), tx, &task); err != nil {
			return err
		}
		return tx.Commit()
	}
	err := insert("00000000-0000-4000-8000-000000000002")
	var kerr *kps.Error
	if !errors.As(err, &kerr) || kerr.Code != kps.ErrServerBusy {
		t.Fatalf("second active task: %v, want KPS.6302", err)
	}
	// RUNNING still holds the server; a terminal task does not.
	claimed, err := db.ClaimTask(t.Context(), "w", time.Minute)
	if err != nil || claimed == nil {
		t.Fatal(claimed, err)
	}
	if err := insert("00000000-0000-4000-8000-000000000003"); kps.ErrorCode(err) != kps.ErrServerBusy {
		t.Fatalf("while RUNNING: %v", err)
	}
	if err := db.FinishTask(t.Context(), claimed, kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := insert("00000000-0000-4000-8000-000000000004"); err != nil {
		t.Fatalf("after the task failed: %v", err)
	}
}

// TestReclaimFencesTheOldAttempt puts a claimed task back to READY behind the store's back (as
// a future retry would) and checks that the first worker's handle is fenced by the attempt.
func TestReclaimFencesTheOldAttempt(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), nil)
	fixture(t, db, "s1")
	submitReset(t, db, "00000000-0000-4000-8000-000000000001", "s1")
	ctx := t.Context()
	old, err := db.ClaimTask(ctx, "w", time.Minute)
	if err != nil || old == nil {
		t.Fatal(old, err)
	}
	if _, err := db.write.ExecContext(ctx, "UPDATE tasks SET phase = 'READY' WHERE id = ?", old.ID); err != nil {
		t.Fatal(err)
	}
	// The same owner name claims again (a restarted worker with a stable name).
	cur, err := db.ClaimTask(ctx, "w", time.Minute)
	if err != nil || cur == nil || cur.Attempt != 2 {
		t.Fatalf("re-claim: %+v, %v", cur, err)
	}
	if err := db.ExtendLease(ctx, old, time.Minute); !errors.Is(err, kps.ErrLeaseLost) {
		t.Fatalf("old attempt ExtendLease: %v", err)
	}
	if err := db.FinishTask(ctx, old, kps.TaskOutcome{Success: true, PublicKey: "x"}); !errors.Is(err, kps.ErrLeaseLost) {
		t.Fatalf("old attempt FinishTask: %v", err)
	}
	if b, _ := db.Binding(ctx, "p", "s1"); b != nil {
		t.Fatalf("old attempt bound the server: %+v", b)
	}
	if err := db.FinishTask(ctx, cur, kps.TaskOutcome{Success: true, PublicKey: "pk"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := db.Binding(ctx, "p", "s1"); b == nil || b.PublicKey != "pk" {
		t.Fatalf("binding = %+v", b)
	}
}

// TestQueryPlans keeps the hot queries on their indexes (millions of tasks must not mean a
// table scan).
func TestQueryPlans(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), nil)
	for _, c := range []struct {
		name, query, index string
		args               []any
		// sorts is how many temporary B-trees the plan may use: the page of a task list is
		// sorted once more after its rows are read by rowid, which sorts at most the page.
		sorts int
	}{
		// The task lists' plans are TestTaskListPlan's.
		// The fair claim: one lookup per project with READY tasks, and one sort of those
		// projects' candidates.
		{"claim projects", sqliteClaimTask, "SEARCH t USING COVERING INDEX tasks_ready_by_project (project_id>?)", []any{"w", 1, 1, "w", 1}, 1},
		{"claim oldest", sqliteClaimTask, "SEARCH t USING INDEX tasks_ready_by_project (project_id=?)", []any{"w", 1, 1, "w", 1}, 1},
		{"claim running", sqliteClaimTask, "tasks_by_project_phase (project_id=? AND phase=?)", []any{"w", 1, 1, "w", 1}, 1},
		{"claim holder", sqliteClaimTask, "sqlite_autoindex_replicas_1", []any{"w", 1, 1, "w", 1}, 1},
		{"claim idle", sqliteClaimIdleTask, "SEARCH t USING INDEX tasks_ready_by_project (project_id=?)", []any{"w", 1, 1, "w", 1}, 1},
		{"project's active tasks", countProjectActiveTasks, "COVERING INDEX tasks_by_project_phase", []any{"p"}, 0},
		{"queue capacity", countReadyTasks, "tasks_ready_queue", nil, 0},
		{"busy server", selectServerBusy, "tasks_one_active_per_server", []any{"p", "s"}, 0},
		{"sweeper", "SELECT id FROM tasks WHERE phase = 'RUNNING' AND lease_expires < ?", "tasks_running_leases", []any{1}, 0},
		{"purge", "SELECT id FROM tasks WHERE phase = 'SUCCESS' AND created < ?", "tasks_succeeded", []any{1}, 0},
		{"key pair page", listKeyPairsAfter, "sqlite_autoindex_keypairs", []any{"p", "u", "m", 10}, 0},
		// A server's last task: its highest seq from tasks_by_server alone, then that one row
		// by its rowid; on a page of servers, once per row of the page (the sort is the
		// window's, as before the last task).
		{"server's last task", selectServer, "SEARCH lt USING INTEGER PRIMARY KEY (rowid=?) LEFT-JOIN; CORRELATED SCALAR SUBQUERY 1; SEARCH t USING COVERING INDEX tasks_by_server (project_id=? AND server_id=?)", []any{"p", "s"}, 0},
		{"servers' last tasks", listServers, "SEARCH lt USING INTEGER PRIMARY KEY (rowid=?) LEFT-JOIN; CORRELATED SCALAR SUBQUERY 2; SEARCH t USING COVERING INDEX tasks_by_server (project_id=? AND server_id=?)", []any{"p", 10, 0}, 1},
	} {
		rows, err := db.read.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+c.query, c.args...)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		joined := strings.Join(plan, "; ")
		if !strings.Contains(joined, c.index) || strings.Count(joined, "TEMP B-TREE") > c.sorts {
			t.Errorf("%s: plan %q, want %s with at most %d sorts", c.name, joined, c.index, c.sorts)
		}
	}
}

const crashHelperEnv = "KPS_STORE_CRASH_HELPER_DB"

// TestCrashHelper is not a test: it is the child process of TestCrashRecovery, which dies
// holding a claimed task.
func TestCrashHelper(t *testing.T) {
	path := os.Getenv(crashHelperEnv)
	if path == "" {
		t.Skip("child process of TestCrashRecovery")
	}
	ctx := context.Background()
	db, err := OpenSQLite(ctx, path, Options{})
	if err != nil {
		os.Exit(2)
	}
	fixture(t, db, "s1", "s2")
	submitReset(t, db, "00000000-0000-4000-8000-000000000001", "s1")
	if task, err := db.ClaimTask(ctx, "doomed", time.Hour); err != nil || task == nil {
		os.Exit(2)
	}
	submitReset(t, db, "00000000-0000-4000-8000-000000000002", "s2")
	os.Exit(3) // no Close: the process dies with a RUNNING task, the WAL and the lock
}

// TestCrashRecovery kills a process holding the database with a RUNNING task, then reopens:
// the lock is gone with the process, committed tasks survived, and the sole-instance sweep
// fails the RUNNING one with KPS.6609.
func TestCrashRecovery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kps.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+path)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Logf("no WAL left behind (%v); the crash was after a checkpoint", err)
	}

	db := openTest(t, path, nil)
	ctx := t.Context()
	running, err := db.Task(ctx, "p", "00000000-0000-4000-8000-000000000001")
	if err != nil || running.Phase != kps.PhaseRunning || running.LeaseOwner != "doomed" {
		t.Fatalf("after the crash: %+v, %v", running, err)
	}
	n, err := db.FailExpiredTasks(ctx, true)
	if err != nil || n != 1 {
		t.Fatalf("FailExpiredTasks(true) = %d, %v", n, err)
	}
	failed, err := db.Task(ctx, "p", running.ID)
	if err != nil || failed.Phase != kps.PhaseFailed || failed.ErrorCode != kps.TaskInterrupted ||
		failed.ErrorMsg != "Task interrupted by a service restart." {
		t.Fatalf("interrupted task: %+v, %v", failed, err)
	}
	// The dead worker's finish is fenced; the READY task runs normally.
	if err := db.FinishTask(ctx, running, kps.TaskOutcome{Success: true, PublicKey: "x"}); !errors.Is(err, kps.ErrLeaseLost) {
		t.Fatalf("dead worker's finish: %v", err)
	}
	next, err := db.ClaimTask(ctx, "new", time.Minute)
	if err != nil || next == nil || next.ID != "00000000-0000-4000-8000-000000000002" {
		t.Fatalf("claim after restart: %+v, %v", next, err)
	}
}

// TestCopiedFileKeepsTasks copies the database files of a live store (what a crash leaves on
// disk) and opens the copy.
func TestCopiedFileKeepsTasks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kps.db")
	db := openTest(t, path, nil)
	fixture(t, db, "s1")
	submitReset(t, db, "00000000-0000-4000-8000-000000000001", "s1")
	if task, err := db.ClaimTask(t.Context(), "w", time.Hour); err != nil || task == nil {
		t.Fatal(task, err)
	}
	copyPath := filepath.Join(dir, "copy.db")
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(copyPath+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	copied := openTest(t, copyPath, nil)
	n, err := copied.FailExpiredTasks(t.Context(), true)
	if err != nil || n != 1 {
		t.Fatalf("FailExpiredTasks(true) on the copy = %d, %v", n, err)
	}
}

// BenchmarkTaskLifecycle measures one submit, claim and finish: on SQLite four fsynced commits
// with synchronous=FULL. "failed" ends the task FAILED, which adds its entry to the failed-task
// list index (migration 0006); "success" does not touch that index.
func BenchmarkTaskLifecycle(b *testing.B) {
	db, err := OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "kps.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	benchmarkTaskLifecycle(b, db)
}

func BenchmarkTaskLifecyclePostgres(b *testing.B) {
	benchmarkTaskLifecycle(b, openPostgresTest(b, pgtest.Schema(b), nil))
}

func benchmarkTaskLifecycle(b *testing.B, db *DB) {
	ctx := b.Context()
	if err := db.CreateKeyPair(ctx, &kps.KeyPair{ProjectID: "p", Name: "kp", Type: kps.TypeSSH,
		Scope: kps.ScopeDomain, UserID: "u", PublicKey: "ssh-ed25519 AAAA", Fingerprint: "f", Algorithm: "ED25519"}, kps.KeyPairQuota{Project: 0}); err != nil {
		b.Fatal(err)
	}
	if err := db.CreateServer(ctx, &kps.Server{ProjectID: "p", ID: "s", Name: "s", Address: "h", Port: 22,
		User: "root", SSHDConfig: kps.DefaultSSHDConfig, Credential: []byte("c"), ReachByAdmin: true}, 0); err != nil {
		b.Fatal(err)
	}
	i := 0
	// "marked" is a bind that writes its key: its host job announces the write, which costs
	// one more write transaction (MarkTaskWrite) before the host may change.
	for _, c := range []struct {
		name    string
		outcome kps.TaskOutcome
		mark    bool
	}{
		{"success", kps.TaskOutcome{Success: true, PublicKey: "pk"}, false},
		{"success-marked", kps.TaskOutcome{Success: true, PublicKey: "pk"}, true},
		{"failed", kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "The connection to 192.0.2.10:22 was refused."}, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				i++
				if _, err := db.SubmitTask(ctx, kps.TaskSubmission{ID: fmt.Sprintf("%036d", i), ProjectID: "p", UserID: "u",
					Operation: kps.OpReset, KeyPairName: "kp", ServerID: "s"}, service.AdmitTask); err != nil {
					b.Fatal(err)
				}
				task, err := db.ClaimTask(ctx, "w", time.Minute)
				if err != nil || task == nil {
					b.Fatal(task, err)
				}
				if c.mark {
					if err := db.MarkTaskWrite(ctx, task, kps.WriteKey); err != nil {
						b.Fatal(err)
					}
				}
				if err := db.FinishTask(ctx, task, c.outcome); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
