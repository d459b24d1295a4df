package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/openkps/kps"
)

// Task versions: a number per project that grows with every committed change to the project's
// tasks, so that the task list read model can serve a rendered page for as long as the version
// it was rendered at is current (docs/decisions.md, "Task list cache").
//
// Every statement that inserts, deletes or changes the phase of tasks is followed, in its
// transaction, by taskChanged with the projects it touched. Where the versions live depends on
// who else can write, which is the engine's to say (engine.versions):
//
//   - SQLite: this process is the database's only writer (the flock), so the versions are
//     counters in memory, bumped after the commit. Reading one costs no query
//     (versions_sqlite.go).
//   - PostgreSQL: replicas write concurrently, so the versions are rows of task_versions
//     (migration 0004) bumped in the same transaction as the change: a replica that reads the
//     version after a commit sees the bump, and one that reads it in the snapshot of a list
//     reads the version of exactly that list (versions_postgres.go).

// versionKeeper is how an engine keeps the task and identity versions and makes the
// per-request reads (kps.RequestReads).
type versionKeeper interface {
	// taskChanged records, in tx, that tasks of the projects changed.
	taskChanged(ctx context.Context, tx *txn, projects []string) error
	// committed runs after tx's commit was tried: a failed commit counts too (a needless bump
	// costs a cache miss, a missing one a stale page).
	committed(tx *txn)
	// taskVersion reads the project's task version now.
	taskVersion(ctx context.Context, db *DB, projectID string) (int64, error)
	// pageVersion returns the version a page of the project's tasks will show: either read
	// before the page's snapshot is taken (before: every change it counts is committed, so the
	// page shows it) or, when before reports false, read as the first statement of the page's
	// read transaction (inSnapshot).
	pageVersionBefore(projectID string) (v int64, before bool)
	pageVersionInSnapshot(ctx context.Context, tx *txn, projectID string) (int64, error)
	// identityVersion reads the identity version (identityversion.go); false where the
	// engine keeps none.
	identityVersion(ctx context.Context, db *DB) (int64, bool, error)
	// writeVersion is the number of write transactions this process committed, and whether
	// that number moves with every change to the database (this process its only writer).
	writeVersion() (int64, bool)
	// readRequest makes the reads of kps.RequestReads.
	readRequest(ctx context.Context, db *DB, projectID, clientLockKey string) (*kps.RequestReads, error)
}

// taskChanged records that the transaction changed tasks of the projects.
func (tx *txn) taskChanged(ctx context.Context, projects ...string) error {
	return tx.eng.versions.taskChanged(ctx, tx, projects)
}

// TaskVersion implements kps.TaskListReader: a map read on SQLite, one primary-key read on
// PostgreSQL.
func (db *DB) TaskVersion(ctx context.Context, projectID string) (int64, error) {
	return db.eng.versions.taskVersion(ctx, db, projectID)
}

func queryTaskVersion(row *sql.Row) (int64, error) {
	var v int64
	err := row.Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

// projectsOf reads the project_id column a RETURNING statement yields: the distinct projects
// and the number of rows.
func projectsOf(rows *sql.Rows) (projects []string, n int, err error) {
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, 0, err
		}
		n++
		if !seen[p] {
			seen[p] = true
			projects = append(projects, p)
		}
	}
	return projects, n, rows.Err()
}

// WriteVersion returns the number of write transactions this process has committed that may
// have changed something other than tasks and bindings, and whether that number moves with
// every such change to the database, which holds only where this process is its only writer
// (SQLite; not PostgreSQL, where replicas write too). Whatever was read from the database
// other than tasks and bindings is still current while it has not moved: the lockout reads
// are remembered on it. The transactions of the task runner (claim, write mark, lease,
// outcome) and submissions do not move it, so that a fleet's hundreds of task transitions a
// second do not make every request of its polling clients read again.
func (db *DB) WriteVersion() (int64, bool) { return db.eng.versions.writeVersion() }
