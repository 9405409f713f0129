package remediation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The outcomes of a step.
const (
	OutcomeOK      = "ok"
	OutcomeFailed  = "failed"
	OutcomeTimeout = "timeout"
	OutcomeDryRun  = "dry_run"
	OutcomeUnknown = "unknown"
	// OutcomeCancelled ends a step that had started when its run was
	// cancelled: a wait the run did not finish, or a silence or PromQL
	// check about to be run again after a restart.
	OutcomeCancelled = "cancelled"
)

// MaxOutput caps the captured stdout, stderr or response body of a step.
const MaxOutput = 4096

// RestartedAtAnnotation is the pod template annotation `kubectl rollout
// restart` sets; changing it rolls the deployment.
const RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// Result is what running a step produced.
type Result struct {
	Outcome    string
	ExitCode   *int
	HTTPStatus int
	// Output is an excerpt of what the step printed or answered, capped.
	Output   string
	Duration time.Duration
	Err      error
}

// KubeClient is the part of the Kubernetes API that kubernetes steps call;
// kubeapi.Client implements it.
type KubeClient interface {
	GetDeployment(ctx context.Context, namespace, name string) (*appsv1.Deployment, error)
	UpdateDeployment(ctx context.Context, d *appsv1.Deployment) error
	PatchDeployment(ctx context.Context, namespace, name string, pt types.PatchType, patch []byte) error
	DeletePod(ctx context.Context, namespace, name string) error
}

// Executor runs planned actions. Its zero fields disable the step kinds
// that need them.
type Executor struct {
	// Kube is the Kubernetes client for kubernetes steps.
	Kube KubeClient
	// Prometheus answers promql_check steps and verification queries.
	Prometheus promv1.API
	// AlertmanagerURL is where silence steps create silences.
	AlertmanagerURL string
	// HTTP sends http and silence steps' requests.
	HTTP *http.Client
	// AllowedNamespaces, when not empty, are the only namespaces kubernetes
	// steps may touch.
	AllowedNamespaces []string
	Now               func() time.Time
}

func (e *Executor) now() time.Time {
	if e.Now == nil {
		return time.Now()
	}
	return e.Now()
}

func (e *Executor) client() *http.Client {
	if e.HTTP == nil {
		return &http.Client{CheckRedirect: noRedirect}
	}
	return e.HTTP
}

// noRedirect keeps a step's request on the host the runbook names.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Run executes one action (never a wait: the caller schedules those).
// marker identifies the run, for the steps that must be idempotent.
func (e *Executor) Run(ctx context.Context, a Action, marker string) Result {
	start := e.now()
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = DefaultStepTimeout
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("step %s timed out after %s: %w", a.Name, timeout, context.DeadlineExceeded))
	defer cancel()
	var r Result
	switch a.Kind {
	case KindExec:
		r = e.exec(ctx, a.Exec, marker)
	case KindHTTP:
		r = e.http(ctx, a.HTTP)
	case KindKubernetes:
		r = e.kubernetes(ctx, a.Kubernetes)
	case KindSilence:
		r = e.silence(ctx, a.Silence, marker)
	case KindPromQLCheck:
		ok, out, err := e.Holds(ctx, a.Query)
		r = Result{Outcome: OutcomeOK, Output: out, Err: err}
		if err == nil && !ok {
			r.Err = errors.New("the query returned no result: the condition does not hold")
		}
	default:
		r = Result{Err: fmt.Errorf("step kind %q cannot be executed", a.Kind)}
	}
	r.Duration = e.now().Sub(start)
	if r.Err != nil {
		r.Outcome = OutcomeFailed
		if ctx.Err() != nil {
			r.Outcome = OutcomeTimeout
			r.Err = fmt.Errorf("%w (%w)", r.Err, context.Cause(ctx))
		}
	}
	return r
}

// cappedBuffer keeps the first bytes written to it: MaxOutput, plus room for
// the longest secret, so that a secret that starts within the excerpt is
// whole when it is redacted.
type cappedBuffer struct {
	b         bytes.Buffer
	secrets   []string
	truncated bool
}

func newCappedBuffer(secrets []string) *cappedBuffer {
	return &cappedBuffer{secrets: secrets}
}

