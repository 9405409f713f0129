package logs

import "strings"

// EscapeLogQL escapes s for use inside a LogQL string literal (a label
// matcher's value or a line filter): quotes become hex escapes, so the
// value cannot end the literal.
func EscapeLogQL(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '"':
			b.WriteString(`\x22`)
		case r == '\'':
			b.WriteString(`\x27`)
		case r == '`':
			b.WriteString(`\x60`)
		case r == '\n':
			b.WriteString(`\n`)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\x`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&0xf])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// EscapeQueryString escapes s for Elasticsearch's query_string syntax: its
// reserved characters and the whitespace that separates terms (Lucene's
// classic grammar: space, \t, \n, \r and U+3000) are backslash-escaped,
// < and >, which cannot be escaped, are dropped, and a value that is an
// operator (AND, OR, NOT) gets its first letter escaped, so that a value
// is always one term.
func EscapeQueryString(s string) string {
	switch s {
	case "AND", "OR", "NOT":
		return `\` + s
	}
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '<', '>':
			continue
		case '+', '-', '=', '&', '|', '!', '(', ')', '{', '}', '[', ']', '^', '"', '~', '*', '?', ':', '\\', '/',
			' ', '\t', '\n', '\r', '\u3000':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
