package app_test

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/testenv"
)

// markerRunbook is an exec runbook that creates one new file in dir per
// run (mktemp), so that counting files counts runs.
func markerRunbook(dir, extra string) string {
	return fmt.Sprintf(`
name: mark
match: ['alertname=~"E2ERemediate.*"']
params:
  host: { label: host, pattern: '^[a-z][a-z0-9-]{0,30}$' }
guards: { cooldown: 1h, max_runs: 3, window: 24h%s }
steps:
  - name: mark
    exec: { command: /usr/bin/mktemp, args: ['-p', %q, 'run-{{ .Params.host }}.XXXXXX'], timeout: 10s }
`, extra, dir)
}

// startRemediationResponder starts a responder whose runbooks directory
// holds runbook, with the remediation section remediationYAML.
func startRemediationResponder(t *testing.T, token, remediationYAML, runbook, extraYAML string) *e2eResponder {
	t.Helper()
	dir := t.TempDir()
	rbDir := filepath.Join(dir, "runbooks")
	require.NoError(t, os.MkdirAll(rbDir, 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(rbDir, "mark.yaml"), []byte(runbook), 0o600))
	return startE2EResponder(t, fmt.Sprintf(`
storage:
  dsn: sqlite://%s
webhook:
  authorization:
    credentials: %q
remediation:
  runbooks_dir: %s
%s
%s`, filepath.Join(dir, "responder.db"), token, rbDir, remediationYAML, extraYAML), token)
}

// markers lists the files a marker runbook created.
func markers(t *testing.T, dir, host string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "run-"+host+".*"))
	require.NoError(t, err)
	return m
}

