package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/remediation"
	"github.com/responder/responder/internal/routing"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/webhook"
)

func TestLoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file    string
		wantErr string // "" means the file is valid
	}{
		{file: "good-full"},
		{file: "good-minimal"},
		{file: "good-context"},
		{file: "good-no-route"},
		{file: "good-null-sections"},
		{file: "good-file-secrets"},
		{file: "good-storm"},
		{file: "storm-bad-threshold", wantErr: "storm: threshold must be at least 1"},
		{file: "reconcile-bad-interval", wantErr: "reconcile: interval must be positive"},
		{file: "reconcile-zero-grace", wantErr: "reconcile: grace must be positive"},
		{file: "empty", wantErr: "config is empty"},
		{file: "unknown-top-key", wantErr: "line 1: field routes not found"},
		{file: "unknown-nested-key", wantErr: "receivers: line 9: field chanel not found"},
		{file: "duplicate-key", wantErr: `route: line 3: field receiver already set`},
		{file: "undefined-receiver", wantErr: `route.routes[0]: undefined receiver "x" used in route`},
		{file: "undefined-time-interval", wantErr: `route.routes[0]: undefined time interval "business-hours" used in route`},
		{file: "duplicate-receiver", wantErr: `receivers[1]: duplicate receiver name "a"`},
		{file: "duplicate-time-interval", wantErr: `time_intervals[1]: duplicate time interval name "x"`},
		{file: "time-interval-no-name", wantErr: "time_intervals[0]: name is required"},
		{file: "bad-location", wantErr: "time_intervals: unknown time zone Mars/Olympus_Mons"},
		{file: "bad-time-range", wantErr: "time_intervals: start time cannot be equal or greater than end time"},
		{file: "root-no-receiver", wantErr: "route: root route must have a receiver"},
		{file: "root-matchers", wantErr: "route: root route must not have matchers"},
		{file: "root-continue", wantErr: "route: root route must not have continue"},
		{file: "root-time-intervals", wantErr: "route: root route must not have active_time_intervals or mute_time_intervals"},
		{file: "receivers-without-route", wantErr: "route: route is required when receivers are configured"},
		{file: "receiver-no-name", wantErr: "receivers[1]: name is required"},
		{file: "bad-matcher", wantErr: "route: routes[1]: matchers[0]: bad matcher format: severity"},
		{file: "bad-group-by", wantErr: `route: group_by: invalid label name "not-a-label"`},
		{file: "slack-no-channel", wantErr: "receivers[1]: slack_configs[0]: channel is required"},
		{file: "slack-bad-template", wantErr: "receivers[0]: slack_configs[0]: text: parse template:"},
		{file: "slack-no-token", wantErr: "global: slack_configs need slack_bot_token or slack_bot_token_file"},
		{file: "pagerduty-both-keys", wantErr: "receivers[0]: pagerduty_configs[0]: at most one of routing_key and routing_key_file may be configured"},
		{file: "pagerduty-no-key", wantErr: "receivers[0]: pagerduty_configs[0]: one of routing_key and routing_key_file is required"},
		{file: "pagerduty-bad-severity", wantErr: `receivers[0]: pagerduty_configs[0]: severity: "urgent" is not one of critical, error, warning, info`},
		{file: "global-bot-token-both", wantErr: "global: at most one of slack_bot_token and slack_bot_token_file may be configured"},
		{file: "global-signing-secret-both", wantErr: "global: at most one of slack_signing_secret and slack_signing_secret_file may be configured"},
		{file: "global-bad-url", wantErr: "global: prometheus_url: invalid URL: scheme must be http or https"},
		{file: "global-not-http", wantErr: "global: alertmanager_url: invalid URL: scheme must be http or https"},
		{file: "webhook-both", wantErr: "webhook: at most one of authorization and basic_auth may be configured"},
		{file: "webhook-credentials-both", wantErr: "webhook: authorization: at most one of credentials and credentials_file may be configured"},
		{file: "storage-bad-dsn", wantErr: `storage: dsn: unsupported scheme "mysql"`},
		{file: "remediation-zero-concurrency", wantErr: "remediation: max_concurrent must be at least 1"},
		{file: "remediation-bad-label", wantErr: `remediation: opt_in_label: invalid label name "auto-remediation"`},
		{file: "remediation-bad-namespace", wantErr: `remediation: allowed_namespaces[1]: invalid namespace "Payments"`},
		{file: "remediation-bad-approver", wantErr: `remediation: approvers[0]: "@alice" is not a Slack user ID`},
		{file: "approvers-without-signing-secret", wantErr: "remediation: approvers need global.slack_signing_secret"},
		{file: "context-timeout-over-budget", wantErr: "context: timeout (5s) must not exceed budget (2s)"},
		{file: "context-bad-redact", wantErr: "context: logs: redact[0]: error parsing regexp"},
		{file: "context-duplicate-query", wantErr: `context: promql: queries[1]: duplicate name "up"`},
		{file: "context-loki-no-url", wantErr: "context: logs: loki: url: is required"},
		{file: "context-query-unquoted", wantErr: `context: promql: queries[1]: query:1:28: {{.Labels.window}} is outside a string literal`},
		{file: "context-loki-unquoted", wantErr: `context: logs: loki: query:1:12: {{.CommonLabels.service}} is outside a string literal`},
		{file: "context-pod-logs-without-kubernetes", wantErr: "context: logs: kubernetes: needs context.kubernetes"},
		{file: "context-bad-pod-log-filter", wantErr: "context: logs: kubernetes: filter: error parsing regexp"},
		{file: "context-max-lines", wantErr: "context: logs: max_lines must be between 1 and 20"},
		{file: "context-negative-step", wantErr: "context: promql: step must not be negative"},
		{file: "wrong-type", wantErr: "remediation: line 2: cannot unmarshal !!str into int"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen["conf."+tt.file+".yml"] = true
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			text, err := os.ReadFile(filepath.Join("testdata", "conf."+tt.file+".yml"))
			require.NoError(t, err)
			cfg, err := Load(string(text))
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.NotNil(t, cfg.Route)
				require.Empty(t, cfg.File())
				require.Equal(t, string(text), cfg.Original())
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			require.Nil(t, cfg)
		})
	}
	t.Run("every testdata file has a case", func(t *testing.T) {
		files, err := filepath.Glob(filepath.Join("testdata", "conf.*.yml"))
		require.NoError(t, err)
		for _, f := range files {
			require.True(t, seen[filepath.Base(f)], "no test case for %s", f)
		}
	})
}

