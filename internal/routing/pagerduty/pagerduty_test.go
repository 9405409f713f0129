package pagerduty_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/routing/pagerduty"
	"github.com/responder/responder/internal/routing/routingtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// testKey is a well-formed (32-character) integration key.
const testKey incident.Secret = "R0UT1NGKEY0123456789abcdefABCDEF"

const checkoutGroupKey = `{}/{severity="critical"}:{alertname="CheckoutLatencyHigh", service="checkout"}`

// checkoutIncident is a firing incident of three alerts, as the store reads
// it in full.
func checkoutIncident() *incident.Incident {
	start := time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)
	alert := func(i int) incident.Alert {
		pod := "checkout-" + strconv.Itoa(i)
		return incident.Alert{
			Fingerprint: fmt.Sprintf("c0ffee%010d", i),
			Status:      "firing",
			Labels: map[string]string{
				"alertname": "CheckoutLatencyHigh", "service": "checkout", "severity": "critical",
				"namespace": "shop", "instance": pod + ":8080", "pod": pod,
			},
			Annotations: map[string]string{
				"summary":     "Checkout p99 latency above 500ms",
				"runbook_url": "https://runbooks.example/checkout-latency",
			},
			StartsAt:     start.Add(time.Duration(i) * time.Minute),
			GeneratorURL: "http://prometheus.example:9090/graph?g0.expr=histogram_quantile",
			UpdatedAt:    start.Add(2 * time.Minute),
		}
	}
	return &incident.Incident{
		ID:          42,
		GroupKey:    checkoutGroupKey,
		Episode:     1,
		Status:      "firing",
		Receiver:    "pagerduty",
		GroupLabels: map[string]string{"alertname": "CheckoutLatencyHigh", "service": "checkout"},
		CommonLabels: map[string]string{
			"alertname": "CheckoutLatencyHigh", "service": "checkout", "severity": "critical", "namespace": "shop",
		},
		CommonAnnotations: map[string]string{
			"summary":     "Checkout p99 latency above 500ms",
			"runbook_url": "https://runbooks.example/checkout-latency",
		},
		ExternalURL:  "http://alertmanager.example:9093",
		OpenedAt:     start,
		UpdatedAt:    start.Add(2 * time.Minute),
		FiringAlerts: 3,
		Alerts:       []incident.Alert{alert(0), alert(1), alert(2)},
	}
}

func newNotifier(t *testing.T, fake *routingtest.FakePagerDuty, opts pagerduty.Options) *pagerduty.Notifier {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ExternalURL == "" {
		opts.ExternalURL = "http://responder.example:9096/"
	}
	return pagerduty.New(fake.URL(), opts)
}

// decode reads a raw event body as a generic JSON object.
func decode(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	return m
}

func TestDedupKey(t *testing.T) {
	t.Parallel()
	// The digests were computed outside Go, with
	//   printf '%s' "$groupKey" | sha256sum
	// and match Alertmanager v0.35.0 notify.Key.Hash, which formats
	// sha256.Sum of the group key with %x.
	tests := []struct {
		name, groupKey, want string
	}{
		{"alertmanager group key", checkoutGroupKey, "4cc73377a4af7749b5641a0e233908347f01b710a94a88f5ea927d56fc8655d6"},
		{"empty", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"non-ascii label value", `{}:{alertname="Ünïcode"}`, "78e02e2ae8bdae3e9c8257fa006a79bc53d93b6581be69e9a13d6b488e32f1ff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := pagerduty.DedupKey(tt.groupKey)
			require.Equal(t, tt.want, got)
			require.Len(t, got, 64)
		})
	}
}

