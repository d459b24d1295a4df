// Package store persists everything OpenKPS keeps: identity, inventory, key pairs, tasks and
// bindings. *DB implements kps.Store on top of database/sql, and keeps what needs a transaction
// and nothing else: locks, the counts behind quotas and limits, guarded transitions of the task
// state machine (taskrun.go), unique indexes; the rules of what a task is are the service's
// (kps.TaskAdmission), which the store runs inside the submission's transaction. It also
// offers the read paths of kps (readpath.go): the per-request reads, the identity and task
// versions, the task list's rows.
//
// The SQL is written once, with "?" placeholders and portable constructs; what differs between
// engines (how to open, how a unique violation looks, the few statements that cannot be
// portable, where the versions live, the migrations) lives in an engine value built by
// sqlite.go or postgres.go (versions in versions_sqlite.go, versions_postgres.go), never in a
// test of the engine's name. SQLite (modernc.org/sqlite, pure Go) is the embedded engine;
// PostgreSQL (pgx through database/sql) the one several replicas share; store/storetest is the
// conformance suite every engine must pass. It imports the domain package only.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/openkps/kps"
)

// Options configure a DB.
type Options struct {
	// Now is the clock; default time.Now. Every transaction reads it once.
	Now func() time.Time
	// OnAudit, when set, receives each audit event once its transaction has committed (the
	// --audit-log stream); it must not block for long: the caller of the change waits.
	OnAudit func(ev *kps.AuditEvent)
}

// DB is the persistence engine; it implements kps.Store.
type DB struct {
	// write serialises writers. For SQLite it is a single connection whose transactions start
	// with BEGIN IMMEDIATE; for PostgreSQL it is the one pool, also used for reads.
	write *sql.DB
	// read serves reads; for SQLite, query-only connections that WAL lets run beside the writer.
	read *sql.DB
	eng  *engine
	now  func() time.Time
	// release frees the process-level lock on the database (SQLite: the flock on <path>.lock).
	release func() error
	// onAudit is Options.OnAudit.
	onAudit func(ev *kps.AuditEvent)
	// audit is the event the write transactions of this value record (Audit: a copy of the DB
	// that shares everything else); nil on the DB itself.
	audit *kps.AuditEvent

	// lockouts is made with the DB (a pointer, so that the copies Audit makes share it).
	lockouts *lockouts
	// group runs the write transactions as commit groups (SQLite; nil on PostgreSQL).
	group *groupWriter
}

var _ kps.Store = (*DB)(nil)

// engine is everything that differs between SQL databases.
//
// SQLite serialises all writers (one connection, BEGIN IMMEDIATE), so the check-then-write
// sequences of the store (busy server, key pair quota, queue capacity, the busy check of
// UpdateServer/DeleteServer, the access key limit, the first bootstrap) cannot race. Under
// PostgreSQL's READ COMMITTED they can: the engine's locks (row locks and transaction-scoped
// advisory locks, see postgres.go) serialise exactly those sequences, and SQLite has none. The
// partial unique index still guarantees one active task per server on both.
type engine struct {
	// name is "sqlite" or "postgres", for messages and tests; what differs is in the members
	// below, never decided on the name.
	name string
	// versions keeps the task and identity versions and makes the per-request reads: in this
	// process (SQLite, the only writer) or in the database (PostgreSQL). Each engine value has
	// its own, so it is built afresh for every DB.
	versions versionKeeper
	// migrations holds NNNN_name.sql files, applied in order.
	migrations fs.FS
	// rebind turns "?" placeholders into the engine's own; nil keeps them.
	rebind func(query string) string
	// isUniqueViolation reports whether err is a unique or primary key violation.
	isUniqueViolation func(err error) bool
	// claimTask moves the oldest claimable READY task of the project with the fewest RUNNING
	// tasks to RUNNING and returns it; claimIdleTask does so only for a project with none
	// (args of both: owner, lease_expires, updated, owner, now). Engine-specific: see
	// claimStatement.
	claimTask, claimIdleTask string
	// purgeLockouts deletes the lockout rows that say nothing any more (args: now three
	// times); it runs inside a transaction that holds row locks of its own, so on PostgreSQL it
	// skips rows another transaction holds rather than wait for them (a wait could close a
	// cycle with that transaction, which locks its rows in key order).
	purgeLockouts string
	// locks holds the statement that takes each lock; a lock the engine does not need (all of
	// them for SQLite, whose writer holds the database lock) is absent.
	locks map[lock]string
	// schemaMigrations creates the table of applied versions.
	schemaMigrations string
	// readTx are the options of read transactions: one snapshot for all their queries.
	readTx *sql.TxOptions
}