func (c *cappedBuffer) limit() int {
	n := MaxOutput
	if len(c.secrets) > 0 {
		n += len(c.secrets[0]) // the longest: secretValues sorts them so
	}
	return n
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := c.limit() - c.b.Len(); room > 0 {
		c.b.Write(p[:min(room, len(p))])
	}
	if c.b.Len() >= c.limit() {
		c.truncated = true
	}
	return len(p), nil
}

// String returns the excerpt, at most MaxOutput bytes, with every secret
// replaced by <redacted>.
func (c *cappedBuffer) String() string {
	s := strings.ToValidUTF8(c.b.String(), "\uFFFD")
	s = redact(s, c.secrets)
	truncated := c.truncated
	if truncated {
		// A secret cut by the capture's end is not whole, and so not
		// redacted: drop any end that begins one.
		s = trimSecretStart(s, c.secrets)
	}
	if len(s) > MaxOutput {
		s, truncated = strings.ToValidUTF8(s[:MaxOutput], ""), true
	}
	if truncated {
		s += "…"
	}
	return s
}

// minSecretLen is the shortest header or environment value that is
// redacted from a step's output: shorter values are seldom secrets, and
// redacting them would blank common words.
const minSecretLen = 8

// redacted replaces a secret in a step's output.
const redacted = "<redacted>"