func TestNotifier_Notify(t *testing.T) {
	t.Parallel()
	t.Run("trigger then resolve closes the alert", func(t *testing.T) {
		t.Parallel()
		fake := routingtest.NewFakePagerDuty(t)
		n := newNotifier(t, fake, pagerduty.Options{})
		inc := checkoutIncident()
		dedup := pagerduty.DedupKey(inc.GroupKey)

		retry, err := n.Notify(t.Context(), testKey, pagerduty.ActionTrigger, inc, pagerduty.Extra{})
		require.NoError(t, err)
		require.False(t, retry)
		require.Equal(t, []string{dedup}, fake.OpenKeys())

		// A second trigger for the same group is appended, not a new page.
		_, err = n.Notify(t.Context(), testKey, pagerduty.ActionTrigger, inc, pagerduty.Extra{})
		require.NoError(t, err)
		require.Equal(t, 2, fake.Open()[dedup].Triggers)

		retry, err = n.Notify(t.Context(), testKey, pagerduty.ActionResolve, inc, pagerduty.Extra{})
		require.NoError(t, err)
		require.False(t, retry)
		require.Empty(t, fake.Open())

		events := fake.Events()
		require.Len(t, events, 3)
		got := []string{events[0].Outcome, events[1].Outcome, events[2].Outcome}
		require.Equal(t, []string{routingtest.PagerDutyOpened, routingtest.PagerDutyAppended, routingtest.PagerDutyResolved}, got)
		for _, ev := range events {
			require.Equal(t, dedup, ev.DedupKey)
			require.Equal(t, testKey.Value(), ev.RoutingKey)
			require.Equal(t, "application/json", ev.Header.Get("Content-Type"))
		}
	})

	t.Run("resolve carries only routing key, dedup key and action", func(t *testing.T) {
		t.Parallel()
		fake := routingtest.NewFakePagerDuty(t)
		n := newNotifier(t, fake, pagerduty.Options{})
		_, err := n.Notify(t.Context(), testKey, pagerduty.ActionResolve, checkoutIncident(), pagerduty.Extra{SlackPermalink: "https://slack.example/p1"})
		require.NoError(t, err)
		events := fake.Events()
		require.Len(t, events, 1)
		require.Equal(t, map[string]any{
			"routing_key":  testKey.Value(),
			"dedup_key":    pagerduty.DedupKey(checkoutGroupKey),
			"event_action": "resolve",
		}, decode(t, events[0].Raw))
		require.Equal(t, routingtest.PagerDutyDropped, events[0].Outcome)
	})

	t.Run("unknown action is refused without a request", func(t *testing.T) {
		t.Parallel()
		fake := routingtest.NewFakePagerDuty(t)
		n := newNotifier(t, fake, pagerduty.Options{})
		retry, err := n.Notify(t.Context(), testKey, "acknowledge", checkoutIncident(), pagerduty.Extra{})
		require.ErrorContains(t, err, `unknown action "acknowledge"`)
		require.False(t, retry)
		require.Zero(t, fake.Requests())
	})

	t.Run("invalid events url is not retried", func(t *testing.T) {
		t.Parallel()
		n := pagerduty.New("events.pagerduty.com", pagerduty.Options{})
		retry, err := n.Notify(t.Context(), testKey, pagerduty.ActionTrigger, checkoutIncident(), pagerduty.Extra{})
		require.ErrorContains(t, err, "invalid pagerduty events url")
		require.False(t, retry)
	})

	t.Run("concurrent notifies", func(t *testing.T) {
		t.Parallel()
		fake := routingtest.NewFakePagerDuty(t)
		n := newNotifier(t, fake, pagerduty.Options{})
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				inc := checkoutIncident()
				inc.GroupKey += strconv.Itoa(i)
				_, err := n.Notify(t.Context(), testKey, pagerduty.ActionTrigger, inc, pagerduty.Extra{})
				require.NoError(t, err)
			})
		}
		wg.Wait()
		require.Len(t, fake.Open(), 20)
	})
}

