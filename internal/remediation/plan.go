package remediation

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/alertmanager/pkg/labels"

	"github.com/responder/responder/internal/incident"
)

// ParamError is a label value that did not pass its parameter's pattern. Its
// message names the label and shows the value only quoted and truncated.
type ParamError struct {
	Param, Label string
	// Value is the rejected value, quoted as ASCII and truncated: safe for
	// a log line, the audit trail and Slack.
	Value  string
	Reason string
}

// Error implements error.
func (e *ParamError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("parameter %s: label %s %s", e.Param, e.Label, e.Reason)
	}
	return fmt.Sprintf("parameter %s: label %s value %s %s", e.Param, e.Label, e.Value, e.Reason)
}

// SafeQuote quotes s as printable ASCII and truncates it, for showing an
// untrusted value anywhere.
func SafeQuote(s string) string {
	const limit = 64
	cut := ""
	if len(s) > limit {
		s, cut = s[:limit], "…"
		for !utf8.ValidString(s) && len(s) > 0 {
			s = s[:len(s)-1]
		}
	}
	return strconv.QuoteToASCII(s) + cut
}

// ResolveParams takes the runbook's parameters from lset and validates each
// against its pattern. Every value it returns matched its pattern in full.
func (rb *Runbook) ResolveParams(lset map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(rb.Params))
	for _, name := range slices.Sorted(maps.Keys(rb.Params)) {
		p := rb.Params[name]
		v, ok := lset[p.Label]
		switch {
		case !ok || v == "":
			return nil, &ParamError{Param: name, Label: p.Label, Reason: "is missing"}
		case len(v) > maxParamLen:
			return nil, &ParamError{Param: name, Label: p.Label, Value: SafeQuote(v), Reason: fmt.Sprintf("is longer than %d bytes", maxParamLen)}
		case !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsControl) >= 0:
			return nil, &ParamError{Param: name, Label: p.Label, Value: SafeQuote(v), Reason: "contains control characters or invalid UTF-8"}
		case !p.re.MatchString(v):
			return nil, &ParamError{Param: name, Label: p.Label, Value: SafeQuote(v), Reason: "does not match " + p.re.String()}
		}
		out[name] = v
	}
	return out, nil
}

// Target names what a run acts on: the runbook and its parameters, e.g.
// `restart-checkout{deployment="checkout"}`. Cooldowns, budgets and the
// one-run-at-a-time lock are per target.
func (rb *Runbook) Target(params map[string]string) string {
	var b strings.Builder
	b.WriteString(rb.Name)
	b.WriteByte('{')
	for i, k := range slices.Sorted(maps.Keys(params)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + strconv.Quote(params[k]))
	}
	b.WriteByte('}')
	return b.String()
}

// Action is one step with its inputs rendered: what exactly would run.
type Action struct {
	Index   int
	Name    string
	Kind    string
	Timeout time.Duration

	Exec       *ExecAction       `json:",omitempty"`
	HTTP       *HTTPAction       `json:",omitempty"`
	Kubernetes *KubernetesAction `json:",omitempty"`
	Silence    *SilenceAction    `json:",omitempty"`
	Wait       time.Duration     `json:",omitempty"`
	Query      string            `json:",omitempty"`
}

// ExecAction is a program and its argv.
type ExecAction struct {
	Command string
	Args    []string
	Env     map[string]string `json:"-"`
}

// HTTPAction is a request.
type HTTPAction struct {
	Method       string
	URL          string
	Origin       string
	Body         string
	ContentType  string
	Headers      map[string]string `json:"-"`
	ExpectStatus []int
}

// KubernetesAction is one object and what to do to it.
type KubernetesAction struct {
	Action      string
	Namespace   string
	Name        string
	Replicas    *int32 `json:",omitempty"`
	Delta       *int32 `json:",omitempty"`
	MinReplicas int32  `json:",omitempty"`
	MaxReplicas int32  `json:",omitempty"`
}

// SilenceAction is a silence to create.
type SilenceAction struct {
	Matchers labels.Matchers
	Duration time.Duration
	Comment  string
}