func TestLoad_text(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		text    string
		wantErr string
	}{
		{name: "empty string", text: "", wantErr: "config is empty"},
		{name: "only whitespace", text: " \n\t\n", wantErr: "config is empty"},
		{name: "empty mapping", text: "{}", wantErr: "config is empty"},
		{name: "null sections only", text: "route:\nreceivers:\n", wantErr: "config sets nothing: route, receivers have no keys"},
		{name: "one null section", text: "# commented out:\nstorage:\n#  dsn: postgres://db/responder\n", wantErr: "config sets nothing: storage has no keys"},
		{name: "not a mapping", text: "- a\n- b\n", wantErr: "cannot unmarshal !!seq"},
		{name: "a second document", text: "storage: {dsn: 'sqlite://a.db'}\n---\nremediation: {max_concurrent: 0}\n", wantErr: "config holds more than one YAML document (separated by ---): responder reads one YAML document; merge them into one"},
		{name: "an empty document first", text: "---\n# nothing yet\n---\nstorage: {dsn: 'sqlite://a.db'}\n", wantErr: "config holds more than one YAML document"},
		{name: "a broken second document", text: "storage: {dsn: 'sqlite://a.db'}\n---\nroute: [\n", wantErr: "config holds more than one YAML document"},
		{name: "a second document after a first marker", text: "---\nstorage: {dsn: 'sqlite://a.db'}\n---\n# remediation: {max_concurrent: 0}\nstorm: {}\n", wantErr: "config holds more than one YAML document"},
		{name: "syntax error", text: "route: [\n", wantErr: "yaml:"},
		{name: "unknown key in a time interval", text: "time_intervals:\n- name: x\n  time_intervals: [{weekday: [monday]}]\n", wantErr: "time_intervals: line 3: field weekday not found"},
		{name: "unknown key in a nested route", text: "route:\n  receiver: a\n  routes:\n  - receiver: a\n    match: {a: b}\nreceivers: [{name: a}]\n", wantErr: "route: line 5: field match not found: it is Alertmanager's deprecated form of matchers; write matchers: ['a=\"...\"'], with the values of match"},
		{name: "Alertmanager's match_re names its labels", text: "route:\n  receiver: a\n  routes:\n  - match_re:\n      severity: crit.*\n      team: db\nreceivers: [{name: a}]\n", wantErr: "route: line 4: field match_re not found: it is Alertmanager's deprecated form of matchers; write matchers: ['severity=~\"...\"', 'team=~\"...\"'], with the values of match_re"},
		{name: "Alertmanager's match with a key that is no label name", text: "route:\n  receiver: a\n  routes:\n  - match: {'a b': c}\nreceivers: [{name: a}]\n", wantErr: "route: line 4: field match not found: it is Alertmanager's deprecated form of matchers; write matchers: ['name=\"value\"']"},
		{name: "Alertmanager's match that is no mapping", text: "route:\n  receiver: a\n  routes:\n  - match: severity\nreceivers: [{name: a}]\n", wantErr: "route: line 4: field match not found: it is Alertmanager's deprecated form of matchers; write matchers: ['name=\"value\"']"},
		{name: "Alertmanager's Slack username", text: "route: {receiver: a}\nreceivers:\n- name: a\n  slack_configs:\n  - channel: '#a'\n    username: alertmanager\n", wantErr: "receivers: line 6: field username not found: responder posts as its Slack app's bot user, with the app's name and icon: change them in the Slack app"},
		{name: "Alertmanager's Slack http_config", text: "route: {receiver: a}\nreceivers:\n- name: a\n  slack_configs: [{channel: '#a', http_config: {proxy_url: 'http://p'}}]\n", wantErr: "receivers: line 4: field http_config not found: responder has no http_config for Slack: the bot token is global.slack_bot_token_file, and a proxy comes from the HTTPS_PROXY environment variable"},
		{name: "Alertmanager's PagerDuty source", text: "route: {receiver: a}\nreceivers:\n- name: a\n  pagerduty_configs:\n  - routing_key: k\n    source: '{{ .CommonLabels.instance }}'\n", wantErr: "receivers: line 6: field source not found: responder takes it from the first of the labels instance, service, job, host, pod, container, namespace, cluster"},
		{name: "Alertmanager's PagerDuty http_config", text: "route: {receiver: a}\nreceivers:\n- name: a\n  pagerduty_configs: [{routing_key: k, http_config: {}}]\n", wantErr: "receivers: line 4: field http_config not found: responder has no http_config for PagerDuty: the key is routing_key or routing_key_file, and a proxy comes from the HTTPS_PROXY environment variable"},
		{name: "Alertmanager's group timing in a route", text: "route:\n  receiver: a\n  group_by: [alertname]\n  group_wait: 30s\nreceivers: [{name: a}]\n", wantErr: "route: line 4: field group_wait not found: Alertmanager's grouping timing; responder takes each group as Alertmanager sends it, so set it in alertmanager.yml"},
		{name: "Alertmanager's webhook receiver", text: "route: {receiver: a}\nreceivers:\n- name: a\n  webhook_configs: [{url: 'http://x'}]\n", wantErr: "receivers: line 4: field webhook_configs not found: responder sends to Slack and PagerDuty; keep this receiver in alertmanager.yml"},
		{name: "Alertmanager's PagerDuty v1 key", text: "route: {receiver: a}\nreceivers:\n- name: a\n  pagerduty_configs: [{service_key: k}]\n", wantErr: "receivers: line 4: field service_key not found: it is PagerDuty's Events API v1 key; responder sends Events API v2: set routing_key or routing_key_file"},
		{name: "Alertmanager's global smtp settings", text: "global:\n  smtp_smarthost: 'mail:25'\n", wantErr: "global: line 2: field smtp_smarthost not found: a setting of Alertmanager's smtp receivers; responder sends to Slack and PagerDuty; keep this receiver in alertmanager.yml"},
		{name: "Alertmanager's global resolve_timeout", text: "global:\n  resolve_timeout: 5m\n", wantErr: "global: line 2: field resolve_timeout not found: Alertmanager's; responder learns"},
		{name: "a Slack incoming webhook as slack_api_url", text: "global:\n  slack_api_url: https://hooks.slack.com/services/T0/B0/s3cr3t\n", wantErr: "global: slack_api_url: an incoming webhook (hooks.slack.com) is Alertmanager's kind of Slack URL"},
		{name: "Alertmanager's top-level mute_time_intervals", text: "mute_time_intervals: []\nroute: {receiver: a}\nreceivers: [{name: a}]\n", wantErr: "line 1: field mute_time_intervals not found: it is Alertmanager's older name for time_intervals"},
		{name: "unknown key in a queue", text: "storage:\n  queue: {worker: 1}\n", wantErr: "storage: line 2: field worker not found"},
		{name: "retention below a week", text: "storage:\n  retention: 3d\n", wantErr: "storage: retention must be 0 (keep everything) or at least 7d"},
		{name: "retention not a duration", text: "storage:\n  retention: forever\n", wantErr: `not a valid duration string: "forever"`},
		{name: "unknown key in basic_auth", text: "webhook:\n  basic_auth: {username: u, password: p, pasword: q}\n", wantErr: "webhook: line 2: field pasword not found"},
		{name: "unknown key in context logs", text: "context:\n  logs:\n    loki: {url: 'http://l', query: q, limit: 5}\n", wantErr: "context: line 3: field limit not found"},
		{name: "unknown key in remediation", text: "remediation:\n  dryrun: false\n", wantErr: "remediation: line 2: field dryrun not found"},
		{name: "null route with receivers", text: "route:\nreceivers: [{name: a}]\n", wantErr: "route is required when receivers are configured"},
		{name: "null child route", text: "route:\n  receiver: a\n  routes: [~]\nreceivers: [{name: a}]\n", wantErr: "route: routes[0]: empty route"},
		{name: "deep undefined receiver", text: "route:\n  receiver: a\n  routes:\n  - routes:\n    - routes:\n      - receiver: b\nreceivers: [{name: a}]\n", wantErr: `route.routes[0].routes[0].routes[0]: undefined receiver "b" used in route`},
		{name: "route to undefined console", text: "route: {receiver: console}\n", wantErr: `route: undefined receiver "console" used in route`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(tt.text)
			require.ErrorContains(t, err, tt.wantErr)
			require.Nil(t, cfg)
		})
	}
}

