package incident

import (
	"fmt"

	"github.com/prometheus/alertmanager/pkg/labels"
)

// ParseMatcherLines parses the lines of a list of matchers as
// Alertmanager's config.Matchers does, with labels.ParseMatchers: a line may
// hold several matchers, separated by commas and optionally in braces
// (`severity=critical,team=db`, `{severity="critical", team="db"}`).
// labels.ParseMatcher would read the first of those as one matcher whose
// value is "critical,team=db", which no alert has, so a route or runbook
// written that way would silently never match. A line without any matcher
// is an error, where Alertmanager would ignore it: it is almost surely a
// mistake. Errors name the line as key[i].
func ParseMatcherLines(key string, lines []string) (labels.Matchers, error) {
	var out labels.Matchers
	for i, s := range lines {
		ms, err := labels.ParseMatchers(s)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", key, i, err)
		}
		if len(ms) == 0 {
			return nil, fmt.Errorf("%s[%d]: no matcher on the line", key, i)
		}
		out = append(out, ms...)
	}
	return out, nil
}
