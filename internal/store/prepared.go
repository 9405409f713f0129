package store

import (
	"context"
	"database/sql"
	"errors"
)

// Statements outside transactions run prepared, each query text prepared
// once per pool: parsing SQL is a large part of a small query's cost
// (SQLite parses in Go here), and the hot paths (claims, incident reads,
// delivery leases) run the same few texts over and over.
//
// On the writer pool, preparing outside a transaction is safe: the caller
// holds no connection. Inside the writer loop's transactions use cached,
// which never prepares (see prepareMissed).

// readStmt returns q prepared on the reader pool.
func (s *Store) readStmt(ctx context.Context, q string) (*sql.Stmt, error) {
	return prepareCached(ctx, &s.rcache, s.r, s.rebind(q), q)
}

// writeStmt returns q prepared on the writer pool; only for statements
// that run outside a transaction.
func (s *Store) writeStmt(ctx context.Context, q string) (*sql.Stmt, error) {
	return prepareCached(ctx, &s.cache, s.w, s.rebind(q), q)
}

func prepareCached(ctx context.Context, cache interface {
	Load(any) (any, bool)
	LoadOrStore(any, any) (any, bool)
}, db *sql.DB, text, key string,
) (*sql.Stmt, error) {
	if st, ok := cache.Load(key); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := db.PrepareContext(ctx, text)
	if err != nil {
		return nil, err
	}
	if prev, loaded := cache.LoadOrStore(key, st); loaded {
		_ = st.Close() // another caller prepared it first
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// rQuery runs a query on the reader pool, prepared.
func (s *Store) rQuery(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := s.readStmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// rQueryRow runs a one-row query on the reader pool, prepared. A failed
// prepare runs it unprepared, so that its error surfaces in Scan.
func (s *Store) rQueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := s.readStmt(ctx, q)
	if err != nil {
		return s.r.QueryRowContext(ctx, s.rebind(q), args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// wExec runs a statement on the writer pool outside a transaction,
// prepared, holding the write gate; while the writer loop runs, in its
// transaction (see lend.go).
func (s *Store) wExec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if tx, ok, err := s.borrow(ctx); ok {
		if err != nil {
			return nil, err
		}
		defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
		res, err := s.execTx(ctx, tx.Tx, q, args)
		if err != nil {
			return nil, err
		}
		return res, tx.Commit()
	}
	if err := s.acquire(ctx, false); err != nil {
		return nil, err
	}
	defer s.gate.unlock()
	st, err := s.writeStmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// wQuery runs a query on the writer pool outside a transaction, prepared,
// and calls each for every row, holding the write gate until the rows are
// read; while the writer loop runs, in its transaction.
func (s *Store) wQuery(ctx context.Context, q string, args []any, each func(*sql.Rows) error) error {
	if tx, ok, err := s.borrow(ctx); ok {
		if err != nil {
			return err
		}
		defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
		rows, err := s.queryTx(ctx, tx.Tx, q, args)
		if err != nil {
			return err
		}
		if err := eachRow(rows, each); err != nil {
			return err
		}
		return tx.Commit()
	}
	if err := s.acquire(ctx, false); err != nil {
		return err
	}
	defer s.gate.unlock()
	st, err := s.writeStmt(ctx, q)
	if err != nil {
		return err
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	return eachRow(rows, each)
}

// eachRow calls each for every row and closes rows.
func eachRow(rows *sql.Rows, each func(*sql.Rows) error) error {
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// wQueryRow runs a one-row query on the writer pool outside a transaction,
// prepared, holding the write gate (or the writer loop's transaction) until
// Scan. A failed prepare runs it unprepared, so that its error surfaces in
// Scan.
func (s *Store) wQueryRow(ctx context.Context, q string, args ...any) gatedRow {
	if tx, ok, err := s.borrow(ctx); ok {
		if err != nil {
			return gatedRow{err: err}
		}
		return gatedRow{row: s.queryRowTx(ctx, tx.Tx, q, args), release: func(scanErr error) error {
			if scanErr != nil && !errors.Is(scanErr, sql.ErrNoRows) {
				return tx.Rollback()
			}
			return tx.Commit()
		}}
	}
	if err := s.acquire(ctx, false); err != nil {
		// Not run without the gate (nor at a lazy durability): Scan
		// reports why.
		return gatedRow{err: err}
	}
	unlock := func(error) error { s.gate.unlock(); return nil }
	st, err := s.writeStmt(ctx, q)
	if err != nil {
		return gatedRow{row: s.w.QueryRowContext(ctx, s.rebind(q), args...), release: unlock}
	}
	return gatedRow{row: st.QueryRowContext(ctx, args...), release: unlock}
}

// Inside a transaction, SQLite runs the hot paths' texts prepared too: the
// route and apply jobs' statements were a tenth of the CPU of applying and
// routing a burst while each was parsed on every call. A text is prepared
// after its first use (cached). On PostgreSQL the text goes to the driver
// as it is: pgx keeps a statement cache per connection, and a statement
// prepared on the pool would be prepared again on a transaction's other
// connection, and released with the transaction.

// txConn is a transaction: *sql.Tx, or a *wtx holding one.
type txConn interface {
	StmtContext(ctx context.Context, stmt *sql.Stmt) *sql.Stmt
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// txExec runs a statement in tx: on SQLite through the statement cache
// (execTx), elsewhere as text.
func (s *Store) txExec(ctx context.Context, tx txConn, q string, args ...any) (sql.Result, error) {
	if s.dialect.SingleWriter {
		return s.execTx(ctx, tx, q, args)
	}
	return tx.ExecContext(ctx, s.rebind(q), args...)
}

// txQuery is txExec for a query (queryTx).
func (s *Store) txQuery(ctx context.Context, tx txConn, q string, args ...any) (*sql.Rows, error) {
	if s.dialect.SingleWriter {
		return s.queryTx(ctx, tx, q, args)
	}
	return tx.QueryContext(ctx, s.rebind(q), args...)
}

// txQueryRow is txExec for one row (queryRowTx).
func (s *Store) txQueryRow(ctx context.Context, tx txConn, q string, args ...any) *sql.Row {
	if s.dialect.SingleWriter {
		return s.queryRowTx(ctx, tx, q, args)
	}
	return tx.QueryRowContext(ctx, s.rebind(q), args...)
}
