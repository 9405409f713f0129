package webhook_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/sqlite"
	"github.com/responder/responder/internal/testenv"
	"github.com/responder/responder/internal/webhook"
)

const (
	token    = "s3cret-token"
	user     = "alertmanager"
	password = "s3cret-password"
	hookPath = "/webhook/alertmanager"
)

var (
	bearerConfig = webhook.Config{
		Authorization: &webhook.Authorization{Type: "Bearer", Credentials: incident.Secret(token)},
		MaxBodySize:   webhook.DefaultMaxBodySize,
	}
	basicConfig = webhook.Config{
		BasicAuth:   &webhook.BasicAuth{Username: user, Password: incident.Secret(password)},
		MaxBodySize: webhook.DefaultMaxBodySize,
	}
	openConfig = webhook.Config{MaxBodySize: webhook.DefaultMaxBodySize}
)

// env is a webhook server on loopback over a real SQLite store.
type env struct {
	db   *sqlite.DB
	path string
	reg  *prometheus.Registry
	srv  *httptest.Server

	stopCommitter func()
}

type envOptions struct {
	cfg           webhook.Config
	acceptTimeout time.Duration
	// wrap, when set, stands between the server and the store.
	wrap func(webhook.Sink) webhook.Sink
	// logger, when set, receives the server's logs (discarded otherwise).
	logger *slog.Logger
}

// newEnv opens a store in a temporary directory, starts its writer loop
// (which commits deliveries and applies deferred ones), and serves
// webhook.NewServer on loopback.
func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	ctx := t.Context()
	e := &env{path: filepath.Join(t.TempDir(), "r.db"), reg: prometheus.NewPedanticRegistry()}
	db, err := sqlite.Open(ctx, e.path, store.Options{})
	require.NoError(t, err)
	e.db = db
	t.Cleanup(func() { _ = db.Close() })

	logger := o.logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- db.Run(runCtx) }()
	var once sync.Once
	e.stopCommitter = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(e.stopCommitter)

	cfg := o.cfg
	var sink webhook.Sink = db
	if o.wrap != nil {
		sink = o.wrap(db)
	}
	e.srv = httptest.NewServer(webhook.NewServer(logger, sink, webhook.Options{
		Config:        func() webhook.Config { return cfg },
		Incidents:     db,
		Registerer:    e.reg,
		AcceptTimeout: o.acceptTimeout,
	}))
	t.Cleanup(e.srv.Close)
	return e
}

type response struct {
	code   int
	header http.Header
	body   map[string]any
}

// post sends body to the webhook; auth, when not nil, sets credentials.
func (e *env) post(t *testing.T, body io.Reader, auth func(r *http.Request)) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+hookPath, body)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Alertmanager/0.35.0")
	if auth != nil {
		auth(req)
	}
	resp, err := e.srv.Client().Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := response{code: resp.StatusCode, header: resp.Header}
	require.Equal(t, "application/json", strings.Split(resp.Header.Get("Content-Type"), ";")[0], "body %s", raw)
	require.NoError(t, json.Unmarshal(raw, &out.body), "body %s", raw)
	return out
}

func bearer(tok string) func(r *http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func basic(u, p string) func(r *http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(u, p) }
}

// rejected reads responder_webhook_rejected_total by reason, leaving out
// reasons that are zero.
func (e *env) rejected(t *testing.T) map[string]float64 {
	t.Helper()
	return counters(t, e.reg, "responder_webhook_rejected_total", "reason")
}

func counters(t *testing.T, g prometheus.Gatherer, name, label string) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue()
			if v == 0 {
				continue
			}
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label {
					out[lp.GetValue()] += v
				}
			}
		}
	}
	return out
}

// stored counts stored notifications and jobs.
func (e *env) stored(t *testing.T) (map[string]int, []incident.Job) {
	t.Helper()
	counts, err := e.db.NotificationCounts(t.Context())
	require.NoError(t, err)
	jobs, err := e.db.ListJobs(t.Context(), incident.JobFilter{State: "", Limit: 1000})
	require.NoError(t, err)
	return counts, jobs
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := fs.ReadFile(os.DirFS(filepath.Join("..", "..", "testdata")), name)
	require.NoError(t, err)
	return b
}

// edited re-encodes a fixture after edit changed its generic form.
func edited(t testing.TB, name string, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(fixture(t, name), &m))
	edit(m)
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return b
}

