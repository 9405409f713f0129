package webhook_test

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/webhook"
)

// failingIncidents answers every read and retry with err.
type failingIncidents struct{ err error }

func (f failingIncidents) ListIncidents(context.Context, incident.ListFilter) ([]incident.Incident, error) {
	return nil, f.err
}

func (f failingIncidents) GetIncident(context.Context, int64) (*incident.Incident, error) {
	return nil, f.err
}

func (f failingIncidents) ListJobs(context.Context, incident.JobFilter) ([]incident.Job, error) {
	return nil, f.err
}

func (f failingIncidents) Retry(context.Context, int64) error { return f.err }

// apiCall is one request to an endpoint backed by Incidents.
type apiCall struct{ method, path string }

var incidentsAPI = []apiCall{
	{http.MethodGet, "/api/v1/incidents"},
	{http.MethodGet, "/api/v1/incidents/1"},
	{http.MethodGet, "/api/v1/jobs"},
	{http.MethodPost, "/api/v1/jobs/1/retry"},
}

// call sends an authenticated request and decodes the JSON answer.
func call(t *testing.T, srv *httptest.Server, c apiCall) (int, map[string]any, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), c.method, srv.URL+c.path, http.NoBody)
	require.NoError(t, err)
	bearer(token)(req)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "application/json", strings.Split(resp.Header.Get("Content-Type"), ";")[0], "body %s", raw)
	var body map[string]any
	require.NoError(t, json.Unmarshal(raw, &body), "body %s", raw)
	return resp.StatusCode, body, string(raw)
}

// The incidents API answers 503, like the webhook, when storage is closed:
// the same request may succeed later.
func TestIncidentsAPI_StorageClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cfg: bearerConfig})
	e.stopCommitter()
	require.NoError(t, e.db.Close())
	for _, c := range incidentsAPI {
		code, body, raw := call(t, e.srv, c)
		require.Equal(t, http.StatusServiceUnavailable, code, "%s %s: %s", c.method, c.path, raw)
		require.Equal(t, map[string]any{"status": "error", "error": "storage unavailable", "code": "storage_unavailable"}, body, c.path)
		require.NotContains(t, raw, e.path)
	}
}

// refusedDial returns a real "connection refused" from a loopback port
// nobody listens on.
func refusedDial(t *testing.T) (addr string, err error) {
	t.Helper()
	l, err := new(net.ListenConfig).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr = l.Addr().String()
	require.NoError(t, l.Close())
	conn, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(t.Context(), "tcp", addr)
	if conn != nil {
		_ = conn.Close()
	}
	require.Error(t, err)
	return addr, err
}

// pgPassword is the password of pgRefused's DSN, which no answer and no log
// line may print.
const pgPassword = "S3cret-pg"

// pgRefused returns pgx's own error for a PostgreSQL server that is down
// (addr refuses connections), from a DSN with pgPassword.
func pgRefused(t *testing.T, addr string) error {
	t.Helper()
	_, err := pgconn.Connect(t.Context(), "postgres://resp:"+pgPassword+"@"+addr+"/responder?sslmode=disable&connect_timeout=5")
	require.Error(t, err)
	return err
}

// sqliteErrors returns modernc.org/sqlite's own errors: SQLITE_BUSY from a
// read of a file that another connection holds locked, and SQLITE_NOTADB
// from a file that is not a database.
func sqliteErrors(t *testing.T) (busy, notADatabase error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "locked.db")
	holder, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(DELETE)")
	require.NoError(t, err)
	t.Cleanup(func() { _ = holder.Close() })
	conn, err := holder.Conn(t.Context())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = conn.ExecContext(t.Context(), "CREATE TABLE t (x)")
	require.NoError(t, err)
	_, err = conn.ExecContext(t.Context(), "BEGIN EXCLUSIVE")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = conn.ExecContext(context.Background(), "ROLLBACK") })

	reader, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)")
	require.NoError(t, err)
	t.Cleanup(func() { _ = reader.Close() })
	busy = reader.QueryRowContext(t.Context(), "SELECT count(*) FROM t").Scan(new(int))
	require.ErrorContains(t, busy, "SQLITE_BUSY")

	junk := filepath.Join(t.TempDir(), "junk.db")
	require.NoError(t, os.WriteFile(junk, bytes.Repeat([]byte("not a database "), 512), 0o600))
	other, err := sql.Open("sqlite", "file:"+junk)
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })
	notADatabase = other.QueryRowContext(t.Context(), "SELECT count(*) FROM sqlite_master").Scan(new(int))
	require.ErrorContains(t, notADatabase, "not a database")
	return busy, notADatabase
}

