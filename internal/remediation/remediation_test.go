package remediation

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/responder/responder/internal/kubeapi/kubeapitest"
)

func mustParse(t *testing.T, text string) *Runbook {
	t.Helper()
	rb, err := Parse([]byte(text))
	require.NoError(t, err)
	return rb
}

const rejectHead = "name: rb\nmatch: ['alertname=\"A\"']\nparams:\n  host: { label: host, pattern: '^[a-z]+$' }\n"

// rejectedRunbooks are runbooks Parse refuses, each with a part of the
// error it gives.
var rejectedRunbooks = map[string]struct{ text, want string }{
	"unknown nested key":           {rejectHead + "steps:\n  - name: s\n    exec: { command: /bin/true, shell: true }\n", "field shell not found"},
	"labels in exec args":          {rejectHead + "steps:\n  - name: s\n    exec: { command: /bin/true, args: ['{{ .Labels.host }}'] }\n", ".Labels may not be used here"},
	"labels in http url":           {rejectHead + "steps:\n  - name: s\n    http: { method: GET, url: 'https://a.example/{{ .Labels.host }}' }\n", ".Labels may not be used here"},
	"labels in kubernetes name":    {rejectHead + "steps:\n  - name: s\n    kubernetes: { action: delete_pod, namespace: ns, pod: '{{ .Labels.host }}' }\n", ".Labels may not be used here"},
	"labels outside promql quotes": {rejectHead + "steps:\n  - name: s\n    promql_check: { query: 'up{job={{ .Labels.job }}}' }\n", "outside a string literal"},
	"params outside promql quotes": {rejectHead + "steps:\n  - name: s\n    promql_check: { query: 'rate(x[{{ .Params.host }}]) > 0' }\n", "outside a string literal"},
	"promql define of the field":   {rejectHead + "steps:\n  - name: s\n    promql_check: { query: '{{ define \"field\" }}up > {{ .Labels.threshold }}{{ end }}' }\n", "outside a string literal"},
	"verify outside quotes":        {rejectHead + "steps:\n  - name: s\n    wait: { duration: 1s }\nverify: { query: 'up > {{ .Labels.threshold }}', within: 1m }\n", "outside a string literal"},
	"templated host":               {rejectHead + "steps:\n  - name: s\n    http: { method: GET, url: 'https://{{ .Params.host }}.example/' }\n", "host must be literal"},
	"credentials in host":          {rejectHead + "steps:\n  - name: s\n    http: { method: GET, url: 'https://u:p@a.example/' }\n", "host must be literal"},
	"relative command":             {rejectHead + "steps:\n  - name: s\n    exec: { command: bin/true }\n", "clean absolute path"},
	"templated command":            {rejectHead + "steps:\n  - name: s\n    exec: { command: '/bin/{{ .Params.host }}' }\n", "must not be templated"},
	"undefined param":              {rejectHead + "steps:\n  - name: s\n    exec: { command: /bin/true, args: ['{{ .Params.nope }}'] }\n", "undefined parameter"},
	"template function":            {rejectHead + "steps:\n  - name: s\n    exec: { command: /bin/true, args: ['{{ printf \"%s\" .Params.host }}'] }\n", "not defined"},
	"index on root":                {rejectHead + "steps:\n  - name: s\n    exec: { command: /bin/true, args: ['{{ index . \"Labels\" }}'] }\n", "not defined"},
	"scale without bounds":         {rejectHead + "steps:\n  - name: s\n    kubernetes: { action: scale, namespace: ns, deployment: d, delta: 1 }\n", "min_replicas and max_replicas"},
	"two kinds":                    {rejectHead + "steps:\n  - name: s\n    wait: { duration: 1s }\n    exec: { command: /bin/true }\n", "exactly one of"},
	"pattern matching empty":       {"name: rb\nmatch: ['a=\"b\"']\nparams:\n  x: { label: x, pattern: '.*' }\nsteps:\n  - name: s\n    wait: { duration: 1s }\n", "matches the empty string"},
	"no match":                     {"name: rb\nsteps:\n  - name: s\n    wait: { duration: 1s }\n", "at least one matcher"},
	"step timeout too long":        {rejectHead + "steps:\n  - name: s\n    exec: { command: /bin/true, timeout: 1h }\n", "timeout"},
	"exec env templated":           {rejectHead + "steps:\n  - name: s\n    exec: { command: /bin/true, env: { X: '{{ .Params.host }}' } }\n", "must not be templated"},
	"namespace with a dot":         {rejectHead + "steps:\n  - name: s\n    kubernetes: { action: rollout_restart, namespace: a.b, deployment: d }\n", "kubernetes.namespace"},
	"url with a bad escape":        {rejectHead + "steps:\n  - name: s\n    http: { method: GET, url: 'https://a.example/%zz?q={{ .Params.host }}' }\n", "not a valid URL"},
	"url with a control character": {rejectHead + "steps:\n  - name: s\n    http: { method: GET, url: \"https://a.example/\\x7f\" }\n", "not a valid URL"},
	"silence label name templated": {rejectHead + "steps:\n  - name: s\n    silence: { matchers: ['{{ .Params.host }}=\"x\"'], duration: 1h }\n", "silence.matchers[0]"},
	// Wrapped in ^(?: )$, this pattern would become ^(?:[a-z]+)|(.+)$:
	// a second branch anchored at neither end, which accepts anything.
	"pattern escaping its anchors":  {"name: rb\nmatch: ['a=\"b\"']\nparams:\n  x: { label: x, pattern: '[a-z]+)|(.+' }\nsteps:\n  - name: s\n    wait: { duration: 1s }\n", "params.x.pattern"},
	"second document":               {rejectHead + "steps:\n  - name: s\n    wait: { duration: 1s }\n---\nname: rb2\nmatch: ['a=\"b\"']\nsteps:\n  - name: s\n    exec: { command: /bin/true, shell: true }\n", "more than one YAML document"},
	"wait of zero":                  {rejectHead + "steps:\n  - name: s\n    wait: { duration: 0s }\n", "wait.duration: must be above 0"},
	"content type not a media type": {rejectHead + "steps:\n  - name: s\n    http: { method: POST, url: 'https://a.example/', content_type: 'json; =' }\n", "http.content_type"},
}

