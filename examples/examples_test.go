// Package examples_test validates the example configurations with the real
// tools: amtool for the Alertmanager configuration, promtool for the
// Prometheus configuration and rules (checked and unit-tested), and
// `responder check-config` for the responder configuration.
package examples_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

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

// testedAlerts marks the alerts that a promtool test file expects to fire
// in firing, and those it expects not to fire in quiet.
func testedAlerts(t *testing.T, path string, firing, quiet map[string]bool) {
	t.Helper()
	var tests ruleTests
	readYAML(t, path, &tests)
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
		testedAlerts(t, strings.TrimSuffix(rules, ".rules.yml")+".test.yml", firing, quiet)
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

// responderBinary builds responder once for the package's tests.
func responderBinary(t *testing.T) string {
	t.Helper()
	responderOnce.Do(func() {
		dir, err := os.MkdirTemp("", "responder-examples-test")
		if err != nil {
			responderErr = err
			return
		}
		responderPath = filepath.Join(dir, "responder")
		cmd := exec.CommandContext(t.Context(), "go", "build", "-o", responderPath, "./cmd/responder") //nolint:gosec // G204: our own module.
		cmd.Dir = ".."
		responderOut, responderErr = cmd.CombinedOutput()
	})
	require.NoError(t, responderErr, "go build ./cmd/responder:\n%s", responderOut)
	return responderPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if responderPath != "" {
		_ = os.RemoveAll(filepath.Dir(responderPath))
	}
	os.Exit(code)
}

func TestResponderConfig(t *testing.T) {
	t.Parallel()
	run(t, responderBinary(t), "check-config", "--config.file=responder.yml")
}

// The files of responder's own alerts (slash-separated: the tests run on
// Linux).
const (
	alertRulesFile = "../docs/responder-alerts.rules.yml"
	alertTestsFile = "../docs/responder-alerts.test.yml"
	operationsFile = "../docs/operations.md"
)

// runbookPrefix is where every alert's runbook_url points: a section of
// docs/operations.md named after the alert.
const runbookPrefix = "https://github.com/responder/responder/blob/main/docs/operations.md#"

// TestResponderAlerts_conventions checks what promtool does not: every alert
// of responder's own rules has a severity, a summary and a description, a
// runbook section in docs/operations.md (its runbook_url) and a line in its
// table of alerts, and is unit-tested both firing and not firing.
func TestResponderAlerts_conventions(t *testing.T) {
	t.Parallel()
	var g ruleGroups
	readYAML(t, alertRulesFile, &g)
	ops, err := os.ReadFile(operationsFile)
	require.NoError(t, err)
	firing, quiet := map[string]bool{}, map[string]bool{}
	testedAlerts(t, alertTestsFile, firing, quiet)
	var n int
	for _, group := range g.Groups {
		for _, r := range group.Rules {
			require.NotEmpty(t, r.Alert, "responder's rules are alerts only")
			n++
			require.Contains(t, []string{"critical", "warning", "info"}, r.Labels["severity"], "%s: severity", r.Alert)
			require.NotEmpty(t, r.Annotations["summary"], "%s: summary", r.Alert)
			require.NotEmpty(t, r.Annotations["description"], "%s: description", r.Alert)
			require.Equal(t, runbookPrefix+strings.ToLower(r.Alert), r.Annotations["runbook_url"], "%s: runbook_url", r.Alert)
			require.Contains(t, string(ops), "\n### "+r.Alert+"\n", "%s: no runbook section in docs/operations.md", r.Alert)
			require.Contains(t, string(ops), "| `"+r.Alert+"` | "+r.Labels["severity"]+" |", "%s: not in the table of alerts in docs/operations.md", r.Alert)
			require.True(t, firing[r.Alert], "%s: no unit test where it fires", r.Alert)
			require.True(t, quiet[r.Alert], "%s: no unit test where it does not fire", r.Alert)
		}
	}
	require.Equal(t, n, strings.Count(string(ops), "\n| `Responder"), "docs/operations.md lists an alert the rules do not have")
}

// docMetric is a metric as docs/operations.md describes it.
type docMetric struct {
	typ    string
	labels map[string][]string // label name → the values the doc lists
}

// docMetrics reads the metric tables of docs/operations.md, and the metrics
// it says appear on first use only.
func docMetrics(t *testing.T) (metrics map[string]docMetric, firstUse []string) {
	t.Helper()
	b, err := os.ReadFile(operationsFile)
	require.NoError(t, err)
	text := string(b)
	start, end := strings.Index(text, "\n## Metrics\n"), strings.Index(text, "\n## Alerting on responder\n")
	require.True(t, start >= 0 && end > start, "docs/operations.md: ## Metrics, then ## Alerting on responder")
	section := text[start:end]
	code := regexp.MustCompile("`([^`]+)`")
	metrics = map[string]docMetric{}
	for line := range strings.SplitSeq(section, "\n") {
		if !strings.HasPrefix(line, "| `responder_") {
			continue
		}
		cells := strings.Split(line, "|") // | name | type | labels | meaning |
		require.GreaterOrEqual(t, len(cells), 5, line)
		name := strings.Trim(cells[1], " `")
		typ, _, _ := strings.Cut(strings.TrimSpace(cells[2]), ",") // "gauge, *shared*"
		m := docMetric{typ: typ, labels: map[string][]string{}}
		// "`a`, `b` = `x`, `y`; `c`": names, and the values of the last
		// name before an "=".
		for part := range strings.SplitSeq(cells[3], ";") {
			names, values, _ := strings.Cut(part, "=")
			var last string
			for _, n := range code.FindAllStringSubmatch(names, -1) {
				last = n[1]
				m.labels[last] = nil
			}
			for _, v := range code.FindAllStringSubmatch(values, -1) {
				m.labels[last] = append(m.labels[last], v[1])
			}
		}
		_, dup := metrics[name]
		require.False(t, dup, "docs/operations.md lists %s twice", name)
		metrics[name] = m
	}
	first := regexp.MustCompile(`(?s)\nOnly (?:these appear|this one appears) on first use[^\n]*\n(.*?)\n\n`).FindStringSubmatch(section)
	require.NotNil(t, first, "docs/operations.md: the paragraph 'Only these appear on first use'")
	for _, c := range code.FindAllStringSubmatch(first[1], -1) {
		if strings.HasPrefix(c[1], "responder_") {
			firstUse = append(firstUse, c[1])
		}
	}
	return metrics, firstUse
}

// scraped is what Prometheus scraped of one metric family.
type scraped struct {
	typ    string
	labels map[string]map[string]bool // label name → values
}

// promGet decodes the data of a Prometheus API answer.
func promGet(ctx context.Context, base, path string, query url.Values, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path+"?"+query.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s: %s %s", path, resp.Status, body.Error)
	}
	return json.Unmarshal(body.Data, into)
}