func TestNotifier_NotifyRetry(t *testing.T) {
	t.Parallel()
	for status, want := range routingtest.RetryTests {
		t.Run(fmt.Sprintf("%d %s", status, http.StatusText(status)), func(t *testing.T) {
			t.Parallel()
			fake := routingtest.NewFakePagerDuty(t)
			fake.FailNext(1, status)
			n := newNotifier(t, fake, pagerduty.Options{})
			retry, err := n.Notify(t.Context(), testKey, pagerduty.ActionTrigger, checkoutIncident(), pagerduty.Extra{})
			require.Equal(t, want, retry)
			if status >= 200 && status < 300 {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, strconv.Itoa(status))
			var apiErr *pagerduty.APIError
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, status, apiErr.StatusCode)
		})
	}

	t.Run("400 names the events api errors", func(t *testing.T) {
		t.Parallel()
		fake := routingtest.NewFakePagerDuty(t)
		n := newNotifier(t, fake, pagerduty.Options{})
		// The fake, like PagerDuty, rejects a key that is not 32 characters.
		retry, err := n.Notify(t.Context(), "too-short", pagerduty.ActionTrigger, checkoutIncident(), pagerduty.Extra{})
		require.False(t, retry)
		require.ErrorContains(t, err, "400 Bad Request: invalid event: Event object is invalid: [Length of 'routing_key' is incorrect (should be 32 characters)]")
		var apiErr *pagerduty.APIError
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, []string{"Length of 'routing_key' is incorrect (should be 32 characters)"}, apiErr.Errors)
	})

	t.Run("rate limit is retried", func(t *testing.T) {
		t.Parallel()
		fake := routingtest.NewFakePagerDuty(t, routingtest.WithPagerDutyRateLimit(1, time.Minute))
		n := newNotifier(t, fake, pagerduty.Options{})
		_, err := n.Notify(t.Context(), testKey, pagerduty.ActionTrigger, checkoutIncident(), pagerduty.Extra{})
		require.NoError(t, err)
		retry, err := n.Notify(t.Context(), testKey, pagerduty.ActionResolve, checkoutIncident(), pagerduty.Extra{})
		require.True(t, retry)
		require.ErrorContains(t, err, "429 Too Many Requests: throttle event")
		require.Len(t, fake.Open(), 1)
	})

	t.Run("connection refused is retried", func(t *testing.T) {
		t.Parallel()
		n := pagerduty.New(closedURL(t), pagerduty.Options{})
		retry, err := n.Notify(t.Context(), testKey, pagerduty.ActionTrigger, checkoutIncident(), pagerduty.Extra{})
		require.True(t, retry)
		require.ErrorContains(t, err, "connection refused")
	})
}

func TestNotifier_NotifyTimeout(t *testing.T) {
	t.Parallel()
	errBudget := errors.New("notification budget spent")
	tests := []struct {
		name    string
		timeout time.Duration
		ctx     func(t *testing.T) context.Context
		wantIs  error
		wantMsg string
	}{
		{
			name: "caller deadline reports the caller's cause",
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithTimeoutCause(t.Context(), 50*time.Millisecond, errBudget)
				t.Cleanup(cancel)
				return ctx
			},
			wantIs:  errBudget,
			wantMsg: "notification budget spent",
		},
		{
			name:    "own timeout reports its cause",
			timeout: 50 * time.Millisecond,
			ctx:     func(t *testing.T) context.Context { return t.Context() },
			wantIs:  context.DeadlineExceeded,
			wantMsg: "pagerduty timeout reached (50ms)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := routingtest.NewFakePagerDuty(t)
			fake.SetDelay(10 * time.Second)
			n := newNotifier(t, fake, pagerduty.Options{Timeout: tt.timeout})
			start := time.Now()
			retry, err := n.Notify(tt.ctx(t), testKey, pagerduty.ActionTrigger, checkoutIncident(), pagerduty.Extra{})
			require.True(t, retry)
			require.ErrorIs(t, err, tt.wantIs)
			require.ErrorContains(t, err, tt.wantMsg)
			require.Less(t, time.Since(start), 5*time.Second)
			require.Empty(t, fake.Events())
		})
	}
}

func TestNotifier_Summary(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é漢🚨x", 300) // 1,200 runes, 3,000 bytes
	tests := []struct {
		name       string
		annotation string
		extra      pagerduty.Extra
		want       string // whole summary; "" checks truncation instead
	}{
		{
			name:       "default format",
			annotation: "Checkout p99 latency above 500ms",
			want:       "[FIRING:3] CheckoutLatencyHigh checkout — Checkout p99 latency above 500ms",
		},
		{
			name:       "newlines collapse",
			annotation: "Checkout p99\n  latency above 500ms\n",
			want:       "[FIRING:3] CheckoutLatencyHigh checkout — Checkout p99 latency above 500ms",
		},
		{
			name:  "override",
			extra: pagerduty.Extra{Summary: "Alert storm: 250 alerts in 5 groups"},
			want:  "Alert storm: 250 alerts in 5 groups",
		},
		{name: "multibyte annotation is truncated", annotation: long},
		{name: "multibyte override is truncated", extra: pagerduty.Extra{Summary: long}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := routingtest.NewFakePagerDuty(t)
			n := newNotifier(t, fake, pagerduty.Options{})
			inc := checkoutIncident()
			inc.CommonAnnotations["summary"] = tt.annotation
			_, err := n.Notify(t.Context(), testKey, pagerduty.ActionTrigger, inc, tt.extra)
			require.NoError(t, err) // the fake rejects a summary over 1,024 characters
			got := fake.Events()[0].Payload.Summary
			if tt.want != "" {
				require.Equal(t, tt.want, got)
				return
			}
			require.True(t, utf8.ValidString(got))
			require.Equal(t, 1024, utf8.RuneCountInString(got))
			require.True(t, strings.HasSuffix(got, "…"))
			full := "[FIRING:3] CheckoutLatencyHigh checkout — " + long
			if tt.extra.Summary != "" {
				full = tt.extra.Summary
			}
			require.Equal(t, []rune(full)[:1023], []rune(got)[:1023])
		})
	}
	t.Run("exactly 1024 runes is kept", func(t *testing.T) {
		t.Parallel()
		fake := routingtest.NewFakePagerDuty(t)
		n := newNotifier(t, fake, pagerduty.Options{})
		s := strings.Repeat("漢", 1024)
		_, err := n.Notify(t.Context(), testKey, pagerduty.ActionTrigger, checkoutIncident(), pagerduty.Extra{Summary: s})
		require.NoError(t, err)
		require.Equal(t, s, fake.Events()[0].Payload.Summary)
	})
}