// TestParse_ErrorsQuoteNoValues: a YAML type error quotes the start of the
// value it could not decode, which may be a secret (a header, an
// environment variable); Parse leaves it out, as the config loader does.
func TestParse_ErrorsQuoteNoValues(t *testing.T) {
	t.Parallel()
	for _, text := range []string{
		"name: x\nmatch: ['a=\"b\"']\nsteps:\n  - name: s\n    http: { method: POST, url: 'https://a.example/', headers: 'Authorization: Bearer xoxb-1234-SECRET' }\n",
		"name: x\nmatch: ['a=\"b\"']\nsteps:\n  - name: s\n    exec: { command: /bin/true, env: ['API_TOKEN=supersecret'] }\n",
	} {
		_, err := Parse([]byte(text))
		require.Error(t, err)
		require.Contains(t, err.Error(), "cannot unmarshal")
		require.Contains(t, err.Error(), "line ")
		for _, leak := range []string{"Author", "xoxb", "SECRET", "API_TO", "supersecret", "`"} {
			require.NotContains(t, err.Error(), leak)
		}
	}
}

// TestParse_Digest: the digest changes with what the runbook does, not with
// its comments or layout.
func TestParse_Digest(t *testing.T) {
	t.Parallel()
	a := mustParse(t, execRunbook)
	b := mustParse(t, "# a comment\n"+strings.ReplaceAll(execRunbook, "match: ['alertname=\"A\"']", "match:\n  - alertname=\"A\""))
	c := mustParse(t, strings.ReplaceAll(execRunbook, "/usr/bin/touch", "/usr/bin/rm"))
	require.Len(t, a.Digest, 16)
	require.Equal(t, a.Digest, b.Digest)
	require.NotEqual(t, a.Digest, c.Digest)
}

// A match line may hold several matchers, as in Alertmanager's matchers;
// before, `alertname=A,team=db` was one matcher on alertname, whose value
// "A,team=db" no alert has, so the runbook silently never ran.
func TestParse_MatchLineWithSeveralMatchers(t *testing.T) {
	t.Parallel()
	for _, line := range []string{`'alertname=A,team=db'`, `'{alertname="A", team="db"}'`} {
		rb := mustParse(t, strings.ReplaceAll(execRunbook, `match: ['alertname="A"']`, "match: ["+line+"]"))
		require.True(t, rb.Matches(map[string]string{"alertname": "A", "team": "db", "host": "web"}), line)
		require.False(t, rb.Matches(map[string]string{"alertname": "A", "team": "web", "host": "web"}), line)
	}
	_, err := Parse([]byte(strings.ReplaceAll(execRunbook, `match: ['alertname="A"']`, `match: ['{}']`)))
	require.ErrorContains(t, err, "match[0]: no matcher on the line")
}

// Document markers around the one runbook of a file are fine.
func TestParse_DocumentMarkers(t *testing.T) {
	t.Parallel()
	for _, text := range []string{"---\n" + execRunbook, execRunbook + "---\n", "---\n" + execRunbook + "...\n"} {
		rb := mustParse(t, text)
		require.Equal(t, mustParse(t, execRunbook).Digest, rb.Digest)
	}
}

func TestParse_Rejects(t *testing.T) {
	t.Parallel()
	for name, tc := range rejectedRunbooks {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.text))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestLoadDir_ExampleRunbooks(t *testing.T) {
	t.Parallel()
	set, err := LoadDir(filepath.Join("..", "..", "runbooks"), false)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(set.Runbooks), 3)
	require.NoError(t, set.Check(Env{PrometheusURL: true, AlertmanagerURL: true}))
	kinds := map[string]bool{}
	for _, rb := range set.Runbooks {
		for _, s := range rb.Steps {
			kinds[s.Kind()] = true
		}
	}
	for _, k := range []string{KindKubernetes, KindSilence, KindExec} {
		require.True(t, kinds[k], "no example runbook uses a %s step", k)
	}
}

func TestLoadDir_BadRunbookNamesFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("name: x\nmatch: ['a=\"b\"']\nsteps: []\nbogus: 1\n"), 0o600))
	_, err := LoadDir(dir, false)
	require.ErrorContains(t, err, "bad.yaml")
}

// adversarialValues are label values that must never reach a program, a
// path or a URL host.
var adversarialValues = []string{
	"$(touch /tmp/x)", "a;b", "a; rm -rf /", "`id`", "../../etc/passwd", "a\nb", "web\n", strings.Repeat("a", 10<<10),
	"wеb", // Cyrillic e
	"web\u200b", "-rf", "a b", "a|b", "a&&b", "a>b", "", "web%2F..", "WEB",
}

