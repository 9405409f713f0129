package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/storetest"
	"github.com/responder/responder/internal/testenv"
)

// TestSQLite_DiskFull runs out of space (SQLite's max_page_count, which
// fails a write with SQLITE_FULL as a full disk does): deliveries are
// refused as Unavailable (503) and are not stored, a ping says why, the
// log names the cause, and once space returns the same store commits and
// applies again without a restart, with every delivery that was accepted
// stored once and none that was refused.
func TestSQLite_DiskFull(t *testing.T) {
	t.Parallel()
	c := storetest.NewClock()
	var log testenv.LogBuffer
	db := openOpts(t, store.Options{Now: c.Now, Logger: slog.New(slog.NewTextHandler(&log, nil))},
		func(s *store.Store) { s.SetDeferApply(true) })
	ctx := context.Background()

	var accepted, refused []string
	send := func(i int) error {
		key := fmt.Sprintf(`{}:{alertname="Full%d"}`, i)
		_, err := db.Accept(ctx, firing(t, c, key))
		if err != nil {
			require.Equal(t, incident.Unavailable, incident.KindOf(err), "a storage failure is a 503: %v", err)
			refused = append(refused, key)
			return err
		}
		accepted = append(accepted, key)
		return nil
	}
	require.NoError(t, send(0))
	require.NoError(t, db.Settle(ctx))
	require.NoError(t, db.Ping(ctx))

	var pages int
	require.NoError(t, db.DB().QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages))
	_, err := db.DB().ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages))
	require.NoError(t, err)
	i := 1
	for ; i < 200 && send(i) == nil; i++ {
	}
	require.NotEmpty(t, refused, "the database is full")
	err = db.Ping(ctx)
	require.Error(t, err, "a ping (/-/ready) says that storage cannot commit")
	require.ErrorContains(t, err, "full")
	require.Contains(t, log.String(), "full", "the log says why")

	// Space returns.
	_, err = db.DB().ExecContext(ctx, "PRAGMA max_page_count = 1073741823")
	require.NoError(t, err)
	require.NoError(t, db.Ping(ctx), "ready again")
	for j := i + 1; j < i+5; j++ {
		require.NoError(t, send(j))
	}
	require.NoError(t, db.Settle(ctx))
	for _, key := range accepted {
		var n int
		require.NoError(t, db.DB().QueryRowContext(ctx, `SELECT count(*) FROM incidents WHERE group_key = ?`, key).Scan(&n))
		require.Equal(t, 1, n, "accepted %s: one incident", key)
	}
	for _, key := range refused {
		var n int
		require.NoError(t, db.DB().QueryRowContext(ctx, `SELECT count(*) FROM notifications WHERE group_key = ?`, key).Scan(&n))
		require.Zero(t, n, "refused %s: not stored", key)
	}
	counts, err := db.NotificationCounts(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{incident.NotificationProcessed: len(accepted)}, counts)
}

// TestSQLite_ApplyOnFullDiskIsNoAttempt applies a committed notification
// while the database cannot grow: the failure is the disk's, not the
// notification's, so it is not counted as an attempt. Counted, it was
// queued for a retry after a backoff, and after ten attempts (about eight
// minutes of a full disk) parked: a notification answered 200 that nothing
// applied once space returned. Now it stays pending, and the writer loop
// applies it once space returns.
func TestSQLite_ApplyOnFullDiskIsNoAttempt(t *testing.T) {
	t.Parallel()
	c := storetest.NewClock()
	var log testenv.LogBuffer
	db := openOpts(t, store.Options{Now: c.Now, ApplyPoll: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&log, nil))},
		func(s *store.Store) { s.SetDeferApply(true) })
	ctx := context.Background()
	var pages int
	require.NoError(t, db.DB().QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages))
	_, err := db.DB().ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages))
	require.NoError(t, err)
	// The payload compresses to a few hundred bytes, which fit; applying
	// it stores the large annotation, which needs new pages.
	d := firing(t, c, `{}:{alertname="Large"}`)
	d.Message.Alerts[0].Annotations["description"] = strings.Repeat("x", 64<<10)
	raw, err := json.Marshal(d.Message)
	require.NoError(t, err)
	d.Raw = raw
	_, err = db.Accept(ctx, d)
	require.NoError(t, err, "stored")
	// Until the notification leaves pending, or the writer loop has
	// failed to apply it three times.
	require.Eventually(t, func() bool {
		counts, err := db.NotificationCounts(ctx)
		require.NoError(t, err)
		return counts[incident.NotificationPending] == 0 || strings.Count(log.String(), "applying deferred notifications failed") >= 3
	}, 5*time.Second, 10*time.Millisecond)
	storetest.RequireUnattempted(t, db.Store)

	_, err = db.DB().ExecContext(ctx, "PRAGMA max_page_count = 1073741823")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		counts, err := db.NotificationCounts(ctx)
		require.NoError(t, err)
		return counts[incident.NotificationProcessed] == 1
	}, 5*time.Second, 10*time.Millisecond, "applied once space returned")
}
