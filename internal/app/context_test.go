package app_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/context/promql"
	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/routing/routingtest"
	"github.com/responder/responder/internal/testenv"
)

// plantedSecret is a token in a log line; it must never reach Slack or the
// API.
//
//nolint:gosec // G101: a made-up token planted in a log line.
const plantedSecret = "xoxb-4242424242-plantedsecretvalue"

// webhookPayload is an Alertmanager v4 notification of one firing alert.
func webhookPayload(alertname, service, expr string) string {
	b, _ := json.Marshal(map[string]any{
		"version": "4", "groupKey": `{}:{alertname="` + alertname + `"}`, "truncatedAlerts": 0,
		"status": "firing", "receiver": "responder",
		"groupLabels":       map[string]string{"alertname": alertname},
		"commonLabels":      map[string]string{"alertname": alertname, "service": service, "severity": "critical"},
		"commonAnnotations": map[string]string{"summary": "errors are high"},
		"externalURL":       "http://alertmanager.example:9093",
		"alerts": []map[string]any{{
			"status": "firing", "labels": map[string]string{"alertname": alertname, "service": service, "severity": "critical"},
			"annotations": map[string]string{"summary": "errors are high"},
			"startsAt":    time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano), "endsAt": "0001-01-01T00:00:00Z",
			"generatorURL": "http://prometheus.example:9090/graph?g0.expr=" + url.QueryEscape(expr) + "&g0.tab=1",
			"fingerprint":  fmt.Sprintf("%016x", len(alertname)),
		}},
	})
	return string(b)
}

