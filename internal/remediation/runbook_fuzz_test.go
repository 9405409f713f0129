package remediation

import (
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v2"
)

// runbookSeeds cover every step kind and option the example runbooks do
// not.
var runbookSeeds = []string{
	execRunbook,
	`
name: h
match: ['alertname="A"']
params:
  v: { label: v, pattern: '^[a-z /?&="#.]+$' }
steps:
  - name: call
    http: { method: post, url: 'http://127.0.0.1:8080/items/{{ .Params.v }}?q={{ .Params.v }}', body: '{"v": "{{ .Params.v }}"}', headers: { Authorization: Bearer x }, content_type: text/plain }
`,
	`
name: k
match: ['alertname="A"', 'severity=~"page|critical"']
params:
  pod: { label: pod, pattern: '[a-z0-9-]+' }
guards: { cooldown: 5m, max_runs: 1, window: 1h, require_approval: true }
dry_run: true
steps:
  - name: delete
    kubernetes: { action: delete_pod, namespace: shop, pod: '{{ .Params.pod }}' }
  - name: scale
    kubernetes: { action: scale, namespace: shop, deployment: checkout, replicas: 3, min_replicas: 1, max_replicas: 5, timeout: 5m }
  - name: restart
    kubernetes: { action: rollout_restart, namespace: shop, deployment: checkout.v2 }
`,
	`
name: s
match: ['alertname="A"']
params:
  host: { label: host, pattern: '^[a-z0-9.-]+$' }
steps:
  - name: silence
    silence: { matchers: ['alertname="A"', 'host=~"{{ .Params.host }}"'], duration: 1h, comment: 'fixing {{ .Labels.host }} {{ .Labels.evil }}' }
  - name: check
    promql_check: { query: 'up{instance="{{ .Labels.instance }}",host="{{ .Params.host }}"} == 0', timeout: 1s }
  - name: pause
    wait: { duration: 1h }
verify: { query: 'up == 1', within: 5m, interval: 5m }
`,
	`
name: e
match: ['a!="b"']
steps:
  - name: touch
    exec: { command: /usr/bin/true, args: [a, '--x=y'], env: { LANG: C, _X1: 'a b' }, timeout: 2s }
`,
}

// FuzzParseRunbook checks that Parse either refuses a runbook or returns
// one that keeps every safety rule validate enforces, checked again here
// from the outside; that validating it again changes nothing; that it
// prints as YAML which parses to the same runbook; and that its plan, made
// with valid parameters and hostile labels, never lets a label value reach
// a program, a URL, a Kubernetes object or a silence matcher, keeps every
// HTTP call on its literal origin, and never fails for a step that has no
// template.
//
//	go test -run='^$' -fuzz='^FuzzParseRunbook$' -fuzztime=60s ./internal/remediation/
func FuzzParseRunbook(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("..", "..", "runbooks", "*.yaml"))
	require.NoError(f, err)
	require.NotEmpty(f, files)
	for _, file := range files {
		b, err := os.ReadFile(file) //nolint:gosec // G304: the repository's own example runbooks.
		require.NoError(f, err)
		f.Add(b)
	}
	for _, s := range runbookSeeds {
		f.Add([]byte(s))
	}
	for _, name := range slices.Sorted(maps.Keys(rejectedRunbooks)) {
		f.Add([]byte(rejectedRunbooks[name].text))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		rb, err := Parse(text)
		if err != nil {
			require.Nil(t, rb)
			return
		}
		checkRunbook(t, rb)

		printed, err := yaml.Marshal(rb)
		require.NoError(t, err)
		require.NoError(t, rb.validate(), "validate is not idempotent")
		again, err := yaml.Marshal(rb)
		require.NoError(t, err)
		require.Equal(t, string(printed), string(again), "validating again changed the runbook")

		reparsed, err := Parse(printed)
		require.NoError(t, err, "the accepted runbook, printed, is refused:\n%s", printed)
		again, err = yaml.Marshal(reparsed)
		require.NoError(t, err)
		require.Equal(t, string(printed), string(again))

		checkPlan(t, rb)
	})
}

