package routing_test

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v2"

	"github.com/responder/responder/internal/config"
	"github.com/responder/responder/internal/routing"
)

// tree is the part of the configuration file a Router is built from.
type tree struct {
	TimeIntervals []routing.TimeInterval `yaml:"time_intervals"`
	Route         *routing.Route         `yaml:"route"`
}

// newRouter decodes y as the time_intervals and route sections of a
// configuration file, validates the route and returns its Router.
func newRouter(t testing.TB, y string) *routing.Router {
	t.Helper()
	var c tree
	require.NoError(t, yaml.UnmarshalStrict([]byte(y), &c))
	require.NotNil(t, c.Route)
	require.NoError(t, c.Route.Validate())
	r, err := routing.NewRouter(c.Route, c.TimeIntervals)
	require.NoError(t, err)
	return r
}

// utc parses an RFC 3339 instant.
func utc(t testing.TB, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339, s)
	require.NoError(t, err)
	return at
}

// reasons returns the reason of every step by path.
func reasons(d routing.Decision) map[string]string {
	m := make(map[string]string, len(d.Trace))
	for _, s := range d.Trace {
		m[s.Path] = s.Reason
	}
	return m
}

const matchingTree = `
route:
  receiver: default
  routes:
    - matchers: ['team="db"']
      receiver: db
      routes:
        - matchers: ['severity="critical"']
          receiver: db-pager
        - matchers: ['env=~"prod|staging"']
    - matchers: ['severity="critical"']
      receiver: pager
      continue: true
    - matchers: ['service=~"checkout|cart"', 'env!="dev"']
      receiver: shop
      continue: true
    - matchers: ['severity!~"info|debug"']
      receiver: slack
    - receiver: info-sink
`

func TestRouter_Route(t *testing.T) {
	t.Parallel()
	r := newRouter(t, matchingTree)
	at := utc(t, "2026-11-25T09:00:00Z")

	tests := []struct {
		name    string
		labels  map[string]string
		want    []string
		reasons map[string]string
	}{
		{
			name:   "nested match stops at the first matching child",
			labels: map[string]string{"team": "db", "severity": "critical"},
			want:   []string{"db-pager"},
			reasons: map[string]string{
				"route":                     "default route; a child route matched",
				"route.routes[0]":           `matched team="db"; a child route matched`,
				"route.routes[0].routes[0]": `matched severity="critical"`,
				"route.routes[0].routes[1]": "skipped: route.routes[0].routes[0] matched without continue",
				"route.routes[1]":           "skipped: route.routes[0] matched without continue",
				"route.routes[4]":           "skipped: route.routes[0] matched without continue",
			},
		},
		{
			name:   "child without receiver inherits its parent's",
			labels: map[string]string{"team": "db", "env": "staging"},
			want:   []string{"db"},
			reasons: map[string]string{
				"route.routes[0].routes[0]": `not matched: severity="critical" (no severity label)`,
				"route.routes[0].routes[1]": `matched env=~"prod|staging" (env="staging")`,
			},
		},
		{
			name:   "parent is the match when no child matches",
			labels: map[string]string{"team": "db", "env": "dev"},
			want:   []string{"db"},
			reasons: map[string]string{
				"route.routes[0]":           `matched team="db"; no child route matched`,
				"route.routes[0].routes[1]": `not matched: env=~"prod|staging" (env="dev")`,
			},
		},
		{
			name:   "continue goes on to later siblings",
			labels: map[string]string{"severity": "critical", "service": "checkout", "env": "prod"},
			want:   []string{"pager", "shop", "slack"},
			reasons: map[string]string{
				"route.routes[0]": `not matched: team="db" (no team label)`,
				"route.routes[1]": `matched severity="critical"`,
				"route.routes[2]": `matched service=~"checkout|cart" (service="checkout"), env!="dev" (env="prod")`,
				"route.routes[3]": `matched severity!~"info|debug" (severity="critical")`,
				"route.routes[4]": "skipped: route.routes[3] matched without continue",
			},
		},
		{
			name:   "negative matcher fails",
			labels: map[string]string{"severity": "critical", "service": "checkout", "env": "dev"},
			want:   []string{"pager", "slack"},
			reasons: map[string]string{
				"route.routes[2]": `not matched: env!="dev" (env="dev")`,
			},
		},
		{
			name:   "missing label matches negative matchers",
			labels: map[string]string{"service": "cart"},
			want:   []string{"shop", "slack"},
			reasons: map[string]string{
				"route.routes[2]": `matched service=~"checkout|cart" (service="cart"), env!="dev" (no env label)`,
				"route.routes[3]": `matched severity!~"info|debug" (no severity label)`,
			},
		},
		{
			name:   "regex is anchored",
			labels: map[string]string{"service": "checkout-v2", "severity": "debug"},
			want:   []string{"info-sink"},
			reasons: map[string]string{
				"route.routes[2]": `not matched: service=~"checkout|cart" (service="checkout-v2")`,
				"route.routes[3]": `not matched: severity!~"info|debug" (severity="debug")`,
				"route.routes[4]": "no matchers: matches every alert",
			},
		},
		{
			name:   "no labels",
			labels: map[string]string{},
			want:   []string{"slack"},
		},
		{
			name:   "nil labels",
			labels: nil,
			want:   []string{"slack"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := r.Route(tc.labels, at)
			require.Equal(t, tc.want, d.Receivers)
			got := reasons(d)
			for path, want := range tc.reasons {
				require.Equal(t, want, got[path], path)
			}
		})
	}
}

