package slack_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	goslack "github.com/slack-go/slack"
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/routing/routingtest"
	"github.com/responder/responder/internal/routing/slack"
)

var update = flag.Bool("update", false, "update the golden files in testdata")

const token = "xoxb-1234-5678-s3cr3tT0k3n" //nolint:gosec // the test token whose absence from errors is checked

// fixedNow is the clock of every rendering, so that golden files are stable.
var fixedNow = time.Date(2026, 3, 2, 10, 5, 0, 0, time.UTC)

func newNotifier(t *testing.T, apiURL string, opts slack.Options) *slack.Notifier {
	t.Helper()
	if opts.PostInterval == 0 {
		opts.PostInterval = -1 // no pacing unless a test wants it
	}
	if opts.Now == nil {
		opts.Now = func() time.Time { return fixedNow }
	}
	if opts.ExternalURL == "" {
		opts.ExternalURL = "http://responder.example:9096/"
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	return slack.New(token, apiURL, opts)
}

func loadIncident(t *testing.T, name string) *incident.Incident {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".json")) //nolint:gosec // test fixtures
	require.NoError(t, err)
	var inc incident.Incident
	require.NoError(t, json.Unmarshal(b, &inc))
	return &inc
}

// blockTexts returns every text of a message's blocks, by block type.
func blockTexts(t *testing.T, blocks []goslack.Block) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, b := range blocks {
		switch b := b.(type) {
		case *goslack.HeaderBlock:
			out["header"] = append(out["header"], b.Text.Text)
		case *goslack.SectionBlock:
			if b.Text != nil {
				out["section"] = append(out["section"], b.Text.Text)
			}
			for _, f := range b.Fields {
				out["field"] = append(out["field"], f.Text)
			}
		case *goslack.ContextBlock:
			for _, e := range b.ContextElements.Elements {
				if tb, ok := e.(*goslack.TextBlockObject); ok {
					out["context"] = append(out["context"], tb.Text)
				}
			}
		}
	}
	return out
}

func allText(m map[string][]string) string {
	var b strings.Builder
	for _, k := range []string{"header", "section", "field", "context"} {
		for _, s := range m[k] {
			b.WriteString(s + "\n")
		}
	}
	return b.String()
}

func TestNotifier_PostUpdateResolve(t *testing.T) {
	t.Parallel()
	fake := routingtest.NewFakeSlack(t, token)
	n := newNotifier(t, fake.URL(), slack.Options{})
	ctx := t.Context()

	ref, retry, err := n.PostParent(ctx, "#incidents", loadIncident(t, "firing"), slack.Extra{Notes: []string{"paged: severity=critical and within business-hours"}})
	require.NoError(t, err)
	require.False(t, retry)
	require.Equal(t, "C0INCIDENTS", ref.Channel)
	require.NotEmpty(t, ref.TS)
	require.Equal(t, "https://fake.slack.com/archives/C0INCIDENTS/p"+strings.ReplaceAll(ref.TS, ".", ""), ref.Permalink)

	msgs := fake.Messages("C0INCIDENTS")
	require.Len(t, msgs, 1)
	firing := allText(blockTexts(t, msgs[0].Blocks))
	require.Contains(t, firing, "FIRING: HighErrorRate")
	require.Contains(t, firing, "paged: severity=critical and within business-hours")
	require.Contains(t, msgs[0].Text, "FIRING: HighErrorRate")

	retry, err = n.UpdateParent(ctx, ref, loadIncident(t, "resolved"), slack.Extra{})
	require.NoError(t, err)
	require.False(t, retry)

	updates := fake.Calls(routingtest.SlackUpdate)
	require.Len(t, updates, 1)
	require.Equal(t, "C0INCIDENTS", updates[0].ChannelArg, "chat.update must use the channel ID")
	require.Equal(t, ref.TS, updates[0].TS)

	msgs = fake.Messages("C0INCIDENTS")
	require.Len(t, msgs, 1, "resolving updates the parent in place, it posts nothing new")
	require.Equal(t, 1, msgs[0].Updates)
	resolved := blockTexts(t, msgs[0].Blocks)
	require.Equal(t, []string{":white_check_mark: RESOLVED: HighErrorRate"}, resolved["header"])
	require.Contains(t, allText(resolved), "RESOLVED after 1h 23m")
	require.Contains(t, msgs[0].Text, "RESOLVED: HighErrorRate")
	require.NotContains(t, allText(resolved), "Silence", "a resolved incident needs no silence")
}

