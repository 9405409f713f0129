package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/storetest"
)

// runDB opens a database whose flush is f (wrapping the WAL fsync) and runs
// its writer loop until the returned stop is called.
func runDB(t *testing.T, f func(sync func() error) error) (db *DB, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db, err := Open(ctx, filepath.Join(t.TempDir(), "responder.db"), store.Options{})
	require.NoError(t, err)
	db.SetDeferApply(true)
	db.SetFlush(func() error { return f(db.wal.sync) })
	var wg sync.WaitGroup
	wg.Go(func() { _ = db.Run(ctx) })
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
		})
	}
	t.Cleanup(func() {
		stop()
		require.NoError(t, db.Close())
	})
	return db, stop
}

func delivery(t *testing.T, groupKey string) incident.Delivery {
	t.Helper()
	m := storetest.Payload(t, "am_v4_firing.json")
	m.GroupKey = groupKey
	raw, err := json.Marshal(m)
	require.NoError(t, err)
	return incident.Delivery{Message: m, Raw: raw, ReceivedAt: time.Now()}
}

// A 200 waits for the fsync of the WAL, not only for the commit; so does a
// job handler's write that rode on the writer loop's group commit.
func TestFlush_AnswersOnlyAfterTheWALIsSynced(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var (
		flushes atomic.Int32
		hold    atomic.Bool
	)
	db, _ := runDB(t, func(sync func() error) error {
		if hold.Load() {
			<-release
			flushes.Add(1)
		}
		return sync()
	})
	ctx := context.Background()
	// Answered by the writer loop: it runs, and writers borrow from it.
	_, err := db.Accept(ctx, delivery(t, `{}:{alertname="Warm"}`))
	require.NoError(t, err)
	hold.Store(true)
	accepted := make(chan error, 1)
	d := delivery(t, `{}:{alertname="Flush"}`)
	go func() {
		_, err := db.Accept(ctx, d)
		accepted <- err
	}()
	enqueued := make(chan error, 1)
	go func() { enqueued <- db.Enqueue(ctx, incident.JobRoute, 1, 0, nil) }()
	select {
	case err := <-accepted:
		t.Fatalf("a delivery was answered before its flush (err %v)", err)
	case err := <-enqueued:
		t.Fatalf("a handler's write returned before its flush (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	require.Zero(t, flushes.Load())
	close(release)
	require.NoError(t, <-accepted)
	require.NoError(t, <-enqueued)
	require.Positive(t, flushes.Load())
	jobs, err := db.ListJobs(ctx, incident.JobQueued, 10)
	require.NoError(t, err)
	require.NotEmpty(t, jobs, "the handler's write was committed")
}

// When the fsync fails, nothing in the group is acknowledged: the sender
// retries, and the retry of a delivery that was stored is a duplicate.
func TestFlush_FailureAnswersUnavailable(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	fail.Store(true)
	db, _ := runDB(t, func(sync func() error) error {
		if fail.Load() {
			return errors.New("input/output error")
		}
		return sync()
	})
	ctx := context.Background()
	d := delivery(t, `{}:{alertname="FlushFails"}`)
	_, err := db.Accept(ctx, d)
	require.Error(t, err)
	require.Equal(t, incident.Unavailable, incident.KindOf(err), "the sender must retry: %v", err)
	fail.Store(false)
	rec, err := db.Accept(ctx, d)
	require.NoError(t, err)
	require.True(t, rec.Duplicate, "the retry finds the delivery stored")
}

// Once the writer loop has stopped, writers take the gate themselves and
// commit at synchronous=FULL again.
func TestFlush_WritersAfterTheLoopCommitDurably(t *testing.T) {
	t.Parallel()
	db, stop := runDB(t, func(sync func() error) error { return sync() })
	ctx := context.Background()
	_, err := db.Accept(ctx, delivery(t, `{}:{alertname="Lazy"}`))
	require.NoError(t, err)
	var level int
	require.NoError(t, db.DB().QueryRowContext(ctx, "PRAGMA synchronous").Scan(&level))
	require.Equal(t, 1, level, "the writer loop commits at NORMAL and flushes itself")
	stop()
	require.NoError(t, db.Enqueue(ctx, incident.JobRoute, 1, 0, nil))
	require.NoError(t, db.DB().QueryRowContext(ctx, "PRAGMA synchronous").Scan(&level))
	require.Equal(t, 2, level, "synchronous=FULL for a writer without the loop")
}
