package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Group commit of SQLite's write transactions.
//
// SQLite has one writer, and every commit fsyncs the WAL (synchronous=FULL): on the disks this
// service runs on that is milliseconds a commit, all of it holding the one writer. A fleet
// bind makes about three commits per task (claim, write mark, outcome) from every worker at
// once, plus the submissions, and queued behind that fsync each took tens of milliseconds
// (issue 18: claim, mark and outcome 15–23 ms each on average at 32 workers).
//
// So the transactions that arrive while another one runs share its commit: each write
// transaction of this process is a savepoint of one SQLite transaction (BEGIN IMMEDIATE), and
// that transaction commits when no further writer is waiting (or the group is large or old
// enough), with one fsync for the whole group. A transaction's Commit releases its savepoint
// and returns only once the group's COMMIT is durable, so what a caller is told is as durable
// as before; a Rollback rolls back to its savepoint and leaves the others' changes. Writers
// are served in the order they asked (a channel's queue), so submissions never wait behind
// more claims than arrived before them. Changes of a transaction that has not returned yet
// are seen by the transactions of its group after it, which is what one writer after the
// other sees anyway; other connections see them with the COMMIT.
//
// PostgreSQL has many writers and commits each transaction on its own connection: it does not
// use this.

// Bounds of one group: it commits at the latest once this many transactions joined it or this
// long after it began, so that a steady stream of writers cannot keep the first one waiting.
const (
	groupMaxMembers = 64
	groupMaxAge     = 20 * time.Millisecond
)

// lazyCommitDelay bounds how long a group whose last member can wait for its commit (a pending
// claim, CommitLater) stays open for the next writer to join it, when nobody waits: a worker's
// claim then shares the fsync of the next mark, outcome or claim instead of taking one of its
// own, while its worker logs in to the host (tens of milliseconds). Every fsync holds the one
// writer (issue 18: at 32 workers the writer spent about half its time in fsync).
const lazyCommitDelay = 10 * time.Millisecond

// groupWriter runs the write transactions of one SQLite writer connection.
type groupWriter struct {
	pool *sql.DB
	// maxAge is groupMaxAge and lazy lazyCommitDelay (tests change them).
	maxAge, lazy time.Duration
	// token is held by the transaction that runs now (a buffered channel of one: its waiting
	// senders are served first come, first served).
	token chan struct{}

	// mu guards waiting (transactions waiting for the token) and deferred (the transaction that
	// last held the token left the group's commit to the next one).
	mu       sync.Mutex
	waiting  int
	deferred bool

	// Under the token:
	conn    *sql.Conn
	group   *commitGroup // the open SQLite transaction's group; nil when none is open
	changes int64        // total_changes() of the connection when the group's transaction began
	members int          // transactions that joined the group
	eager   int          // members whose Commit waits for the group's commit (not CommitLater)
	begun   time.Time
	// commits counts the groups committed (tests).
	commits atomic.Int64
}

// commitGroup is the fate of one SQLite transaction's members.
type commitGroup struct {
	done chan struct{} // closed once COMMIT (or the failure) is known
	err  error
}

func newGroupWriter(pool *sql.DB) *groupWriter {
	return &groupWriter{pool: pool, maxAge: groupMaxAge, lazy: lazyCommitDelay, token: make(chan struct{}, 1)}
}

// groupTx is one write transaction: a savepoint of the group's SQLite transaction.
type groupTx struct {
	w     *groupWriter
	conn  *sql.Conn
	group *commitGroup
	ended bool
}

// savepoint names every transaction's savepoint: transactions run one after the other, so only
// one is ever open, and one name keeps the statement cache to three statements.
const savepoint = "kps_tx"

