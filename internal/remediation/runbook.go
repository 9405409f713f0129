package remediation

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v2"

	"github.com/responder/responder/internal/incident"
)

// Limits of a runbook, checked when it is loaded.
const (
	// DefaultStepTimeout bounds a step that sets no timeout.
	DefaultStepTimeout = 30 * time.Second
	// MaxStepTimeout is the longest timeout a step may set. The remediation
	// queue's lease is longer, so that a step never outlives its job.
	MaxStepTimeout = 5 * time.Minute
	// MaxWait is the longest wait step.
	MaxWait = time.Hour
	// MaxSilence is the longest silence a silence step may create.
	MaxSilence = 24 * time.Hour
	// MaxVerifyWithin is the longest verification window.
	MaxVerifyWithin = time.Hour
	// DefaultVerifyInterval is how often the verification query is polled.
	DefaultVerifyInterval = 15 * time.Second
	// maxParamLen caps a parameter value whatever its pattern allows.
	maxParamLen = 1024
)

// The guard defaults of a runbook that sets none.
const (
	DefaultCooldown = 30 * time.Minute
	DefaultMaxRuns  = 3
	DefaultWindow   = 24 * time.Hour
)

// Runbook is one runbooks/*.yaml file: which alerts it is for, the
// parameters it takes from their labels, its guards, its typed steps and the
// check that the fix worked.
type Runbook struct {
	Name        string           `yaml:"name"`
	Description string           `yaml:"description,omitempty"`
	Match       []string         `yaml:"match"`
	Params      map[string]Param `yaml:"params,omitempty"`
	// DryRun forces this runbook into dry-run whatever remediation.dry_run
	// says: a new runbook can be watched before it is trusted.
	DryRun bool    `yaml:"dry_run,omitempty"`
	Guards Guards  `yaml:"guards,omitempty"`
	Steps  []Step  `yaml:"steps"`
	Verify *Verify `yaml:"verify,omitempty"`

	// File is the file the runbook was loaded from.
	File string `yaml:"-"`
	// Digest identifies what the runbook does: a hash of its parsed form
	// (comments and layout do not count). A run records the digest it was
	// admitted with, and stops if the runbook in force is no longer that
	// one.
	Digest   string          `yaml:"-"`
	matchers labels.Matchers `yaml:"-"`
}

// Param takes one parameter from an alert label. The value must match
// Pattern in full: the pattern is anchored whether or not it is written
// with ^ and $.
type Param struct {
	Label   string         `yaml:"label"`
	Pattern string         `yaml:"pattern"`
	re      *regexp.Regexp `yaml:"-"`
}

// Guards are a runbook's own limits, on top of the global ones.
type Guards struct {
	// Cooldown is the least time between two runs for one target.
	Cooldown model.Duration `yaml:"cooldown,omitempty"`
	// MaxRuns is how many runs one target may have within Window.
	MaxRuns int            `yaml:"max_runs,omitempty"`
	Window  model.Duration `yaml:"window,omitempty"`
	// RequireApproval asks in the incident's Slack thread before running.
	RequireApproval bool `yaml:"require_approval,omitempty"`
	// ContinueOnResolve keeps running the remaining steps after the alert
	// resolved; by default they are cancelled.
	ContinueOnResolve bool `yaml:"continue_on_resolve,omitempty"`
}

// Step is one typed step: exactly one of its kinds is set.
type Step struct {
	Name        string           `yaml:"name"`
	Exec        *ExecStep        `yaml:"exec,omitempty"`
	HTTP        *HTTPStep        `yaml:"http,omitempty"`
	Kubernetes  *KubernetesStep  `yaml:"kubernetes,omitempty"`
	Silence     *SilenceStep     `yaml:"silence,omitempty"`
	Wait        *WaitStep        `yaml:"wait,omitempty"`
	PromQLCheck *PromQLCheckStep `yaml:"promql_check,omitempty"`
}

// The step kinds, as they appear in audit records and metrics.
const (
	KindExec        = "exec"
	KindHTTP        = "http"
	KindKubernetes  = "kubernetes"
	KindSilence     = "silence"
	KindWait        = "wait"
	KindPromQLCheck = "promql_check"
)

// ExecStep runs a program directly (never through a shell) with an argument
// list. Only .Params may be templated into Args.
type ExecStep struct {
	Command string   `yaml:"command"`
	Args    []string `yaml:"args,omitempty"`
	// Env is the program's whole environment besides PATH, LANG and
	// RESPONDER_RUN_ID: nothing of responder's own environment is passed on.
	// Values are literal; they are never shown in the audit trail.
	Env     map[string]string `yaml:"env,omitempty"`
	Timeout model.Duration    `yaml:"timeout,omitempty"`
}