// TestRemediation_AlertmanagerEndToEnd runs a real Alertmanager in front of
// three responders (remediation executing, disabled, dry-run) with an exec
// runbook that leaves one marker file per run.
func TestRemediation_AlertmanagerEndToEnd(t *testing.T) {
	t.Parallel()
	testenv.Binary(t, testenv.AlertmanagerEnv, testenv.AlertmanagerNames...)
	token := rand.Text()
	marks := map[string]string{"main": t.TempDir(), "disabled": t.TempDir(), "dryrun": t.TempDir()}
	main := startRemediationResponder(t, token, "  dry_run: false", markerRunbook(marks["main"], ""), "")
	disabled := startRemediationResponder(t, token, "  enabled: false\n  dry_run: false", markerRunbook(marks["disabled"], ""), "")
	dryrun := startRemediationResponder(t, token, "  dry_run: true", markerRunbook(marks["dryrun"], ""), "")

	// The main receiver has 20 identical webhook configs: every
	// notification reaches responder 20 times, at once.
	var cfgs strings.Builder
	for range 20 {
		fmt.Fprintf(&cfgs, "      - url: %q\n        http_config: { authorization: { credentials: %q } }\n", "http://"+main.addr+"/webhook/alertmanager", token)
	}
	am := testenv.StartAlertmanager(t, fmt.Sprintf(`
route:
  receiver: main
  group_by: ['alertname', 'scenario']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - { receiver: disabled, matchers: ['scenario="disabled"'] }
    - { receiver: dryrun, matchers: ['scenario="dryrun"'] }
receivers:
  - name: main
    webhook_configs:
%s  - name: disabled
    webhook_configs: [{ url: %q, http_config: { authorization: { credentials: %q } } }]
  - name: dryrun
    webhook_configs: [{ url: %q, http_config: { authorization: { credentials: %q } } }]
`, cfgs.String(), "http://"+disabled.addr+"/webhook/alertmanager", token, "http://"+dryrun.addr+"/webhook/alertmanager", token))

	alert := func(alertname, host, scenario string, optIn bool) testenv.PostableAlert {
		l := map[string]string{"alertname": alertname, "host": host, "scenario": scenario}
		if optIn {
			l["auto_remediation"] = "enabled"
		}
		return testenv.PostableAlert{Labels: l}
	}
	// runOf waits for the incident of alertname at r to have a remediation
	// run in a final state, and returns it.
	runOf := func(t *testing.T, r *e2eResponder, alertname string) incident.RemediationRun {
		t.Helper()
		return remediationRun(t, r, alertname, func(run incident.RemediationRun) bool { return !run.Active() })
	}

	// Runs exactly once for 20 duplicate deliveries.
	am.PostAlerts(t, []testenv.PostableAlert{alert("E2ERemediateA", "alpha", "main", true)})
	first := runOf(t, main, "E2ERemediateA")
	require.Equal(t, incident.RunSucceeded, first.State, "run: %+v", first)
	require.Len(t, markers(t, marks["main"], "alpha"), 1)
	var phases []string
	for _, a := range first.Audit {
		phases = append(phases, a.Phase)
	}
	require.Equal(t, []string{incident.AuditDecision, incident.AuditStart, incident.AuditEnd, incident.AuditDecision}, phases)
	require.Contains(t, first.Audit[1].Input, "/usr/bin/mktemp")
	require.Equal(t, 0, *first.Audit[2].ExitCode)

	// The same target again, from another incident, inside the cooldown.
	am.PostAlerts(t, []testenv.PostableAlert{alert("E2ERemediateB", "alpha", "main", true)})
	second := runOf(t, main, "E2ERemediateB")
	require.Equal(t, incident.RunRefused, second.State)
	require.Contains(t, second.Reason, "cooldown")
	require.Contains(t, second.Audit[0].Output, "cooldown")

	// Not opted in: an incident, and nothing else.
	am.PostAlerts(t, []testenv.PostableAlert{alert("E2ERemediateC", "gamma", "main", false)})
	// An adversarial label: refused by its pattern, audited, never run.
	pwned := filepath.Join(marks["main"], "pwned")
	am.PostAlerts(t, []testenv.PostableAlert{alert("E2ERemediateD", "$(touch "+pwned+")", "main", true)})
	bad := runOf(t, main, "E2ERemediateD")
	require.Equal(t, incident.RunRefused, bad.State)
	require.Contains(t, bad.Reason, "label host")
	require.NotContains(t, bad.Reason, "\n")
	main.eventually(t, "the unopted incident", func() (bool, any, error) {
		list, err := main.incidents(t.Context(), "")
		inc, ok := e2eFindByAlertname(list, "E2ERemediateC")
		return ok, inc, err
	})

	// Disabled and dry-run responders record why and run nothing.
	am.PostAlerts(t, []testenv.PostableAlert{alert("E2ERemediateA", "delta", "disabled", true), alert("E2ERemediateA", "delta", "dryrun", true)})
	off := runOf(t, disabled, "E2ERemediateA")
	require.Equal(t, incident.RunRefused, off.State)
	require.Contains(t, off.Reason, "disabled")
	dry := runOf(t, dryrun, "E2ERemediateA")
	require.Equal(t, incident.RunDryRun, dry.State)
	require.Contains(t, dry.Audit[len(dry.Audit)-1].Input, "mktemp", "the dry run audits the planned argv")

	list, err := main.incidents(t.Context(), "")
	require.NoError(t, err)
	inc, _ := e2eFindByAlertname(list, "E2ERemediateC")
	full, err := main.incident(t.Context(), inc.ID)
	require.NoError(t, err)
	require.Empty(t, full.Remediation, "an alert without the opt-in label gets no decision")

	require.Len(t, markers(t, marks["main"], "alpha"), 1, "still exactly one run")
	require.Empty(t, markers(t, marks["main"], "gamma"))
	require.NoFileExists(t, pwned)
	require.Empty(t, markers(t, marks["disabled"], "delta"))
	require.Empty(t, markers(t, marks["dryrun"], "delta"))
}

// remediationRun waits until the first remediation run of the incident of
// alertname at r satisfies done, and returns it.
func remediationRun(t *testing.T, r *e2eResponder, alertname string, done func(incident.RemediationRun) bool) incident.RemediationRun {
	t.Helper()
	var run incident.RemediationRun
	r.eventually(t, "remediation of "+alertname, func() (bool, any, error) {
		list, err := r.incidents(t.Context(), "")
		if err != nil {
			return false, nil, err
		}
		inc, ok := e2eFindByAlertname(list, alertname)
		if !ok {
			return false, list, nil
		}
		full, err := r.incident(t.Context(), inc.ID)
		if err != nil || len(full.Remediation) == 0 {
			return false, full, err
		}
		run = full.Remediation[0]
		return done(run), run, nil
	})
	return run
}
