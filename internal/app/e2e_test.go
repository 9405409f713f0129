package app_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/app"
	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/testenv"
)

// e2eWait bounds each wait for Alertmanager to deliver: group_wait and
// group_interval are 1s, so a healthy run needs a few seconds at most, and
// the 200-group storm about 18 s alone. The bound is generous because the
// whole suite runs these tests in parallel on two cores in CI; it only
// costs time when a test fails.
const (
	e2eWait = 60 * time.Second
	e2eTick = 100 * time.Millisecond
)

// TestApp_AlertmanagerEndToEnd runs responder in-process behind a real
// Alertmanager: alerts posted to Alertmanager's API open and resolve an
// incident, and a receiver configured with the wrong token is refused.
func TestApp_AlertmanagerEndToEnd(t *testing.T) {
	t.Parallel()
	// Skip, or fail in CI, before starting anything when Alertmanager is
	// missing.
	testenv.Binary(t, testenv.AlertmanagerEnv, testenv.AlertmanagerNames...)
	token := rand.Text()
	r := startE2EResponder(t, fmt.Sprintf(`
storage:
  dsn: sqlite://%s
webhook:
  authorization:
    credentials: %q
`, filepath.Join(t.TempDir(), "responder.db"), token), token)

	webhookURL := "http://" + r.addr + "/webhook/alertmanager"
	am := testenv.StartAlertmanager(t, fmt.Sprintf(`
route:
  receiver: responder
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - receiver: wrong-token
      matchers: ['alertname="E2EWrongToken"']
receivers:
  - name: responder
    webhook_configs:
      - url: %[1]q
        send_resolved: true
        http_config:
          authorization:
            credentials: %[2]q
  - name: wrong-token
    webhook_configs:
      - url: %[1]q
        send_resolved: true
        http_config:
          authorization:
            credentials: %[3]q
`, webhookURL, token, "not-"+token))

	t.Run("firing then resolved", func(t *testing.T) {
		t.Parallel()
		const alertname = "E2EHighLatency"
		startsAt := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
		alerts := []testenv.PostableAlert{
			{Labels: map[string]string{"alertname": alertname, "instance": "a:9100", "severity": "critical"}, StartsAt: startsAt},
			{Labels: map[string]string{"alertname": alertname, "instance": "b:9100", "severity": "critical"}, StartsAt: startsAt},
		}
		am.PostAlerts(t, alerts)

		var firing incident.Incident
		r.eventually(t, "an incident with 2 firing alerts", func() (bool, any, error) {
			list, err := r.incidents(t.Context(), incident.StatusFiring)
			if err != nil {
				return false, nil, err
			}
			inc, ok := e2eFindByAlertname(list, alertname)
			firing = inc
			return ok && inc.FiringAlerts == 2, list, nil
		})
		require.Equal(t, incident.StatusFiring, firing.Status)
		require.Zero(t, firing.ResolvedAlerts)
		require.Equal(t, map[string]string{"alertname": alertname}, firing.GroupLabels)
		require.Equal(t, "responder", firing.Receiver)
		require.Nil(t, firing.ResolvedAt)

		endsAt := time.Now().Add(-time.Second).UTC().Truncate(time.Second)
		for i := range alerts {
			alerts[i].EndsAt = endsAt
		}
		am.PostAlerts(t, alerts)

		var resolved incident.Incident
		r.eventually(t, "the incident resolved with 2 resolved alerts", func() (bool, any, error) {
			inc, err := r.incident(t.Context(), firing.ID)
			resolved = inc
			return err == nil && inc.Status == incident.StatusResolved && inc.ResolvedAlerts == 2, inc, err
		})
		require.Equal(t, firing.ID, resolved.ID)
		require.Zero(t, resolved.FiringAlerts)
		require.NotNil(t, resolved.ResolvedAt)
		require.Len(t, resolved.Alerts, 2)

		// Every state change exactly once, however often Alertmanager sent
		// the group.
		changes := map[string]int{}
		for _, c := range resolved.History {
			require.True(t, c.StartsAt.Equal(startsAt), "change %+v: starts_at is not the alerts' startsAt %s", c, startsAt)
			changes[c.Fingerprint+" "+c.Status]++
		}
		var fingerprints []string
		for _, a := range resolved.Alerts {
			fingerprints = append(fingerprints, a.Fingerprint)
		}
		require.Len(t, resolved.History, 4, "history: %+v", resolved.History)
		require.Equal(t, map[string]int{
			fingerprints[0] + " firing": 1, fingerprints[0] + " resolved": 1,
			fingerprints[1] + " firing": 1, fingerprints[1] + " resolved": 1,
		}, changes)
	})

	t.Run("wrong token is refused", func(t *testing.T) {
		t.Parallel()
		const alertname = "E2EWrongToken"
		before, err := r.rejectedUnauthorized(t.Context())
		require.NoError(t, err)
		am.PostAlerts(t, []testenv.PostableAlert{
			{Labels: map[string]string{"alertname": alertname, "instance": "a:9100"}},
		})

		// Alertmanager drops a notification answered with 401 and sends
		// the group again one group_interval later: wait for two refusals,
		// so that a second chance to slip through has passed too.
		r.eventually(t, "two unauthorized webhook requests", func() (bool, any, error) {
			n, err := r.rejectedUnauthorized(t.Context())
			return err == nil && n >= before+2, n, err
		})
		for _, status := range []string{"", incident.StatusFiring, incident.StatusResolved} {
			list, err := r.incidents(t.Context(), status)
			require.NoError(t, err)
			_, found := e2eFindByAlertname(list, alertname)
			require.False(t, found, "an incident for %s was stored although its webhook was refused: %+v", alertname, list)
		}
	})
}