// TestLoad_documentMarkers checks that the markers of a single YAML
// document are allowed: only a second document is refused.
func TestLoad_documentMarkers(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"start marker":        "---\nstorm: {threshold: 5}\n",
		"end marker":          "storm: {threshold: 5}\n...\n",
		"final start marker":  "storm: {threshold: 5}\n---\n",
		"then only a comment": "storm: {threshold: 5}\n---\n# nothing but a comment\n",
	}
	for name, text := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(text)
			require.NoError(t, err)
			require.Equal(t, 5, c.Storm.Threshold)
		})
	}
}

func TestLoad_everyProblemOnItsOwnLine(t *testing.T) {
	t.Parallel()
	_, err := Load(`
global: {prometheus_url: nope}
remediation: {max_concurrent: -1}
route:
  receiver: x
  routes: [{receiver: y}]
receivers: [{name: a}, {name: a}]
`)
	require.Error(t, err)
	got := strings.Split(err.Error(), "\n")
	want := []string{
		"global: prometheus_url: invalid URL: scheme must be http or https",
		"remediation: max_concurrent must be at least 1",
	}
	require.Equal(t, want, got, "section errors come first, alone")

	_, err = Load(`
route:
  receiver: x
  routes: [{receiver: y}]
receivers: [{name: a}, {name: a}]
`)
	require.Error(t, err)
	got = strings.Split(err.Error(), "\n")
	want = []string{
		`receivers[1]: duplicate receiver name "a"`,
		`route: undefined receiver "x" used in route`,
		`route.routes[0]: undefined receiver "y" used in route`,
	}
	require.Equal(t, want, got)

	// Each section's errors are its own: a later section's errors used to
	// overwrite an earlier one's (they shared the decoder's storage), and
	// an unknown top-level key hid every section's.
	_, err = Load(`
storage:
  queue: {workerz: 1}
webhook:
  max_body_sizes: 1
remediation:
  max_concurrent: many
routez: {}
`)
	require.Error(t, err)
	got = strings.Split(err.Error(), "\n")
	want = []string{
		"line 8: field routez not found: did you mean route",
		"storage: line 3: field workerz not found: did you mean storage.queue.workers",
		"webhook: line 5: field max_body_sizes not found: did you mean webhook.max_body_size",
		"remediation: line 7: cannot unmarshal !!str into int",
	}
	require.Equal(t, want, got)
}

