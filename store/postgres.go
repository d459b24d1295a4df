package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	// The database/sql driver "pgx": the domain code stays on database/sql for both engines.
	_ "github.com/jackc/pgx/v5/stdlib"
)

//go:embed migrations/postgres/*.sql
var postgresMigrations embed.FS

// postgresPurgeLockouts skips the rows other transactions hold (engine.purgeLockouts).
const postgresPurgeLockouts = `DELETE FROM lockouts WHERE lock_key IN (SELECT lock_key FROM lockouts
WHERE window_end <= ? AND locked_until <= ? AND in_flight_until <= ? FOR UPDATE SKIP LOCKED)`

// postgresClaimTask and postgresClaimIdleTask are the claim statements for PostgreSQL. Under
// READ COMMITTED the claims of several workers and replicas run concurrently: the chosen
// candidate is locked FOR UPDATE SKIP LOCKED, so a concurrent claim passes over it to the next
// candidate instead of waiting for it (and then finding it taken). See claimStatement.
var (
	postgresClaimTask     = claimStatement(true, false)
	postgresClaimIdleTask = claimStatement(true, true)
)

// postgresSchemaMigrations differs from SQLite's only in BIGINT: "applied" holds epoch
// milliseconds, which overflow PostgreSQL's 32-bit INTEGER.
const postgresSchemaMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name    TEXT NOT NULL,
    applied BIGINT NOT NULL
)`

// postgresAdvisoryLock takes a transaction-scoped advisory lock named by the text after it.
// The key includes current_schema(): stores in different schemas of one database (the
// conformance suite) do not wait for each other, replicas on one schema do.
const postgresAdvisoryLock = `SELECT pg_advisory_xact_lock(hashtextextended('kps:' || current_schema() || ':' || `

// postgresLocks are the locks that SQLite's single writer makes unnecessary. Row locks are taken
// before the checks they protect: under READ COMMITTED every later statement of the transaction
// then sees what the previous holder committed.
var postgresLocks = map[lock]string{
	lockMigrations: postgresAdvisoryLock + `'migrations', 0))`,
	lockBootstrap:  postgresAdvisoryLock + `'bootstrap', 0))`,
	// FOR NO KEY UPDATE, not FOR UPDATE: it serialises the submissions, updates and deletion
	// of a server, and must not block the foreign-key check (FOR KEY SHARE) of a finishing
	// task's binding upsert. That task already holds its project's task_versions row, which a
	// submission updates next: a deadlock (TestPostgresServerLockLetsBindingsIn). DeleteServer's
	// DELETE takes the stronger lock itself, after its busy check under this one has excluded
	// a running task (the only writer of a binding).
	lockServer:        `SELECT 1 FROM servers WHERE project_id = ? AND id = ? FOR NO KEY UPDATE`,
	lockKeyPairUse:    `SELECT 1 FROM keypairs WHERE project_id = ? AND name = ? FOR SHARE`,
	lockKeyPairDelete: `SELECT 1 FROM keypairs WHERE project_id = ? AND name = ? FOR UPDATE`,
	// The quota counts rows that do not exist yet: no row to lock, so an advisory lock per
	// project.
	lockKeyPairQuota: postgresAdvisoryLock + `'keypairs:' || CAST(? AS TEXT), 0))`,
	lockTaskQueue:    postgresAdvisoryLock + `'task-queue', 0))`,
	lockProjectTasks: postgresAdvisoryLock + `'project-tasks:' || CAST(? AS TEXT), 0))`,
	lockServerQuota:  postgresAdvisoryLock + `'servers:' || CAST(? AS TEXT), 0))`,
	lockUser:         `SELECT 1 FROM users WHERE id = ? FOR UPDATE`,
}

func postgresEngine() *engine {
	sub, err := fs.Sub(postgresMigrations, "migrations/postgres")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return &engine{
		name:              "postgres",
		versions:          &postgresVersions{},
		migrations:        sub,
		rebind:            postgresRebind,
		isUniqueViolation: postgresIsUniqueViolation,
		claimTask:         postgresClaimTask,
		purgeLockouts:     postgresPurgeLockouts,
		claimIdleTask:     postgresClaimIdleTask,
		locks:             postgresLocks,
		schemaMigrations:  postgresSchemaMigrations,
		// REPEATABLE READ: a page and its total (or a page and its markers) come from one
		// snapshot, as they do under SQLite's read transactions.
		readTx: &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead},
	}
}

// isPostgres reports whether the engine is PostgreSQL: for tests and benchmarks, which set up
// what the engine's tables need; the store itself decides on the engine's members, never on
// its name.
func (e *engine) isPostgres() bool { return e.name == "postgres" }

// postgresUniqueViolation is SQLSTATE unique_violation.
const postgresUniqueViolation = "23505"

func postgresIsUniqueViolation(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == postgresUniqueViolation
}

// postgresRebind turns the "?" placeholders of the store's SQL into $1, $2, …; a "?" inside a
// string literal, a quoted identifier or a comment stays.
func postgresRebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			end := strings.IndexByte(q[i+1:], c)
			if end < 0 {
				b.WriteString(q[i:])
				return b.String()
			}
			b.WriteString(q[i : i+end+2])
			i += end + 1
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			end := strings.IndexByte(q[i:], '\n')
			if end < 0 {
				b.WriteString(q[i:])
				return b.String()
			}
			b.WriteString(q[i : i+end])
			i += end - 1
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// postgresMaxConns bounds each replica's pool: several replicas share the server's
// max_connections.
const postgresMaxConns = 16

// OpenPostgres connects to the PostgreSQL database at url (postgres://user:pass@host:port/db?…,
// any parameter pgx accepts, e.g. search_path), applies the pending migrations under an
// advisory lock, so that several replicas may start at once, and returns the store. Any number
// of processes may open the same database.
func OpenPostgres(ctx context.Context, url string, opt Options) (*DB, error) {
	db := &DB{eng: postgresEngine(), now: opt.Now}
	if db.now == nil {
		db.now = time.Now
	}
	var err error
	db.write, err = sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	db.write.SetMaxOpenConns(postgresMaxConns)
	db.write.SetMaxIdleConns(postgresMaxConns)
	db.write.SetConnMaxIdleTime(5 * time.Minute)
	// Reads and writes share the pool: PostgreSQL's MVCC needs no split.
	db.read = db.write
	if err := db.write.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate database: %w", err)
	}
	return db, nil
}