// checkRunbook checks the rules of validate on a loaded runbook, written
// out again without its regular expressions and helpers.
func checkRunbook(t *testing.T, rb *Runbook) {
	t.Helper()
	require.True(t, isName(rb.Name, 63, "-_.") && rb.Name == strings.ToLower(rb.Name), "name %q", rb.Name)
	require.NotEmpty(t, rb.Match)
	require.Len(t, rb.matchers, len(rb.Match))
	for _, m := range rb.Match {
		_, err := labels.ParseMatcher(m)
		require.NoError(t, err)
	}
	require.NotPanics(t, func() { rb.Matches(map[string]string{"alertname": "A", "": "x", "a": "\xff"}) })

	for name, p := range rb.Params {
		require.True(t, isIdent(name), "param name %q", name)
		require.True(t, model.LegacyValidation.IsValidLabelName(p.Label), "param label %q", p.Label)
		require.NotNil(t, p.re)
		require.Equal(t, "^(?:"+p.Pattern+")$", p.re.String(), "the pattern is anchored")
		require.False(t, p.re.MatchString(""), "param %s matches the empty string", name)
	}

	g := rb.Guards
	require.Positive(t, g.Cooldown)
	require.GreaterOrEqual(t, g.MaxRuns, 1)
	require.GreaterOrEqual(t, g.Window, g.Cooldown)

	require.NotEmpty(t, rb.Steps)
	seen := map[string]bool{}
	for i := range rb.Steps {
		s := &rb.Steps[i]
		require.NotEmpty(t, s.Name)
		require.False(t, seen[s.Name], "duplicate step %q", s.Name)
		seen[s.Name] = true
		set := 0
		for _, p := range []bool{s.Exec != nil, s.HTTP != nil, s.Kubernetes != nil, s.Silence != nil, s.Wait != nil, s.PromQLCheck != nil} {
			if p {
				set++
			}
		}
		require.Equal(t, 1, set, "step %q sets %d kinds", s.Name, set)
		if s.Wait == nil {
			require.Positive(t, s.Timeout(), "step %q", s.Name)
			require.LessOrEqual(t, s.Timeout(), MaxStepTimeout, "step %q", s.Name)
		}
		switch {
		case s.Exec != nil:
			e := s.Exec
			require.True(t, strings.HasPrefix(e.Command, "/") && filepath.Clean(e.Command) == e.Command, "command %q", e.Command)
			require.NotContains(t, e.Command, "{{")
			for k, v := range e.Env {
				require.True(t, isIdent(k), "env %q", k)
				require.NotContains(t, v, "{{")
			}
		case s.HTTP != nil:
			h := s.HTTP
			require.Contains(t, []string{"GET", "POST", "PUT", "PATCH", "DELETE"}, h.Method)
			origin, _ := literalOrigin(t, h.URL)
			require.NotEmpty(t, origin)
			for k, v := range h.Headers {
				require.NotContains(t, k+v, "{{")
			}
			require.NotEmpty(t, h.ContentType)
			for _, c := range h.ExpectStatus {
				require.True(t, c >= 100 && c <= 599, "status %d", c)
			}
		case s.Kubernetes != nil:
			k := s.Kubernetes
			require.NotEmpty(t, k.Namespace)
			for _, v := range []string{k.Namespace, k.Deployment, k.Pod} {
				if v != "" && !strings.Contains(v, "{{") {
					require.True(t, isName(v, 253, "-."), "kubernetes name %q", v)
				}
			}
			switch k.Action {
			case ActionRolloutRestart:
				require.True(t, k.Deployment != "" && k.Pod == "" && k.Replicas == nil && k.Delta == nil)
			case ActionDeletePod:
				require.True(t, k.Pod != "" && k.Deployment == "" && k.Replicas == nil && k.Delta == nil)
			case ActionScale:
				require.True(t, k.Deployment != "" && k.Pod == "")
				require.NotEqual(t, k.Replicas == nil, k.Delta == nil, "scale takes exactly one of replicas and delta")
				require.NotNil(t, k.MinReplicas)
				require.NotNil(t, k.MaxReplicas)
				require.True(t, *k.MinReplicas >= 0 && *k.MinReplicas <= *k.MaxReplicas)
				if k.Replicas != nil {
					require.True(t, *k.Replicas >= *k.MinReplicas && *k.Replicas <= *k.MaxReplicas)
				}
			default:
				t.Fatalf("kubernetes action %q", k.Action)
			}
		case s.Silence != nil:
			require.NotEmpty(t, s.Silence.Matchers)
			for _, raw := range s.Silence.Matchers {
				m, err := labels.ParseMatcher(raw)
				require.NoError(t, err)
				require.NotContains(t, m.Name, "{{")
			}
			require.True(t, s.Silence.Duration > 0 && time.Duration(s.Silence.Duration) <= MaxSilence)
		case s.Wait != nil:
			require.True(t, s.Wait.Duration > 0 && time.Duration(s.Wait.Duration) <= MaxWait)
		case s.PromQLCheck != nil:
			require.NotEmpty(t, s.PromQLCheck.Query)
		}
	}
	if v := rb.Verify; v != nil {
		require.NotEmpty(t, v.Query)
		require.True(t, v.Within > 0 && time.Duration(v.Within) <= MaxVerifyWithin)
		require.True(t, time.Duration(v.Interval) >= time.Second && v.Interval <= v.Within)
	}
}