func TestLoad_defaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		text  string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "absent sections",
			text: "route: {receiver: a}\nreceivers: [{name: a}]\n",
			check: func(t *testing.T, c *Config) {
				require.Equal(t, DefaultSlackAPIURL, c.Global.SlackAPIURL)
				require.Equal(t, DefaultPagerDutyEventsURL, c.Global.PagerDutyEventsURL)
				require.Equal(t, store.DefaultDSN, c.Storage.DSN)
				require.Equal(t, store.DefaultQueueConfig, c.Storage.Queue)
				require.Equal(t, webhook.DefaultMaxBodySize, c.Webhook.MaxBodySize)
				require.False(t, c.Webhook.Enabled())
				require.Equal(t, remediation.DefaultConfig(), c.Remediation)
				require.Equal(t, 10*time.Second, c.Context.Budget)
				require.Equal(t, 5*time.Second, c.Context.Timeout)
				require.Equal(t, 6*time.Hour, c.Context.Deployments.Lookback)
				require.Equal(t, time.Hour, c.Context.PromQL.Range)
				require.Equal(t, time.Minute, c.Context.PromQL.Step)
			},
		},
		{
			name: "remediation defaults are safe",
			text: "route: {receiver: a}\nreceivers: [{name: a}]\n",
			check: func(t *testing.T, c *Config) {
				r := c.Remediation
				require.True(t, r.Enabled)
				require.True(t, r.DryRun)
				require.Equal(t, "auto_remediation", r.OptInLabel)
				require.Equal(t, "enabled", r.OptInValue)
				require.Equal(t, "runbooks/", r.RunbooksDir)
				require.Empty(t, r.KillSwitchFile)
				require.Equal(t, 2, r.MaxConcurrent)
				require.Equal(t, 20, r.StormThreshold)
			},
		},
		{
			name: "explicit dry_run false is honoured",
			text: "remediation: {dry_run: false}\n",
			check: func(t *testing.T, c *Config) {
				require.True(t, c.Remediation.Enabled)
				require.False(t, c.Remediation.DryRun)
				require.Equal(t, 2, c.Remediation.MaxConcurrent)
			},
		},
		{
			name: "explicit enabled false is honoured",
			text: "remediation: {enabled: false}\n",
			check: func(t *testing.T, c *Config) {
				require.False(t, c.Remediation.Enabled)
				require.True(t, c.Remediation.DryRun)
			},
		},
		{
			name: "null remediation gets the defaults",
			text: "remediation:\nstorage: {dsn: 'sqlite:///x.db'}\n",
			check: func(t *testing.T, c *Config) {
				require.Equal(t, remediation.DefaultConfig(), c.Remediation)
			},
		},
		{
			name: "null context subsections get the defaults",
			text: "context:\n  deployments:\n  promql:\n",
			check: func(t *testing.T, c *Config) {
				require.Equal(t, 6*time.Hour, c.Context.Deployments.Lookback)
				require.Equal(t, time.Hour, c.Context.PromQL.Range)
				require.Equal(t, time.Minute, c.Context.PromQL.Step)
			},
		},
		{
			name: "no route and no receivers go to the console",
			text: "remediation: {}\n",
			check: func(t *testing.T, c *Config) {
				require.Equal(t, ConsoleReceiver, c.Route.Receiver)
				require.Len(t, c.Receivers, 1)
				require.Equal(t, ConsoleReceiver, c.Receivers[0].Name)
			},
		},
		{
			name: "slack_api_url gets its trailing slash",
			text: "global: {slack_api_url: 'http://127.0.0.1:1234/api'}\n",
			check: func(t *testing.T, c *Config) {
				require.Equal(t, "http://127.0.0.1:1234/api/", c.Global.SlackAPIURL)
			},
		},
		{
			name: "pagerduty_events_url loses its trailing slash",
			text: "global: {pagerduty_events_url: 'https://events.eu.pagerduty.com/'}\n",
			check: func(t *testing.T, c *Config) {
				require.Equal(t, "https://events.eu.pagerduty.com", c.Global.PagerDutyEventsURL)
			},
		},
		{
			name: "send_resolved defaults to true and false is honoured",
			text: `
global: {slack_bot_token: t}
route: {receiver: a}
receivers:
- name: a
  slack_configs: [{channel: '#a'}, {channel: '#b', send_resolved: false}]
  pagerduty_configs: [{routing_key: k}, {routing_key: k, send_resolved: false}]
`,
			check: func(t *testing.T, c *Config) {
				r := c.Receivers[0]
				require.True(t, r.SlackConfigs[0].SendResolved)
				require.False(t, r.SlackConfigs[1].SendResolved)
				require.True(t, r.PagerDutyConfigs[0].SendResolved)
				require.False(t, r.PagerDutyConfigs[1].SendResolved)
			},
		},
		{
			name: "matchers are parsed",
			text: `
route:
  receiver: a
  routes: [{matchers: ['severity="critical"', 'team=~"a|b"'], receiver: a}]
receivers: [{name: a}]
`,
			check: func(t *testing.T, c *Config) {
				m := c.Route.Routes[0].ParsedMatchers
				require.Len(t, m, 2)
				require.Equal(t, `severity="critical"`, m[0].String())
				require.Equal(t, `team=~"a|b"`, m[1].String())
				require.True(t, m[1].Matches("b"))
			},
		},
		{
			name: "time intervals keep their location",
			text: `
time_intervals:
- name: business-hours
  time_intervals: [{weekdays: ['monday:friday'], times: [{start_time: '09:00', end_time: '18:00'}], location: Europe/Rome}]
route: {receiver: a, routes: [{receiver: a, active_time_intervals: [business-hours]}]}
receivers: [{name: a}]
`,
			check: func(t *testing.T, c *Config) {
				ti := c.TimeIntervals[0].TimeIntervals[0]
				require.Equal(t, "Europe/Rome", ti.Location.String())
				rome, err := time.LoadLocation("Europe/Rome")
				require.NoError(t, err)
				require.True(t, ti.ContainsTime(time.Date(2025, 6, 2, 9, 30, 0, 0, rome)), "Monday 09:30 in Rome")
				require.False(t, ti.ContainsTime(time.Date(2025, 6, 2, 6, 30, 0, 0, time.UTC)), "Monday 08:30 in Rome")
				require.False(t, ti.ContainsTime(time.Date(2025, 6, 7, 10, 0, 0, 0, rome)), "Saturday")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(tt.text)
			require.NoError(t, err)
			tt.check(t, c)
		})
	}
}