func alertAt(m map[string]any, i int) map[string]any { return m["alerts"].([]any)[i].(map[string]any) }

// chunked hides the length of b, so the request is sent without
// Content-Length and the server has to count.
func chunked(b []byte) io.Reader { return io.MultiReader(bytes.NewReader(b)) }

func TestWebhookRejectsBadInput(t *testing.T) {
	t.Parallel()
	firing := fixture(t, "am_v4_firing.json")
	small := bearerConfig
	small.MaxBodySize = 1 * units.KiB
	require.Greater(t, len(firing), 1024)

	tests := []struct {
		name       string
		cfg        webhook.Config
		body       io.Reader
		auth       func(r *http.Request)
		wantCode   int
		wantReason string
	}{
		{name: "malformed JSON", cfg: bearerConfig, body: strings.NewReader(`{"version":"4",`), auth: bearer(token), wantCode: 400, wantReason: "malformed_json"},
		{name: "not an object", cfg: bearerConfig, body: strings.NewReader(`"hello"`), auth: bearer(token), wantCode: 400, wantReason: "malformed_json"},
		{name: "empty body", cfg: bearerConfig, body: http.NoBody, auth: bearer(token), wantCode: 400, wantReason: "malformed_json"},
		{name: "version 3", cfg: bearerConfig, body: bytes.NewReader(edited(t, "am_v4_firing.json", func(m map[string]any) { m["version"] = "3" })), auth: bearer(token), wantCode: 400, wantReason: "unsupported_version"},
		{name: "alerts empty", cfg: bearerConfig, body: bytes.NewReader(edited(t, "am_v4_firing.json", func(m map[string]any) { m["alerts"] = []any{} })), auth: bearer(token), wantCode: 400, wantReason: "missing_alerts"},
		{name: "alerts absent", cfg: bearerConfig, body: bytes.NewReader(edited(t, "am_v4_firing.json", func(m map[string]any) { delete(m, "alerts") })), auth: bearer(token), wantCode: 400, wantReason: "missing_alerts"},
		{name: "group key missing", cfg: bearerConfig, body: bytes.NewReader(edited(t, "am_v4_firing.json", func(m map[string]any) { delete(m, "groupKey") })), auth: bearer(token), wantCode: 400, wantReason: "missing_group_key"},
		{name: "bad notification status", cfg: bearerConfig, body: bytes.NewReader(edited(t, "am_v4_firing.json", func(m map[string]any) { m["status"] = "pending" })), auth: bearer(token), wantCode: 400, wantReason: "invalid_status"},
		{name: "alert with bad status", cfg: bearerConfig, body: bytes.NewReader(edited(t, "am_v4_firing.json", func(m map[string]any) { alertAt(m, 1)["status"] = "pending" })), auth: bearer(token), wantCode: 400, wantReason: "invalid_alert"},
		{name: "invalid UTF-8 in a label value", cfg: bearerConfig, body: bytes.NewReader(bytes.Replace(firing, []byte(`"team": "payments"`), []byte("\"team\": \"pay\xffments\""), 1)), auth: bearer(token), wantCode: 400, wantReason: "invalid_utf8"},
		{name: "oversized with Content-Length", cfg: small, body: bytes.NewReader(firing), auth: bearer(token), wantCode: 413, wantReason: "too_large"},
		{name: "oversized chunked", cfg: small, body: chunked(firing), auth: bearer(token), wantCode: 413, wantReason: "too_large"},
		{name: "missing token", cfg: bearerConfig, body: bytes.NewReader(firing), wantCode: 401, wantReason: "unauthorized"},
		{name: "wrong token", cfg: bearerConfig, body: bytes.NewReader(firing), auth: bearer(token + "x"), wantCode: 401, wantReason: "unauthorized"},
		{name: "token prefix", cfg: bearerConfig, body: bytes.NewReader(firing), auth: bearer(token[:len(token)-1]), wantCode: 401, wantReason: "unauthorized"},
		{name: "empty token", cfg: bearerConfig, body: bytes.NewReader(firing), auth: bearer(""), wantCode: 401, wantReason: "unauthorized"},
		{name: "wrong scheme", cfg: bearerConfig, body: bytes.NewReader(firing), auth: func(r *http.Request) { r.Header.Set("Authorization", "Token "+token) }, wantCode: 401, wantReason: "unauthorized"},
		{name: "token without scheme", cfg: bearerConfig, body: bytes.NewReader(firing), auth: func(r *http.Request) { r.Header.Set("Authorization", token) }, wantCode: 401, wantReason: "unauthorized"},
		{name: "basic auth against bearer", cfg: bearerConfig, body: bytes.NewReader(firing), auth: basic(user, token), wantCode: 401, wantReason: "unauthorized"},
		{name: "basic auth wrong password", cfg: basicConfig, body: bytes.NewReader(firing), auth: basic(user, password+"x"), wantCode: 401, wantReason: "unauthorized"},
		{name: "basic auth wrong user", cfg: basicConfig, body: bytes.NewReader(firing), auth: basic("someone", password), wantCode: 401, wantReason: "unauthorized"},
		{name: "basic auth missing", cfg: basicConfig, body: bytes.NewReader(firing), wantCode: 401, wantReason: "unauthorized"},
		{name: "bearer against basic auth", cfg: basicConfig, body: bytes.NewReader(firing), auth: bearer(password), wantCode: 401, wantReason: "unauthorized"},
		// Credentials are checked before the body is read.
		{name: "unauthorized and malformed", cfg: bearerConfig, body: strings.NewReader(`{`), wantCode: 401, wantReason: "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{cfg: tt.cfg})
			got := e.post(t, tt.body, tt.auth)

			require.Equal(t, tt.wantCode, got.code, "body %v", got.body)
			require.Equal(t, "error", got.body["status"])
			require.NotEmpty(t, got.body["error"])
			require.Equal(t, tt.wantReason, got.body["code"])
			if tt.wantCode == http.StatusUnauthorized {
				require.NotEmpty(t, got.header.Get("WWW-Authenticate"))
			}
			for _, secret := range []string{token, password} {
				require.NotContains(t, fmt.Sprint(got.body), secret)
			}

			counts, jobs := e.stored(t)
			require.Empty(t, counts, "a rejected notification was stored")
			require.Empty(t, jobs, "a rejected notification queued work")
			require.Equal(t, map[string]float64{tt.wantReason: 1}, e.rejected(t))
			require.Empty(t, counters(t, e.reg, "responder_webhook_notifications_total", "outcome"))
		})
	}
}

