package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
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
