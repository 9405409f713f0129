package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/sqlite"
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
	acceptWhenFull(t, db, c)
	// Until the notification leaves pending, or the writer loop has
	// failed to apply it (it logs that once: 150 failures in a row are
	// TestSQLite_ApplyFailuresLoggedOnceAMinute's).
	require.Eventually(t, func() bool {
		counts, err := db.NotificationCounts(ctx)
		require.NoError(t, err)
		return counts[incident.NotificationPending] == 0 || strings.Contains(log.String(), "applying deferred notifications failed")
	}, 5*time.Second, 10*time.Millisecond)
	storetest.RequireUnattempted(t, db.Store)

	_, err := db.DB().ExecContext(ctx, "PRAGMA max_page_count = 1073741823")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		counts, err := db.NotificationCounts(ctx)
		require.NoError(t, err)
		return counts[incident.NotificationProcessed] == 1
	}, 5*time.Second, 10*time.Millisecond, "applied once space returned")
}

// TestSQLite_ApplyFailuresLoggedOnceAMinute: the writer loop tries a
// deferred apply again every ApplyPoll (a second) while storage fails,
// counting no attempt, and said so at warning level each time (154 lines
// in 154 s of a PostgreSQL outage). It says so when applies start failing,
// then at most once a minute with failing_for and the count, and once when
// one works again.
func TestSQLite_ApplyFailuresLoggedOnceAMinute(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c := storetest.NewClock()
		var log testenv.LogBuffer
		db := openOpts(t, store.Options{Now: c.Now, Logger: slog.New(slog.NewTextHandler(&log, nil))}, func(s *store.Store) { s.SetDeferApply(true) })
		ctx := t.Context()
		acceptWhenFull(t, db, c)

		time.Sleep(150 * time.Second)
		synctest.Wait()
		storetest.RequireUnattempted(t, db.Store)
		_, err := db.DB().ExecContext(ctx, "PRAGMA max_page_count = 1073741823")
		require.NoError(t, err)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		counts, err := db.NotificationCounts(ctx)
		require.NoError(t, err)
		require.Equal(t, map[string]int{incident.NotificationProcessed: 1}, counts, "applied once space returned")

		var lines []string
		for l := range strings.Lines(log.String()) {
			if strings.Contains(l, "applying deferred notifications") {
				lines = append(lines, strings.TrimSpace(l))
			}
		}
		require.Len(t, lines, 4, "at 0, 1 and 2 minutes, and once it works:\n%s", log.String())
		cause := ` err="apply notification 1: .*full.*"$`
		require.Regexp(t, ` level=WARN msg="applying deferred notifications failed; will retry"`+cause, lines[0])
		require.Regexp(t, ` level=WARN msg="applying deferred notifications still fails" failing_for=1m[01]s failed_applies=6[0-2]`+cause, lines[1])
		require.Regexp(t, ` level=WARN msg="applying deferred notifications still fails" failing_for=2m[01]s failed_applies=12[0-2]`+cause, lines[2])
		require.Regexp(t, ` level=INFO msg="applying deferred notifications works again" failing_for=2m3\d(\.\d+)?s failed_applies=15[0-2]$`, lines[3])
	})
}

// acceptWhenFull stops db's file from growing, and commits a notification
// that cannot be applied until it may grow again: its payload compresses
// to a few hundred bytes, which fit; applying it stores its large
// annotation, which needs new pages.
func acceptWhenFull(t *testing.T, db *sqlite.DB, c *storetest.Clock) {
	t.Helper()
	ctx := t.Context()
	var pages int
	require.NoError(t, db.DB().QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages))
	_, err := db.DB().ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages))
	require.NoError(t, err)
	d := firing(t, c, `{}:{alertname="Large"}`)
	d.Message.Alerts[0].Annotations["description"] = strings.Repeat("x", 64<<10)
	d.Raw, err = json.Marshal(d.Message)
	require.NoError(t, err)
	_, err = db.Accept(ctx, d)
	require.NoError(t, err, "stored")
}
