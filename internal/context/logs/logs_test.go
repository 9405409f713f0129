package logs_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/responder/responder/internal/context/logs"
	"github.com/responder/responder/internal/incident"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"), goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

var now = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

const plantedToken = "xoxb-1234567890-abcdefghijklmnop"

func shaper(t *testing.T) logs.Shaper {
	t.Helper()
	r, err := logs.NewRedactor([]string{`card=\d{4}-\d{4}`}, true)
	require.NoError(t, err)
	return logs.Shaper{Redactor: r, MaxLines: 10}
}

func checkoutIncident() *incident.Incident {
	return &incident.Incident{CommonLabels: map[string]string{"service": "checkout", "namespace": "shop"}}
}

// lokiAnswer is a query_range answer as Loki documents it
// (grafana.com/docs/loki/latest/reference/loki-http-api, "Query logs
// within a range of time"), for a log query: resultType "streams".
func lokiAnswer(values ...[2]string) string {
	v, _ := json.Marshal(values)
	return `{"status":"success","data":{"resultType":"streams","result":[
	  {"stream":{"app":"checkout","namespace":"shop"},"values":` + string(v) + `}],
	  "stats":{"summary":{"bytesProcessedPerSecond":1,"linesProcessedPerSecond":1}}}}`
}

func ns(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }

func TestLoki(t *testing.T) {
	t.Parallel()
	var got url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/loki/api/v1/query_range" || r.Method != http.MethodGet {
			http.Error(w, "unexpected request", http.StatusNotFound)
			return
		}
		got = r.URL.Query()
		_, _ = fmt.Fprint(w, lokiAnswer(
			[2]string{ns(now.Add(-time.Second)), "level=error msg=\"payment failed\" order=8812 took=35ms token=" + plantedToken},
			[2]string{ns(now.Add(-2 * time.Second)), "level=error msg=\"payment failed\" order=8811 took=41ms token=" + plantedToken},
			[2]string{ns(now.Add(-3 * time.Second)), "level=error msg=\"db timeout\" user=jane.doe@example.com password=hunter2 card=1234-5678"},
			[2]string{ns(now.Add(-4 * time.Second)), "level=error msg=\"payment failed\" order=8810 took=12ms token=" + plantedToken},
		))
	}))
	defer srv.Close()
	l, err := logs.NewLoki(logs.LokiOptions{
		URL: srv.URL, Query: `{app="{{ .Labels.service }}"} |= "error"`, Lookback: 10 * time.Minute, Shaper: shaper(t),
		Now: func() time.Time { return now },
	})
	require.NoError(t, err)
	sec, err := l.Gather(t.Context(), checkoutIncident())
	require.NoError(t, err)

	require.Equal(t, `{app="checkout"} |= "error"`, got.Get("query"))
	require.Equal(t, ns(now.Add(-10*time.Minute)), got.Get("start"))
	require.Equal(t, ns(now), got.Get("end"))
	require.Equal(t, "backward", got.Get("direction"))

	require.Len(t, sec.Logs, 2)
	require.Equal(t, 3, sec.Logs[0].Count, "three payment failures fold into one")
	require.Contains(t, sec.Logs[0].Line, "order=8812", "the newest line stands for the group")
	require.Equal(t, now.Add(-time.Second), sec.Logs[0].At)
	require.Equal(t, `{app="checkout", namespace="shop"}`, sec.Logs[0].Origin)
	require.Equal(t, 1, sec.Logs[1].Count)
	all, err := json.Marshal(sec)
	require.NoError(t, err)
	for _, secret := range []string{plantedToken, "hunter2", "jane.doe@example.com", "1234-5678"} {
		require.NotContains(t, string(all), secret)
	}
	require.Contains(t, sec.Logs[1].Line, "password="+logs.Redacted)
	require.Contains(t, sec.Logs[1].Line, "[EMAIL]")
}