// labelMarker is every label's value in checkPlan: a quote and a newline
// around a word no runbook uses.
const (
	markerWord  = "zqLBLzq"
	labelMarker = `"` + markerWord + "\n"
)

// paramCandidates are tried in order as each parameter's value.
var paramCandidates = []string{
	"a", "web-1", "checkout", "shop", "x-worker", "web-1.example:9100", "0", "A", "a b", "../a", `a"b`, "$(id)", "a/b?c=d#e", "é",
}

// checkPlan plans every step of rb with, for each parameter, the first
// candidate its pattern takes, and the marker as the value of every label
// the runbook names.
func checkPlan(t *testing.T, rb *Runbook) {
	t.Helper()
	params := map[string]string{}
	for name, p := range rb.Params {
		i := slices.IndexFunc(paramCandidates, p.re.MatchString)
		if i < 0 {
			return
		}
		params[name] = paramCandidates[i]
	}
	// Every word of every template is a label name, so whatever a
	// template could name holds the marker.
	lset := map[string]string{}
	for _, s := range templateFields(rb) {
		if strings.Contains(s, markerWord) {
			return
		}
		for _, w := range strings.FieldsFunc(s, func(r rune) bool { return r != '_' && !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
			lset[w] = labelMarker
		}
	}
	for i := range rb.Steps {
		s := &rb.Steps[i]
		// The loader's rule, whatever the plan does: a field that may
		// reach a program, a URL, a Kubernetes object or a matcher takes
		// nothing from labels even when it is rendered with them.
		for _, raw := range paramOnlyFields(s) {
			out, err := render(raw, params, lset)
			if err == nil {
				require.NotContains(t, out, markerWord, "step %q: a label can reach %q", s.Name, raw)
			}
		}
		a, err := rb.PlanStep(i, params, lset)
		if err != nil {
			require.True(t, templated(s), "step %q has no template but cannot be planned: %v", s.Name, err)
			continue
		}
		require.Equal(t, s.Name, a.Name)
		require.Equal(t, s.Kind(), a.Kind)
		require.Equal(t, s.Timeout(), a.Timeout)
		// Where labels may go (queries, free text), they are escaped.
		var unescaped, noLabels []string
		switch a.Kind {
		case KindExec:
			require.Equal(t, s.Exec.Command, a.Exec.Command)
			require.Len(t, a.Exec.Args, len(s.Exec.Args))
			require.Equal(t, s.Exec.Env, a.Exec.Env)
			noLabels = append(noLabels, a.Exec.Args...)
		case KindHTTP:
			origin, _ := literalOrigin(t, s.HTTP.URL)
			require.Equal(t, origin, a.HTTP.Origin)
			u, err := url.Parse(a.HTTP.URL)
			require.NoError(t, err)
			require.Equal(t, origin, u.Scheme+"://"+u.Host, "the call leaves its origin: %s", a.HTTP.URL)
			require.Nil(t, u.User)
			require.Equal(t, s.HTTP.Headers, a.HTTP.Headers)
			noLabels = append(noLabels, a.HTTP.URL, a.HTTP.Body)
		case KindKubernetes:
			require.True(t, isName(a.Kubernetes.Namespace, 63, "-"), "namespace %q", a.Kubernetes.Namespace)
			require.True(t, isName(a.Kubernetes.Name, 253, "-."), "name %q", a.Kubernetes.Name)
			noLabels = append(noLabels, a.Kubernetes.Namespace, a.Kubernetes.Name)
		case KindSilence:
			require.Len(t, a.Silence.Matchers, len(s.Silence.Matchers))
			for j, m := range a.Silence.Matchers {
				want, err := labels.ParseMatcher(s.Silence.Matchers[j])
				require.NoError(t, err)
				require.Equal(t, want.Name, m.Name)
				require.Equal(t, want.Type, m.Type)
				noLabels = append(noLabels, m.String())
			}
			unescaped = append(unescaped, a.Silence.Comment)
		case KindWait:
			require.Equal(t, time.Duration(s.Wait.Duration), a.Wait)
		case KindPromQLCheck:
			unescaped = append(unescaped, a.Query)
		}
		for _, v := range noLabels {
			require.NotContains(t, v, markerWord, "step %q: a label value reached a field only parameters may reach", s.Name)
		}
		for _, v := range unescaped {
			require.NotContains(t, v, labelMarker, "step %q: a label value is not escaped", s.Name)
		}
	}
	q, err := rb.VerifyQuery(params, lset)
	require.NoError(t, err)
	require.NotContains(t, q, labelMarker, "verify: a label value is not escaped")
}

// templateFields are the fields of rb that may hold a template.
func templateFields(rb *Runbook) []string {
	var out []string
	for _, s := range rb.Steps {
		out = append(out, stepFields(&s)...)
	}
	if rb.Verify != nil {
		out = append(out, rb.Verify.Query)
	}
	return out
}

func stepFields(s *Step) []string {
	switch {
	case s.Silence != nil:
		return append(slices.Clone(s.Silence.Matchers), s.Silence.Comment)
	case s.PromQLCheck != nil:
		return []string{s.PromQLCheck.Query}
	}
	return paramOnlyFields(s)
}

// paramOnlyFields are the fields of s where only .Params may be used.
func paramOnlyFields(s *Step) []string {
	switch {
	case s.Exec != nil:
		return append(append(slices.Clone(s.Exec.Args), s.Exec.Command), slices.Collect(maps.Values(s.Exec.Env))...)
	case s.HTTP != nil:
		out := []string{s.HTTP.URL, s.HTTP.Body}
		for k, v := range s.HTTP.Headers {
			out = append(out, k, v)
		}
		return out
	case s.Kubernetes != nil:
		return []string{s.Kubernetes.Namespace, s.Kubernetes.Deployment, s.Kubernetes.Pod}
	case s.Silence != nil:
		return s.Silence.Matchers
	}
	return nil
}

func templated(s *Step) bool {
	return slices.ContainsFunc(stepFields(s), func(v string) bool { return strings.Contains(v, "{{") })
}

// literalOrigin returns the scheme://host of a URL template and what
// follows it, requiring the host to be literal.
func literalOrigin(t *testing.T, raw string) (origin, rest string) {
	t.Helper()
	scheme, after, ok := strings.Cut(raw, "://")
	require.True(t, ok && (scheme == "http" || scheme == "https"), "url %q", raw)
	host, path, _ := strings.Cut(after, "/")
	require.NotEmpty(t, host)
	require.False(t, strings.ContainsAny(host, "{}@?#%"), "host %q is not literal", host)
	require.NotContains(t, path, "#")
	return scheme + "://" + host, path
}

// isName reports whether s is 1 to n lowercase letters, digits and extra
// characters, starting and ending with a letter or digit.
func isName(s string, n int, extra string) bool {
	if s == "" || len(s) > n {
		return false
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	for i := range len(s) {
		if !alnum(s[i]) && !strings.ContainsRune(extra, rune(s[i])) {
			return false
		}
	}
	return alnum(s[0]) && alnum(s[len(s)-1])
}

// isIdent reports whether s is an ASCII identifier.
func isIdent(s string) bool {
	for i, r := range s {
		letter := r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		digit := i > 0 && r >= '0' && r <= '9'
		if !letter && !digit {
			return false
		}
	}
	return s != ""
}