// An incident kept open by a truncated notification (firing, no alert
// firing) says why, not "FIRING · 0 alerts".
func TestNotifier_HeldIncident(t *testing.T) {
	t.Parallel()
	fake := routingtest.NewFakeSlack(t, token)
	n := newNotifier(t, fake.URL(), slack.Options{})
	inc := loadIncident(t, "firing")
	for i := range inc.Alerts {
		inc.Alerts[i].Status = "resolved"
	}
	inc.ResolvedAlerts, inc.FiringAlerts = inc.ResolvedAlerts+inc.FiringAlerts, 0
	_, _, err := n.PostParent(t.Context(), "#incidents", inc, slack.Extra{})
	require.NoError(t, err)
	msgs := fake.Messages("C0INCIDENTS")
	require.Len(t, msgs, 1)
	text := allText(blockTexts(t, msgs[0].Blocks))
	require.Contains(t, text, "FIRING: HighErrorRate")
	require.Contains(t, text, "resolve held: Alertmanager left alerts out")
	require.NotContains(t, text, "0 alerts")
}

func TestNotifier_Reply(t *testing.T) {
	t.Parallel()
	fake := routingtest.NewFakeSlack(t, token)
	n := newNotifier(t, fake.URL(), slack.Options{})
	ctx := t.Context()

	ref, _, err := n.PostParent(ctx, "#incidents", loadIncident(t, "firing"), slack.Extra{})
	require.NoError(t, err)

	ts, retry, err := n.Reply(ctx, ref, "deployed "+slack.Escape("<v1.2.3>")+" 5m ago",
		goslack.NewSectionBlock(goslack.NewTextBlockObject(goslack.MarkdownType, "*Deployments*", false, false), nil, nil))
	require.NoError(t, err)
	require.False(t, retry)
	require.NotEmpty(t, ts)
	require.Greater(t, ts, ref.TS)

	calls := fake.Calls(routingtest.SlackPostMessage)
	require.Len(t, calls, 2)
	require.Equal(t, ref.TS, calls[1].ThreadTS)
	require.Equal(t, "C0INCIDENTS", calls[1].ChannelArg)

	msgs := fake.Messages("C0INCIDENTS")
	require.Len(t, msgs, 1, "a reply is not a new parent")
	require.Len(t, msgs[0].Replies, 1)
	require.Equal(t, "deployed &lt;v1.2.3&gt; 5m ago", msgs[0].Replies[0].Text)
	require.Len(t, msgs[0].Replies[0].Blocks, 1)

	id, retry, err := n.Upload(ctx, ref, slack.File{Name: "latency.png", Title: "p99 latency", Content: []byte("\x89PNG fake")})
	require.NoError(t, err)
	require.False(t, retry)
	require.Equal(t, []byte("\x89PNG fake"), fake.File(id))
	msgs = fake.Messages("C0INCIDENTS")
	require.Len(t, msgs[0].Replies, 2)
	require.Equal(t, []string{id}, msgs[0].Replies[1].FileIDs)
}

