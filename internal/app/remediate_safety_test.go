package app_test

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/routing/routingtest"
	"github.com/responder/responder/internal/testenv"
)

// TestRemediation_KillSwitchFailsSafe: when a run is decided, anything at
// the kill switch's path refuses it, a dangling symbolic link included (a
// ConfigMap mount whose target is not there); so does a path that cannot
// be checked, logged once at warn with why, however many alerts it
// refuses, and at info once it can be checked again. Only when nothing is
// there does the run start. (Mid-run: TestRemediation_ReloadStopsActiveRuns.)
func TestRemediation_KillSwitchFailsSafe(t *testing.T) {
	t.Parallel()
	token := rand.Text()
	dir, marks := t.TempDir(), t.TempDir()
	rbDir, switches := filepath.Join(dir, "runbooks"), filepath.Join(dir, "switches")
	require.NoError(t, os.MkdirAll(rbDir, 0o750))
	require.NoError(t, os.MkdirAll(switches, 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(rbDir, "ks.yaml"), []byte("name: ks\nmatch: ['alertname=~\"KS.*\"']\nsteps:\n"+markStep("mark", marks)), 0o600))
	stop := filepath.Join(switches, "stop")
	var logs testenv.LogBuffer
	a, _ := startAppLogging(t, fmt.Sprintf("storage:\n  dsn: sqlite://$DIR/responder.db\nwebhook:\n  authorization: { credentials: %q }\n"+
		"remediation:\n  dry_run: false\n  runbooks_dir: %s\n  kill_switch_file: %s\n", token, rbDir, stop), slog.New(slog.NewTextHandler(&logs, nil)))
	r := &e2eResponder{addr: a.Addr(), token: token, client: &http.Client{Timeout: 5 * time.Second}}
	decide := func(t *testing.T, alertname string) incident.RemediationRun {
		t.Helper()
		code, body := post(t, "http://"+r.addr+"/webhook/alertmanager", token, amPayload(alertname, "firing", nil))
		require.Equal(t, http.StatusOK, code, body)
		return remediationRun(t, r, alertname, func(run incident.RemediationRun) bool { return !run.Active() })
	}
	const warned = `level=WARN msg="kill switch file cannot be checked, so it counts as present`

	t.Run("dangling symbolic link", func(t *testing.T) {
		require.NoError(t, os.Symlink(filepath.Join(switches, "..data", "stop"), stop))
		run := decide(t, "KSLink")
		require.Equal(t, incident.RunRefused, run.State, "%+v", run)
		require.Equal(t, "the kill switch file "+stop+" exists (a symbolic link whose target cannot be reached): remediation is stopped", run.Reason)
		require.NotContains(t, logs.String(), warned, "a switch that is there is no failure")
	})
	t.Run("cannot be checked", func(t *testing.T) {
		require.NoError(t, os.RemoveAll(switches))
		require.NoError(t, os.WriteFile(switches, nil, 0o600)) // a file where the directory was
		for _, name := range []string{"KSUnchecked1", "KSUnchecked2"} {
			run := decide(t, name)
			require.Equal(t, incident.RunRefused, run.State, "%+v", run)
			require.Equal(t, "the kill switch file "+stop+" cannot be checked (not a directory), so remediation is stopped", run.Reason)
		}
		require.Equal(t, 1, strings.Count(logs.String(), warned), "warned once, not per check:\n%s", logs.String())
		require.Contains(t, logs.String(), "err=\"lstat "+stop+": not a directory\"")
	})
	t.Run("nothing there", func(t *testing.T) {
		require.NoError(t, os.Remove(switches))
		run := decide(t, "KSClear")
		require.Equal(t, incident.RunSucceeded, run.State, "%+v", run)
		require.Contains(t, logs.String(), `level=INFO msg="kill switch file can be checked again"`)
		require.Zero(t, strings.Count(logs.String(), warned)-1, "no second warning")
	})
	require.Equal(t, 1, countFiles(t, marks), "only the run decided with nothing at the path ran")
}

