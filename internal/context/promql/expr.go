package promql

import (
	"net/url"
	"strings"

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
