package main

// The fsync probe (--probe.fsync-dir): what the disk under the benchmark's
// databases answers, with nothing else running. It writes and fsyncs a small
// block at a fixed rate, as a group commit does at a steady request rate, and
// reports the latencies. A receiver that fsyncs before its 200 waits for at
// least one such fsync per request, so the probe's p99 bounds from below the
// p99 any of them can have on this disk at that rate.

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"
)

// probeBlock is what one probe write carries: about two WAL frames, a
// group commit's worth at 1,000 requests a second.
const probeBlock = 8 << 10

// probeSpan is the region of the probe's file that the writes cycle over, so
// that most of them overwrite (as SQLite's WAL does once it restarts) rather
// than extend the file.
const probeSpan = 4 << 20

// probeResult is the probe's report, in milliseconds.
type probeResult struct {
	Fsyncs int     `json:"fsyncs"`
	P50    float64 `json:"p50_ms"`
	P90    float64 `json:"p90_ms"`
	P99    float64 `json:"p99_ms"`
	Max    float64 `json:"max_ms"`
}

// probeFsync writes probeBlock bytes and fsyncs rate times a second for d,
// in a temporary file in dir that it removes, and returns the latencies of
// each write and fsync. A slow fsync delays the next one, as it delays the
// next group commit.
func probeFsync(ctx context.Context, dir string, rate int, d time.Duration) (probeResult, error) {
	if rate <= 0 || d <= 0 {
		return probeResult{}, fmt.Errorf("fsync probe: rate and duration must be positive")
	}
	f, err := os.CreateTemp(dir, "fsync-probe-*")
	if err != nil {
		return probeResult{}, fmt.Errorf("fsync probe: %w", err)
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}()
	block := make([]byte, probeBlock)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.Now().Add(d)
	var took []time.Duration
	for off := int64(0); time.Now().Before(end); off = (off + probeBlock) % probeSpan {
		select {
		case <-ctx.Done():
			return probeResult{}, ctx.Err()
		case <-tick.C:
		}
		start := time.Now()
		if _, err := f.WriteAt(block, off); err != nil {
			return probeResult{}, fmt.Errorf("fsync probe: %w", err)
		}
		if err := f.Sync(); err != nil {
			return probeResult{}, fmt.Errorf("fsync probe: %w", err)
		}
		took = append(took, time.Since(start))
	}
	if len(took) == 0 {
		return probeResult{}, fmt.Errorf("fsync probe: no fsync within %s", d)
	}
	slices.Sort(took)
	at := func(q float64) float64 {
		return float64(took[int(q*float64(len(took)-1))]) / float64(time.Millisecond)
	}
	return probeResult{Fsyncs: len(took), P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: at(1)}, nil
}