func TestRouter_Route_trace(t *testing.T) {
	t.Parallel()
	r := newRouter(t, matchingTree)
	d := r.Route(map[string]string{"team": "db", "severity": "critical"}, utc(t, "2026-11-25T09:00:00Z"))
	// Every route the walk looks at has a step, parents before children;
	// the subtrees of routes that did not match are not walked.
	want := []routing.Step{
		{Path: "route", Receiver: "default", Matched: true, Reason: "default route; a child route matched"},
		{Path: "route.routes[0]", Receiver: "db", Matched: true, Reason: `matched team="db"; a child route matched`},
		{Path: "route.routes[0].routes[0]", Receiver: "db-pager", Matched: true, Final: true, Reason: `matched severity="critical"`},
		{Path: "route.routes[0].routes[1]", Receiver: "db", Reason: "skipped: route.routes[0].routes[0] matched without continue"},
		{Path: "route.routes[1]", Receiver: "pager", Reason: "skipped: route.routes[0] matched without continue"},
		{Path: "route.routes[2]", Receiver: "shop", Reason: "skipped: route.routes[0] matched without continue"},
		{Path: "route.routes[3]", Receiver: "slack", Reason: "skipped: route.routes[0] matched without continue"},
		{Path: "route.routes[4]", Receiver: "info-sink", Reason: "skipped: route.routes[0] matched without continue"},
	}
	require.Equal(t, want, d.Trace)
}

func TestRouter_Route_default(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tree   string
		want   []string
		reason string
	}{
		{
			name:   "root without children",
			tree:   "route: {receiver: default}",
			want:   []string{"default"},
			reason: "default route",
		},
		{
			name:   "no child matches",
			tree:   `route: {receiver: default, routes: [{matchers: ['a="1"'], receiver: x}]}`,
			want:   []string{"default"},
			reason: "default route; no child route matched",
		},
		{
			name:   "receiver chosen once",
			tree:   `route: {receiver: default, routes: [{receiver: x, continue: true}, {receiver: y, continue: true}, {receiver: x}]}`,
			want:   []string{"x", "y"},
			reason: "default route; a child route matched",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newRouter(t, tc.tree).Route(map[string]string{"b": "2"}, utc(t, "2026-11-25T09:00:00Z"))
			require.Equal(t, tc.want, d.Receivers)
			require.Equal(t, tc.reason, d.Trace[0].Reason)
		})
	}
}

// productTree is the example of PRODUCT.md: PagerDuty for critical alerts in
// business hours, Slack for everything.
const productTree = `
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
      receiver: pagerduty
      active_time_intervals: [business-hours]
      continue: %t
    - receiver: incidents
`

func TestRouter_Route_mutedAndContinue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cont    bool
		labels  map[string]string
		at      string
		want    []string
		summary string
		reasons map[string]string
	}{
		{
			name:    "critical in business hours pages and posts",
			cont:    true,
			labels:  map[string]string{"severity": "critical"},
			at:      "2026-11-25T09:00:00Z",
			want:    []string{"pagerduty", "incidents"},
			summary: "receivers: pagerduty, incidents",
			reasons: map[string]string{
				"route.routes[0]": `matched severity="critical"; active in business-hours (Europe/Rome, Wed 2026-11-25 10:00 CET)`,
				"route.routes[1]": "no matchers: matches every alert",
			},
		},
		{
			name:    "muted route with continue lets the next route match",
			cont:    true,
			labels:  map[string]string{"severity": "critical"},
			at:      "2026-11-28T21:14:00Z",
			want:    []string{"incidents"},
			summary: "receivers: incidents; muted: pagerduty",
			reasons: map[string]string{
				"route.routes[0]": `muted: outside active time interval business-hours (Europe/Rome, Sat 2026-11-28 22:14 CET); matched severity="critical"`,
			},
		},
		{
			name:    "warning posts only",
			cont:    true,
			labels:  map[string]string{"severity": "warning"},
			at:      "2026-11-25T09:00:00Z",
			want:    []string{"incidents"},
			summary: "receivers: incidents",
			reasons: map[string]string{
				"route.routes[0]": `not matched: severity="critical" (severity="warning")`,
			},
		},
		{
			// As in Alertmanager: muting happens after matching, so a
			// muted route without continue still ends the search.
			name:    "muted route without continue stops the search",
			cont:    false,
			labels:  map[string]string{"severity": "critical"},
			at:      "2026-11-28T21:14:00Z",
			want:    []string{},
			summary: "receivers: none; muted: pagerduty",
			reasons: map[string]string{
				"route.routes[1]": "skipped: route.routes[0] matched without continue",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRouter(t, fmt.Sprintf(productTree, tc.cont))
			d := r.Route(tc.labels, utc(t, tc.at))
			require.Equal(t, tc.want, d.Receivers)
			require.Equal(t, tc.summary, d.Summary())
			got := reasons(d)
			for path, want := range tc.reasons {
				require.Equal(t, want, got[path], path)
			}
		})
	}
}