func TestSeverity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		label, configured, want string
	}{
		{"critical", "", "critical"},
		{"page", "", "critical"},
		{"CRITICAL", "", "critical"},
		{"error", "", "error"},
		{"high", "", "error"},
		{"warning", "", "warning"},
		{"warn", "", "warning"},
		{"medium", "", "warning"},
		{"info", "", "info"},
		{"low", "", "info"},
		{"", "", "error"},
		{"sev2", "", "error"},
		{"critical", "warning", "warning"},
		{"info", "critical", "critical"},
		{"warning", "page", "critical"},
		{"warning", "{{ .Labels.severity }}", "warning"}, // unrendered template: ignored
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("label %q configured %q", tt.label, tt.configured), func(t *testing.T) {
			t.Parallel()
			fake := routingtest.NewFakePagerDuty(t)
			n := newNotifier(t, fake, pagerduty.Options{})
			inc := checkoutIncident()
			inc.CommonLabels["severity"] = tt.label
			for i := range inc.Alerts {
				inc.Alerts[i].Labels["severity"] = tt.label
			}
			_, err := n.Notify(t.Context(), testKey, pagerduty.ActionTrigger, inc, pagerduty.Extra{Severity: tt.configured})
			require.NoError(t, err)
			require.Equal(t, tt.want, fake.Events()[0].Payload.Severity)
		})
	}
}