// secretValues returns the values a step's output must not show, longest
// first: the header or environment values of at least minSecretLen bytes
// and, for a value that starts with an authentication scheme ("Bearer
// <token>"), the credential after it, which a server may echo alone.
// Headers that never carry a secret (Accept, Content-Type, User-Agent) are
// left out, so that an answer that repeats them stays readable.
func secretValues(m map[string]string) []string {
	var out []string
	add := func(v string) {
		if len(v) >= minSecretLen && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	for k, v := range m {
		switch http.CanonicalHeaderKey(k) {
		case "Accept", "Content-Type", "User-Agent":
			continue
		}
		add(v)
		if _, cred, ok := strings.Cut(strings.TrimSpace(v), " "); ok {
			add(strings.TrimSpace(cred))
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// redact replaces every secret in s with <redacted>, longest first.
func redact(s string, secrets []string) string {
	for _, v := range secrets {
		s = strings.ReplaceAll(s, v, redacted)
	}
	return s
}

// trimSecretStart cuts the end of s where it is the start of a secret.
func trimSecretStart(s string, secrets []string) string {
	for _, v := range secrets {
		for n := min(len(v)-1, len(s)); n > 0; n-- {
			if strings.HasSuffix(s, v[:n]) {
				s = s[:len(s)-n]
				break
			}
		}
	}
	return s
}

// exec runs the program directly with argv and a minimal environment.
func (e *Executor) exec(ctx context.Context, x *ExecAction, marker string) Result {
	cmd := exec.CommandContext(ctx, x.Command, x.Args...) //nolint:gosec // G204: the command is a runbook's literal absolute path and the args are validated parameters; no shell is involved.
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "RESPONDER_RUN_ID=" + marker}
	for k, v := range x.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Dir = "/"
	cmd.Stdin = nil
	// The environment's values are never shown (the audit trail names
	// only their keys): nor are they when the program prints them.
	secrets := secretValues(x.Env)
	stdout, stderr := newCappedBuffer(secrets), newCappedBuffer(secrets)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 2 * time.Second
	// The command runs in a process group of its own, and a timeout kills
	// the whole group: a script's children do not outlive the step.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err := cmd.Run()
	out := stdout.String()
	if s := stderr.String(); s != "" {
		out += "\n[stderr] " + s
	}
	r := Result{Outcome: OutcomeOK, Output: strings.TrimSpace(out)}
	if cmd.ProcessState != nil {
		code := cmd.ProcessState.ExitCode()
		r.ExitCode = &code
	}
	if err != nil {
		r.Err = fmt.Errorf("run %s: %w", x.Command, err)
	}
	return r
}

// http sends the request and checks its status.
func (e *Executor) http(ctx context.Context, h *HTTPAction) Result {
	var body io.Reader
	if h.Body != "" {
		body = strings.NewReader(h.Body)
	}
	req, err := http.NewRequestWithContext(ctx, h.Method, h.URL, body)
	if err != nil {
		return Result{Err: fmt.Errorf("build request: %w", err)}
	}
	if req.URL.Scheme+"://"+req.URL.Host != h.Origin {
		return Result{Err: errors.New("request URL left the runbook's origin")}
	}
	for k, v := range h.Headers {
		req.Header.Set(k, v)
	}
	if h.Body != "" {
		req.Header.Set("Content-Type", h.ContentType)
	}
	resp, err := e.client().Do(req)
	if err != nil {
		return Result{Err: fmt.Errorf("%s %s: %w", h.Method, redactURL(h.URL), unwrapURLError(err))}
	}
	defer func() { _ = resp.Body.Close() }()
	// Headers are never shown: nor are they when the answer repeats one
	// (an echo endpoint, an error page quoting the request).
	out := newCappedBuffer(secretValues(h.Headers))
	_, _ = io.Copy(out, io.LimitReader(resp.Body, int64(out.limit())+1)) // the excerpt is best effort
	r := Result{Outcome: OutcomeOK, HTTPStatus: resp.StatusCode, Output: out.String()}
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if len(h.ExpectStatus) > 0 {
		ok = slices.Contains(h.ExpectStatus, resp.StatusCode)
	}
	if !ok {
		r.Err = fmt.Errorf("%s %s: unexpected status %d", h.Method, redactURL(h.URL), resp.StatusCode)
	}
	return r
}

// unwrapURLError drops the URL a *url.Error repeats, which may carry a
// credential.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// kubernetes performs a Kubernetes action.
func (e *Executor) kubernetes(ctx context.Context, k *KubernetesAction) Result {
	if e.Kube == nil {
		return Result{Err: errors.New("no kubernetes client is configured (run in a cluster or set remediation.kubeconfig_file)")}
	}
	if err := namespaceAllowed(e.AllowedNamespaces, k.Namespace); err != nil {
		return Result{Err: err}
	}
	switch k.Action {
	case ActionRolloutRestart:
		patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
			"annotations": map[string]string{RestartedAtAnnotation: e.now().UTC().Format(time.RFC3339)},
		}}}})
		if err := e.Kube.PatchDeployment(ctx, k.Namespace, k.Name, types.StrategicMergePatchType, patch); err != nil {
			return Result{Err: fmt.Errorf("restart deployment %s/%s: %w", k.Namespace, k.Name, err)}
		}
		return Result{Outcome: OutcomeOK, Output: "restarted deployment " + k.Namespace + "/" + k.Name}
	case ActionScale:
		d, err := e.Kube.GetDeployment(ctx, k.Namespace, k.Name)
		if err != nil {
			return Result{Err: fmt.Errorf("read deployment %s/%s: %w", k.Namespace, k.Name, err)}
		}
		cur := int32(1)
		if d.Spec.Replicas != nil {
			cur = *d.Spec.Replicas
		}
		want := ScaleTarget(cur, k)
		if want == cur {
			return Result{Outcome: OutcomeOK, Output: fmt.Sprintf("deployment %s/%s already has %d replicas (bounds [%d,%d])", k.Namespace, k.Name, cur, k.MinReplicas, k.MaxReplicas)}
		}
		d.Spec.Replicas = &want
		if err := e.Kube.UpdateDeployment(ctx, d); err != nil {
			return Result{Err: fmt.Errorf("scale deployment %s/%s: %w", k.Namespace, k.Name, err)}
		}
		return Result{Outcome: OutcomeOK, Output: fmt.Sprintf("scaled deployment %s/%s from %d to %d replicas (bounds [%d,%d])", k.Namespace, k.Name, cur, want, k.MinReplicas, k.MaxReplicas)}
	case ActionDeletePod:
		if err := e.Kube.DeletePod(ctx, k.Namespace, k.Name); err != nil {
			return Result{Err: fmt.Errorf("delete pod %s/%s: %w", k.Namespace, k.Name, err)}
		}
		return Result{Outcome: OutcomeOK, Output: "deleted pod " + k.Namespace + "/" + k.Name}
	}
	return Result{Err: fmt.Errorf("unknown kubernetes action %q", k.Action)}
}

// ScaleTarget is the replica count a scale action asks for, clamped to its
// bounds.
func ScaleTarget(cur int32, k *KubernetesAction) int32 {
	want := cur
	switch {
	case k.Replicas != nil:
		want = *k.Replicas
	case k.Delta != nil:
		want = cur + *k.Delta
	}
	return min(max(want, k.MinReplicas), k.MaxReplicas)
}

// SilenceMarker is the text a run's silences carry in their comment, by
// which a repeated step finds the silence it created.
func SilenceMarker(marker string) string { return "[responder " + marker + "]" }