// Storage that cannot be reached is 503 on every endpoint, with a message
// that names neither the DSN nor the server; any other storage error stays
// an internal error (500), and the store's own kinds keep their status.
func TestIncidentsAPI_StorageErrors(t *testing.T) {
	t.Parallel()
	addr, refused := refusedDial(t)
	pgDown := pgRefused(t, addr)

	busy, notADatabase := sqliteErrors(t)

	tests := []struct {
		name string
		err  error
		want int
	}{
		{name: "sqlite busy", err: fmt.Errorf("list incidents: %w", busy), want: 503},
		{name: "sqlite not a database", err: fmt.Errorf("list incidents: %w", notADatabase), want: 500},
		{name: "postgres stopped", err: fmt.Errorf("list incidents: %w", pgDown), want: 503},
		{name: "connection refused", err: fmt.Errorf("read incident 1: %w", refused), want: 503},
		{name: "connection reset", err: fmt.Errorf("list jobs: %w", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}), want: 503},
		{name: "admin shutdown", err: fmt.Errorf("list incidents: %w", &pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"}), want: 503},
		{name: "starting up", err: fmt.Errorf("list incidents: %w", &pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"}), want: 503},
		{name: "connection failure", err: fmt.Errorf("list incidents: %w", &pgconn.PgError{Severity: "FATAL", Code: "08006"}), want: 503},
		{name: "bad connection", err: fmt.Errorf("retry job 1: %w", driver.ErrBadConn), want: 503},
		{name: "deadline", err: fmt.Errorf("list jobs: %w", context.DeadlineExceeded), want: 503},
		{name: "unexpected EOF", err: fmt.Errorf("list jobs: %w", io.ErrUnexpectedEOF), want: 503},
		{name: "syntax error", err: fmt.Errorf("list incidents: %w", &pgconn.PgError{Severity: "ERROR", Code: "42601"}), want: 500},
		{name: "other error", err: errors.New("scan incident: converting NULL to int64"), want: 500},
		{name: "not found", err: incident.Errorf(incident.NotFound, "no parked job 1"), want: 404},
		{name: "already unavailable", err: &incident.Error{Kind: incident.Unavailable, Msg: "shutting down"}, want: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(webhook.NewServer(slog.New(slog.DiscardHandler), nil, webhook.Options{
				Config:    func() webhook.Config { return bearerConfig },
				Incidents: failingIncidents{err: tt.err},
			}))
			defer srv.Close()
			for _, c := range incidentsAPI {
				code, body, raw := call(t, srv, c)
				require.Equal(t, tt.want, code, "%s %s: %s", c.method, c.path, raw)
				require.Equal(t, "error", body["status"])
				for _, leak := range []string{pgPassword, addr, "resp", "responder"} {
					require.NotContains(t, raw, leak)
				}
			}
		})
	}
}

// stuckIncidents answers nothing until the request's context ends: a
// wedged database.
type stuckIncidents struct{}

func (stuckIncidents) ListIncidents(ctx context.Context, _ incident.ListFilter) ([]incident.Incident, error) {
	<-ctx.Done()
	return nil, fmt.Errorf("list incidents: %w", ctx.Err())
}

func (stuckIncidents) GetIncident(ctx context.Context, _ int64) (*incident.Incident, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (stuckIncidents) ListJobs(ctx context.Context, _ incident.JobFilter) ([]incident.Job, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (stuckIncidents) Retry(ctx context.Context, _ int64) error {
	<-ctx.Done()
	return ctx.Err()
}

// A storage that does not answer turns into 503 storage_unavailable after
// the read timeout, on every endpoint, not a request that hangs as long as
// its client waits.
func TestIncidentsAPI_ReadTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	srv := httptest.NewServer(webhook.NewServer(slog.New(slog.DiscardHandler), nil, webhook.Options{
		Config:      func() webhook.Config { return bearerConfig },
		Incidents:   stuckIncidents{},
		ReadTimeout: timeout,
	}))
	defer srv.Close()
	for _, c := range incidentsAPI {
		start := time.Now()
		code, body, raw := call(t, srv, c)
		require.Equal(t, http.StatusServiceUnavailable, code, "%s %s: %s", c.method, c.path, raw)
		require.Equal(t, "storage_unavailable", body["code"], raw)
		require.GreaterOrEqual(t, time.Since(start), timeout, "answered before the timeout")
	}
}

// GET /api/v1/incidents pages newest first: a full page carries
// next_before, the id to pass as ?before= for the next one; the last page
// has none.
func TestIncidentsAPI_Pages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cfg: bearerConfig})
	for i := range 3 {
		body := edited(t, "am_v4_firing.json", func(m map[string]any) { m["groupKey"] = fmt.Sprintf(`{}:{alertname="Page%d"}`, i) })
		got := e.post(t, bytes.NewReader(body), bearer(token))
		require.Equal(t, http.StatusOK, got.code, "body %v", got.body)
	}
	ids := func(body map[string]any) []int64 {
		var out []int64
		for _, inc := range body["incidents"].([]any) {
			out = append(out, int64(inc.(map[string]any)["id"].(float64)))
		}
		return out
	}
	code, first, raw := call(t, e.srv, apiCall{http.MethodGet, "/api/v1/incidents?limit=2"})
	require.Equal(t, http.StatusOK, code, raw)
	page1 := ids(first)
	require.Len(t, page1, 2)
	require.Greater(t, page1[0], page1[1], "newest first")
	require.Equal(t, page1[1], int64(first["next_before"].(float64)))

	code, second, raw := call(t, e.srv, apiCall{http.MethodGet, fmt.Sprintf("/api/v1/incidents?limit=2&before=%d", page1[1])})
	require.Equal(t, http.StatusOK, code, raw)
	page2 := ids(second)
	require.Len(t, page2, 1)
	require.Less(t, page2[0], page1[1])
	require.NotContains(t, second, "next_before", "the last page")

	code, _, raw = call(t, e.srv, apiCall{http.MethodGet, "/api/v1/incidents?before=x"})
	require.Equal(t, http.StatusBadRequest, code, raw)

	// Jobs page alike.
	for i := range 2 {
		require.NoError(t, e.db.Enqueue(t.Context(), incident.JobRoute, int64(i+1), 0, nil))
	}
	code, all, raw := call(t, e.srv, apiCall{http.MethodGet, "/api/v1/jobs"})
	require.Equal(t, http.StatusOK, code, raw)
	jobs := all["jobs"].([]any)
	require.GreaterOrEqual(t, len(jobs), 2, raw)
	require.NotContains(t, all, "next_before", "not a full page")
	code, one, raw := call(t, e.srv, apiCall{http.MethodGet, "/api/v1/jobs?limit=1"})
	require.Equal(t, http.StatusOK, code, raw)
	newest := jobs[0].(map[string]any)["id"].(float64)
	require.InDelta(t, newest, one["next_before"], 0)
	code, next, raw := call(t, e.srv, apiCall{http.MethodGet, fmt.Sprintf("/api/v1/jobs?limit=1&before=%d", int64(newest))})
	require.Equal(t, http.StatusOK, code, raw)
	require.InDelta(t, jobs[1].(map[string]any)["id"], next["jobs"].([]any)[0].(map[string]any)["id"], 0)
	code, _, raw = call(t, e.srv, apiCall{http.MethodGet, "/api/v1/jobs?before=-1"})
	require.Equal(t, http.StatusBadRequest, code, raw)
}

