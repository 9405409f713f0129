package logs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/responder/responder/internal/incident"
)

// maxResponse bounds a log backend's answer.
const maxResponse = 8 << 20

// LokiOptions configure a Loki source.
type LokiOptions struct {
	// URL is Loki's base URL.
	URL string
	// Query is a LogQL template (see render).
	Query    string
	Lookback time.Duration
	// Limit is how many lines are asked for before folding; default 500.
	Limit  int
	Client *http.Client
	Shaper Shaper
	Now    func() time.Time
}

// Loki reads recent lines from Grafana Loki's query_range API.
type Loki struct {
	opts LokiOptions
	base *url.URL
}

// NewLoki returns a Loki source.
func NewLoki(opts LokiOptions) (*Loki, error) {
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, errors.New("loki: invalid url")
	}
	if opts.Limit <= 0 {
		opts.Limit = 500
	}
	if opts.Lookback <= 0 {
		opts.Lookback = 15 * time.Minute
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Loki{opts: opts, base: u}, nil
}

// Name implements gather.Source.
func (l *Loki) Name() string { return "loki" }

// Kind implements gather.Source.
func (l *Loki) Kind() string { return incident.ContextLogs }

// lokiResponse is the query_range answer for a log query
// (resultType "streams").
type lokiResponse struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Stream map[string]string `json:"stream"`
			Values [][2]string       `json:"values"`
		} `json:"result"`
	} `json:"data"`
}

// Gather implements gather.Source.
func (l *Loki) Gather(ctx context.Context, inc *incident.Incident) (incident.Section, error) {
	q, err := incident.RenderQuery("loki", l.opts.Query, inc, EscapeLogQL)
	if err != nil {
		return incident.Section{}, fmt.Errorf("render query: %w", err)
	}
	now := l.opts.Now()
	params := url.Values{
		"query":     {q},
		"start":     {strconv.FormatInt(now.Add(-l.opts.Lookback).UnixNano(), 10)},
		"end":       {strconv.FormatInt(now.UnixNano(), 10)},
		"limit":     {strconv.Itoa(l.opts.Limit)},
		"direction": {"backward"},
	}
	u := l.base.JoinPath("loki/api/v1/query_range")
	u.RawQuery = params.Encode()
	var resp lokiResponse
	if err := getJSON(ctx, l.opts.Client, http.MethodGet, u.String(), nil, &resp); err != nil {
		return incident.Section{}, fmt.Errorf("query loki: %w", err)
	}
	if resp.Status != "success" {
		return incident.Section{}, fmt.Errorf("query loki: status %q: %s", resp.Status, resp.Error)
	}
	if resp.Data.ResultType != "streams" {
		return incident.Section{}, fmt.Errorf("query loki: result type %q is not a log query's (streams)", resp.Data.ResultType)
	}
	var lines []Line
	for _, s := range resp.Data.Result {
		origin := streamString(s.Stream)
		for _, v := range s.Values {
			n, err := strconv.ParseInt(v[0], 10, 64)
			if err != nil {
				continue
			}
			lines = append(lines, Line{At: time.Unix(0, n).UTC(), Text: v[1], Origin: origin})
		}
	}
	return incident.Section{Logs: l.opts.Shaper.Shape(lines)}, nil
}

// streamString renders a stream's labels as {a="b", ...}, sorted.
func streamString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Quote(m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// getJSON sends one request and decodes a 2xx JSON answer into v. Its
// errors name the status, never the URL.
func getJSON(ctx context.Context, c *http.Client, method, u string, body io.Reader, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return errors.New("build request: invalid url")
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			if uerr.Timeout() {
				return context.DeadlineExceeded
			}
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return fmt.Errorf("%s: %w", strings.ToLower(uerr.Op), unwrapNet(uerr.Err))
		}
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("answered %s: %s", resp.Status, snippet(b))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

// unwrapNet drops the addresses a *net.OpError carries.
func unwrapNet(err error) error {
	var op interface{ Unwrap() error }
	for errors.As(err, &op) {
		inner := op.Unwrap()
		if inner == nil {
			break
		}
		err = inner
	}
	return err
}

// snippet is the start of an error body, on one line.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		// Cut at a rune's start: an error is shown in Slack and the API.
		cut := 200
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