func TestLoki_Errors(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "parse error at line 1, col 2: syntax error", http.StatusBadRequest)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	u.User = url.UserPassword("loki", "s3cret-pass")
	l, err := logs.NewLoki(logs.LokiOptions{URL: u.String(), Query: `{app="x"}`, Shaper: shaper(t)})
	require.NoError(t, err)
	_, err = l.Gather(t.Context(), checkoutIncident())
	require.ErrorContains(t, err, "400")
	require.NotContains(t, err.Error(), "s3cret")
	srv.Close()
	_, err = l.Gather(t.Context(), checkoutIncident())
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
	require.NotContains(t, err.Error(), u.Host)
}

// An error answer is quoted in part, cut between two characters: the
// error is shown in Slack and the incidents API.
func TestLoki_LongErrorStaysUTF8(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "x"+strings.Repeat("é", 300), http.StatusBadRequest)
	}))
	defer srv.Close()
	l, err := logs.NewLoki(logs.LokiOptions{URL: srv.URL, Query: `{app="x"}`, Shaper: shaper(t)})
	require.NoError(t, err)
	_, err = l.Gather(t.Context(), checkoutIncident())
	require.Error(t, err)
	require.True(t, utf8.ValidString(err.Error()), "%q", err.Error())
	require.Contains(t, err.Error(), "é…")
}

func TestLoki_Injection(t *testing.T) {
	t.Parallel()
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.Query().Get("query")
		_, _ = fmt.Fprint(w, lokiAnswer())
	}))
	defer srv.Close()
	l, err := logs.NewLoki(logs.LokiOptions{URL: srv.URL, Query: `{app="{{ .Labels.service }}"}`, Shaper: shaper(t)})
	require.NoError(t, err)
	inc := &incident.Incident{CommonLabels: map[string]string{"service": `x"} or {app=~".+`}}
	sec, err := l.Gather(t.Context(), inc)
	require.NoError(t, err)
	require.Empty(t, sec.Logs)
	require.Equal(t, `{app="x\x22} or {app=~\x22.+"}`, got)
}

// esAnswer is a _search answer as Elasticsearch documents it
// (elastic.co/guide/en/elasticsearch/reference/current/search-search.html).
const esAnswer = `{"took":5,"timed_out":false,"_shards":{"total":1,"successful":1,"skipped":0,"failed":0},
 "hits":{"total":{"value":3,"relation":"eq"},"max_score":null,"hits":[
  {"_index":"logs-2026.03.02","_id":"1","_score":null,"_source":{"@timestamp":"2026-03-02T09:59:58.5Z","message":"ERROR upstream 10.0.3.7:8080 reset, request 6f1c2a9e-1b7d-4c38-9f0a-2b1d3c4e5f60 Authorization: Bearer abcdefghijklmnop1234"},"sort":[1]},
  {"_index":"logs-2026.03.02","_id":"2","_score":null,"_source":{"@timestamp":"2026-03-02T09:59:57Z","message":"ERROR upstream 10.0.3.9:8080 reset, request 0a1b2c3d-1b7d-4c38-9f0a-2b1d3c4e5f61 Authorization: Bearer zyxwvutsrqponm98765"},"sort":[2]},
  {"_index":"logs-2026.03.02","_id":"3","_score":null,"_source":{"@timestamp":"2026-03-02T09:59:50Z","log":{"message":"nested"}},"sort":[3]}
 ]}}`