const execRunbook = `
name: touch
match: ['alertname="A"']
params:
  host: { label: host, pattern: '^[a-z][a-z0-9-]{0,30}$' }
steps:
  - name: mark
    exec: { command: /usr/bin/touch, args: ['--', '{{ .Params.host }}'] }
`

func TestResolveParams_Adversarial(t *testing.T) {
	t.Parallel()
	rb := mustParse(t, execRunbook)
	for _, v := range adversarialValues {
		sel := Select(Config{Enabled: true, OptInLabel: "auto_remediation", OptInValue: "enabled", MaxConcurrent: 1, StormThreshold: 1},
			&Set{Runbooks: []*Runbook{rb}}, map[string]string{"alertname": "A", "auto_remediation": "enabled", "host": v})
		require.Equal(t, GuardParams, sel.Guard, "value %q", v)
		require.Nil(t, sel.Params)
		require.NotContains(t, sel.Reason, "\n", "the reason must show the value quoted")
		require.Less(t, len(sel.Reason), 400, "the reason must truncate the value")
		require.Contains(t, sel.Reason, "label host")
		// Planning with the rejected value is refused too, whoever asks.
		_, err := rb.Plan(map[string]string{"host": v}, nil)
		require.Error(t, err, "value %q", v)
	}
}

// FuzzResolveParams feeds random labels through parameter resolution and
// planning: an argv is produced only from values that matched their
// pattern, and never contains another label's value.
func FuzzResolveParams(f *testing.F) {
	for _, v := range adversarialValues {
		f.Add(v, "$(reboot)")
	}
	f.Add("web-1", "x")
	rb, err := Parse([]byte(execRunbook + `      - '--note={{ .Params.host }}'
`))
	if err != nil {
		// The args list above is extended by one entry.
		rb, err = Parse([]byte(execRunbook))
	}
	if err != nil {
		f.Fatal(err)
	}
	re := rb.Params["host"].re
	f.Fuzz(func(t *testing.T, host, other string) {
		lset := map[string]string{"alertname": "A", "host": host, "other": other}
		params, err := rb.ResolveParams(lset)
		if err != nil {
			return
		}
		require.True(t, re.MatchString(params["host"]))
		plan, err := rb.Plan(params, lset)
		require.NoError(t, err)
		argv := plan[0].Exec.Args
		require.Equal(t, []string{"--", host}, argv)
		for _, a := range argv {
			require.True(t, a == "--" || re.MatchString(a), "argv holds an unvalidated value %q", a)
			// "--" is the runbook's own text: another label's value such as
			// "-" may be part of it.
			if a != "--" && other != "" && other != host && !strings.Contains(host, other) {
				require.NotContains(t, a, other)
			}
		}
	})
}

func TestExecutor_Exec(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rb := mustParse(t, strings.ReplaceAll(execRunbook, "'--', '{{ .Params.host }}'", "'"+dir+"/{{ .Params.host }}'"))
	params, err := rb.ResolveParams(map[string]string{"host": "web-1"})
	require.NoError(t, err)
	a, err := rb.PlanStep(0, params, nil)
	require.NoError(t, err)
	res := (&Executor{}).Run(t.Context(), a, "run-1")
	require.NoError(t, res.Err)
	require.Equal(t, OutcomeOK, res.Outcome)
	require.NotNil(t, res.ExitCode)
	require.Zero(t, *res.ExitCode)
	require.FileExists(t, filepath.Join(dir, "web-1"))

	t.Run("failure and timeout", func(t *testing.T) {
		t.Parallel()
		res := (&Executor{}).Run(t.Context(), Action{Name: "f", Kind: KindExec, Exec: &ExecAction{Command: "/bin/false"}, Timeout: time.Second}, "run-2")
		require.Error(t, res.Err)
		require.Equal(t, OutcomeFailed, res.Outcome)
		require.Equal(t, 1, *res.ExitCode)
		res = (&Executor{}).Run(t.Context(), Action{Name: "s", Kind: KindExec, Exec: &ExecAction{Command: "/bin/sleep", Args: []string{"5"}}, Timeout: 100 * time.Millisecond}, "run-3")
		require.Equal(t, OutcomeTimeout, res.Outcome)
	})

	t.Run("a timeout kills the command's children too", func(t *testing.T) {
		t.Parallel()
		pidFile := filepath.Join(t.TempDir(), "child.pid")
		start := time.Now()
		res := (&Executor{}).Run(t.Context(), Action{Name: "c", Kind: KindExec, Exec: &ExecAction{
			Command: "/bin/sh", Args: []string{"-c", `sleep 30 & echo $! > "$1"; wait`, "sh", pidFile},
		}, Timeout: 300 * time.Millisecond}, "run-4")
		require.Equal(t, OutcomeTimeout, res.Outcome)
		require.Less(t, time.Since(start), 10*time.Second, "the step did not wait for the orphan")
		b, err := os.ReadFile(pidFile) //nolint:gosec // the test's own temp file
		require.NoError(t, err)
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			// Signal 0 probes for the process. A killed child whose
			// parent is gone too may linger as a zombie until init reaps
			// it; a zombie runs nothing, so it counts as gone.
			if syscall.Kill(pid, 0) != nil {
				return true
			}
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				return true
			}
			_, after, _ := strings.Cut(string(stat), ") ")
			return strings.HasPrefix(after, "Z")
		}, 5*time.Second, 20*time.Millisecond, "the background child %d outlived the step", pid)
	})
}