func TestRouter_Route_mutedReceiverChosenElsewhere(t *testing.T) {
	t.Parallel()
	r := newRouter(t, `
time_intervals:
  - name: never
    time_intervals: [{ years: ['2000'] }]
route:
  receiver: incidents
  routes:
    - receiver: incidents
      active_time_intervals: [never]
      continue: true
    - receiver: incidents
`)
	d := r.Route(nil, utc(t, "2026-11-25T09:00:00Z"))
	require.Equal(t, []string{"incidents"}, d.Receivers)
	require.Equal(t, "receivers: incidents", d.Summary())
	require.True(t, d.Trace[1].Muted)
	require.Equal(t, "muted: outside active time interval never (UTC, Wed 2026-11-25 09:00 UTC); no matchers: matches every alert", d.Trace[1].Reason)
}

// intervals are the named time intervals of TestRouter_Route_timeIntervals.
const intervals = `
time_intervals:
  - name: rome-business-hours
    time_intervals:
      - weekdays: ['monday:friday']
        times: [{ start_time: '09:00', end_time: '18:00' }]
        location: Europe/Rome
  - name: ny-business-hours
    time_intervals:
      - weekdays: ['monday:friday']
        times: [{ start_time: '09:00', end_time: '18:00' }]
        location: America/New_York
  - name: tokyo-business-hours
    time_intervals:
      - weekdays: ['monday:friday']
        times: [{ start_time: '09:00', end_time: '18:00' }]
        location: Asia/Tokyo
  - name: utc-business-hours
    time_intervals:
      - weekdays: ['monday:friday']
        times: [{ start_time: '09:00', end_time: '18:00' }]
  - name: rome-late-evening
    time_intervals:
      - times: [{ start_time: '22:00', end_time: '24:00' }]
        location: Europe/Rome
  - name: rome-two-am
    time_intervals:
      - times: [{ start_time: '02:00', end_time: '03:00' }]
        location: Europe/Rome
  - name: rome-holidays
    time_intervals:
      - months: ['december']
        days_of_month: ['25:26']
        location: Europe/Rome
      - months: ['january']
        days_of_month: ['1']
        location: Europe/Rome
  - name: rome-month-end
    time_intervals:
      - days_of_month: ['-1']
        location: Europe/Rome
  - name: follow-the-sun
    time_intervals:
      - times: [{ start_time: '09:00', end_time: '18:00' }]
        location: Europe/Rome
      - times: [{ start_time: '09:00', end_time: '18:00' }]
        location: America/New_York
`

