package gather_test

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/responder/responder/internal/context/gather"
	"github.com/responder/responder/internal/incident"
)

// benchSources are three sources answering in 50 ms with a realistic load
// (log lines, snapshots with a chart's worth of points) and one that hangs.
func benchSources() []gather.Source {
	points := make([]incident.Point, 240)
	for i := range points {
		points[i] = incident.Point{T: int64(i) * 15000, V: float64(i)}
	}
	snaps := []incident.Snapshot{{Name: "errors", Values: []incident.Sample{{Labels: `{job="api"}`, Value: 0.25}}, Series: []incident.Series{{Labels: `{job="api"}`, Points: points}}}}
	return []gather.Source{
		&fakeSource{name: "deployments", delay: 50 * time.Millisecond, sec: incident.Section{Deployments: []incident.Deployment{{Service: "api", Version: "1"}}}},
		&fakeSource{name: "loki", delay: 50 * time.Millisecond, sec: incident.Section{Logs: lines(10)}},
		&fakeSource{name: "promql", delay: 50 * time.Millisecond, sec: incident.Section{Snapshots: snaps}},
		&fakeSource{name: "elasticsearch", hang: true},
	}
}

const benchBudget = 300 * time.Millisecond

// BenchmarkGather_HangingSource: three sources answer in 50 ms, one hangs;
// every gathering must end within the budget + 100 ms at p99.
func BenchmarkGather_HangingSource(b *testing.B) {
	g := gather.New(benchSources(), gather.Options{Budget: benchBudget, Timeout: benchBudget})
	var d []time.Duration
	for b.Loop() {
		start := time.Now()
		c := g.Gather(b.Context(), &incident.Incident{})
		d = append(d, time.Since(start))
		if c.Sections[3].Status != incident.SourceTimeout || c.Sections[0].Status != incident.SourceOK {
			b.Fatalf("unexpected statuses: %+v", c.Sections)
		}
	}
	p50, p99 := percentile(d, 50), percentile(d, 99)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	if p99 > benchBudget+100*time.Millisecond {
		b.Fatalf("p99 %s exceeds budget %s + 100ms", p99, benchBudget)
	}
}

// BenchmarkGather_100Concurrent gathers for 100 incidents at once and
// reports the peak heap and the process's peak RSS, which must stay under
// 150 MB.
func BenchmarkGather_100Concurrent(b *testing.B) {
	g := gather.New(benchSources(), gather.Options{Budget: benchBudget, Timeout: benchBudget})
	var peakHeap uint64
	var worst time.Duration
	for b.Loop() {
		var wg sync.WaitGroup
		stop := make(chan struct{})
		var sampler sync.WaitGroup
		sampler.Go(func() {
			var ms runtime.MemStats
			for {
				runtime.ReadMemStats(&ms)
				peakHeap = max(peakHeap, ms.HeapInuse)
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
		start := time.Now()
		for i := range 100 {
			wg.Go(func() { _ = g.Gather(b.Context(), &incident.Incident{ID: int64(i)}) })
		}
		wg.Wait()
		worst = max(worst, time.Since(start))
		close(stop)
		sampler.Wait()
	}
	rss := peakRSS()
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(rss)/(1<<20), "peak-rss-MB")
	b.ReportMetric(float64(worst.Milliseconds()), "worst-round-ms")
	if rss > 150<<20 || peakHeap > 150<<20 {
		b.Fatalf("memory over 150 MB: heap %d, rss %d", peakHeap, rss)
	}
}

func percentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

// peakRSS reads VmHWM from /proc (Linux); 0 elsewhere.
func peakRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
