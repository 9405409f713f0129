package sqlite_test

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkClaim measures one Claim of 16 jobs while a backlog of due jobs
// waits, as while a burst's incidents are routed: the cost of a claim
// should not grow with the backlog.
func BenchmarkClaim(b *testing.B) {
	for _, backlog := range []int{100, 10000} {
		b.Run(fmt.Sprintf("backlog=%d", backlog), func(b *testing.B) {
			db := openDB(b)
			ctx := context.Background()
			tx, err := db.DB().BeginTx(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now().UnixNano()
			for i := range backlog {
				kind := "route"
				if i%10 == 0 {
					kind = "deliver"
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO jobs (kind, ref_id, incident_id, state, max_attempts, run_at, created_at, updated_at)
					VALUES (?, ?, ?, 'queued', 10, ?, ?, ?)`, kind, i, i, now+int64(i), now, now); err != nil {
					b.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				jobs, err := db.Claim(ctx, "w", 16, time.Minute, "deliver", "route")
				if err != nil || len(jobs) == 0 {
					b.Fatal(err, len(jobs))
				}
				b.StopTimer()
				// Hand them back, so that the backlog stays the same.
				if _, err := db.DB().ExecContext(ctx, `UPDATE jobs SET state = 'queued' WHERE state = 'running'`); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