func TestLoad_secretExclusivity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		text    string
		wantErr string
	}{
		{
			name:    "slack bot token",
			text:    "global: {slack_bot_token: s3cr3t-value, slack_bot_token_file: /f}\n",
			wantErr: "at most one of slack_bot_token and slack_bot_token_file may be configured",
		},
		{
			name:    "slack signing secret",
			text:    "global: {slack_signing_secret: s3cr3t-value, slack_signing_secret_file: /f}\n",
			wantErr: "at most one of slack_signing_secret and slack_signing_secret_file may be configured",
		},
		{
			name:    "webhook credentials",
			text:    "webhook: {authorization: {credentials: s3cr3t-value, credentials_file: /f}}\n",
			wantErr: "at most one of credentials and credentials_file may be configured",
		},
		{
			name:    "webhook password",
			text:    "webhook: {basic_auth: {username: u, password: s3cr3t-value, password_file: /f}}\n",
			wantErr: "at most one of password and password_file may be configured",
		},
		{
			name:    "pagerduty routing key",
			text:    "route: {receiver: a}\nreceivers: [{name: a, pagerduty_configs: [{routing_key: s3cr3t-value, routing_key_file: /f}]}]\n",
			wantErr: "at most one of routing_key and routing_key_file may be configured",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(tt.text)
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), "s3cr3t")
		})
	}
}

// secretText has an inline value for every secret.
//
//nolint:gosec // G101: made-up test secrets whose redaction the tests check.
const secretText = `
global:
  slack_bot_token: xoxb-s3cr3t-bot
  slack_signing_secret: s3cr3t-signing
  prometheus_url: http://user:s3cr3t-url@prometheus:9090
storage:
  dsn: postgres://responder:s3cr3t-dsn@db/responder
webhook:
  authorization: {credentials: s3cr3t-bearer}
route: {receiver: a}
receivers:
- name: a
  slack_configs: [{channel: '#a'}]
  pagerduty_configs: [{routing_key: s3cr3t-routing-key}]
context:
  logs:
    loki: {url: 'http://u:s3cr3t-loki@loki:3100', query: '{job="x"}'}
`