// Describe renders the action's inputs for the audit trail: never a header,
// an environment value or anything else that may hold a secret.
func (a *Action) Describe() string {
	switch a.Kind {
	case KindExec:
		parts := append([]string{a.Exec.Command}, a.Exec.Args...)
		for i, p := range parts {
			parts[i] = strconv.Quote(p)
		}
		s := "argv [" + strings.Join(parts, " ") + "]"
		if len(a.Exec.Env) > 0 {
			s += " env " + strings.Join(slices.Sorted(maps.Keys(a.Exec.Env)), ",")
		}
		return s
	case KindHTTP:
		return a.HTTP.Method + " " + redactURL(a.HTTP.URL)
	case KindKubernetes:
		k := a.Kubernetes
		s := fmt.Sprintf("%s %s/%s", k.Action, k.Namespace, k.Name)
		switch {
		case k.Replicas != nil:
			s += fmt.Sprintf(" replicas=%d [%d,%d]", *k.Replicas, k.MinReplicas, k.MaxReplicas)
		case k.Delta != nil:
			s += fmt.Sprintf(" delta=%+d [%d,%d]", *k.Delta, k.MinReplicas, k.MaxReplicas)
		}
		return s
	case KindSilence:
		return fmt.Sprintf("silence %s for %s", a.Silence.Matchers.String(), a.Silence.Duration)
	case KindWait:
		return "wait " + a.Wait.String()
	case KindPromQLCheck:
		return "query " + a.Query
	}
	return ""
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<invalid url>"
	}
	u.User = nil
	return u.String()
}

