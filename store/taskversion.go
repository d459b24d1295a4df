package store

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
)

// Task versions: a number per project that grows with every committed change to the project's
// tasks, so that the API can serve a rendered task list for as long as the version it was
// rendered at is current (docs/decisions.md, "Task list cache").
//
// Every statement that inserts, deletes or changes the phase of tasks is followed, in its
// transaction, by taskChanged with the projects it touched. Where the versions live depends on
// who else can write:
//
//   - SQLite: this process is the database's only writer (the flock), so the versions are
//     counters in memory, bumped after the commit. Reading one costs no query.
//   - PostgreSQL: replicas write concurrently, so the versions are rows of task_versions
//     (migration 0004) bumped in the same transaction as the change: a replica that reads the
//     version after a commit sees the bump, and one that reads it in the snapshot of a list
//     reads the version of exactly that list.

const (
	// bumpTaskVersion is the same statement on both engines, but only PostgreSQL runs it.
	bumpTaskVersion = `INSERT INTO task_versions (project_id, version) VALUES (?, 1)
ON CONFLICT (project_id) DO UPDATE SET version = task_versions.version + 1`
	selectTaskVersion = `SELECT version FROM task_versions WHERE project_id = ?`
)

// taskVersions are the in-process versions (SQLite). The zero version of a project is 0; the
// map only grows with the projects whose tasks changed since the process started. writes
// counts the committed write transactions that may have changed more than tasks and bindings
// (WriteVersion).
type taskVersions struct {
	m      sync.Map // project ID → *atomic.Int64
	writes atomic.Int64
}

func newTaskVersions() *taskVersions { return &taskVersions{} }

func (v *taskVersions) get(projectID string) int64 {
	if v == nil {
		return 0
	}
	if c, ok := v.m.Load(projectID); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

// bump counts a committed write transaction (when write) and increments the versions of the
// projects whose tasks it changed; nil-safe, as a store opened without in-process versions
// (PostgreSQL) has none.
func (v *taskVersions) bump(projects []string, write bool) {
	if v == nil {
		return
	}
	if write {
		v.writes.Add(1)
	}
	for _, p := range projects {
		c, ok := v.m.Load(p)
		if !ok {
			c, _ = v.m.LoadOrStore(p, new(atomic.Int64))
		}
		c.(*atomic.Int64).Add(1)
	}
}

// taskChanged records that the transaction changed tasks of the projects. PostgreSQL bumps
// their rows now, in sorted order so that two transactions bumping several projects (two
// replicas' sweepers) cannot deadlock; SQLite bumps its counters when the transaction commits.
func (tx *txn) taskChanged(ctx context.Context, projects ...string) error {
	if tx.eng.name == "sqlite" {
		tx.changed = append(tx.changed, projects...)
		return nil
	}
	projects = slices.Clone(projects)
	slices.Sort(projects)
	for _, p := range slices.Compact(projects) {
		if _, err := tx.exec(ctx, bumpTaskVersion, p); err != nil {
			return err
		}
	}
	return nil
}

// TaskVersion implements kps.TaskStore: a map read on SQLite, one primary-key read on
// PostgreSQL, made with the request's other reads under WithRequestReads.
func (db *DB) TaskVersion(ctx context.Context, projectID string) (int64, error) {
	if db.eng.name == "sqlite" {
		return db.versions.get(projectID), nil
	}
	if m := requestReadsOf(ctx, db); m != nil {
		if v, ok, err := m.taskVersion(ctx, projectID); ok || err != nil {
			return v, err
		}
	}
	return queryTaskVersion(db.read.QueryRowContext(ctx, db.bind(selectTaskVersion), projectID))
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
// other than tasks and bindings is still current while it has not moved: iam caches token
// validations and the lockout check on it. The transactions of the task runner (claim, write
// mark, lease, outcome) and submissions do not move it, so that a fleet's hundreds of task
// transitions a second do not make every request of its polling clients validate again.
func (db *DB) WriteVersion() (int64, bool) {
	if db.eng.name != "sqlite" || db.versions == nil {
		return 0, false
	}
	return db.versions.writes.Load(), true
}
