package store

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"testing/fstest"
	"time"

	"github.com/openkps/kps/internal/pgtest"
)

// onlyUpTo keeps the migrations of fsys up to version: what an older binary knew.
func onlyUpTo(t *testing.T, e *engine, version int) {
	t.Helper()
	ms, err := loadMigrations(e.migrations)
	if err != nil {
		t.Fatal(err)
	}
	old := fstest.MapFS{}
	for _, m := range ms {
		if m.version <= version {
			old[fmt.Sprintf("%04d_%s.sql", m.version, m.name)] = &fstest.MapFile{Data: []byte(m.sql)}
		}
	}
	e.migrations = old
}

// openPostgresAtVersion opens the schema of dsn migrated only up to version.
func openPostgresAtVersion(t *testing.T, dsn string, version int) *DB {
	t.Helper()
	db := &DB{eng: postgresEngine(), now: time.Now}
	onlyUpTo(t, db.eng, version)
	var err error
	if db.write, err = sql.Open("pgx", dsn); err != nil {
		t.Fatal(err)
	}
	db.read = db.write
	if err := db.migrate(t.Context()); err != nil {
		db.Close()
		t.Fatal(err)
	}
	return db
}

// TestTaskWritesMigration: migration 0008 marks the tasks that ran before it by the rule of
// the release before (docs/decisions.md): a failed bind counts as having reached its write
// unless its code says it failed before it (a refused login, no privileges…), except when the
// message says a cut write could not be checked; a disabling bind counts for the configuration
// when interrupted, timed out or lost.
func TestTaskWritesMigration(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "kps.db")
		testTaskWritesMigration(t, openAtVersion(t, path, 7), func() *DB { return openTest(t, path, nil) })
	})
	t.Run("postgres", func(t *testing.T) {
		pgtest.URL(t)
		dsn := pgtest.Schema(t)
		testTaskWritesMigration(t, openPostgresAtVersion(t, dsn, 7), func() *DB { return openPostgresTest(t, dsn, nil) })
	})
}

func testTaskWritesMigration(t *testing.T, old *DB, reopen func() *DB) {
	ctx := t.Context()
	for i, task := range []struct {
		key, code, msg string
		attempt        int
		disable        bool
	}{
		{"refused", "KPS.6603", "SSH authentication failed.", 1, false},
		{"interrupted", "KPS.6609", "Task interrupted.", 1, false},
		{"cut", "KPS.6601", "… authorized_keys holds either the old or the new content, never a mix.", 1, false},
		{"never-ran", "KPS.6609", "Task interrupted.", 0, false},
		{"disabling", "KPS.6602", "deadline", 1, true},
		{"no-sudo", "KPS.6607", "no privileges", 1, true},
	} {
		q := fmt.Sprintf(`INSERT INTO tasks (id, project_id, operation, phase, server_id, server_name, keypair_name,
    public_key, disable_password, created, updated, error_code, error_msg, attempt)
VALUES ('t%d', 'p', 'RESET', 'FAILED', 's', 's', '%s', 'ssh-ed25519 AAAA%s', %v, %d, %d, '%s', '%s', %d)`,
			i, task.key, task.key, task.disable, 1000+i, 1000+i, task.code, task.msg, task.attempt)
		if _, err := old.write.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	db := reopen()
	keys, disabled, err := db.UnconfirmedKeys(ctx, "p", "s")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ssh-ed25519 AAAAcut", "ssh-ed25519 AAAAdisabling", "ssh-ed25519 AAAAinterrupted"}
	if !slices.Equal(keys, want) || !disabled {
		t.Fatalf("after the migration: UnconfirmedKeys = %q, maybe disabled %v; want %q, true", keys, disabled, want)
	}
}