func TestWebhookStorageFailure(t *testing.T) {
	t.Parallel()
	firing := fixture(t, "am_v4_firing.json")
	tests := []struct {
		name         string
		breakStorage func(t *testing.T, e *env)
	}{
		{name: "database closed", breakStorage: func(t *testing.T, e *env) { require.NoError(t, e.db.Close()) }},
		// Nobody commits: the request must give up after AcceptTimeout.
		{name: "committer stopped", breakStorage: func(t *testing.T, e *env) { e.stopCommitter() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{cfg: bearerConfig, acceptTimeout: 300 * time.Millisecond})
			tt.breakStorage(t, e)

			start := time.Now()
			got := e.post(t, bytes.NewReader(firing), bearer(token))
			require.Equal(t, http.StatusServiceUnavailable, got.code, "body %v", got.body)
			require.Less(t, time.Since(start), 5*time.Second, "a storage failure must not hang the request")
			require.Equal(t, "error", got.body["status"])
			require.NotEmpty(t, got.body["error"])
			require.Equal(t, "storage_unavailable", got.body["code"])
			require.Equal(t, map[string]float64{"storage_unavailable": 1}, e.rejected(t))

			// Nothing reached the file.
			e.stopCommitter()
			require.NoError(t, e.db.Close())
			db, err := sqlite.Open(t.Context(), e.path, store.Options{})
			require.NoError(t, err)
			defer func() { _ = db.Close() }()
			counts, err := db.NotificationCounts(t.Context())
			require.NoError(t, err)
			require.Empty(t, counts)
		})
	}
}

// failingSink refuses every delivery with err.
type failingSink struct{ err error }

func (s failingSink) Accept(context.Context, incident.Delivery) (incident.Receipt, error) {
	return incident.Receipt{}, s.err
}

