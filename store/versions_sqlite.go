package store

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/openkps/kps"
)

// sqliteVersions keeps the versions in this process, the database's only writer (the flock):
// counters bumped after each commit, read without a query.
type sqliteVersions struct {
	tasks  sync.Map // project ID → *atomic.Int64; only projects whose tasks changed since start
	writes atomic.Int64
}

var _ versionKeeper = (*sqliteVersions)(nil)

func (v *sqliteVersions) task(projectID string) int64 {
	if c, ok := v.tasks.Load(projectID); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

// taskChanged defers the bump to the commit: a reader who sees the new version must see the
// change too.
func (v *sqliteVersions) taskChanged(_ context.Context, tx *txn, projects []string) error {
	tx.changed = append(tx.changed, projects...)
	return nil
}

// committed counts the write transaction, unless it changed only tasks and bindings
// (txn.tasksOnly), and bumps the projects whose tasks it changed.
func (v *sqliteVersions) committed(tx *txn) {
	if !tx.write {
		return
	}
	if !tx.tasksOnly {
		v.writes.Add(1)
	}
	for _, p := range tx.changed {
		c, ok := v.tasks.Load(p)
		if !ok {
			c, _ = v.tasks.LoadOrStore(p, new(atomic.Int64))
		}
		c.(*atomic.Int64).Add(1)
	}
}

func (v *sqliteVersions) taskVersion(_ context.Context, _ *DB, projectID string) (int64, error) {
	return v.task(projectID), nil
}

// pageVersionBefore: SQLite takes a read transaction's snapshot at its first read, so a
// version read before it counts only changes the page shows.
func (v *sqliteVersions) pageVersionBefore(projectID string) (int64, bool) {
	return v.task(projectID), true
}

func (v *sqliteVersions) pageVersionInSnapshot(context.Context, *txn, string) (int64, error) {
	panic("store: SQLite reads the page version before the snapshot")
}

func (v *sqliteVersions) identityVersion(context.Context, *DB) (int64, bool, error) {
	return v.writes.Load(), true, nil
}

func (v *sqliteVersions) writeVersion() (int64, bool) { return v.writes.Load(), true }

// readRequest costs no query unless the client's lock is not remembered at this write version.
func (v *sqliteVersions) readRequest(ctx context.Context, db *DB, projectID, clientLockKey string) (*kps.RequestReads, error) {
	r := &kps.RequestReads{IdentityVersion: v.writes.Load(), IdentityVersioned: true, TaskVersion: v.task(projectID),
		ClientLockKey: clientLockKey}
	if clientLockKey != "" {
		until, err := db.Lockouts().(*lockouts).lockedUntil(ctx, []any{clientLockKey})
		if err != nil {
			return nil, err
		}
		r.ClientLockedUntil = fromMillis(until)
	}
	return r, nil
}
