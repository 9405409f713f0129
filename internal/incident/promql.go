package incident

import "strings"

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
