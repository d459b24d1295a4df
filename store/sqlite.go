package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"database/sql"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/sqlite/*.sql
var sqliteMigrations embed.FS

// sqliteBusyTimeout is how long a connection waits for a lock held elsewhere before
// SQLITE_BUSY. Writers queue on the single writer connection inside this process, so the wait
// only matters for checkpoints and for outside tools holding the file.
const sqliteBusyTimeout = 5 * time.Second

// sqliteWriterPragmas configure the writer connection.
//
//   - journal_mode(WAL): readers never block the writer and the writer never blocks readers.
//   - synchronous(FULL): every commit fsyncs the WAL. NORMAL is crash-safe for a process crash
//     but may lose the last commits on power loss or an OS crash; an accepted task (HTTP 200 to
//     the caller) or a recorded binding must not vanish, and one fsync per commit is cheap at
//     the write rate of this service.
//   - foreign_keys(1): SQLite leaves foreign keys off unless asked, per connection.
//   - _txlock=immediate: BEGIN IMMEDIATE takes the write lock at BEGIN, so a transaction never
//     has to upgrade a read lock to a write lock, the classic SQLITE_BUSY deadlock in WAL mode.
var sqliteWriterParams = url.Values{
	"_pragma": {
		fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()),
		"journal_mode(WAL)",
		"synchronous(FULL)",
		"foreign_keys(1)",
	},
	"_txlock": {"immediate"},
}

// sqliteReaderParams configure the read connections: query_only(1) makes a write through the
// wrong pool fail loudly instead of racing the writer.
var sqliteReaderParams = url.Values{
	"_pragma": {
		fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()),
		"foreign_keys(1)",
		"query_only(1)",
	},
}

// sqliteClaimTask and sqliteClaimIdleTask are the claim statements for SQLite. SQLite has no
// row locks (and no FOR UPDATE SKIP LOCKED); it needs none because every write transaction
// holds the database's single write lock from BEGIN IMMEDIATE, so the candidates and the
// update see one state.
var (
	sqliteClaimTask     = claimStatement(false, false)
	sqliteClaimIdleTask = claimStatement(false, true)
)

func sqliteEngine() *engine {
	sub, err := fs.Sub(sqliteMigrations, "migrations/sqlite")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return &engine{
		name:              "sqlite",
		versions:          &sqliteVersions{},
		migrations:        sub,
		isUniqueViolation: sqliteIsUniqueViolation,
		claimTask:         sqliteClaimTask,
		purgeLockouts:     `DELETE FROM lockouts WHERE window_end <= ? AND locked_until <= ? AND in_flight_until <= ?`,
		claimIdleTask:     sqliteClaimIdleTask,
		schemaMigrations:  createSchemaMigrations,
		readTx:            &sql.TxOptions{ReadOnly: true},
	}
}

func sqliteIsUniqueViolation(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	// Extended result codes are on in modernc.org/sqlite.
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// sqliteDSN builds a modernc.org/sqlite URI for path. The path is escaped because SQLite decodes
// %HH in URIs and would cut it at '?' or '#'.
func sqliteDSN(path string, params url.Values) string {
	u := url.URL{Path: path}
	return "file:" + u.EscapedPath() + "?" + params.Encode()
}

// OpenSQLite opens (creating if needed) the SQLite database at path, migrates it and returns
// the store. A second process (or a second OpenSQLite in this one) on the same path fails while
// the first has it open: the database is guarded by an exclusive flock on <path>.lock.
func OpenSQLite(ctx context.Context, path string, opt Options) (*DB, error) {
	if path == "" || path == ":memory:" {
		return nil, errors.New("store: a database file path is required")
	}
	release, err := lockFile(path + ".lock")
	if err != nil {
		if errors.Is(err, errLocked) {
			return nil, fmt.Errorf("database %s is in use by another kps process", path)
		}
		return nil, fmt.Errorf("lock database %s: %w", path, err)
	}
	db := &DB{eng: sqliteEngine(), now: opt.Now, release: release, onAudit: opt.OnAudit}
	db.lockouts = &lockouts{db: db}
	if db.now == nil {
		db.now = time.Now
	}
	if err := db.openSQLite(ctx, path); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// openSQLiteDB opens a pool of connections to dsn that keep their compiled statements
// (stmtcache.go).
func openSQLiteDB(dsn string) (*sql.DB, error) {
	c, err := sqlite.NewConnector(dsn)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(stmtCacheConnector{c}), nil
}

func (db *DB) openSQLite(ctx context.Context, path string) error {
	// The file holds sealed secrets and everything else of the service: create it private.
	// SQLite gives the -wal and -shm files the mode of the database file.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open database %s: %w", path, err)
	}
	f.Close()
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}

	db.write, err = openSQLiteDB(sqliteDSN(abs, sqliteWriterParams))
	if err != nil {
		return err
	}
	// One writer connection: writers queue for it in this process (groupcommit.go: in arrival
	// order, and sharing commits) rather than in SQLite's busy handler.
	db.write.SetMaxOpenConns(1)
	db.write.SetMaxIdleConns(1)
	db.write.SetConnMaxLifetime(0)
	db.write.SetConnMaxIdleTime(0)
	if err := db.write.PingContext(ctx); err != nil {
		return fmt.Errorf("open database %s: %w", path, err)
	}
	db.group = newGroupWriter(db.write)
	// The writer connection switched the file to WAL; migrate before readers open it.
	if err := db.migrate(ctx); err != nil {
		return fmt.Errorf("migrate database %s: %w", path, err)
	}

	db.read, err = openSQLiteDB(sqliteDSN(abs, sqliteReaderParams))
	if err != nil {
		return err
	}
	n := max(4, runtime.GOMAXPROCS(0))
	db.read.SetMaxOpenConns(n)
	db.read.SetMaxIdleConns(n)
	if err := db.read.PingContext(ctx); err != nil {
		return fmt.Errorf("open database %s: %w", path, err)
	}
	return nil
}
