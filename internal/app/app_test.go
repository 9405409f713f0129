package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/app"
	"github.com/responder/responder/internal/testenv"
)

// runApp runs a until the test ends, when it cancels ctx (through cancel)
// and checks that Run returns nil within 30 s.
func runApp(tb testing.TB, ctx context.Context, cancel context.CancelFunc, a *app.App) { //nolint:revive // context-as-argument: tb first, as in every test helper.
	tb.Helper()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("responder Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			tb.Error("responder did not stop within 30s of its context being cancelled")
		}
	})
}

// startApp runs an App from a config text until the test ends.
func startApp(t *testing.T, configText string) (*app.App, string) {
	t.Helper()
	return startAppLogging(t, configText, slog.New(slog.DiscardHandler))
}

// startAppLogging is startApp with the App's logger.
func startAppLogging(t *testing.T, configText string, logger *slog.Logger) (*app.App, string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "responder.yml")
	configText = strings.ReplaceAll(configText, "$DIR", dir)
	require.NoError(t, os.WriteFile(file, []byte(configText), 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, app.Options{ConfigFile: file, ListenAddress: "127.0.0.1:0", Logger: logger})
	require.NoError(t, err)
	runApp(t, ctx, cancel, a)
	base := "http://" + a.Addr()
	require.Eventually(t, func() bool {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/-/ready", nil)
		if err != nil {
			return false
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		_ = resp.Body.Close() // only the status is checked
		return resp.StatusCode == http.StatusOK
	}, 5*time.Second, 20*time.Millisecond)
	return a, file
}

// storage.queue's backoff applies to every job, the context and
// remediation pipelines' too (they kept 1s-5m whatever was set).
func TestApp_QueueBackoffForEveryPipeline(t *testing.T) {
	t.Parallel()
	a, _ := startApp(t, `
storage:
  dsn: sqlite://$DIR/responder.db
  queue: {min_backoff: 2s, max_backoff: 7s}
`)
	want := [2]time.Duration{2 * time.Second, 7 * time.Second}
	require.Equal(t, map[string][2]time.Duration{"incident": want, "context": want, "remediation": want}, a.BackoffsForTest())
}

func post(t *testing.T, url, token, body string) (int, string) {
	t.Helper()
	return request(t, http.MethodPost, url, token, body)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	return request(t, http.MethodGet, url, "", "")
}

func request(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

//nolint:gosec // G101: a made-up test token, not a real credential.
const tokenConfig = `
storage:
  dsn: sqlite://$DIR/responder.db
webhook:
  authorization:
    credentials: first-token
`

func TestApp_Reload(t *testing.T) {
	t.Parallel()
	a, file := startApp(t, tokenConfig)
	base := "http://" + a.Addr()
	payload, err := os.ReadFile("../../testdata/am_v4_firing.json")
	require.NoError(t, err)

	code, _ := post(t, base+"/webhook/alertmanager", "first-token", string(payload))
	require.Equal(t, http.StatusOK, code)

	// A valid new token takes effect on POST /-/reload.
	dir := filepath.Dir(file)
	require.NoError(t, os.WriteFile(file, []byte(strings.ReplaceAll(strings.ReplaceAll(tokenConfig, "first-token", "second-token"), "$DIR", dir)), 0o600))
	require.Equal(t, "1", scrape(t, base, "responder_config_last_reload_successful"))
	started, err := strconv.ParseFloat(scrape(t, base, "responder_config_last_reload_success_timestamp_seconds"), 64)
	require.NoError(t, err)
	require.InDelta(t, float64(time.Now().Unix()), started, 60)
	time.Sleep(1100 * time.Millisecond) // the timestamp counts seconds
	code, body := post(t, base+"/-/reload", "", "")
	require.Equal(t, http.StatusOK, code, body)
	reloadedText := scrape(t, base, "responder_config_last_reload_success_timestamp_seconds")
	reloaded, err := strconv.ParseFloat(reloadedText, 64)
	require.NoError(t, err)
	require.Greater(t, reloaded, started)
	code, _ = post(t, base+"/webhook/alertmanager", "first-token", string(payload))
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = post(t, base+"/webhook/alertmanager", "second-token", string(payload))
	require.Equal(t, http.StatusOK, code)

	// An invalid file is rejected and the configuration in force stays.
	require.NoError(t, os.WriteFile(file, []byte("webhook:\n  authorization: {credentials: x}\n  unknown_key: 1\n"), 0o600))
	code, body = post(t, base+"/-/reload", "", "")
	require.Equal(t, http.StatusInternalServerError, code)
	require.Contains(t, body, "unknown_key")
	require.Error(t, a.Reload())
	code, _ = post(t, base+"/webhook/alertmanager", "second-token", string(payload))
	require.Equal(t, http.StatusOK, code, "the old configuration still runs")
	require.Equal(t, "0", scrape(t, base, "responder_config_last_reload_successful"))
	require.Equal(t, reloadedText, scrape(t, base, "responder_config_last_reload_success_timestamp_seconds"), "the last success")

	// Fixed, it loads again.
	require.NoError(t, os.WriteFile(file, []byte(strings.ReplaceAll(tokenConfig, "$DIR", dir)), 0o600))
	require.NoError(t, a.Reload())
	require.Equal(t, "1", scrape(t, base, "responder_config_last_reload_successful"))
}

// scrape returns the value of series (name and labels, as /metrics prints
// them) in the text exposition format.
func scrape(t *testing.T, base, series string) string {
	t.Helper()
	for line := range strings.SplitSeq(metricsText(t, base), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	require.FailNow(t, "no such series in /metrics", series)
	return ""
}

// metricsText returns what GET /metrics answers.
func metricsText(t *testing.T, base string) string {
	t.Helper()
	_, text := get(t, base+"/metrics")
	return text
}

func TestApp_RefusesExposureWithoutAuth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "responder.yml")
	require.NoError(t, os.WriteFile(file, []byte("storage:\n  dsn: sqlite://"+dir+"/r.db\n"), 0o600))
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		_, err := app.New(context.Background(), app.Options{ConfigFile: file, ListenAddress: addr})
		require.ErrorContains(t, err, "without webhook authentication", addr)
	}
}

