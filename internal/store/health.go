package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/responder/responder/internal/incident"
)

// commitHealth is what the writer's last commits said: storage may answer
// reads (a full disk, a read-only file system, a database file the process
// may no longer write) while every commit fails, and every webhook is then
// answered 503. The failures' cause is in the driver's error, which the
// incident.Error that reaches the webhook and the job handlers does not
// print: it is logged here, once when commits start failing, at most once a
// minute while they go on failing, and once when they succeed again. Only
// a commit that carried webhook deliveries, or Ping's notification-sized
// probe, clears a failure: the job handlers' small writes can fit in the
// pages a full database still has while no notification does.
type commitHealth struct {
	mu    sync.Mutex
	cause error // the last failed commit's; nil after a successful one
	log   incident.FailureLog
}

// observeCommit records a write transaction's outcome.
func (s *Store) observeCommit(ctx context.Context, err error) {
	h := &s.health
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if err == nil {
		if f, ok := h.log.Recovered(now); ok {
			s.logger.InfoContext(ctx, "storage commits again", "failing_for", f.For.Round(time.Millisecond), "failed_commits", f.Total)
		}
		h.cause = nil
		return
	}
	h.cause = err
	if e := (*incident.Error)(nil); errors.As(err, &e) && e.Err != nil {
		h.cause = fmt.Errorf("%s: %w", e.Msg, e.Err) // the driver's error, which Error() leaves out
	}
	f, ok := h.log.Failed(now)
	switch {
	case !ok:
	case f.First:
		s.logger.WarnContext(ctx, "storage cannot commit; webhook notifications are answered 503 until it can", "err", h.cause)
	default:
		s.logger.WarnContext(ctx, "storage still cannot commit", "failing_for", f.For.Round(time.Second), "failed_commits", f.Total, "err", h.cause)
	}
}

// commitFailure returns the cause of the last commit, if it failed.
func (s *Store) commitFailure() error {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	return s.health.cause
}

// ErrCannotCommit is what Ping's error wraps when the database answers but
// its last commit failed and a probe write still fails: a full disk, a
// read-only file system.
var ErrCannotCommit = errors.New("storage cannot commit")

// Ping checks that the database answers, and that it takes writes: after
// a failed commit it tries one small write transaction, and reports the
// failure until a commit succeeds again (readiness then says that
// notifications cannot be stored, instead of a ready replica that answers
// every webhook 503).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.r.PingContext(ctx); err != nil {
		return err
	}
	if s.commitFailure() == nil {
		return nil
	}
	s.observeCommit(ctx, s.probeWrite(ctx))
	if err := s.commitFailure(); err != nil {
		return fmt.Errorf("%w: %w", ErrCannotCommit, err)
	}
	return nil
}

// probeSize is the payload of probeWrite's notification: larger than most
// notifications, so that a probe that fits does not hide a full disk from
// which the next webhook's commit would need more.
const probeSize = 64 << 10

// probeWrite stores a notification-sized row and removes it in the same
// transaction, so that nothing is left and no reader ever sees it; the
// engine still has to find the space and write it. On a single-writer
// engine it rides on the writer loop's transaction (see lend.go) while the
// loop runs.
func (s *Store) probeWrite(ctx context.Context) error {
	payload := make([]byte, probeSize)
	_, _ = rand.Read(payload) // never fails; random, so that compression cannot shrink it
	tx, err := s.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
	var id int64
	if err := tx.QueryRowContext(ctx, s.rebind(`INSERT INTO notifications (received_at, group_key, state_hash, status, reason, receiver, alerts, payload)
		VALUES (0, '', '', ?, 'storage probe', '', 0, ?) RETURNING id`), incident.NotificationDuplicate, payload).Scan(&id); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM notifications WHERE id = ?`), id); err != nil {
		return err
	}
	return tx.Commit()
}