// HTTPStep calls a URL whose scheme and host are fixed in the runbook; .Params
// may be templated into its path, query and body, each escaped for where it
// lands.
type HTTPStep struct {
	Method string `yaml:"method"`
	URL    string `yaml:"url"`
	// Headers are literal and never shown in the audit trail.
	Headers     map[string]string `yaml:"headers,omitempty"`
	Body        string            `yaml:"body,omitempty"`
	ContentType string            `yaml:"content_type,omitempty"`
	// ExpectStatus lists the statuses that count as success; by default
	// any 2xx.
	ExpectStatus []int          `yaml:"expect_status,omitempty"`
	Timeout      model.Duration `yaml:"timeout,omitempty"`
}

// The Kubernetes actions.
const (
	ActionRolloutRestart = "rollout_restart"
	ActionScale          = "scale"
	ActionDeletePod      = "delete_pod"
)

// KubernetesStep acts on one object through the Kubernetes API.
type KubernetesStep struct {
	Action     string `yaml:"action"`
	Namespace  string `yaml:"namespace"`
	Deployment string `yaml:"deployment,omitempty"`
	Pod        string `yaml:"pod,omitempty"`
	// Replicas sets the replica count; Delta changes it. Exactly one is
	// set for scale, and the result is clamped to [MinReplicas,
	// MaxReplicas], both required.
	Replicas    *int32         `yaml:"replicas,omitempty"`
	Delta       *int32         `yaml:"delta,omitempty"`
	MinReplicas *int32         `yaml:"min_replicas,omitempty"`
	MaxReplicas *int32         `yaml:"max_replicas,omitempty"`
	Timeout     model.Duration `yaml:"timeout,omitempty"`
}

// SilenceStep creates an Alertmanager silence (API v2) for Duration. One run
// never creates two: the silence carries the run's marker in its comment,
// and an existing one is reused.
type SilenceStep struct {
	Matchers []string       `yaml:"matchers"`
	Duration model.Duration `yaml:"duration"`
	// Comment is free text; .Labels may be used in it.
	Comment string         `yaml:"comment,omitempty"`
	Timeout model.Duration `yaml:"timeout,omitempty"`
}

// WaitStep pauses the run without holding a worker.
type WaitStep struct {
	Duration model.Duration `yaml:"duration"`
}

// PromQLCheckStep stops the run unless the query returns a non-empty result.
type PromQLCheckStep struct {
	Query   string         `yaml:"query"`
	Timeout model.Duration `yaml:"timeout,omitempty"`
}

// Verify is the check that the fix worked: Query must return a non-empty
// result within Within of the last step, polled every Interval.
type Verify struct {
	Query    string         `yaml:"query"`
	Within   model.Duration `yaml:"within"`
	Interval model.Duration `yaml:"interval,omitempty"`
}

var (
	nameRE      = regexp.MustCompile(`^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$`)
	paramNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	methods     = []string{"GET", "POST", "PUT", "PATCH", "DELETE"}
)

// Parse decodes one runbook strictly (an unknown key anywhere is an error)
// and validates it.
func Parse(b []byte) (*Runbook, error) {
	var rb Runbook
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.SetStrict(true)
	if err := dec.Decode(&rb); err != nil && !errors.Is(err, io.EOF) {
		return nil, withoutValues(err)
	}
	// A file is one runbook: a second one after a `---` would otherwise be
	// left out unchecked, and never run. An empty document (a final `---`)
	// is fine.
	var more any
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) && (err != nil || more != nil) {
		return nil, errors.New("the file holds more than one YAML document (separated by ---): a file is one runbook, so put each in a file of its own")
	}
	// The digest is taken of the runbook as written, before validation adds
	// its defaults, so that it changes only when the file does (comments
	// and layout aside), not when responder's defaults do.
	canon, err := yaml.Marshal(&rb)
	if err != nil {
		return nil, fmt.Errorf("digest: %w", err)
	}
	sum := sha256.Sum256(canon)
	rb.Digest = hex.EncodeToString(sum[:8])
	if err := rb.validate(); err != nil {
		return nil, err
	}
	return &rb, nil
}