func TestElasticsearch(t *testing.T) {
	t.Parallel()
	var body map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/logs-*/_search" || r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&body) != nil {
			http.Error(w, "unexpected request", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprint(w, esAnswer)
	}))
	defer srv.Close()
	e, err := logs.NewElasticsearch(logs.ElasticsearchOptions{
		URL: srv.URL, Index: "logs-*", Query: `service:{{ .Labels.service }} AND level:error`, Shaper: shaper(t),
		Now: func() time.Time { return now },
	})
	require.NoError(t, err)
	inc := &incident.Incident{CommonLabels: map[string]string{"service": "check out:*"}}
	sec, err := e.Gather(t.Context(), inc)
	require.NoError(t, err)
	q := body["query"].(map[string]any)["bool"].(map[string]any)["must"].([]any)[0].(map[string]any)["query_string"].(map[string]any)["query"]
	require.Equal(t, `service:check\ out\:\* AND level:error`, q)
	require.Len(t, sec.Logs, 1, "the two upstream resets differ only in addresses and IDs")
	require.Equal(t, 2, sec.Logs[0].Count)
	require.Contains(t, sec.Logs[0].Line, "10.0.3.7")
	require.Contains(t, sec.Logs[0].Line, "Authorization: "+logs.Redacted)
	require.NotContains(t, sec.Logs[0].Line, "abcdefghijklmnop1234")
	require.Equal(t, "logs-2026.03.02", sec.Logs[0].Origin)
}

// A hit's time comes from its timestamp field when that is RFC 3339 or
// epoch milliseconds, else from the sort value Elasticsearch returns for
// the date it sorted on (epoch milliseconds, whatever the field's format).
func TestElasticsearch_HitTimes(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprint(w, `{"hits":{"hits":[
  {"_index":"a","_source":{"@timestamp":"2026-03-02T09:59:58Z","message":"rfc3339 failed"},"sort":[1772445598000]},
  {"_index":"b","_source":{"@timestamp":1772445590000,"message":"millis failed"},"sort":[1772445590000]},
  {"_index":"c","_source":{"@timestamp":"2026-03-02 09:59:40","message":"custom format failed"},"sort":[1772445580000]}
]}}`)
	}))
	defer srv.Close()
	e, err := logs.NewElasticsearch(logs.ElasticsearchOptions{
		URL: srv.URL, Index: "logs", Query: `level:error`, Shaper: shaper(t), Now: func() time.Time { return now },
	})
	require.NoError(t, err)
	sec, err := e.Gather(t.Context(), &incident.Incident{})
	require.NoError(t, err)
	at := map[string]time.Time{}
	for _, l := range sec.Logs {
		at[l.Origin] = l.At
	}
	require.Equal(t, map[string]time.Time{
		"a": time.Date(2026, 3, 2, 9, 59, 58, 0, time.UTC),
		"b": time.Date(2026, 3, 2, 9, 59, 50, 0, time.UTC),
		"c": time.Date(2026, 3, 2, 9, 59, 40, 0, time.UTC),
	}, at)
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ a, b string }{
		{"took 35ms", "took 120ms"},
		{"id 6f1c2a9e-1b7d-4c38-9f0a-2b1d3c4e5f60", "id 0a1b2c3d-0000-4c38-9f0a-2b1d3c4e5f61"},
		{"ptr 0xc000123abc", "ptr 0xc000999def"},
		{"sha deadbeef1234", "sha 1234cafe5678"},
	} {
		require.Equal(t, logs.Normalize(tt.a), logs.Normalize(tt.b), tt.a)
	}
	require.NotEqual(t, logs.Normalize("payment failed"), logs.Normalize("payment refused"))
	require.Equal(t, "cafe failed", logs.Normalize("cafe failed"), "hex letters alone are a word")
}

func TestRedactor(t *testing.T) {
	t.Parallel()
	r, err := logs.NewRedactor(nil, true)
	require.NoError(t, err)
	for in, secret := range map[string]string{
		"connecting to postgres://app:pa55word@db:5432/x":     "pa55word",
		`{"api_key": "AKIAABCDEFGHIJKLMNOP"}`:                 "AKIAABCDEFGHIJKLMNOP",
		"slack token " + plantedToken:                         plantedToken,
		"jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_nature": "eyJzdWIiOiIxIn0",
		"secret=abc123 next":                                  "abc123",
		"mail ops@example.org failed":                         "ops@example.org",
	} {
		require.NotContains(t, r.Redact(in), secret, in)
	}
	off, err := logs.NewRedactor(nil, false)
	require.NoError(t, err)
	require.Equal(t, "secret=abc123", off.Redact("secret=abc123"))
	_, err = logs.NewRedactor([]string{"("}, true)
	require.Error(t, err)
}

