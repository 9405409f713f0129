package gather_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/responder/responder/internal/context/gather"
	"github.com/responder/responder/internal/incident"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSource answers after delay, or when ctx ends if hang is set.
type fakeSource struct {
	name  string
	delay time.Duration
	hang  bool
	sec   incident.Section
	err   error
}

func (f *fakeSource) Name() string { return f.name }
func (f *fakeSource) Kind() string { return incident.ContextLogs }
func (f *fakeSource) Gather(ctx context.Context, _ *incident.Incident) (incident.Section, error) {
	if f.hang {
		<-ctx.Done()
		return incident.Section{}, ctx.Err()
	}
	select {
	case <-time.After(f.delay):
		return f.sec, f.err
	case <-ctx.Done():
		return incident.Section{}, ctx.Err()
	}
}

// ignoring never returns before its delay, whatever ctx says.
type ignoring struct{ fakeSource }

func (f *ignoring) Gather(context.Context, *incident.Incident) (incident.Section, error) {
	time.Sleep(f.delay)
	return f.sec, nil
}

func lines(n int) []incident.LogLine {
	out := make([]incident.LogLine, n)
	for i := range out {
		out[i] = incident.LogLine{Line: "boom", Count: 1}
	}
	return out
}

func TestGatherer_Statuses(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	m := gather.NewMetrics(reg)
	g := gather.New([]gather.Source{
		&fakeSource{name: "fast", delay: 10 * time.Millisecond, sec: incident.Section{Logs: lines(1)}},
		&fakeSource{name: "empty", delay: 10 * time.Millisecond},
		&fakeSource{name: "slow", hang: true},
		&fakeSource{name: "broken", err: errors.New(`get "http://user:hunter2@loki:3100/x": connection refused`)},
		&fakeSource{name: "big", sec: incident.Section{Logs: lines(100)}},
		// What a source read before it failed is kept, within the limits.
		&fakeSource{name: "partial", sec: incident.Section{Logs: lines(100)}, err: errors.New("stream broke")},
	}, gather.Options{Budget: time.Second, Timeout: 100 * time.Millisecond, Metrics: m})
	require.Equal(t, 6*4, testutil.CollectAndCount(reg, "responder_context_source_results_total"), "every source's series, at 0, before anything ran")
	require.Zero(t, testutil.ToFloat64(mustCounter(t, reg, "broken", "error")))
	start := time.Now()
	c := g.Gather(t.Context(), &incident.Incident{ID: 1})
	require.Less(t, time.Since(start), 500*time.Millisecond, "the slow source's timeout, not the budget, ends the wait")
	require.Len(t, c.Sections, 6)
	status := map[string]string{}
	for _, s := range c.Sections {
		status[s.Source] = s.Status
	}
	require.Equal(t, map[string]string{"fast": "ok", "empty": "empty", "slow": "timeout", "broken": "error", "big": "ok", "partial": "error"}, status)
	require.Contains(t, c.Sections[2].Error, "source slow timed out after 100ms")
	require.Len(t, c.Sections[0].Logs, 1)
	require.Len(t, c.Sections[4].Logs, gather.MaxLogLines)
	require.Len(t, c.Sections[5].Logs, gather.MaxLogLines, "a failed source's partial result is capped too")
	require.InDelta(t, 1.0, testutil.ToFloat64(mustCounter(t, reg, "slow", "timeout")), 0)
	require.Equal(t, 6, testutil.CollectAndCount(reg, "responder_context_source_duration_seconds"))
}

func mustCounter(t *testing.T, reg *prometheus.Registry, source, status string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "responder_context_source_results_total" {
			continue
		}
		for _, mm := range mf.GetMetric() {
			ls := map[string]string{}
			for _, l := range mm.GetLabel() {
				ls[l.GetName()] = l.GetValue()
			}
			if ls["source"] == source && ls["status"] == status {
				c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
				c.Add(mm.GetCounter().GetValue())
				return c
			}
		}
	}
	t.Fatalf("no counter for %s/%s", source, status)
	return nil
}

func TestGatherer_Budget(t *testing.T) {
	t.Parallel()
	// A source that ignores its context is given up on when the budget
	// ends; the others are kept.
	g := gather.New([]gather.Source{
		&fakeSource{name: "fast", delay: 5 * time.Millisecond, sec: incident.Section{Logs: lines(1)}},
		&ignoring{fakeSource{name: "stuck", delay: 400 * time.Millisecond}},
	}, gather.Options{Budget: 100 * time.Millisecond, Timeout: 100 * time.Millisecond})
	start := time.Now()
	c := g.Gather(t.Context(), &incident.Incident{})
	require.Less(t, time.Since(start), 300*time.Millisecond)
	require.Equal(t, incident.SourceOK, c.Sections[0].Status)
	require.Equal(t, incident.SourceTimeout, c.Sections[1].Status)
	require.Equal(t, "stuck", c.Sections[1].Source)
	time.Sleep(450 * time.Millisecond) // let the stuck goroutine end before goleak looks
}

func TestSafeError(t *testing.T) {
	t.Parallel()
	_, err := (&fakeSource{}).Gather(t.Context(), nil)
	require.NoError(t, err)
	g := gather.New([]gather.Source{&fakeSource{name: "u", err: wrapURL()}}, gather.Options{})
	c := g.Gather(t.Context(), &incident.Incident{})
	require.Equal(t, incident.SourceError, c.Sections[0].Status)
	require.NotContains(t, c.Sections[0].Error, "hunter2")
	require.NotContains(t, c.Sections[0].Error, "loki.internal")
	require.Contains(t, c.Sections[0].Error, "query loki: get: connection refused")
}