func TestNotifier_RateLimited(t *testing.T) {
	t.Parallel()
	fake := routingtest.NewFakeSlack(t, token)
	fake.FailNext(routingtest.SlackPostMessage, 2, routingtest.SlackResponse{Status: 429, RetryAfter: 1})
	n := newNotifier(t, fake.URL(), slack.Options{})
	inc := loadIncident(t, "firing")

	// The caller is the job queue: it retries while told to. The notifier's
	// pacer holds the channel back for Retry-After, so retrying at once is
	// safe and the test need not sleep.
	start := time.Now()
	var ref slack.Ref
	for attempt := 1; ; attempt++ {
		r, retry, err := n.PostParent(t.Context(), "#incidents", inc, slack.Extra{})
		if err == nil {
			ref = r
			require.Equal(t, 3, attempt)
			break
		}
		require.True(t, retry, "a 429 is retried, never dropped")
		var ra *slack.RetryAfterError
		require.ErrorAs(t, err, &ra)
		require.GreaterOrEqual(t, ra.RetryAfter(), time.Second)
		require.Less(t, attempt, 3)
	}
	require.GreaterOrEqual(t, time.Since(start), 2*time.Second, "each retry waited for Retry-After")
	require.NotEmpty(t, ref.TS)
	require.Len(t, fake.Messages("C0INCIDENTS"), 1)
	require.Len(t, fake.Calls(routingtest.SlackPostMessage), 3)
}

func TestNotifier_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		resp      routingtest.SlackResponse
		timeout   time.Duration
		wantRetry bool
		wantCode  string
		wantErr   string
	}{
		{name: "channel_not_found is not retried", resp: routingtest.SlackResponse{Error: "channel_not_found"}, wantCode: "channel_not_found"},
		{name: "invalid_auth is not retried", resp: routingtest.SlackResponse{Error: "invalid_auth"}, wantCode: "invalid_auth"},
		{name: "invalid_blocks is not retried", resp: routingtest.SlackResponse{Error: "invalid_blocks"}, wantCode: "invalid_blocks"},
		{name: "500 is retried", resp: routingtest.SlackResponse{Status: 500}, wantRetry: true, wantErr: "500"},
		{name: "503 is retried", resp: routingtest.SlackResponse{Status: 503}, wantRetry: true},
		{name: "429 without Retry-After is retried", resp: routingtest.SlackResponse{Status: 429}, wantRetry: true},
		{name: "400 is not retried", resp: routingtest.SlackResponse{Status: 400}},
		{name: "deadline is retried", resp: routingtest.SlackResponse{Delay: 5 * time.Second}, timeout: 100 * time.Millisecond, wantRetry: true, wantErr: "slack job timed out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := routingtest.NewFakeSlack(t, token)
			fake.FailNext(routingtest.SlackPostMessage, 1, tt.resp)
			n := newNotifier(t, fake.URL(), slack.Options{})
			ctx := t.Context()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeoutCause(ctx, tt.timeout, errors.New("slack job timed out"))
				defer cancel()
			}
			_, retry, err := n.PostParent(ctx, "#incidents", loadIncident(t, "firing"), slack.Extra{})
			require.Error(t, err)
			require.Equal(t, tt.wantRetry, retry, "error: %v", err)
			require.Equal(t, tt.wantCode, slack.ErrorCode(err))
			require.Contains(t, err.Error(), "post slack message to #incidents")
			require.Contains(t, err.Error(), tt.wantErr)
			if tt.timeout == 0 {
				// A post we gave up on may still land, as with the real
				// Slack; only refused posts must leave nothing.
				require.Empty(t, fake.Messages("C0INCIDENTS"))
			}
		})
	}
}

func TestNotifier_RetryByStatus(t *testing.T) {
	t.Parallel()
	fake := routingtest.NewFakeSlack(t, token)
	n := newNotifier(t, fake.URL(), slack.Options{})
	ref, _, err := n.PostParent(t.Context(), "#incidents", loadIncident(t, "firing"), slack.Extra{})
	require.NoError(t, err)
	for code, want := range routingtest.RetryTests {
		fake.FailNext(routingtest.SlackUpdate, 1, routingtest.SlackResponse{Status: code})
		retry, err := n.UpdateParent(t.Context(), ref, loadIncident(t, "firing"), slack.Extra{})
		if code == http.StatusOK {
			require.NoError(t, err)
			continue
		}
		require.Error(t, err, "status %d", code)
		require.Equal(t, want, retry, "status %d: %v", code, err)
	}
}

func TestNotifier_NetworkError(t *testing.T) {
	t.Parallel()
	fake := routingtest.NewFakeSlack(t, token)
	n := newNotifier(t, fake.URL(), slack.Options{})
	fake.Close()
	_, retry, err := n.PostParent(t.Context(), "#incidents", loadIncident(t, "firing"), slack.Extra{})
	require.Error(t, err)
	require.True(t, retry, "a network error is retried: %v", err)
}

