package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/sqlite"
	"github.com/responder/responder/internal/store/storetest"
)

func firing(t *testing.T, c *storetest.Clock, groupKey string) incident.Delivery {
	t.Helper()
	m := storetest.Payload(t, "am_v4_firing.json")
	m.GroupKey = groupKey
	raw, err := json.Marshal(m)
	require.NoError(t, err)
	return incident.Delivery{Message: m, Raw: raw, ReceivedAt: c.Now()}
}

// Job handlers that write while the writer loop is busy wait for it and are
// committed with the deliveries that waited too; once the loop has stopped,
// they take the write gate themselves.
func TestSQLite_HandlerWritesWhileTheLoopIsBusyAndAfterItStops(t *testing.T) {
	t.Parallel()
	c := storetest.NewClock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "responder.db"), store.Options{Now: c.Now})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	// The first commit's hook holds the loop until released.
	release, held := make(chan struct{}), make(chan struct{})
	var once sync.Once
	db.SetHooks(func() {
		once.Do(func() {
			close(held)
			<-release
		})
	}, nil, incident.JobRoute)
	var wg sync.WaitGroup
	wg.Go(func() { _ = db.Run(ctx) })

	first := make(chan error, 1)
	d := firing(t, c, `{}:{alertname="First"}`)
	go func() {
		_, err := db.Accept(context.Background(), d)
		first <- err
	}()
	<-held

	// Handlers and requests queue up behind the held loop.
	const handlers, requests = 8, 3
	errs := make(chan error, handlers+requests)
	for i := range handlers {
		go func() { errs <- db.Enqueue(context.Background(), incident.JobDeliver, int64(100+i), 0, nil) }()
	}
	ds := make([]incident.Delivery, requests)
	for i := range ds {
		ds[i] = firing(t, c, fmt.Sprintf(`{}:{alertname="Queued%d"}`, i))
	}
	for _, d := range ds {
		go func() {
			_, err := db.Accept(context.Background(), d)
			errs <- err
		}()
	}
	select {
	case err := <-errs:
		t.Fatalf("a write returned while the writer loop was held (err %v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	require.NoError(t, <-first)
	for range handlers + requests {
		require.NoError(t, <-errs)
	}
	require.Equal(t, handlers, queuedJobs(t, db.Store, incident.JobDeliver), "every handler's write committed")

	cancel()
	wg.Wait()
	require.NoError(t, db.Enqueue(context.Background(), incident.JobDeliver, 999, 0, nil), "without the loop, through the gate")
	jobs, err := db.ListJobs(context.Background(), incident.JobFilter{State: incident.JobQueued, Limit: 100})
	require.NoError(t, err)
	require.Equal(t, int64(999), jobs[0].RefID)
}

// queuedJobs counts the queued jobs of a kind.
func queuedJobs(t *testing.T, s *store.Store, kind string) int {
	t.Helper()
	jobs, err := s.ListJobs(context.Background(), incident.JobFilter{State: incident.JobQueued, Limit: 100})
	require.NoError(t, err)
	n := 0
	for _, j := range jobs {
		if j.Kind == kind {
			n++
		}
	}
	return n
}
