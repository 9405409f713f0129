// Command loadgen drives an Alertmanager webhook receiver over HTTP and
// reports throughput and latency. It is the load generator behind
// scripts/bench.sh and docs/benchmarks.md.
//
// Two modes:
//
//   - Closed loop (the default, --rate=0): --connections workers each send a
//     request, wait for the answer and send the next one. This measures
//     saturation throughput.
//   - Open loop (--rate=N): requests are scheduled at a constant N per
//     second, whatever the server does, and run on up to --connections
//     connections. Latency is measured from each request's scheduled send
//     time, not from when a connection became free, so a server that stalls
//     is charged for the requests it delayed (no coordinated omission).
//
// With --distinct (the default) the groupKey and every alert fingerprint of
// the payload are rewritten per request, so that each delivery is new work
// for the receiver. With --distinct=false every request carries the same
// body, like Alertmanager retries and HA peers' copies do.
//
// loadgen stops by itself after --duration and prints one summary line, or
// one JSON object with --json.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command-line flags.
type options struct {
	url         string
	payload     string
	token       string
	rate        float64
	connections int
	duration    time.Duration
	timeout     time.Duration
	distinct    bool
	json        bool
	label       string
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.url, "url", "http://127.0.0.1:9096/webhook/alertmanager", "Webhook URL to POST to.")
	fs.StringVar(&o.payload, "payload", "testdata/am_v4_firing_10.json", "Alertmanager v4 webhook body to send.")
	fs.StringVar(&o.token, "token", "", "Bearer token; sent as 'Authorization: Bearer <token>' when set.")
	fs.Float64Var(&o.rate, "rate", 0, "Open loop: requests per second. 0 means closed loop (saturation).")
	fs.IntVar(&o.connections, "connections", 64, "Closed loop: concurrent connections. Open loop: maximum requests in flight.")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "How long to send requests.")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "Per-request timeout.")
	fs.BoolVar(&o.distinct, "distinct", true, "Rewrite groupKey and fingerprints per request (new work each time); false sends identical bodies (retries, HA duplicates).")
	fs.BoolVar(&o.json, "json", false, "Print the result as one JSON object instead of the summary line.")
	fs.StringVar(&o.label, "label", "", "Free-form label copied into the output.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch {
	case o.connections < 1:
		_, _ = fmt.Fprintln(stderr, "loadgen: --connections must be at least 1")
		return 2
	case o.duration <= 0:
		_, _ = fmt.Fprintln(stderr, "loadgen: --duration must be positive")
		return 2
	case o.rate < 0:
		_, _ = fmt.Fprintln(stderr, "loadgen: --rate must not be negative")
		return 2
	}
	body, err := os.ReadFile(o.payload)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "loadgen: read payload: %v\n", err)
		return 2
	}
	tmpl, err := newTemplate(body)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 2
	}
	res := drive(o, tmpl)
	if o.json {
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(res); err != nil {
			_, _ = fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return 1
		}
	} else {
		_, _ = fmt.Fprintln(stdout, res.String())
	}
	if res.Requests == 0 {
		_, _ = fmt.Fprintln(stderr, "loadgen: no request completed")
		return 1
	}
	return 0
}

// template is the payload split around the values that --distinct rewrites:
// parts[0] slot[0] parts[1] slot[1] ... parts[n].
type template struct {
	parts    [][]byte
	slots    []slot
	original []byte
}

type slot struct {
	groupKey bool   // else a fingerprint
	index    uint64 // which fingerprint, for distinct values per alert
	value    string // the original value
}

var (
	groupKeyRE    = regexp.MustCompile(`"groupKey"\s*:\s*"((?:[^"\\]|\\.)*)"`)
	fingerprintRE = regexp.MustCompile(`"fingerprint"\s*:\s*"((?:[^"\\]|\\.)*)"`)
)