// TestApp_Context drives the whole context path: a real Prometheus
// scraping an in-test exporter, a Loki that hangs, an Elasticsearch that
// answers with a planted token, deployments recorded through the API. The
// Slack parent goes out first; its thread then shows the deployments, the
// redacted error lines and the snapshot values that match the exporter's
// data, says that Loki timed out, and carries a PNG chart; the incidents
// API shows each source's status.
func TestApp_Context(t *testing.T) {
	t.Parallel()
	exp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprint(w, "# TYPE shop_errors_ratio gauge\nshop_errors_ratio{service=\"checkout\"} 0.25\nshop_errors_ratio{service=\"cart\"} 0.5\n")
	}))
	defer exp.Close()
	eu, err := url.Parse(exp.URL)
	require.NoError(t, err)
	prom := testenv.StartPrometheus(t, fmt.Sprintf("global: { scrape_interval: 1s }\nscrape_configs:\n  - job_name: shop\n    static_configs: [{ targets: ['%s'] }]\n", eu.Host))

	loki := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // hangs until the client gives up
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer loki.Close()
	es := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintf(w, `{"took":1,"timed_out":false,"hits":{"total":{"value":2,"relation":"eq"},"hits":[
		  {"_index":"logs","_source":{"@timestamp":%q,"message":"ERROR charge failed order=1 token=%s"}},
		  {"_index":"logs","_source":{"@timestamp":%q,"message":"ERROR charge failed order=2 token=%s"}}]}}`,
			time.Now().UTC().Format(time.RFC3339Nano), plantedSecret, time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano), plantedSecret)
	}))
	defer es.Close()

	slackToken := "xoxb-" + rand.Text()
	fakeSlack := routingtest.NewFakeSlack(t, slackToken)
	channel := fakeSlack.AddChannel("#incidents")
	token := rand.Text()
	r := startE2EResponder(t, fmt.Sprintf(`
global:
  slack_api_url: %q
  slack_bot_token: %q
  prometheus_url: %q
storage:
  dsn: sqlite://%s
  queue: { min_backoff: 100ms, max_backoff: 1s, poll_interval: 100ms }
webhook:
  authorization: { credentials: %q }
route: { receiver: incidents }
receivers:
  - name: incidents
    slack_configs: [{ channel: '#incidents' }]
context:
  budget: 3s
  timeout: 1s
  promql:
    range: 5m
    step: 15s
    queries:
      - { name: errors of the service, query: 'shop_errors_ratio{service="{{ .Labels.service }}"}' }
  logs:
    loki: { url: %q, query: '{app="{{ .Labels.service }}"} |= "error"' }
    elasticsearch: { url: %q, index: logs, query: 'service:{{ .Labels.service }}' }
`, fakeSlack.URL(), slackToken, prom.URL(), filepath.Join(t.TempDir(), "responder.db"), token, loki.URL, es.URL), token)
	base := "http://" + r.addr

	// Wait for the first scrape, so that the snapshot has data.
	src, err := promql.New(promql.Options{URL: prom.URL(), Queries: []promql.Query{{Name: "x", Query: "shop_errors_ratio"}}})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		sec, err := src.Gather(t.Context(), &incident.Incident{})
		return err == nil && len(sec.Snapshots[0].Values) == 2
	}, 30*time.Second, 200*time.Millisecond)

	code, body := post(t, base+"/api/v1/deployments", token, `{"service":"checkout","environment":"prod","version":"1.4.2","commit":"9f1c2ab","author":"ci-bot","url":"https://ci.example/runs/42"}`)
	require.Equal(t, http.StatusCreated, code, body)
	code, body = post(t, base+"/api/v1/deployments", "", `{"service":"checkout"}`)
	require.Equal(t, http.StatusUnauthorized, code, body)

	start := time.Now()
	code, body = post(t, base+"/webhook/alertmanager", token, webhookPayload("CheckoutErrorsHigh", "checkout", `shop_errors_ratio{service="checkout"} > 0.1`))
	require.Equal(t, http.StatusOK, code, body)

	// thread waits for the parent of an alertname and its context reply.
	thread := func(alertname string) routingtest.SlackMessage {
		var parent routingtest.SlackMessage
		r.eventually(t, "context in the thread of "+alertname, func() (bool, any, error) {
			for _, m := range fakeSlack.Messages(channel) {
				if strings.Contains(m.Text, alertname) {
					parent = m
					return len(m.Replies) >= 2, m, nil // the context reply and one chart at least
				}
			}
			return false, nil, nil
		})
		return parent
	}
	parent := thread("CheckoutErrorsHigh")
	elapsed := time.Since(start)
	reply := parent.Replies[0]
	all := reply.Text + reply.BlocksJSON
	require.Contains(t, all, "1.4.2", "the recorded deployment")
	require.Contains(t, all, "9f1c2ab")
	require.Contains(t, all, "ERROR charge failed", "the error lines")
	require.Contains(t, all, "×2", "folded")
	require.NotContains(t, all, plantedSecret)
	require.Contains(t, all, "loki: timed out")
	require.Contains(t, all, `= *0.25*`, "the alert expression's current value, as Prometheus has it")
	require.Contains(t, all, "errors of the service")
	require.Contains(t, all, `shop_errors_ratio{service=\"checkout\"}`)
	require.Less(t, elapsed, 15*time.Second)

	// The charts: one per snapshot, valid PNGs of the chart size.
	var files []string
	for _, m := range parent.Replies[1:] {
		files = append(files, m.FileIDs...)
	}
	r.eventually(t, "two charts", func() (bool, any, error) {
		files = nil
		for _, m := range fakeSlack.Messages(channel) {
			if m.TS == parent.TS {
				for _, rep := range m.Replies[1:] {
					files = append(files, rep.FileIDs...)
				}
			}
		}
		return len(files) == 2, files, nil
	})
	for _, id := range files {
		img, err := png.Decode(bytes.NewReader(fakeSlack.File(id)))
		require.NoError(t, err)
		require.Equal(t, promql.ChartWidth, img.Bounds().Dx())
		require.Equal(t, promql.ChartHeight, img.Bounds().Dy())
	}

	// The incidents API shows the context with each source's status.
	list, err := r.incidents(t.Context(), incident.StatusFiring)
	require.NoError(t, err)
	inc, err := r.incident(t.Context(), list[0].ID)
	require.NoError(t, err)
	require.NotNil(t, inc.Context)
	status := map[string]string{}
	for _, s := range inc.Context.Sections {
		status[s.Source] = s.Status
	}
	require.Equal(t, map[string]string{"deployments": "ok", "promql": "ok", "loki": "timeout", "elasticsearch": "ok"}, status)
	raw, err := json.Marshal(inc)
	require.NoError(t, err)
	require.NotContains(t, string(raw), plantedSecret)

	// A deployment recorded now appears in the service's next incident.
	code, body = post(t, base+"/api/v1/deployments", token, `{"service":"checkout","version":"1.4.3-hotfix"}`)
	require.Equal(t, http.StatusCreated, code, body)
	code, body = post(t, base+"/webhook/alertmanager", token, webhookPayload("CheckoutDown", "checkout", `up{job="shop"} == 0`))
	require.Equal(t, http.StatusOK, code, body)
	next := thread("CheckoutDown")
	require.Contains(t, next.Replies[0].BlocksJSON, "1.4.3-hotfix")
	require.Contains(t, next.Replies[0].BlocksJSON, "1.4.2")
}