func TestApp_Endpoints(t *testing.T) {
	t.Parallel()
	a, _ := startApp(t, tokenConfig)
	base := "http://" + a.Addr()
	for _, tt := range []struct {
		name, path string
		token      string
		want       int
		contains   string
	}{
		{"healthy", "/-/healthy", "", http.StatusOK, "Healthy"},
		{"ready", "/-/ready", "", http.StatusOK, "Ready"},
		{"metrics", "/metrics", "", http.StatusOK, "responder_build_info"},
		{"queue metrics", "/metrics", "", http.StatusOK, `responder_queue_jobs{state="parked"} 0`},
		{"wal metric", "/metrics", "", http.StatusOK, "# TYPE responder_sqlite_wal_bytes gauge"},
		{"ingest backlog metric", "/metrics", "", http.StatusOK, "responder_notifications_pending 0"},
		{"ingest backlog age metric", "/metrics", "", http.StatusOK, "responder_notifications_oldest_pending_seconds 0"},
		{"incidents need the token", "/api/v1/incidents", "", http.StatusUnauthorized, `"error"`},
		{"incidents", "/api/v1/incidents", "first-token", http.StatusOK, `"incidents":[]`},
		{"bad status filter", "/api/v1/incidents?status=open", "first-token", http.StatusBadRequest, "status must be"},
		{"unknown incident", "/api/v1/incidents/42", "first-token", http.StatusNotFound, "not found"},
		{"parked jobs", "/api/v1/jobs?state=parked", "first-token", http.StatusOK, `"jobs":[]`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+tt.path, nil)
			require.NoError(t, err)
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer func() { _ = resp.Body.Close() }()
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, tt.want, resp.StatusCode, string(b))
			require.Contains(t, string(b), tt.contains)
		})
	}
}

func TestApp_SecretsNeverLeak(t *testing.T) {
	t.Parallel()
	a, _ := startApp(t, tokenConfig)
	require.NotContains(t, a.Config().String(), "first-token")
	require.NotContains(t, metricsText(t, "http://"+a.Addr()), "first-token")
}

// A pause of remediation is durable and shared by every replica; the gauge
// shows one that nobody lifted.
func TestApp_RemediationPausedMetric(t *testing.T) {
	t.Parallel()
	a, _ := startApp(t, tokenConfig)
	base := "http://" + a.Addr()
	require.Equal(t, "0", scrape(t, base, "responder_remediation_paused"))
	code, body := post(t, base+"/api/v1/remediation/pause", "first-token", "")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "1", scrape(t, base, "responder_remediation_paused"))
	code, body = post(t, base+"/api/v1/remediation/resume", "first-token", "")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "0", scrape(t, base, "responder_remediation_paused"))
}