// TestWebhookStorageFailure_Answer: a delivery storage did not commit is
// answered 503 with the code the metric counts (storage_unavailable, as
// the API's 503; it said service_unavailable) and the store's message
// only, while its warning names the driver's error too (it said only
// "storage cannot commit: begin"), and never a password.
func TestWebhookStorageFailure_Answer(t *testing.T) {
	t.Parallel()
	addr, _ := refusedDial(t)
	pgDown := pgRefused(t, addr)
	firing := fixture(t, "am_v4_firing.json")

	tests := []struct {
		name      string
		err       error
		wantError string // the answer's
		wantLog   string // the warning's err, a prefix
	}{
		{
			name: "sqlite full", err: &incident.Error{Kind: incident.Unavailable, Msg: "storage cannot commit: commit", Err: errors.New("database or disk is full (13)")},
			wantError: "storage cannot commit: commit", wantLog: "storage cannot commit: commit: database or disk is full (13)",
		},
		{
			name: "postgres refused", err: &incident.Error{Kind: incident.Unavailable, Msg: "storage cannot commit: begin", Err: pgDown},
			wantError: "storage cannot commit: begin", wantLog: "storage cannot commit: begin: failed to connect to `user=resp database=responder`:",
		},
		{
			name: "timed out", err: &incident.Error{Kind: incident.Unavailable, Msg: "storage did not commit in time", Err: context.DeadlineExceeded},
			wantError: "storage did not commit in time", wantLog: "storage did not commit in time: context deadline exceeded",
		},
		{
			name: "not classified", err: errors.New("scan receipt: converting NULL to int64"),
			wantError: "storage cannot commit", wantLog: "storage cannot commit: scan receipt: converting NULL to int64",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs testenv.LogBuffer
			e := newEnv(t, envOptions{
				cfg: bearerConfig, logger: slog.New(slog.NewJSONHandler(&logs, nil)),
				wrap: func(webhook.Sink) webhook.Sink { return failingSink{err: tt.err} },
			})
			got := e.post(t, bytes.NewReader(firing), bearer(token))
			require.Equal(t, http.StatusServiceUnavailable, got.code, "body %v", got.body)
			require.Equal(t, map[string]any{"status": "error", "error": tt.wantError, "code": "storage_unavailable"}, got.body,
				"the metric's reason, and the store's message only")
			require.Equal(t, map[string]float64{"storage_unavailable": 1}, e.rejected(t))

			var line map[string]any
			for l := range strings.Lines(logs.String()) {
				if strings.Contains(l, "notification not committed") {
					require.NoError(t, json.Unmarshal([]byte(l), &line))
				}
			}
			require.NotNil(t, line, "no warning in:\n%s", logs.String())
			require.Equal(t, "WARN", line["level"])
			require.Equal(t, `{}/{severity="critical"}:{alertname="CheckoutLatencyHigh"}`, line["group_key"])
			require.IsType(t, "", line["err"])
			require.True(t, strings.HasPrefix(line["err"].(string), tt.wantLog), "err=%q", line["err"])
			if tt.name == "postgres refused" {
				require.Contains(t, line["err"], "connection refused")
			}
			require.NotContains(t, logs.String(), pgPassword)
		})
	}
}

func TestWebhookAccepts(t *testing.T) {
	t.Parallel()
	firing := fixture(t, "am_v4_firing.json")
	tests := []struct {
		name string
		cfg  webhook.Config
		auth func(r *http.Request)
		body io.Reader
	}{
		{name: "bearer", cfg: bearerConfig, auth: bearer(token), body: bytes.NewReader(firing)},
		{name: "bearer scheme in lower case", cfg: bearerConfig, auth: func(r *http.Request) { r.Header.Set("Authorization", "bearer "+token) }, body: bytes.NewReader(firing)},
		{name: "basic auth", cfg: basicConfig, auth: basic(user, password), body: bytes.NewReader(firing)},
		{name: "no authentication configured", cfg: openConfig, body: bytes.NewReader(firing)},
		{name: "chunked body", cfg: bearerConfig, auth: bearer(token), body: chunked(firing)},
		{name: "body exactly at the limit", cfg: webhook.Config{Authorization: bearerConfig.Authorization, MaxBodySize: units.Base2Bytes(len(firing))}, auth: bearer(token), body: bytes.NewReader(firing)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{cfg: tt.cfg})
			got := e.post(t, tt.body, tt.auth)

			require.Equal(t, http.StatusOK, got.code, "body %v", got.body)
			require.Equal(t, "success", got.body["status"])
			require.Equal(t, false, got.body["duplicate"])
			id, ok := got.body["notification_id"].(float64)
			require.True(t, ok, "notification_id missing in %v", got.body)
			require.Positive(t, id)

			// A lone delivery is applied in the commit that acknowledges it.
			counts, jobs := e.stored(t)
			require.Equal(t, map[string]int{incident.NotificationProcessed: 1}, counts)
			require.Empty(t, jobs, "nothing deferred")
			inc := onlyIncident(t, e)
			require.Equal(t, incident.StatusFiring, inc.Status)
			require.Empty(t, e.rejected(t))
			require.Equal(t, map[string]float64{"new": 1}, counters(t, e.reg, "responder_webhook_notifications_total", "outcome"))
			require.Equal(t, map[string]float64{"firing": 2}, counters(t, e.reg, "responder_alerts_received_total", "status"))
		})
	}
}

