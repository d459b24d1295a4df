package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/pgtest"
)

// Seeding statements for the list benchmarks: n tasks over 100 projects ("p0"…"p99"), one in
// ten FAILED, the rest SUCCESS. Engine-specific because each generates rows its own way.
const (
	seedTasksPostgres = `INSERT INTO tasks (id, project_id, operation, phase, server_id, server_name,
    keypair_name, public_key, created, updated, error_code, error_msg)
SELECT md5(g::text), 'p' || (g % 100), 'RESET', CASE WHEN (g / 100) % 10 = 0 THEN 'FAILED' ELSE 'SUCCESS' END,
    's' || g, 's' || g, 'kp', 'ssh-ed25519 AAAA', 1700000000000 + g, 1700000000000 + g, 'KPS.6601', 'x'
FROM generate_series(1, $1) g`
	seedTasksSQLite = `WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?)
INSERT INTO tasks (id, project_id, operation, phase, server_id, server_name, keypair_name,
    public_key, created, updated, error_code, error_msg)
SELECT printf('%032d', n), 'p' || (n % 100), 'RESET', CASE WHEN (n / 100) % 10 = 0 THEN 'FAILED' ELSE 'SUCCESS' END,
    's' || n, 's' || n, 'kp', 'ssh-ed25519 AAAA', 1700000000000 + n, 1700000000000 + n, 'KPS.6601', 'x'
FROM g`
)

// benchmarkListFailed lists one project's failed tasks (limit 1000, §4.1 order) with n tasks in
// the table. The figures and the plans are in docs/query-plans.md.
func benchmarkListFailed(b *testing.B, db *DB, seed string, n int) {
	ctx := context.Background()
	if _, err := db.write.ExecContext(ctx, seed, n); err != nil {
		b.Fatal(err)
	}
	if _, err := db.write.ExecContext(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		tasks, total, err := db.ListTasks(ctx, "p7", kps.FailedPhases, kps.Page{Limit: 1000})
		if err != nil {
			b.Fatal(err)
		}
		if total != n/1000 || len(tasks) != min(total, 1000) {
			b.Fatalf("%d tasks of %d", len(tasks), total)
		}
	}
}

var listSizes = []int{1_000, 1_000_000}

func BenchmarkListFailedTasksSQLite(b *testing.B) {
	for _, n := range listSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			db, err := OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "kps.db"), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			benchmarkListFailed(b, db, seedTasksSQLite, n)
		})
	}
}

func BenchmarkListFailedTasksPostgres(b *testing.B) {
	for _, n := range listSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			db := openPostgresTest(b, pgtest.Schema(b), nil)
			benchmarkListFailed(b, db, seedTasksPostgres, n)
		})
	}
}
