// Package promql takes PromQL snapshots of an incident: the current values
// and the last hour (by default) of the alert's own expression and of the
// configured queries, and renders them as PNG charts.
package promql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/responder/responder/internal/incident"
)

// Query is one configured snapshot: a title and a PromQL template.
type Query struct {
	Name  string
	Query string
}

// Options configure a Source.
type Options struct {
	// URL is Prometheus' base URL (global.prometheus_url).
	URL string
	// RoundTripper carries the requests (authentication, TLS); default
	// the client library's.
	RoundTripper http.RoundTripper
	// AlertExpression snapshots each alert's own expression first.
	AlertExpression bool
	// MaxAlertExpressions caps the distinct alert expressions; default 2.
	MaxAlertExpressions int
	Queries             []Query
	// MaxResponseBytes bounds each answer's body; a larger one fails the
	// query instead of being read and decoded whole. Default 16 MiB.
	MaxResponseBytes int64
	// Range and Step shape the chart's range query.
	Range, Step time.Duration
	Logger      *slog.Logger
	Now         func() time.Time
}

// Source queries Prometheus.
type Source struct {
	api  v1.API
	opts Options
}

// New returns a Source for the Prometheus at opts.URL.
func New(opts Options) (*Source, error) {
	if opts.Range <= 0 {
		opts.Range = time.Hour
	}
	if opts.Step <= 0 {
		opts.Step = time.Minute
	}
	if opts.MaxAlertExpressions <= 0 {
		opts.MaxAlertExpressions = 2
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = 16 << 20
	}
	rt := opts.RoundTripper
	if rt == nil {
		rt = promapi.DefaultRoundTripper
	}
	// The client library reads a whole answer into memory, however large
	// (a query over many series), before it decodes it.
	rt = limitTransport{rt: rt, limit: opts.MaxResponseBytes}
	c, err := promapi.NewClient(promapi.Config{Address: opts.URL, RoundTripper: rt})
	if err != nil {
		// The client's errors quote the address, which may hold a password.
		return nil, errors.New("prometheus client: invalid prometheus_url")
	}
	return &Source{api: v1.NewAPI(c), opts: opts}, nil
}

// Name implements gather.Source.
func (s *Source) Name() string { return "promql" }

// Kind implements gather.Source.
func (s *Source) Kind() string { return incident.ContextMetrics }

// Queries returns the queries that Gather runs for inc, in order: the
// alerts' own expressions, then the configured queries rendered with inc's
// labels (escaped as PromQL string literals).
func (s *Source) Queries(inc *incident.Incident) ([]Query, error) {
	var out []Query
	if s.opts.AlertExpression {
		seen := map[string]bool{}
		alerts := slices.Clone(inc.Alerts)
		// Firing alerts first.
		slices.SortStableFunc(alerts, func(a, b incident.Alert) int {
			return boolInt(a.Status != "firing") - boolInt(b.Status != "firing")
		})
		for _, a := range alerts {
			expr, ok := ExprFromGeneratorURL(a.GeneratorURL)
			if !ok || seen[expr] {
				continue
			}
			seen[expr] = true
			name := a.Labels["alertname"]
			if name == "" {
				name = "alert expression"
			}
			out = append(out, Query{Name: name, Query: expr})
			if len(seen) == s.opts.MaxAlertExpressions {
				break
			}
		}
	}
	for _, q := range s.opts.Queries {
		text, err := incident.RenderQuery(q.Name, q.Query, inc, EscapeString)
		if err != nil {
			return nil, fmt.Errorf("render query %q: %w", q.Name, err)
		}
		out = append(out, Query{Name: q.Name, Query: text})
	}
	return out, nil
}

