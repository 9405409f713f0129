package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v2"

	"github.com/responder/responder/internal/testenv"
)

// repoRoot is the repository root, where the test finds scripts/demo.sh.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	return root
}

// demoTimeout bounds a whole run of the demo. Its builds are cache hits by
// then: the test compiles the two commands first, under buildTimeout, since a
// cold build beside the rest of `go test -race ./...` on two cores took two
// minutes on a fresh clone.
const (
	demoTimeout  = 150 * time.Second
	buildTimeout = 10 * time.Minute
)

// TestDemo runs `make demo`'s script end to end, with the real Prometheus
// and Alertmanager, and checks what it narrates. Business hours are all
// week, so that the alert pages (the demo shop plays PagerDuty) whatever
// the time the test runs.
func TestDemo(t *testing.T) {
	prom := testenv.Binary(t, testenv.PrometheusEnv, testenv.PrometheusNames...)
	am := testenv.Binary(t, testenv.AlertmanagerEnv, testenv.AlertmanagerNames...)
	for _, tool := range []string{"bash", "curl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			if testenv.InCI() {
				t.Fatalf("the demo needs %s: %v", tool, err)
			}
			t.Skipf("skipping: the demo needs %s: %v", tool, err)
		}
	}
	_, jqErr := exec.LookPath("jq")

	buildCtx, cancelBuild := context.WithTimeout(t.Context(), buildTimeout)
	defer cancelBuild()
	build := exec.CommandContext(buildCtx, "go", "build", "./cmd/responder", "./cmd/demo-shop")
	build.Dir = repoRoot(t)
	buildStart := time.Now()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the demo's commands: %v\n%s", err, out)
	}
	t.Logf("built the demo's commands in %s", time.Since(buildStart).Round(time.Second))

	ctx, cancel := context.WithTimeout(t.Context(), demoTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "scripts/demo.sh")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(),
		"PROMETHEUS_BIN="+prom, "ALERTMANAGER_BIN="+am,
		"DEMO_KEEP=0", "DEMO_BUSINESS_HOURS=always", "NO_COLOR=1", "TMPDIR="+t.TempDir())
	// SIGTERM, not SIGKILL, on timeout: the script's trap stops everything
	// it started.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("demo ran for %s", time.Since(start).Round(time.Second))
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}

	// Responder's console lines, shown by the demo whether or not jq is
	// there, in the order the story goes.
	want := []string{
		"Recording a deployment of checkout",
		"Degrading the shop",
		"CheckoutConversionRateLow is firing",
		`msg="incident opened" component=console`,
		`msg="incident routed" component=console incident_id=1 receivers=pagerduty,console`,
		`msg="remediation planned (dry run)" component=remediation`,
		"Recovering the shop",
		`msg="incident resolved" component=console`,
		"Demo complete in",
	}
	if jqErr == nil {
		// With jq the demo reads the incidents API and explains it.
		want = append(want,
			"PAGED: PagerDuty was triggered",
			"event_action=trigger",
			"deployed checkout v2.4.1 (8f3c2d1)",
			"conversion rate: ",
			"runbook checkout-conversion-rollback",
			"2. turn off the latest release [http]: POST http://127.0.0.1:",
			`"status": "resolved"`,
			"event_action=resolve",
		)
	}
	got := out.String()
	for _, w := range want {
		require.Contains(t, got, w, "the demo's output lacks %q:\n%s", w, got)
	}
	require.Less(t, strings.Index(got, `msg="incident opened"`), strings.Index(got, `msg="incident resolved"`))
	require.Contains(t, got, "demo: stopped everything it started")
}

// TestDemo_RuleFollowsExample keeps the demo's alert rule in step with the
// example the users copy: same alert, same expression and labels; only its
// `for` (seconds instead of minutes) and the remediation opt-in differ.
func TestDemo_RuleFollowsExample(t *testing.T) {
	repo := os.DirFS(repoRoot(t))
	b, err := fs.ReadFile(repo, "examples/prometheus/rules/conversion.rules.yml")
	require.NoError(t, err, "the example the demo's rule follows")
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert  string            `yaml:"alert"`
				Expr   string            `yaml:"expr"`
				Labels map[string]string `yaml:"labels"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(b, &rules))
	script, err := fs.ReadFile(repo, "scripts/demo.sh")
	require.NoError(t, err)

	found := false
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert != "CheckoutConversionRateLow" {
				continue
			}
			found = true
			require.Contains(t, string(script), "expr: "+strings.TrimSpace(r.Expr))
			for name, value := range r.Labels {
				require.Contains(t, string(script), name+": "+value)
			}
		}
	}
	require.True(t, found, "the example rules no longer have CheckoutConversionRateLow; update scripts/demo.sh")
}
