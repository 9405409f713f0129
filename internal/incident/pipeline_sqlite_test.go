package incident_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/sqlite"
	"github.com/responder/responder/internal/testenv"
)

// TestPipeline_SQLiteFullDiskIsNoAttempt runs a job whose handler writes
// to a real SQLite store that cannot grow (max_page_count, which fails a
// write with SQLITE_FULL as a full disk does), with the store's own
// classification of its errors, as the app wires it: the job is tried
// again and again without spending its three attempts, the log says once
// that storage failed and why, and the job completes once space returns.
// Before, it was parked after its third attempt.
func TestPipeline_SQLiteFullDiskIsNoAttempt(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rctx, cancel := context.WithCancel(context.Background())
	db, err := sqlite.Open(rctx, filepath.Join(t.TempDir(), "responder.db"), store.Options{MaxAttempts: 3})
	require.NoError(t, err)
	running := make(chan struct{})
	go func() { defer close(running); _ = db.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		<-running
		require.NoError(t, db.Close())
	})

	_, err = db.DB().ExecContext(ctx, `CREATE TABLE filler (b BLOB)`)
	require.NoError(t, err)
	require.NoError(t, db.Enqueue(ctx, "k", 1, 1, nil))
	var pages int
	require.NoError(t, db.DB().QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages))
	_, err = db.DB().ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages))
	require.NoError(t, err)

	var logs testenv.LogBuffer
	p := incident.NewPipeline(slog.New(slog.NewTextHandler(&logs, nil)), db, incident.PipelineOptions{
		Workers: 1, MinBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond, PollInterval: 10 * time.Millisecond,
		StorageFailed: sqlite.Transient, StorageRetry: 20 * time.Millisecond,
	})
	var calls, failed atomic.Int64
	p.Register("k", incident.HandlerFunc(func(ctx context.Context, _ incident.Job) error {
		calls.Add(1)
		// A write that needs new pages.
		if _, err := db.DB().ExecContext(ctx, `INSERT INTO filler VALUES (zeroblob(262144))`); err != nil {
			failed.Add(1)
			return fmt.Errorf("record evidence: %w", err)
		}
		return nil
	}))
	pctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(pctx) }()
	defer func() { stop(); <-done }()

	job := func() incident.Job {
		jobs, err := db.ListJobs(ctx, incident.JobFilter{})
		require.NoError(t, err)
		require.Len(t, jobs, 1)
		return jobs[0]
	}
	require.Eventually(t, func() bool { return failed.Load() >= 10 || job().State == incident.JobParked },
		10*time.Second, 10*time.Millisecond)
	got := job()
	require.NotEqual(t, incident.JobParked, got.State, "parked after %d attempts: %s", got.Attempts, got.LastError)
	require.GreaterOrEqual(t, failed.Load(), int64(10), "tried more often than its attempts")
	require.LessOrEqual(t, got.Attempts, 1, "no attempt counted but the one running")
	require.Equal(t, 1, strings.Count(logs.String(), "storage failed"), "said once:\n%s", logs.String())
	require.Contains(t, logs.String(), "full", "the log names the cause")

	// Space returns.
	_, err = db.DB().ExecContext(ctx, "PRAGMA max_page_count = 1073741823")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return job().State == incident.JobDone }, 10*time.Second, 10*time.Millisecond)
	// Logged right after the job is recorded done: it may come a moment
	// after the state the test has just read.
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "storage works again") }, 10*time.Second, 10*time.Millisecond,
		"the recovery is logged:\n%s", logs.String())
}
