package promql

import (
	"net/url"
	"strings"
	"text/template"

	"github.com/responder/responder/internal/incident"
)

// ExprFromGeneratorURL returns the expression of the alerting rule that an
// alert's generatorURL links to: Prometheus writes it as the g0.expr query
// parameter of its /graph page. It reports false when there is none.
func ExprFromGeneratorURL(raw string) (string, bool) {
	if raw == "" {
		return "", false
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", false
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil && len(q) == 0 {
		return "", false
	}
	expr := strings.TrimSpace(q.Get("g0.expr"))
	if expr == "" || len(expr) > maxExprLen {
		return "", false
	}
	return expr, true
}

// maxExprLen bounds an expression taken from a generatorURL; Prometheus
// rule expressions are far shorter.
const maxExprLen = 4096

// EscapeString escapes s for use inside a PromQL (or LogQL) string
// literal; see incident.EscapePromQLString.
func EscapeString(s string) string { return incident.EscapePromQLString(s) }

// TemplateData is what a configured query's template sees: the incident's
// labels and annotations, every value passed through an escaping function.
type TemplateData struct {
	// Labels are the common labels with the group labels over them.
	Labels            map[string]string
	CommonLabels      map[string]string
	GroupLabels       map[string]string
	CommonAnnotations map[string]string
}

// NewTemplateData returns inc's labels and annotations, escaped with esc.
func NewTemplateData(inc *incident.Incident, esc func(string) string) TemplateData {
	m := func(in map[string]string) map[string]string {
		out := make(map[string]string, len(in))
		for k, v := range in {
			out[k] = esc(v)
		}
		return out
	}
	labels := m(inc.CommonLabels)
	for k, v := range inc.GroupLabels {
		labels[k] = esc(v)
	}
	return TemplateData{Labels: labels, CommonLabels: m(inc.CommonLabels), GroupLabels: m(inc.GroupLabels), CommonAnnotations: m(inc.CommonAnnotations)}
}

// Render executes a query template with inc's escaped labels. A missing
// label renders empty.
func Render(name, text string, inc *incident.Incident, esc func(string) string) (string, error) {
	t, err := template.New(name).Option("missingkey=zero").Parse(text)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, NewTemplateData(inc, esc)); err != nil {
		return "", err
	}
	return b.String(), nil
}