// begin waits for the writer (in arrival order), opens the group's transaction if none is
// open, and starts a savepoint.
func (w *groupWriter) begin(ctx context.Context) (*groupTx, error) {
	w.mu.Lock()
	w.waiting++
	w.mu.Unlock()
	select {
	case w.token <- struct{}{}:
		w.mu.Lock()
		w.waiting--
		w.deferred = false // this one carries the group on
		w.mu.Unlock()
	case <-ctx.Done():
		w.mu.Lock()
		w.waiting--
		orphan := w.deferred && w.waiting == 0
		if orphan {
			w.deferred = false
		}
		w.mu.Unlock()
		if orphan {
			// The transaction before left the group's commit to a waiter, and this was the
			// last one: it commits the group rather than leave its members waiting.
			w.token <- struct{}{}
			if w.group != nil {
				w.commit(false)
			}
			<-w.token
		}
		return nil, ctx.Err()
	}
	if w.group == nil {
		if err := w.open(ctx); err != nil {
			<-w.token
			return nil, err
		}
	}
	t := &groupTx{w: w, conn: w.conn, group: w.group}
	if _, err := w.conn.ExecContext(context.WithoutCancel(ctx), "SAVEPOINT "+savepoint); err != nil {
		t.ended = true
		w.leave(true)
		return nil, fmt.Errorf("begin: %w", err)
	}
	return t, nil
}

// open starts the group's SQLite transaction on the writer connection.
func (w *groupWriter) open(ctx context.Context) error {
	if w.conn == nil {
		c, err := w.pool.Conn(ctx)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		w.conn = c
	}
	// Not interrupted with the caller's context either: an interrupt that lands as BEGIN
	// returns could leave the pooled connection inside a transaction nobody owns.
	if _, err := w.conn.ExecContext(context.WithoutCancel(ctx), "BEGIN IMMEDIATE"); err != nil {
		w.conn.Close()
		w.conn = nil
		return fmt.Errorf("begin: %w", err)
	}
	if err := w.conn.QueryRowContext(context.WithoutCancel(ctx), "SELECT total_changes()").Scan(&w.changes); err != nil {
		_, _ = w.conn.ExecContext(context.Background(), "ROLLBACK")
		w.conn.Close()
		w.conn = nil
		return fmt.Errorf("begin: %w", err)
	}
	w.group, w.members, w.eager, w.begun = &commitGroup{done: make(chan struct{})}, 0, 0, time.Now()
	return nil
}

// sharesChanges reports whether the group's transactions before t changed rows that are not
// committed yet (rows a rolled-back one changed count too: the answer errs on the side of yes).
// t sees them; the other connections do not until the group commits.
func (t *groupTx) sharesChanges(ctx context.Context) (bool, error) {
	var n int64
	if err := t.conn.QueryRowContext(ctx, "SELECT total_changes()").Scan(&n); err != nil {
		return false, err
	}
	return n != t.w.changes, nil
}

// leave hands the writer on. The group's transaction commits now when nobody waits for the
// writer, when the group is full or old, or when it broke (failed); else the next writer
// joins it and the commit comes with a later one. It returns the group to wait for.
func (w *groupWriter) leave(failed bool) *commitGroup {
	return w.leaveWith(failed, false)
}

// leaveWith is leave; lazy (a member that can wait for the commit) leaves the group open even
// when nobody waits, for at most w.lazy, unless a member already waits for the commit: the
// next writer joins it, or a timer commits it.
func (w *groupWriter) leaveWith(failed, lazy bool) *commitGroup {
	g := w.group
	w.mu.Lock()
	full := failed || w.members >= groupMaxMembers || time.Since(w.begun) >= w.maxAge
	now := full || (w.waiting == 0 && (!lazy || w.eager > 0))
	alone := !now && w.waiting == 0
	w.deferred = !now
	w.mu.Unlock()
	if now {
		w.commit(failed)
	}
	<-w.token
	if alone {
		time.AfterFunc(w.lazy, func() { w.commitOpen(g) })
	}
	return g
}

// commitOpen commits g if it is still the open group (a lazy member left it open and no writer
// came to carry it on).
func (w *groupWriter) commitOpen(g *commitGroup) {
	w.token <- struct{}{}
	if w.group == g {
		w.mu.Lock()
		w.deferred = false
		w.mu.Unlock()
		w.commit(false)
	}
	<-w.token
}