// yamlValueRE matches the value a YAML type error quotes: "cannot unmarshal
// !!str `Authori...` into ..." keeps the first characters of what may be a
// secret (a header, an environment variable).
var yamlValueRE = regexp.MustCompile(" `[^`]*`")

// withoutValues removes the values a YAML decoding error quotes; it keeps
// the line numbers and what was expected.
func withoutValues(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, len(te.Errors))
	for i, e := range te.Errors {
		msgs[i] = yamlValueRE.ReplaceAllString(e, "")
	}
	return errors.New(strings.Join(msgs, "; "))
}

// validate checks the runbook on its own, compiles its patterns and
// templates, and sets the defaults of its guards and timeouts.
func (rb *Runbook) validate() error {
	if !nameRE.MatchString(rb.Name) {
		return fmt.Errorf("name: %q must be lowercase letters, digits, '-', '_' or '.', at most 63", rb.Name)
	}
	if len(rb.Match) == 0 {
		return errors.New("match: at least one matcher is required")
	}
	ms, err := incident.ParseMatcherLines("match", rb.Match)
	if err != nil {
		return err
	}
	rb.matchers = ms
	for _, name := range slices.Sorted(maps.Keys(rb.Params)) {
		p := rb.Params[name]
		if !paramNameRE.MatchString(name) {
			return fmt.Errorf("params: %q is not a valid parameter name", name)
		}
		if !model.LegacyValidation.IsValidLabelName(p.Label) {
			return fmt.Errorf("params.%s.label: %q is not a valid label name", name, p.Label)
		}
		if p.Pattern == "" {
			return fmt.Errorf("params.%s.pattern: a pattern is required", name)
		}
		re, err := compilePattern(p.Pattern)
		if err != nil {
			return fmt.Errorf("params.%s.pattern: %w", name, err)
		}
		if re.MatchString("") {
			return fmt.Errorf("params.%s.pattern: it matches the empty string", name)
		}
		p.re = re
		rb.Params[name] = p
	}
	g := &rb.Guards
	if g.Cooldown == 0 {
		g.Cooldown = model.Duration(DefaultCooldown)
	}
	if g.MaxRuns == 0 {
		g.MaxRuns = DefaultMaxRuns
	}
	if g.Window == 0 {
		g.Window = model.Duration(DefaultWindow)
	}
	switch {
	case g.MaxRuns < 0:
		return errors.New("guards.max_runs: must be at least 1")
	case g.Window < g.Cooldown:
		return errors.New("guards.window: must not be shorter than guards.cooldown")
	}
	if len(rb.Steps) == 0 {
		return errors.New("steps: at least one step is required")
	}
	names := map[string]bool{}
	for i := range rb.Steps {
		s := &rb.Steps[i]
		if s.Name == "" {
			return fmt.Errorf("steps[%d].name: a name is required", i)
		}
		if names[s.Name] {
			return fmt.Errorf("steps[%d].name: duplicate step name %q", i, s.Name)
		}
		names[s.Name] = true
		if err := s.validate(rb); err != nil {
			return fmt.Errorf("steps[%d] (%s): %w", i, s.Name, err)
		}
	}
	if v := rb.Verify; v != nil {
		if err := checkQueryTemplate(v.Query, rb); err != nil {
			return fmt.Errorf("verify.query: %w", err)
		}
		if v.Query == "" {
			return errors.New("verify.query: a query is required")
		}
		if v.Within <= 0 || time.Duration(v.Within) > MaxVerifyWithin {
			return fmt.Errorf("verify.within: must be above 0 and at most %s", MaxVerifyWithin)
		}
		if v.Interval == 0 {
			v.Interval = model.Duration(min(DefaultVerifyInterval, time.Duration(v.Within)))
		}
		if v.Interval < model.Duration(time.Second) || v.Interval > v.Within {
			return errors.New("verify.interval: must be at least 1s and at most verify.within")
		}
	}
	return nil
}

// compilePattern compiles a parameter pattern anchored at both ends, so that
// `[a-z]+` cannot match a part of "ok; rm -rf /".
func compilePattern(p string) (*regexp.Regexp, error) {
	// The pattern must be a regular expression on its own before it is
	// wrapped: `[a-z]+)|(.+` is not, and wrapped it would become
	// `^(?:[a-z]+)|(.+)$`, whose second branch is anchored at neither end.
	if _, err := regexp.Compile(p); err != nil {
		return nil, err
	}
	// An anchor the author wrote stays valid inside the group.
	return regexp.Compile(`^(?:` + p + `)$`)
}

