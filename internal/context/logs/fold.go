// Package logs samples recent error log lines of an incident's service from
// Loki and Elasticsearch/OpenSearch, and shapes them for people: secrets
// redacted, near-duplicate lines folded into one with a count, newest first.
package logs

import (
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/responder/responder/internal/incident"
)

// Line is one raw log line as a source read it.
type Line struct {
	At     time.Time
	Text   string
	Origin string
}

var (
	uuidRE  = regexp.MustCompile(`(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`)
	hexRE   = regexp.MustCompile(`(?i)\b(?:0x[0-9a-f]+|[0-9a-f]*[0-9][0-9a-f]*[a-f][0-9a-f]*|[0-9a-f]*[a-f][0-9a-f]*[0-9][0-9a-f]*)\b`)
	digitRE = regexp.MustCompile(`[0-9]+`)
	spaceRE = regexp.MustCompile(`\s+`)
)

// Normalize returns the shape of a line: UUIDs, hex strings and numbers
// replaced by placeholders and whitespace collapsed, so that lines that
// differ only in IDs, addresses, durations or timestamps compare equal.
func Normalize(s string) string {
	s = uuidRE.ReplaceAllString(s, "<uuid>")
	s = hexRE.ReplaceAllStringFunc(s, func(m string) string {
		// A word of hex letters only ("deadbeef", "face") is a word; the
		// pattern already requires a digit and a letter, or 0x.
		return "<hex>"
	})
	s = digitRE.ReplaceAllString(s, "<n>")
	return strings.TrimSpace(spaceRE.ReplaceAllString(s, " "))
}

// Fold merges lines of the same shape (see Normalize) into the newest of
// them with a count, and returns at most max lines, newest first. Lines
// must be redacted already.
func Fold(lines []Line, maxLines int) []incident.LogLine {
	type group struct {
		line  incident.LogLine
		order int
	}
	byShape := map[string]*group{}
	var groups []*group
	for i, l := range lines {
		text := strings.TrimRight(l.Text, "\r\n")
		if strings.TrimSpace(text) == "" {
			continue
		}
		key := Normalize(text)
		g := byShape[key]
		if g == nil {
			g = &group{line: incident.LogLine{At: l.At, Line: text, Origin: l.Origin}, order: i}
			byShape[key] = g
			groups = append(groups, g)
		} else if l.At.After(g.line.At) {
			g.line.At, g.line.Line, g.line.Origin = l.At, text, l.Origin
		}
		g.line.Count++
	}
	slices.SortStableFunc(groups, func(a, b *group) int {
		if c := b.line.At.Compare(a.line.At); c != 0 {
			return c
		}
		return a.order - b.order
	})
	if maxLines > 0 && len(groups) > maxLines {
		groups = groups[:maxLines]
	}
	out := make([]incident.LogLine, len(groups))
	for i, g := range groups {
		out[i] = g.line
	}
	return out
}