// commit ends the group's transaction (COMMIT, or ROLLBACK when it broke) and tells its
// members. Under the token.
func (w *groupWriter) commit(broken bool) {
	g := w.group
	if g == nil {
		return
	}
	w.group = nil
	// A commit is not cancelled with the context of whichever transaction happens to run it:
	// the group's other members wait for it.
	ctx := context.Background()
	if broken {
		_, _ = w.conn.ExecContext(ctx, "ROLLBACK")
		g.err = errors.New("the write transaction was rolled back with the transactions committed in the same group")
	} else if _, err := w.conn.ExecContext(ctx, "COMMIT"); err != nil {
		_, _ = w.conn.ExecContext(ctx, "ROLLBACK")
		g.err = err
	}
	w.commits.Add(1)
	// The connection goes back to the pool between groups (where the writer pool's other users,
	// tests among them, may take it).
	w.conn.Close()
	w.conn = nil
	close(g.done)
}

// Commit releases the savepoint and waits for the group's commit.
func (t *groupTx) Commit() error {
	if t.ended {
		return sql.ErrTxDone
	}
	t.ended = true
	if _, err := t.conn.ExecContext(context.Background(), "RELEASE "+savepoint); err != nil {
		// The savepoint is gone with the transaction (SQLite rolls a transaction back on some
		// errors): the group is broken.
		<-t.w.leave(true).done
		return fmt.Errorf("commit: %w", err)
	}
	t.w.members++
	t.w.eager++
	g := t.w.leave(false)
	<-g.done
	return g.err
}

// CommitLater is Commit that hands the writer on without waiting for the group's commit:
// committed waits for it and says whether the transaction's changes are durable (nil) or were
// rolled back with their group. Until committed returns nil the caller must act as if the
// transaction might never have happened; the transactions after it are in the same group or a
// later one, so a later transaction's successful Commit implies this one's.
func (t *groupTx) CommitLater() (committed func() error) {
	if t.ended {
		return func() error { return sql.ErrTxDone }
	}
	t.ended = true
	if _, err := t.conn.ExecContext(context.Background(), "RELEASE "+savepoint); err != nil {
		<-t.w.leave(true).done
		return func() error { return fmt.Errorf("commit: %w", err) }
	}
	t.w.members++
	g := t.w.leaveWith(false, true)
	return func() error {
		<-g.done
		return g.err
	}
}

// Rollback undoes the transaction's changes and leaves the group's; a no-op once ended.
func (t *groupTx) Rollback() error {
	if t.ended {
		return nil
	}
	t.ended = true
	ctx := context.Background()
	_, err := t.conn.ExecContext(ctx, "ROLLBACK TO "+savepoint)
	if err == nil {
		_, err = t.conn.ExecContext(ctx, "RELEASE "+savepoint)
	}
	// A group left with no member to commit is committed all the same: an empty COMMIT
	// writes nothing.
	t.w.leave(err != nil)
	return err
}

// The statements of a group transaction run to their end whatever the caller's context does:
// an interrupted INSERT, UPDATE or DELETE makes SQLite roll back the whole transaction, which
// would take the group's other transactions with it. They are short; a caller whose context
// ended rolls back to its savepoint afterwards.

func (t *groupTx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return t.conn.ExecContext(context.WithoutCancel(ctx), q, args...)
}

func (t *groupTx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return t.conn.QueryContext(context.WithoutCancel(ctx), q, args...)
}

func (t *groupTx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return t.conn.QueryRowContext(context.WithoutCancel(ctx), q, args...)
}

// close releases the writer connection (DB.Close).
func (w *groupWriter) close() {
	select {
	case w.token <- struct{}{}:
	case <-time.After(5 * time.Second):
		return // a writer still runs; the pool's Close ends it
	}
	// Every member of a group still open has ended its transaction and waits for the commit
	// (a lazy one's timer has not fired yet): it is committed.
	if w.group != nil {
		w.commit(false)
	}
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
	<-w.token
}