func TestExecutor_HTTPEscapesEachPosition(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var gotPath, gotQuery, gotBody string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		gotPath, gotQuery = r.URL.EscapedPath(), r.URL.RawQuery
		b := make([]byte, 1024)
		n, _ := r.Body.Read(b)
		gotBody = string(b[:n])
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	rb := mustParse(t, `
name: h
match: ['alertname="A"']
params:
  v: { label: v, pattern: '^[a-z /?&="#.]+$' }
steps:
  - name: call
    http: { method: POST, url: '`+srv.URL+`/items/{{ .Params.v }}?q={{ .Params.v }}', body: '{"v": "{{ .Params.v }}"}' }
`)
	params, err := rb.ResolveParams(map[string]string{"v": `a b/../?x&y="#`})
	require.NoError(t, err)
	a, err := rb.PlanStep(0, params, nil)
	require.NoError(t, err)
	res := (&Executor{}).Run(t.Context(), a, "run-1")
	require.NoError(t, res.Err)
	require.Equal(t, http.StatusNoContent, res.HTTPStatus)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, "/items/a%20b%2F..%2F%3Fx&y=%22%23", gotPath)
	require.Equal(t, "q=a+b%2F..%2F%3Fx%26y%3D%22%23", gotQuery)
	var body map[string]string
	require.NoError(t, json.Unmarshal([]byte(gotBody), &body))
	require.Equal(t, `a b/../?x&y="#`, body["v"])
}

// TestPlan_HTTPDotSegments: escaping leaves "." and ".." as they are, and
// as a path segment they would move the request to another endpoint of the
// same host; a value made only of dots is refused in a URL path (it is
// harmless in the query and the body).
func TestPlan_HTTPDotSegments(t *testing.T) {
	t.Parallel()
	rb := mustParse(t, `
name: h
match: ['alertname="A"']
params:
  host: { label: host, pattern: '[a-z0-9.-]{1,253}' }
steps:
  - name: drain
    http: { method: POST, url: 'https://ops.example/api/hosts/{{ .Params.host }}/drain' }
  - name: note
    http: { method: POST, url: 'https://ops.example/api/notes?host={{ .Params.host }}', body: '{"host": "{{ .Params.host }}"}' }
`)
	for _, v := range []string{".", "..", "...."} {
		_, err := rb.PlanStep(0, map[string]string{"host": v}, nil)
		require.ErrorContains(t, err, "only of dots", "value %q", v)
		a, err := rb.PlanStep(1, map[string]string{"host": v}, nil)
		require.NoError(t, err, "value %q", v)
		require.Equal(t, "https://ops.example/api/notes?host="+v, a.HTTP.URL)
	}
	for _, v := range []string{"web-1.example", "a..b", ".hidden"} {
		a, err := rb.PlanStep(0, map[string]string{"host": v}, nil)
		require.NoError(t, err, "value %q", v)
		require.Equal(t, "https://ops.example/api/hosts/"+v+"/drain", a.HTTP.URL)
	}
}

// TestPlan_JSONBodyWhateverTheCase: media types are case-insensitive, so a
// body declared `Application/JSON` gets its values JSON-escaped too.
func TestPlan_JSONBodyWhateverTheCase(t *testing.T) {
	t.Parallel()
	for _, ct := range []string{"application/json", "Application/JSON", "application/merge-patch+json; charset=utf-8", "APPLICATION/JSON"} {
		rb := mustParse(t, `
name: h
match: ['alertname="A"']
params:
  msg: { label: msg, pattern: '[^\\]{1,100}' }
steps:
  - name: note
    http: { method: POST, url: 'https://ops.example/notes', content_type: '`+ct+`', body: '{"text": "{{ .Params.msg }}", "admin": false}' }
`)
		a, err := rb.PlanStep(0, map[string]string{"msg": `hi", "admin": true, "x": "`}, nil)
		require.NoError(t, err, ct)
		var body map[string]any
		require.NoError(t, json.Unmarshal([]byte(a.HTTP.Body), &body), ct)
		require.Equal(t, false, body["admin"], ct)
		require.Equal(t, `hi", "admin": true, "x": "`, body["text"], ct)
	}
}

func TestExecutor_Kubernetes(t *testing.T) {
	t.Parallel()
	replicas := int32(8)
	cs := kubeapitest.New(
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "checkout", Namespace: "shop"}, Spec: appsv1.DeploymentSpec{Replicas: &replicas}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "checkout-abc", Namespace: "shop"}},
	)
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	ex := &Executor{Kube: cs, AllowedNamespaces: []string{"shop"}, Now: func() time.Time { return now }}
	ctx := t.Context()

	res := ex.Run(ctx, Action{Name: "r", Kind: KindKubernetes, Kubernetes: &KubernetesAction{Action: ActionRolloutRestart, Namespace: "shop", Name: "checkout"}}, "run-1")
	require.NoError(t, res.Err)
	d, err := cs.AppsV1().Deployments("shop").Get(ctx, "checkout", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, now.Format(time.RFC3339), d.Spec.Template.Annotations[RestartedAtAnnotation])

	delta := int32(5)
	res = ex.Run(ctx, Action{Name: "s", Kind: KindKubernetes, Kubernetes: &KubernetesAction{Action: ActionScale, Namespace: "shop", Name: "checkout", Delta: &delta, MinReplicas: 2, MaxReplicas: 10}}, "run-1")
	require.NoError(t, res.Err)
	d, err = cs.AppsV1().Deployments("shop").Get(ctx, "checkout", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, int32(10), *d.Spec.Replicas, "8+5 is clamped to max_replicas 10")
	down := int32(-20)
	require.Equal(t, int32(2), ScaleTarget(10, &KubernetesAction{Delta: &down, MinReplicas: 2, MaxReplicas: 10}))

	res = ex.Run(ctx, Action{Name: "d", Kind: KindKubernetes, Kubernetes: &KubernetesAction{Action: ActionDeletePod, Namespace: "shop", Name: "checkout-abc"}}, "run-1")
	require.NoError(t, res.Err)
	_, err = cs.CoreV1().Pods("shop").Get(ctx, "checkout-abc", metav1.GetOptions{})
	require.Error(t, err)

	res = ex.Run(ctx, Action{Name: "x", Kind: KindKubernetes, Kubernetes: &KubernetesAction{Action: ActionRolloutRestart, Namespace: "kube-system", Name: "coredns"}}, "run-1")
	require.ErrorContains(t, res.Err, "allowed_namespaces")
}

