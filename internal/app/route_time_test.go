package app

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/config"
	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/storetest"
)

// A route job that runs late (a retry after a storage outage, a backlog
// after a restart) routes the incident at the time its notification was
// received, as Alertmanager evaluates time intervals when it sends: a
// critical alert received at 17:59 in business hours that end at 18:00 is
// paged, even when its route job runs at 18:05.
func TestNotifier_RoutesAtReceiptTime(t *testing.T) {
	t.Parallel()
	clock := storetest.NewClock() // Wednesday 2026-11-25, 12:00 UTC
	clock.Advance(4*time.Hour + 59*time.Minute)
	ctx := t.Context()
	db := runTestStorage(t, clock)

	m := storetest.Payload(t, "am_v4_firing.json")
	m.CommonLabels["severity"] = "critical"
	raw, err := json.Marshal(m)
	require.NoError(t, err)
	_, err = db.Accept(ctx, incident.Delivery{Message: m, Raw: raw, ReceivedAt: clock.Now()})
	require.NoError(t, err)
	var inc incident.Incident
	require.Eventually(t, func() bool {
		list, err := db.ListIncidents(ctx, incident.ListFilter{})
		require.NoError(t, err)
		if len(list) == 1 {
			inc = list[0]
		}
		return len(list) == 1
	}, 10*time.Second, 10*time.Millisecond)

	cfg, err := config.Load(`
time_intervals:
  - name: business-hours
    time_intervals:
      - weekdays: ['monday:friday']
        times: [{ start_time: '09:00', end_time: '18:00' }]
        location: Europe/Rome
route:
  receiver: incidents
  routes:
    - matchers: ['severity="critical"']
      receiver: pager
      active_time_intervals: [business-hours]
receivers:
  - name: incidents
  - name: pager
`)
	require.NoError(t, err)
	n := newNotifier(slog.New(slog.DiscardHandler), db.Store, newConsole(slog.New(slog.DiscardHandler), prometheus.NewPedanticRegistry()), time.Minute, prometheus.NewPedanticRegistry())
	require.NoError(t, n.apply(cfg))
	clock.Advance(6 * time.Minute) // 18:05 in Rome when the job runs
	n.now = clock.Now
	require.NoError(t, n.route(ctx, incident.Job{Kind: incident.JobRoute, RefID: inc.ID}))

	got, err := db.ReadIncident(ctx, inc.ID, store.PartDecisions)
	require.NoError(t, err)
	d := routeDecision(got)
	require.NotNil(t, d, "routed")
	require.True(t, strings.HasPrefix(d.Summary, "receivers: pager"), "routed at 17:59, when the notification came: %s", d.Summary)
	require.Contains(t, d.Summary, "17:59")
	require.Equal(t, clock.Now(), d.At.UTC(), "decided when the job ran")
}
