package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/config"
	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/storetest"
)

// runTestStorage opens a SQLite store in a temporary directory, with clock
// as its time, and runs its writer loop until the test ends.
func runTestStorage(t *testing.T, clock *storetest.Clock) *storage {
	t.Helper()
	db, err := openStorage(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "r.db"), store.Options{Now: clock.Now})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- db.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		require.NoError(t, <-done)
		require.NoError(t, db.Close())
	})
	return db
}

// TestPruner: a pass removes what ended before the retention in force, a
// batch per transaction until none is full; with retention 0 it removes
// nothing. A reload changes the retention of the next pass.
func TestPruner(t *testing.T) {
	t.Parallel()
	clock := storetest.NewClock()
	ctx := t.Context()
	db := runTestStorage(t, clock)

	base := storetest.Payload(t, "am_v4_firing.json")
	deliver := func(group, status string) {
		t.Helper()
		m := *base
		data := *base.Data
		m.Data = &data
		m.GroupKey = group
		m.Alerts = append(m.Alerts[:0:0], base.Alerts...)
		for i := range m.Alerts {
			m.Alerts[i].Status = status
		}
		raw, err := json.Marshal(&m)
		require.NoError(t, err)
		_, err = db.Accept(ctx, incident.Delivery{Message: &m, Raw: raw, ReceivedAt: clock.Now()})
		require.NoError(t, err)
	}
	for i := range 3 {
		deliver(fmt.Sprintf("g%d", i), incident.StatusFiring)
		deliver(fmt.Sprintf("g%d", i), incident.StatusResolved)
	}
	deliver("open", incident.StatusFiring)
	clock.Advance(8 * 24 * time.Hour)

	cfg := &config.Config{}
	reg := prometheus.NewPedanticRegistry()
	p := newPruner(slog.New(slog.DiscardHandler), db.Store, func() *config.Config { return cfg }, reg)
	p.now, p.batch = clock.Now, 2
	incidents := func() int {
		list, err := db.ListIncidents(ctx, incident.ListFilter{})
		require.NoError(t, err)
		return len(list)
	}

	p.pass(ctx)
	require.Equal(t, 4, incidents(), "retention 0 keeps everything")

	cfg = &config.Config{Storage: store.Config{Retention: model.Duration(30 * 24 * time.Hour)}}
	p.pass(ctx)
	require.Equal(t, 4, incidents(), "nothing ended 30 days ago")

	cfg = &config.Config{Storage: store.Config{Retention: model.Duration(7 * 24 * time.Hour)}}
	p.pass(ctx)
	require.Equal(t, 1, incidents(), "the firing incident stays")
	require.InDelta(t, 3, testutil.ToFloat64(p.pruned.WithLabelValues("incidents")), 0, "two batches: 2, then 1")
	require.Zero(t, testutil.ToFloat64(p.failed))
}