func TestRouter_Route_timeIntervals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		route  string // the time interval fields of the only child route
		at     string
		muted  bool
		reason string // the child's reason contains this
	}{
		// Europe/Rome: CET (+01:00) until 2026-03-29 01:00Z, CEST (+02:00)
		// until 2026-10-25 01:00Z.
		{
			"rome before spring forward in", "active_time_intervals: [rome-business-hours]", "2026-03-27T08:30:00Z", false,
			"active in rome-business-hours (Europe/Rome, Fri 2026-03-27 09:30 CET)",
		},
		{
			"rome before spring forward out", "active_time_intervals: [rome-business-hours]", "2026-03-27T17:30:00Z", true,
			"muted: outside active time interval rome-business-hours (Europe/Rome, Fri 2026-03-27 18:30 CET)",
		},
		{
			"rome after spring forward in", "active_time_intervals: [rome-business-hours]", "2026-03-30T07:30:00Z", false,
			"active in rome-business-hours (Europe/Rome, Mon 2026-03-30 09:30 CEST)",
		},
		{
			"rome after spring forward out", "active_time_intervals: [rome-business-hours]", "2026-03-30T16:30:00Z", true,
			"outside active time interval rome-business-hours (Europe/Rome, Mon 2026-03-30 18:30 CEST)",
		},
		{
			"rome start is inclusive", "active_time_intervals: [rome-business-hours]", "2026-10-23T07:00:00Z", false,
			"active in rome-business-hours (Europe/Rome, Fri 2026-10-23 09:00 CEST)",
		},
		{
			"rome last minute", "active_time_intervals: [rome-business-hours]", "2026-10-23T15:59:00Z", false,
			"active in rome-business-hours (Europe/Rome, Fri 2026-10-23 17:59 CEST)",
		},
		{
			"rome end is exclusive", "active_time_intervals: [rome-business-hours]", "2026-10-23T16:00:00Z", true,
			"outside active time interval rome-business-hours (Europe/Rome, Fri 2026-10-23 18:00 CEST)",
		},
		{
			"rome after fall back out", "active_time_intervals: [rome-business-hours]", "2026-10-26T07:30:00Z", true,
			"outside active time interval rome-business-hours (Europe/Rome, Mon 2026-10-26 08:30 CET)",
		},
		{
			"rome after fall back in", "active_time_intervals: [rome-business-hours]", "2026-10-26T08:00:00Z", false,
			"active in rome-business-hours (Europe/Rome, Mon 2026-10-26 09:00 CET)",
		},
		{
			"rome weekend night", "active_time_intervals: [rome-business-hours]", "2026-11-28T21:14:00Z", true,
			"outside active time interval rome-business-hours (Europe/Rome, Sat 2026-11-28 22:14 CET)",
		},
		{
			"rome weekend morning", "active_time_intervals: [rome-business-hours]", "2026-11-28T09:00:00Z", true,
			"outside active time interval rome-business-hours (Europe/Rome, Sat 2026-11-28 10:00 CET)",
		},
		{
			"rome weekday", "active_time_intervals: [rome-business-hours]", "2026-11-25T09:00:00Z", false,
			"active in rome-business-hours (Europe/Rome, Wed 2026-11-25 10:00 CET)",
		},

		// The 02:00-03:00 hour does not exist in Rome on 2026-03-29 and
		// happens twice on 2026-10-25.
		{
			"rome two am the day before", "active_time_intervals: [rome-two-am]", "2026-03-28T01:30:00Z", false,
			"active in rome-two-am (Europe/Rome, Sat 2026-03-28 02:30 CET)",
		},
		{
			"rome just before the gap", "active_time_intervals: [rome-two-am]", "2026-03-29T00:59:00Z", true,
			"outside active time interval rome-two-am (Europe/Rome, Sun 2026-03-29 01:59 CET)",
		},
		{
			"rome just after the gap", "active_time_intervals: [rome-two-am]", "2026-03-29T01:00:00Z", true,
			"outside active time interval rome-two-am (Europe/Rome, Sun 2026-03-29 03:00 CEST)",
		},
		{
			"rome first two am of fall back", "active_time_intervals: [rome-two-am]", "2026-10-25T00:30:00Z", false,
			"active in rome-two-am (Europe/Rome, Sun 2026-10-25 02:30 CEST)",
		},
		{
			"rome second two am of fall back", "active_time_intervals: [rome-two-am]", "2026-10-25T01:30:00Z", false,
			"active in rome-two-am (Europe/Rome, Sun 2026-10-25 02:30 CET)",
		},
		{
			"rome after the repeated hour", "active_time_intervals: [rome-two-am]", "2026-10-25T02:00:00Z", true,
			"outside active time interval rome-two-am (Europe/Rome, Sun 2026-10-25 03:00 CET)",
		},

		// Alertmanager rejects end < start; an evening interval ends at 24:00.
		{
			"late evening before", "active_time_intervals: [rome-late-evening]", "2026-10-24T19:59:00Z", true,
			"outside active time interval rome-late-evening (Europe/Rome, Sat 2026-10-24 21:59 CEST)",
		},
		{
			"late evening start", "active_time_intervals: [rome-late-evening]", "2026-10-24T20:00:00Z", false,
			"active in rome-late-evening (Europe/Rome, Sat 2026-10-24 22:00 CEST)",
		},
		{
			"late evening last minute", "active_time_intervals: [rome-late-evening]", "2026-10-25T22:59:00Z", false,
			"active in rome-late-evening (Europe/Rome, Sun 2026-10-25 23:59 CET)",
		},
		{
			"late evening midnight is out", "active_time_intervals: [rome-late-evening]", "2026-10-25T23:00:00Z", true,
			"outside active time interval rome-late-evening (Europe/Rome, Mon 2026-10-26 00:00 CET)",
		},

		// America/New_York: EST (-05:00) until 2026-03-08 07:00Z, EDT
		// (-04:00) until 2026-11-01 06:00Z.
		{
			"new york before spring forward out", "active_time_intervals: [ny-business-hours]", "2026-03-06T13:30:00Z", true,
			"outside active time interval ny-business-hours (America/New_York, Fri 2026-03-06 08:30 EST)",
		},
		{
			"new york before spring forward in", "active_time_intervals: [ny-business-hours]", "2026-03-06T14:30:00Z", false,
			"active in ny-business-hours (America/New_York, Fri 2026-03-06 09:30 EST)",
		},
		{
			"new york switch day is a sunday", "active_time_intervals: [ny-business-hours]", "2026-03-08T14:30:00Z", true,
			"outside active time interval ny-business-hours (America/New_York, Sun 2026-03-08 10:30 EDT)",
		},
		{
			"new york after spring forward in", "active_time_intervals: [ny-business-hours]", "2026-03-09T13:30:00Z", false,
			"active in ny-business-hours (America/New_York, Mon 2026-03-09 09:30 EDT)",
		},
		{
			"new york after spring forward out", "active_time_intervals: [ny-business-hours]", "2026-03-09T22:00:00Z", true,
			"outside active time interval ny-business-hours (America/New_York, Mon 2026-03-09 18:00 EDT)",
		},
		{
			"new york before fall back in", "active_time_intervals: [ny-business-hours]", "2026-10-30T13:30:00Z", false,
			"active in ny-business-hours (America/New_York, Fri 2026-10-30 09:30 EDT)",
		},
		{
			"new york repeated hour", "active_time_intervals: [ny-business-hours]", "2026-11-01T06:30:00Z", true,
			"outside active time interval ny-business-hours (America/New_York, Sun 2026-11-01 01:30 EST)",
		},
		{
			"new york after fall back out", "active_time_intervals: [ny-business-hours]", "2026-11-02T13:30:00Z", true,
			"outside active time interval ny-business-hours (America/New_York, Mon 2026-11-02 08:30 EST)",
		},
		{
			"new york after fall back in", "active_time_intervals: [ny-business-hours]", "2026-11-02T14:30:00Z", false,
			"active in ny-business-hours (America/New_York, Mon 2026-11-02 09:30 EST)",
		},

		// Asia/Tokyo: JST (+09:00) all year; the local day starts on the
		// previous UTC day.
		{
			"tokyo monday morning is sunday in utc", "active_time_intervals: [tokyo-business-hours]", "2026-03-29T23:30:00Z", true,
			"outside active time interval tokyo-business-hours (Asia/Tokyo, Mon 2026-03-30 08:30 JST)",
		},
		{
			"tokyo monday", "active_time_intervals: [tokyo-business-hours]", "2026-03-30T00:30:00Z", false,
			"active in tokyo-business-hours (Asia/Tokyo, Mon 2026-03-30 09:30 JST)",
		},
		{
			"tokyo friday evening", "active_time_intervals: [tokyo-business-hours]", "2026-03-27T09:30:00Z", true,
			"outside active time interval tokyo-business-hours (Asia/Tokyo, Fri 2026-03-27 18:30 JST)",
		},
		{
			"tokyo unaffected by european dst", "active_time_intervals: [tokyo-business-hours]", "2026-10-26T08:59:00Z", false,
			"active in tokyo-business-hours (Asia/Tokyo, Mon 2026-10-26 17:59 JST)",
		},

		// No location means UTC, whatever the offset of the instant.
		{
			"no location is utc", "active_time_intervals: [utc-business-hours]", "2026-03-30T09:30:00+02:00", true,
			"outside active time interval utc-business-hours (UTC, Mon 2026-03-30 07:30 UTC)",
		},

		// Holidays through months and days_of_month.
		{
			"christmas mutes business hours", "{active_time_intervals: [rome-business-hours], mute_time_intervals: [rome-holidays]}", "2026-12-25T09:00:00Z", true,
			"muted: in mute time interval rome-holidays (Europe/Rome, Fri 2026-12-25 10:00 CET); matched severity=\"critical\"; active in rome-business-hours (Europe/Rome, Fri 2026-12-25 10:00 CET)",
		},
		{
			"christmas eve is not a holiday", "{active_time_intervals: [rome-business-hours], mute_time_intervals: [rome-holidays]}", "2026-12-24T09:00:00Z", false,
			"active in rome-business-hours (Europe/Rome, Thu 2026-12-24 10:00 CET); outside mute time interval rome-holidays (Europe/Rome, Thu 2026-12-24 10:00 CET)",
		},
		{
			"christmas starts at local midnight", "mute_time_intervals: [rome-holidays]", "2026-12-24T23:30:00Z", true,
			"in mute time interval rome-holidays (Europe/Rome, Fri 2026-12-25 00:30 CET)",
		},
		{
			"holiday ends at local midnight", "mute_time_intervals: [rome-holidays]", "2026-12-26T23:00:00Z", false,
			"outside mute time interval rome-holidays (Europe/Rome, Sun 2026-12-27 00:00 CET)",
		},
		{
			"second range of a holiday", "mute_time_intervals: [rome-holidays]", "2027-01-01T11:00:00Z", true,
			"in mute time interval rome-holidays (Europe/Rome, Fri 2027-01-01 12:00 CET)",
		},
		{
			"last day of february", "mute_time_intervals: [rome-month-end]", "2026-02-28T11:00:00Z", true,
			"in mute time interval rome-month-end (Europe/Rome, Sat 2026-02-28 12:00 CET)",
		},
		{
			"not the last day", "mute_time_intervals: [rome-month-end]", "2026-02-27T11:00:00Z", false,
			"outside mute time interval rome-month-end (Europe/Rome, Fri 2026-02-27 12:00 CET)",
		},

		// Several ranges and several intervals.
		{
			"second range matches", "active_time_intervals: [follow-the-sun]", "2026-11-25T20:00:00Z", false,
			"active in follow-the-sun (America/New_York, Wed 2026-11-25 15:00 EST)",
		},
		{
			"no range matches", "active_time_intervals: [follow-the-sun]", "2026-11-26T03:00:00Z", true,
			"outside active time interval follow-the-sun (Europe/Rome, Thu 2026-11-26 04:00 CET; America/New_York, Wed 2026-11-25 22:00 EST)",
		},
		{
			"any active interval is enough", "active_time_intervals: [rome-business-hours, tokyo-business-hours]", "2026-11-25T01:00:00Z", false,
			"active in tokyo-business-hours (Asia/Tokyo, Wed 2026-11-25 10:00 JST)",
		},
		{
			"outside every active interval", "active_time_intervals: [rome-business-hours, tokyo-business-hours]", "2026-11-25T19:00:00Z", true,
			"outside active time intervals rome-business-hours (Europe/Rome, Wed 2026-11-25 20:00 CET), tokyo-business-hours (Asia/Tokyo, Thu 2026-11-26 04:00 JST)",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fields := tc.route
			if !strings.HasPrefix(fields, "{") {
				fields = "{" + fields + "}"
			}
			var child map[string]any
			require.NoError(t, yaml.Unmarshal([]byte(fields), &child))
			child["matchers"] = []string{`severity="critical"`}
			child["receiver"] = "pagerduty"
			b, err := yaml.Marshal(map[string]any{"receiver": "incidents", "routes": []any{child}})
			require.NoError(t, err)
			r := newRouter(t, intervals+"route:\n"+indent(string(b)))

			d := r.Route(map[string]string{"severity": "critical"}, utc(t, tc.at))
			want := []string{"pagerduty"}
			if tc.muted {
				want = []string{}
			}
			require.Equal(t, want, d.Receivers)
			require.Len(t, d.Trace, 2)
			step := d.Trace[1]
			require.True(t, step.Final)
			require.Equal(t, tc.muted, step.Muted)
			require.Contains(t, step.Reason, tc.reason)
			require.Equal(t, tc.muted, strings.HasPrefix(step.Reason, "muted: "), step.Reason)
		})
	}
}

