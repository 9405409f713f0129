package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/config"
	"github.com/responder/responder/internal/routing"
)

// routesConfig is the route tree the command tests run `routes test` on:
// PagerDuty for critical alerts in business hours, Slack for everything.
const routesConfig = `
global: {slack_bot_token: xoxb-test}
time_intervals:
  - name: business-hours
    time_intervals:
      - weekdays: ['monday:friday']
        times: [{start_time: '09:00', end_time: '18:00'}]
        location: Europe/Rome
route:
  receiver: incidents
  routes:
    - matchers: ['severity="critical"']
      receiver: pagerduty
      active_time_intervals: [business-hours]
      continue: true
    - matchers: ['summary="disk \"data\" full"']
      receiver: storage
      continue: true
    - receiver: incidents
receivers:
  - name: incidents
    slack_configs: [{channel: '#incidents'}]
  - name: storage
  - name: pagerduty
    pagerduty_configs: [{routing_key: 0123456789abcdef0123456789abcdef}]
`

// TestRoutesTest_labels checks that `routes test` reads its label=value
// arguments as amtool config routes test does: as matchers that must be
// equalities, with Alertmanager's quoting and escaping.
func TestRoutesTest_labels(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "routes.yml")
	require.NoError(t, os.WriteFile(file, []byte(routesConfig), 0o600))
	at := "--time=2026-11-25T10:00:00+01:00"

	tests := []struct {
		name   string
		labels []string
		code   int
		first  string // the first line of stdout
		stderr string
	}{
		{"unquoted", []string{"severity=critical"}, 0, "pagerduty, incidents", ""},
		{"quoted", []string{`severity="critical"`}, 0, "pagerduty, incidents", ""},
		{"escaped quotes", []string{`summary="disk \"data\" full"`}, 0, "storage, incidents", ""},
		{"value with an equals sign", []string{"url=http://x/?a=b"}, 0, "incidents", ""},
		{"negative matcher is not a label", []string{"severity!=critical"}, 2, "", "severity!=critical"},
		{"regex matcher is not a label", []string{`severity=~"crit.*"`}, 2, "", "name=value"},
		{"invalid label name", []string{"1severity=critical"}, 2, "", "name=value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"routes", "test", "--config.file=" + file, at}, tc.labels...), &stdout, &stderr)
			require.Equal(t, tc.code, code, "stdout: %s\nstderr: %s", stdout.String(), stderr.String())
			if tc.first != "" {
				first, _, _ := bytes.Cut(stdout.Bytes(), []byte("\n"))
				require.Equal(t, tc.first, string(first))
			}
			require.Contains(t, stderr.String(), tc.stderr)
		})
	}
}

// TestRoutesTest_matchesRouter checks that `routes test` prints what the
// router decides for the same labels at the same instant, around the end of
// business hours and across both DST changes of Europe/Rome.
func TestRoutesTest_matchesRouter(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "routes.yml")
	require.NoError(t, os.WriteFile(file, []byte(routesConfig), 0o600))
	cfg, err := config.LoadFile(file)
	require.NoError(t, err)
	r, err := routing.NewRouter(cfg.Route, cfg.TimeIntervals)
	require.NoError(t, err)

	for _, at := range []string{
		"2026-11-27T17:59:00+01:00", "2026-11-27T18:00:00+01:00", "2026-11-27T16:59:00Z",
		"2026-03-27T08:30:00Z", "2026-03-30T07:30:00Z", "2026-10-23T15:59:00Z", "2026-10-26T07:30:00Z",
	} {
		var stdout, stderr bytes.Buffer
		require.Equal(t, 0, run([]string{"routes", "test", "--config.file=" + file, "--time=" + at, "severity=critical"}, &stdout, &stderr), stderr.String())
		when, err := time.Parse(time.RFC3339, at)
		require.NoError(t, err)
		var want bytes.Buffer
		routing.FormatTrace(&want, r.Route(map[string]string{"severity": "critical"}, when))
		require.Equal(t, want.String(), stdout.String(), at)
	}
}
