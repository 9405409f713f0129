package remediation

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"text/template"
	"text/template/parse"
	"unicode"

	"github.com/responder/responder/internal/incident"
)

// Templates in runbooks are deliberately poor: a templated field is literal
// text with `{{ .Params.name }}` substitutions, and in the fields whose value
// is escaped for its destination (PromQL, free text) also `{{ .Labels.name
// }}`. No functions, pipelines, conditions or variables: what a field can
// become is plain to see when reading the runbook.
//
// .Params hold values validated against their patterns; .Labels hold raw
// label values and are therefore refused by the loader wherever a value
// could reach a program, a URL or a Kubernetes object.

// checkTemplate parses raw and checks that it substitutes only declared
// parameters, and labels when allowLabels is set.
func checkTemplate(raw string, rb *Runbook, allowLabels bool) error {
	_, err := parseTemplate(raw, rb, allowLabels)
	return err
}

// parseTemplate is checkTemplate that also returns the parsed template,
// under the name render executes ("field": a {{ define }} of that name
// would replace it, and is refused with the others); nil when raw has no
// substitution.
func parseTemplate(raw string, rb *Runbook, allowLabels bool) (*parse.Tree, error) {
	if !strings.Contains(raw, "{{") {
		return nil, nil
	}
	trees, err := parse.Parse("field", raw, "", "", nil)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	root := trees["field"]
	if root == nil || len(trees) != 1 {
		return nil, errors.New("template: define and block are not allowed")
	}
	for _, n := range root.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
		case *parse.ActionNode:
			if err := checkAction(n, rb, allowLabels); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("template: only {{ .Params.name }}%s substitutions are allowed, not %q", labelsHint(allowLabels), n.String())
		}
	}
	return root, nil
}

// checkQueryTemplate checks a PromQL field: a template as checkTemplate
// allows with labels, each substitution inside a string literal of the
// query, the only place where its escaping keeps it a value.
func checkQueryTemplate(raw string, rb *Runbook) error {
	root, err := parseTemplate(raw, rb, true)
	if err != nil || root == nil {
		return err
	}
	if err := incident.CheckQueryTemplate(root, incident.PromQL); err != nil {
		return fmt.Errorf("template: %w", err)
	}
	return nil
}

func labelsHint(allowLabels bool) string {
	if allowLabels {
		return " and {{ .Labels.name }}"
	}
	return ""
}

func checkAction(n *parse.ActionNode, rb *Runbook, allowLabels bool) error {
	bad := fmt.Errorf("template: only {{ .Params.name }}%s substitutions are allowed, not %s", labelsHint(allowLabels), n.String())
	if len(n.Pipe.Decl) > 0 || len(n.Pipe.Cmds) != 1 || len(n.Pipe.Cmds[0].Args) != 1 {
		return bad
	}
	f, ok := n.Pipe.Cmds[0].Args[0].(*parse.FieldNode)
	if !ok || len(f.Ident) != 2 {
		return bad
	}
	switch f.Ident[0] {
	case "Params":
		if _, ok := rb.Params[f.Ident[1]]; !ok {
			return fmt.Errorf("template: undefined parameter %q", f.Ident[1])
		}
	case "Labels":
		if !allowLabels {
			return errors.New("template: .Labels may not be used here, only validated .Params: a label value must never reach a program, a URL or a Kubernetes object unchecked")
		}
	default:
		return bad
	}
	return nil
}

// render executes a checked template with the given (already escaped)
// values. A missing label renders as an empty string.
func render(raw string, params, lbls map[string]string) (string, error) {
	if !strings.Contains(raw, "{{") {
		return raw, nil
	}
	t, err := template.New("field").Option("missingkey=zero").Parse(raw)
	if err != nil {
		return "", fmt.Errorf("template: %w", err)
	}
	var b strings.Builder
	data := map[string]map[string]string{"Params": params, "Labels": lbls}
	if data["Labels"] == nil {
		data["Labels"] = map[string]string{}
	}
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("template: %w", err)
	}
	return b.String(), nil
}

// escaped returns a copy of m with every value passed through esc.
func escaped(m map[string]string, esc func(string) string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range maps.All(m) {
		out[k] = esc(v)
	}
	return out
}

// freeText makes s safe for a one-line free-text field: control characters
// (C0 and C1: U+0085 is a line break too), format characters (a
// right-to-left override would make the text read otherwise than it is) and
// line and paragraph separators become spaces, and the length is capped.
func freeText(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) {
			return ' '
		}
		return r
	}, s)
	return truncateRunes(s, 256)
}

func truncateRunes(s string, n int) string {
	i := 0
	for j := range s {
		if i == n {
			return s[:j] + "…"
		}
		i++
	}
	return s
}