func TestNotifier_NoSecretsInErrors(t *testing.T) {
	t.Parallel()
	const proxyPassword = "pr0xyPassw0rd"
	tests := []struct {
		name  string
		setup func(t *testing.T) (apiURL, tok string)
	}{
		{name: "wrong token", setup: func(t *testing.T) (string, string) {
			return routingtest.NewFakeSlack(t, "xoxb-other").URL(), token
		}},
		{name: "error echoing the token", setup: func(t *testing.T) (string, string) {
			f := routingtest.NewFakeSlack(t, token)
			f.FailNext(routingtest.SlackPostMessage, 1, routingtest.SlackResponse{Error: "invalid_auth: token " + token})
			return f.URL(), token
		}},
		{name: "500", setup: func(t *testing.T) (string, string) {
			f := routingtest.NewFakeSlack(t, token)
			f.FailNext(routingtest.SlackPostMessage, 1, routingtest.SlackResponse{Status: 500})
			return f.URL(), token
		}},
		{name: "429", setup: func(t *testing.T) (string, string) {
			f := routingtest.NewFakeSlack(t, token)
			f.FailNext(routingtest.SlackPostMessage, 1, routingtest.SlackResponse{Status: 429, RetryAfter: 1})
			return f.URL(), token
		}},
		{name: "connection refused with credentials in the API URL", setup: func(t *testing.T) (string, string) {
			f := routingtest.NewFakeSlack(t, token)
			f.Close()
			return strings.Replace(f.URL(), "http://", "http://user:"+proxyPassword+"@", 1) + token + "/", token
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			apiURL, tok := tt.setup(t)
			n := slack.New(tok, apiURL, slack.Options{PostInterval: -1, Logger: slog.New(slog.DiscardHandler)})
			_, _, err := n.PostParent(t.Context(), "#incidents", loadIncident(t, "firing"), slack.Extra{})
			require.Error(t, err)
			for e := err; e != nil; e = errors.Unwrap(e) {
				for _, s := range []string{e.Error(), fmt.Sprintf("%+v", e), fmt.Sprintf("%#v", e)} {
					require.NotContains(t, s, token)
					require.NotContains(t, s, proxyPassword)
				}
			}
		})
	}
}

