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
	body, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "am_v4_firing_10.json"))
	if err != nil {
		b.Fatal(err)
	}
	base, err := incident.DecodeMessage(body)
	if err != nil {
		b.Fatal(err)
	}
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