// Plan renders every step of the runbook with the validated params (and
// the raw labels, in the fields where they are escaped).
func (rb *Runbook) Plan(params, lset map[string]string) ([]Action, error) {
	out := make([]Action, 0, len(rb.Steps))
	for i := range rb.Steps {
		a, err := rb.PlanStep(i, params, lset)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// PlanStep renders step i.
func (rb *Runbook) PlanStep(i int, params, lset map[string]string) (Action, error) {
	s := rb.Step(i)
	if s == nil {
		return Action{}, fmt.Errorf("runbook %s has no step %d", rb.Name, i)
	}
	if err := rb.checkParams(params); err != nil {
		return Action{}, err
	}
	a := Action{Index: i, Name: s.Name, Kind: s.Kind()}
	fail := func(err error) (Action, error) { return Action{}, fmt.Errorf("step %s: %w", s.Name, err) }
	switch a.Kind {
	case KindExec:
		e := s.Exec
		a.Timeout = time.Duration(e.Timeout)
		x := &ExecAction{Command: e.Command, Env: maps.Clone(e.Env)}
		for _, arg := range e.Args {
			v, err := render(arg, params, nil)
			if err != nil {
				return fail(err)
			}
			x.Args = append(x.Args, v)
		}
		a.Exec = x
	case KindHTTP:
		h := s.HTTP
		a.Timeout = time.Duration(h.Timeout)
		origin, rest, err := splitOrigin(h.URL)
		if err != nil {
			return fail(err)
		}
		path, query, _ := strings.Cut(rest, "?")
		p, err := render(path, escaped(params, pathValue), nil)
		if err != nil {
			return fail(err)
		}
		if strings.Contains(p, dotSegment) {
			return fail(errors.New("http.url: a parameter value made only of dots would be a '.' or '..' path segment, which moves the request to another path"))
		}
		q := ""
		if query != "" {
			if q, err = render(query, escaped(params, url.QueryEscape), nil); err != nil {
				return fail(err)
			}
			q = "?" + q
		}
		bodyEsc := func(v string) string { return v }
		if isJSON(h.ContentType) {
			bodyEsc = jsonString
		}
		body, err := render(h.Body, escaped(params, bodyEsc), nil)
		if err != nil {
			return fail(err)
		}
		full := origin + p + q
		// Belt and braces: the rendered URL must still go where the
		// runbook says.
		u, err := url.Parse(full)
		if err != nil || u.Scheme+"://"+u.Host != origin {
			return fail(fmt.Errorf("rendered URL does not keep the origin %s", origin))
		}
		a.HTTP = &HTTPAction{
			Method: h.Method, URL: full, Origin: origin, Body: body, ContentType: h.ContentType,
			Headers: maps.Clone(h.Headers), ExpectStatus: h.ExpectStatus,
		}
	case KindKubernetes:
		k := s.Kubernetes
		a.Timeout = time.Duration(k.Timeout)
		ns, err := render(k.Namespace, params, nil)
		if err != nil {
			return fail(err)
		}
		name, err := render(k.Deployment+k.Pod, params, nil)
		if err != nil {
			return fail(err)
		}
		if !namespaceRE.MatchString(ns) || !dnsNameRE.MatchString(name) {
			return fail(fmt.Errorf("rendered namespace %s or name %s is not a valid Kubernetes name", SafeQuote(ns), SafeQuote(name)))
		}
		ka := &KubernetesAction{Action: k.Action, Namespace: ns, Name: name, Replicas: k.Replicas, Delta: k.Delta}
		if k.MinReplicas != nil {
			ka.MinReplicas, ka.MaxReplicas = *k.MinReplicas, *k.MaxReplicas
		}
		a.Kubernetes = ka
	case KindSilence:
		sl := s.Silence
		a.Timeout = time.Duration(sl.Timeout)
		sa := &SilenceAction{Duration: time.Duration(sl.Duration)}
		for _, raw := range sl.Matchers {
			m, err := renderMatcher(raw, params)
			if err != nil {
				return fail(err)
			}
			sa.Matchers = append(sa.Matchers, m)
		}
		c, err := render(sl.Comment, escaped(params, freeText), escaped(lset, freeText))
		if err != nil {
			return fail(err)
		}
		sa.Comment = c
		a.Silence = sa
	case KindWait:
		a.Wait = time.Duration(s.Wait.Duration)
	case KindPromQLCheck:
		a.Timeout = time.Duration(s.PromQLCheck.Timeout)
		q, err := RenderQuery(s.PromQLCheck.Query, params, lset)
		if err != nil {
			return fail(err)
		}
		a.Query = q
	}
	return a, nil
}

// checkParams re-validates params against the runbook's patterns: a plan is
// never made from values that did not pass them, wherever they came from
// (storage, a caller's bug).
func (rb *Runbook) checkParams(params map[string]string) error {
	for name, p := range rb.Params {
		v, ok := params[name]
		if !ok || !p.re.MatchString(v) || len(v) > maxParamLen || strings.IndexFunc(v, unicode.IsControl) >= 0 {
			return &ParamError{Param: name, Label: p.Label, Value: SafeQuote(v), Reason: "does not match " + p.re.String()}
		}
	}
	return nil
}

// renderMatcher parses a silence matcher whose value may be templated: the
// name and the match type come from the runbook, and the value is rendered
// from the parameters as a whole (quoted for a regular expression), so a
// value can never add a matcher or change the type.
func renderMatcher(raw string, params map[string]string) (*labels.Matcher, error) {
	m, err := labels.ParseMatcher(raw)
	if err != nil {
		return nil, err
	}
	esc := func(v string) string { return v }
	if m.Type == labels.MatchRegexp || m.Type == labels.MatchNotRegexp {
		esc = regexp.QuoteMeta
	}
	v, err := render(m.Value, escaped(params, esc), nil)
	if err != nil {
		return nil, err
	}
	return labels.NewMatcher(m.Type, m.Name, v)
}

// RenderQuery renders a PromQL query: every value is escaped for the inside
// of a double-quoted string literal.
func RenderQuery(raw string, params, lset map[string]string) (string, error) {
	return render(raw, escaped(params, incident.EscapePromQLString), escaped(lset, incident.EscapePromQLString))
}

// VerifyQuery renders the runbook's verification query.
func (rb *Runbook) VerifyQuery(params, lset map[string]string) (string, error) {
	if rb.Verify == nil {
		return "", nil
	}
	if err := rb.checkParams(params); err != nil {
		return "", err
	}
	return RenderQuery(rb.Verify.Query, params, lset)
}

// dotSegment marks, in a rendered path, a value that is only dots: escaping
// leaves "." and ".." as they are, and as a path segment they climb the
// path (".../hosts/../drain" is "/api/drain" to most servers and proxies),
// as would their escaped form "%2E%2E" to those that decode before they
// resolve. PathEscape never writes a NUL, and the template cannot hold one.
const dotSegment = "\x00"

// pathValue escapes a parameter value for a URL path.
func pathValue(v string) string {
	if v != "" && strings.Trim(v, ".") == "" {
		return dotSegment
	}
	return url.PathEscape(v)
}

// isJSON reports whether a media type is a JSON one (application/json,
// application/merge-patch+json, ...), whatever its case and parameters: a
// body of that type gets its values JSON-escaped. Media types are
// case-insensitive, so `Application/JSON` is JSON too.
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType) // lower-cases the type
	if err != nil {
		// Refused when the runbook was loaded; escaping is the safe side.
		return true
	}
	return strings.Contains(mt, "json")
}

func jsonString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b[1 : len(b)-1])
}
