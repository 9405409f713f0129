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