// fakeAlertmanager answers the silences API v2 as far as silence steps use
// it: GET lists every silence (filters are not applied), POST creates one.
type fakeAlertmanager struct {
	srv      *httptest.Server
	mu       sync.Mutex
	silences []amSilence
}

func newFakeAlertmanager(t *testing.T, silences ...amSilence) *fakeAlertmanager {
	t.Helper()
	am := &fakeAlertmanager{silences: silences}
	am.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		am.mu.Lock()
		defer am.mu.Unlock()
		switch r.Method {
		case http.MethodGet:
			_ = json.NewEncoder(w).Encode(am.silences)
		case http.MethodPost:
			var s amSilence
			_ = json.NewDecoder(r.Body).Decode(&s)
			s.ID = "s" + strconv.Itoa(len(am.silences))
			am.silences = append(am.silences, s)
			_ = json.NewEncoder(w).Encode(map[string]string{"silenceID": s.ID})
		}
	}))
	t.Cleanup(am.srv.Close)
	return am
}

// list returns the silences created so far.
func (am *fakeAlertmanager) list() []amSilence {
	am.mu.Lock()
	defer am.mu.Unlock()
	return slices.Clone(am.silences)
}

func TestExecutor_SilenceIsIdempotent(t *testing.T) {
	t.Parallel()
	am := newFakeAlertmanager(t)
	rb := mustParse(t, `
name: s
match: ['alertname="A"']
params:
  host: { label: host, pattern: '^[a-z0-9.-]+$' }
steps:
  - name: silence
    silence: { matchers: ['alertname="A"', 'host=~"{{ .Params.host }}"'], duration: 1h, comment: 'fixing {{ .Labels.host }} {{ .Labels.evil }}' }
`)
	lset := map[string]string{"host": "web.1", "evil": "x\ny"}
	params, err := rb.ResolveParams(lset)
	require.NoError(t, err)
	a, err := rb.PlanStep(0, params, lset)
	require.NoError(t, err)
	ex := &Executor{AlertmanagerURL: am.srv.URL}
	for range 3 {
		res := ex.Run(context.Background(), a, "run-7")
		require.NoError(t, res.Err)
	}
	silences := am.list()
	require.Len(t, silences, 1, "one run creates one silence however often its step runs")
	require.Contains(t, silences[0].Comment, SilenceMarker("run-7"))
	require.NotContains(t, silences[0].Comment, "\n")
	require.Equal(t, `web\.1`, silences[0].Matchers[1].Value, "a regex matcher's value is quoted")
}

func TestRenderQuery_EscapesLabels(t *testing.T) {
	t.Parallel()
	q, err := RenderQuery(`up{job="{{ .Labels.job }}"}`, nil, map[string]string{"job": `x"} or vector(1) or up{a="`})
	require.NoError(t, err)
	require.Equal(t, `up{job="x\x22} or vector(1) or up{a=\x22"}`, q, "the quotes are escaped: the value cannot end the string")
}

func TestSelect_GuardOrder(t *testing.T) {
	t.Parallel()
	rb := mustParse(t, execRunbook)
	set := &Set{Runbooks: []*Runbook{rb}}
	cfg := DefaultConfig()
	lset := map[string]string{"alertname": "A", "auto_remediation": "enabled", "host": "web"}
	kill := filepath.Join(t.TempDir(), "stop")
	for name, tc := range map[string]struct {
		mod   func(*Config, map[string]string)
		guard string
	}{
		"disabled":    {func(c *Config, _ map[string]string) { c.Enabled = false }, GuardEnabled},
		"not opted":   {func(_ *Config, l map[string]string) { delete(l, "auto_remediation") }, GuardOptIn},
		"no runbook":  {func(_ *Config, l map[string]string) { l["alertname"] = "B" }, GuardMatch},
		"bad param":   {func(_ *Config, l map[string]string) { l["host"] = "a;b" }, GuardParams},
		"kill switch": {func(c *Config, _ map[string]string) { c.KillSwitchFile = kill }, GuardKillSwitch},
		"passes":      {func(*Config, map[string]string) {}, ""},
	} {
		c := cfg
		l := maps.Clone(lset)
		tc.mod(&c, l)
		if tc.guard == GuardKillSwitch {
			require.NoError(t, os.WriteFile(kill, nil, 0o600))
		}
		sel := Select(c, set, l)
		require.Equal(t, tc.guard, sel.Guard, name)
		if tc.guard == "" {
			require.True(t, sel.DryRun, "the default config is dry-run")
			require.Equal(t, `touch{host="web"}`, sel.Target)
		}
	}
}