func TestLoad_secretsNeverPrinted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
	}{
		{name: "error elsewhere", text: secretText + "remediation: {max_concurrent: 0}\n"},
		{name: "cross-check error", text: secretText + "time_intervals: [{name: x}, {name: x}]\n"},
		{name: "unknown key", text: secretText + "remediation: {dryrun: true}\n"},
		{name: "secret in a field of the wrong type", text: secretText + "remediation: {max_concurrent: s3cr3t-wrong-place}\n"},
		{name: "secret in a list of the wrong type", text: strings.Replace(secretText, "receivers:\n", "receivers:\n- s3cr3t-in-list\n", 1)},
		{name: "Alertmanager's receiver and route", text: "route:\n  receiver: a\n  routes: [{match: {team: s3cr3t-match}, match_re: {env: s3cr3t-re}}]\nreceivers:\n- name: a\n" +
			"  slack_configs: [{channel: '#a', api_url: 'https://hooks.slack.com/services/s3cr3t', username: s3cr3t-user, http_config: {authorization: {credentials: s3cr3t-bot}}}]\n" +
			"  pagerduty_configs: [{service_key: s3cr3t-v1, url: 'http://u:s3cr3t@pd', details: {k: s3cr3t-detail}}]\n"},
		{name: "unparsable URL", text: "global: {prometheus_url: 'http://u:s3cr3t/x@prometheus/'}\n"},
		{name: "unparsable proxy URL", text: "context: {promql: {http_config: {proxy_url: 'http://u:s3cr3t-proxy@[::1'}}}\n"},
		{name: "unparsable proxy URL of loki", text: "context:\n  logs:\n    loki:\n      url: http://loki:3100\n      query: '{job=\"x\"}'\n" +
			"      http_config: {proxy_url: 'http://u:s3cr3t/proxy@host/'}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(tt.text)
			require.Error(t, err)
			require.NotContains(t, err.Error(), "s3cr3t")
			require.NotContains(t, err.Error(), "http://")
		})
	}
	t.Run("String", func(t *testing.T) {
		t.Parallel()
		c, err := Load(secretText)
		require.NoError(t, err)
		got := c.String()
		require.NotContains(t, got, "s3cr3t")
		require.Contains(t, got, "slack_bot_token: <secret>")
		require.Contains(t, got, "routing_key: <secret>")
		require.Equal(t, incident.Secret("xoxb-s3cr3t-bot"), c.Global.SlackBotToken, "String leaves the config alone")
		require.Equal(t, "http://user:s3cr3t-url@prometheus:9090", c.Global.PrometheusURL)
		require.Equal(t, "postgres://responder:s3cr3t-dsn@db/responder", c.Storage.DSN)
	})
	t.Run("String, secrets in query parameters", func(t *testing.T) {
		t.Parallel()
		c, err := Load("storage: {dsn: 'postgres://responder@db/responder?sslmode=require&password=s3cr3t-q&sslpassword=s3cr3t-ssl'}\n" +
			"global: {prometheus_url: 'http://prometheus:9090/?access_token=s3cr3t-token&x=1'}\n")
		require.NoError(t, err)
		got := c.String()
		require.NotContains(t, got, "s3cr3t")
		require.Contains(t, got, "sslmode=require")
		require.Contains(t, got, "x=1")
		_, err = Load(got)
		require.NoError(t, err, "the printed config loads")
	})
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o750))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	write("secrets/slack-token", "xoxb-from-file\n")
	write("secrets/webhook-token", "bearer-from-file")
	write("pd-key", "pd-from-file\n\n")
	abs := write("abs/signing", "signing-from-file\r\n")
	path := write("conf.yml", `
global:
  slack_bot_token_file: secrets/slack-token
  slack_signing_secret_file: `+abs+`
storage: {dsn: 'sqlite://data/responder.db'}
webhook:
  authorization: {credentials_file: secrets/webhook-token}
route: {receiver: pd}
receivers:
- name: pd
  pagerduty_configs: [{routing_key_file: pd-key}]
- name: slack
  slack_configs: [{channel: '#x'}]
remediation:
  runbooks_dir: runbooks/
  kill_switch_file: stop
  kubeconfig_file: kube/config
context:
  kubernetes: {kubeconfig: kube/context-config}
  promql:
    http_config: {authorization: {credentials_file: secrets/prom-token}, tls_config: {ca_file: ca.pem}}
  logs:
    loki:
      url: http://loki.example:3100
      query: '{app="x"}'
      http_config: {basic_auth: {username: u, password_file: secrets/loki}}
    elasticsearch:
      url: http://es.example:9200
      index: logs-*
      query: 'level:error'
      http_config: {bearer_token_file: `+abs+`}
`)
	c, err := LoadFile(path)
	require.NoError(t, err)
	require.Equal(t, path, c.File())

	t.Run("relative paths are resolved against the file", func(t *testing.T) {
		require.Equal(t, "sqlite://"+filepath.Join(dir, "data/responder.db"), c.Storage.DSN)
		require.Equal(t, filepath.Join(dir, "secrets/slack-token"), c.Global.SlackBotTokenFile)
		require.Equal(t, filepath.Join(dir, "secrets/webhook-token"), c.Webhook.Authorization.CredentialsFile)
		require.Equal(t, filepath.Join(dir, "pd-key"), c.Receivers[0].PagerDutyConfigs[0].RoutingKeyFile)
		require.Equal(t, filepath.Join(dir, "runbooks"), c.Remediation.RunbooksDir)
		require.Equal(t, filepath.Join(dir, "stop"), c.Remediation.KillSwitchFile)
		require.Equal(t, filepath.Join(dir, "kube/config"), c.Remediation.KubeconfigFile)
		require.Equal(t, filepath.Join(dir, "kube/context-config"), c.Context.Kubernetes.Kubeconfig)
		require.Equal(t, filepath.Join(dir, "secrets/prom-token"), c.Context.PromQL.HTTPConfig.Authorization.CredentialsFile)
		require.Equal(t, filepath.Join(dir, "ca.pem"), c.Context.PromQL.HTTPConfig.TLSConfig.CAFile)
		require.Equal(t, filepath.Join(dir, "secrets/loki"), c.Context.Logs.Loki.HTTPConfig.BasicAuth.PasswordFile)
	})
	t.Run("absolute paths are kept", func(t *testing.T) {
		require.Equal(t, abs, c.Global.SlackSigningSecretFile)
		require.Equal(t, abs, c.Context.Logs.Elasticsearch.HTTPConfig.Authorization.CredentialsFile, "bearer_token_file is read as authorization.credentials_file")
	})
	t.Run("secret files are read, surrounding white space trimmed", func(t *testing.T) {
		require.Equal(t, "xoxb-from-file", c.Global.SlackBotToken.Value())
		require.Equal(t, "signing-from-file", c.Global.SlackSigningSecret.Value())
		require.Equal(t, "bearer-from-file", c.Webhook.Authorization.Credentials.Value())
		require.Equal(t, "pd-from-file", c.Receivers[0].PagerDutyConfigs[0].RoutingKey.Value(), "as Alertmanager reads it")
	})
	t.Run("String prints the files, not their secrets, and loads again", func(t *testing.T) {
		s := c.String()
		require.NotContains(t, s, "from-file")
		require.NotContains(t, s, "<secret>")
		_, err := Load(s)
		require.NoError(t, err)
	})
	t.Run("postgres and absolute sqlite DSNs are kept", func(t *testing.T) {
		for _, dsn := range []string{"postgres://db/responder", "sqlite:///var/lib/responder.db", "sqlite://:memory:"} {
			p := write("dsn.yml", "storage: {dsn: '"+dsn+"'}\n")
			c, err := LoadFile(p)
			require.NoError(t, err)
			require.Equal(t, dsn, c.Storage.DSN)
		}
	})
}