type amMatcher struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	IsRegex bool   `json:"isRegex"`
	IsEqual bool   `json:"isEqual"`
}

type amSilence struct {
	ID        string      `json:"id,omitempty"`
	Matchers  []amMatcher `json:"matchers"`
	StartsAt  time.Time   `json:"startsAt"`
	EndsAt    time.Time   `json:"endsAt"`
	CreatedBy string      `json:"createdBy"`
	Comment   string      `json:"comment"`
	Status    *struct {
		State string `json:"state"`
	} `json:"status,omitempty"`
}

// silence creates the silence unless one carrying the run's marker exists.
func (e *Executor) silence(ctx context.Context, s *SilenceAction, marker string) Result {
	if e.AlertmanagerURL == "" {
		return Result{Err: errors.New("global.alertmanager_url is not configured")}
	}
	base := strings.TrimRight(e.AlertmanagerURL, "/") + "/api/v2/"
	tag := SilenceMarker(marker)
	var matchers []amMatcher
	q := url.Values{}
	for _, m := range s.Matchers {
		am := amMatcher{Name: m.Name, Value: m.Value}
		switch m.Type.String() {
		case "=~":
			am.IsRegex, am.IsEqual = true, true
		case "!=":
			am.IsEqual = false
		case "!~":
			am.IsRegex = true
		default:
			am.IsEqual = true
		}
		matchers = append(matchers, am)
		q.Add("filter", m.String())
	}
	// Idempotence: a silence this run created already (the step ran, but
	// its outcome was not recorded) is reused, never doubled.
	var existing []amSilence
	status, err := e.doJSON(ctx, http.MethodGet, base+"silences?"+q.Encode(), nil, &existing)
	if err != nil {
		return Result{HTTPStatus: status, Err: fmt.Errorf("list silences: %w", err)}
	}
	for _, sl := range existing {
		// The marker ends the comment: a label value in the comment's text
		// may spell another run's marker, but never at its end.
		if strings.HasSuffix(sl.Comment, tag) && (sl.Status == nil || sl.Status.State != "expired") {
			return Result{Outcome: OutcomeOK, HTTPStatus: status, Output: "silence " + sl.ID + " (already created by this run)"}
		}
	}
	now := e.now().UTC()
	comment := strings.TrimSpace(s.Comment + " " + tag)
	body := amSilence{Matchers: matchers, StartsAt: now, EndsAt: now.Add(s.Duration), CreatedBy: "responder", Comment: comment}
	var created struct {
		SilenceID string `json:"silenceID"`
	}
	status, err = e.doJSON(ctx, http.MethodPost, base+"silences", body, &created)
	if err != nil {
		return Result{HTTPStatus: status, Err: fmt.Errorf("create silence: %w", err)}
	}
	return Result{Outcome: OutcomeOK, HTTPStatus: status, Output: "silence " + created.SilenceID + " until " + body.EndsAt.Format(time.RFC3339)}
}

func (e *Executor) doJSON(ctx context.Context, method, u string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", unwrapURLError(err))
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.client().Do(req)
	if err != nil {
		return 0, unwrapURLError(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20)) // a short read fails the decode below
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("alertmanager answered %d: %s", resp.StatusCode, truncateRunes(strings.TrimSpace(string(b)), 200))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return resp.StatusCode, fmt.Errorf("decode alertmanager answer: %w", err)
	}
	return resp.StatusCode, nil
}

// Holds evaluates query now and reports whether it returned a non-empty
// result (a vector with samples, or a non-zero scalar), with a short
// description of the result.
func (e *Executor) Holds(ctx context.Context, query string) (bool, string, error) {
	if e.Prometheus == nil {
		return false, "", errors.New("global.prometheus_url is not configured")
	}
	v, _, _, err := e.Prometheus.Query(ctx, query, e.now())
	if err != nil {
		return false, "", fmt.Errorf("query prometheus: %w", err)
	}
	switch v := v.(type) {
	case model.Vector:
		if len(v) == 0 {
			return false, "empty result", nil
		}
		return true, strconv.Itoa(len(v)) + " series, first " + v[0].Value.String(), nil
	case *model.Scalar:
		return v.Value != 0, "scalar " + v.Value.String(), nil
	case model.Matrix:
		return len(v) > 0, strconv.Itoa(len(v)) + " series", nil
	}
	return false, "unsupported result type", nil
}
