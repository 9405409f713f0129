package app_test

import (
	"crypto/rand"
	"fmt"
	"net/http"
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

// markStep is a runbook step that creates a file in dir: the test counts
// the files to know how often the step ran.
func markStep(name, dir string) string {
	return fmt.Sprintf("  - name: %s\n    exec: { command: /usr/bin/mktemp, args: ['-p', %q, 'run.XXXXXX'] }\n", name, dir)
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	return len(entries)
}

// TestRemediation_ReloadStopsActiveRuns: docs/runbooks.md lists
// `remediation.enabled: false` and `dry_run: true` (global or the
// runbook's), followed by a reload, among the ways to stop everything; a
// run already executing stops before its next step, as for a pause. So it
// does when the kill switch file appears, or remediation is paused, while
// the run waits (global "" is no reload). Anything at the kill switch's
// path counts, a dangling symbolic link (a ConfigMap mount's) or a
// directory too, and so does a path that cannot be checked.
func TestRemediation_ReloadStopsActiveRuns(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, global, runbookPrefix, reason string }{
		{"enabled false", "enabled: false", "", "remediation.enabled: false"},
		{"global dry run", "dry_run: true", "", "remediation.dry_run: true"},
		{"runbook dry run", "dry_run: false", "dry_run: true\n", "was switched to dry-run"},
		{"runbook edited", "dry_run: false", "description: edited\n", "changed since the run was admitted"},
		{"kill switch", "", "", "kill switch file"},
		{"kill switch dangling symlink", "", "", "exists (a symbolic link whose target cannot be reached): remediation is stopped"},
		{"kill switch directory", "", "", "exists (a directory): remediation is stopped"},
		{"kill switch cannot be checked", "", "", "cannot be checked (not a directory), so remediation is stopped"},
		{"pause", "", "", "remediation was paused by alice (deploy freeze)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			token := rand.Text()
			dir, first, second := t.TempDir(), t.TempDir(), t.TempDir()
			rbDir := filepath.Join(dir, "runbooks")
			require.NoError(t, os.MkdirAll(rbDir, 0o750))
			rb := "name: slow\nmatch: ['alertname=\"Slow\"']\nsteps:\n" + markStep("first", first) +
				"  - name: pause\n    wait: { duration: 2s }\n" + markStep("second", second)
			rbFile := filepath.Join(rbDir, "slow.yaml")
			require.NoError(t, os.WriteFile(rbFile, []byte(rb), 0o600))
			stop := filepath.Join(dir, "stop")
			if tc.name == "kill switch cannot be checked" {
				// A regular file where its directory should be.
				stop = filepath.Join(dir, "switches", "stop")
			}
			cfg := func(remediation string) string {
				return fmt.Sprintf("storage:\n  dsn: sqlite://%s\nwebhook:\n  authorization: { credentials: %q }\nremediation:\n  %s\n  runbooks_dir: %s\n  kill_switch_file: %s\n",
					filepath.Join(dir, "responder.db"), token, remediation, rbDir, stop)
			}
			r, a, cfgFile := startE2EApp(t, cfg("dry_run: false"), token)
			code, body := post(t, "http://"+r.addr+"/webhook/alertmanager", token, amPayload("Slow", "firing", nil))
			require.Equal(t, http.StatusOK, code, body)
			// In the wait: its start is recorded, its end is 2 s away.
			remediationRun(t, r, "Slow", func(run incident.RemediationRun) bool { return stepAudit(run, 1, incident.AuditStart) != nil })
			require.Equal(t, 1, countFiles(t, first))

			switch tc.name {
			case "kill switch":
				require.NoError(t, os.WriteFile(stop, nil, 0o600))
			case "kill switch dangling symlink":
				require.NoError(t, os.Symlink(filepath.Join(dir, "..data", "stop"), stop))
			case "kill switch directory":
				require.NoError(t, os.Mkdir(stop, 0o750))
			case "kill switch cannot be checked":
				require.NoError(t, os.WriteFile(filepath.Dir(stop), nil, 0o600))
			case "pause":
				code, body := post(t, "http://"+r.addr+"/api/v1/remediation/pause", token, `{"by": "alice", "comment": "deploy freeze"}`)
				require.Equal(t, http.StatusOK, code, body)
			default:
				require.NoError(t, os.WriteFile(rbFile, []byte(tc.runbookPrefix+rb), 0o600))
				require.NoError(t, os.WriteFile(cfgFile, []byte(cfg(tc.global)), 0o600))
				require.NoError(t, a.Reload())
			}

			run := remediationRun(t, r, "Slow", func(run incident.RemediationRun) bool { return !run.Active() })
			require.Equal(t, incident.RunCancelled, run.State, "%+v", run)
			require.Contains(t, run.Reason, tc.reason)
			require.Zero(t, countFiles(t, second), "the step after the reload never ran")
			// The wait it was in has its end: no step of the audit trail
			// is left started and never ended.
			end := stepAudit(run, 1, incident.AuditEnd)
			require.NotNil(t, end, "the wait's end is audited: %+v", run.Audit)
			require.Equal(t, "cancelled", end.Outcome)
			require.Equal(t, "pause", end.Step)
			require.Equal(t, run.Reason, end.Output)
			require.Nil(t, stepAudit(run, 2, incident.AuditStart))
		})
	}
}

