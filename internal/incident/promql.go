package incident

import (
	"fmt"
	"maps"
	"strings"
	"text/template"
	"text/template/parse"
)

// EscapePromQLString escapes s for use inside a PromQL (or LogQL) string
// literal, such as a label matcher's value: the value cannot end the
// literal, so it cannot add matchers, operators or functions. Quotes of all
// three kinds become hex escapes, so the result is inert inside '…', "…"
// and (where it only reads wrongly) `…`.
func EscapePromQLString(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch r {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\x22`)
		case '\'':
			b.WriteString(`\x27`)
		case '`':
			b.WriteString(`\x60`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 || r == 0x7f {
				b.WriteString(`\x`)
				b.WriteByte("0123456789abcdef"[r>>4])
				b.WriteByte("0123456789abcdef"[r&0xf])
				continue
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

// CheckQueryTemplate checks a parsed PromQL or LogQL query template: every
// action that prints ({{ … }}) must sit inside a string literal of the query
// ("…", '…' or `…`), where the escaping of what it prints (see
// EscapePromQLString) keeps a label value from ending the literal. Outside
// one, a value would become the query's own syntax: add matchers, widen a
// range, call functions. The branches of {{ if }} and {{ with }} must leave
// the query in the same place (inside a literal or not), and a {{ range }}
// body where it started; {{ template }} is refused.
func CheckQueryTemplate(t *parse.Tree) error {
	if t == nil || t.Root == nil {
		return nil
	}
	_, err := checkQueryList(t, t.Root, queryLexer{})
	return err
}

// queryLexer is where a query's text has got to: outside any literal, inside
// one opened by quote (and just after a backslash in it), or in a comment.
type queryLexer struct {
	quote   byte
	escaped bool
	comment bool
}

func (l queryLexer) inLiteral() bool { return l.quote != 0 }

func (l queryLexer) scan(text []byte) queryLexer {
	for _, c := range text {
		switch {
		case l.comment:
			l.comment = c != '\n'
		case l.escaped:
			l.escaped = false
		case l.quote == '`':
			if c == '`' {
				l.quote = 0
			}
		case l.quote != 0:
			switch c {
			case '\\':
				l.escaped = true
			case l.quote:
				l.quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			l.quote = c
		case c == '#':
			l.comment = true
		}
	}
	return l
}

func checkQueryList(t *parse.Tree, list *parse.ListNode, l queryLexer) (queryLexer, error) {
	if list == nil {
		return l, nil
	}
	for _, n := range list.Nodes {
		var err error
		switch n := n.(type) {
		case *parse.TextNode:
			l = l.scan(n.Text)
		case *parse.ActionNode:
			if len(n.Pipe.Decl) == 0 && !l.inLiteral() {
				loc, _ := t.ErrorContext(n)
				return l, fmt.Errorf("%s: %s is outside a string literal, where a label value would become part of the query: put it inside quotes, as in service=\"{{ .Labels.service }}\"", loc, n)
			}
		case *parse.IfNode:
			l, err = checkQueryBranches(t, &n.BranchNode, l, "if")
		case *parse.WithNode:
			l, err = checkQueryBranches(t, &n.BranchNode, l, "with")
		case *parse.RangeNode:
			var body queryLexer
			if body, err = checkQueryList(t, n.List, l); err == nil && body != l {
				loc, _ := t.ErrorContext(n)
				err = fmt.Errorf("%s: the body of {{ range }} opens or closes a string literal; each pass must end where it started", loc)
			}
			if err == nil {
				l, err = checkQueryList(t, n.ElseList, l)
			}
		case *parse.TemplateNode:
			loc, _ := t.ErrorContext(n)
			err = fmt.Errorf("%s: {{ template }} is not allowed in a query", loc)
		}
		if err != nil {
			return l, err
		}
	}
	return l, nil
}

func checkQueryBranches(t *parse.Tree, b *parse.BranchNode, l queryLexer, name string) (queryLexer, error) {
	then, err := checkQueryList(t, b.List, l)
	if err != nil {
		return l, err
	}
	els, err := checkQueryList(t, b.ElseList, l)
	if err != nil {
		return l, err
	}
	if then != els {
		loc, _ := t.ErrorContext(b)
		return l, fmt.Errorf("%s: the branches of {{ %s }} end differently, one inside a string literal and one outside", loc, name)
	}
	return then, nil
}

// escapeFunc is the function RenderQuery appends to every action that
// prints.
const escapeFunc = "_query_escape"

// QueryData is what a query template sees: an incident's labels and
// annotations, unescaped (RenderQuery escapes what is printed).
type QueryData struct {
	// Labels are the common labels with the group labels over them.
	Labels            map[string]string
	CommonLabels      map[string]string
	GroupLabels       map[string]string
	CommonAnnotations map[string]string
}

// NewQueryData returns inc's labels and annotations for a query template.
func NewQueryData(inc *Incident) QueryData {
	labels := make(map[string]string, len(inc.CommonLabels)+len(inc.GroupLabels))
	maps.Copy(labels, inc.CommonLabels)
	maps.Copy(labels, inc.GroupLabels)
	return QueryData{Labels: labels, CommonLabels: inc.CommonLabels, GroupLabels: inc.GroupLabels, CommonAnnotations: inc.CommonAnnotations}
}

// RenderQuery executes a query template over data and passes whatever each
// action prints through esc, at the point of printing (as html/template
// does): whichever functions the template applies to a value (slice, printf
// with a precision…), what reaches the query is escaped whole, so that it
// cannot end a string literal by a quote or a backslash cut in two. A
// missing map key renders empty.
func RenderQuery(name, text string, data any, esc func(string) string) (string, error) {
	t, err := template.New(name).Funcs(template.FuncMap{
		escapeFunc: func(v any) string { return esc(fmt.Sprint(v)) },
	}).Option("missingkey=zero").Parse(text)
	if err != nil {
		return "", err
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			escapePrints(tt.Root)
		}
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// escapePrints appends escapeFunc to the pipeline of every action under n
// that prints.
func escapePrints(n parse.Node) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			escapePrints(c)
		}
	case *parse.ActionNode:
		if len(n.Pipe.Decl) == 0 {
			n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{
				NodeType: parse.NodeCommand, Pos: n.Pos,
				Args: []parse.Node{parse.NewIdentifier(escapeFunc).SetPos(n.Pos)},
			})
		}
	case *parse.IfNode:
		escapePrints(n.List)
		escapePrints(n.ElseList)
	case *parse.RangeNode:
		escapePrints(n.List)
		escapePrints(n.ElseList)
	case *parse.WithNode:
		escapePrints(n.List)
		escapePrints(n.ElseList)
	}
}
