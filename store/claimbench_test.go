package store

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/openkps/kps/internal/pgtest"
)

// The claim benchmarks measure one claim statement — the fair claim of issue 13 and, for
// comparison, the oldest-first claim it replaced — in a write transaction that is rolled back,
// so the queue is the same at every iteration. Queues: the fleet benchmark's (one project, 200
// READY tasks, 32 RUNNING), one project filling the service-wide queue (10,000 READY), and the
// same 10,000 tasks spread over 10 and over 1,000 projects. Figures: docs/RELIABILITY.md §8.

// oldestFirstClaim is the claim statement before issue 13 (SQLite's; PostgreSQL's had FOR
// UPDATE SKIP LOCKED in the subquery). Args: owner, lease_expires, updated, owner, now.
const oldestFirstClaim = `
UPDATE tasks
SET phase = 'RUNNING', lease_owner = ?, lease_expires = ?, attempt = attempt + 1, updated = ?
WHERE seq = (SELECT seq FROM tasks WHERE phase = 'READY' AND ` + `(NOT caller_auth OR holder = ?
      OR NOT EXISTS (SELECT 1 FROM replicas r WHERE r.id = tasks.holder AND r.expires >= ?))` + `
             ORDER BY created, seq LIMIT 1 %s)
  AND phase = 'READY'
RETURNING ` + taskColumns

// Seeding generates the rows inside the database; arguments: count, projects, running. Task g
// belongs to project "p" || (g % projects); the first running tasks of project p0 are RUNNING.
const (
	seedQueueSQLite = `WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n + 1 < ?1)
INSERT INTO tasks (id, project_id, operation, phase, server_id, server_name, keypair_name,
    public_key, created, updated, lease_owner, lease_expires, attempt)
SELECT printf('%032d', n), 'p' || (n % ?2), 'RESET', CASE WHEN n / ?2 < ?3 AND n % ?2 = 0 THEN 'RUNNING' ELSE 'READY' END,
    's' || n, 's' || n, 'kp', 'ssh-ed25519 AAAA', 1700000000000 + n, 1700000000000 + n, 'w', 1800000000000, 1
FROM g`
	seedQueuePostgres = `INSERT INTO tasks (id, project_id, operation, phase, server_id, server_name,
    keypair_name, public_key, created, updated, lease_owner, lease_expires, attempt)
SELECT md5(g::text), 'p' || (g % $2), 'RESET', CASE WHEN g / $2 < $3 AND g % $2 = 0 THEN 'RUNNING' ELSE 'READY' END,
    's' || g, 's' || g, 'kp', 'ssh-ed25519 AAAA', 1700000000000 + g, 1700000000000 + g, 'w', 1800000000000, 1
FROM generate_series(0, $1 - 1) g`
)

type claimQueue struct {
	name                  string
	ready, projects, runs int
}

var claimQueues = []claimQueue{
	{"fleet-1x200", 200, 1, 32},
	{"one-project-10000", 10000, 1, 32},
	{"10-projects-10000", 10000, 10, 32},
	{"1000-projects-10000", 10000, 1000, 32},
}

func BenchmarkClaimTaskSQLite(b *testing.B) {
	for _, q := range claimQueues {
		b.Run(q.name, func(b *testing.B) {
			db, err := OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "kps.db"), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			benchmarkClaim(b, db, seedQueueSQLite, q, "")
		})
	}
}

func BenchmarkClaimTaskPostgres(b *testing.B) {
	pgtest.URL(b)
	for _, q := range claimQueues {
		b.Run(q.name, func(b *testing.B) {
			benchmarkClaim(b, openPostgresTest(b, pgtest.Schema(b), nil), seedQueuePostgres, q, "FOR UPDATE SKIP LOCKED")
		})
	}
}

func benchmarkClaim(b *testing.B, db *DB, seed string, q claimQueue, lock string) {
	ctx := b.Context()
	total := q.ready + q.runs
	if _, err := db.write.ExecContext(ctx, db.bind(seed), total, q.projects, q.runs); err != nil {
		b.Fatal(err)
	}
	if db.eng.isPostgres() {
		if _, err := db.write.ExecContext(ctx, "VACUUM ANALYZE tasks"); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now().UnixMilli()
	for _, c := range []struct {
		name, statement string
		args            []any
	}{
		{"fair", db.eng.claimTask, []any{"w", now + 30000, now, "w", now}},
		{"idle-project", db.eng.claimIdleTask, []any{"w", now + 30000, now, "w", now}},
		{"oldest-first", fmt.Sprintf(oldestFirstClaim, lock), []any{"w", now + 30000, now, "w", now}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				tx, err := db.beginWrite(ctx)
				if err != nil {
					b.Fatal(err)
				}
				var id string
				err = tx.queryRow(ctx, c.statement, c.args...).Scan(&id, new(any), new(any), new(any), new(any), new(any),
					new(any), new(any), new(any), new(any), new(any), new(any), new(any), new(any), new(any), new(any),
					new(any), new(any), new(any), new(any), new(any))
				if err != nil && !(c.name == "idle-project" && q.projects == 1) {
					b.Fatal(err)
				}
				tx.Rollback()
			}
		})
	}
}
