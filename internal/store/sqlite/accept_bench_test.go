package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/sqlite"
)

// BenchmarkAccept measures durable intake alone: concurrent Accept calls
// group-committed into a real SQLite file in b.TempDir(), fsynced
// (synchronous=FULL), with no ingest workers competing for the writer. With
// parallelism 32 on GOMAXPROCS=2 there are 64 concurrent callers, like the
// 64 connections of scripts/bench.sh.
//
// "distinct" makes every delivery new work (a notification, its state row and
// an ingest job); "identical" repeats one delivery, so that all but the first
// are recorded as duplicates (a notification row only).
func BenchmarkAccept(b *testing.B) {
	body, base := tenAlerts(b)
	for _, bc := range []struct {
		name        string
		distinct    bool
		parallelism int
	}{
		{"distinct/callers=64", true, 32},
		{"identical/callers=64", false, 32},
		{"distinct/callers=GOMAXPROCS", true, 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			db := openDB(b)
			var seq atomic.Int64
			b.SetParallelism(bc.parallelism)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					m := *base
					if bc.distinct {
						m.GroupKey = base.GroupKey + ":{seq=\"" + strconv.FormatInt(seq.Add(1), 10) + "\"}"
					}
					if _, err := db.Accept(ctx, incident.Delivery{Message: &m, Raw: body, ReceivedAt: time.Now()}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// openDB opens a store in b.TempDir() and runs its committer until the
// benchmark ends.
func openDB(b *testing.B) *sqlite.DB {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "responder.db"), store.Options{})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = db.Run(ctx) })
	b.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = db.Close() // the benchmark is over; a close error does not change its numbers
	})
	return db
}

// BenchmarkApply measures the deferred apply alone: b.N new notifications
// of testdata/am_v4_firing_10.json (each a new group, so each opens an
// incident with 10 alerts) are accepted first, with the writer loop
// stopped before it applies them; the timed part is ApplyDue, a batch at a
// time, until none is left. ns/applied is the cost of applying one
// notification (its share of the lazy commit included, no fsync): the work
// that competes with the requests' commits during a stream of new
// notifications (docs/benchmarks.md).
func BenchmarkApply(b *testing.B) {
	body, base := tenAlerts(b)
	var applied atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "responder.db"), store.Options{
		DeferApply: true,
		OnApplied:  func(int64, incident.Applied) { applied.Add(1) },
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = db.Close() }() // the benchmark is over; a close error does not change its numbers
	var wg sync.WaitGroup
	wg.Go(func() { _ = db.Run(ctx) })
	// 64 callers at once keep the writer busy with requests, so it defers
	// (almost) every apply until they are done.
	var seq atomic.Int64
	var accepted sync.WaitGroup
	for range 64 {
		accepted.Go(func() {
			for {
				n := seq.Add(1)
				if n > int64(b.N) {
					return
				}
				m := *base
				m.GroupKey = base.GroupKey + ":{seq=\"" + strconv.FormatInt(n, 10) + "\"}"
				if _, err := db.Accept(ctx, incident.Delivery{Message: &m, Raw: body, ReceivedAt: time.Now()}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	accepted.Wait()
	cancel()
	wg.Wait()
	before := applied.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for {
		more, err := db.ApplyDue(context.Background(), 32)
		if err != nil {
			b.Fatal(err)
		}
		if !more {
			break
		}
	}
	b.StopTimer()
	if got := applied.Load(); got != int64(b.N) {
		b.Fatalf("applied %d notifications, want %d", got, b.N)
	}
	// A few are applied while the deliveries are accepted, in the writer
	// loop's gaps: ns/applied is the timed part's cost per notification it
	// applied.
	if n := applied.Load() - before; n > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/applied")
	}
}

// tenAlerts reads the benchmarks' payload, testdata/am_v4_firing_10.json,
// and decodes it.
func tenAlerts(b *testing.B) ([]byte, *incident.Message) {
	b.Helper()
	body, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "am_v4_firing_10.json"))
	if err != nil {
		b.Fatal(err)
	}
	base, err := incident.DecodeMessage(body)
	if err != nil {
		b.Fatal(err)
	}
	return body, base
}
