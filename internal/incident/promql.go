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

// QueryDialect is the language a query template renders, as far as where
// its string literals and comments are.
type QueryDialect int

const (
	// PromQL has "…", '…' and `…` strings, and # comments to the end of the line.
	PromQL QueryDialect = iota
	// LogQL is read as Go tokens by Loki's scanner: "…" and `…` strings ('…' is
	// a character, not a string); // and /* */ comments.
	LogQL
)

// CheckQueryTemplate checks a parsed query template: every action that
// prints ({{ … }}) must sit inside a string literal of the query, not just
// after a backslash there, where the escaping of what it prints (see
// EscapePromQLString) keeps a label value from ending the literal. Outside
// one, a value would become the query's own syntax: add matchers, widen a
// range, call functions. The branches of {{ if }} and {{ with }} must leave
// the query in the same place (inside a literal or not); a {{ range }}
// body, its {{ break }}s and {{ continue }}s and its {{ else }} where it
// started; {{ template }} is refused.
func CheckQueryTemplate(t *parse.Tree, d QueryDialect) error {
	if t == nil || t.Root == nil {
		return nil
	}
	c := queryChecker{t: t, dialect: d}
	_, err := c.list(t.Root, queryLexer{}, nil)
	return err
}

// queryLexer is where a query's text has got to: inside a string literal
// opened by quote (just after a backslash in it: escaped), in a comment
// ('#' or '/' to the end of the line, '*' to */; star: just after a '*'
// there), or outside both (slash: just after a '/').
type queryLexer struct {
	quote, comment       byte
	escaped, slash, star bool
}

// printable reports whether a value printed here stays inside a literal.
func (l queryLexer) printable() bool { return l.quote != 0 && !l.escaped }

func (l queryLexer) scan(d QueryDialect, text []byte) queryLexer {
	for _, c := range text {
		switch {
		case l.comment == '*':
			if l.star && c == '/' {
				l.comment = 0
			}
			l.star = c == '*'
		case l.comment != 0:
			if c == '\n' {
				l.comment = 0
			}
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
		default:
			if l.slash {
				l.slash = false
				if c == '/' || c == '*' {
					l.comment = c
					continue
				}
			}
			switch {
			case c == '"' || c == '`' || (c == '\'' && d == PromQL):
				l.quote = c
			case c == '#' && d == PromQL:
				l.comment = '#'
			case c == '/' && d == LogQL:
				l.slash = true
			}
		}
	}
	return l
}

type queryChecker struct {
	t       *parse.Tree
	dialect QueryDialect
}

func (c queryChecker) errorf(n parse.Node, format string, args ...any) error {
	loc, _ := c.t.ErrorContext(n)
	return fmt.Errorf("%s: "+format, append([]any{loc}, args...)...)
}

// list checks the nodes of list from l; loop is the state where the
// enclosing {{ range }} started, nil outside one.
func (c queryChecker) list(list *parse.ListNode, l queryLexer, loop *queryLexer) (queryLexer, error) {
	if list == nil {
		return l, nil
	}
	for _, n := range list.Nodes {
		var err error
		switch n := n.(type) {
		case *parse.TextNode:
			l = l.scan(c.dialect, n.Text)
		case *parse.ActionNode:
			if len(n.Pipe.Decl) == 0 && !l.printable() {
				return l, c.errorf(n, "%s is outside a string literal, where a label value would become part of the query: put it inside quotes, as in service=\"{{ .Labels.service }}\"", n)
			}
		case *parse.IfNode:
			l, err = c.branches(&n.BranchNode, l, loop, "if")
		case *parse.WithNode:
			l, err = c.branches(&n.BranchNode, l, loop, "with")
		case *parse.RangeNode:
			err = c.loop(n, l)
		case *parse.BreakNode, *parse.ContinueNode:
			if loop != nil && l != *loop {
				err = c.errorf(n, "%s leaves a string literal opened or closed that the loop's start did not", n)
			}
		case *parse.TemplateNode:
			err = c.errorf(n, "{{ template }} is not allowed in a query")
		}
		if err != nil {
			return l, err
		}
	}
	return l, nil
}

func (c queryChecker) branches(b *parse.BranchNode, l queryLexer, loop *queryLexer, name string) (queryLexer, error) {
	then, err := c.list(b.List, l, loop)
	if err != nil {
		return l, err
	}
	els, err := c.list(b.ElseList, l, loop)
	if err != nil {
		return l, err
	}
	if then != els {
		return l, c.errorf(b, "the branches of {{ %s }} end differently, one inside a string literal and one outside", name)
	}
	return then, nil
}

// loop checks a {{ range }}: its body may run any number of times and its
// {{ else }} instead, so each must end where the range started.
func (c queryChecker) loop(n *parse.RangeNode, l queryLexer) error {
	body, err := c.list(n.List, l, &l)
	if err != nil {
		return err
	}
	els, err := c.list(n.ElseList, l, nil)
	if err != nil {
		return err
	}
	if body != l || els != l {
		return c.errorf(n, "the body or the {{ else }} of {{ range }} opens or closes a string literal; each must end where the range started")
	}
	return nil
}

// escapeFunc is the function RenderQuery appends to every action that
// prints.
const escapeFunc = "_query_escape"

// queryData is what a query template sees: an incident's labels and
// annotations, unescaped (RenderQuery escapes what is printed).
type queryData struct {
	// Labels are the common labels with the group labels over them.
	Labels            map[string]string
	CommonLabels      map[string]string
	GroupLabels       map[string]string
	CommonAnnotations map[string]string
}

// newQueryData returns inc's labels and annotations for a query template.
func newQueryData(inc *Incident) queryData {
	labels := make(map[string]string, len(inc.CommonLabels)+len(inc.GroupLabels))
	maps.Copy(labels, inc.CommonLabels)
	maps.Copy(labels, inc.GroupLabels)
	return queryData{Labels: labels, CommonLabels: inc.CommonLabels, GroupLabels: inc.GroupLabels, CommonAnnotations: inc.CommonAnnotations}
}

// RenderQuery executes a query template over inc's labels and annotations:
// .Labels (the common labels with the group labels over them),
// .CommonLabels, .GroupLabels, .CommonAnnotations. It passes whatever each
// action prints through esc, at the point of printing (as html/template
// does): whichever functions the template applies to a value (slice, printf
// with a precision…), what reaches the query is escaped whole, so that it
// cannot end a string literal by a quote or a backslash cut in two. A
// missing label renders empty.
func RenderQuery(name, text string, inc *Incident, esc func(string) string) (string, error) {
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
	if err := t.Execute(&b, newQueryData(inc)); err != nil {
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