// lock names a lock a write transaction takes before a check-then-write sequence.
type lock int

const (
	// lockMigrations serialises replicas migrating one database at start (no args).
	lockMigrations lock = iota
	// lockBootstrap serialises the first-start bootstrap of replicas (no args).
	lockBootstrap
	// lockServer locks a server row: task submission, update and deletion (project, id).
	lockServer
	// lockKeyPairUse keeps a key pair from being deleted while a task is submitted with it
	// (project, name).
	lockKeyPairUse
	// lockKeyPairDelete locks a key pair row for its deletion (project, name).
	lockKeyPairDelete
	// lockKeyPairQuota serialises key pair creation per project for the quota (project).
	lockKeyPairQuota
	// lockTaskQueue serialises submissions that check the queue capacity (no args).
	lockTaskQueue
	// lockProjectTasks serialises submissions that check a project's limit of active tasks
	// (project).
	lockProjectTasks
	// lockServerQuota serialises server registration per project for the quota (project).
	lockServerQuota
	// lockUser locks a user row: the access key limit and the cap on live tokens (user).
	lockUser
)

// Close releases the database and its lock.
func (db *DB) Close() error {
	var errs []error
	if db.read != nil && db.read != db.write {
		errs = append(errs, db.read.Close())
	}
	if db.group != nil {
		db.group.close()
	}
	if db.write != nil {
		errs = append(errs, db.write.Close())
	}
	if db.release != nil {
		errs = append(errs, db.release())
		db.release = nil
	}
	return errors.Join(errs...)
}

// Ping reports whether the database answers: the readiness check of a replica. It goes through
// the read pool, so that SQLite's single writer connection, busy with a write, does not make
// the service look down.
func (db *DB) Ping(ctx context.Context) error { return db.read.PingContext(ctx) }

// txn is a transaction with the one "now" every change in it uses: a database/sql transaction,
// or on SQLite's writer a transaction of a commit group (groupcommit.go).
type txn struct {
	tx    txConn
	eng   *engine
	now   time.Time
	write bool
	// tasksOnly: the transaction changes tasks and bindings and nothing else (submitting,
	// claiming, marking, extending, finishing), so it does not move WriteVersion.
	tasksOnly bool
	// sawUncommitted: the transaction began after others of its SQLite commit group that
	// changed rows not committed yet (groupTx.sharesChanges; set by claims, which ask).
	sawUncommitted bool
	// changed are the projects whose task versions Commit bumps in this process (SQLite's
	// taskChanged).
	changed []string
	// ctx is the write transaction's context, for the audit events Commit inserts; audits are
	// those events (audit.go) and onAudit where they go once committed.
	ctx     context.Context
	audits  []*kps.AuditEvent
	onAudit func(ev *kps.AuditEvent)
}

// inWrite runs fn in one write transaction and commits it; an error of fn's rolls it back. It
// returns the transaction's time, which fn saw as tx.now.
func (db *DB) inWrite(ctx context.Context, fn func(tx *txn) error) (time.Time, error) {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return time.Time{}, err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return time.Time{}, err
	}
	if err := tx.Commit(); err != nil {
		return time.Time{}, err
	}
	return tx.now, nil
}

// beginWrite starts a write transaction (SQLite: BEGIN IMMEDIATE on the writer connection, so
// the write lock is taken up front and never upgraded).
func (db *DB) beginWrite(ctx context.Context) (*txn, error) {
	var tx txConn
	if db.group != nil {
		gtx, err := db.group.begin(ctx)
		if err != nil {
			return nil, err
		}
		tx = gtx
	} else {
		stx, err := db.write.BeginTx(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("begin: %w", err)
		}
		tx = stx
	}
	t := &txn{tx: tx, eng: db.eng, now: db.clock(), write: true, ctx: ctx, onAudit: db.onAudit}
	t.addAudit(db.audit)
	return t, nil
}

// txConn is what a txn runs its statements on and ends: *sql.Tx or *groupTx.
type txConn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	Commit() error
	Rollback() error
}

