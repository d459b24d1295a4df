package store

import (
	"context"
	"fmt"

	"github.com/openkps/kps"
)

// selectTaskQueue is the queue's depth in one statement. Each part reads a partial index
// alone (migration 0001: tasks_ready_queue for the READY count and the oldest, which is its
// first entry; tasks_running_leases for the RUNNING count), so a scrape costs the same whatever
// the number of finished tasks in the table. The phases are literals so that the planners
// match the indexes' predicates.
const selectTaskQueue = `SELECT (SELECT COUNT(*) FROM tasks WHERE phase = 'READY'),
    (SELECT COUNT(*) FROM tasks WHERE phase = 'RUNNING'),
    COALESCE((SELECT MIN(created) FROM tasks WHERE phase = 'READY'), 0)`

// TaskQueue implements kps.TaskQueueReader: the READY and RUNNING tasks of every project and
// replica, and the submission time of the oldest READY one.
func (db *DB) TaskQueue(ctx context.Context) (kps.TaskQueue, error) {
	q := kps.TaskQueue{Now: db.clock()}
	var oldest int64
	if err := db.read.QueryRowContext(ctx, db.bind(selectTaskQueue)).Scan(&q.Ready, &q.Running, &oldest); err != nil {
		return kps.TaskQueue{}, fmt.Errorf("reading the task queue: %w", err)
	}
	q.OldestReady = fromMillis(oldest)
	return q, nil
}