// TestKillSwitchOn: anything at the kill switch's path engages it,
// symbolic links included, dangling or not (a Kubernetes ConfigMap mount
// is one, and os.Stat took a dangling one for no switch); so does a path
// that cannot be checked, with the error for the caller to log. Only a
// path where nothing is disengages it.
func TestKillSwitchOn(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file, sub := filepath.Join(dir, "file"), filepath.Join(dir, "dir")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	require.NoError(t, os.Mkdir(sub, 0o750))
	link := func(name, target string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.Symlink(target, p))
		return p
	}
	for name, tc := range map[string]struct {
		path    string
		on      bool
		why     string
		checkOK bool // the path could be checked: no error to log
	}{
		"no path set":                    {"", false, "", true},
		"nothing there":                  {filepath.Join(dir, "absent"), false, "", true},
		"nothing in a missing directory": {filepath.Join(dir, "absent", "stop"), false, "", true},
		"regular file":                   {file, true, " exists: remediation is stopped", true},
		"empty directory":                {sub, true, " exists (a directory): remediation is stopped", true},
		"symlink to a file":              {link("to-file", file), true, " exists (a symbolic link): remediation is stopped", true},
		"dangling symlink":               {link("dangling", filepath.Join(dir, "absent")), true, " exists (a symbolic link whose target cannot be reached): remediation is stopped", true},
		"symlink to itself":              {link("loop", "loop"), true, " exists (a symbolic link whose target cannot be reached): remediation is stopped", true},
		"under a regular file":           {filepath.Join(file, "stop"), true, " cannot be checked (not a directory), so remediation is stopped", false},
		"under a symlink loop":           {filepath.Join(dir, "loop2", "stop"), true, " cannot be checked (too many levels of symbolic links), so remediation is stopped", false},
		"name too long":                  {filepath.Join(dir, strings.Repeat("x", 300)), true, " cannot be checked (file name too long), so remediation is stopped", false},
	} {
		t.Run(name, func(t *testing.T) {
			if name == "under a symlink loop" {
				link("loop2", "loop2")
			}
			on, why, err := KillSwitchOn(Config{KillSwitchFile: tc.path})
			require.Equal(t, tc.on, on)
			if tc.why == "" {
				require.Empty(t, why)
			} else {
				require.Equal(t, "the kill switch file "+tc.path+tc.why, why)
			}
			if tc.checkOK {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}

// TestSelect_KillSwitch: at selection, a dangling symbolic link and a path
// that cannot be checked refuse the run by the kill switch guard, and the
// check's error is handed to the caller to log.
func TestSelect_KillSwitch(t *testing.T) {
	t.Parallel()
	set := &Set{Runbooks: []*Runbook{mustParse(t, execRunbook)}}
	lset := map[string]string{"alertname": "A", "auto_remediation": "enabled", "host": "web"}
	dir := t.TempDir()
	dangling := filepath.Join(dir, "stop")
	require.NoError(t, os.Symlink(filepath.Join(dir, "configmap", "stop"), dangling))
	notDir := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(notDir, nil, 0o600))

	cfg := DefaultConfig()
	cfg.KillSwitchFile = dangling
	sel := Select(cfg, set, lset)
	require.Equal(t, GuardKillSwitch, sel.Guard)
	require.Contains(t, sel.Reason, "exists (a symbolic link whose target cannot be reached)")
	require.NoError(t, sel.KillSwitchErr)

	cfg.KillSwitchFile = filepath.Join(notDir, "stop")
	sel = Select(cfg, set, lset)
	require.Equal(t, GuardKillSwitch, sel.Guard)
	require.Contains(t, sel.Reason, "cannot be checked (not a directory)")
	require.ErrorIs(t, sel.KillSwitchErr, syscall.ENOTDIR)

	cfg.KillSwitchFile = filepath.Join(dir, "absent")
	sel = Select(cfg, set, lset)
	require.Empty(t, sel.Guard, sel.Reason)
	require.NoError(t, sel.KillSwitchErr)
}

// The remediation lease is derived from LongestStep: the longest step
// timeout (a step without one gets the default), or the verification
// query's where a runbook verifies.
func TestSet_LongestStep(t *testing.T) {
	short := mustParse(t, `
name: short
match: ['alertname="A"']
steps:
  - name: touch
    exec: { command: /usr/bin/true, timeout: 2s }
  - name: pause
    wait: { duration: 10m }
`)
	defaulted := mustParse(t, `
name: defaulted
match: ['alertname="B"']
steps:
  - name: touch
    exec: { command: /usr/bin/true }
`)
	long := mustParse(t, `
name: long
match: ['alertname="C"']
steps:
  - name: touch
    exec: { command: /usr/bin/true, timeout: 4m }
`)
	verifies := mustParse(t, `
name: verifies
match: ['alertname="D"']
steps:
  - name: touch
    exec: { command: /usr/bin/true, timeout: 1s }
verify: { query: 'up == 1', within: 5m }
`)
	require.Zero(t, (*Set)(nil).LongestStep())
	require.Equal(t, 2*time.Second, (&Set{Runbooks: []*Runbook{short}}).LongestStep(), "a wait is not a call out")
	require.Equal(t, DefaultStepTimeout, (&Set{Runbooks: []*Runbook{short, defaulted}}).LongestStep())
	require.Equal(t, 4*time.Minute, (&Set{Runbooks: []*Runbook{short, long, verifies}}).LongestStep())
	require.Equal(t, VerifyTimeout, (&Set{Runbooks: []*Runbook{verifies}}).LongestStep())
}

// parseA parses a runbook named name for alertname="A" from its params
// and steps (YAML lines, each indented by two spaces).
func parseA(t *testing.T, name, params, steps string) *Runbook {
	t.Helper()
	text := "name: " + name + "\nmatch: ['alertname=\"A\"']\n"
	if params != "" {
		text += "params:" + params
	}
	return mustParse(t, text+"steps:"+steps)
}

// TestPlan_ValuesStayValues: label values shaped to escape where they land
// (template syntax, URL authorities, encoded dots, Kubernetes names that
// are not valid) are refused by a Kubernetes name check, or stay one
// escaped path segment of the runbook's own origin, and template syntax in
// a value is never evaluated.
func TestPlan_ValuesStayValues(t *testing.T) {
	t.Parallel()
	rb := parseA(t, "v", `
  x: { label: x, pattern: '[^/]{1,300}' }
`, `
  - name: call
    http: { method: POST, url: 'https://ops.example/api/{{ .Params.x }}/drain?q={{ .Params.x }}', body: '{"x": "{{ .Params.x }}"}' }
  - name: run
    exec: { command: /usr/bin/true, args: ['--', '{{ .Params.x }}'] }
  - name: silence
    silence: { matchers: ['host="{{ .Params.x }}"'], duration: 1h, comment: '{{ .Labels.x }}' }
  - name: restart
    kubernetes: { action: rollout_restart, namespace: shop, deployment: '{{ .Params.x }}' }
`)
	for _, v := range []string{
		"{{ .Params.x }}", `{{ template "field" }}`, "{{ .Labels.secret }}", "http:evil@other.example", "other.example:443",
		"[::1]:80", "%2e%2e", ".%2E", "@other.example", "..;", `..\`, "Checkout", strings.Repeat("a", 254),
	} {
		params, err := rb.ResolveParams(map[string]string{"x": v})
		require.NoError(t, err, "value %q", v)
		lset := map[string]string{"x": v, "secret": "s3cr3t"}
		for i := range 3 {
			a, err := rb.PlanStep(i, params, lset)
			require.NoError(t, err, "value %q step %d", v, i)
			text := a.Describe() + fmt.Sprint(a.Exec, a.HTTP, a.Silence)
			require.NotContains(t, text, "s3cr3t", "value %q step %d: a template in a value was evaluated", v, i)
			switch i {
			case 0:
				require.Equal(t, "https://ops.example/api/"+url.PathEscape(v)+"/drain?q="+url.QueryEscape(v), a.HTTP.URL, "value %q", v)
				u, err := url.Parse(a.HTTP.URL)
				require.NoError(t, err)
				require.Equal(t, "ops.example", u.Host, "value %q", v)
				require.Nil(t, u.User, "value %q", v)
				require.Equal(t, []string{"", "api", v, "drain"}, strings.Split(u.Path, "/"), "value %q is one path segment", v)
			case 1:
				require.Equal(t, []string{"--", v}, a.Exec.Args, "value %q", v)
			case 2:
				require.Len(t, a.Silence.Matchers, 1)
				require.Equal(t, v, a.Silence.Matchers[0].Value)
				require.Equal(t, v, a.Silence.Comment)
			}
		}
		_, err = rb.PlanStep(3, params, lset)
		require.ErrorContains(t, err, "not a valid Kubernetes name", "value %q", v)
	}
	// A namespace is a DNS label: at most 63 characters, lowercase, no dot.
	ns := parseA(t, "ns", `
  ns: { label: ns, pattern: '[a-zA-Z0-9.-]{1,100}' }
`, `
  - name: restart
    kubernetes: { action: rollout_restart, namespace: '{{ .Params.ns }}', deployment: checkout }
`)
	for _, v := range []string{strings.Repeat("a", 64), "Shop", "shop.evil", "-shop", "shop-"} {
		_, err := ns.PlanStep(0, map[string]string{"ns": v}, nil)
		require.ErrorContains(t, err, "not a valid Kubernetes name", "value %q", v)
	}
}

// TestSelect_NamespaceNotAllowed: a kubernetes step whose namespace comes
// from a label is refused before any step when the label names a namespace
// outside remediation.allowed_namespaces, which the executor would only
// refuse when it reached the step, after the steps before it had run.
func TestSelect_NamespaceNotAllowed(t *testing.T) {
	t.Parallel()
	rb := parseA(t, "restart", `
  ns: { label: namespace, pattern: '[a-z0-9-]{1,63}' }
`, `
  - name: note
    exec: { command: /usr/bin/true }
  - name: restart
    kubernetes: { action: rollout_restart, namespace: '{{ .Params.ns }}', deployment: checkout }
`)
	set := &Set{Runbooks: []*Runbook{rb}}
	cfg := DefaultConfig()
	cfg.AllowedNamespaces = []string{"shop"}
	lset := map[string]string{"alertname": "A", "auto_remediation": "enabled", "namespace": "kube-system"}
	sel := Select(cfg, set, lset)
	require.Equal(t, GuardParams, sel.Guard)
	require.Equal(t, `refused before any step: step restart: namespace "kube-system" is not in remediation.allowed_namespaces`, sel.Reason)

	lset["namespace"] = "shop"
	require.Empty(t, Select(cfg, set, lset).Guard, "an allowed namespace passes")
	cfg.AllowedNamespaces = nil
	lset["namespace"] = "kube-system"
	require.Empty(t, Select(cfg, set, lset).Guard, "without allowed_namespaces every namespace is allowed")
}

// TestPlan_SilenceCommentFreeText: a label in a silence comment has no
// control character of either set (U+0085 breaks lines as \n does), no
// format character (a right-to-left override makes the comment read
// otherwise) and no line or paragraph separator.
func TestPlan_SilenceCommentFreeText(t *testing.T) {
	t.Parallel()
	rb := parseA(t, "s", "", `
  - name: silence
    silence: { matchers: ['alertname="A"'], duration: 1h, comment: 'fixing {{ .Labels.host }}' }
`)
	a, err := rb.PlanStep(0, nil, map[string]string{"host": "a\nb\u0085c\u009bd\u202eexe.txt\u2028e\u2029f\u200bg\x7fh"})
	require.NoError(t, err)
	require.Equal(t, "fixing a b c d exe.txt e f g h", a.Silence.Comment)
}

// TestExecutor_SilenceMarkerIsTheCommentsEnd: a label value in a silence
// comment may spell another run's marker; the run whose marker it spells
// still creates its own silence rather than taking that one for it.
func TestExecutor_SilenceMarkerIsTheCommentsEnd(t *testing.T) {
	t.Parallel()
	am := newFakeAlertmanager(t, amSilence{ID: "s0", Matchers: []amMatcher{{Name: "alertname", Value: "A", IsEqual: true}}, Comment: "fixing [responder run-8] [responder run-7]"})
	rb := parseA(t, "s", "", `
  - name: silence
    silence: { matchers: ['alertname="A"'], duration: 1h, comment: 'fixing {{ .Labels.host }}' }
`)
	ex := &Executor{AlertmanagerURL: am.srv.URL}
	a, err := rb.PlanStep(0, nil, map[string]string{"host": "[responder run-8]"})
	require.NoError(t, err)
	res := ex.Run(t.Context(), a, "run-7")
	require.NoError(t, res.Err)
	require.Contains(t, res.Output, "already created by this run", "run 7 finds its own silence")
	res = ex.Run(t.Context(), a, "run-8")
	require.NoError(t, res.Err)
	require.NotContains(t, res.Output, "already created", "run 8 took run 7's silence, whose comment a label made spell run 8's marker")
	silences := am.list()
	require.Len(t, silences, 2)
	require.True(t, strings.HasSuffix(silences[1].Comment, SilenceMarker("run-8")))
}

// TestExecutor_OutputRedactsSecrets: the values of an http step's headers
// and an exec step's environment are never shown, not even when the
// server's answer or the program's output repeats them, whole, as the
// credential after its scheme, or cut by the excerpt's end.
func TestExecutor_OutputRedactsSecrets(t *testing.T) {
	t.Parallel()
	const token = "tok-3f9a1c7e5b2d4680" //nolint:gosec // G101: a made-up test token, not a credential.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		switch r.URL.Path {
		case "/echo":
			_, _ = fmt.Fprintf(w, "invalid Authorization %q (token %s), api key %s, content type %s", //nolint:gosec // G705: the fake server echoes the request's headers on purpose.
				r.Header.Get("Authorization"), token, r.Header.Get("X-Api-Key"), r.Header.Get("Content-Type"))
		case "/long":
			// The last token starts 5 bytes before the end of what is read
			// (MaxOutput and the longest secret, "Bearer "+token); the ten
			// before it, redacted, move its start into the excerpt.
			head := strings.Repeat(token, 10)
			_, _ = fmt.Fprint(w, head+strings.Repeat("x", MaxOutput+len("Bearer "+token)-5-len(head))+token+strings.Repeat("y", 100))
		}
	}))
	defer srv.Close()
	headers := map[string]string{"Authorization": "Bearer " + token, "X-Api-Key": "key-7d1e0b9c", "Content-Type": "application/json"}
	for _, path := range []string{"/echo", "/long"} {
		res := (&Executor{}).Run(t.Context(), Action{Name: "h", Kind: KindHTTP, HTTP: &HTTPAction{
			Method: http.MethodGet, URL: srv.URL + path, Origin: srv.URL, Headers: headers,
		}}, "run-1")
		require.Error(t, res.Err)
		require.Equal(t, http.StatusUnauthorized, res.HTTPStatus)
		for _, s := range []string{token, token[:5], "key-7d1e0b9c"} {
			require.NotContains(t, res.Output+res.Err.Error(), s, path)
		}
		require.LessOrEqual(t, len(res.Output), MaxOutput+len("…"), path)
		if path == "/echo" {
			require.Equal(t, `invalid Authorization "<redacted>" (token <redacted>), api key <redacted>, content type application/json`, res.Output)
		}
	}

	res := (&Executor{}).Run(t.Context(), Action{Name: "e", Kind: KindExec, Exec: &ExecAction{
		Command: "/bin/sh", Args: []string{"-c", `echo "token=$API_TOKEN mode=$MODE"; echo "$API_TOKEN" >&2; exit 3`},
		Env: map[string]string{"API_TOKEN": token, "MODE": "fast"},
	}, Timeout: 10 * time.Second}, "run-2")
	require.Error(t, res.Err)
	require.Equal(t, "token=<redacted> mode=fast\n\n[stderr] <redacted>", res.Output)
}