// beginRead starts a read-only transaction: several queries see one snapshot.
func (db *DB) beginRead(ctx context.Context) (*txn, error) {
	tx, err := db.read.BeginTx(ctx, db.eng.readTx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	return &txn{tx: tx, eng: db.eng, now: db.clock()}, nil
}

// clock returns now truncated to the stored precision, so that what a method returns equals
// what a later read returns.
func (db *DB) clock() time.Time { return fromMillis(db.now().UnixMilli()) }

// Commit commits the transaction, then lets the engine's versions count it (SQLite bumps its
// in-process versions here: after the commit, so that a reader who sees the new version also
// sees the change).
//
// A write transaction's audit events (audit.go) are inserted first, as its last statements: a
// failure to record them rolls the change back.
func (tx *txn) Commit() error {
	ids, err := tx.insertAudits()
	if err != nil {
		tx.tx.Rollback()
		return fmt.Errorf("record the audit event: %w", err)
	}
	err = tx.tx.Commit()
	tx.eng.versions.committed(tx)
	if err == nil {
		for i, ev := range tx.audits {
			ev.Committed(ids[i], tx.now)
			if tx.onAudit != nil {
				tx.onAudit(ev)
			}
		}
	}
	return err
}

// commitLater is Commit for a caller that may go on before the transaction is durable (a
// claim, whose worker logs in to the host meanwhile): on SQLite's group writer it returns once
// the transaction has left the writer, and committed waits for its group's commit; elsewhere
// (PostgreSQL, or a transaction with audit events to record) it commits first. The versions
// count the transaction once committed, as Commit's do.
func (tx *txn) commitLater() (committed func() error, err error) {
	gtx, ok := tx.tx.(*groupTx)
	if !ok || len(tx.audits) > 0 {
		if err := tx.Commit(); err != nil {
			return nil, err
		}
		return func() error { return nil }, nil
	}
	wait := gtx.CommitLater()
	done := make(chan struct{})
	var cerr error
	go func() {
		cerr = wait()
		tx.eng.versions.committed(tx)
		close(done)
	}()
	return func() error {
		<-done
		return cerr
	}, nil
}

// Rollback aborts the transaction; after Commit it is a no-op.
func (tx *txn) Rollback() error { return tx.tx.Rollback() }

// bind rewrites the placeholders of q for the engine.
func (e *engine) bind(q string) string {
	if e.rebind != nil {
		return e.rebind(q)
	}
	return q
}

func (db *DB) bind(q string) string { return db.eng.bind(q) }

func (tx *txn) bind(q string) string { return tx.eng.bind(q) }

func (tx *txn) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return tx.tx.ExecContext(ctx, tx.bind(q), args...)
}

func (tx *txn) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return tx.tx.QueryContext(ctx, tx.bind(q), args...)
}

func (tx *txn) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return tx.tx.QueryRowContext(ctx, tx.bind(q), args...)
}

// lock takes the engine's lock l for the rest of the transaction; a no-op when the engine
// needs none.
func (tx *txn) lock(ctx context.Context, l lock, args ...any) error {
	q, ok := tx.eng.locks[l]
	if !ok {
		return nil
	}
	if _, err := tx.exec(ctx, q, args...); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	return nil
}

// execOne runs a guarded statement and reports whether it changed exactly one row.
func (tx *txn) execOne(ctx context.Context, q string, args ...any) (bool, error) {
	n, err := tx.execCount(ctx, q, args...)
	return n == 1, err
}

// execCount runs a statement and returns how many rows it changed.
func (tx *txn) execCount(ctx context.Context, q string, args ...any) (int, error) {
	res, err := tx.exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// exists reports whether q returns a row.
func (tx *txn) exists(ctx context.Context, q string, args ...any) (bool, error) {
	var one int
	err := tx.queryRow(ctx, q, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// Times are stored as epoch milliseconds; 0 stands for the zero time.

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// String lists are stored as JSON arrays; nil is stored as [] so that "no pins" has one
// spelling the guarded PinHostKey update can test.
func encodeList(l []string) string {
	if l == nil {
		l = []string{}
	}
	b, _ := json.Marshal(l) // a []string always marshals
	return string(b)
}

func decodeList(s string) ([]string, error) {
	var l []string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, fmt.Errorf("decode string list: %w", err)
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}

// nullString maps "" to NULL for optional foreign keys.
func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// placeholders returns "?, ?, …" for n values.
func placeholders(n int) string {
	if n == 0 {
		return ""
	}
	b := make([]byte, 0, 3*n)
	for i := range n {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, '?')
	}
	return string(b)
}