// Every pipeline's job kinds are counted, from the start: the remediation
// and context queues' too (before, only the main queue's were).
func TestApp_QueueMetricsCoverEveryPipeline(t *testing.T) {
	t.Parallel()
	a, _ := startApp(t, tokenConfig)
	text := metricsText(t, "http://"+a.Addr())
	for _, kind := range []string{"route", "deliver", "remediate", "remediation_step", "gather", "context_post"} {
		require.Contains(t, text, `responder_queue_job_attempts_total{kind="`+kind+`",outcome="parked"} 0`)
		require.Contains(t, text, `responder_queue_job_duration_seconds_count{kind="`+kind+`"} 0`)
	}
}

// A runbook's series are exported at 0 when it is loaded, at start and at a
// reload, so that a rule's increase() sees its first failure.
func TestApp_RemediationSeriesFromTheStart(t *testing.T) {
	t.Parallel()
	books := t.TempDir()
	rb, err := os.ReadFile("../../runbooks/restart-on-latency.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(books, "a.yaml"), rb, 0o600)) //nolint:gosec // G703: the test's own temp dir.
	a, _ := startApp(t, tokenConfig+"remediation:\n  runbooks_dir: "+books+"\n")
	base := "http://" + a.Addr()
	text := metricsText(t, base)
	for _, want := range []string{
		`responder_remediation_runs_total{outcome="failed",runbook="restart-on-latency"} 0`,
		`responder_remediation_runs_total{outcome="unknown",runbook="restart-on-latency"} 0`,
		`responder_remediation_escalations_total{runbook="restart-on-latency"} 0`,
		`responder_remediation_steps_total{kind="kubernetes",outcome="failed",runbook="restart-on-latency"} 0`,
		`responder_remediation_steps_total{kind="wait",outcome="ok",runbook="restart-on-latency"} 0`,
		`responder_remediation_refusals_total{guard="cooldown"} 0`,
		`responder_remediation_approvals_total{result="approved"} 0`,
	} {
		require.Contains(t, text, want)
	}
	require.NotContains(t, text, `runbook="scale-on-backlog"`)

	rb, err = os.ReadFile("../../runbooks/scale-on-backlog.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(books, "b.yaml"), rb, 0o600)) //nolint:gosec // G703: the test's own temp dir.
	code, body := post(t, base+"/-/reload", "", "")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, metricsText(t, base), `responder_remediation_runs_total{outcome="failed",runbook="scale-on-backlog"} 0`)
}

// A group whose alerts differ in a label the routes match on is routed on
// the labels they share, which lack it: the decision says so, with the
// receivers its alerts alone would get, and what to do (a critical alert
// grouped with a warning does not page). A critical that joins a routed
// warning group later is not routed again: the log says so.
func TestApp_RouteNotesLabelsTheAlertsDifferIn(t *testing.T) {
	t.Parallel()
	var logs testenv.LogBuffer
	a, _ := startAppLogging(t, tokenConfig+`
route:
  receiver: chat
  routes:
    - matchers: ['severity="critical"']
      receiver: pager
receivers:
  - name: chat
  - name: pager
`, slog.New(slog.NewTextHandler(&logs, nil)))
	base := "http://" + a.Addr()
	raw, err := os.ReadFile("../../testdata/am_v4_firing.json")
	require.NoError(t, err)
	// send posts the group with one alert per severity given.
	send := func(groupKey string, severities ...string) {
		var m map[string]any
		require.NoError(t, json.Unmarshal(raw, &m))
		m["groupKey"] = groupKey
		alerts := m["alerts"].([]any)[:len(severities)]
		for i, sev := range severities {
			alert := alerts[i].(map[string]any)
			alert["labels"].(map[string]any)["severity"] = sev
			if sev == "critical" {
				alert["fingerprint"] = fmt.Sprintf("c%015d", i) // an alert of its own, not the warning's
			}
		}
		m["alerts"] = alerts
		if slices.Compact(slices.Clone(severities))[0] != severities[len(severities)-1] {
			delete(m["commonLabels"].(map[string]any), "severity")
		} else {
			m["commonLabels"].(map[string]any)["severity"] = severities[0]
		}
		body, err := json.Marshal(m)
		require.NoError(t, err)
		code, out := post(t, base+"/webhook/alertmanager", "first-token", string(body))
		require.Equal(t, http.StatusOK, code, out)
	}
	decision := func(id int) string {
		var summary string
		require.Eventually(t, func() bool {
			_, out := request(t, http.MethodGet, fmt.Sprintf("%s/api/v1/incidents/%d", base, id), "first-token", "")
			var inc struct {
				Decisions []struct{ Kind, Summary string }
			}
			if json.Unmarshal([]byte(out), &inc) != nil || len(inc.Decisions) == 0 {
				return false
			}
			summary = inc.Decisions[0].Summary
			return true
		}, 10*time.Second, 20*time.Millisecond)
		return summary
	}
	send("{}:{alertname=\"Mixed\"}", "critical", "warning")
	got := decision(1)
	require.Contains(t, got, "chat")
	require.Contains(t, got, "note: the alerts differ in severity, which routes match on: alone, some of them would also go to pager; "+
		"routing sees only the labels all of them share: group by severity in Alertmanager")

	// Warnings only: routed to chat, and nothing to note.
	send("{}:{alertname=\"Late\"}", "warning", "warning")
	got = decision(2)
	require.Contains(t, got, "chat")
	require.NotContains(t, got, "note:")
	require.NotContains(t, logs.String(), "now differ")

	// A critical joins: it is not routed again, and the log says which
	// receiver it misses.
	send("{}:{alertname=\"Late\"}", "warning", "critical")
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "incident's alerts now differ in labels its routes match on") &&
			strings.Contains(logs.String(), "incident_id=2 labels=severity missed_receivers=pager")
	}, 10*time.Second, 20*time.Millisecond, "%s", logs.String())
}

