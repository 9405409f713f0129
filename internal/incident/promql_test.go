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
		require.NoError(t, incident.CheckQueryTemplate(parseQuery(t, q), incident.PromQL), q)
	}
	bad := map[string]string{
		`up{job={{ .Labels.job }}}`:                                               "outside a string literal",
		`rate(x[{{ .Labels.window }}])`:                                           "outside a string literal",
		`{{ .Labels.query }}`:                                                     "outside a string literal",
		`up{job="a"} {{ .Labels.op }} 1`:                                          "outside a string literal",
		`up{job="a\"{{ .Labels.job }}"} > {{ .Labels.threshold }}`:                "outside a string literal",
		`up # {{ .Labels.job }}`:                                                  "outside a string literal",
		"up # comment\n{{ .Labels.job }}":                                         "outside a string literal",
		`up{job="{{ if .Labels.job }}x"{{ end }}}`:                                "branches of {{ if }} end differently",
		`up{job={{ with .Labels.job }}"{{ . }}{{ else }}""{{ end }}}`:             "branches of {{ with }} end differently",
		`up{job=~"{{ range .Alerts }}x"{{ end }}}`:                                "the body or the {{ else }} of {{ range }}",
		`{{ define "t" }}x{{ end }}up{job="{{ template "t" }}"}`:                  "{{ template }} is not allowed",
		`up{job="{{ range .Labels }}"{{ break }}"{{ end }}{{ .Labels.job }}"}`:    "{{break}} leaves a string literal",
		`up{job="{{ range .Labels }}"{{ continue }}"{{ end }}{{ .Labels.job }}"}`: "{{continue}} leaves a string literal",
		`up{{ range .Labels }}{{ else }}{job="{{ end }}{{ .Labels.job }}"}`:       "the {{ else }} of {{ range }}",
		`up{job="\{{ .Labels.job }}"}{{ .Labels.instance }}"`:                     "outside a string literal",
	}
	for q, want := range bad {
		err := incident.CheckQueryTemplate(parseQuery(t, q), incident.PromQL)
		require.ErrorContains(t, err, want, q)
		require.True(t, strings.HasPrefix(err.Error(), "q:"), "the error says where: %v", err)
	}
}

// LogQL is read as Go tokens: // and /* */ comments, and '…' is a
// character, not a string; # is no comment.
func TestCheckQueryTemplate_LogQL(t *testing.T) {
	t.Parallel()
	for _, q := range []string{
		`{service="{{ .Labels.service }}"} |= "error"`,
		"{service=`{{ .Labels.service }}`} |~ \"a/b\"",
		`{app="x"} |= "a # b" |= "{{ .Labels.x }}"`,
		`{app="x"} /* " */ |= "{{ .Labels.y }}" // "`,
		`{app="x"} |= "a/*{{ .Labels.x }}*/"`,
	} {
		require.NoError(t, incident.CheckQueryTemplate(parseQuery(t, q), incident.LogQL), q)
	}
	for _, q := range []string{
		`count_over_time({app="x"}[5m]) /* " */{{ .Labels.x }}/* " */`,
		`{app="x"} /* "{{ .Labels.x }}" */`,
		"{app=\"x\"} // \"\n{{ .Labels.x }}",
		`{app='{{ .Labels.app }}'}`,
	} {
		require.ErrorContains(t, incident.CheckQueryTemplate(parseQuery(t, q), incident.LogQL), "outside a string literal", q)
	}
	// PromQL reads the same two otherwise: # is a comment, '…' a string.
	require.NoError(t, incident.CheckQueryTemplate(parseQuery(t, `{app='{{ .Labels.app }}'}`), incident.PromQL))
	require.ErrorContains(t, incident.CheckQueryTemplate(parseQuery(t, `up # "{{ .Labels.x }}"`), incident.PromQL), "outside a string literal")
}