func newTemplate(body []byte) (*template, error) {
	var probe struct {
		Version  string `json:"version"`
		GroupKey string `json:"groupKey"`
		Alerts   []struct {
			Fingerprint string `json:"fingerprint"`
		} `json:"alerts"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return nil, fmt.Errorf("payload is not JSON: %w", err)
	}
	if probe.GroupKey == "" || len(probe.Alerts) == 0 {
		return nil, errors.New("payload needs a groupKey and at least one alert")
	}
	type span struct {
		start, end int
		s          slot
	}
	var spans []span
	for _, m := range groupKeyRE.FindAllSubmatchIndex(body, -1) {
		spans = append(spans, span{m[2], m[3], slot{groupKey: true, value: string(body[m[2]:m[3]])}})
	}
	var index uint64
	for _, m := range fingerprintRE.FindAllSubmatchIndex(body, -1) {
		spans = append(spans, span{m[2], m[3], slot{index: index, value: string(body[m[2]:m[3]])}})
		index++
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	t := &template{original: body}
	prev := 0
	for _, sp := range spans {
		t.parts = append(t.parts, body[prev:sp.start])
		t.slots = append(t.slots, sp.s)
		prev = sp.end
	}
	t.parts = append(t.parts, body[prev:])
	return t, nil
}

// render appends the body of request seq of run to dst. Fingerprints stay 16
// hex digits, like Alertmanager's.
func (t *template) render(dst []byte, run string, seq uint64) []byte {
	for i, s := range t.slots {
		dst = append(dst, t.parts[i]...)
		if s.groupKey {
			dst = append(dst, s.value...)
			dst = append(dst, ":{loadgen_run=\\\""...)
			dst = append(dst, run...)
			dst = append(dst, "\\\",seq=\\\""...)
			dst = strconv.AppendUint(dst, seq, 10)
			dst = append(dst, "\\\"}"...)
			continue
		}
		var b [8 + 8 + 8]byte
		copy(b[:], run)
		binary.LittleEndian.PutUint64(b[8:], seq)
		binary.LittleEndian.PutUint64(b[16:], s.index)
		sum := sha256.Sum256(b[:])
		dst = hex.AppendEncode(dst, sum[:8])
	}
	return append(dst, t.parts[len(t.parts)-1]...)
}

// result is one run's outcome.
type result struct {
	Label       string         `json:"label,omitempty"`
	Mode        string         `json:"mode"`
	Distinct    bool           `json:"distinct"`
	Connections int            `json:"connections"`
	TargetRate  float64        `json:"target_rate,omitempty"`
	Duration    float64        `json:"duration_seconds"`
	Requests    int            `json:"requests"`
	OK          int            `json:"ok"`
	Errors      map[string]int `json:"errors"`
	RPS         float64        `json:"rps"`
	P50         float64        `json:"p50_ms"`
	P90         float64        `json:"p90_ms"`
	P99         float64        `json:"p99_ms"`
	P999        float64        `json:"p999_ms"`
	Max         float64        `json:"max_ms"`
	Late        int            `json:"late_sends,omitempty"`
	URL         string         `json:"url"`
}

func (r result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "loadgen")
	if r.Label != "" {
		fmt.Fprintf(&b, " label=%s", r.Label)
	}
	fmt.Fprintf(&b, " mode=%s distinct=%t connections=%d", r.Mode, r.Distinct, r.Connections)
	if r.Mode == "open" {
		fmt.Fprintf(&b, " target_rate=%.0f", r.TargetRate)
	}
	fmt.Fprintf(&b, " duration=%.1fs requests=%d ok=%d rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f errors=",
		r.Duration, r.Requests, r.OK, r.RPS, r.P50, r.P90, r.P99, r.P999, r.Max)
	if len(r.Errors) == 0 {
		b.WriteString("none")
	}
	keys := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s:%d", k, r.Errors[k])
	}
	if r.Mode == "open" {
		fmt.Fprintf(&b, " late_sends=%d", r.Late)
	}
	return b.String()
}

// recorder collects one worker's observations; merged at the end, so the hot
// path takes no lock.
type recorder struct {
	lat    []time.Duration
	ok     int
	errors map[string]int
}

func (r *recorder) observe(d time.Duration, outcome string) {
	r.lat = append(r.lat, d)
	if outcome == "" {
		r.ok++
		return
	}
	r.errors[outcome]++
}

type sender struct {
	client *http.Client
	o      options
	tmpl   *template
	run    string
	seq    atomic.Uint64
}

// send posts one request and returns "" on a 2xx, else the error class: the
// status code, "timeout" or "conn_error".
func (s *sender) send(ctx context.Context, buf *[]byte) string {
	body := s.tmpl.original
	if s.o.distinct {
		*buf = s.tmpl.render((*buf)[:0], s.run, s.seq.Add(1))
		body = *buf
	}
	ctx, cancel := context.WithTimeout(ctx, s.o.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.o.url, bytes.NewReader(body))
	if err != nil {
		return "request_error"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "responder-loadgen")
	if s.o.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.o.token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return "timeout"
		}
		return "conn_error"
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close() // the body was drained; only the status matters
	if resp.StatusCode/100 != 2 {
		return strconv.Itoa(resp.StatusCode)
	}
	return ""
}

func drive(o options, tmpl *template) result {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        o.connections,
		MaxIdleConnsPerHost: o.connections,
		MaxConnsPerHost:     o.connections,
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
	}
	defer tr.CloseIdleConnections()
	s := &sender{
		client: &http.Client{Transport: tr},
		o:      o,
		tmpl:   tmpl,
		// A per-run prefix keeps distinct bodies distinct across runs against
		// the same database (warm-up, then the measured run).
		run: strconv.FormatInt(time.Now().UnixNano()%1e8, 36),
	}
	ctx := context.Background()
	recs := make([]*recorder, o.connections)
	for i := range recs {
		recs[i] = &recorder{errors: map[string]int{}}
	}
	var (
		wg    sync.WaitGroup
		start = time.Now()
		late  int
		mode  = "closed"
	)
	if o.rate == 0 {
		deadline := start.Add(o.duration)
		for i := range o.connections {
			wg.Go(func() {
				r := recs[i]
				var buf []byte
				for time.Now().Before(deadline) {
					t0 := time.Now()
					out := s.send(ctx, &buf)
					r.observe(time.Since(t0), out)
				}
			})
		}
		wg.Wait()
	} else {
		mode = "open"
		late = openLoop(ctx, o, s, recs, start)
	}
	elapsed := time.Since(start)

	res := result{
		Label: o.label, Mode: mode, Distinct: o.distinct, Connections: o.connections, TargetRate: o.rate,
		Duration: elapsed.Seconds(), Errors: map[string]int{}, Late: late, URL: o.url,
	}
	var all []time.Duration
	for _, r := range recs {
		all = append(all, r.lat...)
		res.OK += r.ok
		for k, v := range r.errors {
			res.Errors[k] += v
		}
	}
	res.Requests = len(all)
	// Throughput counts what completed within the configured duration window
	// for the closed loop; in-flight requests at the deadline finish late and
	// stretch elapsed slightly, which makes the figure conservative.
	res.RPS = float64(res.Requests) / elapsed.Seconds()
	slices.Sort(all)
	q := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		i := min(int(p*float64(len(all))), len(all)-1)
		return float64(all[i]) / float64(time.Millisecond)
	}
	res.P50, res.P90, res.P99, res.P999 = q(0.50), q(0.90), q(0.99), q(0.999)
	if len(all) > 0 {
		res.Max = float64(all[len(all)-1]) / float64(time.Millisecond)
	}
	return res
}

// openLoop schedules requests at o.rate per second for o.duration and runs
// them on o.connections workers. Each request's latency is measured from its
// scheduled time; requests not started within 1s after the end are counted
// as "unsent" errors. It returns how many requests started more than 1 ms after
// their scheduled time (all workers busy, or the generator itself starved).
func openLoop(ctx context.Context, o options, s *sender, recs []*recorder, start time.Time) int {
	interval := time.Duration(float64(time.Second) / o.rate)
	total := int(o.duration / interval)
	// The queue holds every scheduled send, so the scheduler never blocks:
	// if the server falls behind, requests wait here and their wait counts.
	due := make(chan time.Time, total)
	var lateSends atomic.Int64
	giveUp := start.Add(o.duration + time.Second)
	var wg sync.WaitGroup
	for i := range o.connections {
		wg.Go(func() {
			r := recs[i]
			var buf []byte
			for at := range due {
				// A server that fell far behind would keep the run going
				// long after --duration; what was not even started by then
				// is counted, not sent.
				if time.Now().After(giveUp) {
					r.errors["unsent"]++
					continue
				}
				if time.Since(at) > time.Millisecond {
					lateSends.Add(1)
				}
				out := s.send(ctx, &buf)
				r.observe(time.Since(at), out)
			}
		})
	}
	// Send every request whose time has come, then sleep until the next one:
	// timer granularity then delays a send by at most one sleep, and that
	// delay is charged to the request too.
	for i := 0; i < total; {
		now := time.Now()
		for i < total {
			at := start.Add(time.Duration(i) * interval)
			if at.After(now) {
				time.Sleep(at.Sub(now))
				break
			}
			due <- at
			i++
		}
	}
	close(due)
	wg.Wait()
	return int(lateSends.Load())
}