// stepAudit returns the run's audit record of that phase for step i.
func stepAudit(run incident.RemediationRun, i int, phase string) *incident.AuditRecord {
	for k := range run.Audit {
		if a := &run.Audit[k]; a.StepIndex == i && a.Phase == phase {
			return a
		}
	}
	return nil
}

// approvalConfig is a configuration whose incidents post to Slack (fs) and
// whose runbooks (in rbDir) execute, approved by U0APPROVER; remediation
// is one more line of the remediation section. Storage is in dir.
func approvalConfig(fs *routingtest.FakeSlack, secret, dir, token, rbDir, remediation string) string {
	return fmt.Sprintf(`
global:
  slack_api_url: %q
  slack_bot_token: xoxb-test
  slack_signing_secret: %q
storage:
  dsn: sqlite://%s
webhook:
  authorization: { credentials: %q }
route:
  receiver: incidents
receivers:
  - name: incidents
    slack_configs: [{ channel: '#incidents' }]
remediation:
  dry_run: false
  runbooks_dir: %s
  approvers: [U0APPROVER]
  %s
`, fs.URL(), secret, filepath.Join(dir, "responder.db"), token, rbDir, remediation)
}

// TestRemediation_RunsTheApprovedPlan: the approver approves the steps shown
// in Slack. If a reload changes the runbook while the request is open, the
// approval does not start the new steps: the run is cancelled. A runbook
// whose steps cannot all be rendered for the alert is refused before any
// step runs, dry run or not.
func TestRemediation_RunsTheApprovedPlan(t *testing.T) {
	t.Parallel()
	const secret = "slack-signing-secret"
	token := rand.Text()
	fs := routingtest.NewFakeSlack(t, "xoxb-test")
	fs.AddChannel("#incidents")
	dir, shown, other, before := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	rbDir := filepath.Join(dir, "runbooks")
	require.NoError(t, os.MkdirAll(rbDir, 0o750))
	approval := func(step, d string) string {
		return "name: appr\nmatch: ['alertname=\"Appr\"']\nguards: { require_approval: true }\nsteps:\n" + markStep(step, d)
	}
	apprFile := filepath.Join(rbDir, "appr.yaml")
	require.NoError(t, os.WriteFile(apprFile, []byte(approval("harmless", shown)), 0o600))
	// Step 2 takes a Kubernetes name from the label, which the pattern
	// allows in capitals and Kubernetes does not.
	require.NoError(t, os.WriteFile(filepath.Join(rbDir, "unplannable.yaml"), []byte(`name: unplannable
match: ['alertname="Unplannable"']
params:
  app: { label: app, pattern: '[A-Za-z0-9-]{1,40}' }
steps:
`+markStep("first", before)+`  - name: restart
    kubernetes: { action: rollout_restart, namespace: shop, deployment: '{{ .Params.app }}' }
`), 0o600))
	r, a, _ := startE2EApp(t, approvalConfig(fs, secret, dir, token, rbDir, ""), token)

	t.Run("unplannable runbook is refused before its first step", func(t *testing.T) {
		code, body := post(t, "http://"+r.addr+"/webhook/alertmanager", token, amPayload("Unplannable", "firing", map[string]string{"app": "Checkout"}))
		require.Equal(t, http.StatusOK, code, body)
		run := remediationRun(t, r, "Unplannable", func(run incident.RemediationRun) bool { return !run.Active() })
		require.Equal(t, incident.RunRefused, run.State, "%+v", run)
		require.Contains(t, run.Reason, "cannot plan")
		require.Zero(t, countFiles(t, before))
	})

	t.Run("edited runbook is not what was approved", func(t *testing.T) {
		code, body := post(t, "http://"+r.addr+"/webhook/alertmanager", token, amPayload("Appr", "firing", nil))
		require.Equal(t, http.StatusOK, code, body)
		run := remediationRun(t, r, "Appr", func(run incident.RemediationRun) bool {
			for _, x := range run.Audit {
				if x.Outcome == "approval_requested" {
					return true
				}
			}
			return false
		})
		require.NotEmpty(t, run.RunbookDigest)
		var asked string
		for _, c := range fs.Calls(routingtest.SlackPostMessage) {
			if strings.Contains(c.BlocksJSON, webhook.ActionApprove) {
				asked = c.BlocksJSON
			}
		}
		require.Contains(t, asked, "harmless")

		require.NoError(t, os.WriteFile(apprFile, []byte(approval("something-else", other)), 0o600))
		require.NoError(t, a.Reload())
		now := time.Now().Unix()
		form := "payload=" + url.QueryEscape(fmt.Sprintf(`{"type":"block_actions","user":{"id":"U0APPROVER"},"actions":[{"action_id":%q,"value":"%d"}]}`, webhook.ActionApprove, run.ID))
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+r.addr+"/slack/interactions", strings.NewReader(form))
		require.NoError(t, err)
		req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(now, 10))
		req.Header.Set("X-Slack-Signature", webhook.SignSlackRequest(secret, now, []byte(form)))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()

		run = remediationRun(t, r, "Appr", func(run incident.RemediationRun) bool { return !run.Active() })
		require.Equal(t, incident.RunCancelled, run.State, "%+v", run)
		require.Contains(t, run.Reason, "changed since the run was admitted")
		require.Zero(t, countFiles(t, shown))
		require.Zero(t, countFiles(t, other), "a step the approver never saw ran under their approval")
	})
}

