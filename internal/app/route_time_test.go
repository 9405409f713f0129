package app

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/config"
	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/routing/routingtest"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/storetest"
)

// businessHoursConfig sends every incident to Slack, and pages critical
// ones inside business hours in Rome; the Slack API and PagerDuty URLs are
// its two arguments.
const businessHoursConfig = `
global:
  slack_bot_token: xoxb-test
  slack_api_url: %q
  pagerduty_events_url: %q
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
      continue: true
    - receiver: incidents
receivers:
  - name: incidents
    slack_configs: [{ channel: '#incidents' }]
  - name: pager
    pagerduty_configs: [{ routing_key: 0123456789abcdef0123456789abcdef }]
`

// routingFixture is a running store on clock's time and a notifier with
// businessHoursConfig and fake Slack and PagerDuty, whose jobs the test runs
// itself.
type routingFixture struct {
	t       *testing.T
	clock   *storetest.Clock
	db      *storage
	n       *notifier
	slack   *routingtest.FakeSlack
	channel string
	pd      *routingtest.FakePagerDuty
}

func newRoutingFixture(t *testing.T, clock *storetest.Clock) *routingFixture {
	t.Helper()
	f := &routingFixture{t: t, clock: clock, db: runTestStorage(t, clock), slack: routingtest.NewFakeSlack(t, "xoxb-test"), pd: routingtest.NewFakePagerDuty(t)}
	f.channel = f.slack.AddChannel("#incidents")
	cfg, err := config.Load(fmt.Sprintf(businessHoursConfig, f.slack.URL(), f.pd.URL()))
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	f.n = newNotifier(slog.New(slog.DiscardHandler), f.db.Store, newConsole(slog.New(slog.DiscardHandler), reg), time.Minute, reg)
	require.NoError(t, f.n.apply(cfg))
	f.n.now = clock.Now
	return f
}

// accept commits a critical notification of the fixture's group, all its
// alerts in status, received now, and waits until the incident has
// status.
func (f *routingFixture) accept(status string) incident.Incident {
	f.t.Helper()
	m := storetest.Payload(f.t, "am_v4_firing.json")
	m.CommonLabels["severity"] = "critical"
	m.Status = status
	for i := range m.Alerts {
		m.Alerts[i].Status = status
		if status == incident.StatusResolved {
			m.Alerts[i].EndsAt = f.clock.Now()
		}
	}
	raw, err := json.Marshal(m)
	require.NoError(f.t, err)
	_, err = f.db.Accept(f.t.Context(), incident.Delivery{Message: m, Raw: raw, ReceivedAt: f.clock.Now()})
	require.NoError(f.t, err)
	var inc incident.Incident
	require.Eventually(f.t, func() bool {
		list, err := f.db.ListIncidents(f.t.Context(), incident.ListFilter{Status: status})
		require.NoError(f.t, err)
		if len(list) == 1 {
			inc = list[0]
		}
		return len(list) == 1
	}, 10*time.Second, 10*time.Millisecond)
	return inc
}

// deliverAll runs every deliver job that is due, as the pipeline would.
func (f *routingFixture) deliverAll() {
	f.t.Helper()
	jobs, err := f.db.Claim(f.t.Context(), "test", 100, time.Minute, incident.JobDeliver)
	require.NoError(f.t, err)
	for _, j := range jobs {
		require.NoError(f.t, f.n.deliver(f.t.Context(), j))
		require.NoError(f.t, f.db.Complete(f.t.Context(), j))
	}
}

// read returns the incident's decisions and deliveries.
func (f *routingFixture) read(id int64) *incident.Incident {
	f.t.Helper()
	inc, err := f.db.ReadIncident(f.t.Context(), id, store.PartDecisions|store.PartDeliveries)
	require.NoError(f.t, err)
	return inc
}

// A route job that runs late (a retry after a storage outage, a backlog
// after a restart) routes the incident at the time its notification was
// received, as Alertmanager evaluates time intervals when it sends: a
// critical alert received at 17:59 in business hours that end at 18:00 is
// paged, even when its route job runs at 18:05.
func TestNotifier_RoutesAtReceiptTime(t *testing.T) {
	t.Parallel()
	clock := storetest.NewClock() // Wednesday 2026-11-25, 12:00 UTC
	clock.Advance(4*time.Hour + 59*time.Minute)
	f := newRoutingFixture(t, clock)
	inc := f.accept(incident.StatusFiring)

	clock.Advance(6 * time.Minute) // 18:05 in Rome when the job runs
	require.NoError(t, f.n.route(t.Context(), incident.Job{Kind: incident.JobRoute, RefID: inc.ID}))
	d := routeDecision(f.read(inc.ID))
	require.NotNil(t, d, "routed")
	require.True(t, strings.HasPrefix(d.Summary, "receivers: pager"), "routed at 17:59, when the notification came: %s", d.Summary)
	require.Contains(t, d.Summary, "17:59")
	require.Equal(t, clock.Now(), d.At.UTC(), "decided when the job ran")
}

