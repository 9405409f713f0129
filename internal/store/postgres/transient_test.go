package postgres_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/postgres"
	"github.com/responder/responder/internal/store/storetest"
	"github.com/responder/responder/internal/testenv"
)

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
	db, err := postgres.Open(ctx, testenv.StartPostgres(t), store.Options{Now: c.Now})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	m := storetest.Payload(t, "am_v4_firing.json")
	raw, err := json.Marshal(m)
	require.NoError(t, err)
	var id int64
	require.NoError(t, db.DB().QueryRowContext(ctx, `INSERT INTO notifications (received_at, group_key, state_hash, status, receiver, alerts, payload)
		VALUES ($1, $2, 'h', 'pending', $3, $4, $5) RETURNING id`, c.Now().UnixNano(), m.GroupKey, m.Receiver, len(m.Alerts), raw).Scan(&id))
	_, err = db.DB().ExecContext(ctx, `INSERT INTO alert_groups (group_key) VALUES ($1)`, m.GroupKey)
	require.NoError(t, err)

	other, err := db.DB().BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = other.Rollback() }()
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
