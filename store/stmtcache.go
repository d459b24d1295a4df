package store

import (
	"context"
	"database/sql/driver"
	"fmt"
)

// The SQLite statement cache. database/sql hands a query's text to the driver, and
// modernc.org/sqlite compiles it anew every time: in a profile of a fleet bind, SQLite's
// statement parser was a third of `kps serve`'s CPU, much of it inside the single writer's
// transactions, where every other writer waits. PostgreSQL needs none of this: pgx keeps
// its own statement cache per connection.
//
// stmtCacheConnector wraps the driver's connector so that each connection keeps the
// statements it has compiled, by their text, and runs a query or exec it has seen before with
// the statement compiled then. modernc.org/sqlite is built for that reuse: a statement is
// reset and its bindings cleared after each execution, and its rows reset it when closed. A
// cached statement whose rows are still open (the same query run again while the first one is
// read) is not shared: the second run compiles its own, as without the cache. SQLite compiles
// again by itself a statement whose schema changed (sqlite3_prepare_v2), so a migration
// cannot leave a stale one behind. The cache is bounded per connection; the hot statements
// come first, and a text beyond the bound is compiled every time, as before.
type stmtCacheConnector struct{ driver.Connector }

// maxCachedStmts bounds the statements a connection keeps. The store's statements are a fixed
// set of a few hundred texts (queries built at run time take their variable parts as
// arguments, or vary in a few shapes), each costing SQLite a few kilobytes.
const maxCachedStmts = 512

// sqliteConn is what the store uses of a modernc.org/sqlite connection; the wrapper keeps
// every one of those interfaces, so database/sql treats it as it treats the driver's own.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// sqliteStmt is a compiled statement of the driver.
type sqliteStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

// sqliteRows are the rows of the driver, with the column type information database/sql reads.
type sqliteRows interface {
	driver.Rows
	driver.RowsColumnTypeDatabaseTypeName
	driver.RowsColumnTypeLength
	driver.RowsColumnTypeNullable
	driver.RowsColumnTypePrecisionScale
	driver.RowsColumnTypeScanType
}

func (c stmtCacheConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, ok := conn.(sqliteConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("store: the SQLite driver's connection (%T) lacks an interface the statement cache needs", conn)
	}
	return &stmtCacheConn{sqliteConn: sc, stmts: map[string]*cachedStmt{}}, nil
}

// stmtCacheConn is one connection and its statements. database/sql uses a connection from one
// goroutine at a time and closes rows under the connection's lock, so it needs no lock of its
// own.
type stmtCacheConn struct {
	sqliteConn
	stmts map[string]*cachedStmt
	// hits and compiles count the runs of a cached statement and the statements compiled into
	// the cache (tests).
	hits, compiles int
}

type cachedStmt struct {
	stmt sqliteStmt
	busy bool // rows of it are open
}

// cached returns the statement compiled for query, compiling it when the cache has room, or nil
// when the call should go to the driver as it is: no room, in use, or not compilable (the
// driver then reports the error as it would have).
func (c *stmtCacheConn) cached(ctx context.Context, query string) *cachedStmt {
	cs, ok := c.stmts[query]
	if !ok {
		if len(c.stmts) >= maxCachedStmts {
			return nil
		}
		s, err := c.sqliteConn.PrepareContext(ctx, query)
		if err != nil {
			return nil
		}
		st, ok := s.(sqliteStmt)
		if !ok {
			s.Close()
			return nil
		}
		cs = &cachedStmt{stmt: st}
		c.stmts[query] = cs
		c.compiles++
		return cs
	}
	if cs.busy {
		return nil
	}
	c.hits++
	return cs
}

func (c *stmtCacheConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if cs := c.cached(ctx, query); cs != nil {
		return cs.stmt.ExecContext(ctx, args)
	}
	return c.sqliteConn.ExecContext(ctx, query, args)
}

func (c *stmtCacheConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	cs := c.cached(ctx, query)
	if cs == nil {
		return c.sqliteConn.QueryContext(ctx, query, args)
	}
	rows, err := cs.stmt.QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	r, ok := rows.(sqliteRows)
	if !ok {
		return rows, nil // not expected; the statement then stays usable as before
	}
	cs.busy = true
	return &cachedRows{sqliteRows: r, stmt: cs}, nil
}

// Close closes the cached statements, then the connection.
func (c *stmtCacheConn) Close() error {
	for q, cs := range c.stmts {
		cs.stmt.Close()
		delete(c.stmts, q)
	}
	return c.sqliteConn.Close()
}

// cachedRows are the rows of a cached statement; closing them frees the statement for reuse.
type cachedRows struct {
	sqliteRows
	stmt *cachedStmt
}

func (r *cachedRows) Close() error {
	err := r.sqliteRows.Close()
	r.stmt.busy = false
	return err
}