// Kind returns the step's kind, "" when none or several are set.
func (s *Step) Kind() string {
	var kinds []string
	if s.Exec != nil {
		kinds = append(kinds, KindExec)
	}
	if s.HTTP != nil {
		kinds = append(kinds, KindHTTP)
	}
	if s.Kubernetes != nil {
		kinds = append(kinds, KindKubernetes)
	}
	if s.Silence != nil {
		kinds = append(kinds, KindSilence)
	}
	if s.Wait != nil {
		kinds = append(kinds, KindWait)
	}
	if s.PromQLCheck != nil {
		kinds = append(kinds, KindPromQLCheck)
	}
	if len(kinds) != 1 {
		return ""
	}
	return kinds[0]
}

func checkTimeout(t *model.Duration) error {
	if *t == 0 {
		*t = model.Duration(DefaultStepTimeout)
	}
	if *t < 0 || time.Duration(*t) > MaxStepTimeout {
		return fmt.Errorf("timeout: must be at most %s (0 or none for the default, %s)", MaxStepTimeout, DefaultStepTimeout)
	}
	return nil
}

func (s *Step) validate(rb *Runbook) error {
	switch s.Kind() {
	case "":
		return errors.New("exactly one of exec, http, kubernetes, silence, wait, promql_check is required")
	case KindExec:
		e := s.Exec
		if !filepath.IsAbs(e.Command) || filepath.Clean(e.Command) != e.Command {
			return fmt.Errorf("exec.command: %q must be a clean absolute path", e.Command)
		}
		if strings.Contains(e.Command, "{{") {
			return errors.New("exec.command: must not be templated")
		}
		for i, a := range e.Args {
			if err := checkTemplate(a, rb, false); err != nil {
				return fmt.Errorf("exec.args[%d]: %w", i, err)
			}
		}
		for k, v := range e.Env {
			if !paramNameRE.MatchString(k) {
				return fmt.Errorf("exec.env: %q is not a valid variable name", k)
			}
			if strings.Contains(v, "{{") {
				return fmt.Errorf("exec.env.%s: must not be templated", k)
			}
		}
		return checkTimeout(&e.Timeout)
	case KindHTTP:
		return s.HTTP.validate(rb)
	case KindKubernetes:
		return s.Kubernetes.validate(rb)
	case KindSilence:
		return s.Silence.validate(rb)
	case KindWait:
		if s.Wait.Duration <= 0 || time.Duration(s.Wait.Duration) > MaxWait {
			return fmt.Errorf("wait.duration: must be above 0 and at most %s", MaxWait)
		}
	case KindPromQLCheck:
		if s.PromQLCheck.Query == "" {
			return errors.New("promql_check.query: a query is required")
		}
		if err := checkQueryTemplate(s.PromQLCheck.Query, rb); err != nil {
			return fmt.Errorf("promql_check.query: %w", err)
		}
		return checkTimeout(&s.PromQLCheck.Timeout)
	}
	return nil
}

func (h *HTTPStep) validate(rb *Runbook) error {
	h.Method = strings.ToUpper(h.Method)
	if !slices.Contains(methods, h.Method) {
		return fmt.Errorf("http.method: %q is not one of %s", h.Method, strings.Join(methods, ", "))
	}
	_, rest, err := splitOrigin(h.URL)
	if err != nil {
		return fmt.Errorf("http.url: %w", err)
	}
	// Values are escaped where they land, so the text as written must
	// already parse: a stray '%' or a control character would fail every
	// run. The error leaves the URL out, as it may hold a token.
	if _, err := url.Parse(h.URL); err != nil {
		return errors.New("http.url: not a valid URL: a '%' must start an escape like %2F, and control characters are not allowed")
	}
	if err := checkTemplate(rest, rb, false); err != nil {
		return fmt.Errorf("http.url: %w", err)
	}
	if err := checkTemplate(h.Body, rb, false); err != nil {
		return fmt.Errorf("http.body: %w", err)
	}
	for k, v := range h.Headers {
		if strings.Contains(k, "{{") || strings.Contains(v, "{{") {
			return fmt.Errorf("http.headers.%s: must not be templated", k)
		}
	}
	if h.ContentType == "" {
		h.ContentType = "application/json"
	}
	if _, _, err := mime.ParseMediaType(h.ContentType); err != nil {
		return fmt.Errorf("http.content_type: %w", err)
	}
	for _, c := range h.ExpectStatus {
		if c < 100 || c > 599 {
			return fmt.Errorf("http.expect_status: %d is not an HTTP status", c)
		}
	}
	return checkTimeout(&h.Timeout)
}

