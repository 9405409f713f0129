package app_test

import (
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/testenv"
)

// reconcilingConfig is a responder configuration on a fresh SQLite file
// that reconciles with the Alertmanager at amURL every 300ms, after grace,
// for the receiver "responder".
func reconcilingConfig(t *testing.T, amURL, token, grace string) string {
	t.Helper()
	return fmt.Sprintf(`
global:
  alertmanager_url: %q
storage:
  dsn: sqlite://%s
  queue:
    poll_interval: 100ms
webhook:
  authorization:
    credentials: %q
reconcile:
  interval: 300ms
  grace: %s
  receivers: [responder]
`, amURL, filepath.Join(t.TempDir(), "responder.db"), token, grace)
}

// webhookGate stands between Alertmanager and responder: while blocked it
// answers 503, which Alertmanager retries; otherwise it passes requests on.
type webhookGate struct {
	srv     *httptest.Server
	target  atomic.Pointer[httputil.ReverseProxy]
	blocked atomic.Bool
	refused atomic.Int64
	passed  atomic.Int64
}

func newWebhookGate(t *testing.T) *webhookGate {
	g := &webhookGate{}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := g.target.Load()
		if g.blocked.Load() || p == nil {
			_, _ = io.Copy(io.Discard, r.Body)
			g.refused.Add(1)
			http.Error(w, "blocked", http.StatusServiceUnavailable)
			return
		}
		p.ServeHTTP(w, r)
		g.passed.Add(1) // counted once responder has answered
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *webhookGate) forwardTo(t *testing.T, addr string) {
	u, err := url.Parse("http://" + addr)
	require.NoError(t, err)
	g.target.Store(httputil.NewSingleHostReverseProxy(u))
}

// TestApp_ReconcileWithAlertmanager blocks a real Alertmanager's webhook:
// reconciliation opens the incident whose webhook never arrives and
// resolves the one whose resolve never arrives, each with a "reconciled"
// decision. Once the webhook flows again, Alertmanager's late deliveries
// change nothing: they are the same alert states.
func TestApp_ReconcileWithAlertmanager(t *testing.T) {
	t.Parallel()
	testenv.Binary(t, testenv.AlertmanagerEnv, testenv.AlertmanagerNames...)
	token := rand.Text()
	gate := newWebhookGate(t)
	am := testenv.StartAlertmanager(t, fmt.Sprintf(`
route:
  receiver: responder
  group_by: ['alertname']
  group_wait: 500ms
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - matchers: ['team="shop"']
      receiver: responder
receivers:
  - name: responder
    webhook_configs:
      - url: %q
        send_resolved: true
        http_config:
          authorization:
            credentials: %q
`, gate.srv.URL+"/webhook/alertmanager", token))
	r := startE2EResponder(t, reconcilingConfig(t, am.URL(), token, "1s"), token)
	gate.forwardTo(t, r.addr)

	byAlertname := func(alertname string) []incident.Incident {
		list, err := r.incidents(t.Context(), "")
		require.NoError(t, err)
		var out []incident.Incident
		for _, inc := range list {
			if inc.GroupLabels["alertname"] == alertname {
				out = append(out, inc)
			}
		}
		return out
	}
	reconciled := func(id int64) string {
		inc, err := r.incident(t.Context(), id)
		require.NoError(t, err)
		for _, d := range inc.Decisions {
			if d.Kind == "reconcile" {
				return d.Summary
			}
		}
		return ""
	}

	// A fires and its webhook arrives. Its start is given, as Prometheus
	// gives it, so that the resolve below is the same alert's.
	startA := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	am.PostAlerts(t, []testenv.PostableAlert{{Labels: map[string]string{"alertname": "ReconcileA", "team": "shop", "pod": "a-1"}, StartsAt: startA}})
	r.eventually(t, "incident A opened by its webhook", func() (bool, any, error) {
		l := byAlertname("ReconcileA")
		return len(l) == 1 && l[0].Status == incident.StatusFiring, l, nil
	})
	require.Empty(t, reconciled(byAlertname("ReconcileA")[0].ID), "the webhook arrived: nothing to reconcile")

	// The webhook is blocked; B fires and A resolves meanwhile.
	gate.blocked.Store(true)
	am.PostAlerts(t, []testenv.PostableAlert{{Labels: map[string]string{"alertname": "ReconcileB", "team": "shop", "pod": "b-1"}}})
	am.PostAlerts(t, []testenv.PostableAlert{{
		Labels:   map[string]string{"alertname": "ReconcileA", "team": "shop", "pod": "a-1"},
		StartsAt: startA,
		EndsAt:   time.Now().Add(-time.Second),
	}})

	r.eventually(t, "incident B opened by reconciliation", func() (bool, any, error) {
		l := byAlertname("ReconcileB")
		return len(l) == 1 && l[0].Status == incident.StatusFiring && reconciled(l[0].ID) != "", l, nil
	})
	r.eventually(t, "incident A resolved by reconciliation", func() (bool, any, error) {
		l := byAlertname("ReconcileA")
		return len(l) == 1 && l[0].Status == incident.StatusResolved && reconciled(l[0].ID) != "", l, nil
	})
	require.Positive(t, gate.refused.Load(), "Alertmanager tried to deliver while the webhook was blocked")
	b := byAlertname("ReconcileB")[0]
	require.Contains(t, reconciled(b.ID), "no notification received")
	require.Equal(t, `{}/{team="shop"}:{alertname="ReconcileB"}`, b.GroupKey, "the group key is Alertmanager's own")
	require.Contains(t, reconciled(byAlertname("ReconcileA")[0].ID), "no longer in Alertmanager")

	// The webhook flows again: Alertmanager's retries are duplicates.
	versions := map[string]int64{}
	for _, name := range []string{"ReconcileA", "ReconcileB"} {
		versions[name] = byAlertname(name)[0].Version
	}
	passedBefore := gate.passed.Load()
	gate.blocked.Store(false)
	r.eventually(t, "Alertmanager's late deliveries of A and B arrived", func() (bool, any, error) {
		return gate.passed.Load()-passedBefore >= 2, gate.passed.Load() - passedBefore, nil
	})
	for _, name := range []string{"ReconcileA", "ReconcileB"} {
		l := byAlertname(name)
		require.Len(t, l, 1, "%s: the late webhook applied to the reconciled incident", name)
		require.Equal(t, versions[name], l[0].Version, "%s: the late webhook changed nothing", name)
		inc, err := r.incident(t.Context(), l[0].ID)
		require.NoError(t, err)
		require.Len(t, inc.Alerts, 1, "%s: one alert, not one per source", name)
	}
}