func indent(s string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestNewRouter(t *testing.T) {
	t.Parallel()
	bh := []routing.TimeInterval{{Name: "business-hours"}}
	tests := []struct {
		name      string
		root      *routing.Route
		intervals []routing.TimeInterval
		err       string
	}{
		{name: "nil root", err: "route: no route configured"},
		{name: "root without receiver", root: &routing.Route{}, err: "route: root route must have a receiver"},
		{
			name: "undefined active interval",
			root: &routing.Route{Receiver: "a", Routes: []*routing.Route{{ActiveTimeIntervals: []string{"nights"}}}},
			err:  `route.routes[0]: active_time_intervals: undefined time interval "nights" used in route`,
		},
		{
			name:      "undefined mute interval",
			root:      &routing.Route{Receiver: "a", Routes: []*routing.Route{{}, {MuteTimeIntervals: []string{"business-hours", "holidays"}}}},
			intervals: bh,
			err:       `route.routes[1]: mute_time_intervals: undefined time interval "holidays" used in route`,
		},
		{
			name:      "duplicate interval",
			root:      &routing.Route{Receiver: "a"},
			intervals: append(bh, bh...),
			err:       `time_intervals[1]: duplicate time interval name "business-hours"`,
		},
		{
			name: "empty child",
			root: &routing.Route{Receiver: "a", Routes: []*routing.Route{nil}},
			err:  "route.routes[0]: empty route",
		},
		{
			name: "bad matcher in an unvalidated route",
			root: &routing.Route{Receiver: "a", Routes: []*routing.Route{{Matchers: []string{"a=~("}}}},
			err:  "route.routes[0]: matchers[0]:",
		},
		{
			name:      "valid",
			root:      &routing.Route{Receiver: "a", Routes: []*routing.Route{{ActiveTimeIntervals: []string{"business-hours"}}}},
			intervals: bh,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := routing.NewRouter(tc.root, tc.intervals)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.Nil(t, r)
				return
			}
			require.NoError(t, err)
			require.NotNil(t, r)
		})
	}
}