// splitOrigin splits a URL template into its literal scheme://host[:port]
// and the rest (path, query), which may be templated. The origin must be a
// literal http or https URL without credentials.
func splitOrigin(raw string) (origin, rest string, err error) {
	scheme, after, ok := strings.Cut(raw, "://")
	if !ok || (scheme != "http" && scheme != "https") {
		return "", "", errors.New("must start with http:// or https://")
	}
	host, path, _ := strings.Cut(after, "/")
	if host == "" || strings.ContainsAny(host, "{}@?#%") {
		return "", "", errors.New("the host must be literal: no template, credentials, query or fragment in it")
	}
	u, err := url.Parse(scheme + "://" + host)
	if err != nil || u.Host != host {
		return "", "", errors.New("the host is not valid")
	}
	if strings.Contains(path, "#") {
		return "", "", errors.New("must not have a fragment")
	}
	return scheme + "://" + host, "/" + path, nil
}

func (k *KubernetesStep) validate(rb *Runbook) error {
	for _, f := range []struct{ name, v string }{{"namespace", k.Namespace}, {"deployment", k.Deployment}, {"pod", k.Pod}} {
		if err := checkTemplate(f.v, rb, false); err != nil {
			return fmt.Errorf("kubernetes.%s: %w", f.name, err)
		}
		// A namespace is an RFC 1123 label: no dots, at most 63.
		re := dnsNameRE
		if f.name == "namespace" {
			re = namespaceRE
		}
		if f.v != "" && !strings.Contains(f.v, "{{") && !re.MatchString(f.v) {
			return fmt.Errorf("kubernetes.%s: %q is not a valid name", f.name, f.v)
		}
	}
	if k.Namespace == "" {
		return errors.New("kubernetes.namespace: a namespace is required")
	}
	switch k.Action {
	case ActionRolloutRestart:
		if k.Deployment == "" || k.Pod != "" || k.Replicas != nil || k.Delta != nil {
			return errors.New("kubernetes: rollout_restart takes a deployment only")
		}
	case ActionScale:
		if k.Deployment == "" || k.Pod != "" {
			return errors.New("kubernetes: scale takes a deployment")
		}
		if (k.Replicas == nil) == (k.Delta == nil) {
			return errors.New("kubernetes: scale takes exactly one of replicas and delta")
		}
		if k.MinReplicas == nil || k.MaxReplicas == nil {
			return errors.New("kubernetes: scale requires min_replicas and max_replicas")
		}
		if *k.MinReplicas < 0 || *k.MaxReplicas < *k.MinReplicas {
			return errors.New("kubernetes: scale needs 0 <= min_replicas <= max_replicas")
		}
		if k.Replicas != nil && (*k.Replicas < *k.MinReplicas || *k.Replicas > *k.MaxReplicas) {
			return errors.New("kubernetes: replicas is outside [min_replicas, max_replicas]")
		}
	case ActionDeletePod:
		if k.Pod == "" || k.Deployment != "" || k.Replicas != nil || k.Delta != nil {
			return errors.New("kubernetes: delete_pod takes a pod only")
		}
	default:
		return fmt.Errorf("kubernetes.action: %q is not one of rollout_restart, scale, delete_pod", k.Action)
	}
	return checkTimeout(&k.Timeout)
}

func (s *SilenceStep) validate(rb *Runbook) error {
	if len(s.Matchers) == 0 {
		return errors.New("silence.matchers: at least one matcher is required")
	}
	for i, m := range s.Matchers {
		if err := checkTemplate(m, rb, false); err != nil {
			return fmt.Errorf("silence.matchers[%d]: %w", i, err)
		}
		pm, err := labels.ParseMatcher(m)
		if err != nil {
			return fmt.Errorf("silence.matchers[%d]: %w", i, err)
		}
		if strings.Contains(pm.Name, "{{") {
			return fmt.Errorf("silence.matchers[%d]: the label name must be literal", i)
		}
	}
	if s.Duration <= 0 || time.Duration(s.Duration) > MaxSilence {
		return fmt.Errorf("silence.duration: must be above 0 and at most %s", MaxSilence)
	}
	if err := checkTemplate(s.Comment, rb, true); err != nil {
		return fmt.Errorf("silence.comment: %w", err)
	}
	return checkTimeout(&s.Timeout)
}

// dnsNameRE is a Kubernetes object name (an RFC 1123 subdomain).
var dnsNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)