// e2eResponder is one in-process responder serving on loopback.
type e2eResponder struct {
	addr   string
	token  string
	client *http.Client
}

// startE2EResponder writes configYAML to a file, starts the app on a free
// loopback port and waits until it is ready. It stops when the test ends.
// amWebhookConfig is an Alertmanager configuration that sends every alert
// to the webhook at url with token, grouped by groupBy (a YAML list) after
// groupWait, group_interval 1s, resolves included; extra, when set, is one
// more line of the webhook config (such as "max_alerts: 1").
func amWebhookConfig(url, token, groupBy, groupWait, extra string) string {
	if extra != "" {
		extra = "\n        " + extra
	}
	return fmt.Sprintf(`
route:
  receiver: responder
  group_by: %s
  group_wait: %s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: responder
    webhook_configs:
      - url: %q
        send_resolved: true%s
        http_config:
          authorization:
            credentials: %q
`, groupBy, groupWait, url, extra, token)
}

func startE2EResponder(t *testing.T, configYAML, token string) *e2eResponder {
	t.Helper()
	r, _, _ := startE2EApp(t, configYAML, token)
	return r
}

// startE2EApp is startE2EResponder that also returns the app and its
// config file, for tests that rewrite the file and reload.
func startE2EApp(t *testing.T, configYAML, token string) (*e2eResponder, *app.App, string) {
	t.Helper()
	cfgFile := filepath.Join(t.TempDir(), "responder.yml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(configYAML), 0o600))

	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, app.Options{
		ConfigFile:    cfgFile,
		ListenAddress: "127.0.0.1:0",
		Logger:        slog.New(slog.DiscardHandler),
	})
	if err != nil {
		cancel()
		require.NoError(t, err)
	}
	runApp(t, ctx, cancel, a)

	r := &e2eResponder{addr: a.Addr(), token: token, client: &http.Client{Timeout: 5 * time.Second}}
	r.eventually(t, "responder ready", func() (bool, any, error) {
		code, body, err := r.do(t.Context(), "/-/ready")
		return err == nil && code == http.StatusOK, string(body), err
	})
	return r, a, cfgFile
}

// eventually waits with require.Eventually until cond reports true. cond
// also returns what it saw and any error, both logged if the wait times out.
func (r *e2eResponder) eventually(t *testing.T, what string, cond func() (bool, any, error)) {
	t.Helper()
	var (
		mu      sync.Mutex
		lastVal any
		lastErr error
		done    bool
	)
	t.Cleanup(func() {
		if !done {
			mu.Lock()
			defer mu.Unlock()
			t.Logf("waiting for %s: last seen %+v, last error %v", what, lastVal, lastErr)
		}
	})
	require.Eventually(t, func() bool {
		ok, v, err := cond()
		mu.Lock()
		lastVal, lastErr = v, err
		mu.Unlock()
		return ok
	}, e2eWait, e2eTick, "waiting for %s", what)
	done = true
}

// do GETs path with the webhook credentials and returns the status code and
// body.
func (r *e2eResponder) do(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.addr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	b, err := io.ReadAll(resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	return resp.StatusCode, b, err
}

// get GETs path and decodes the JSON answer, which must be a 200.
func (r *e2eResponder) get(ctx context.Context, path string, v any) error {
	code, b, err := r.do(ctx, path)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d: %s", path, code, b)
	}
	return json.Unmarshal(b, v)
}

// incidents lists incidents, all of them or those with status.
func (r *e2eResponder) incidents(ctx context.Context, status string) ([]incident.Incident, error) {
	path := "/api/v1/incidents"
	if status != "" {
		path += "?status=" + status
	}
	var body struct {
		Incidents []incident.Incident `json:"incidents"`
	}
	err := r.get(ctx, path, &body)
	return body.Incidents, err
}

// incident reads one incident in full.
func (r *e2eResponder) incident(ctx context.Context, id int64) (incident.Incident, error) {
	var inc incident.Incident
	err := r.get(ctx, "/api/v1/incidents/"+strconv.FormatInt(id, 10), &inc)
	return inc, err
}

// rejectedUnauthorized scrapes
// responder_webhook_rejected_total{reason="unauthorized"} from /metrics.
func (r *e2eResponder) rejectedUnauthorized(ctx context.Context) (float64, error) {
	code, b, err := r.do(ctx, "/metrics")
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %d: %s", code, b)
	}
	const series = `responder_webhook_rejected_total{reason="unauthorized"} `
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no %s in /metrics", strings.TrimSpace(series))
}

// e2eFindByAlertname returns the incident whose group is alertname.
func e2eFindByAlertname(list []incident.Incident, alertname string) (incident.Incident, bool) {
	for _, inc := range list {
		if inc.GroupLabels["alertname"] == alertname {
			return inc, true
		}
	}
	return incident.Incident{}, false
}