func TestNewRouter_unvalidatedMatchers(t *testing.T) {
	t.Parallel()
	// Without Validate, ParsedMatchers is empty; the route must not be
	// taken for one without matchers.
	root := &routing.Route{Receiver: "a", Routes: []*routing.Route{{Receiver: "b", Matchers: []string{`x="1"`}}}}
	r, err := routing.NewRouter(root, nil)
	require.NoError(t, err)
	at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	require.Equal(t, []string{"a"}, r.Route(map[string]string{"x": "2"}, at).Receivers)
	require.Equal(t, []string{"b"}, r.Route(map[string]string{"x": "1"}, at).Receivers)

	// The Router keeps its own copy of the tree.
	root.Routes[0].Receiver = "c"
	root.Routes = nil
	require.Equal(t, []string{"b"}, r.Route(map[string]string{"x": "1"}, at).Receivers)
}

func TestRouter_fromConfig(t *testing.T) {
	t.Parallel()
	c, err := config.Load(`
global:
  slack_bot_token: xoxb-test
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
      receiver: pagerduty
      active_time_intervals: [business-hours]
      continue: true
    - receiver: incidents
receivers:
  - name: incidents
    slack_configs: [{ channel: '#incidents' }]
  - name: pagerduty
    pagerduty_configs: [{ routing_key: test-key }]
`)
	require.NoError(t, err)
	r, err := routing.NewRouter(c.Route, c.TimeIntervals)
	require.NoError(t, err)

	tests := []struct {
		name    string
		labels  map[string]string
		at      string
		want    []string
		summary string
	}{
		{"critical in business hours", map[string]string{"severity": "critical"}, "2026-11-25T10:00:00+01:00", []string{"pagerduty", "incidents"}, "receivers: pagerduty, incidents"},
		{"critical at the weekend", map[string]string{"severity": "critical"}, "2026-11-28T22:14:00+01:00", []string{"incidents"}, "receivers: incidents; muted: pagerduty"},
		{"warning", map[string]string{"severity": "warning"}, "2026-11-25T10:00:00+01:00", []string{"incidents"}, "receivers: incidents"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := r.Route(tc.labels, utc(t, tc.at))
			require.Equal(t, tc.want, d.Receivers)
			require.Equal(t, tc.summary, d.Summary())
		})
	}
}