func TestNotifier_BlockKitLimits(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("x&<y> ", 10*1024/6)
	inc := loadIncident(t, "firing")
	inc.CommonAnnotations = map[string]string{"summary": huge, "description": huge, "runbook_url": "https://runbooks.example/" + huge}
	inc.CommonLabels["alertname"] = strings.Repeat("VeryLongAlertName", 20)
	inc.Alerts = nil
	for i := range 500 {
		inc.Alerts = append(inc.Alerts, incident.Alert{
			Fingerprint:  fmt.Sprintf("%016x", i),
			Status:       incident.StatusFiring,
			Labels:       map[string]string{"alertname": inc.CommonLabels["alertname"], "instance": fmt.Sprintf("web-%d", i), "path": huge},
			Annotations:  map[string]string{"summary": huge + fmt.Sprint(i)},
			StartsAt:     inc.OpenedAt.Add(time.Duration(i) * time.Second),
			GeneratorURL: "http://prometheus.example:9090/graph?g0.expr=" + strings.Repeat("a", 3000),
		})
	}
	inc.FiringAlerts, inc.ResolvedAlerts = 500, 0
	notes := make([]string, 30)
	for i := range notes {
		notes[i] = huge
	}

	for _, status := range []string{incident.StatusFiring, incident.StatusResolved} {
		t.Run(status, func(t *testing.T) {
			t.Parallel()
			fake := routingtest.NewFakeSlack(t, token)
			n := newNotifier(t, fake.URL(), slack.Options{})
			inc := *inc
			inc.Status = status
			if status == incident.StatusResolved {
				at := inc.OpenedAt.Add(time.Hour)
				inc.ResolvedAt = &at
			}
			// The fake rejects invalid blocks as Slack does; posting at all
			// proves the limits hold.
			ref, _, err := n.PostParent(t.Context(), "#incidents", &inc, slack.Extra{Notes: notes})
			require.NoError(t, err)
			msgs := fake.Messages(ref.Channel)
			require.Len(t, msgs, 1)
			m := msgs[0]

			require.LessOrEqual(t, len(m.Blocks), 50)
			require.LessOrEqual(t, utf8.RuneCountInString(m.Text), 40000)
			texts := blockTexts(t, m.Blocks)
			total := 0
			for _, h := range texts["header"] {
				require.LessOrEqual(t, utf8.RuneCountInString(h), 150)
				require.True(t, strings.HasSuffix(h, "…"), "header is cut with an ellipsis")
			}
			for _, s := range texts["section"] {
				require.LessOrEqual(t, utf8.RuneCountInString(s), 3000)
				require.NotRegexp(t, `&[a-z]{0,3}…`, s, "no entity is cut in half")
				total += utf8.RuneCountInString(s)
			}
			for _, f := range texts["field"] {
				require.LessOrEqual(t, utf8.RuneCountInString(f), 2000)
				total += utf8.RuneCountInString(f)
			}
			for _, b := range m.Blocks {
				if c, ok := b.(*goslack.ContextBlock); ok {
					require.LessOrEqual(t, len(c.ContextElements.Elements), 10)
				}
			}
			for _, c := range texts["context"] {
				total += utf8.RuneCountInString(c)
			}
			require.LessOrEqual(t, total, 11000, "all blocks together stay under msg_blocks_too_long")
			body := allText(texts)
			require.Regexp(t, `and \d+ more alerts`, body)
			require.Contains(t, body, "and 21 more notes")
			require.NotContains(t, body, "<y>", "user text is escaped")
		})
	}
}

func TestNotifier_Golden(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"firing", "resolved", "minimal"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fake := routingtest.NewFakeSlack(t, token)
			n := newNotifier(t, fake.URL(), slack.Options{})
			_, _, err := n.PostParent(t.Context(), "#incidents", loadIncident(t, name), slack.Extra{Notes: []string{"routed to incidents: no matcher <matched>"}})
			require.NoError(t, err)
			calls := fake.Calls(routingtest.SlackPostMessage)
			require.Len(t, calls, 1)

			var blocks any
			require.NoError(t, json.Unmarshal([]byte(calls[0].BlocksJSON), &blocks))
			var buf strings.Builder
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			require.NoError(t, enc.Encode(map[string]any{"text": calls[0].Text, "blocks": blocks}))
			got := []byte(buf.String())

			golden := filepath.Join("testdata", name+".golden")
			if *update {
				require.NoError(t, os.WriteFile(golden, got, 0o644)) //nolint:gosec // golden files are checked in
			}
			want, err := os.ReadFile(golden) //nolint:gosec // test fixtures
			require.NoError(t, err)
			require.Equal(t, string(want), string(got))
		})
	}
}