// Matches reports whether every matcher of the runbook matches lset.
func (rb *Runbook) Matches(lset map[string]string) bool {
	ls := make(model.LabelSet, len(lset))
	for k, v := range lset {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return rb.matchers.Matches(ls)
}

// Step returns the step at i, or nil.
func (rb *Runbook) Step(i int) *Step {
	if i < 0 || i >= len(rb.Steps) {
		return nil
	}
	return &rb.Steps[i]
}

// Set is the runbooks loaded from one directory, in file name order.
type Set struct {
	Dir      string
	Runbooks []*Runbook
}

// Timeout is the step's timeout (every kind that calls out has one once
// loaded); a wait step has none: it is a job due later, not a sleep.
func (s *Step) Timeout() time.Duration {
	switch {
	case s.Exec != nil:
		return time.Duration(s.Exec.Timeout)
	case s.HTTP != nil:
		return time.Duration(s.HTTP.Timeout)
	case s.Kubernetes != nil:
		return time.Duration(s.Kubernetes.Timeout)
	case s.Silence != nil:
		return time.Duration(s.Silence.Timeout)
	case s.PromQLCheck != nil:
		return time.Duration(s.PromQLCheck.Timeout)
	}
	return 0
}

// VerifyTimeout bounds one verification query.
const VerifyTimeout = 30 * time.Second

// LongestStep is the longest time one remediation job may spend on a call
// out: the longest step timeout in the set, or VerifyTimeout where a runbook
// verifies. A remediation job's lease must outlast it, and need not be much
// longer, so that a dead replica's runs are taken over soon.
func (s *Set) LongestStep() time.Duration {
	var longest time.Duration
	if s == nil {
		return longest
	}
	for _, rb := range s.Runbooks {
		for i := range rb.Steps {
			longest = max(longest, rb.Steps[i].Timeout())
		}
		if rb.Verify != nil {
			longest = max(longest, VerifyTimeout)
		}
	}
	return longest
}

// Get returns the runbook named name, or nil.
func (s *Set) Get(name string) *Runbook {
	if s == nil {
		return nil
	}
	for _, rb := range s.Runbooks {
		if rb.Name == name {
			return rb
		}
	}
	return nil
}

// LoadDir loads every *.yaml and *.yml file of dir. A directory that does
// not exist holds no runbooks when missingOK is set, and is an error
// otherwise. Every problem is reported, one per line, each naming its file.
func LoadDir(dir string, missingOK bool) (*Set, error) {
	set := &Set{Dir: dir}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) && missingOK {
		return set, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read runbooks: %w", err)
	}
	var errs []error
	seen := map[string]string{}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path) //nolint:gosec // G304: the operator's own runbooks directory.
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		rb, err := Parse(b)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		if prev, ok := seen[rb.Name]; ok {
			errs = append(errs, fmt.Errorf("%s: name: runbook %q is already defined in %s", path, rb.Name, prev))
			continue
		}
		seen[rb.Name] = path
		rb.File = path
		set.Runbooks = append(set.Runbooks, rb)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return set, nil
}

// Env is what the runbooks' steps need from the rest of the configuration.
type Env struct {
	PrometheusURL     bool
	AlertmanagerURL   bool
	AllowedNamespaces []string
}

// Check cross-checks the set against the configuration: steps that query
// Prometheus or silence in Alertmanager need their URLs, and a literal
// namespace must be allowed.
func (s *Set) Check(env Env) error {
	var errs []error
	for _, rb := range s.Runbooks {
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: %s", rb.File, fmt.Sprintf(format, args...)))
		}
		if rb.Verify != nil && !env.PrometheusURL {
			fail("verify: needs global.prometheus_url")
		}
		for i, st := range rb.Steps {
			switch {
			case st.PromQLCheck != nil && !env.PrometheusURL:
				fail("steps[%d] (%s): promql_check needs global.prometheus_url", i, st.Name)
			case st.Silence != nil && !env.AlertmanagerURL:
				fail("steps[%d] (%s): silence needs global.alertmanager_url", i, st.Name)
			case st.Kubernetes != nil && len(env.AllowedNamespaces) > 0 && !strings.Contains(st.Kubernetes.Namespace, "{{") &&
				!slices.Contains(env.AllowedNamespaces, st.Kubernetes.Namespace):
				fail("steps[%d] (%s): namespace %q is not in remediation.allowed_namespaces", i, st.Name, st.Kubernetes.Namespace)
			}
		}
	}
	return errors.Join(errs...)
}
