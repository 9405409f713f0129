package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// writeGate orders the users of a single-writer engine's one writer
// connection (SQLite): the writer loop, whose requests wait for their 200,
// goes before the job handlers. (While the loop runs, handlers write inside
// its transactions instead, see lend.go; the gate then orders the loop and
// the writers that cannot borrow.) Without it, database/sql hands the
// connection to a random waiter, and a webhook commit queued behind a dozen
// job transactions, each with its own fsync, was most of the ingest p99 at
// 1,000 new notifications/s. So that a writer loop busy for minutes (a
// sustained burst) does not starve the jobs (Slack posts, pages), a job
// handler goes next after maxHighStreak writer-loop turn(s) in a row while
// it waited. Engines with concurrent writers have no gate.
type writeGate struct {
	mu     sync.Mutex
	held   bool
	high   int           // writer-loop callers waiting
	low    int           // job handlers waiting
	streak int           // writer-loop turns in a row while job handlers waited
	wake   chan struct{} // closed and replaced whenever the gate may have opened
}

// maxHighStreak is how many writer-loop turns in a row a waiting job
// handler lets go first. The writer loop's turns include its applies, which
// ApplyDue cuts to one notification while a job handler waits (see
// waitingLow): so while deliveries pour in, the writer alternates between
// the writer loop and the jobs (routes, Slack posts, pages), and a webhook
// commit waits for at most one job transaction. With 8 turns in a row, the
// 1,000-group storm test's last incident was shown 20 s later (2m31s
// against 2m11s under -race), and in one run under the whole suite's load
// routing lagged past the storm window and paged 3 incidents on their own.
const maxHighStreak = 1

func newWriteGate() *writeGate { return &writeGate{wake: make(chan struct{})} }

// blocked reports whether a caller of that priority must wait; call it
// with mu held.
func (g *writeGate) blocked(high bool) bool {
	switch {
	case g.held:
		return true
	case high:
		return g.low > 0 && g.streak >= maxHighStreak
	default:
		return g.high > 0 && g.streak < maxHighStreak
	}
}

// lock takes the gate: the writer loop (high) first, but never more than
// maxHighStreak turns in a row while a job handler waits.
func (g *writeGate) lock(ctx context.Context, high bool) error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	waiting := &g.low
	if high {
		waiting = &g.high
	}
	*waiting++
	for g.blocked(high) {
		w := g.wake
		g.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			g.mu.Lock()
			*waiting--
			g.broadcast() // those it held back may go
			g.mu.Unlock()
			return ctx.Err()
		}
		g.mu.Lock()
	}
	*waiting--
	switch {
	case !high:
		g.streak = 0
	case g.low > 0:
		g.streak++
	default:
		g.streak = 0
	}
	g.held = true
	g.mu.Unlock()
	return nil
}

// waitingLow reports whether a job handler waits for the gate.
func (g *writeGate) waitingLow() bool {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.low > 0
}

func (g *writeGate) unlock() {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.held = false
	g.broadcast()
	g.mu.Unlock()
}

// broadcast wakes every waiter; call it with mu held.
func (g *writeGate) broadcast() {
	close(g.wake)
	g.wake = make(chan struct{})
}

// wtx is a transaction on the writer pool that holds the gate until it
// commits or rolls back, or a savepoint in the writer loop's transaction
// (lent, see lend.go).
type wtx struct {
	*sql.Tx
	release  func()
	lent     *lendReq
	finished bool
}

// acquire takes the write gate and makes sure the writer connection is
// back at full durability after a lazy transaction.
func (s *Store) acquire(ctx context.Context, high bool) error {
	if err := s.gate.lock(ctx, high); err != nil {
		return err
	}
	if s.lazy.Load() {
		if _, err := s.w.ExecContext(ctx, s.dialect.LazyEnd); err != nil {
			s.gate.unlock()
			return fmt.Errorf("restore durable commits: %w", err)
		}
		s.lazy.Store(false)
	}
	return nil
}

// begin starts a transaction on the writer pool; high is for the writer
// loop. Others get the writer loop's transaction while it runs (see
// lend.go).
func (s *Store) begin(ctx context.Context, high bool) (*wtx, error) {
	if !high {
		if tx, ok, err := s.borrow(ctx); ok {
			return tx, err
		}
	}
	if err := s.acquire(ctx, high); err != nil {
		return nil, err
	}
	return s.beginHeld(ctx, s.gate.unlock)
}

// beginHeld starts a transaction while the gate is held; release (once,
// at commit or rollback, or now if the begin fails) lets it go.
func (s *Store) beginHeld(ctx context.Context, release func()) (*wtx, error) {
	var once sync.Once
	done := func() { once.Do(release) }
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		done()
		return nil, err
	}
	return &wtx{Tx: tx, release: done}, nil
}

// beginLazy starts a writer-loop transaction whose commit need not wait for
// its own flush (Dialect.LazyCommit): the next durable commit flushes it.
func (s *Store) beginLazy(ctx context.Context) (*wtx, error) {
	if s.dialect.LazyBegin == "" {
		tx, err := s.begin(ctx, true)
		if err != nil {
			return nil, err
		}
		if s.dialect.LazyCommit != "" {
			if _, err := tx.ExecContext(ctx, s.dialect.LazyCommit); err != nil {
				_ = tx.Rollback() // the statement's error is the one to report
				return nil, err
			}
		}
		return tx, nil
	}
	if err := s.acquire(ctx, true); err != nil {
		return nil, err
	}
	// Set first: whatever fails below, the next writer restores it.
	s.lazy.Store(true)
	if _, err := s.w.ExecContext(ctx, s.dialect.LazyBegin); err != nil {
		s.gate.unlock()
		return nil, err
	}
	return s.beginHeld(ctx, func() {
		if _, err := s.w.ExecContext(context.WithoutCancel(ctx), s.dialect.LazyEnd); err == nil {
			s.lazy.Store(false)
		}
		s.gate.unlock()
	})
}

// Commit commits and releases the gate; a lent transaction returns when
// its group is committed.
func (t *wtx) Commit() error {
	if t.lent != nil {
		return t.lentCommit()
	}
	defer t.release()
	return t.Tx.Commit()
}

// Rollback rolls back (a no-op after Commit) and releases the gate.
func (t *wtx) Rollback() error {
	if t.lent != nil {
		return t.lentRollback()
	}
	defer t.release()
	return t.Tx.Rollback()
}

// gatedRow is a one-row query's result that holds the gate (or a lent
// transaction) until Scan, or the error that kept the query from running.
type gatedRow struct {
	row *sql.Row
	// release ends the hold once the row is read; its error (a lent
	// transaction's commit) is Scan's when the read succeeded.
	release func(scanErr error) error
	err     error
}

// Scan reads the row and releases the gate.
func (r gatedRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	err := r.row.Scan(dest...)
	if rerr := r.release(err); err == nil {
		err = rerr
	}
	return err
}
