package app_test

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/routing/routingtest"
	"github.com/responder/responder/internal/webhook"
)

// amPayload is a version 4 webhook body for one alert.
func amPayload(alertname, status string, labels map[string]string) string {
	l := map[string]string{"alertname": alertname, "auto_remediation": "enabled"}
	maps.Copy(l, labels)
	ends := "0001-01-01T00:00:00Z"
	if status == "resolved" {
		ends = time.Now().UTC().Format(time.RFC3339)
	}
	a := map[string]any{
		"status": status, "labels": l, "annotations": map[string]string{}, "startsAt": "2026-01-01T00:00:00Z", "endsAt": ends,
		"generatorURL": "", "fingerprint": alertname,
	}
	b, _ := json.Marshal(map[string]any{
		"version": "4", "groupKey": "{}:{alertname=\"" + alertname + "\"}", "truncatedAlerts": 0, "status": status,
		"receiver": "incidents", "groupLabels": map[string]string{"alertname": alertname}, "commonLabels": l, "commonAnnotations": map[string]string{},
		"externalURL": "http://am", "alerts": []any{a},
	})
	return string(b)
}

// TestRemediation_ApprovalVerifyResolve drives approvals through signed
// Slack interactions, a failed verification into a PagerDuty escalation,
// and a resolve into the cancellation of the remaining steps.
func TestRemediation_ApprovalVerifyResolve(t *testing.T) {
	t.Parallel()
	const secret = "slack-signing-secret"
	token := rand.Text()
	fs := routingtest.NewFakeSlack(t, "xoxb-test")
	fs.AddChannel("#incidents")
	pd := routingtest.NewFakePagerDuty(t)
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[]}}`))
	}))
	defer prom.Close()
	dir := t.TempDir()
	approveDir, verifyDir, resolveDir, resolveDir2 := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	rbDir := filepath.Join(dir, "runbooks")
	require.NoError(t, os.MkdirAll(rbDir, 0o750))
	mk := func(d string) string {
		return fmt.Sprintf("exec: { command: /usr/bin/mktemp, args: ['-p', %q, 'run.XXXXXX'] }", d)
	}
	for name, text := range map[string]string{
		"approve": "name: approve\nmatch: ['alertname=\"ApproveMe\"']\nguards: { require_approval: true }\nsteps:\n  - name: mark\n    " + mk(approveDir) + "\n",
		"verify":  "name: verify\nmatch: ['alertname=\"VerifyMe\"']\nsteps:\n  - name: mark\n    " + mk(verifyDir) + "\nverify: { query: 'up == 1', within: 6s, interval: 1s }\n",
		"resolve": "name: resolve\nmatch: ['alertname=\"ResolveMe\"']\nsteps:\n  - name: first\n    " + mk(resolveDir) + "\n  - name: pause\n    wait: { duration: 1m }\n  - name: second\n    " + mk(resolveDir2) + "\n",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(rbDir, name+".yaml"), []byte(text), 0o600))
	}
	r := startE2EResponder(t, fmt.Sprintf(`
global:
  slack_api_url: %q
  slack_bot_token: xoxb-test
  slack_signing_secret: %q
  pagerduty_events_url: %q
  prometheus_url: %q
storage:
  dsn: sqlite://%s
webhook:
  authorization: { credentials: %q }
route:
  receiver: incidents
receivers:
  - name: incidents
    slack_configs: [{ channel: '#incidents' }]
  - name: oncall
    pagerduty_configs: [{ routing_key: %q }]
remediation:
  dry_run: false
  runbooks_dir: %s
  approvers: [U0APPROVER]
  escalation_receiver: oncall
