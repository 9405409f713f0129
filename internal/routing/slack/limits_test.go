package slack_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/routing/routingtest"
	"github.com/responder/responder/internal/routing/slack"
)

// requireWholeMarkup fails when s has a <…> token (link, mention, date)
// without its end, or a code block without its closing fence.
func requireWholeMarkup(t *testing.T, s string) {
	t.Helper()
	depth := 0
	for _, r := range s {
		switch r {
		case '<':
			require.Zero(t, depth, "nested '<' in %q", s)
			depth++
		case '>':
			require.Equal(t, 1, depth, "'>' without '<' in %q", s)
			depth--
		}
	}
	require.Zero(t, depth, "a <…> token is cut open in %q", s)
	require.Zero(t, strings.Count(s, "```")%2, "a code block is left open in %q", s)
}

// bigContext is what a busy cluster gathers: dozens of rollouts with CI
// links, several log sources full of long lines, queries with many series,
// and a pile of failed sources.
func bigContext(now time.Time) *incident.Context {
	var deps []incident.Deployment
	for i := range 40 {
		deps = append(deps, incident.Deployment{
			Service: fmt.Sprintf("svc-%d", i), Version: "v1.2.3", Commit: "abcdef1234567890", Author: "ci-bot",
			URL: fmt.Sprintf("https://ci.example/builds/%d?pipeline=main&job=deploy", i), DeployedAt: now.Add(-time.Hour),
		})
	}
	var logs []incident.LogLine
	for i := range 100 {
		logs = append(logs, incident.LogLine{Line: strings.Repeat(fmt.Sprintf("error %d <x> & ", i), 20), Count: 2})
	}
	var values []incident.Sample
	for i := range 60 {
		values = append(values, incident.Sample{Labels: fmt.Sprintf(`{instance="web-%d:8080",job="checkout"}`, i), Value: float64(i)})
	}
	c := &incident.Context{DurationMS: 1234, Sections: []incident.Section{
		{Source: "deployments", Kind: incident.ContextDeployments, Status: incident.SourceOK, Deployments: deps},
	}}
	for i := range 5 {
		c.Sections = append(c.Sections, incident.Section{Source: fmt.Sprintf("loki-%d", i), Kind: incident.ContextLogs, Status: incident.SourceOK, Logs: logs})
	}
	c.Sections = append(c.Sections, incident.Section{Source: "promql", Kind: incident.ContextMetrics, Status: incident.SourceOK, Snapshots: []incident.Snapshot{
		{Name: "p99 latency", Query: "histogram_quantile(0.99, rate(x[5m]))", Values: values},
		{Name: "error rate", Query: "rate(errors[5m])", Values: values},
	}})
	for i := range 30 {
		c.Sections = append(c.Sections, incident.Section{Source: fmt.Sprintf("broken-%d", i), Status: incident.SourceError, Error: strings.Repeat("boom ", 30)})
	}
	return c
}

// The context reply of a busy incident must stay within what Slack
// accepts: its doc promises under 11,000 characters in all (Slack answers
// msg_blocks_too_long, which is final, from around 12-13k), and a section
// that has to be cut must not leave a link or a code block open.
func TestRenderContext_StaysWithinSlackLimits(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	fake := routingtest.NewFakeSlack(t, token)
	n := newNotifier(t, fake.URL(), slack.Options{})
	ref, _, err := n.PostParent(t.Context(), "#incidents", loadIncident(t, "firing"), slack.Extra{})
	require.NoError(t, err)

	text, blocks := slack.RenderContext(bigContext(now), now)
	_, retry, err := n.Reply(t.Context(), ref, text, blocks...)
	require.NoError(t, err)
	require.False(t, retry)

	replies := fake.Messages(ref.Channel)[0].Replies
	require.Len(t, replies, 1)
	sent := replies[0].Blocks
	require.LessOrEqual(t, len(sent), 50)
	texts := blockTexts(t, sent)
	t.Run("total under 11000", func(t *testing.T) {
		total := 0
		for _, s := range append(texts["section"], texts["context"]...) {
			total += utf8.RuneCountInString(s)
		}
		require.LessOrEqual(t, total, 11000, "the whole context reply stays under 11,000 characters")
	})
	t.Run("sections whole", func(t *testing.T) {
		for _, s := range texts["section"] {
			require.LessOrEqual(t, utf8.RuneCountInString(s), 3000)
			requireWholeMarkup(t, s)
		}
		for _, s := range texts["context"] {
			requireWholeMarkup(t, s)
		}
	})

	body := allText(texts)
	require.Contains(t, body, "*Recent deployments*")
	require.Regexp(t, `and \d+ more deployments`, body, "left-out deployments are counted")
	require.Contains(t, body, "*Error logs* (loki-0)")
	require.Contains(t, body, "*p99 latency*", "long logs do not crowd out the metrics")
	require.Contains(t, body, "*error rate*")
	require.Contains(t, body, "Context gathered in 1.23s")
	require.NotContains(t, body, "<x>", "log lines are escaped")
}

