package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/pgtest"
	"github.com/openkps/kps/service"
	"github.com/openkps/kps/store/storetest"
)

func openPostgresTest(t testing.TB, dsn string, now func() time.Time) *DB {
	t.Helper()
	db, err := OpenPostgres(context.Background(), dsn, Options{Now: now})
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

func TestPostgresConformance(t *testing.T) {
	pgtest.URL(t)
	storetest.Run(t, func(t *testing.T, now func() time.Time) kps.Store {
		return openPostgresTest(t, pgtest.Schema(t), now)
	})
}

func TestPostgresRebind(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"SELECT ? , ?", "SELECT $1 , $2"},
		{"SELECT '?', ? -- why?\nFROM t WHERE a = ?", "SELECT '?', $1 -- why?\nFROM t WHERE a = $2"},
		{`SELECT "a?b", 'it''s?', ?`, `SELECT "a?b", 'it''s?', $1`},
		{"SELECT COALESCE(a, ''), ?", "SELECT COALESCE(a, ''), $1"},
	} {
		if got := postgresRebind(c.in); got != c.want {
			t.Errorf("postgresRebind(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestPostgresReplicasMigrateAtOnce opens several stores on one empty schema at the same time:
// the advisory lock lets one migrate and the others find the schema current.
func TestPostgresReplicasMigrateAtOnce(t *testing.T) {
	dsn := pgtest.Schema(t)
	const replicas = 4
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	dbs := make([]*DB, replicas)
	for i := range replicas {
		wg.Go(func() {
			dbs[i], errs[i] = OpenPostgres(t.Context(), dsn, Options{})
		})
	}
	wg.Wait()
	for i, db := range dbs {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		defer db.Close()
	}
	var n int
	if err := dbs[0].write.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	ms, err := loadMigrations(dbs[0].eng.migrations)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(ms) {
		t.Fatalf("%d versions recorded, want %d", n, len(ms))
	}
	// The roles of 0002 exist once, whoever migrated.
	if err := dbs[1].write.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM roles").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("%d roles, want 3", n)
	}
}

// TestPostgresConcurrentClaims has several stores ("replicas") claim from one queue at once:
// every task is claimed exactly once and no claimer comes back empty while tasks wait.
func TestPostgresConcurrentClaims(t *testing.T) {
	dsn := pgtest.Schema(t)
	const replicas, tasks = 3, 60
	dbs := make([]*DB, replicas)
	for i := range dbs {
		dbs[i] = openPostgresTest(t, dsn, nil)
	}
	servers := make([]string, tasks)
	for i := range servers {
		servers[i] = fmt.Sprintf("s%03d", i)
	}
	fixture(t, dbs[0], servers...)
	for i, s := range servers {
		submitReset(t, dbs[i%replicas], fmt.Sprintf("00000000-0000-4000-8000-%012d", i), s)
	}

	var mu sync.Mutex
	claimed := map[string]int{}
	var wg sync.WaitGroup
	for i := range replicas * 4 {
		db := dbs[i%replicas]
		wg.Go(func() {
			for {
				task, err := db.ClaimTask(t.Context(), fmt.Sprintf("w%d", i), time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if task == nil {
					return
				}
				mu.Lock()
				claimed[task.ID]++
				mu.Unlock()
				if err := db.FinishTask(t.Context(), task, kps.TaskOutcome{Success: true, PublicKey: task.PublicKey}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if len(claimed) != tasks {
		t.Fatalf("%d tasks claimed, want %d", len(claimed), tasks)
	}
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("task %s claimed %d times", id, n)
		}
	}
}

// TestPostgresConcurrentChecks races the check-then-write sequences that SQLite's single writer
// serialises and PostgreSQL serialises with locks: the key pair quota, the access key limit and
// one active task per server.
func TestPostgresConcurrentChecks(t *testing.T) {
	dsn := pgtest.Schema(t)
	a, b := openPostgresTest(t, dsn, nil), openPostgresTest(t, dsn, nil)
	ctx := t.Context()

	const quota = 5
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		db := []*DB{a, b}[i%2]
		wg.Go(func() {
			errs[i] = db.CreateKeyPair(ctx, &kps.KeyPair{ProjectID: "p", Name: fmt.Sprintf("k%02d", i),
				Type: kps.TypeSSH, Scope: kps.ScopeDomain, UserID: "u", PublicKey: "ssh-ed25519 AAAA",
				Fingerprint: "f", Algorithm: "ED25519"}, kps.KeyPairQuota{Project: quota})
		})
	}
	wg.Wait()
	created, name := 0, ""
	for i, err := range errs {
		var e *kps.Error
		switch {
		case err == nil:
			created, name = created+1, fmt.Sprintf("k%02d", i)
		case errors.As(err, &e) && e.Code == kps.ErrQuota:
		default:
			t.Fatalf("create key pair: %v", err)
		}
	}
	if created != quota {
		t.Fatalf("%d key pairs created with a quota of %d", created, quota)
	}

	if err := a.CreateServer(ctx, &kps.Server{ProjectID: "p", ID: "s", Name: "s", Address: "h", Port: 22,
		User: "root", SSHDConfig: kps.DefaultSSHDConfig, Credential: []byte("c"), ReachByAdmin: true}, 0); err != nil {
		t.Fatal(err)
	}
	for i := range errs {
		db := []*DB{a, b}[i%2]
		wg.Go(func() {
			_, errs[i] = db.SubmitTask(ctx, kps.TaskSubmission{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
				ProjectID: "p", UserID: "u", Operation: kps.OpReset, KeyPairName: name, ServerID: "s"}, service.AdmitTask)
		})
	}
	wg.Wait()
	accepted := 0
	for _, err := range errs {
		var e *kps.Error
		switch {
		case err == nil:
			accepted++
		case errors.As(err, &e) && e.Code == kps.ErrServerBusy:
		default:
			t.Fatalf("submit: %v", err)
		}
	}
	if accepted != 1 {
		t.Fatalf("%d tasks accepted for one server", accepted)
	}
}

// vacuumAllVisible vacuums the tasks table until every page of it is marked all-visible, which
// index-only scans need to skip the table. A VACUUM cannot mark rows that a transaction older
// than them might still not see, and the tests of other packages share the database: CI once
// vacuumed while one of theirs was open, and the plan fetched every row from the table.
func vacuumAllVisible(t *testing.T, db *DB) {
	t.Helper()
	ctx := t.Context()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if _, err := db.write.ExecContext(ctx, "VACUUM ANALYZE tasks"); err != nil {
			t.Fatal(err)
		}
		var visible, pages int64
		if err := db.write.QueryRowContext(ctx,
			`SELECT relallvisible, relpages FROM pg_class WHERE oid = 'tasks'::regclass`).Scan(&visible, &pages); err != nil {
			t.Fatal(err)
		}
		if visible >= pages {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a minute of VACUUM, %d of %d pages of tasks are all-visible: a transaction stays open", visible, pages)
		}
	}
}

// TestPostgresTaskListPlan: on PostgreSQL too, a page of a project's failed tasks is an
// index-only scan of tasks_failed_list, and its total one of an index, that fetch nothing from
// the table (after a
// VACUUM, as autovacuum keeps it), in a custom plan and in the generic plan a prepared statement
// switches to, so the page costs the same however many tasks share the table.
func TestPostgresTaskListPlan(t *testing.T) {
	db := openPostgresTest(t, pgtest.Schema(t), nil)
	ctx := t.Context()
	// 20,000 tasks over 100 projects, one in ten FAILED: p7 has 200 tasks, 20 of them FAILED.
	if _, err := db.write.ExecContext(ctx, seedTasksPostgres, 1, 20_000, 1, 10); err != nil {
		t.Fatal(err)
	}
	vacuumAllVisible(t, db)
	conn, err := db.read.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PREPARE failed_page AS "+db.bind(scanFailedTasks)); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		if _, err := conn.ExecContext(ctx, "SET plan_cache_mode = "+mode); err != nil {
			t.Fatal(err)
		}
		for _, offset := range []int{0, 15} {
			plan := planText(t)(conn.QueryContext(ctx, fmt.Sprintf(
				"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE failed_page('p7', 'p7', 10, %d)", offset)))
			// The total may be counted from either index; the page comes from tasks_failed_list.
			if strings.Count(plan, "Index Only Scan using") != 2 ||
				!strings.Contains(plan, "Index Only Scan using tasks_failed_list on tasks tasks_1") ||
				strings.Count(plan, "Heap Fetches: 0") != 2 || strings.Contains(plan, "Index Scan using") ||
				strings.Contains(plan, "tasks_pkey") || strings.Contains(plan, "Seq Scan") ||
				strings.Contains(plan, "Bitmap") {
				t.Errorf("%s, offset %d: plan\n%s", mode, offset, plan)
			}
		}
	}
	var n int
	rows, err := db.ReadTaskList(ctx, "p7", kps.FailedPhases, kps.Page{Limit: 10, Offset: 15})
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		n++
	}
	if total := rows.Total(); rows.Err() != nil || total != 20 || n != 5 {
		t.Fatalf("ReadTaskList: %d rows of %d, %v", n, total, rows.Err())
	}
	rows.Close()
}

// TestPostgresServerLastTaskPlan: on PostgreSQL, a server's last task (one server, or a page
// of them) is a backward index-only scan of tasks_by_server that stops at the first entry, then
// one primary-key lookup, once per server of the page, never a scan of the tasks table.
func TestPostgresServerLastTaskPlan(t *testing.T) {
	db := openPostgresTest(t, pgtest.Schema(t), nil)
	ctx := t.Context()
	// 20,000 tasks over 100 projects, each on its own server s<g>; p7 has 200 of those servers.
	if _, err := db.write.ExecContext(ctx, seedTasksPostgres, 1, 20_000, 1, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := db.write.ExecContext(ctx, `INSERT INTO servers (project_id, id, name, address, port, login_user,
    host_keys, sshd_config, created, updated)
SELECT 'p' || (g % 100), 's' || g, 's' || g, 'h', 22, 'root', '[]', '/etc/ssh/sshd_config', 1, 1
FROM generate_series(1, 20000) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.write.ExecContext(ctx, "ANALYZE tasks, servers"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, query string
		args        []any
		loops       string
	}{
		{"one server", selectServer, []any{"p7", "s107"}, "loops=1"},
		{"page", listServers, []any{"p7", 50, 100}, "loops=50"},
	} {
		plan := planText(t)(db.read.QueryContext(ctx, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) "+db.bind(c.query), c.args...))
		if !strings.Contains(plan, "Index Only Scan Backward using tasks_by_server on tasks t (actual rows=1 "+c.loops+")") ||
			!strings.Contains(plan, "Index Scan using tasks_pkey on tasks lt (actual rows=1 "+c.loops+")") ||
			strings.Contains(plan, "Seq Scan on tasks") || strings.Contains(plan, "Bitmap Heap Scan on tasks") {
			t.Errorf("%s: plan\n%s", c.name, plan)
		}
	}
}

// TestPostgresServerLockLetsBindingsIn: the lock a submission takes on a server row does not
// block a binding's insert for that server (whose foreign key locks the row FOR KEY SHARE). A
// finishing task upserts its binding after it bumped its project's task version, which the
// submission bumps next: had the server lock blocked the binding, the two would deadlock (seen
// in the crash rounds on PostgreSQL).
func TestPostgresServerLockLetsBindingsIn(t *testing.T) {
	db := openPostgresTest(t, pgtest.Schema(t), nil)
	ctx := context.Background()
	const project = "0123456789abcdef0123456789abcdef"
	if err := db.CreateServer(ctx, &kps.Server{ProjectID: project, ID: "s1", Name: "s1", Address: "192.0.2.1", Port: 22,
		User: "root", SSHDConfig: kps.DefaultSSHDConfig}, 0); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateKeyPair(ctx, &kps.KeyPair{ProjectID: project, Name: "k", Type: kps.TypeSSH, Scope: kps.ScopeUser,
		UserID: "u", PublicKey: "ssh-ed25519 AAAA", Fingerprint: "00", Algorithm: "ED25519"}, kps.KeyPairQuota{}); err != nil {
		t.Fatal(err)
	}
	holder, err := db.beginWrite(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback()
	if err := holder.lock(ctx, lockServer, project, "s1"); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	other, err := db.beginWrite(tctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback()
	if _, err := other.exec(tctx, upsertBinding, project, "s1", "k", "ssh-ed25519 AAAA", false, int64(1)); err != nil {
		t.Fatalf("a binding's insert waited for the server lock of a submission: %v", err)
	}
}

// planText returns a function that reads the lines of an EXPLAIN's answer as one text, failing
// t on an error (called on a query's results: planText(t)(conn.QueryContext(...))).
func planText(t *testing.T) func(*sql.Rows, error) string {
	return func(rows *sql.Rows, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var lines []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, line)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return strings.Join(lines, "\n")
	}
}
