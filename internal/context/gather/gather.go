package gather

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder/responder/internal/incident"
)

// Source is one place context comes from. Gather must return when ctx is
// done; an error is shown with the section, so it must not carry a URL or a
// credential (see SafeError).
type Source interface {
	// Name names the source in the section, metrics and messages.
	Name() string
	// Kind is incident.ContextDeployments, ContextLogs or ContextMetrics.
	Kind() string
	Gather(ctx context.Context, inc *incident.Incident) (incident.Section, error)
}

// Limits cap what one incident's context may hold, so that it fits Slack's
// message limits (a section's text is at most 3000 characters, a message
// at most 50 blocks) and stays small in storage and in PagerDuty's
// custom_details.
const (
	MaxDeployments = 10
	MaxLogLines    = 20
	MaxLineRunes   = 300
	MaxSnapshots   = 8
	MaxSamples     = 10
	MaxSeries      = 10
	maxErrorRunes  = 300
)

// Options tune a Gatherer. Zero fields get defaults (DefaultConfig).
type Options struct {
	// Budget bounds the whole gathering; Timeout each source.
	Budget  time.Duration
	Timeout time.Duration
	Logger  *slog.Logger
	// Metrics are shared by the gatherers of successive configurations;
	// nil records nothing.
	Metrics *Metrics
	Now     func() time.Time
}

// Gatherer runs its sources in parallel, each under its own timeout and all
// of them under one budget, and returns what arrived in time. It is safe for
// concurrent use.
type Gatherer struct {
	sources []Source
	opts    Options
}

// New returns a Gatherer over sources.
func New(sources []Source, opts Options) *Gatherer {
	d := DefaultConfig()
	if opts.Budget <= 0 {
		opts.Budget = d.Budget
	}
	if opts.Timeout <= 0 || opts.Timeout > opts.Budget {
		opts.Timeout = min(d.Timeout, opts.Budget)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	for _, s := range sources {
		opts.Metrics.expose(s.Name())
	}
	return &Gatherer{sources: sources, opts: opts}
}

// Sources returns the names of the sources, in order.
func (g *Gatherer) Sources() []string {
	out := make([]string, len(g.sources))
	for i, s := range g.sources {
		out[i] = s.Name()
	}
	return out
}

type result struct {
	i   int
	sec incident.Section
	d   time.Duration
}

// errBudget is the cause of a source cut short by the overall budget.
var errBudget = errors.New("context budget exhausted")

// Gather asks every source about inc and returns one section per source, in
// the sources' order, by the time the budget runs out at the latest: a
// source still running then is reported as timed out and left to stop on
// its own (its context is cancelled).
func (g *Gatherer) Gather(ctx context.Context, inc *incident.Incident) *incident.Context {
	start := g.opts.Now()
	ctx, cancel := context.WithTimeoutCause(ctx, g.opts.Budget, errBudget)
	defer cancel()
	// Buffered so that a source finishing after the budget never blocks.
	results := make(chan result, len(g.sources))
	for i, src := range g.sources {
		go func() {
			t := g.opts.Now()
			sec := g.run(ctx, src, inc)
			results <- result{i, sec, g.opts.Now().Sub(t)}
		}()
	}
	out := &incident.Context{GatheredAt: start, Sections: make([]incident.Section, len(g.sources))}
	got := make([]bool, len(g.sources))
	for n := 0; n < len(g.sources); n++ {
		select {
		case r := <-results:
			out.Sections[r.i], got[r.i] = r.sec, true
			g.opts.Metrics.observe(r.sec, r.d)
		case <-ctx.Done():
			n = len(g.sources) // stop waiting
		}
	}
	elapsed := g.opts.Now().Sub(start)
	for i, src := range g.sources {
		if got[i] {
			continue
		}
		// The budget ran out before the source answered.
		sec := incident.Section{
			Source: src.Name(), Kind: src.Kind(), Status: incident.SourceTimeout, DurationMS: elapsed.Milliseconds(),
			Error: fmt.Sprintf("no answer within the context budget (%s)", g.opts.Budget),
		}
		g.opts.Metrics.observe(sec, elapsed)
		out.Sections[i] = sec
	}
	out.DurationMS = elapsed.Milliseconds()
	return out
}

// run asks one source under its own timeout and classifies the outcome.
func (g *Gatherer) run(ctx context.Context, src Source, inc *incident.Incident) (sec incident.Section) {
	start := g.opts.Now()
	cause := fmt.Errorf("source %s timed out after %s", src.Name(), g.opts.Timeout)
	sctx, cancel := context.WithTimeoutCause(ctx, g.opts.Timeout, cause)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			sec = incident.Section{Status: incident.SourceError, Error: "source failed unexpectedly"}
			g.opts.Logger.ErrorContext(ctx, "context source panicked", "source", src.Name(), "err", fmt.Sprint(r))
		}
		sec.Source, sec.Kind = src.Name(), src.Kind()
		sec.DurationMS = g.opts.Now().Sub(start).Milliseconds()
	}()
	sec, err := src.Gather(sctx, inc)
	// What a source read before it timed out or failed is kept too, and
	// bounded the same way.
	Cap(&sec)
	switch {
	case err != nil && sctx.Err() != nil:
		sec.Status = incident.SourceTimeout
		sec.Error = context.Cause(sctx).Error()
	case err != nil:
		sec.Status = incident.SourceError
		sec.Error = truncate(SafeError(err), maxErrorRunes)
		g.opts.Logger.WarnContext(ctx, "context source failed; the others are shown", "source", src.Name(), "incident_id", inc.ID, "err", sec.Error)
	default:
		sec.Status = incident.SourceOK
		if sec.Empty() {
			sec.Status = incident.SourceEmpty
		}
	}
	return sec
}

