// Package examples_test validates the example configurations with the real
// tools: amtool for the Alertmanager configuration, promtool for the
// Prometheus configuration and rules (checked and unit-tested), and
// `responder check-config` for the responder configuration.
package examples_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v2"

	"github.com/responder/responder/internal/testenv"
)

// The environment variables that override the tools' binaries.
const (
	AmtoolEnv   = "RESPONDER_TEST_AMTOOL"
	PromtoolEnv = "RESPONDER_TEST_PROMTOOL"
)

// run runs a tool and fails the test with its output unless it exits 0.
func run(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...) //nolint:gosec // G204: the test's own tools and files.
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
}

func TestAlertmanagerConfig(t *testing.T) {
	t.Parallel()
	amtool := testenv.Binary(t, AmtoolEnv, "amtool")
	run(t, amtool, "check-config", "alertmanager.yml")
}

func TestPrometheusConfig(t *testing.T) {
	t.Parallel()
	promtool := testenv.Binary(t, PromtoolEnv, "promtool")
	// Also checks every rule file it loads.
	run(t, promtool, "check", "config", filepath.Join("prometheus", "prometheus.yml"))
}

func ruleFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("prometheus", "rules", "*.rules.yml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	return files
}

func TestPrometheusRules(t *testing.T) {
	t.Parallel()
	promtool := testenv.Binary(t, PromtoolEnv, "promtool")
	run(t, promtool, append([]string{"check", "rules"}, ruleFiles(t)...)...)
	run(t, promtool, "check", "rules", filepath.Join("..", "docs", "responder-alerts.rules.yml")) // responder's own alerts, docs/operations.md
	run(t, promtool, "test", "rules", filepath.Join("..", "docs", "responder-alerts.test.yml"))
	for _, rules := range ruleFiles(t) {
		test := strings.TrimSuffix(rules, ".rules.yml") + ".test.yml"
		t.Run(filepath.Base(test), func(t *testing.T) {
			t.Parallel()
			require.FileExists(t, test, "every rule file has its unit tests")
			run(t, promtool, "test", "rules", test)
		})
	}
}

type ruleGroups struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type ruleTests struct {
	Tests []struct {
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path) //nolint:gosec // G304: the examples' own files.
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, into), path)
}

// TestPrometheusRules_conventions checks what promtool does not: every alert
// carries severity, team and runbook_url, opts in to remediation only with
// the value responder expects, and is unit-tested both firing and not
// firing.
func TestPrometheusRules_conventions(t *testing.T) {
	t.Parallel()
	firing, quiet := map[string]bool{}, map[string]bool{}
	var alerts []string
	for _, rules := range ruleFiles(t) {
		var g ruleGroups
		readYAML(t, rules, &g)
		for _, group := range g.Groups {
			for _, r := range group.Rules {
				if r.Alert == "" {
					require.Contains(t, r.Record, ":", "%s: recording rule names are level:metric:operations", rules)
					continue
				}
				alerts = append(alerts, r.Alert)
				require.Contains(t, []string{"critical", "warning", "info"}, r.Labels["severity"], "%s: severity", r.Alert)
				require.NotEmpty(t, r.Labels["team"], "%s: team", r.Alert)
				require.True(t, strings.HasPrefix(r.Annotations["runbook_url"], "https://"), "%s: runbook_url", r.Alert)
				require.NotEmpty(t, r.Annotations["summary"], "%s: summary", r.Alert)
				if v, ok := r.Labels["auto_remediation"]; ok {
					require.Equal(t, "enabled", v, "%s: auto_remediation", r.Alert)
				}
			}
		}
		var tests ruleTests
		readYAML(t, strings.TrimSuffix(rules, ".rules.yml")+".test.yml", &tests)
		for _, tc := range tests.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					firing[a.Alertname] = true
				} else {
					quiet[a.Alertname] = true
				}
			}
		}
	}
	sort.Strings(alerts)
	for _, a := range alerts {
		require.True(t, firing[a], "%s: no unit test where it fires", a)
		require.True(t, quiet[a], "%s: no unit test where it does not fire", a)
	}
	// The alerts the runbooks match.
	require.Contains(t, alerts, "CheckoutLatencyHigh")
	require.Contains(t, alerts, "QueueBacklogHigh")
}

var (
	responderOnce sync.Once
	responderPath string
	responderErr  error
	responderOut  []byte
)

func TestResponderConfig(t *testing.T) {
	t.Parallel()
	responderOnce.Do(func() {
		dir, err := os.MkdirTemp("", "responder-examples-test")
		if err != nil {
			responderErr = err
			return
		}
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		responderPath = filepath.Join(dir, "responder")
		cmd := exec.CommandContext(t.Context(), "go", "build", "-o", responderPath, "./cmd/responder") //nolint:gosec // G204: our own module.
		cmd.Dir = ".."
		responderOut, responderErr = cmd.CombinedOutput()
	})
	require.NoError(t, responderErr, "go build ./cmd/responder:\n%s", responderOut)
	run(t, responderPath, "check-config", "--config.file=responder.yml")
}