// Small contexts are rendered whole, exactly as before.
func TestRenderContext_Small(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	c := &incident.Context{DurationMS: 420, Sections: []incident.Section{
		{Source: "deployments", Status: incident.SourceOK, Deployments: []incident.Deployment{{
			Service: "checkout", Environment: "prod", Version: "v2", Commit: "0123456789abcdef", Author: "ana",
			URL: "https://ci.example/1", DeployedAt: now.Add(-5 * time.Minute),
		}}},
		{Source: "loki", Status: incident.SourceOK, Logs: []incident.LogLine{{Line: "panic: <nil>", Count: 3}, {Line: "timeout", Count: 1}}},
		{Source: "promql", Status: incident.SourceOK, Snapshots: []incident.Snapshot{
			{Name: "rate", Query: "rate(x[5m])", Values: []incident.Sample{{Labels: `{job="api"}`, Value: 1.5}}},
			{Name: "empty", Query: "up == 0"},
			{Name: "broken", Query: "bad(", Error: "parse error"},
			{Name: "partial", Query: "sum(up)", Values: []incident.Sample{{Labels: `{}`, Value: 3}}, Warnings: []string{"remote read failed: <store-b>"}},
		}},
		{Source: "es", Status: incident.SourceTimeout},
	}}
	_, blocks := slack.RenderContext(c, now)
	texts := blockTexts(t, blocks)
	require.Equal(t, []string{
		"*Recent deployments*\n• *checkout* `v2` to prod commit `0123456789a…` by ana, 5m ago <https://ci.example/1|details>",
		"*Error logs* (loki)\n```×3 panic: &lt;nil&gt;\ntimeout\n```",
		"*rate*  `rate(x[5m])`\n• `{job=\"api\"}` = *1.5*",
		"*empty*  `up == 0`\nno series now",
		"*broken*  `bad(`\n_parse error_",
		"*partial*  `sum(up)`\n_Prometheus warns: remote read failed: &lt;store-b&gt;_\n• `{}` = *3*",
	}, texts["section"])
	require.Equal(t, []string{"Context gathered in 420ms · es: timed out"}, texts["context"])
}

// A log section whose lines cannot fit its share says so instead of
// showing an empty code block.
func TestRenderContext_NoEmptyCodeBlock(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	c := &incident.Context{}
	for i := range 30 {
		c.Sections = append(c.Sections, incident.Section{
			Source: fmt.Sprintf("loki-%d", i), Status: incident.SourceOK,
			Logs: []incident.LogLine{{Line: strings.Repeat("<", 300), Count: 1}},
		})
	}
	_, blocks := slack.RenderContext(c, now)
	texts := blockTexts(t, blocks)
	total := 0
	for _, s := range append(texts["section"], texts["context"]...) {
		requireWholeMarkup(t, s)
		require.NotContains(t, s, "```\n```")
		total += utf8.RuneCountInString(s)
	}
	require.LessOrEqual(t, total, 11000)
	require.Contains(t, allText(texts), "1 line left out for length")
}

func TestTruncateEscaped_KeepsTokensWhole(t *testing.T) {
	t.Parallel()
	s := "deployed " + slack.Escape("a<b & c") + " <https://ci.example/builds/1?x=1&amp;y=2|details> at <!date^1700000000^{time}|10:00> " + slack.Escape("ok & done")
	for n := 1; n <= utf8.RuneCountInString(s)+1; n++ {
		got := slack.TruncateEscaped(s, n)
		require.LessOrEqual(t, utf8.RuneCountInString(got), n, "n=%d", n)
		body := strings.TrimSuffix(got, "…")
		require.True(t, strings.HasPrefix(s, body), "n=%d: %q", n, got)
		requireWholeMarkup(t, body)
		require.Equal(t, strings.Count(body, "&"), strings.Count(body, ";"), "n=%d: a cut entity in %q", n, got)
	}
}

