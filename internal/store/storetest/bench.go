package storetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
)

// BenchmarkClaim measures one Claim of 16 jobs, its commit included, while
// a backlog of due jobs waits, as while a burst's incidents are routed: a
// claim should cost the same among 10,000 queued jobs as among 100. open
// returns a store whose writer loop runs until the benchmark ends.
func BenchmarkClaim(b *testing.B, open func(b *testing.B) *store.Store) {
	for _, backlog := range []int{100, 10000} {
		b.Run(fmt.Sprintf("backlog=%d", backlog), func(b *testing.B) {
			s := open(b)
			ctx := context.Background()
			tx, err := s.DB().BeginTx(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now().Add(-time.Hour).UnixNano()
			insert := s.Rebind(`INSERT INTO jobs (kind, ref_id, incident_id, state, max_attempts, run_at, created_at, updated_at)
				VALUES (?, ?, ?, 'queued', 10, ?, ?, ?)`)
			for i := range backlog {
				kind := incident.JobRoute
				if i%10 == 0 {
					kind = incident.JobDeliver
				}
				if _, err := tx.ExecContext(ctx, insert, kind, i, i, now+int64(i), now, now); err != nil {
					b.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				jobs, err := s.Claim(ctx, "w", 16, time.Minute, incident.JobDeliver, incident.JobRoute)
				if err != nil || len(jobs) != 16 {
					b.Fatal(err, len(jobs))
				}
				b.StopTimer()
				// Hand them back, so that the backlog stays the same.
				ids := make([]any, len(jobs))
				for i, j := range jobs {
					ids[i] = j.ID
				}
				if _, err := s.DB().ExecContext(ctx, s.Rebind(`UPDATE jobs SET state = 'queued' WHERE id IN (`+
					strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ")+`)`), ids...); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
