package postgres_test

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/postgres"
	"github.com/responder/responder/internal/store/storetest"
	"github.com/responder/responder/internal/testenv"
)

// openIdle opens a new database without running its writer loop: the
// tests apply with ApplyDue.
func openIdle(t *testing.T, c *storetest.Clock) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), testenv.StartPostgres(t), store.Options{Now: c.Now})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

// insertPending stores m as Accept stores a deferred delivery, with the
// state hash given, and returns its id.
func insertPending(t *testing.T, db *postgres.DB, c *storetest.Clock, m *incident.Message, hash string) int64 {
	t.Helper()
	raw, err := json.Marshal(m)
	require.NoError(t, err)
	var id int64
	require.NoError(t, db.DB().QueryRowContext(context.Background(), `INSERT INTO notifications (received_at, group_key, state_hash, status, receiver, alerts, payload)
		VALUES ($1, $2, $3, 'pending', $4, $5, $6) RETURNING id`, c.Now().UnixNano(), m.GroupKey, hash, m.Receiver, len(m.Alerts), raw).Scan(&id))
	return id
}

// TestPostgres_DeadlockedApplyIsNoAttempt applies a committed notification
// whose group another transaction holds, and that transaction then waits
// for the notification: PostgreSQL breaks the deadlock by failing the
// apply. That is the database's doing, not the notification's: no attempt
// is counted (it was, with a retry after a backoff, and a parked
// notification after ten), the notification stays pending, and the next
// apply takes it.
func TestPostgres_DeadlockedApplyIsNoAttempt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := storetest.NewClock()
	db := openIdle(t, c)
	m := storetest.Payload(t, "am_v4_firing.json")
	id := insertPending(t, db, c, m, "h")
	_, err := db.DB().ExecContext(ctx, `INSERT INTO alert_groups (group_key) VALUES ($1)`, m.GroupKey)
	require.NoError(t, err)

	other, err := db.DB().BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = other.Rollback() }()
	// Each waiter checks for a deadlock deadlock_timeout (1 s) after it
	// starts waiting, and the first to check is the victim: on a loaded
	// machine the apply's check could come late enough to lose. This
	// transaction checks only after 30 s, so the apply is always the one.
	_, err = other.ExecContext(ctx, `SET LOCAL deadlock_timeout = '30s'`)
	require.NoError(t, err)
	_, err = other.ExecContext(ctx, `SELECT 1 FROM alert_groups WHERE group_key = $1 FOR UPDATE`, m.GroupKey)
	require.NoError(t, err)
	applied := make(chan error, 1)
	go func() {
		_, err := db.ApplyDue(ctx, 8)
		applied <- err
	}()
	// The apply has locked the notification and waits for the group: it
	// waits first, so its deadlock check runs first and fails it.
	require.Eventually(t, func() bool {
		var waiting bool
		require.NoError(t, db.DB().QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%alert_groups%')`).Scan(&waiting))
		return waiting
	}, 10*time.Second, 5*time.Millisecond)
	_, err = other.ExecContext(ctx, `SELECT 1 FROM notifications WHERE id = $1 FOR UPDATE`, id)
	require.NoError(t, err, "the apply was the deadlock's victim")
	require.NoError(t, other.Rollback())
	err = <-applied
	require.ErrorContains(t, err, "deadlock")

	storetest.RequireUnattempted(t, db.Store)

	_, err = db.ApplyDue(ctx, 8)
	require.NoError(t, err)
	counts, err := db.NotificationCounts(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{incident.NotificationProcessed: 1}, counts)
}

// TestPostgres_ApplyKeepsGroupOrderAcrossReplicas applies a group's two
// pending notifications, fired then resolved, while another replica has
// taken the first (it holds its row, FOR UPDATE SKIP LOCKED) and not yet
// applied it. Applying the second first opened the incident already
// resolved, and the first then counted as stale: the incident never fired
// (no page). The second now waits until the first is applied.
func TestPostgres_ApplyKeepsGroupOrderAcrossReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := storetest.NewClock()
	db := openIdle(t, c)
	var transitions []incident.Transition
	db.SetHooks(nil, func(_ int64, ap incident.Applied) { transitions = append(transitions, ap.Transition) })
	ids := make([]int64, 2)
	for i, status := range []string{incident.StatusFiring, incident.StatusResolved} {
		m := storetest.Payload(t, "am_v4_firing.json")
		m.Status = status
		for j := range m.Alerts {
			m.Alerts[j].Status = status
			if status == incident.StatusResolved {
				m.Alerts[j].EndsAt = m.Alerts[j].StartsAt.Add(time.Hour)
			}
		}
		ids[i] = insertPending(t, db, c, m, status)
	}

	other, err := db.DB().BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = other.Rollback() }()
	_, err = other.ExecContext(ctx, `SELECT 1 FROM notifications WHERE id = $1 FOR UPDATE`, ids[0])
	require.NoError(t, err)
	_, err = db.ApplyDue(ctx, 8)
	require.NoError(t, err)
	counts, err := db.NotificationCounts(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{incident.NotificationPending: 2}, counts, "the resolve waits for the notification before it")
	jobs, err := db.ListJobs(ctx, incident.JobFilter{})
	require.NoError(t, err)
	require.Empty(t, jobs, "waiting is no failed attempt")

	require.NoError(t, other.Rollback())
	_, err = db.ApplyDue(ctx, 8)
	require.NoError(t, err)
	require.Equal(t, []incident.Transition{incident.TransitionOpened, incident.TransitionResolved}, transitions)
}

// TestFailed: a job handler's error is the database's when Transient says
// so, except for what an HTTP call gives too: a network error that came
// through net/http's client, and an EOF (a truncated answer). Transient
// alone would make a Slack outage the database's, and its jobs would never
// park.
func TestFailed(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tests := []struct {
		name                string
		err                 error
		transient, database bool
	}{
		{"terminated connection", fmt.Errorf("claim jobs: %w", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}), true, true},
		{"deadlock", &pgconn.PgError{Code: "40P01"}, true, true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false, false},
		{"no SQLSTATE", &pgconn.PgError{Message: "odd server"}, false, false},
		{"database refused", fmt.Errorf("begin: %w", refused), true, true},
		{"bad connection", fmt.Errorf("begin: %w", driver.ErrBadConn), true, true},
		{"slack refused", fmt.Errorf("chat.postMessage: %w", &url.Error{Op: "Post", URL: "https://slack.com/api/chat.postMessage", Err: refused}), true, false},
		{"truncated answer", fmt.Errorf("decode answer: %w", io.ErrUnexpectedEOF), true, false},
		{"other", errors.New("ok:false channel_not_found"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.transient, postgres.Transient(tt.err), "Transient")
			require.Equal(t, tt.database, postgres.Failed(tt.err), "Failed")
		})
	}
}