func TestNotifier_Templates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		templates   slack.Templates
		wantHeader  string
		wantSection string
	}{
		{
			name:       "custom title",
			templates:  slack.Templates{Title: `[{{ .Status | toUpper }}:{{ .Alerts.Firing | len }}] {{ .CommonLabels.alertname }} in {{ .CommonLabels.cluster }}`},
			wantHeader: "[FIRING:3] HighErrorRate in eu-1",
		},
		{
			name:       "alertmanager default title",
			templates:  slack.Templates{Title: `{{ template "slack.default.title" . }}`},
			wantHeader: "[FIRING:3] HighErrorRate eu-1 (checkout critical payments <!channel> & co)",
		},
		{
			name:        "custom text",
			templates:   slack.Templates{Text: "{{ range .Alerts.Firing }}• {{ .Labels.instance }}\n{{ end }}"},
			wantHeader:  ":rotating_light: FIRING: HighErrorRate",
			wantSection: "• web-1:8080\n• web-2:8080\n• web-3:8080",
		},
		{
			name:        "broken template falls back to the built-in one",
			templates:   slack.Templates{Title: `{{ .Nope.Nope }}`, Text: `{{ nosuchfunc }}`},
			wantHeader:  ":rotating_light: FIRING: HighErrorRate",
			wantSection: "*Checkout error rate above 5%*",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := routingtest.NewFakeSlack(t, token)
			n := newNotifier(t, fake.URL(), slack.Options{Templates: tt.templates})
			ref, _, err := n.PostParent(t.Context(), "#incidents", loadIncident(t, "firing"), slack.Extra{})
			require.NoError(t, err)
			texts := blockTexts(t, fake.Messages(ref.Channel)[0].Blocks)
			require.Equal(t, []string{tt.wantHeader}, texts["header"])
			if tt.wantSection != "" {
				require.True(t, strings.HasPrefix(texts["section"][0], tt.wantSection), "got %q", texts["section"][0])
			}
		})
	}

	t.Run("WithTemplates shares the notifier", func(t *testing.T) {
		t.Parallel()
		fake := routingtest.NewFakeSlack(t, token)
		base := newNotifier(t, fake.URL(), slack.Options{})
		n := base.WithTemplates(slack.Templates{Title: "custom {{ .CommonLabels.job }}"})
		ref, _, err := n.PostParent(t.Context(), "#incidents", loadIncident(t, "firing"), slack.Extra{})
		require.NoError(t, err)
		require.Equal(t, []string{"custom checkout"}, blockTexts(t, fake.Messages(ref.Channel)[0].Blocks)["header"])
		ref, _, err = base.PostParent(t.Context(), "#incidents", loadIncident(t, "firing"), slack.Extra{})
		require.NoError(t, err)
		require.Equal(t, []string{":rotating_light: FIRING: HighErrorRate"}, blockTexts(t, fake.Messages(ref.Channel)[1].Blocks)["header"])
	})
}

func TestNotifier_Links(t *testing.T) {
	t.Parallel()
	fake := routingtest.NewFakeSlack(t, token)
	n := newNotifier(t, fake.URL(), slack.Options{})
	inc := loadIncident(t, "firing")
	inc.CommonAnnotations["runbook_url"] = "javascript:alert(1)"
	ref, _, err := n.PostParent(t.Context(), "#incidents", inc, slack.Extra{})
	require.NoError(t, err)
	ctx := strings.Join(blockTexts(t, fake.Messages(ref.Channel)[0].Blocks)["context"], "\n")
	require.NotContains(t, ctx, "javascript:", "only http(s) links are rendered")
	require.Contains(t, ctx, "<http://responder.example:9096/api/v1/incidents/42|:link: Incident>")
	require.Contains(t, ctx, "<http://alertmanager.example:9093/#/silences/new?filter=%7Balertname%3D%22HighErrorRate%22%2C%20cluster%3D%22eu-1%22%2C%20job%3D%22checkout%22%2C%20severity%3D%22critical%22%2C%20team%3D%22payments%20%3C%21channel%3E%20%26%20co%22%7D|:no_bell: Silence>")
}

func TestPacer(t *testing.T) {
	t.Parallel()
	const interval = 50 * time.Millisecond
	tests := []struct {
		name string
		run  func(t *testing.T, p *slack.Pacer)
	}{
		{name: "five calls to one channel take four intervals", run: func(t *testing.T, p *slack.Pacer) {
			start := time.Now()
			for range 5 {
				require.NoError(t, p.Wait(t.Context(), "C1"))
			}
			require.Equal(t, 4*interval, time.Since(start))
		}},
		{name: "channels are independent", run: func(t *testing.T, p *slack.Pacer) {
			start := time.Now()
			var wg sync.WaitGroup
			for _, ch := range []string{"C1", "C2"} {
				wg.Go(func() {
					for range 3 {
						require.NoError(t, p.Wait(t.Context(), ch))
					}
				})
			}
			wg.Wait()
			require.Equal(t, 2*interval, time.Since(start))
		}},
		{name: "cancelled wait gives its slot back", run: func(t *testing.T, p *slack.Pacer) {
			require.NoError(t, p.Wait(t.Context(), "C1"))
			ctx, cancel := context.WithTimeoutCause(t.Context(), interval/5, errors.New("give up"))
			defer cancel()
			require.EqualError(t, p.Wait(ctx, "C1"), "give up")
			start := time.Now()
			require.NoError(t, p.Wait(t.Context(), "C1"))
			require.Equal(t, interval-interval/5, time.Since(start))
		}},
		{name: "Defer holds the channel back", run: func(t *testing.T, p *slack.Pacer) {
			start := time.Now()
			p.Defer("C1", 3*time.Second)
			require.NoError(t, p.Wait(t.Context(), "C2"))
			require.Zero(t, time.Since(start))
			require.NoError(t, p.Wait(t.Context(), "C1"))
			require.Equal(t, 3*time.Second, time.Since(start))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) { tt.run(t, slack.NewPacer(interval)) })
		})
	}
}

