package store

import (
	"path/filepath"
	"testing"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/pgtest"
)

// TestRotationTotalsMigration: migration 0014 counts the servers of the rotations made before
// it into their rows, and leaves the drift checks that were RUNNING without a lease, so that
// the first sweep interrupts them.
func TestRotationTotalsMigration(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "kps.db")
		old := openAtVersion(t, path, 13)
		testRotationTotalsMigration(t, old, func() *DB { old.Close(); return openTest(t, path, nil) })
	})
	t.Run("postgres", func(t *testing.T) {
		pgtest.URL(t)
		dsn := pgtest.Schema(t)
		testRotationTotalsMigration(t, openPostgresAtVersion(t, dsn, 13), func() *DB { return openPostgresTest(t, dsn, nil) })
	})
}

func testRotationTotalsMigration(t *testing.T, old *DB, reopen func() *DB) {
	ctx := t.Context()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := old.write.ExecContext(ctx, old.bind(q), args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`INSERT INTO rotations (project_id, id, user_id, keypair_name, batch_size, max_failures, state, created, updated)
VALUES ('p', 'r1', 'u', 'new', 2, 0, 'RUNNING', 1, 1), ('p', 'r2', 'u', 'new', 2, 0, 'COMPLETED', 2, 2)`)
	for i, st := range []string{"PENDING", "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "SKIPPED"} {
		exec(`INSERT INTO rotation_servers (project_id, rotation_id, seq, server_id, state, updated) VALUES ('p', 'r1', ?, ?, ?, 1)`,
			i, "s"+string(rune('a'+i)), st)
	}
	exec(`INSERT INTO rotation_servers (project_id, rotation_id, seq, server_id, state, updated) VALUES ('p', 'r2', 0, 'sa', 'SUCCEEDED', 2)`)
	exec(`INSERT INTO drift_checks (id, project_id, state, servers, created) VALUES ('c', 'p', 'RUNNING', '[]', 1)`)
	db := reopen()
	defer db.Close()
	for id, want := range map[string]kps.RotationTotals{
		"r1": {Servers: 6, Pending: 2, Running: 1, Succeeded: 1, Failed: 1, Skipped: 1},
		"r2": {Servers: 1, Succeeded: 1},
	} {
		r, err := db.Rotation(ctx, "p", id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Totals != want {
			t.Errorf("rotation %s after the migration: totals %+v, want %+v", id, r.Totals, want)
		}
	}
	if refs, err := db.ActiveRotations(ctx); err != nil || len(refs) != 1 || refs[0].ID != "r1" {
		t.Errorf("active rotations after the migration: %+v %v", refs, err)
	}
	if n, err := db.InterruptDriftChecks(ctx, false); err != nil || n != 1 {
		t.Errorf("the first sweep interrupted %d (%v), want the check that ran before the migration", n, err)
	}
}
