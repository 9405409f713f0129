package store

import (
	"context"
	"database/sql"
	"errors"
	"sync/atomic"
	"time"
)

// On a single-writer engine (SQLite) the job handlers' writes ride on the
// writer loop's group commit instead of committing on their own. A handler
// that begins a transaction while Run is looping is lent the loop's
// transaction, under a savepoint: it runs its statements as before, and its
// Commit returns once the whole group (webhook deliveries and other
// handlers' writes) is committed and fsynced. Its Rollback undoes only its
// savepoint.
//
// Each transaction of its own cost a handler one fsync and the pages it
// touched; a new incident's route and context jobs made five or six of those
// (claims, completions, the route decision, the context), against a fraction
// of one for the notification itself, and a webhook commit waited for one
// of them at each turn of the write gate. Lent, at 1,000 new notifications/s
// on 2 cores, 604 instead of 270 incidents were opened during a 4 s run
// (medians of three), at the same ingest p99 (13.1 against 13.3 ms); the
// 1,000-group storm test under -race took 83 s instead of 105 to 125.

// lendReq is a handler's request for the writer loop's transaction.
type lendReq struct {
	state  atomic.Int32   // lendQueued, then lendGranted or lendAbandoned
	grant  chan lendGrant // the loop's answer
	done   chan bool      // the handler's verdict: keep (true) or undo its savepoint
	result chan error     // the group commit's outcome, for a handler that kept its work
}

const (
	lendQueued int32 = iota
	lendGranted
	lendAbandoned
)

// lendGrant is the transaction lent, or why there is none: err when the
// savepoint could not be opened, fallback when the loop stopped (the
// handler then takes the write gate itself).
type lendGrant struct {
	tx       *sql.Tx
	err      error
	fallback bool
}

// Bounds of one group's lending: a webhook request waits for the group's
// commit, so the handlers' writes must not hold it back for long.
const (
	maxLends   = 64
	lendBudget = 2 * time.Millisecond
)

// savepoint is the name of a lent transaction's savepoint.
const savepoint = "lent"

// borrow asks the writer loop for its transaction. ok is false when the
// loop is not running, or stopped before it answered: the caller then takes
// the write gate itself, as before Run started.
func (s *Store) borrow(ctx context.Context) (_ *wtx, ok bool, _ error) {
	if s.gate == nil || !s.looping.Load() {
		return nil, false, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, true, err
	}
	l := &lendReq{grant: make(chan lendGrant, 1), done: make(chan bool, 1), result: make(chan error, 1)}
	select {
	case s.lends <- l:
	case <-s.stopped:
		return nil, false, nil
	case <-ctx.Done():
		return nil, true, ctx.Err()
	}
	var g lendGrant
	select {
	case g = <-l.grant:
	case <-s.stopped:
		// Run answers the requests it took before it returns; one still
		// queued falls back.
		select {
		case g = <-l.grant:
		default:
			if !l.state.CompareAndSwap(lendQueued, lendAbandoned) {
				g = <-l.grant
			} else {
				g.fallback = true
			}
		}
	case <-ctx.Done():
		if l.state.CompareAndSwap(lendQueued, lendAbandoned) {
			return nil, true, ctx.Err()
		}
		// Granted meanwhile: hand it back untouched.
		if g = <-l.grant; g.tx != nil {
			l.done <- false
		}
		return nil, true, ctx.Err()
	}
	switch {
	case g.fallback:
		return nil, false, nil
	case g.err != nil:
		return nil, true, g.err
	}
	return &wtx{Tx: g.tx, lent: l}, true, nil
}

// lend serves one request inside the group transaction tx: it opens a
// savepoint, hands tx over and waits for the handler's verdict. kept reports
// whether the handler's work stays in the group (it then waits on
// l.result). A non-nil error means the group transaction is broken (an
// interrupted statement rolls back the whole transaction in SQLite) and
// must not be committed.
func (s *Store) lend(ctx context.Context, tx *sql.Tx, l *lendReq) (kept bool, err error) {
	if !l.state.CompareAndSwap(lendQueued, lendGranted) {
		return false, nil // the handler gave up waiting
	}
	if _, err := tx.ExecContext(ctx, "SAVEPOINT "+savepoint); err != nil {
		l.grant <- lendGrant{err: err}
		return false, err
	}
	l.grant <- lendGrant{tx: tx}
	if <-l.done {
		if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT "+savepoint); err != nil {
			l.result <- err
			return false, err
		}
		return true, nil
	}
	if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+savepoint); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT "+savepoint); err != nil {
		return false, err
	}
	return false, nil
}

// lendAll serves the handlers waiting for the writer (and those that
// arrive meanwhile) inside tx, within the group's bounds. It returns the
// requests whose work the group carries; on error the group is broken.
func (s *Store) lendAll(ctx context.Context, tx *sql.Tx, first *lendReq) ([]*lendReq, error) {
	var kept []*lendReq
	start := time.Now()
	next := first
	for n := range maxLends {
		if next == nil {
			if n > 0 && time.Since(start) > lendBudget {
				break
			}
			select {
			case next = <-s.lends:
			default:
				return kept, nil
			}
		}
		ok, err := s.lend(ctx, tx, next)
		if ok {
			kept = append(kept, next)
		}
		if err != nil {
			return kept, err
		}
		next = nil
	}
	return kept, nil
}

// refuseLends answers the requests still queued when Run returns: their
// handlers take the write gate themselves.
func (s *Store) refuseLends() {
	for {
		select {
		case l := <-s.lends:
			if l.state.CompareAndSwap(lendQueued, lendGranted) {
				l.grant <- lendGrant{fallback: true}
			}
		default:
			return
		}
	}
}

// errLentDone is returned by a lent transaction's second Commit or Rollback.
var errLentDone = errors.New("transaction already committed or rolled back")

// lentCommit keeps the handler's work in the group and waits for the group's
// commit.
func (t *wtx) lentCommit() error {
	if t.finished {
		return errLentDone
	}
	t.finished = true
	t.lent.done <- true
	return <-t.lent.result
}

// lentRollback undoes the handler's savepoint; the group goes on.
func (t *wtx) lentRollback() error {
	if t.finished {
		return errLentDone
	}
	t.finished = true
	t.lent.done <- false
	return nil
}
