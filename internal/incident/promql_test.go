package incident_test

import (
	"strings"
	"testing"
	"text/template"
	"text/template/parse"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
)

func parseQuery(t *testing.T, text string) *parse.Tree {
	t.Helper()
	tmpl, err := template.New("q").Parse(text)
	require.NoError(t, err)
	return tmpl.Tree
}

// A query template prints only inside string literals, where escaping keeps
// a label value a value; anywhere else the value is the query's syntax.
func TestCheckQueryTemplate(t *testing.T) {
	t.Parallel()
	good := []string{
		`up`,
		`up{job="{{ .Labels.job }}"}`,
		`up{job='{{ .Labels.job }}'}`,
		"up{job=`{{ .Labels.job }}`}",
		`up{job=~"{{ .Labels.job }}|other", instance="{{ .Labels.instance }}"}`,
		`{service="{{ .CommonLabels.service }}"} |= "error \"{{ .Labels.x }}\""`,
		`up{job="a\\"}[5m] or up{job="{{ .Labels.job }}"}`,
		`{{ $j := .Labels.job }}up{job="{{ $j }}"}`,
		`up{ {{- if .Labels.job }}job="{{ .Labels.job }}"{{ else }}job="x"{{ end }}}`,
		`up{job=~"{{ range $k, $v := .Labels }}{{ $v }}|{{ end }}"}`,
		`up{job="{{ with .Labels.job }}{{ . }}{{ end }}"}`,
		`{{/* a comment */}}up # trailing comment "`,
		"up # {{/* in a comment, prints nothing */}}\n",
	}
	for _, q := range good {
		require.NoError(t, incident.CheckQueryTemplate(parseQuery(t, q)), q)
	}
	bad := map[string]string{
		`up{job={{ .Labels.job }}}`:                                   "outside a string literal",
		`rate(x[{{ .Labels.window }}])`:                               "outside a string literal",
		`{{ .Labels.query }}`:                                         "outside a string literal",
		`up{job="a"} {{ .Labels.op }} 1`:                              "outside a string literal",
		`up{job="a\"{{ .Labels.job }}"} > {{ .Labels.threshold }}`:    "outside a string literal",
		`up # {{ .Labels.job }}`:                                      "outside a string literal",
		"up # comment\n{{ .Labels.job }}":                             "outside a string literal",
		`up{job="{{ if .Labels.job }}x"{{ end }}}`:                    "branches of {{ if }} end differently",
		`up{job={{ with .Labels.job }}"{{ . }}{{ else }}""{{ end }}}`: "branches of {{ with }} end differently",
		`up{job=~"{{ range .Alerts }}x"{{ end }}}`:                    "body of {{ range }}",
		`{{ define "t" }}x{{ end }}up{job="{{ template "t" }}"}`:      "{{ template }} is not allowed",
	}
	for q, want := range bad {
		err := incident.CheckQueryTemplate(parseQuery(t, q))
		require.ErrorContains(t, err, want, q)
		require.True(t, strings.HasPrefix(err.Error(), "q:"), "the error says where: %v", err)
	}
}
