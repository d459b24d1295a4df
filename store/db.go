// Package store persists everything OpenKPS keeps: identity, inventory, key pairs, tasks and
// bindings. *DB implements kps.Store on top of database/sql. The SQL is written once, with "?"
// placeholders and portable constructs; what differs between engines (how to open, how a unique
// violation looks, the few statements that cannot be portable, the migrations) lives in an
// engine value, so that PostgreSQL can be added as a second engine without a second code path.
// SQLite (modernc.org/sqlite, pure Go) is the engine today; the conformance suite in
// store/storetest is what every engine must pass.
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
}

// DB is the persistence engine; it implements kps.Store.
type DB struct {
	// write serialises writers. For SQLite it is a single connection whose transactions start
	// with BEGIN IMMEDIATE; for PostgreSQL it would be the one pool.
	write *sql.DB
	// read serves reads; for SQLite, query-only connections that WAL lets run beside the writer.
	read *sql.DB
	eng  *engine
	now  func() time.Time
	// release frees the process-level lock on the database (SQLite: the flock on <path>.lock).
	release func() error
}

var _ kps.Store = (*DB)(nil)

// engine is everything that differs between SQL databases.
//
// For the PostgreSQL engine (not written yet): SQLite serialises all writers (one connection,
// BEGIN IMMEDIATE), so the check-then-write sequences below (busy server, key pair quota, queue
// capacity, the busy check of UpdateServer/DeleteServer) cannot race. Under PostgreSQL's READ
// COMMITTED they can; the partial unique index still guarantees one active task per server,
// but the engine must also lock the server row (SELECT … FOR UPDATE) in SubmitTask,
// UpdateServer and DeleteServer, and serialise CreateKeyPair per project (e.g.
// pg_advisory_xact_lock) for the quota to be exact, and CreateAccessKey per user (lock the
// user row) for the two-key limit. claimTask needs FOR UPDATE SKIP LOCKED.
type engine struct {
	name string
	// migrations holds NNNN_name.sql files, applied in order.
	migrations fs.FS
	// rebind turns "?" placeholders into the engine's own; nil keeps them.
	rebind func(query string) string
	// isUniqueViolation reports whether err is a unique or primary key violation.
	isUniqueViolation func(err error) bool
	// claimTask moves the oldest READY task to RUNNING and returns it (args: owner,
	// lease_expires, updated). Engine-specific: see the constants.
	claimTask string
}

// Close releases the database and its lock.
func (db *DB) Close() error {
	var errs []error
	if db.read != nil {
		errs = append(errs, db.read.Close())
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

// txn is a transaction with the one "now" every change in it uses.
type txn struct {
	tx  *sql.Tx
	eng *engine
	now time.Time
}

// beginWrite starts a write transaction (SQLite: BEGIN IMMEDIATE on the writer connection, so
// the write lock is taken up front and never upgraded).
func (db *DB) beginWrite(ctx context.Context) (*txn, error) {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	return &txn{tx: tx, eng: db.eng, now: db.clock()}, nil
}

// beginRead starts a read-only transaction: several queries see one snapshot.
func (db *DB) beginRead(ctx context.Context) (*txn, error) {
	tx, err := db.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	return &txn{tx: tx, eng: db.eng, now: db.clock()}, nil
}

// clock returns now truncated to the stored precision, so that what a method returns equals
// what a later read returns.
func (db *DB) clock() time.Time { return fromMillis(db.now().UnixMilli()) }

// Commit commits the transaction.
func (tx *txn) Commit() error { return tx.tx.Commit() }

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

// execOne runs a guarded statement and reports whether it changed exactly one row.
func (tx *txn) execOne(ctx context.Context, q string, args ...any) (bool, error) {
	res, err := tx.exec(ctx, q, args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	return n == 1, nil
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
