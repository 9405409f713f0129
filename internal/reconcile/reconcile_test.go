package reconcile_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/template"
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/reconcile"
)

const amConfig = `
global:
  resolve_timeout: 5m
route:
  receiver: default
  group_by: ['alertname']
  routes:
    - matchers: ['severity="critical"', 'team=~"shop|pay"']
      receiver: responder
      continue: true
      routes:
        - match: { env: prod }
          group_by: ['alertname', 'cluster']
    - match_re: { team: 'shop' }
      receiver: responder
      group_by: ['...']
    - receiver: other
receivers:
  - name: default
  - name: responder
    webhook_configs: [{ url: '<secret>' }]
  - name: other
`

func TestTree_Groups(t *testing.T) {
	t.Parallel()
	tree, err := reconcile.ParseTree(amConfig)
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   []reconcile.Group
	}{
		{"critical shop alert: first route continues into the second", map[string]string{"alertname": "A", "severity": "critical", "team": "shop"}, []reconcile.Group{
			{Receiver: "responder", Key: `{}/{severity="critical",team=~"shop|pay"}:{alertname="A"}`, Labels: map[string]string{"alertname": "A"}},
			{Receiver: "responder", Key: `{}/{team=~"shop"}:{alertname="A", severity="critical", team="shop"}`, Labels: map[string]string{"alertname": "A", "severity": "critical", "team": "shop"}},
		}},
		{"nested route inherits the receiver, overrides group_by", map[string]string{"alertname": "A", "severity": "critical", "team": "pay", "env": "prod", "cluster": "eu"}, []reconcile.Group{
			{Receiver: "responder", Key: `{}/{severity="critical",team=~"shop|pay"}/{env="prod"}:{alertname="A", cluster="eu"}`, Labels: map[string]string{"alertname": "A", "cluster": "eu"}},
			{Receiver: "other", Key: `{}/{}:{alertname="A"}`, Labels: map[string]string{"alertname": "A"}},
		}},
		{"no match: the catch-all", map[string]string{"alertname": "B"}, []reconcile.Group{
			{Receiver: "other", Key: `{}/{}:{alertname="B"}`, Labels: map[string]string{"alertname": "B"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tree.Groups(tc.labels))
		})
	}

	_, err = reconcile.ParseTree("receivers: []")
	require.ErrorContains(t, err, "no route")
	_, err = reconcile.ParseTree("route: { matchers: ['a=~\"(\"'] }")
	require.Error(t, err)
}

// fakeAM serves GET /api/v2/alerts and /api/v2/status.
type fakeAM struct {
	mu     sync.Mutex
	alerts []reconcile.Alert
	fail   bool
}

func (f *fakeAM) set(alerts ...reconcile.Alert) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.alerts = alerts
}

func (f *fakeAM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		http.Error(w, "down", http.StatusInternalServerError)
		return
	}
	switch r.URL.Path {
	case "/api/v2/alerts":
		_ = json.NewEncoder(w).Encode(f.alerts)
	case "/api/v2/status":
		_ = json.NewEncoder(w).Encode(map[string]any{"config": map[string]any{"original": amConfig}})
	default:
		http.NotFound(w, r)
	}
}

type fakeSource struct{ incs []incident.Incident }

func (s *fakeSource) FiringIncidents(context.Context) ([]incident.Incident, error) {
	return s.incs, nil
}

func (s *fakeSource) Receivers(context.Context) ([]string, error) { return []string{"responder"}, nil }

func amAlert(fp, alertname string, startsAt time.Time) reconcile.Alert {
	a := reconcile.Alert{Fingerprint: fp, StartsAt: startsAt, Labels: map[string]string{"alertname": alertname, "team": "shop", "pod": fp}}
	a.Status.State = "active"
	return a
}

func TestReconciler_Round(t *testing.T) {
	t.Parallel()
	am := &fakeAM{}
	srv := httptest.NewServer(am)
	t.Cleanup(srv.Close)
	client, err := reconcile.NewClient(srv.URL, nil)
	require.NoError(t, err)
	start := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	src := &fakeSource{incs: []incident.Incident{{
		ID: 1, GroupKey: `{}/{team=~"shop"}:{alertname="Held", pod="h1", team="shop"}`, Receiver: "responder", Status: incident.StatusFiring,
		Alerts: []incident.Alert{{Fingerprint: "h1", Status: incident.StatusFiring, StartsAt: start, Labels: map[string]string{"alertname": "Held"}}},
	}}}
	r := reconcile.New(reconcile.Config{Enabled: true, Interval: time.Second, Grace: time.Minute}, client, srv.URL, src, nil)
	ctx := t.Context()

	// Alertmanager has the held alert and one whose webhook never came.
	am.set(amAlert("h1", "Held", start), amAlert("m1", "Missed", start))
	fixes, err := r.Round(ctx, start)
	require.NoError(t, err)
	require.Empty(t, fixes, "differences wait for the grace period")
	fixes, err = r.Round(ctx, start.Add(time.Minute))
	require.NoError(t, err)
	require.Len(t, fixes, 1)
	m := fixes[0].Message
	require.Equal(t, `{}/{team=~"shop"}:{alertname="Missed", pod="m1", team="shop"}`, m.GroupKey)
	require.Equal(t, incident.StatusFiring, m.Status)
	require.Len(t, m.Alerts, 1)
	require.Equal(t, "m1", m.Alerts[0].Fingerprint)
	require.NoError(t, m.Validate(), "the synthesised notification is a valid one")
	require.Contains(t, fixes[0].Reason, "reconciled")

	// The held alert leaves Alertmanager: resolved after the grace period.
	am.set()
	fixes, err = r.Round(ctx, start.Add(2*time.Minute))
	require.NoError(t, err)
	require.Empty(t, fixes)
	// It comes back before the grace period ends: the clock restarts.
	am.set(amAlert("h1", "Held", start))
	fixes, err = r.Round(ctx, start.Add(150*time.Second))
	require.NoError(t, err)
	require.Empty(t, fixes)
	am.set()
	fixes, err = r.Round(ctx, start.Add(160*time.Second))
	require.NoError(t, err)
	require.Empty(t, fixes, "the grace period restarted when the alert came back")
	fixes, err = r.Round(ctx, start.Add(220*time.Second))
	require.NoError(t, err)
	require.Len(t, fixes, 1)
	m = fixes[0].Message
	require.Equal(t, src.incs[0].GroupKey, m.GroupKey)
	require.Equal(t, incident.StatusResolved, m.Status)
	require.Equal(t, template.Alerts{{
		Status: incident.StatusResolved, Labels: map[string]string{"alertname": "Held"}, StartsAt: start,
		EndsAt: start.Add(220 * time.Second), Fingerprint: "h1",
	}}, m.Alerts)
	require.NoError(t, m.Validate())

	// Alertmanager failing means no fix at all, whatever storage holds.
	am.mu.Lock()
	am.fail = true
	am.mu.Unlock()
	fixes, err = r.Round(ctx, start.Add(time.Hour))
	require.Error(t, err)
	require.Empty(t, fixes)
}