func TestWebhookDuplicates(t *testing.T) {
	t.Parallel()
	const deliveries = 50
	e := newEnv(t, envOptions{cfg: bearerConfig})
	first := fixture(t, "am_v4_firing_10.json")
	initial, err := incident.DecodeMessage(first)
	require.NoError(t, err)
	nAlerts := len(initial.Alerts)
	require.Equal(t, 10, nAlerts)

	// The same notification, delivered 50 times at once (HA peers, retries).
	type result struct {
		code int
		dup  bool
		id   int64
	}
	results := make([]result, deliveries)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range deliveries {
		wg.Go(func() {
			<-start
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+hookPath, bytes.NewReader(first))
			if err != nil {
				return
			}
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				return
			}
			defer func() { _ = resp.Body.Close() }()
			var body struct {
				NotificationID int64 `json:"notification_id"`
				Duplicate      bool  `json:"duplicate"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			results[i] = result{code: resp.StatusCode, dup: body.Duplicate, id: body.NotificationID}
		})
	}
	close(start)
	wg.Wait()

	var fresh, dups int
	ids := map[int64]bool{}
	for i, r := range results {
		require.Equal(t, http.StatusOK, r.code, "delivery %d", i)
		require.Positive(t, r.id, "delivery %d", i)
		ids[r.id] = true
		if r.dup {
			dups++
		} else {
			fresh++
		}
	}
	require.Equal(t, 1, fresh, "exactly one delivery must be new")
	require.Equal(t, deliveries-1, dups)
	require.Len(t, ids, deliveries, "every delivery is stored under its own id")
	counts, jobs := e.stored(t)
	require.Equal(t, deliveries-1, counts[incident.NotificationDuplicate])
	require.Equal(t, 1, counts[incident.NotificationPending]+counts[incident.NotificationProcessed], "one new delivery")
	require.LessOrEqual(t, len(jobs), 1, "only the new delivery may queue work (when it came in a burst)")
	require.Equal(t, map[string]float64{"new": 1, "duplicate": deliveries - 1}, counters(t, e.reg, "responder_webhook_notifications_total", "outcome"))

	// Ingest: one incident, one change per alert.
	drained := func(processed int) func() bool {
		return func() bool {
			counts, err := e.db.NotificationCounts(context.Background())
			if err != nil || counts[incident.NotificationProcessed] != processed || counts[incident.NotificationPending] != 0 {
				return false
			}
			for _, st := range []string{incident.JobQueued, incident.JobRunning, incident.JobParked} {
				if jobs, err := e.db.ListJobs(context.Background(), incident.JobFilter{State: st, Limit: 10}); err != nil || len(jobs) > 0 {
					return false
				}
			}
			return true
		}
	}
	require.Eventually(t, drained(1), 10*time.Second, 10*time.Millisecond)

	inc := onlyIncident(t, e)
	require.Equal(t, incident.StatusFiring, inc.Status)
	require.Equal(t, initial.GroupKey, inc.GroupKey)
	require.Equal(t, 1, inc.Episode)
	require.Len(t, inc.Alerts, nAlerts)
	require.Equal(t, nAlerts, inc.FiringAlerts)
	require.Zero(t, inc.ResolvedAlerts)
	require.Len(t, inc.History, nAlerts)
	seen := map[string]bool{}
	for _, c := range inc.History {
		require.Equal(t, incident.StatusFiring, c.Status)
		require.False(t, seen[c.Fingerprint], "change for %s recorded twice", c.Fingerprint)
		seen[c.Fingerprint] = true
	}

	// The group changes: one alert resolves and one new alert fires.
	resolvedFP := initial.Alerts[3].Fingerprint
	const newFP = "6a4f37c34a2d1eff"
	second := edited(t, "am_v4_firing_10.json", func(m map[string]any) {
		r := alertAt(m, 3)
		r["status"], r["endsAt"] = "resolved", "2026-11-25T14:31:05Z"
		n := maps.Clone(alertAt(m, 0))
		n["fingerprint"], n["startsAt"] = newFP, "2026-11-25T14:20:00Z"
		n["labels"] = map[string]any{"alertname": "CheckoutLatencyHigh", "pod": "checkout-new"}
		m["alerts"] = append(m["alerts"].([]any), n)
		m["notification_reason"] = "new alerts added"
	})
	for i, wantDup := range []bool{false, true} {
		got := e.post(t, bytes.NewReader(second), bearer(token))
		require.Equal(t, http.StatusOK, got.code, "delivery %d: %v", i, got.body)
		require.Equal(t, wantDup, got.body["duplicate"], "delivery %d", i)
	}
	require.Eventually(t, drained(2), 10*time.Second, 10*time.Millisecond)

	inc = onlyIncident(t, e)
	require.Equal(t, incident.StatusFiring, inc.Status)
	require.Len(t, inc.Alerts, nAlerts+1)
	require.Equal(t, nAlerts, inc.FiringAlerts)
	require.Equal(t, 1, inc.ResolvedAlerts)
	require.Len(t, inc.History, nAlerts+2)
	type change struct{ fingerprint, status string }
	var added []change
	for _, c := range inc.History[nAlerts:] {
		added = append(added, change{c.Fingerprint, c.Status})
	}
	require.ElementsMatch(t, []change{{resolvedFP, incident.StatusResolved}, {newFP, incident.StatusFiring}}, added)
	require.Equal(t, inc.History[nAlerts].NotificationID, inc.History[nAlerts+1].NotificationID)
}

// onlyIncident asserts that exactly one incident exists and returns it in full.
func onlyIncident(t *testing.T, e *env) *incident.Incident {
	t.Helper()
	list, err := e.db.ListIncidents(t.Context(), incident.ListFilter{Limit: 10})
	require.NoError(t, err)
	require.Len(t, list, 1)
	inc, err := e.db.GetIncident(t.Context(), list[0].ID)
	require.NoError(t, err)
	return inc
}

// recorder passes deliveries on to the store, keeping what it was given;
// while fail is set it refuses them instead.
type recorder struct {
	next webhook.Sink
	fail atomic.Bool
	mu   sync.Mutex
	got  []incident.Delivery
}

func (r *recorder) Accept(ctx context.Context, d incident.Delivery) (incident.Receipt, error) {
	d.Raw = bytes.Clone(d.Raw) // the webhook reuses it once Accept has returned
	r.mu.Lock()
	r.got = append(r.got, d)
	r.mu.Unlock()
	if r.fail.Load() {
		return incident.Receipt{}, &incident.Error{Kind: incident.Unavailable, Msg: "refused by the test"}
	}
	return r.next.Accept(ctx, d)
}

// wrap puts r between the server and next (envOptions.wrap).
func (r *recorder) wrap(next webhook.Sink) webhook.Sink {
	r.next = next
	return r
}

func (r *recorder) deliveries() []incident.Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// TestWebhookKnownBytes: the store gets the identity of a message only;
// the very bytes of a committed delivery are not decoded again, and the
// reply, the metrics and what is stored are those of any duplicate. Bytes
// that were refused, or not committed, are decoded each time.
func TestWebhookKnownBytes(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	e := newEnv(t, envOptions{cfg: bearerConfig, wrap: rec.wrap})
	body := fixture(t, "am_v4_firing.json")
	full, err := incident.DecodeMessage(body)
	require.NoError(t, err)

	rec.fail.Store(true)
	require.Equal(t, http.StatusServiceUnavailable, e.post(t, bytes.NewReader(body), bearer(token)).code)
	rec.fail.Store(false)
	first := e.post(t, bytes.NewReader(body), bearer(token))
	require.Equal(t, http.StatusOK, first.code)
	require.Equal(t, false, first.body["duplicate"])
	again := e.post(t, bytes.NewReader(body), bearer(token))
	require.Equal(t, http.StatusOK, again.code)
	require.Equal(t, true, again.body["duplicate"])

	// Committing needs the identity of the message only: every delivery is
	// Partial. Decoded bodies carry their alerts' fingerprints; remembered
	// ones only their statuses.
	got := rec.deliveries()
	require.Len(t, got, 3)
	for _, d := range got {
		require.True(t, d.Partial)
		require.Empty(t, d.Message.CommonLabels)
		require.Equal(t, sha256.Sum256(body), d.Digest)
	}
	require.Equal(t, full.Alerts[0].Fingerprint, got[0].Message.Alerts[0].Fingerprint, "refused bytes are not remembered")
	require.Equal(t, full.Alerts[0].Fingerprint, got[1].Message.Alerts[0].Fingerprint)
	require.Empty(t, got[2].Message.Alerts[0].Fingerprint, "committed bytes are not decoded again")
	require.Equal(t, full.StateHash(), got[1].Hash())
	require.Equal(t, full.StateHash(), got[2].Hash(), "the state hash remembered")
	require.Equal(t, full.GroupKey, got[2].Message.GroupKey)
	require.Equal(t, full.Receiver, got[2].Message.Receiver)
	require.Len(t, got[2].Message.Alerts, len(full.Alerts))
	require.Empty(t, got[2].Message.CommonLabels)
	require.Empty(t, got[2].Message.Alerts[0].Labels)

	counts, _ := e.stored(t)
	require.Equal(t, map[string]int{incident.NotificationProcessed: 1, incident.NotificationDuplicate: 1}, counts)
	require.Equal(t, map[string]float64{"new": 1, "duplicate": 1}, counters(t, e.reg, "responder_webhook_notifications_total", "outcome"))
	require.Equal(t, map[string]float64{"firing": 4}, counters(t, e.reg, "responder_alerts_received_total", "status"))

	// Refused bytes are refused every time.
	bad := edited(t, "am_v4_firing.json", func(m map[string]any) { m["version"] = "3" })
	for range 2 {
		require.Equal(t, http.StatusBadRequest, e.post(t, bytes.NewReader(bad), bearer(token)).code)
	}
	require.Equal(t, map[string]float64{"storage_unavailable": 1, "unsupported_version": 2}, e.rejected(t))
	require.Len(t, rec.deliveries(), 3, "refused bytes never reach the store")
}

// lateSink stands for a store whose commit outlives the request: it keeps
// the bytes of a delivery it refused without copying them, as a writer that
// timed out may still read them.
type lateSink struct {
	next webhook.Sink
	mu   sync.Mutex
	kept []byte
}

// wrap puts l between the server and next (envOptions.wrap).
func (l *lateSink) wrap(next webhook.Sink) webhook.Sink {
	l.next = next
	return l
}

func (l *lateSink) Accept(ctx context.Context, d incident.Delivery) (incident.Receipt, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kept == nil {
		l.kept = d.Raw
		return incident.Receipt{}, &incident.Error{Kind: incident.Unavailable, Msg: "did not commit in time"}
	}
	return l.next.Accept(ctx, d)
}

// TestWebhook_BodyOfAFailedAcceptIsNotReused: the body buffer of a request
// whose Accept failed stays out of the pool; the requests after it (whose
// buffers are reused) do not write over it.
func TestWebhook_BodyOfAFailedAcceptIsNotReused(t *testing.T) {
	t.Parallel()
	late := &lateSink{}
	e := newEnv(t, envOptions{cfg: bearerConfig, wrap: late.wrap})
	first := fixture(t, "am_v4_firing.json")
	require.Equal(t, http.StatusServiceUnavailable, e.post(t, bytes.NewReader(first), bearer(token)).code)
	other := fixture(t, "am_v4_resolved.json")
	for range 30 {
		require.Equal(t, http.StatusOK, e.post(t, bytes.NewReader(other), bearer(token)).code)
		require.Equal(t, http.StatusBadRequest, e.post(t, strings.NewReader(`{"version":"4"`), bearer(token)).code)
	}
	late.mu.Lock()
	defer late.mu.Unlock()
	require.Equal(t, string(first), string(late.kept))
}