func TestFormatTrace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cont bool
		at   string
		want string
	}{
		{
			name: "paged",
			cont: true,
			at:   "2026-11-25T09:00:00Z",
			want: `pagerduty, incidents
  route [incidents] default route; a child route matched
    route.routes[0] [pagerduty] matched severity="critical"; active in business-hours (Europe/Rome, Wed 2026-11-25 10:00 CET)
    route.routes[1] [incidents] no matchers: matches every alert
`,
		},
		{
			name: "muted",
			at:   "2026-11-28T21:14:00Z",
			want: `none (every matching route is muted)
  route [incidents] default route; a child route matched
    route.routes[0] [pagerduty] muted: outside active time interval business-hours (Europe/Rome, Sat 2026-11-28 22:14 CET); matched severity="critical"
    route.routes[1] [incidents] skipped: route.routes[0] matched without continue
`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRouter(t, fmt.Sprintf(productTree, tc.cont))
			var b bytes.Buffer
			routing.FormatTrace(&b, r.Route(map[string]string{"severity": "critical"}, utc(t, tc.at)))
			require.Equal(t, tc.want, b.String())
		})
	}
}

func TestDecision_Summary(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		d    routing.Decision
		want string
	}{
		{"none", routing.Decision{}, "receivers: none"},
		{"two", routing.Decision{Receivers: []string{"incidents", "pagerduty"}}, "receivers: incidents, pagerduty"},
		{"muted once", routing.Decision{Trace: []routing.Step{
			{Receiver: "pagerduty", Matched: true, Final: true, Muted: true},
			{Receiver: "pagerduty", Matched: true, Final: true, Muted: true},
		}}, "receivers: none; muted: pagerduty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, tc.d.Summary())
		})
	}
}

func TestRouter_Route_longValue(t *testing.T) {
	t.Parallel()
	r := newRouter(t, `route: {receiver: a, routes: [{matchers: ['x="1"'], receiver: b}]}`)
	d := r.Route(map[string]string{"x": strings.Repeat("é", 100)}, time.Unix(0, 0))
	require.Equal(t, `not matched: x="1" (x="`+strings.Repeat("é", 64)+`...")`, d.Trace[1].Reason)
}

func FuzzRoute(f *testing.F) {
	r := newRouter(f, intervals+strings.Replace(matchingTree, "    - receiver: info-sink\n", `    - receiver: info-sink
      continue: true
    - matchers: ['severity="critical"']
      receiver: business-hours-pager
      active_time_intervals: [rome-business-hours, ny-business-hours]
      mute_time_intervals: [rome-holidays]
`, 1))
	configured := []string{"default", "db", "db-pager", "pager", "shop", "slack", "info-sink", "business-hours-pager"}

	f.Add("team", "db", "severity", "critical", "env", "prod", int64(1795597200))
	f.Add("severity", "info", "service", "cart", "", "", int64(0))
	f.Add("severity", "critical", "service", "checkout", "env", "dev", int64(-62135596800))
	f.Add("", "", "", "", "", "", int64(1<<40))
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3 string, sec int64) {
		lset := map[string]string{k1: v1, k2: v2, k3: v3}
		d := r.Route(lset, time.Unix(sec, 0))

		require.NotEmpty(t, d.Trace)
		require.Equal(t, "route", d.Trace[0].Path)
		require.True(t, d.Trace[0].Matched)
		seen := map[string]bool{}
		for _, name := range d.Receivers {
			require.Contains(t, configured, name)
			require.False(t, seen[name], "duplicate receiver %q", name)
			seen[name] = true
			require.True(t, slices.ContainsFunc(d.Trace, func(s routing.Step) bool {
				return s.Receiver == name && s.Final && !s.Muted
			}), "receiver %q without a final unmuted step", name)
		}
		finals := 0
		for _, s := range d.Trace {
			require.NotEmpty(t, s.Reason, s.Path)
			require.Contains(t, configured, s.Receiver)
			if s.Final {
				finals++
				require.True(t, s.Matched, s.Path)
			}
			require.False(t, s.Muted && !s.Final, s.Path)
		}
		require.Positive(t, finals)
		require.NotEmpty(t, d.Summary())
	})
}