// startResponder runs the responder binary on the embedded default
// configuration in a temporary directory, and returns its address once it
// is ready.
func startResponder(t *testing.T) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	var log bytes.Buffer
	cmd := exec.CommandContext(ctx, responderBinary(t), "serve", "--web.listen-address="+addr) //nolint:gosec // G204: the binary built above.
	cmd.Dir, cmd.Stdout, cmd.Stderr = t.TempDir(), &log, &log
	// The embedded default loads ./runbooks: the repository's, so that
	// their series are exported as they are in a real deployment.
	require.NoError(t, os.CopyFS(filepath.Join(cmd.Dir, "runbooks"), os.DirFS(filepath.Join("..", "runbooks"))))
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("responder log:\n%s", log.String())
		}
	})
	require.Eventually(t, func() bool {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/-/ready", nil)
		if err != nil {
			return false
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, testenv.StartTimeout, 50*time.Millisecond, "responder is not ready")
	return addr
}

// TestResponderAlerts_realInstance runs a real responder, sends it a
// notification, and has a real Prometheus scrape it and evaluate
// docs/responder-alerts.rules.yml. It checks that the rules are healthy and
// that no alert is pending or firing on a healthy instance, that every
// metric docs/operations.md describes is exported with its type, labels and
// label values (unless the doc says it appears on first use) and every
// exported metric is described, and that every metric, label and label
// value the rules select is one the doc describes or responder exports: a
// renamed metric, label or value would otherwise silence an alert.
func TestResponderAlerts_realInstance(t *testing.T) {
	t.Parallel()
	testenv.Binary(t, testenv.PrometheusEnv, testenv.PrometheusNames...)
	addr := startResponder(t)

	payload, err := os.ReadFile(filepath.Join("..", "testdata", "am_v4_firing.json"))
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/webhook/alertmanager", bytes.NewReader(payload))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	rules, err := filepath.Abs(alertRulesFile)
	require.NoError(t, err)
	prom := testenv.StartPrometheus(t, fmt.Sprintf(`
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: responder
    static_configs: [{targets: [%q]}]
`, rules, addr))

	// Enough scrapes for rate() and increase(), and rule evaluations after
	// them.
	require.Eventually(t, func() bool {
		var v struct {
			Result []any `json:"result"`
		}
		err := promGet(t.Context(), prom.URL(), "/api/v1/query", url.Values{"query": {`count_over_time(up{job="responder"}[1m]) >= 5 and min_over_time(up{job="responder"}[1m]) == 1`}}, &v)
		return err == nil && len(v.Result) == 1
	}, testenv.StartTimeout, 200*time.Millisecond, "prometheus did not scrape responder")
	scrapedAt := time.Now()
	var rg struct {
		Groups []struct {
			Rules []struct {
				Name   string    `json:"name"`
				Health string    `json:"health"`
				Error  string    `json:"lastError"`
				Last   time.Time `json:"lastEvaluation"`
			} `json:"rules"`
		} `json:"groups"`
	}
	require.Eventually(t, func() bool {
		err := promGet(t.Context(), prom.URL(), "/api/v1/rules", nil, &rg)
		return err == nil && len(rg.Groups) == 1 && rg.Groups[0].Rules[0].Last.After(scrapedAt.Add(time.Second))
	}, testenv.StartTimeout, 200*time.Millisecond, "prometheus did not evaluate the rules")
	for _, r := range rg.Groups[0].Rules {
		require.Equal(t, "ok", r.Health, "%s: %s", r.Name, r.Error)
	}
	var alerts struct {
		Alerts []map[string]any `json:"alerts"`
	}
	require.NoError(t, promGet(t.Context(), prom.URL(), "/api/v1/alerts", nil, &alerts))
	require.Empty(t, alerts.Alerts, "alerts pending or firing on a healthy instance")

	// What Prometheus scraped.
	var meta map[string][]struct {
		Type string `json:"type"`
	}
	require.NoError(t, promGet(t.Context(), prom.URL(), "/api/v1/metadata", nil, &meta))
	var series []map[string]string
	require.NoError(t, promGet(t.Context(), prom.URL(), "/api/v1/series", url.Values{"match[]": {`{job="responder",__name__=~"responder_.+"}`}}, &series))
	got := map[string]*scraped{}
	for _, s := range series {
		name := s["__name__"]
		if _, ok := meta[name]; !ok {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok && len(meta[base]) > 0 && meta[base][0].Type == "histogram" {
					name = base
				}
			}
		}
		require.NotEmpty(t, meta[name], "%s: no metadata", name)
		m := got[name]
		if m == nil {
			m = &scraped{typ: meta[name][0].Type, labels: map[string]map[string]bool{}}
			got[name] = m
		}
		for k, v := range s {
			if k == "__name__" || k == "job" || k == "instance" || k == "le" {
				continue
			}
			if m.labels[k] == nil {
				m.labels[k] = map[string]bool{}
			}
			m.labels[k][v] = true
		}
	}

	doc, firstUse := docMetrics(t)
	isFirstUse := func(name string) bool {
		for _, f := range firstUse {
			if p, ok := strings.CutSuffix(f, "*"); (ok && strings.HasPrefix(name, p)) || f == name {
				return true
			}
		}
		return false
	}
	for name, m := range got {
		if name == "responder_build_info" { // described with go_* and process_*
			continue
		}
		d, ok := doc[name]
		require.True(t, ok, "%s is exported but not described in docs/operations.md", name)
		require.Equal(t, d.typ, m.typ, "%s: type", name)
		names := slices.Sorted(maps.Keys(d.labels))
		require.Equal(t, names, slices.Sorted(maps.Keys(m.labels)), "%s: labels", name)
		if isFirstUse(name) {
			continue // its series come as they are counted
		}
		for l, values := range d.labels {
			for _, v := range values {
				require.True(t, m.labels[l][v], "%s{%s=%q}: described, not exported", name, l, v)
			}
		}
	}
	for name := range doc {
		if got[name] == nil {
			require.True(t, isFirstUse(name), "%s is described in docs/operations.md but not exported, and the doc does not say it appears on first use", name)
		}
	}

	// What the rules select.
	selector := regexp.MustCompile(`\b(responder_[a-z_]+)\b\s*(\{[^}]*\})?`)
	matcher := regexp.MustCompile(`([a-zA-Z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	grouping := regexp.MustCompile(`\b(?:by|without|ignoring|on)\s*\(([^)]*)\)`)
	word := regexp.MustCompile(`^[a-z_]+(\|[a-z_]+)*$`)
	var g ruleGroups
	readYAML(t, alertRulesFile, &g)
	for _, r := range g.Groups[0].Rules {
		labels := map[string]bool{"instance": true, "job": true}
		for _, sel := range selector.FindAllStringSubmatch(r.Expr, -1) {
			name := sel[1]
			d, ok := doc[name]
			require.True(t, ok, "%s: %s is not described in docs/operations.md", r.Alert, name)
			for l := range d.labels {
				labels[l] = true
			}
			for _, mt := range matcher.FindAllStringSubmatch(sel[2], -1) {
				l, op, v := mt[1], mt[2], mt[3]
				_, known := d.labels[l]
				require.True(t, known, "%s: %s has no label %s", r.Alert, name, l)
				if strings.HasSuffix(op, "~") && !word.MatchString(v) {
					continue // a pattern, such as code=~"5.."
				}
				for value := range strings.SplitSeq(v, "|") {
					exported := got[name] != nil && got[name].labels[l][value]
					switch {
					case exported || slices.Contains(d.labels[l], value):
					case name == "responder_http_requests_total" && l == "code":
						// A status code gets its series when it is first answered.
					case got[name] != nil && !isFirstUse(name):
						require.Fail(t, "value not exported", "%s: %s{%s%s%q}: no series has %s=%q", r.Alert, name, l, op, v, l, value)
					case len(d.labels[l]) > 0:
						require.Fail(t, "value not described", "%s: %s{%s%s%q}: %q is not a value docs/operations.md lists", r.Alert, name, l, op, v, value)
					}
				}
			}
		}
		for _, gr := range grouping.FindAllStringSubmatch(r.Expr, -1) {
			for l := range strings.SplitSeq(gr[1], ",") {
				l = strings.TrimSpace(l)
				require.True(t, labels[l], "%s: groups by %s, a label none of its metrics has", r.Alert, l)
			}
		}
	}
}
