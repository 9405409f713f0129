package app_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/routing/routingtest"
)

// lostPostConfig routes everything to one Slack channel through fakeURL.
func lostPostConfig(fakeURL, slackToken, dbPath string) string {
	return fmt.Sprintf(`
global:
  slack_api_url: %q
  slack_bot_token: %q
storage:
  dsn: sqlite://%s
  queue:
    lease: 2s
    min_backoff: 100ms
    max_backoff: 500ms
    poll_interval: 100ms
webhook:
  authorization:
    credentials: %q
route:
  receiver: incidents
receivers:
  - name: incidents
    slack_configs: [{ channel: '#incidents' }]
`, fakeURL, slackToken, dbPath, crashToken)
}

// slackDelivery returns the Slack delivery of the incident of groupKey.
func slackDelivery(ctx context.Context, get func(context.Context, string, any) error, groupKey string) (*incident.Dispatch, error) {
	var list struct {
		Incidents []incident.Incident `json:"incidents"`
	}
	if err := get(ctx, "/api/v1/incidents", &list); err != nil {
		return nil, err
	}
	for _, inc := range list.Incidents {
		if inc.GroupKey != groupKey {
			continue
		}
		var full incident.Incident
		if err := get(ctx, fmt.Sprintf("/api/v1/incidents/%d", inc.ID), &full); err != nil {
			return nil, err
		}
		for i := range full.Deliveries {
			if full.Deliveries[i].Integration == incident.IntegrationSlack {
				return &full.Deliveries[i], nil
			}
		}
	}
	return nil, nil
}

// TestApp_SlackLostAnswerPostsOnce: Slack posts the parent but its answer
// is lost (the connection drops), or is ok:false internal_error or
// fatal_error, which Slack says may follow a request carried out in part.
// The retry finds the post in the channel's history by its metadata and
// adopts it instead of posting a second parent.
func TestApp_SlackLostAnswerPostsOnce(t *testing.T) {
	t.Parallel()
	for name, resp := range map[string]routingtest.SlackResponse{
		"lost":           {Lost: true},
		"internal_error": {ErrorAfter: "internal_error"},
		"fatal_error":    {ErrorAfter: "fatal_error"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			slackToken := "xoxb-" + rand.Text()
			fake := routingtest.NewFakeSlack(t, slackToken)
			channel := fake.AddChannel("#incidents")
			fake.FailNext(routingtest.SlackPostMessage, 1, resp)
			r := startE2EResponder(t, lostPostConfig(fake.URL(), slackToken, filepath.Join(t.TempDir(), "responder.db")), crashToken)

			body, g := crashPayload(t, 1)
			code, out := post(t, "http://"+r.addr+"/webhook/alertmanager", crashToken, string(body))
			require.Equal(t, http.StatusOK, code, out)

			var d *incident.Dispatch
			r.eventually(t, "the delivery has the parent's ts", func() (bool, any, error) {
				var err error
				d, err = slackDelivery(t.Context(), r.get, g.groupKey)
				return err == nil && d != nil && d.TS != "", d, err
			})
			msgs := fake.Messages(channel)
			require.Equal(t, 1, len(msgs), "one parent, however the first answer went") //nolint:testifylint // the messages are too long to print
			require.Equal(t, msgs[0].TS, d.TS, "the delivery adopted the post that went through")
			require.Equal(t, "posted", d.LastAction)
			require.Len(t, fake.Calls(routingtest.SlackPostMessage), 1)
			require.NotEmpty(t, fake.Calls(routingtest.SlackHistory), "the retry searched the history")
			require.Contains(t, msgs[0].Metadata, `"key":"delivery-`, "the post carries its key")
		})
	}
}

// TestApp_SlackPostCrashPostsOnce kills responder while Slack is carrying
// out its post; the post goes through without anyone to hear the answer.
// After a restart the delivery's job is taken over once its lease expires,
// finds the post, and does not post again.
func TestApp_SlackPostCrashPostsOnce(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and kills a responder process")
	}
	slackToken := "xoxb-" + rand.Text()
	fake := routingtest.NewFakeSlack(t, slackToken)
	channel := fake.AddChannel("#incidents")
	fake.FailNext(routingtest.SlackPostMessage, 1, routingtest.SlackResponse{Delay: 3 * time.Second})

	bin := buildCrashBinary(t)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "responder.yml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(lostPostConfig(fake.URL(), slackToken, filepath.Join(dir, "responder.db"))), 0o600))

	p1 := startCrashProcess(t, bin, cfgFile)
	body, g := crashPayload(t, 2)
	res := crashPost(t.Context(), p1.client, p1.addr, body)
	require.Equal(t, http.StatusOK, res.code, res.body)
	require.Eventually(t, func() bool {
		d, err := slackDelivery(t.Context(), p1.get, g.groupKey)
		return err == nil && d != nil && d.LastAction == "posting" && fake.Started(routingtest.SlackPostMessage) == 1
	}, crashWait, 20*time.Millisecond, "the post did not reach Slack")
	require.NoError(t, p1.cmd.Process.Kill())
	p1.wait(t)

	// The fake finishes the post after its delay although the caller is
	// gone.
	require.Eventually(t, func() bool { return len(fake.Messages(channel)) == 1 }, 10*time.Second, 20*time.Millisecond)

	p2 := startCrashProcess(t, bin, cfgFile)
	var d *incident.Dispatch
	require.Eventually(t, func() bool {
		var err error
		d, err = slackDelivery(t.Context(), p2.get, g.groupKey)
		return err == nil && d != nil && d.TS != ""
	}, crashWait, 50*time.Millisecond, "the delivery never got its ts:\n%s", p2.log.tail())
	msgs := fake.Messages(channel)
	require.Len(t, msgs, 1, "the restarted process found the post instead of posting again")
	require.Equal(t, msgs[0].TS, d.TS)
	require.Len(t, fake.Calls(routingtest.SlackPostMessage), 1, "one chat.postMessage in all")
	require.Equal(t, 1, msgs[0].Updates, "the found post was brought up to date in place")
}