// Gather implements gather.Source: every query runs at once, each as an
// instant query (the current values) and a range query (the chart).
func (s *Source) Gather(ctx context.Context, inc *incident.Incident) (incident.Section, error) {
	queries, err := s.Queries(inc)
	if err != nil {
		return incident.Section{}, err
	}
	sec := incident.Section{Snapshots: make([]incident.Snapshot, len(queries))}
	now := s.opts.Now()
	var wg sync.WaitGroup
	for i, q := range queries {
		wg.Go(func() { sec.Snapshots[i] = s.snapshot(ctx, q, now) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return sec, context.Cause(ctx)
	}
	failed := 0
	var first string
	for _, sn := range sec.Snapshots {
		if sn.Error != "" {
			failed++
			if first == "" {
				first = sn.Error
			}
		}
	}
	if failed > 0 && failed == len(sec.Snapshots) {
		return incident.Section{}, fmt.Errorf("%s: %s", sec.Snapshots[0].Name, first)
	}
	return sec, nil
}

func (s *Source) snapshot(ctx context.Context, q Query, now time.Time) incident.Snapshot {
	sn := incident.Snapshot{Name: q.Name, Query: q.Query, At: now, Start: now.Add(-s.opts.Range), End: now, StepMS: s.opts.Step.Milliseconds()}
	v, warnings, _, err := s.api.Query(ctx, q.Query, now)
	sn.Warnings = addWarnings(sn.Warnings, warnings)
	if err != nil {
		sn.Error = queryError("instant query", err)
		return sn
	}
	var histograms bool
	sn.Values, histograms = samples(v)
	r, warnings, _, err := s.api.QueryRange(ctx, q.Query, v1.Range{Start: sn.Start, End: now, Step: s.opts.Step})
	sn.Warnings = addWarnings(sn.Warnings, warnings)
	if err != nil {
		sn.Error = queryError("range query", err)
		return sn
	}
	if m, ok := r.(model.Matrix); ok {
		for _, ss := range m {
			histograms = histograms || len(ss.Histograms) > 0
			if len(ss.Values) == 0 && len(ss.Histograms) > 0 {
				continue
			}
			pts := make([]incident.Point, 0, len(ss.Values))
			for _, p := range ss.Values {
				if f := float64(p.Value); !math.IsNaN(f) && !math.IsInf(f, 0) {
					pts = append(pts, incident.Point{T: int64(p.Timestamp), V: f})
				}
			}
			sn.Series = append(sn.Series, incident.Series{Labels: ss.Metric.String(), Points: pts})
		}
	}
	if histograms {
		sn.Warnings = addWarnings(sn.Warnings, v1.Warnings{histogramWarning})
	}
	return sn
}

// histogramWarning replaces the native histograms a query returned, which a
// snapshot cannot show as one number or chart as a line.
const histogramWarning = "native histogram series not shown: query histogram_quantile(), histogram_count() or histogram_sum() of them"

// maxWarnings and maxWarningRunes bound what a snapshot keeps of
// Prometheus' warnings.
const (
	maxWarnings     = 3
	maxWarningRunes = 200
)

// addWarnings appends to have the warnings it does not hold yet, within
// maxWarnings, each cut to maxWarningRunes.
func addWarnings(have []string, warnings v1.Warnings) []string {
	for _, w := range warnings {
		if r := []rune(w); len(r) > maxWarningRunes {
			w = string(r[:maxWarningRunes-1]) + "…"
		}
		if len(have) < maxWarnings && !slices.Contains(have, w) {
			have = append(have, w)
		}
	}
	return have
}

// samples converts an instant result; values that JSON cannot carry (NaN,
// ±Inf) are left out, and so are native histograms, whose value field is
// 0: histograms reports whether there were any.
func samples(v model.Value) (out []incident.Sample, histograms bool) {
	add := func(labels string, f float64) {
		if !math.IsNaN(f) && !math.IsInf(f, 0) {
			out = append(out, incident.Sample{Labels: labels, Value: f})
		}
	}
	switch v := v.(type) {
	case model.Vector:
		for _, smp := range v {
			if smp.Histogram != nil {
				histograms = true
				continue
			}
			add(smp.Metric.String(), float64(smp.Value))
		}
	case *model.Scalar:
		add("scalar", float64(v.Value))
	}
	return out, histograms
}

// queryError describes a failed query without the request URL.
func queryError(op string, err error) string {
	var lerr *tooLargeError
	if errors.As(err, &lerr) {
		return op + ": " + lerr.Error()
	}
	var perr *v1.Error
	if errors.As(err, &perr) {
		return fmt.Sprintf("%s: %s: %s", op, perr.Type, perr.Msg)
	}
	// A transport error is a *url.Error quoting the request URL (host,
	// user name): name the context error only.
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return op + ": " + context.DeadlineExceeded.Error()
	case errors.Is(err, context.Canceled):
		return op + ": " + context.Canceled.Error()
	}
	var uerr interface{ Timeout() bool }
	if errors.As(err, &uerr) && uerr.Timeout() {
		return op + ": timeout"
	}
	return op + ": prometheus unreachable"
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// limitTransport bounds the bodies of the answers.
type limitTransport struct {
	rt    http.RoundTripper
	limit int64
}

func (l limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: l.limit, limit: l.limit}
	return resp, nil
}

// tooLargeError is the read error of an answer over the limit.
type tooLargeError struct{ limit int64 }

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("answer larger than %d MiB", e.limit>>20)
}

// limitedBody fails a read that goes past limit bytes.
type limitedBody struct {
	io.ReadCloser
	left, limit int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, &tooLargeError{b.limit}
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n + int(b.left), &tooLargeError{b.limit}
	}
	return n, err
}