`, fs.URL(), secret, pd.URL(), prom.URL, filepath.Join(dir, "responder.db"), token, strings.Repeat("k", 32), rbDir), token)

	postWebhook := func(body string) {
		t.Helper()
		code, resp := post(t, "http://"+r.addr+"/webhook/alertmanager", token, body)
		require.Equal(t, http.StatusOK, code, resp)
	}
	runOf := func(alertname string, done func(incident.RemediationRun) bool) incident.RemediationRun {
		t.Helper()
		return remediationRun(t, r, alertname, done)
	}
	count := func(d string) int {
		entries, err := os.ReadDir(d)
		require.NoError(t, err)
		return len(entries)
	}
	interact := func(ts int64, sig, user string, runID int64) int {
		payload := fmt.Sprintf(`{"type":"block_actions","user":{"id":%q},"actions":[{"action_id":%q,"value":"%d"}]}`, user, webhook.ActionApprove, runID)
		body := "payload=" + url.QueryEscape(payload)
		if sig == "" {
			sig = webhook.SignSlackRequest(secret, ts, []byte(body))
		}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+r.addr+"/slack/interactions", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
		req.Header.Set("X-Slack-Signature", sig)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}

	t.Run("approval", func(t *testing.T) {
		postWebhook(amPayload("ApproveMe", "firing", nil))
		run := runOf("ApproveMe", func(run incident.RemediationRun) bool {
			for _, a := range run.Audit {
				if a.Outcome == "approval_requested" {
					return true
				}
			}
			return false
		})
		require.Equal(t, incident.RunAwaitingApproval, run.State)
		var asked bool
		for _, c := range fs.Calls(routingtest.SlackPostMessage) {
			asked = asked || (c.ThreadTS != "" && strings.Contains(c.BlocksJSON, webhook.ActionApprove))
		}
		require.True(t, asked, "the approval buttons are posted in the incident's thread")

		now := time.Now().Unix()
		require.Equal(t, http.StatusUnauthorized, interact(now, webhook.SignSlackRequest("forged", now, []byte("x")), "U0APPROVER", run.ID))
		require.Equal(t, http.StatusUnauthorized, interact(now-600, "", "U0APPROVER", run.ID), "stale")
		require.Equal(t, http.StatusOK, interact(now, "", "U0INTRUDER", run.ID))
		time.Sleep(500 * time.Millisecond) // nothing may start; give it the chance
		require.Zero(t, count(approveDir), "nothing runs without a valid approval")
		require.Equal(t, http.StatusOK, interact(now, "", "U0APPROVER", run.ID))
		require.Equal(t, http.StatusOK, interact(now, "", "U0APPROVER", run.ID))
		run = runOf("ApproveMe", func(run incident.RemediationRun) bool { return !run.Active() })
		require.Equal(t, incident.RunSucceeded, run.State, "%+v", run)
		require.Equal(t, "U0APPROVER", run.ApprovedBy)
		require.Equal(t, 1, count(approveDir), "two clicks, one run")
		outcomes := []string{}
		for _, a := range run.Audit {
			outcomes = append(outcomes, a.Outcome)
		}
		require.Contains(t, outcomes, "refused_approver")
		require.Contains(t, outcomes, "ignored")
	})

	t.Run("verification failure escalates", func(t *testing.T) {
		postWebhook(amPayload("VerifyMe", "firing", nil))
		run := runOf("VerifyMe", func(run incident.RemediationRun) bool { return run.Escalated })
		require.Equal(t, incident.RunFailed, run.State)
		require.Contains(t, run.Reason, "verification did not hold")
		require.Equal(t, 1, count(verifyDir))
		r.eventually(t, "a PagerDuty trigger", func() (bool, any, error) {
			for _, ev := range pd.Events() {
				if ev.EventAction == "trigger" && ev.Payload != nil && strings.Contains(ev.Payload.Summary, "Remediation failed") {
					return true, ev, nil
				}
			}
			return false, pd.Events(), nil
		})
		r.eventually(t, "Slack saying what was tried", func() (bool, any, error) {
			for _, c := range fs.Calls(routingtest.SlackPostMessage) {
				if strings.Contains(c.Text, "Tried:") && strings.Contains(c.Text, "PagerDuty") {
					return true, c.Text, nil
				}
			}
			return false, nil, nil
		})
	})

	t.Run("resolve cancels the remaining steps", func(t *testing.T) {
		postWebhook(amPayload("ResolveMe", "firing", nil))
		runOf("ResolveMe", func(run incident.RemediationRun) bool { return run.NextStep >= 1 })
		postWebhook(amPayload("ResolveMe", "resolved", nil))
		run := runOf("ResolveMe", func(run incident.RemediationRun) bool { return !run.Active() })
		require.Equal(t, incident.RunCancelled, run.State)
		require.Contains(t, run.Reason, "resolved")
		require.Equal(t, 1, count(resolveDir))
		require.Zero(t, count(resolveDir2), "the step after the resolve never ran")
	})
}