// TestRouter_Route_matcherLines checks that a line of a route's matchers is
// read as Alertmanager reads it (config.Matchers: labels.ParseMatchers per
// line): one line may hold several comma-separated matchers, in braces or
// not, and all of them must match.
func TestRouter_Route_matcherLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		line    string
		reason  string // of the child route, for the alert that matches
		nomatch map[string]string
	}{
		{
			name:    "unquoted values",
			line:    `severity=critical,team=db`,
			reason:  `matched severity="critical", team="db"`,
			nomatch: map[string]string{"severity": "critical"},
		},
		{
			name:    "quoted values",
			line:    `severity="critical", team=~"db|web"`,
			reason:  `matched severity="critical", team=~"db|web" (team="db")`,
			nomatch: map[string]string{"severity": "critical", "team": "ops"},
		},
		{
			name:    "braces",
			line:    `{severity="critical",team="db"}`,
			reason:  `matched severity="critical", team="db"`,
			nomatch: map[string]string{"team": "db"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var root routing.Route
			require.NoError(t, yaml.UnmarshalStrict(fmt.Appendf(nil,
				"{receiver: incidents, routes: [{matchers: [%q], receiver: db-pager}]}", tc.line), &root))
			require.NoError(t, root.Validate())
			r, err := routing.NewRouter(&root, nil)
			require.NoError(t, err)
			at := utc(t, "2026-11-25T09:00:00Z")

			d := r.Route(map[string]string{"severity": "critical", "team": "db"}, at)
			require.Equal(t, []string{"db-pager"}, d.Receivers)
			require.Equal(t, tc.reason, d.Trace[1].Reason)
			require.Equal(t, []string{"incidents"}, r.Route(tc.nomatch, at).Receivers)

			// Without Validate, NewRouter reads the line the same way.
			root.ParsedMatchers, root.Routes[0].ParsedMatchers = nil, nil
			r, err = routing.NewRouter(&root, nil)
			require.NoError(t, err)
			require.Equal(t, []string{"db-pager"}, r.Route(map[string]string{"severity": "critical", "team": "db"}, at).Receivers)
		})
	}
}

func TestRoute_Validate_matchers(t *testing.T) {
	t.Parallel()
	for _, line := range []string{``, `{}`, ` `, `a=~"("`, `a="1",b`} {
		r := routing.Route{Receiver: "a", Routes: []*routing.Route{{Matchers: []string{`x="1"`, line}}}}
		require.ErrorContains(t, r.Validate(), "routes[0]: matchers[1]: ", "%q", line)
		_, err := routing.NewRouter(&r, nil)
		require.ErrorContains(t, err, "route.routes[0]: matchers[1]: ", "%q", line)
	}
}

// NextUnmuted finds the minute a muted route's receiver would be chosen:
// Monday 09:00 in Rome for a critical alert routed on Saturday night,
// across a change to summer time; never for an interval that never comes.
func TestRouter_NextUnmuted(t *testing.T) {
	t.Parallel()
	r := newRouter(t, `
time_intervals:
  - name: business-hours
    time_intervals:
      - weekdays: ['monday:friday']
        times: [{ start_time: '09:00', end_time: '18:00' }]
        location: Europe/Rome
  - name: weekends
    time_intervals:
      - weekdays: ['saturday', 'sunday']
  - name: never
    time_intervals:
      - years: ['2000']
route:
  receiver: incidents
  routes:
    - matchers: ['severity="critical"']
      receiver: pager
      active_time_intervals: [business-hours]
      continue: true
    - matchers: ['team="db"']
      receiver: db
      mute_time_intervals: [weekends]
      continue: true
    - matchers: ['team="web"']
      receiver: web
      active_time_intervals: [never]
      continue: true
    - receiver: incidents
`)
	week := 8 * 24 * time.Hour
	for _, tc := range []struct {
		name   string
		labels map[string]string
		from   string
		want   string // "" for none
	}{
		{"weekend to Monday morning", map[string]string{"severity": "critical"}, "2026-11-28T21:00:00Z", "2026-11-30T08:00:00Z"},
		{"into summer time", map[string]string{"severity": "critical"}, "2026-03-28T21:00:00Z", "2026-03-30T07:00:00Z"},
		{"evening to next morning", map[string]string{"severity": "critical"}, "2026-11-25T17:30:00Z", "2026-11-26T08:00:00Z"},
		{"mute interval ends", map[string]string{"team": "db"}, "2026-11-28T12:00:00Z", "2026-11-30T00:00:00Z"},
		{"never", map[string]string{"team": "web"}, "2026-11-28T12:00:00Z", ""},
		{"not muted", map[string]string{"severity": "critical"}, "2026-11-25T10:00:00Z", ""},
		{"no muted route", map[string]string{"severity": "info"}, "2026-11-28T21:00:00Z", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			from := utc(t, tc.from)
			d := r.Route(tc.labels, from)
			next, ok := r.NextUnmuted(d, from, week)
			if tc.want == "" {
				require.False(t, ok, "next %s", next)
				return
			}
			require.True(t, ok)
			require.Equal(t, utc(t, tc.want), next)
			// The decision at that minute chooses a receiver the first did
			// not; a minute before, it does not.
			require.Greater(t, len(r.Route(tc.labels, next).Receivers), len(d.Receivers))
			require.Len(t, r.Route(tc.labels, next.Add(-time.Minute)).Receivers, len(d.Receivers))
		})
	}
}
