package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/openkps/kps"
)

// The read path of the running and failed task lists (kps.TaskListReader): one statement per
// page, its rows handed to the read model (api/kpsv3/tasklist) as the driver returns them.

const (
	// scanTasks is the list routes' query: the total and the page in one statement, only the
	// columns they show. The count reads only the index tasks_by_project_phase; the page's
	// rows are chosen from the same index in §4.1 order (it carries seq: SQLite's rowid,
	// PostgreSQL's INCLUDE), so an offset skips index entries, not rows, and a page costs the
	// same at offset 0 and deep in the list (docs/query-plans.md); only the page's rows are
	// then read, by seq. The LEFT JOINs keep one row carrying the total (with NULL columns)
	// when the page is empty. %s: the phase placeholders, twice.
	scanTasks = `SELECT c.total, t.id, t.operation, t.phase, t.created, t.server_id, t.server_name,
    t.keypair_name, t.error_code, t.error_msg
FROM (SELECT COUNT(*) AS total FROM tasks WHERE project_id = ? AND phase IN (%[1]s)) c
LEFT JOIN (SELECT seq FROM tasks WHERE project_id = ? AND phase IN (%[1]s)
           ORDER BY created DESC, id LIMIT ? OFFSET ?) p ON TRUE
LEFT JOIN tasks t ON t.seq = p.seq
ORDER BY t.created DESC, t.id`

	// scanFailedTasks is scanTasks for the failed list, which grows without bound while the
	// running list is bounded by the queue: the total and the page come from the partial index
	// tasks_failed_list (migration 0006), which holds every column the list shows, so neither
	// touches the table. A project's failed tasks are spread over the table, one page each;
	// in the index they are neighbours. The phase is a literal so that the planners match the
	// index's predicate (SQLite only ever does; PostgreSQL not in a generic plan).
	scanFailedTasks = `SELECT c.total, p.id, p.operation, p.phase, p.created, p.server_id, p.server_name,
    p.keypair_name, p.error_code, p.error_msg
FROM (SELECT COUNT(*) AS total FROM tasks WHERE project_id = ? AND phase = 'FAILED') c
LEFT JOIN (SELECT id, operation, phase, created, server_id, server_name, keypair_name, error_code, error_msg
           FROM tasks WHERE project_id = ? AND phase = 'FAILED'
           ORDER BY created DESC, id LIMIT ? OFFSET ?) p ON TRUE
ORDER BY p.created DESC, p.id`
)

// ReadTaskList implements kps.TaskListReader: the page and the total from one statement, the
// rows handed over as the driver returns them (sql.RawBytes: no copy into strings, no
// mapping), and the project's task version as of the read.
func (db *DB) ReadTaskList(ctx context.Context, projectID string, phases []kps.Phase, p kps.Page) (kps.TaskListRows, error) {
	version, before := db.eng.versions.pageVersionBefore(projectID)
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, err
	}
	if !before {
		if version, err = db.eng.versions.pageVersionInSnapshot(ctx, tx, projectID); err != nil {
			tx.Rollback()
			return nil, err
		}
	}
	var query string
	args := make([]any, 0, 2*len(phases)+4)
	if len(phases) == 1 && phases[0] == kps.PhaseFailed {
		query = scanFailedTasks
		args = append(args, projectID, projectID, p.Limit, p.Offset)
	} else {
		args = append(args, projectID)
		for _, ph := range phases {
			args = append(args, string(ph))
		}
		args = append(args, args...)
		args = append(args, p.Limit, p.Offset)
		query = fmt.Sprintf(scanTasks, placeholders(len(phases)))
	}
	rows, err := tx.query(ctx, query, args...)
	if err != nil {
		tx.Rollback()
		return nil, err
	}
	r := &taskListRows{tx: tx, rows: rows, version: version, total: -1}
	r.dest = []any{&r.count, (*sql.RawBytes)(&r.row.ID), (*sql.RawBytes)(&r.row.Operation), (*sql.RawBytes)(&r.row.Phase),
		(*sql.RawBytes)(&r.row.Created), (*sql.RawBytes)(&r.row.ServerID), (*sql.RawBytes)(&r.row.ServerName),
		(*sql.RawBytes)(&r.row.KeyPairName), (*sql.RawBytes)(&r.row.ErrorCode), (*sql.RawBytes)(&r.row.ErrorMsg)}
	return r, nil
}

// taskListRows is the cursor ReadTaskList returns: every row of the statement carries the
// total; an empty page is one row with the total and NULL columns.
type taskListRows struct {
	tx      *txn
	rows    *sql.Rows
	row     kps.TaskRow
	count   sql.RawBytes
	dest    []any
	total   int
	version int64
	err     error
	done    bool
}

func (r *taskListRows) Next() bool {
	if r.done {
		return false
	}
	if !r.rows.Next() {
		r.done = true
		if r.err = r.rows.Err(); r.err == nil && r.total < 0 {
			r.err = errors.New("read task list: no total")
		}
		return false
	}
	if r.err = r.rows.Scan(r.dest...); r.err != nil {
		r.done = true
		return false
	}
	if r.total < 0 {
		if r.total, r.err = strconv.Atoi(string(r.count)); r.err != nil {
			r.done = true
			r.err = fmt.Errorf("read task list: total %q: %w", r.count, r.err)
			return false
		}
	}
	if r.row.ID == nil {
		r.done = true // the empty page's row, which only carries the total
		return false
	}
	return true
}

func (r *taskListRows) Row() *kps.TaskRow { return &r.row }
func (r *taskListRows) Total() int        { return r.total }
func (r *taskListRows) Version() int64    { return r.version }
func (r *taskListRows) Err() error        { return r.err }

func (r *taskListRows) Close() error {
	err := r.rows.Close()
	r.tx.Rollback()
	return err
}
