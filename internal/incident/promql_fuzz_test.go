package incident

import (
	"strings"
	"testing"
	"text/template/parse"
)

// Markers around what RenderQuery prints, in the fuzz test: escaping turns
// any in a value into text (\x01), so those in the output are the test's.
const (
	printStart = "\x01"
	printEnd   = "\x02"
)

// FuzzRenderQuery checks the promise of CheckQueryTemplate and RenderQuery
// together: for a template the check accepts, whatever an action prints
// starts inside a string literal (not after a backslash) and leaves the
// query's lexer where it found it, so no label value changes the query's
// syntax. It renders once, with the fuzzed value, so that branches that
// depend on the value are covered as taken; the escaping is marked, and the
// query is lexed as the check lexes it.
//
//	go test -run='^$' -fuzz=FuzzRenderQuery -fuzztime=60s ./internal/incident/
func FuzzRenderQuery(f *testing.F) {
	for _, seed := range []struct {
		text, value string
		logql       bool
	}{
		{`up{job="{{ .Labels.job }}"}`, `"} or vector(1) or up{x="`, false},
		{`up{job='{{ .Labels.job }}'}`, `'} or vector(1) #`, false},
		{"up{job=`{{ .Labels.job }}`}", "`} or vector(1)", false},
		{`up{job="{{ printf "%.1s" .Labels.job }}", instance="{{ .Labels.instance }}"}`, `\`, false},
		{`up{job="{{ slice .Labels.job 1 }}"}`, `"\`, false},
		{`up{job="{{ range .Labels }}"{{ break }}"{{ end }}{{ .Labels.job }}"}`, `} or vector(1) #`, false},
		{`up{{ range .Labels }}{{ else }}{job="{{ end }}{{ .Labels.job }}"}`, ` or vector(1) #`, false},
		{`up{job="\{{ .Labels.job }}"}{{ .Labels.instance }}"`, `a`, false},
		{`up{job="{{ if eq .Labels.job "a" }}{{ .Labels.job }}{{ else }}x{{ end }}"}`, `a`, false},
		{`{service="{{ .CommonLabels.service }}"} |= "{{ .CommonAnnotations.summary }}"`, "a\nb\x00\"`'\\", true},
		{`count_over_time({app="x"}[5m]) /* " */ |= "{{ .Labels.x }}"`, ` or vector(1)`, true},
	} {
		f.Add(seed.text, seed.value, seed.logql)
	}
	f.Fuzz(func(t *testing.T, text, value string, logql bool) {
		if strings.ContainsAny(text, printStart+printEnd) {
			return
		}
		d := PromQL
		if logql {
			d = LogQL
		}
		tree := parse.New("q")
		tree.Mode = parse.SkipFuncCheck
		trees := map[string]*parse.Tree{}
		if _, err := tree.Parse(text, "", "", trees); err != nil || len(trees) != 1 {
			return
		}
		if CheckQueryTemplate(trees["q"], d) != nil {
			return
		}
		kv := map[string]string{"job": value, "instance": value, "service": value, "summary": value, "x": value}
		inc := &Incident{CommonLabels: kv, GroupLabels: kv, CommonAnnotations: kv}
		marked := func(s string) string { return printStart + EscapePromQLString(s) + printEnd }
		out, err := RenderQuery("q", text, inc, marked)
		if err != nil {
			return
		}
		var (
			l        queryLexer
			at       queryLexer
			printing bool
		)
		for i := range len(out) {
			switch out[i] {
			case printStart[0]:
				if printing || !l.printable() {
					t.Fatalf("a value is printed outside a string literal (at %d):\n  template %q\n  value    %q\n  query    %q", i, text, value, out)
				}
				printing, at = true, l
			case printEnd[0]:
				if l != at {
					t.Fatalf("the value %q changed where the query is (at %d):\n  template %q\n  query    %q", value, i, text, out)
				}
				printing = false
			default:
				l = l.scan(d, []byte{out[i]})
			}
		}
	})
}
