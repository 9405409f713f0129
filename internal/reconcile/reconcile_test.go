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

// startFakeAM serves a fakeAM and returns it with a client of it and its URL.
func startFakeAM(t *testing.T) (*fakeAM, *reconcile.Client, string) {
	t.Helper()
	am := &fakeAM{}
	srv := httptest.NewServer(am)
	t.Cleanup(srv.Close)
	client, err := reconcile.NewClient(srv.URL, nil)
	require.NoError(t, err)
	return am, client, srv.URL
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
	am, client, url := startFakeAM(t)
	start := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	src := &fakeSource{incs: []incident.Incident{{
		ID: 1, GroupKey: `{}/{team=~"shop"}:{alertname="Held", pod="h1", team="shop"}`, Receiver: "responder", Status: incident.StatusFiring,
		Alerts: []incident.Alert{{Fingerprint: "h1", Status: incident.StatusFiring, StartsAt: start, Labels: map[string]string{"alertname": "Held"}}},
	}}}
	r := reconcile.New(reconcile.Config{Enabled: true, Interval: time.Second, Grace: time.Minute}, client, url, src, nil)
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

// An incident kept open by a truncated notification (firing, no alert
// firing) is released once Alertmanager has had no active alert of its
// group for the grace period; while the group has one, the round opens it
// into the incident instead.
func TestReconciler_ReleasesHeldIncidents(t *testing.T) {
	t.Parallel()
	am, client, url := startFakeAM(t)
	start := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	ended := start.Add(time.Minute)
	key := `{}/{team=~"shop"}:{alertname="Kept", pod="k1", team="shop"}`
	src := &fakeSource{incs: []incident.Incident{{
		ID: 1, GroupKey: key, Receiver: "responder", Status: incident.StatusFiring,
		Alerts: []incident.Alert{{Fingerprint: "k1", Status: incident.StatusResolved, StartsAt: start, EndsAt: &ended, Labels: map[string]string{"alertname": "Kept", "team": "shop", "pod": "k1"}}},
	}}}
	r := reconcile.New(reconcile.Config{Enabled: true, Interval: time.Second, Grace: time.Minute}, client, url, src, nil)
	ctx := t.Context()

	// The alert left out still fires in Alertmanager (same group: the
	// route groups by every label, so give it the same labels but another
	// start): the round opens it, and does not release.
	left := amAlert("k1", "Kept", start.Add(time.Hour))
	left.Fingerprint = "k1"
	am.set(left)
	for _, at := range []time.Duration{0, time.Minute, 2 * time.Minute} {
		fixes, err := r.Round(ctx, start.Add(at))
		require.NoError(t, err)
		for _, f := range fixes {
			require.False(t, f.Release, "a group with an active alert is not released")
		}
	}

	// It resolves: released after the grace period, with nothing left out.
	am.set()
	fixes, err := r.Round(ctx, start.Add(3*time.Minute))
	require.NoError(t, err)
	require.Empty(t, fixes, "the grace period starts")
	fixes, err = r.Round(ctx, start.Add(4*time.Minute))
	require.NoError(t, err)
	require.Len(t, fixes, 1)
	f := fixes[0]
	require.True(t, f.Release)
	require.Contains(t, f.Reason, "truncated notification")
	require.Equal(t, key, f.Message.GroupKey)
	require.Equal(t, incident.StatusResolved, f.Message.Status)
	require.Zero(t, f.Message.TruncatedAlerts)
	require.Equal(t, template.Alerts{{
		Status: incident.StatusResolved, Labels: map[string]string{"alertname": "Kept", "team": "shop", "pod": "k1"}, StartsAt: start,
		EndsAt: ended, Fingerprint: "k1",
	}}, f.Message.Alerts)
	require.NoError(t, f.Message.Validate())

	// An incident with an alert firing is not held: nothing to release.
	src.incs[0].Alerts[0].Status = incident.StatusFiring
	fixes, err = r.Round(ctx, start.Add(10*time.Minute))
	require.NoError(t, err)
	for _, f := range fixes {
		require.False(t, f.Release)
	}
}