// TestRemediation_ApprovalRequestNotPosted: when Slack refuses the approval
// request for good (the channel was archived), or keeps failing it (500,
// or 429) until the job's last attempt, nobody can approve the run; it is
// cancelled, with Slack's reason in the audit trail, and releases its
// target and its max_concurrent place. Before, its job was parked and the
// run waited with nothing to expire it, holding both until the alert
// resolved, with nothing in the audit trail to say why.
func TestRemediation_ApprovalRequestNotPosted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		answer   routingtest.SlackResponse
		attempts int // approval requests sent
		reason   string
	}{
		{"refused for good", routingtest.SlackResponse{Error: "is_archived"}, 1, "is_archived"},
		{"5xx until the last attempt", routingtest.SlackResponse{Status: http.StatusInternalServerError}, 2, "slack server error: 500 Internal Server Error"},
		{"429 until the last attempt", routingtest.SlackResponse{Status: http.StatusTooManyRequests, RetryAfter: 1}, 2, "slack rate limit exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			token := rand.Text()
			fs := routingtest.NewFakeSlack(t, "xoxb-test")
			fs.AddChannel("#incidents")
			// The incident's message is posted; every reply after it fails.
			fs.FailNext(routingtest.SlackPostMessage, 1, routingtest.SlackResponse{})
			fs.FailNext(routingtest.SlackPostMessage, 50, tc.answer)
			dir, marks := t.TempDir(), t.TempDir()
			rbDir := filepath.Join(dir, "runbooks")
			require.NoError(t, os.MkdirAll(rbDir, 0o750))
			require.NoError(t, os.WriteFile(filepath.Join(rbDir, "appr.yaml"), []byte(
				"name: appr\nmatch: ['alertname=\"Appr\"']\nguards: { require_approval: true }\nsteps:\n"+markStep("mark", marks)), 0o600))
			cfg := approvalConfig(fs, "slack-signing-secret", dir, token, rbDir, "max_concurrent: 1")
			cfg = strings.Replace(cfg, "storage:\n", "storage:\n  queue: { max_attempts: 2 }\n", 1)
			r := startE2EResponder(t, cfg, token)

			code, body := post(t, "http://"+r.addr+"/webhook/alertmanager", token, amPayload("Appr", "firing", nil))
			require.Equal(t, http.StatusOK, code, body)
			run := remediationRun(t, r, "Appr", func(run incident.RemediationRun) bool { return !run.Active() })
			require.Equal(t, incident.RunCancelled, run.State, "%+v", run)
			require.Contains(t, run.Reason, "the approval request could not be posted")
			require.Contains(t, run.Reason, tc.reason)
			if tc.attempts > 1 {
				require.Contains(t, run.Reason, "in 2 attempts (storage.queue.max_attempts): ")
			}
			require.NotContains(t, run.Reason, "xoxb-test")
			last := run.Audit[len(run.Audit)-1]
			require.Equal(t, incident.AuditDecision, last.Phase)
			require.Equal(t, incident.RunCancelled, last.Outcome)
			require.Equal(t, run.Reason, last.Output)
			require.Zero(t, countFiles(t, marks))
			asked := 0
			for _, c := range fs.Calls(routingtest.SlackPostMessage) {
				if strings.Contains(c.BlocksJSON, webhook.ActionApprove) {
					asked++
				}
			}
			require.Equal(t, tc.attempts, asked, "approval requests sent")
		})
	}
}