func FuzzFold(f *testing.F) {
	f.Add("level=error took 35ms id 6f1c2a9e-1b7d-4c38-9f0a-2b1d3c4e5f60", "level=error took 1ms id 0xdeadbeef", 3)
	f.Add("", "\n\n", 0)
	f.Add("ééé 123", "ééé 4", 1)
	f.Fuzz(func(t *testing.T, a, b string, maxLines int) {
		maxLines %= 50
		lines := []logs.Line{{At: now, Text: a}, {At: now.Add(-time.Second), Text: b}, {At: now.Add(time.Second), Text: a}}
		out := logs.Fold(lines, maxLines)
		total := 0
		for _, l := range out {
			require.Positive(t, l.Count)
			require.NotEmpty(t, strings.TrimSpace(l.Line))
			total += l.Count
		}
		require.LessOrEqual(t, total, len(lines))
		if maxLines > 0 {
			require.LessOrEqual(t, len(out), maxLines)
		}
		// Normalising is idempotent on its own output.
		n := logs.Normalize(a)
		require.Equal(t, n, logs.Normalize(n))
	})
}

// TestEscapeQueryString_OneTerm: query_string splits terms on whitespace
// (Lucene's classic grammar: space, \t, \n, \r and U+3000) and reads
// AND, OR and NOT as operators, so a label value like "web<TAB>OR<TAB>x"
// would widen `service:{{ .Labels.service }}` to every document holding x.
// Every one of them must come out escaped: one term.
func TestEscapeQueryString_OneTerm(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{ //nolint:gosec // G101: label values, no credentials.
		"web\tOR\tpassword":  "web\\\tOR\\\tpassword",
		"web\nOR\r*":         "web\\\nOR\\\r\\*",
		"web\u3000OR\u3000x": "web\\\u3000OR\\\u3000x",
		"web OR x":           `web\ OR\ x`,
		"OR":                 `\OR`,
		"AND":                `\AND`,
		"NOT":                `\NOT`,
		"ORDER":              "ORDER",
	} {
		require.Equal(t, want, logs.EscapeQueryString(in), "%q", in)
	}
}

// TestRedactor_QuotedValues: JSON logged inside a JSON or logfmt string has
// its quotes escaped (\"password\":\"…\"), and a quoted value may hold
// spaces; neither may leave the secret, or a part of it, in the line.
func TestRedactor_QuotedValues(t *testing.T) {
	t.Parallel()
	r, err := logs.NewRedactor(nil, true)
	require.NoError(t, err)
	for in, want := range map[string]string{ //nolint:gosec // G101: made-up secrets whose redaction the test checks.
		`msg="request body {\"user\":\"bob\",\"password\":\"hunter2\"}"`: `msg="request body {\"user\":\"bob\",\"password\":\"[REDACTED]\"}"`,
		`{"msg":"login {\"token\": \"tok-123456\"} failed"}`:             `{"msg":"login {\"token\": \"[REDACTED]\"} failed"}`,
		`password="correct horse battery"`:                               `password="[REDACTED]"`,
		`{"password": "correct horse", "user": "bob"}`:                   `{"password": "[REDACTED]", "user": "bob"}`,
		`secret='two words' next`:                                        `secret='[REDACTED]' next`,
		`password=hunter2 next`:                                          `password=[REDACTED] next`,
		`?access_token=abc123&x=1`:                                       `?access_token=[REDACTED]&x=1`,
		`DB_PASS=hunter2 started`:                                        `DB_PASS=[REDACTED] started`,
		`"private_key": "abc def"`:                                       `"private_key": "[REDACTED]"`,
		`Cookie: a=1; sid=s3cr3t; theme=dark`:                            `Cookie: [REDACTED]`,
		`dial postgres://app:p@ss@db:5432/x failed`:                      `dial postgres://app:[REDACTED]@db:5432/x failed`,
	} {
		require.Equal(t, want, r.Redact(in), in)
	}
}