func TestNotifier_Pacing(t *testing.T) {
	t.Parallel()
	// Real time and sockets, so only generous bounds: the exact timing is
	// TestPacer's, under synctest.
	const interval = 100 * time.Millisecond
	fake := routingtest.NewFakeSlack(t, token)
	n := newNotifier(t, fake.URL(), slack.Options{PostInterval: interval})
	inc := loadIncident(t, "minimal")

	start := time.Now()
	var wg sync.WaitGroup
	for _, ch := range []string{"#incidents", "#other"} {
		wg.Go(func() {
			ref, _, err := n.PostParent(t.Context(), ch, inc, slack.Extra{})
			require.NoError(t, err)
			// By name once the ID is known, and by ID: one pace.
			for range 2 {
				_, _, err := n.PostParent(t.Context(), ch, inc, slack.Extra{})
				require.NoError(t, err)
			}
			for range 2 {
				_, err := n.UpdateParent(t.Context(), ref, inc, slack.Extra{})
				require.NoError(t, err)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	require.GreaterOrEqual(t, elapsed, 4*interval, "five calls to one channel take four intervals")
	require.Less(t, elapsed, 8*interval, "two channels do not wait for each other (shared, it would take nine intervals)")
	require.Len(t, fake.Calls(routingtest.SlackPostMessage), 6)
	require.Len(t, fake.Calls(routingtest.SlackUpdate), 4)
}

func TestNotifier_Check(t *testing.T) {
	t.Parallel()
	fake := routingtest.NewFakeSlack(t, token)
	retry, err := newNotifier(t, fake.URL(), slack.Options{}).Check(t.Context())
	require.NoError(t, err)
	require.False(t, retry)

	n := slack.New("xoxb-wrong", strings.TrimSuffix(fake.URL(), "/"), slack.Options{})
	retry, err = n.Check(t.Context())
	require.False(t, retry)
	require.Equal(t, "invalid_auth", slack.ErrorCode(err))
}

func TestEscape(t *testing.T) {
	t.Parallel()
	require.Equal(t, "a &amp; &lt;!channel&gt;", slack.Escape("a & <!channel>"))
	require.Equal(t, "plain", slack.Escape("plain"))
	require.Empty(t, slack.Escape(""))
}

func TestTruncateEscaped(t *testing.T) {
	// "a < b" escapes to "a &lt; b": no cut leaves a partial entity, and
	// the result is at most n characters.
	esc := slack.Escape(strings.Repeat("a < b & ü ", 20))
	for n := 1; n < 60; n++ {
		got := slack.TruncateEscaped(esc, n)
		require.LessOrEqual(t, utf8.RuneCountInString(got), n, "n=%d", n)
		body := strings.TrimSuffix(got, "…")
		require.Equal(t, strings.Count(body, "&"), strings.Count(body, ";"), "n=%d: a cut entity in %q", n, got)
		require.True(t, strings.HasPrefix(esc, body), "n=%d", n)
	}
	require.Equal(t, "a &amp; b", slack.TruncateEscaped("a &amp; b", 9))
	require.Equal(t, "a …", slack.TruncateEscaped("a &amp; b", 5))
}
