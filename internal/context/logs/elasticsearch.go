package logs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/responder/responder/internal/incident"
)

// ElasticsearchOptions configure an Elasticsearch or OpenSearch source.
type ElasticsearchOptions struct {
	URL   string
	Index string
	// Query is a query_string template (see render).
	Query          string
	MessageField   string
	TimestampField string
	Lookback       time.Duration
	// Limit is how many documents are asked for before folding; default
	// 200.
	Limit  int
	Client *http.Client
	Shaper Shaper
	Now    func() time.Time
}

// Elasticsearch reads recent documents with the _search API (the same in
// OpenSearch).
type Elasticsearch struct {
	opts ElasticsearchOptions
	base *url.URL
}

// NewElasticsearch returns an Elasticsearch source.
func NewElasticsearch(opts ElasticsearchOptions) (*Elasticsearch, error) {
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, errors.New("elasticsearch: invalid url")
	}
	if opts.Limit <= 0 {
		opts.Limit = 200
	}
	if opts.Lookback <= 0 {
		opts.Lookback = 15 * time.Minute
	}
	if opts.MessageField == "" {
		opts.MessageField = "message"
	}
	if opts.TimestampField == "" {
		opts.TimestampField = "@timestamp"
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Elasticsearch{opts: opts, base: u}, nil
}

// Name implements gather.Source.
func (e *Elasticsearch) Name() string { return "elasticsearch" }

// Kind implements gather.Source.
func (e *Elasticsearch) Kind() string { return incident.ContextLogs }

type esResponse struct {
	Hits struct {
		Hits []struct {
			Index  string         `json:"_index"`
			Source map[string]any `json:"_source"`
			// Sort is the hit's sort values: for the date field sorted
			// on, its epoch milliseconds whatever the field's format.
			Sort []any `json:"sort"`
		} `json:"hits"`
	} `json:"hits"`
}

// Gather implements gather.Source.
func (e *Elasticsearch) Gather(ctx context.Context, inc *incident.Incident) (incident.Section, error) {
	q, err := incident.RenderQuery("elasticsearch", e.opts.Query, inc, EscapeQueryString)
	if err != nil {
		return incident.Section{}, fmt.Errorf("render query: %w", err)
	}
	now := e.opts.Now()
	ts := e.opts.TimestampField
	body := map[string]any{
		"size":    e.opts.Limit,
		"sort":    []any{map[string]any{ts: map[string]any{"order": "desc"}}},
		"_source": []string{e.opts.MessageField, ts},
		"query": map[string]any{"bool": map[string]any{
			"must":   []any{map[string]any{"query_string": map[string]any{"query": q}}},
			"filter": []any{map[string]any{"range": map[string]any{ts: map[string]any{"gte": now.Add(-e.opts.Lookback).UTC().Format(time.RFC3339Nano), "lte": now.UTC().Format(time.RFC3339Nano)}}}},
		}},
	}
	b, err := json.Marshal(body)
	if err != nil {
		return incident.Section{}, fmt.Errorf("encode search: %w", err)
	}
	// The index comes from the configuration; it is one path segment.
	u := e.base.JoinPath(e.opts.Index, "_search")
	var resp esResponse
	if err := getJSON(ctx, e.opts.Client, http.MethodPost, u.String(), bytes.NewReader(b), &resp); err != nil {
		return incident.Section{}, fmt.Errorf("search elasticsearch: %w", err)
	}
	lines := make([]Line, 0, len(resp.Hits.Hits))
	for _, h := range resp.Hits.Hits {
		msg, ok := field(h.Source, e.opts.MessageField).(string)
		if !ok {
			continue
		}
		lines = append(lines, Line{At: hitTime(field(h.Source, ts), h.Sort).UTC(), Text: msg, Origin: h.Index})
	}
	return incident.Section{Logs: e.opts.Shaper.Shape(lines)}, nil
}

// hitTime is a hit's time: its timestamp field when it is RFC 3339 or
// epoch milliseconds (a number), else the date Elasticsearch sorted it by
// (epoch milliseconds, whatever the field's format: "2026-03-02 09:59:58",
// epoch seconds); the zero time when neither says.
func hitTime(v any, sort []any) time.Time {
	switch v := v.(type) {
	case string:
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return t
		}
	case float64:
		return time.UnixMilli(int64(v))
	}
	if len(sort) > 0 {
		if ms, ok := sort[0].(float64); ok {
			return time.UnixMilli(int64(ms))
		}
	}
	return time.Time{}
}

// field reads a field by name, or by dotted path through nested objects
// ("log.message").
func field(src map[string]any, name string) any {
	if v, ok := src[name]; ok {
		return v
	}
	head, rest, ok := strings.Cut(name, ".")
	if !ok {
		return nil
	}
	if m, ok := src[head].(map[string]any); ok {
		return field(m, rest)
	}
	return nil
}