// A read whose client went away is not a server error: no ERROR log, and
// the requests metric counts it as 499, not 500.
func TestIncidentsAPI_ClientGone(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	reg := prometheus.NewPedanticRegistry()
	h := webhook.NewServer(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), nil, webhook.Options{
		Config:     func() webhook.Config { return bearerConfig },
		Incidents:  failingIncidents{err: fmt.Errorf("list incidents: %w", context.Canceled)},
		Registerer: reg,
	})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/api/v1/incidents", http.NoBody)
	bearer(token)(req)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, 499, rec.Code, rec.Body.String())
	require.NotContains(t, logs.String(), `"level":"ERROR"`)
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, `"msg":"http request"`) {
			require.Contains(t, line, `"level":"DEBUG"`, "a request whose client went away is logged at debug level only")
		}
	}
	require.Contains(t, logs.String(), "client closed the request")
	require.Equal(t, map[string]float64{"499": 1}, counters(t, reg, "responder_http_requests_total", "code"))
}

// Every error carries a code, also those with none of their own (a bad
// query parameter, an unknown id, a wrong method): the status in snake case.
// A path no route has, or Prometheus pointed at responder as if it were an
// Alertmanager, gets a 404 that says where notifications go.
func TestAPI_ErrorsHaveCodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cfg: bearerConfig})
	const goTo = "Alertmanager's notifications go to /webhook/alertmanager"
	for _, tc := range []struct {
		call apiCall
		want int
		code string
		msg  string
	}{
		{apiCall{http.MethodGet, "/api/v1/incidents?status=bogus"}, 400, "bad_request", ""},
		{apiCall{http.MethodGet, "/api/v1/incidents?limit=abc"}, 400, "bad_request", ""},
		{apiCall{http.MethodGet, "/api/v1/incidents/999"}, 404, "not_found", "incident 999"},
		{apiCall{http.MethodPost, "/api/v1/jobs/1/retry"}, 404, "not_found", ""},
		{apiCall{http.MethodGet, "/webhook/alertmanager"}, 405, "method_not_allowed", ""},
		{apiCall{http.MethodPost, "/webhook/alertmanger"}, 404, "not_found", goTo},
		{apiCall{http.MethodGet, "/nope"}, 404, "not_found", goTo},
		{apiCall{http.MethodPost, "/api/v2/alerts"}, 404, "not_alertmanager", "responder is not an Alertmanager"},
		{apiCall{http.MethodPost, "/api/v1/alerts"}, 404, "not_alertmanager", "Alertmanager at responder"},
	} {
		code, body, raw := call(t, e.srv, tc.call)
		require.Equal(t, tc.want, code, "%s %s: %s", tc.call.method, tc.call.path, raw)
		require.Equal(t, tc.code, body["code"], "%s %s: %s", tc.call.method, tc.call.path, raw)
		require.Contains(t, body["error"], tc.msg, "%s %s", tc.call.method, tc.call.path)
	}
}

// A failed reload answers 500 with a code of its own, and the reason.
func TestReload_FailureHasCode(t *testing.T) {
	t.Parallel()
	h := webhook.NewServer(slog.New(slog.DiscardHandler), nil, webhook.Options{
		Reload: func(context.Context) error { return errors.New("route: undefined receiver \"nope\"") },
	})
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/-/reload", http.NoBody)
	req.Host = "127.0.0.1:9096" // without authentication only loopback is answered
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusInternalServerError, rec.Code, rec.Body.String())
	var body map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	require.Equal(t, "reload_failed", body["code"])
	require.Contains(t, body["error"], `undefined receiver "nope"`)
}