func TestLoadFile_errors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	write("empty-secret", "\n")
	write("blank-secret", " \r\n\n")
	write("two-lines", "token\n# the staging token\n")
	tests := []struct {
		name    string
		path    string
		want    []string // each line of the error, in order
		wantErr string   // or a substring of the error
	}{
		{
			name:    "missing file",
			path:    filepath.Join(dir, "nope.yml"),
			wantErr: "read config file: open " + filepath.Join(dir, "nope.yml"),
		},
		{
			name: "every line names the file",
			path: write("two.yml", "global: {prometheus_url: x}\nremediation: {max_concurrent: 0}\n"),
			want: []string{
				filepath.Join(dir, "two.yml") + ": global: prometheus_url: invalid URL: scheme must be http or https",
				filepath.Join(dir, "two.yml") + ": remediation: max_concurrent must be at least 1",
			},
		},
		{
			name:    "missing secret file",
			path:    write("missing.yml", "global: {slack_bot_token_file: missing-token}\n"),
			wantErr: filepath.Join(dir, "missing.yml") + ": global: slack_bot_token_file: read secret: open " + filepath.Join(dir, "missing-token"),
		},
		{
			// Read to its end, /dev/zero would never be.
			name:    "a secret file that is not one",
			path:    write("zero.yml", "webhook: {authorization: {credentials_file: /dev/zero}}\n"),
			wantErr: "webhook: authorization: credentials_file: read secret: /dev/zero is larger than 64 KiB",
		},
		{
			name:    "empty secret file",
			path:    write("empty.yml", "webhook: {basic_auth: {username: u, password_file: empty-secret}}\n"),
			wantErr: "webhook: basic_auth: password_file: secret file " + filepath.Join(dir, "empty-secret") + " is empty",
		},
		{
			name:    "blank secret file",
			path:    write("blank.yml", "webhook: {authorization: {credentials_file: blank-secret}}\n"),
			wantErr: "webhook: authorization: credentials_file: secret file " + filepath.Join(dir, "blank-secret") + " is empty",
		},
		{
			name:    "secret file of two lines",
			path:    write("lines.yml", "global: {slack_bot_token_file: two-lines}\n"),
			wantErr: "global: slack_bot_token_file: secret file " + filepath.Join(dir, "two-lines") + " holds more than one line",
		},
		{
			name:    "missing routing key file",
			path:    write("pd.yml", "route: {receiver: a}\nreceivers: [{name: a, pagerduty_configs: [{routing_key_file: k}]}]\n"),
			wantErr: "receivers[0]: pagerduty_configs[0]: routing_key_file: read secret:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := LoadFile(tt.path)
			require.Error(t, err)
			require.Nil(t, c)
			if tt.want != nil {
				require.Equal(t, tt.want, strings.Split(err.Error(), "\n"))
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestDefault(t *testing.T) {
	t.Parallel()
	c := Default()
	require.Empty(t, c.File())
	require.Equal(t, DefaultText(), c.Original())
	require.Equal(t, "sqlite://data/responder.db", c.Storage.DSN, "relative to the working directory")
	require.Equal(t, ConsoleReceiver, c.Route.Receiver)
	require.Len(t, c.Receivers, 1)
	require.Equal(t, ConsoleReceiver, c.Receivers[0].Name)
	require.Empty(t, c.Receivers[0].SlackConfigs)
	require.Empty(t, c.Receivers[0].PagerDutyConfigs)
	require.True(t, c.Remediation.Enabled)
	require.True(t, c.Remediation.DryRun)
	require.False(t, c.Webhook.Enabled())
	require.Empty(t, c.Global.SlackBotToken)

	again, err := Load(c.String())
	require.NoError(t, err)
	require.Equal(t, c.String(), again.String())
}

func TestExample(t *testing.T) {
	t.Parallel()
	path := filepath.Join("..", "..", "examples", "responder.yml")
	c, err := LoadFile(path)
	require.NoError(t, err)
	require.Equal(t, "change-me-webhook-token", c.Webhook.Authorization.Credentials.Value())
	require.NotEmpty(t, c.Global.SlackBotToken.Value())
	require.NotEmpty(t, c.Global.SlackSigningSecret.Value())
	require.NotEmpty(t, c.Receivers[1].PagerDutyConfigs[0].RoutingKey.Value())
	require.True(t, c.Remediation.DryRun, "the example must not execute anything")
}

func TestConfig_String(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "conf.good-*.yml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range append(files, filepath.Join("..", "..", "examples", "responder.yml")) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			text, err := os.ReadFile(f) //nolint:gosec // G304: the repository's own testdata and example config.
			require.NoError(t, err)
			c, err := Load(string(text))
			require.NoError(t, err)
			again, err := Load(c.String())
			require.NoError(t, err, "String() of a valid config loads")
			require.Equal(t, c.String(), again.String())
		})
	}
}

// TestFile_keys keeps the private decoding struct in step with Config.
func TestFile_keys(t *testing.T) {
	t.Parallel()
	tags := func(typ reflect.Type) []string {
		var keys []string
		for f := range typ.Fields() {
			if !f.IsExported() {
				continue
			}
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			keys = append(keys, key)
		}
		return keys
	}
	require.Equal(t, tags(reflect.TypeFor[Config]()), tags(reflect.TypeFor[file]()))
}

func TestLoad_noCascade(t *testing.T) {
	t.Parallel()
	_, err := Load("route: {receiver: a}\nreceivers: [{name: a, pagerduty_configs: [{}]}]\n")
	require.EqualError(t, err, "receivers[0]: pagerduty_configs[0]: one of routing_key and routing_key_file is required")
}