func TestNotifier_TriggerPayload(t *testing.T) {
	t.Parallel()
	t.Run("custom details and links", func(t *testing.T) {
		t.Parallel()
		fake := routingtest.NewFakePagerDuty(t)
		n := newNotifier(t, fake, pagerduty.Options{})
		extra := pagerduty.Extra{
			SlackPermalink: "https://example.slack.com/archives/C1/p1",
			Details:        map[string]any{"deploys": "checkout v1.2.3", "firing": "clobbered"},
		}
		_, err := n.Notify(t.Context(), testKey, pagerduty.ActionTrigger, checkoutIncident(), extra)
		require.NoError(t, err)
		ev := fake.Events()[0]
		d := ev.Payload.CustomDetails
		require.EqualValues(t, 3, d["firing"])
		require.EqualValues(t, 0, d["resolved"])
		require.Equal(t, "checkout v1.2.3", d["deploys"])
		require.Equal(t, "https://example.slack.com/archives/C1/p1", d["slack_permalink"])
		require.Equal(t, "http://responder.example:9096/api/v1/incidents/42", d["incident_url"])
		require.Equal(t, map[string]any{
			"alertname": "CheckoutLatencyHigh", "service": "checkout", "severity": "critical", "namespace": "shop",
		}, d["common_labels"])
		require.Contains(t, d["common_annotations"], "runbook_url")
		require.Len(t, d["alerts"], 3)
		require.NotContains(t, d, "alerts_omitted")

		require.Equal(t, "checkout-0:8080", ev.Payload.Source)
		require.Equal(t, "CheckoutLatencyHigh", ev.Payload.Class)
		require.Equal(t, "checkout", ev.Payload.Component)
		require.Equal(t, "responder", ev.Client)
		require.Equal(t, "http://responder.example:9096/api/v1/incidents/42", ev.ClientURL)
		require.Equal(t, []routingtest.PagerDutyLink{
			{Href: "http://responder.example:9096/api/v1/incidents/42", Text: "Responder incident"},
			{Href: "https://example.slack.com/archives/C1/p1", Text: "Slack thread"},
			{Href: "https://runbooks.example/checkout-latency", Text: "Runbook"},
			{Href: "http://prometheus.example:9090/graph?g0.expr=histogram_quantile", Text: "Alert source"},
			{Href: "http://alertmanager.example:9093", Text: "Alertmanager"},
		}, ev.Links)
	})

	t.Run("source falls back to responder", func(t *testing.T) {
		t.Parallel()
		fake := routingtest.NewFakePagerDuty(t)
		n := newNotifier(t, fake, pagerduty.Options{})
		inc := &incident.Incident{GroupKey: "{}:{}", CommonLabels: map[string]string{"alertname": "Watchdog"}, FiringAlerts: 1}
		_, err := n.Notify(t.Context(), testKey, pagerduty.ActionTrigger, inc, pagerduty.Extra{})
		require.NoError(t, err)
		ev := fake.Events()[0]
		require.Equal(t, "responder", ev.Payload.Source)
		require.Equal(t, "[FIRING:1] Watchdog", ev.Payload.Summary)
		require.Equal(t, "error", ev.Payload.Severity, "no severity label: Alertmanager's default, not a low-urgency info")
	})

	t.Run("unsafe links are left out", func(t *testing.T) {
		t.Parallel()
		fake := routingtest.NewFakePagerDuty(t)
		n := pagerduty.New(fake.URL(), pagerduty.Options{})
		inc := checkoutIncident()
		inc.CommonAnnotations["runbook_url"] = "javascript:alert(1)"
		inc.ExternalURL = ""
		for i := range inc.Alerts {
			inc.Alerts[i].GeneratorURL = "/relative"
		}
		_, err := n.Notify(t.Context(), testKey, pagerduty.ActionTrigger, inc, pagerduty.Extra{})
		require.NoError(t, err)
		require.Empty(t, fake.Events()[0].Links)
	})

	t.Run("many alerts are capped", func(t *testing.T) {
		t.Parallel()
		fake := routingtest.NewFakePagerDuty(t)
		n := newNotifier(t, fake, pagerduty.Options{})
		inc := checkoutIncident()
		big := strings.Repeat("x", 20_000)
		for i := range 500 {
			a := inc.Alerts[0]
			a.Labels = map[string]string{"alertname": "CheckoutLatencyHigh", "pod": "p" + strconv.Itoa(i)}
			a.Annotations = map[string]string{"description": big}
			inc.Alerts = append(inc.Alerts, a)
		}
		_, err := n.Notify(t.Context(), testKey, pagerduty.ActionTrigger, inc, pagerduty.Extra{})
		require.NoError(t, err)
		ev := fake.Events()[0]
		require.Less(t, len(ev.Raw), 512000/2)
		d := ev.Payload.CustomDetails
		require.EqualValues(t, 503, d["firing"])
		kept := len(d["alerts"].([]any))
		require.Positive(t, kept)
		require.EqualValues(t, 503-kept, d["alerts_omitted"])
	})

	t.Run("huge labels and links are cut", func(t *testing.T) {
		t.Parallel()
		// One label value or URL alone can exceed the Events API's 512,000
		// bytes; PagerDuty then answers 400 and the page is never sent.
		fake := routingtest.NewFakePagerDuty(t)
		n := newNotifier(t, fake, pagerduty.Options{})
		inc := checkoutIncident()
		huge := strings.Repeat("z", 600_000)
		inc.CommonLabels["service"] = huge
		inc.CommonLabels["namespace"] = huge
		inc.CommonLabels["alertname"] = huge
		inc.Alerts[0].Labels["instance"] = huge
		inc.Alerts[0].GeneratorURL = "http://prometheus.example/graph?g0.expr=" + huge
		inc.CommonAnnotations["runbook_url"] = "https://runbooks.example/" + huge
		_, err := n.Notify(t.Context(), testKey, pagerduty.ActionTrigger, inc, pagerduty.Extra{})
		require.NoError(t, err)
		ev := fake.Events()[0]
		require.Less(t, len(ev.Raw), 512000/2)
		for _, f := range []string{ev.Payload.Source, ev.Payload.Component, ev.Payload.Group, ev.Payload.Class} {
			require.LessOrEqual(t, utf8.RuneCountInString(f), 1024)
			require.True(t, strings.HasSuffix(f, "…"), "a cut value says so")
		}
		for _, l := range ev.Links {
			require.NotContains(t, l.Href, huge[:100], "a cut URL would be broken: the link is left out")
		}
		require.Contains(t, ev.Links, routingtest.PagerDutyLink{Href: "http://alertmanager.example:9093", Text: "Alertmanager"})
	})

	t.Run("huge details are removed", func(t *testing.T) {
		t.Parallel()
		fake := routingtest.NewFakePagerDuty(t)
		n := newNotifier(t, fake, pagerduty.Options{})
		extra := pagerduty.Extra{Details: map[string]any{"log": strings.Repeat("y", 600_000)}}
		_, err := n.Notify(t.Context(), testKey, pagerduty.ActionTrigger, checkoutIncident(), extra)
		require.NoError(t, err)
		d := fake.Events()[0].Payload.CustomDetails
		require.NotContains(t, d, "log")
		require.Contains(t, d["error"], "custom details removed")
		require.EqualValues(t, 3, d["firing"])
	})
}