// A pause while paused keeps the first pauser, whom people ask before they
// resume; before, the second pause overwrote the name.
func TestApp_PauseKeepsTheFirstPauser(t *testing.T) {
	t.Parallel()
	a, _ := startApp(t, tokenConfig)
	base := "http://" + a.Addr()
	pause := func(path, body string) map[string]string {
		code, out := post(t, base+path, "first-token", body)
		require.Equal(t, http.StatusOK, code, out)
		var answer map[string]string
		require.NoError(t, json.Unmarshal([]byte(out), &answer))
		return answer
	}
	require.Equal(t, map[string]string{"status": "paused", "by": "alice (deploy freeze)"},
		pause("/api/v1/remediation/pause", `{"by": "alice", "comment": "deploy freeze"}`))
	require.Equal(t, map[string]string{"status": "paused", "by": "alice (deploy freeze)"},
		pause("/api/v1/remediation/pause", `{"by": "bob"}`), "still alice's pause")
	require.Equal(t, map[string]string{"status": "resumed", "by": "bob"}, pause("/api/v1/remediation/resume", `{"by": "bob"}`))
	require.Equal(t, map[string]string{"status": "paused", "by": "api"}, pause("/api/v1/remediation/pause", ""))
}

// TestApp_ConfigThatCannotStartLeavesStorageAlone: a configuration that
// stops the start (a runbook, or a client of context's, that cannot be
// built) stops it before the database is created or migrated, so that the
// responder version it is rolled back to can still open it.
// TestApp_ListenAddressInUseLeavesStorageAlone: an address that is taken
// (a responder still running there) stops the start before storage is
// created or migrated, with an error that says what to do.
func TestApp_ListenAddressInUseLeavesStorageAlone(t *testing.T) {
	t.Parallel()
	taken, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = taken.Close() })
	dir := t.TempDir()
	file := filepath.Join(dir, "responder.yml")
	require.NoError(t, os.WriteFile(file, []byte("storage:\n  dsn: sqlite://r.db\n"), 0o600))
	_, err = app.New(context.Background(), app.Options{ConfigFile: file, ListenAddress: taken.Addr().String(), Logger: slog.New(slog.DiscardHandler)})
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	require.ErrorContains(t, err, "another process listens there (another responder?): stop it, or choose another --web.listen-address")
	require.NoFileExists(t, filepath.Join(dir, "r.db"))
}

func TestApp_ConfigThatCannotStartLeavesStorageAlone(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, extra, err string }{
		{"context kubeconfig", "context:\n  kubernetes:\n    kubeconfig: missing-kubeconfig\n", "context: kubernetes: "},
		{"runbook", "remediation:\n  runbooks_dir: rb\n", "bad.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			require.NoError(t, os.Mkdir(filepath.Join(dir, "rb"), 0o750))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "rb", "bad.yaml"), []byte("name: bad\nsteps: []\n"), 0o600))
			file := filepath.Join(dir, "responder.yml")
			require.NoError(t, os.WriteFile(file, []byte("storage:\n  dsn: sqlite://r.db\n"+tc.extra), 0o600))
			_, err := app.New(context.Background(), app.Options{ConfigFile: file, ListenAddress: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
			require.ErrorContains(t, err, tc.err)
			require.NoFileExists(t, filepath.Join(dir, "r.db"))
		})
	}
}