// Cap bounds a section's results to the package limits.
func Cap(sec *incident.Section) {
	if len(sec.Deployments) > MaxDeployments {
		sec.Deployments = sec.Deployments[:MaxDeployments]
	}
	if len(sec.Logs) > MaxLogLines {
		sec.Logs = sec.Logs[:MaxLogLines]
	}
	for i := range sec.Logs {
		sec.Logs[i].Line = truncate(sec.Logs[i].Line, MaxLineRunes)
	}
	if len(sec.Snapshots) > MaxSnapshots {
		sec.Snapshots = sec.Snapshots[:MaxSnapshots]
	}
	for i := range sec.Snapshots {
		s := &sec.Snapshots[i]
		if len(s.Values) > MaxSamples {
			s.Values = s.Values[:MaxSamples]
		}
		if len(s.Series) > MaxSeries {
			s.Truncated += len(s.Series) - MaxSeries
			s.Series = s.Series[:MaxSeries]
		}
		s.Error = truncate(s.Error, maxErrorRunes)
	}
}

// SafeError renders err for people without the URL that a *url.Error
// carries (it may hold credentials, and it names internal hosts).
func SafeError(err error) string {
	if err == nil {
		return ""
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		inner := uerr.Err.Error()
		if uerr.Timeout() {
			inner = "timeout"
		}
		msg := err.Error()
		// Keep what wrapped the url.Error, replace its own text.
		if i := strings.Index(msg, uerr.Error()); i >= 0 {
			return msg[:i] + strings.ToLower(uerr.Op) + ": " + inner + msg[i+len(uerr.Error()):]
		}
		return strings.ToLower(uerr.Op) + ": " + inner
	}
	return err.Error()
}

// truncate cuts s to n runes, marking the cut with an ellipsis.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// Metrics count what the sources did. One value serves every Gatherer
// built from successive configurations.
type Metrics struct {
	duration  *prometheus.HistogramVec
	results   *prometheus.CounterVec
	cacheHits prometheus.Counter
}

// NewMetrics registers the gatherer's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "responder_context_source_duration_seconds",
			Help:    "How long a context source took to answer (or to be given up on), by source.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"source"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_context_source_results_total",
			Help: "Context source outcomes by source and status (ok, empty, timeout, error).",
		}, []string{"source", "status"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "responder_context_cache_hits_total",
			Help: "Incident changes whose context had been gathered already and was reused.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.duration, m.results, m.cacheHits)
	}
	return m
}

// expose exports a source's series at 0, so that a rule's increase() sees
// its first timeout or error.
func (m *Metrics) expose(source string) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(source)
	for _, st := range []string{incident.SourceOK, incident.SourceEmpty, incident.SourceTimeout, incident.SourceError} {
		m.results.WithLabelValues(source, st)
	}
}

func (m *Metrics) observe(sec incident.Section, d time.Duration) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(sec.Source).Observe(d.Seconds())
	m.results.WithLabelValues(sec.Source, sec.Status).Inc()
}

// CacheHit counts a gathering that was not needed because the incident's
// context was stored already.
func (m *Metrics) CacheHit() {
	if m != nil {
		m.cacheHits.Inc()
	}
}