func TestNotifier_Golden(t *testing.T) {
	t.Parallel()
	fake := routingtest.NewFakePagerDuty(t)
	n := newNotifier(t, fake, pagerduty.Options{})
	extra := pagerduty.Extra{SlackPermalink: "https://example.slack.com/archives/C0INCIDENTS/p1741944413000100"}
	_, err := n.Notify(t.Context(), testKey, pagerduty.ActionTrigger, checkoutIncident(), extra)
	require.NoError(t, err)

	var got bytes.Buffer
	require.NoError(t, json.Indent(&got, fake.Events()[0].Raw, "", "  "))
	got.WriteByte('\n')
	const path = "testdata/trigger.golden.json"
	if *update {
		require.NoError(t, os.WriteFile(path, got.Bytes(), 0o600))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, string(want), got.String())
}

func TestNotifier_NoSecretLeak(t *testing.T) {
	t.Parallel()
	const password = "hunter2-basic-auth"
	// echo answers 400 with the whole request in the error list, as a
	// careless proxy might.
	echo := func(t *testing.T) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "invalid event", "errors": []string{buf.String()}})
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	withFake := func(setup func(*routingtest.FakePagerDuty)) func(t *testing.T) string {
		return func(t *testing.T) string {
			fake := routingtest.NewFakePagerDuty(t)
			setup(fake)
			return fake.URL()
		}
	}
	tests := []struct {
		name      string
		url       func(t *testing.T) string
		key       incident.Secret
		action    string
		timeout   time.Duration
		wantRetry bool
	}{
		{name: "400 invalid key", url: withFake(func(*routingtest.FakePagerDuty) {}), key: "not-a-32-character-key-hunter2"},
		{name: "429", url: withFake(func(f *routingtest.FakePagerDuty) { f.FailNext(1, 429) }), wantRetry: true},
		{name: "503", url: withFake(func(f *routingtest.FakePagerDuty) { f.FailNext(1, 503) }), wantRetry: true},
		{name: "timeout", url: withFake(func(f *routingtest.FakePagerDuty) { f.SetDelay(5 * time.Second) }), timeout: 50 * time.Millisecond, wantRetry: true},
		{name: "body echoes the key", url: echo},
		{name: "resolve with body echoing the key", url: echo, action: pagerduty.ActionResolve},
		{
			name: "failing url with credentials",
			url: func(t *testing.T) string {
				return strings.Replace(closedURL(t), "://", "://user:"+password+"@", 1) + "/?token=" + password
			},
			wantRetry: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			key := tt.key
			if key == "" {
				key = testKey
			}
			action := tt.action
			if action == "" {
				action = pagerduty.ActionTrigger
			}
			var logs bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			n := pagerduty.New(tt.url(t), pagerduty.Options{Logger: logger, Timeout: tt.timeout})
			retry, err := n.Notify(t.Context(), key, action, checkoutIncident(), pagerduty.Extra{Severity: "bogus"})
			require.Error(t, err)
			require.Equal(t, tt.wantRetry, retry)
			for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err), logs.String()} {
				require.NotContains(t, s, key.Value())
				require.NotContains(t, s, password)
			}
		})
	}
}

// closedURL returns the URL of a loopback port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return "http://" + addr
}
