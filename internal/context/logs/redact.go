package logs

import (
	"fmt"
	"regexp"

	"github.com/responder/responder/internal/incident"
)

// Redacted replaces what a redaction pattern matched.
const Redacted = "[REDACTED]"

// defaultRedactions remove the secrets that most often end up in logs.
// Each keeps its first group (the key, the scheme) and replaces the rest.
var defaultRedactions = []struct {
	re   *regexp.Regexp
	repl string
}{
	// Authorization headers and bearer tokens.
	{regexp.MustCompile(`(?i)(\b(?:bearer|basic|token)\s+)[A-Za-z0-9\-._~+/]{8,}=*`), "${1}" + Redacted},
	// key=value and "key": "value" pairs whose key names a secret. A quoted
	// value is replaced up to its closing quote (it may hold spaces), and
	// the quotes may be escaped (\"key\":\"value\"), as they are in JSON
	// logged inside a JSON or logfmt string. Groups 2-5 are the quotes.
	{regexp.MustCompile(`(?i)((?:password|passwd|pwd|pass|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key|private[_-]?key|auth|authorization|credentials?|session[_-]?id|cookie)(?:\\?["'])?\s*[:=]\s*)` +
		`(?:(\\?")(?:[^"\\]|\\[^"])*(\\?")?|(')[^']*(')?|[^\s"'&,;}]+)`), "${1}${2}${4}" + Redacted + "${3}${5}"},
	// A Cookie or Set-Cookie header: every cookie in it.
	{regexp.MustCompile(`(?i)(\b(?:set-)?cookie:\s*)[^\r\n"]+`), "${1}" + Redacted},
	// Credentials in URLs, up to the last @ before the host: a password
	// may hold one.
	{regexp.MustCompile(`(://[^/\s:@]+:)[^/\s]*@`), "${1}" + Redacted + "@"},
	// Well-known token formats: Slack, GitHub, AWS access keys, JWTs,
	// private keys.
	{regexp.MustCompile(`\b(?:xox[abposr]-[A-Za-z0-9-]{10,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|AKIA[0-9A-Z]{16}|eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+|sk_live_[A-Za-z0-9]{10,}|glpat-[A-Za-z0-9_-]{20})`), Redacted},
	{regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)`), Redacted},
	// Email addresses.
	{regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}`), "[EMAIL]"},
}

// Redactor removes secrets from log lines.
type Redactor struct {
	defaults bool
	extra    []*regexp.Regexp
}

// NewRedactor returns a Redactor applying the default patterns (unless
// defaults is false) and then patterns, whose whole matches are replaced.
func NewRedactor(patterns []string, defaults bool) (*Redactor, error) {
	r := &Redactor{defaults: defaults}
	for i, p := range patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("redact[%d]: %w", i, err)
		}
		r.extra = append(r.extra, re)
	}
	return r, nil
}

// Redact returns s without the secrets the patterns match.
func (r *Redactor) Redact(s string) string {
	if r == nil {
		return s
	}
	if r.defaults {
		for _, d := range defaultRedactions {
			s = d.re.ReplaceAllString(s, d.repl)
		}
	}
	for _, re := range r.extra {
		s = re.ReplaceAllString(s, Redacted)
	}
	return s
}

// Shaper turns raw lines into what is stored and shown: redacted, folded,
// the newest MaxLines.
type Shaper struct {
	Redactor *Redactor
	MaxLines int
}

// Shape redacts, then folds lines.
func (s Shaper) Shape(lines []Line) []incident.LogLine {
	for i := range lines {
		lines[i].Text = s.Redactor.Redact(lines[i].Text)
		lines[i].Origin = s.Redactor.Redact(lines[i].Origin)
	}
	return Fold(lines, s.MaxLines)
}
