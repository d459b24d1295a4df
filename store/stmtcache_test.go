package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/openkps/kps"
)

// cacheConn opens a one-connection pool on a fresh SQLite file through the statement cache and
// returns it with a function that reads the connection's counters.
func cacheConn(t *testing.T) (*sql.DB, func() (hits, compiles, cached int)) {
	t.Helper()
	db, err := openSQLiteDB(sqliteDSN(filepath.Join(t.TempDir(), "c.db"), sqliteWriterParams))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	counters := func() (hits, compiles, cached int) {
		conn, err := db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Raw(func(dc any) error {
			c := dc.(*stmtCacheConn)
			hits, compiles, cached = c.hits, c.compiles, len(c.stmts)
			return nil
		})
		return
	}
	return db, counters
}

// TestStmtCacheReuses: a statement run again is taken from the cache, with its new arguments,
// and gives the right answers; a failing statement is not kept, and reports its error.
func TestStmtCacheReuses(t *testing.T) {
	db, counters := cacheConn(t)
	ctx := t.Context()
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := db.ExecContext(ctx, `INSERT INTO t (k, v) VALUES (?, ?)`, i, fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		var v string
		if err := db.QueryRowContext(ctx, `SELECT v FROM t WHERE k = ?`, i).Scan(&v); err != nil || v != fmt.Sprint("v", i) {
			t.Fatalf("row %d: %q %v", i, v, err)
		}
	}
	hits, compiles, _ := counters()
	if compiles != 3 || hits != 49+49 {
		t.Errorf("compiles %d hits %d, want 3 and 98", compiles, hits)
	}
	// A unique violation through a cached statement, then the statement works again.
	if _, err := db.ExecContext(ctx, `INSERT INTO t (k, v) VALUES (?, ?)`, 1, "again"); err == nil {
		t.Fatal("duplicate key accepted")
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO t (k, v) VALUES (?, ?)`, 100, "x"); err != nil {
		t.Fatalf("the statement after a failure: %v", err)
	}
	// Not compilable: the driver's error, and nothing kept.
	_, _, before := counters()
	if _, err := db.ExecContext(ctx, `INSERT INTO nowhere VALUES (1)`); err == nil {
		t.Fatal("a statement on a missing table ran")
	}
	if _, _, after := counters(); after != before {
		t.Errorf("a failed compile was cached: %d statements, was %d", after, before)
	}
}

// TestStmtCacheSameQueryWhileOpen: the same query run while its first rows are still being
// read gets its own statement; both read their own rows, and the cached one is reused after.
func TestStmtCacheSameQueryWhileOpen(t *testing.T) {
	db, counters := cacheConn(t)
	ctx := t.Context()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE t (k INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO t (k) VALUES (?)`, i); err != nil {
			t.Fatal(err)
		}
	}
	const q = `SELECT k FROM t WHERE k >= ? ORDER BY k`
	outer, err := tx.QueryContext(ctx, q, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for outer.Next() {
		var k int
		outer.Scan(&k)
		inner, err := tx.QueryContext(ctx, q, k+3)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for inner.Next() {
			n++
		}
		inner.Close()
		got = append(got, fmt.Sprintf("%d:%d", k, n))
	}
	if err := outer.Err(); err != nil {
		t.Fatal(err)
	}
	outer.Close()
	if want := "[0:2 1:1 2:0 3:0 4:0]"; fmt.Sprint(got) != want {
		t.Errorf("nested reads %v, want %s", got, want)
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM (`+q+`)`, 0).Scan(&n); err != nil || n != 5 {
		t.Fatalf("count %d %v", n, err)
	}
	tx.Rollback()
	// The table went with the rollback; once it is back, runs of q outside the transaction are
	// taken from the cache, its rows closed.
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (k INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	before, _, _ := counters()
	for range 2 {
		rows, err := db.QueryContext(ctx, q, 0)
		if err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	if after, _, _ := counters(); after != before+2 {
		t.Errorf("%d runs of the closed statement taken from the cache, want 2", after-before)
	}
}

// TestStmtCacheAfterSchemaChange: a cached statement whose table changed answers with the new
// schema (SQLite compiles it again), as a migration needs.
func TestStmtCacheAfterSchemaChange(t *testing.T) {
	db, _ := cacheConn(t)
	ctx := t.Context()
	exec := func(q string) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	exec(`CREATE TABLE t (a INTEGER)`)
	exec(`INSERT INTO t (a) VALUES (1)`)
	cols := func() int {
		rows, err := db.QueryContext(ctx, `SELECT * FROM t`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		c, _ := rows.Columns()
		return len(c)
	}
	if n := cols(); n != 1 {
		t.Fatalf("%d columns", n)
	}
	exec(`ALTER TABLE t ADD COLUMN b TEXT NOT NULL DEFAULT 'x'`)
	if n := cols(); n != 2 {
		t.Errorf("after ALTER TABLE the cached SELECT * returns %d columns, want 2", n)
	}
}

// TestStmtCacheBounded: past maxCachedStmts texts, statements run uncached and still work.
func TestStmtCacheBounded(t *testing.T) {
	db, counters := cacheConn(t)
	ctx := t.Context()
	for i := range maxCachedStmts + 20 {
		var v int
		if err := db.QueryRowContext(ctx, fmt.Sprintf("SELECT %d", i)).Scan(&v); err != nil || v != i {
			t.Fatalf("SELECT %d: %d %v", i, v, err)
		}
	}
	if _, _, cached := counters(); cached != maxCachedStmts {
		t.Errorf("%d statements cached, want the bound %d", cached, maxCachedStmts)
	}
}

// TestStmtCacheInTheStore: the store's own connections use the cache (a task's life reuses
// compiled statements), which the conformance suite then exercises on every method.
func TestStmtCacheInTheStore(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), nil)
	fixture(t, db, "s1")
	for i := range 3 {
		task := submitReset(t, db, fmt.Sprint("t", i), "s1")
		claimed, err := db.ClaimTask(t.Context(), "w", time.Minute)
		if err != nil || claimed == nil || claimed.ID != task.ID {
			t.Fatalf("claim: %v %v", claimed, err)
		}
		if err := db.FinishTask(t.Context(), claimed, kps.TaskOutcome{Success: true}); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := db.write.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Raw(func(dc any) error {
		c, ok := dc.(*stmtCacheConn)
		if !ok {
			t.Fatalf("the writer connection is a %T, not the statement cache", dc)
		}
		if c.hits == 0 {
			t.Errorf("three task lives reused no statement (%d compiled)", c.compiles)
		}
		return nil
	})
	var _ driver.Conn = (*stmtCacheConn)(nil)
}