// TestRemediation_EscalationFailureAudited: when the page that escalates a
// failed run does not go out, PagerDuty refusing it (400) or every attempt
// failing (500), the run's audit trail and the incident's Slack thread say
// so, with PagerDuty's error and without the routing key, once per failed
// escalation rather than per attempt; the run stays unescalated, and
// retrying the parked job the record names pages again.
func TestRemediation_EscalationFailureAudited(t *testing.T) {
	t.Parallel()
	token := rand.Text()
	routingKey := strings.Repeat("k", 32)
	fs := routingtest.NewFakeSlack(t, "xoxb-test")
	fs.AddChannel("#incidents")
	pd := routingtest.NewFakePagerDuty(t)
	dir := t.TempDir()
	rbDir := filepath.Join(dir, "runbooks")
	require.NoError(t, os.MkdirAll(rbDir, 0o750))
	// One runbook per case (one alert's run puts the runbook's target in
	// cooldown); the wait lets the incident's Slack message be posted
	// before the run fails, so that there is a thread to tell.
	for _, alertname := range []string{"EscRefused", "EscDown"} {
		require.NoError(t, os.WriteFile(filepath.Join(rbDir, alertname+".yaml"), []byte(`name: `+strings.ToLower(alertname)+`
match: ['alertname="`+alertname+`"']
steps:
  - name: settle
    wait: { duration: 1s }
  - name: fail
    exec: { command: /usr/bin/false }
`), 0o600))
	}
	// approvalConfig's, escalating to the PagerDuty receiver oncall, with
	// two attempts per job.
	cfg := strings.NewReplacer(
		"global:\n", fmt.Sprintf("global:\n  pagerduty_events_url: %q\n", pd.URL()),
		"storage:\n", "storage:\n  queue: { max_attempts: 2 }\n",
		"remediation:\n", fmt.Sprintf("  - name: oncall\n    pagerduty_configs: [{ routing_key: %q }]\nremediation:\n", routingKey),
	).Replace(approvalConfig(fs, "slack-signing-secret", dir, token, rbDir, "escalation_receiver: oncall"))
	r := startE2EResponder(t, cfg, token)

	// failedEscalation fails alertname's run, PagerDuty answering status
	// n times, and returns the run once its escalation failure is audited.
	failedEscalation := func(t *testing.T, alertname string, n, status int) (incident.RemediationRun, incident.AuditRecord) {
		t.Helper()
		pd.FailNext(n, status)
		before := pd.Requests()
		code, body := post(t, "http://"+r.addr+"/webhook/alertmanager", token, amPayload(alertname, "firing", nil))
		require.Equal(t, http.StatusOK, code, body)
		var rec incident.AuditRecord
		run := remediationRun(t, r, alertname, func(run incident.RemediationRun) bool {
			for _, a := range run.Audit {
				if a.Outcome == "escalation_failed" {
					rec = a
					return true
				}
			}
			return false
		})
		require.Equal(t, incident.RunFailed, run.State, "%+v", run)
		require.False(t, run.Escalated)
		require.Equal(t, n, pd.Requests()-before, "one request per attempt")
		failed := 0
		for _, a := range run.Audit {
			if a.Outcome == "escalation_failed" {
				failed++
			}
		}
		require.Equal(t, 1, failed, "one record per failed escalation, not per attempt: %+v", run.Audit)
		require.Equal(t, incident.AuditDecision, rec.Phase)
		require.Contains(t, rec.Output, "the escalation page to PagerDuty via oncall did not go out")
		require.NotContains(t, rec.Output, routingKey)
		r.eventually(t, "Slack saying the page did not go out", func() (bool, any, error) {
			for _, c := range fs.Calls(routingtest.SlackPostMessage) {
				if c.ThreadTS != "" && strings.Contains(c.Text, fmt.Sprintf("Remediation run %d", run.ID)) && strings.Contains(c.Text, "did not go out") {
					require.NotContains(t, c.Text, routingKey)
					return true, c.Text, nil
				}
			}
			return false, nil, nil
		})
		return run, rec
	}

	t.Run("400 is final at once", func(t *testing.T) {
		_, rec := failedEscalation(t, "EscRefused", 1, http.StatusBadRequest)
		require.Contains(t, rec.Output, "did not go out, and no retry would fix it: ")
		require.Contains(t, rec.Output, "400 Bad Request")
		require.Contains(t, rec.Output, "; once the cause is fixed, POST /api/v1/jobs/")
	})

	t.Run("5xx on the last attempt", func(t *testing.T) {
		_, rec := failedEscalation(t, "EscDown", 2, http.StatusInternalServerError)
		require.Contains(t, rec.Output, "did not go out after 2 attempts (storage.queue.max_attempts): ")
		require.Contains(t, rec.Output, "500 Internal Server Error")

		// PagerDuty is back: retrying the parked job pages.
		m := regexp.MustCompile(`POST (/api/v1/jobs/\d+/retry)`).FindStringSubmatch(rec.Output)
		require.Len(t, m, 2, rec.Output)
		code, body := post(t, "http://"+r.addr+m[1], token, "")
		require.Equal(t, http.StatusOK, code, body)
		run := remediationRun(t, r, "EscDown", func(run incident.RemediationRun) bool { return run.Escalated })
		require.Equal(t, "escalated", run.Audit[len(run.Audit)-1].Outcome)
	})
}
