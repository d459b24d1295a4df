package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/pgtest"
)

// The list benchmarks compare one request — the failed tasks of project "p7", limit 1000, at
// offset 0 and at a deep offset — in a table of 1,000 tasks and in a table of 1,000,000 tasks
// over 100 projects. Project p7 has exactly 1,000 FAILED tasks in both tables, so both answers
// are the same size (1,000 rows, total 1,000); only the rest of the table differs. Figures and
// plans: docs/query-plans.md.
//
// Seeding generates the rows inside the database (one statement, no round trip per row), with
// g running from start to stop by step; arguments: start, stop, step, failedEvery. Task g
// belongs to project "p" || (g % 100) and is FAILED when (g / 100) % failedEvery = 0.
const (
	seedTasksPostgres = `INSERT INTO tasks (id, project_id, operation, phase, server_id, server_name,
    keypair_name, public_key, created, updated, error_code, error_msg)
SELECT md5(g::text), 'p' || (g % 100), 'RESET', CASE WHEN (g / 100) % $4 = 0 THEN 'FAILED' ELSE 'SUCCESS' END,
    's' || g, 's' || g, 'kp', 'ssh-ed25519 AAAA', 1700000000000 + g, 1700000000000 + g, 'KPS.6601', 'x'
FROM generate_series($1::bigint, $2::bigint, $3::bigint) g`
	seedTasksSQLite = `WITH RECURSIVE g(n) AS (SELECT ?1 UNION ALL SELECT n + ?3 FROM g WHERE n + ?3 <= ?2)
INSERT INTO tasks (id, project_id, operation, phase, server_id, server_name, keypair_name,
    public_key, created, updated, error_code, error_msg)
SELECT printf('%032d', n), 'p' || (n % 100), 'RESET', CASE WHEN (n / 100) % ?4 = 0 THEN 'FAILED' ELSE 'SUCCESS' END,
    's' || n, 's' || n, 'kp', 'ssh-ed25519 AAAA', 1700000000000 + n, 1700000000000 + n, 'KPS.6601', 'x'
FROM g`
)

// listTable is one table size of the benchmark and how its rows are generated.
type listTable struct {
	name                           string
	start, stop, step, failedEvery int
}

var listTables = []listTable{
	// 1,000 tasks, all of them p7's and FAILED: g = 7, 107, …, 99 907.
	{"tasks=1000", 7, 7 + 100*999, 100, 1},
	// 1,000,000 tasks, 10,000 per project, one in ten FAILED: p7 has 1,000 FAILED of 10,000.
	{"tasks=1000000", 1, 1_000_000, 1, 10},
}

// listFailedProject and listFailedCount are the project every benchmark lists and the number
// of its failed tasks, the same in both tables.
const (
	listFailedProject = "p7"
	listFailedCount   = 1000
	listDeepOffset    = 990
)

// seedListTable fills the tasks table of db and analyses it, once per table size and run.
func seedListTable(b *testing.B, db *DB, seed string, tb listTable) {
	ctx := context.Background()
	start := time.Now()
	if _, err := db.write.ExecContext(ctx, seed, tb.start, tb.stop, tb.step, tb.failedEvery); err != nil {
		b.Fatal(err)
	}
	// PostgreSQL: VACUUM as autovacuum would after a bulk insert; it sets the visibility map
	// that index-only scans need. SQLite's ANALYZE is its only counterpart.
	vacuum := "ANALYZE"
	if db.eng.isPostgres() {
		vacuum = "VACUUM ANALYZE tasks"
	}
	if _, err := db.write.ExecContext(ctx, vacuum); err != nil {
		b.Fatal(err)
	}
	var n int
	if err := db.write.QueryRowContext(ctx, "SELECT COUNT(*) FROM tasks").Scan(&n); err != nil {
		b.Fatal(err)
	}
	b.Logf("%s: %d rows seeded in %s", tb.name, n, time.Since(start).Round(time.Millisecond))
	// The plan of the route's statement on this table, first page, for docs/query-plans.md.
	explain := "EXPLAIN QUERY PLAN "
	if db.eng.isPostgres() {
		explain = "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "
	}
	rows, err := db.read.QueryContext(ctx, db.bind(explain+scanFailedTasks), listFailedProject, listFailedProject, 1000, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var plan []string
	for rows.Next() {
		dest := make([]any, len(cols))
		for i := range dest {
			dest[i] = new(sql.RawBytes)
		}
		if err := rows.Scan(dest...); err != nil {
			b.Fatal(err)
		}
		plan = append(plan, string(*dest[len(dest)-1].(*sql.RawBytes)))
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	b.Logf("%s: plan of the failed list, offset 0:\n%s", tb.name, strings.Join(plan, "\n"))
}

// benchmarkListFailed runs the same request at offset 0 and at a deep offset against each
// table, the sizes one after the other for each offset, so that a machine whose load changes
// during the run affects both alike. "route" is ReadTaskList, what GET /failed-tasks runs (the
// columns it shows, handed over without copies).
func benchmarkListFailed(b *testing.B, dbs []*DB) {
	for _, method := range []string{"route"} {
		for _, offset := range []int{0, listDeepOffset} {
			for i, tb := range listTables {
				db := dbs[i]
				b.Run(fmt.Sprintf("%s/offset=%d/%s", method, offset, tb.name), func(b *testing.B) {
					ctx := context.Background()
					page := kps.Page{Limit: 1000, Offset: offset}
					for b.Loop() {
						n := 0
						rows, err := db.ReadTaskList(ctx, listFailedProject, kps.FailedPhases, page)
						if err != nil {
							b.Fatal(err)
						}
						for rows.Next() {
							n++
						}
						total := rows.Total()
						if err := rows.Close(); err != nil || rows.Err() != nil {
							b.Fatal(err, rows.Err())
						}
						if total != listFailedCount || n != listFailedCount-offset {
							b.Fatalf("%d tasks of %d", n, total)
						}
					}
				})
			}
		}
	}
}

func BenchmarkListFailedTasksSQLite(b *testing.B) {
	var dbs []*DB
	for _, tb := range listTables {
		db, err := OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "kps.db"), Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		seedListTable(b, db, seedTasksSQLite, tb)
		dbs = append(dbs, db)
	}
	benchmarkListFailed(b, dbs)
}

func BenchmarkListFailedTasksPostgres(b *testing.B) {
	var dbs []*DB
	for _, tb := range listTables {
		db := openPostgresTest(b, pgtest.Schema(b), nil)
		seedListTable(b, db, seedTasksPostgres, tb)
		dbs = append(dbs, db)
	}
	benchmarkListFailed(b, dbs)
}