// A critical incident that opens on Saturday night, when the PagerDuty
// route is muted outside business hours, is paged on Monday at 09:00 if it
// still fires, as Alertmanager would at the group's next notification: the
// route decision queues a reroute job due then, which adds the PagerDuty
// delivery with a decision that says why. One that resolved meanwhile is
// not paged.
func TestNotifier_ReroutesWhenBusinessHoursBegin(t *testing.T) {
	t.Parallel()
	for _, resolved := range []bool{false, true} {
		t.Run(map[bool]string{false: "still firing", true: "resolved"}[resolved], func(t *testing.T) {
			t.Parallel()
			clock := storetest.NewClock()               // Wednesday 2026-11-25, 12:00 UTC
			clock.Advance(3*24*time.Hour + 9*time.Hour) // Saturday 22:00 in Rome
			f := newRoutingFixture(t, clock)
			inc := f.accept(incident.StatusFiring)
			require.NoError(t, f.n.route(t.Context(), incident.Job{Kind: incident.JobRoute, RefID: inc.ID}))
			got := f.read(inc.ID)
			require.Contains(t, routeDecision(got).Summary, "muted: pager")
			require.Len(t, got.Deliveries, 1, "Slack only on Saturday night")
			f.deliverAll()
			require.Len(t, f.slack.Messages(f.channel), 1)
			require.Empty(t, f.pd.Events())

			jobs, err := f.db.ListJobs(t.Context(), incident.JobFilter{State: incident.JobQueued})
			require.NoError(t, err)
			var reroute *incident.Job
			for i := range jobs {
				if jobs[i].Kind == incident.JobReroute {
					reroute = &jobs[i]
				}
			}
			require.NotNil(t, reroute, "a reroute job is queued with the decision")
			require.Equal(t, time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC), reroute.RunAt.UTC(), "Monday 09:00 in Rome")

			if resolved {
				f.accept(incident.StatusResolved)
			}
			clock.Advance(35 * time.Hour) // Monday 08:00 UTC, 09:00 in Rome
			require.NoError(t, f.n.reroute(t.Context(), *reroute))
			got = f.read(inc.ID)
			f.deliverAll()
			if resolved {
				require.Len(t, got.Deliveries, 1, "a resolved incident is not paged")
				require.Empty(t, f.pd.Events())
				return
			}
			require.Len(t, got.Deliveries, 2)
			require.Equal(t, incident.IntegrationPagerDuty, got.Deliveries[1].Integration)
			i := slices.IndexFunc(got.Decisions, func(d incident.Decision) bool { return d.Kind == incident.DecisionReroute })
			require.GreaterOrEqual(t, i, 0, "a reroute decision: %+v", got.Decisions)
			require.Contains(t, got.Decisions[i].Summary, "added: pager")
			require.Contains(t, got.Decisions[i].Summary, "active in business-hours (Europe/Rome, Mon 2026-11-30 09:00 CET)")
			require.Greater(t, got.Version, inc.Version, "a new version: the Slack message is brought in step")
			require.Contains(t, routeNotes(got), got.Decisions[i].Summary, "and shows the decision")
			events := f.pd.Events()
			require.Len(t, events, 1, "paged once")
			require.Equal(t, "trigger", events[0].EventAction)
			msgs := f.slack.Messages(f.channel)
			require.Len(t, msgs, 1, "the same Slack message")
			require.Contains(t, msgs[0].BlocksJSON, "added: pager", "brought in step: it says why PagerDuty was paged")

			// Run again (a retry, another replica): nothing more.
			require.NoError(t, f.n.reroute(t.Context(), *reroute))
			again := f.read(inc.ID)
			require.Len(t, again.Deliveries, 2)
			require.Len(t, again.Decisions, len(got.Decisions))
			f.deliverAll()
			require.Len(t, f.pd.Events(), 1)
		})
	}
}
