package incident

import (
	"slices"
	"strings"
	"testing"
	"text/template/parse"
)

// querySkeleton is q without the inside of its string literals: its
// syntax, which no printed value may change.
func querySkeleton(q string) string {
	var (
		b strings.Builder
		l queryLexer
	)
	for i := range len(q) {
		before := l.inLiteral()
		l = l.scan([]byte{q[i]})
		if !before || !l.inLiteral() {
			b.WriteByte(q[i])
		}
	}
	return b.String()
}

// hasBranches reports whether a control structure is under n: its output
// may then depend on the values themselves, not only on where they land.
func hasBranches(n parse.Node) bool {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return false
		}
		return slices.ContainsFunc(n.Nodes, hasBranches)
	case *parse.IfNode, *parse.RangeNode, *parse.WithNode, *parse.TemplateNode:
		return true
	}
	return false
}

// FuzzRenderQuery checks the promise of CheckQueryTemplate and RenderQuery
// together: for a template the check accepts, no label value changes the
// query's syntax. Rendered with the fuzzed value and with a plain one, the
// query is the same outside its string literals, whatever functions the
// template applies to the value (slice and printf's precision can cut an
// escape in two when values are escaped before the template sees them).
//
//	go test -run='^$' -fuzz=FuzzRenderQuery -fuzztime=60s ./internal/incident/
func FuzzRenderQuery(f *testing.F) {
	for _, seed := range []struct{ text, value string }{
		{`up{job="{{ .Labels.job }}"}`, `"} or vector(1) or up{x="`},
		{`up{job='{{ .Labels.job }}'}`, `'} or vector(1) #`},
		{"up{job=`{{ .Labels.job }}`}", "`} or vector(1)"},
		{`up{job="{{ printf "%.1s" .Labels.job }}", instance="{{ .Labels.instance }}"}`, `\`},
		{`up{job="{{ slice .Labels.job 1 }}"}`, `"\`},
		{`{service="{{ .CommonLabels.service }}"} |= "{{ .CommonAnnotations.summary }}"`, "a\nb\x00\"`'\\"},
		{`up{job=~"{{ .GroupLabels.job }}.*"}`, `\\\"`},
	} {
		f.Add(seed.text, seed.value)
	}
	f.Fuzz(func(t *testing.T, text, value string) {
		tree := parse.New("q")
		tree.Mode = parse.SkipFuncCheck
		trees := map[string]*parse.Tree{}
		if _, err := tree.Parse(text, "", "", trees); err != nil || len(trees) != 1 || hasBranches(trees["q"].Root) {
			return
		}
		if CheckQueryTemplate(trees["q"]) != nil {
			return
		}
		render := func(v string) (string, bool) {
			kv := map[string]string{"job": v, "instance": v, "service": v, "summary": v}
			inc := &Incident{CommonLabels: kv, GroupLabels: kv, CommonAnnotations: kv}
			out, err := RenderQuery("q", text, NewQueryData(inc), EscapePromQLString)
			return out, err == nil
		}
		plain, ok := render("x")
		if !ok {
			return
		}
		got, ok := render(value)
		if !ok {
			return
		}
		if querySkeleton(got) != querySkeleton(plain) {
			t.Fatalf("the value %q changed the query's syntax:\n  template %q\n  plain    %q\n  got      %q", value, text, plain, got)
		}
	})
}
