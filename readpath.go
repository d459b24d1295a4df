package kps

import (
	"context"
	"time"
)

// The read paths: what the store offers beyond the domain's transitions so that the hot
// requests cost no more than they must. Each is a capability cmd/kps passes by name to the one
// that uses it; nothing discovers them by type assertion, so a store wrapped in a decorator
// keeps them only where they are passed on (docs/architecture.md, "Read paths").

// RequestReads is what an authenticated request of a project consults before its handler: the
// identity version (iam's token validation cache), the project's task version (the task list
// cache) and the lock of the client's IP (auth.md §12.4), read together once the request has
// arrived, so that every change committed before it shows.
type RequestReads struct {
	// IdentityVersion moves with every committed change to what a token validation reads;
	// IdentityVersioned is false where the store keeps none.
	IdentityVersion   int64
	IdentityVersioned bool
	// TaskVersion is the version of the project's tasks (TaskListReader.TaskVersion).
	TaskVersion int64
	// ClientLockKey is the key the lock was read for (ClientLockKey of the client's IP) and
	// ClientLockedUntil when that lock ends, zero when the key is not locked.
	ClientLockKey     string
	ClientLockedUntil time.Time
}

// ClientLockedFor is how much longer, at now, the client's IP key stays locked, if key is the
// key the reads were made for: ok is false otherwise, and the caller reads the lock itself.
func (r *RequestReads) ClientLockedFor(now time.Time, key string) (wait time.Duration, ok bool) {
	if r == nil || key == "" || key != r.ClientLockKey {
		return 0, false
	}
	if wait = r.ClientLockedUntil.Sub(now); wait < 0 {
		wait = 0
	}
	return wait, true
}

// RequestReader makes the reads of RequestReads: on PostgreSQL in one round trip, shared by the
// concurrent requests that ask the same (each gets a read that started after it asked); on
// SQLite, whose process is the database's only writer, mostly from memory.
type RequestReader interface {
	ReadRequest(ctx context.Context, projectID, clientLockKey string) (*RequestReads, error)
}

// IdentityVersions is the read path of iam's token validation cache: a version that moves with
// every committed change to what a validation reads, on every replica.
type IdentityVersions interface {
	// IdentityVersion returns the version, and false where the store keeps none.
	IdentityVersion(ctx context.Context) (int64, bool, error)
}

// TaskListReader is the store's read path of the running and failed task lists (§2.15, §2.16),
// which the list read model (api/kpsv3/tasklist) renders and caches.
type TaskListReader interface {
	// TaskVersion returns the version of the project's tasks: it grows with every committed
	// change to them (a task created, changing phase, swept or deleted) as seen by every
	// replica, so a page rendered at one version is current as long as the version is. A lease
	// renewal is not a change: no list shows the lease.
	TaskVersion(ctx context.Context, projectID string) (int64, error)
	// ReadTaskList starts reading a page of the project's tasks in phases, in §4.1 order
	// (newest first, ties by ID), with the total of those tasks and the project's task version
	// as of the read: the rows reflect at least every change that version counts. The caller
	// must Close the rows.
	ReadTaskList(ctx context.Context, projectID string, phases []Phase, p Page) (TaskListRows, error)
}

// TaskListRows is a page of a task list as the database returns it, row by row, without a
// copy: the read model pulls the rows and renders them.
type TaskListRows interface {
	// Next advances to the next row; false at the end of the page or on an error (Err).
	Next() bool
	// Row is the current row; its slices are valid until the next call of Next or Close.
	Row() *TaskRow
	// Total is the number of tasks in the list, valid once Next has returned false.
	Total() int
	// Version is the project's task version the page was read at.
	Version() int64
	Err() error
	Close() error
}

// TaskRow is one task as the running and failed task lists show it (§2.15, §2.16), read
// straight from the database for the lists' hot path. Created is the creation time as decimal
// epoch milliseconds (the wire's task_time).
type TaskRow struct {
	ID, Operation, Phase, Created                          []byte
	ServerID, ServerName, KeyPairName, ErrorCode, ErrorMsg []byte
}