// A hint for a key of Alertmanager's is given only in the section where
// Alertmanager has that key.
func TestLoad_alertmanagerHintsOnlyWhereTheyApply(t *testing.T) {
	t.Parallel()
	_, err := Load("route: {receiver: a}\nreceivers: [{name: a, group_wait: 1s}]\n")
	require.EqualError(t, err, "receivers: line 2: field group_wait not found")

	// The key is on line 6 of each text: in a Slack or PagerDuty entry,
	// in the receiver itself, or in a route.
	in := map[string]string{
		"receivers.slack_configs":     "route: {receiver: a}\nreceivers:\n- name: a\n  slack_configs:\n  - channel: '#a'\n    %s: s3cr3t\n",
		"receivers.pagerduty_configs": "route: {receiver: a}\nreceivers:\n- name: a\n  pagerduty_configs:\n  - routing_key: k\n    %s: s3cr3t\n",
		"receivers":                   "route: {receiver: a}\nreceivers:\n- name: a\n  slack_configs:\n  - channel: '#a'\n  %s: s3cr3t\n",
		"route":                       "receivers: [{name: a}]\nroute:\n  receiver: a\n  routes:\n  - receiver: a\n    %s: s3cr3t\n",
	}
	prefix := map[string]string{
		"receivers.slack_configs":     "receivers: ",
		"receivers.pagerduty_configs": "receivers: ",
		"receivers":                   "receivers: ",
		"route":                       "route: ",
	}
	for _, section := range []string{"receivers.slack_configs", "receivers.pagerduty_configs"} {
		require.NotEmpty(t, alertmanagerOnly[section])
		for key := range alertmanagerOnly[section] {
			for where, text := range in {
				t.Run(section+" "+key+" in "+where, func(t *testing.T) {
					t.Parallel()
					_, err := Load(fmt.Sprintf(text, key))
					want := prefix[where] + "line 6: field " + key + " not found"
					if hint := alertmanagerOnly[where][key]; hint != "" {
						want += ": " + hint
					}
					require.EqualError(t, err, want)
				})
			}
		}
	}

	for _, tt := range []struct {
		name string
		text string
		want []string
	}{
		{
			name: "api_url and service_key only in their configs",
			text: "route: {receiver: a}\nreceivers:\n- name: a\n  api_url: x\n  service_key: y\n",
			want: []string{"receivers: line 4: field api_url not found", "receivers: line 5: field service_key not found"},
		},
		{
			// Its error says nothing of which mapping it is in: no hint
			// beats the Slack one given to the receiver's key.
			name: "a key in two places on one line gets no hint",
			text: "route: {receiver: a}\nreceivers: [{name: a, slack_configs: [{channel: '#a', http_config: {}}], http_config: {}}]\n",
			want: []string{"receivers: line 2: field http_config not found", "receivers: line 2: field http_config not found"},
		},
		{
			name: "match and match_re only in routes",
			text: "route: {receiver: a}\nreceivers:\n- name: a\n  match: {a: b}\n  slack_configs: [{channel: '#a', match_re: {a: b}}]\n",
			want: []string{"receivers: line 4: field match not found", "receivers: line 5: field match_re not found"},
		},
		{
			name: "every route of the tree, each with its own labels",
			text: "route:\n  receiver: a\n  match: {root: x}\n  routes:\n  - routes:\n    - match: {team: db}\n  - match_re: {env: prod}\nreceivers: [{name: a}]\n",
			want: []string{
				`route: line 3: field match not found: it is Alertmanager's deprecated form of matchers; write matchers: ['root="..."'], with the values of match`,
				`route: line 6: field match not found: it is Alertmanager's deprecated form of matchers; write matchers: ['team="..."'], with the values of match`,
				`route: line 7: field match_re not found: it is Alertmanager's deprecated form of matchers; write matchers: ['env=~"..."'], with the values of match_re`,
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(tt.text)
			require.EqualError(t, err, strings.Join(tt.want, "\n"))
		})
	}
}

// TestAlertmanagerOnly checks that no key responder takes gets a hint as
// if it did not: every hinted key is missing from its section's type.
func TestAlertmanagerOnly(t *testing.T) {
	t.Parallel()
	types := map[string]reflect.Type{
		"":                            reflect.TypeFor[Config](),
		"global":                      reflect.TypeFor[GlobalConfig](),
		"route":                       reflect.TypeFor[routing.Route](),
		"receivers":                   reflect.TypeFor[routing.Receiver](),
		"receivers.slack_configs":     reflect.TypeFor[routing.SlackConfig](),
		"receivers.pagerduty_configs": reflect.TypeFor[routing.PagerDutyConfig](),
	}
	for section, hints := range alertmanagerOnly {
		typ, ok := types[section]
		require.True(t, ok, "no type for section %q", section)
		for f := range typ.Fields() {
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			require.NotContains(t, hints, key, "section %q takes %s", section, key)
		}
	}
	for _, accepted := range []string{"send_resolved", "channel", "title", "text"} {
		require.NotContains(t, alertmanagerOnly["receivers.slack_configs"], accepted)
	}
	for _, accepted := range []string{"send_resolved", "severity", "routing_key", "routing_key_file"} {
		require.NotContains(t, alertmanagerOnly["receivers.pagerduty_configs"], accepted)
	}
}

// TestLoad_didYouMean: an unknown key names the keys it is closest to,
// misspelt or put in the wrong place, by their whole path; none when no key
// is close, and never a value.
func TestLoad_didYouMean(t *testing.T) {
	t.Parallel()
	_, err := Load(`
webhook:
  authorisation: {credentials: t}
storage:
  workers: 3
  dns: 'sqlite://a.db'
  frobnicate: 1
global:
  slack_bot_tokn: xoxb-not-to-print
route: {receiver: a}
receivers:
- name: a
  slack_configs: [{chanel: '#a'}]
remedation: {dry_run: false}
dry_run: false
routes: []
`)
	require.Error(t, err)
	got := strings.Split(err.Error(), "\n")
	want := []string{
		"line 14: field remedation not found: did you mean remediation",
		"line 15: field dry_run not found: did you mean remediation.dry_run",
		"line 16: field routes not found: did you mean route or route.routes",
		"global: line 9: field slack_bot_tokn not found: did you mean global.slack_bot_token",
		"storage: line 5: field workers not found: did you mean storage.queue.workers",
		"storage: line 6: field dns not found: did you mean storage.dsn",
		"storage: line 7: field frobnicate not found",
		"webhook: line 3: field authorisation not found: did you mean webhook.authorization",
		"receivers: line 13: field chanel not found: did you mean receivers[].slack_configs[].channel",
	}
	require.Equal(t, want, got)
	require.NotContains(t, err.Error(), "xoxb")
}