// Slack documents some ok:false answers as temporary (rate limits reported
// in the body, trouble on its side). Dropping them loses the post, or
// leaves a resolved incident's message showing FIRING; they are retried.
// The others are final.
func TestNotifier_OkFalseRetry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code  string
		retry bool
	}{
		{"ratelimited", true},
		{"rate_limited", true},
		{"service_unavailable", true},
		{"request_timeout", true},
		{"internal_error", true},
		{"fatal_error", true},
		{"channel_not_found", false},
		{"not_in_channel", false},
		{"is_archived", false},
		{"invalid_auth", false},
		{"account_inactive", false},
		{"missing_scope", false},
		{"msg_too_long", false},
		{"invalid_blocks", false},
		{"msg_blocks_too_long", false},
		{"message_not_found", false},
		{"cant_update_message", false},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			t.Parallel()
			fake := routingtest.NewFakeSlack(t, token)
			n := newNotifier(t, fake.URL(), slack.Options{})

			fake.FailNext(routingtest.SlackPostMessage, 1, routingtest.SlackResponse{Error: tt.code})
			_, retry, err := n.PostParent(t.Context(), "#incidents", loadIncident(t, "firing"), slack.Extra{})
			require.Error(t, err)
			require.Equal(t, tt.code, slack.ErrorCode(err))
			require.Equal(t, tt.retry, retry, "post: %v", err)

			ref, _, err := n.PostParent(t.Context(), "#incidents", loadIncident(t, "firing"), slack.Extra{})
			require.NoError(t, err)
			fake.FailNext(routingtest.SlackUpdate, 1, routingtest.SlackResponse{Error: tt.code})
			retry, err = n.UpdateParent(t.Context(), ref, loadIncident(t, "resolved"), slack.Extra{})
			require.Error(t, err)
			require.Equal(t, tt.retry, retry, "resolve update: %v", err)
			if tt.retry {
				// The retry goes through and resolves the message in place.
				retry, err = n.UpdateParent(t.Context(), ref, loadIncident(t, "resolved"), slack.Extra{})
				require.NoError(t, err)
				require.False(t, retry)
				msgs := fake.Messages(ref.Channel)
				require.Len(t, msgs, 1)
				require.Equal(t, []string{":white_check_mark: RESOLVED: HighErrorRate"}, blockTexts(t, msgs[0].Blocks)["header"])
			}
		})
	}
}

// A text template's output that is too long is split into sections and
// cut; neither may split a link (Slack would show its raw, cut URL) or an
// entity.
func TestNotifier_TemplateTextKeepsTokensWhole(t *testing.T) {
	t.Parallel()
	inc := loadIncident(t, "firing")
	for i := range 200 {
		a := inc.Alerts[0]
		a.Fingerprint = fmt.Sprintf("%016x", i)
		a.Labels = map[string]string{"alertname": "HighErrorRate", "instance": fmt.Sprintf("web-%d:8080", i)}
		a.GeneratorURL = fmt.Sprintf("http://prometheus.example:9090/graph?g0.expr=rate%%28errors%%5B5m%%5D%%29&g0.tab=%d", i)
		inc.Alerts = append(inc.Alerts, a)
	}
	// One line, as a template that ranges without newlines renders it.
	tmpl := `{{ range .Alerts }}<{{ .GeneratorURL }}|{{ .Labels.instance }}> &amp; {{ end }}`
	fake := routingtest.NewFakeSlack(t, token)
	n := newNotifier(t, fake.URL(), slack.Options{Templates: slack.Templates{Text: tmpl}})
	ref, _, err := n.PostParent(t.Context(), "#incidents", inc, slack.Extra{})
	require.NoError(t, err)
	sections := blockTexts(t, fake.Messages(ref.Channel)[0].Blocks)["section"]
	require.GreaterOrEqual(t, len(sections), 2, "the text is long enough to be split")
	for _, s := range sections {
		require.LessOrEqual(t, utf8.RuneCountInString(s), 3000)
		requireWholeMarkup(t, strings.TrimSuffix(s, "…"))
		require.NotRegexp(t, `&[a-z]{0,3}(…|$)`, s, "no entity is cut in half")
	}
}
