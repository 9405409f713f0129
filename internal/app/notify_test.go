package app_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/routing/routingtest"
	"github.com/responder/responder/internal/testenv"
)

// notifyRoutingKey is a PagerDuty integration key as the fake accepts it
// (32 characters).
const notifyRoutingKey = "0123456789abcdef0123456789abcdef"

// TestApp_NotifyEndToEnd runs a real Alertmanager in front of responder,
// which routes each incident once and keeps a Slack message and a
// PagerDuty alert in step with it, through fakes of both services.
func TestApp_NotifyEndToEnd(t *testing.T) {
	t.Parallel()
	testenv.Binary(t, testenv.AlertmanagerEnv, testenv.AlertmanagerNames...)
	slackToken := "xoxb-" + rand.Text()
	fakeSlack := routingtest.NewFakeSlack(t, slackToken)
	fakePD := routingtest.NewFakePagerDuty(t)
	token := rand.Text()
	r := startE2EResponder(t, fmt.Sprintf(`
global:
  external_url: http://responder.example:9096
  slack_api_url: %q
  slack_bot_token: %q
  pagerduty_events_url: %q
storage:
  dsn: sqlite://%s
  queue:
    min_backoff: 100ms
    max_backoff: 1s
    poll_interval: 100ms
webhook:
  authorization:
    credentials: %q
time_intervals:
  - name: always
    time_intervals:
      - weekdays: ['monday:sunday']
  - name: never
    time_intervals:
      - years: ['2000']
route:
  receiver: incidents
  routes:
    - matchers: ['severity="critical"', 'case!="muted"']
      receiver: pagerduty
      active_time_intervals: [always]
      continue: true
    - matchers: ['severity="critical"', 'case="muted"']
      receiver: pagerduty
      active_time_intervals: [never]
      continue: true
    - receiver: incidents
receivers:
  - name: incidents
    slack_configs: [{ channel: '#incidents' }]
  - name: pagerduty
    pagerduty_configs: [{ routing_key: %q }]
`, fakeSlack.URL(), slackToken, fakePD.URL(), filepath.Join(t.TempDir(), "responder.db"), token, notifyRoutingKey), token)
	channel := fakeSlack.AddChannel("#incidents")

	am := testenv.StartAlertmanager(t, amWebhookConfig("http://"+r.addr+"/webhook/alertmanager", token, "['alertname']", "1s", ""))

	// parents returns the Slack parent messages of an alertname.
	parents := func(alertname string) []routingtest.SlackMessage {
		var out []routingtest.SlackMessage
		for _, m := range fakeSlack.Messages(channel) {
			if strings.Contains(m.Text, alertname) {
				out = append(out, m)
			}
		}
		return out
	}
	// events returns the PagerDuty events of a dedup key, by action.
	events := func(key string) map[string]int {
		out := map[string]int{}
		for _, ev := range fakePD.Events() {
			if ev.DedupKey == key {
				out[ev.EventAction]++
			}
		}
		return out
	}
	// firing waits for the incident of an alertname and returns it.
	firing := func(t *testing.T, alertname string) incident.Incident {
		t.Helper()
		var inc incident.Incident
		r.eventually(t, "an incident for "+alertname, func() (bool, any, error) {
			list, err := r.incidents(t.Context(), incident.StatusFiring)
			if err != nil {
				return false, nil, err
			}
			var ok bool
			inc, ok = e2eFindByAlertname(list, alertname)
			return ok, list, nil
		})
		return inc
	}
	post := func(t *testing.T, alertname, kase string, endsAt time.Time) {
		t.Helper()
		am.PostAlerts(t, []testenv.PostableAlert{{
			Labels:   map[string]string{"alertname": alertname, "severity": "critical", "case": kase, "instance": "a:9100"},
			StartsAt: time.Now().Add(-time.Minute).UTC().Truncate(time.Second),
			EndsAt:   endsAt,
		}})
	}

	// Sequential, before the others: the scripted 429 must meet this
	// case's post.
	t.Run("429 is retried after Retry-After", func(t *testing.T) {
		const alertname = "E2ENotifyRateLimited"
		fakeSlack.FailNext(routingtest.SlackPostMessage, 1, routingtest.SlackResponse{Status: 429, RetryAfter: 1})
		post(t, alertname, "retry", time.Time{})
		inc := firing(t, alertname)
		r.eventually(t, "the slack message posted", func() (bool, any, error) {
			return len(parents(alertname)) == 1, fakeSlack.Calls(routingtest.SlackPostMessage), nil
		})
		var limited int
		for _, c := range fakeSlack.Calls(routingtest.SlackPostMessage) {
			if c.Status == 429 {
				limited++
			}
		}
		require.Equal(t, 1, limited, "the first post was rate limited")
		require.Len(t, parents(alertname), 1, "posted exactly once")
		r.eventually(t, "the delivery recorded as posted", func() (bool, any, error) {
			got, err := r.incident(t.Context(), inc.ID)
			for _, d := range got.Deliveries {
				if d.Integration == incident.IntegrationSlack {
					return d.LastAction == "posted" && d.TS != "", got.Deliveries, err
				}
			}
			return false, got.Deliveries, err
		})
	})

	t.Run("critical pages and posts, then resolves both", func(t *testing.T) {
		t.Parallel()
		const alertname = "E2ENotifyCritical"
		post(t, alertname, "page", time.Time{})
		inc := firing(t, alertname)
		sum := sha256.Sum256([]byte(inc.GroupKey))
		key := hex.EncodeToString(sum[:])

		r.eventually(t, "one slack parent and one pagerduty trigger", func() (bool, any, error) {
			return len(parents(alertname)) == 1 && events(key)["trigger"] == 1, events(key), nil
		})
		parent := parents(alertname)[0]

		post(t, alertname, "page", time.Now().Add(-time.Second).UTC().Truncate(time.Second))
		r.eventually(t, "the slack parent updated and the pagerduty alert resolved", func() (bool, any, error) {
			m := parents(alertname)
			return len(m) == 1 && m[0].Updates == 1 && events(key)["resolve"] == 1, events(key), nil
		})
		var updates []routingtest.SlackCall
		for _, c := range fakeSlack.Calls(routingtest.SlackUpdate) {
			if c.TS == parent.TS {
				updates = append(updates, c)
			}
		}
		require.Len(t, updates, 1)
		require.Equal(t, parent.Channel, updates[0].Channel)
		require.Contains(t, updates[0].Text+updates[0].BlocksJSON, "RESOLVED")
		require.Equal(t, map[string]int{"trigger": 1, "resolve": 1}, events(key))
		require.Len(t, parents(alertname), 1)
		require.NotContains(t, fakePD.OpenKeys(), key)

		var got incident.Incident
		r.eventually(t, "both deliveries recorded", func() (bool, any, error) {
			var err error
			got, err = r.incident(t.Context(), inc.ID)
			if err != nil || len(got.Deliveries) != 2 {
				return false, got, err
			}
			return got.Deliveries[0].SyncedVersion == got.Version && got.Deliveries[1].SyncedVersion == got.Version, got.Deliveries, nil
		})
		require.NotNil(t, got.Context, "the context was gathered")
		for _, r := range parents(alertname)[0].Replies {
			require.NotContains(t, r.Text, "Incident context", "every source found nothing: no context reply takes a slot of the channel's pace")
		}
		require.Len(t, got.Decisions, 1)
		require.Equal(t, incident.DecisionRoute, got.Decisions[0].Kind)
		require.Contains(t, got.Decisions[0].Summary, "receivers: pagerduty, incidents")
		require.Contains(t, got.Decisions[0].Summary, "active in always")
		byIntegration := map[string]incident.Dispatch{}
		for _, d := range got.Deliveries {
			byIntegration[d.Integration] = d
		}
		sd, pd := byIntegration[incident.IntegrationSlack], byIntegration[incident.IntegrationPagerDuty]
		require.Equal(t, "#incidents", sd.Target)
		require.Equal(t, parent.Channel, sd.ChannelID)
		require.Equal(t, parent.TS, sd.TS)
		require.Equal(t, "updated", sd.LastAction)
		require.Equal(t, key, pd.Target)
		require.Equal(t, "resolve", pd.LastAction)
		require.Empty(t, pd.LastError)
	})

	t.Run("outside the active interval only slack", func(t *testing.T) {
		t.Parallel()
		const alertname = "E2ENotifyMuted"
		post(t, alertname, "muted", time.Time{})
		inc := firing(t, alertname)
		var got incident.Incident
		r.eventually(t, "the slack delivery posted", func() (bool, any, error) {
			var err error
			got, err = r.incident(t.Context(), inc.ID)
			return err == nil && len(got.Deliveries) == 1 && got.Deliveries[0].LastAction == "posted", got, err
		})
		require.Len(t, parents(alertname), 1)
		require.Equal(t, incident.IntegrationSlack, got.Deliveries[0].Integration)
		sum := sha256.Sum256([]byte(inc.GroupKey))
		require.Empty(t, events(hex.EncodeToString(sum[:])), "no pagerduty event")
		require.Len(t, got.Decisions, 1)
		require.Contains(t, got.Decisions[0].Summary, "receivers: incidents; muted: pagerduty")
		require.Contains(t, got.Decisions[0].Summary, "outside active time interval never")
	})
}
