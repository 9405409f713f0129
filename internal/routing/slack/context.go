package slack

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	goslack "github.com/slack-go/slack"

	"github.com/responder/responder/internal/incident"
)

const (
	// maxContextText bounds the whole context reply, every block's text
	// included; Slack refuses messages whose blocks add up to much more
	// (msg_blocks_too_long, around 13k).
	maxContextText = 11000
	// maxContextSummary is the part of maxContextText kept for the closing
	// line (the time taken and the sources that failed).
	maxContextSummary = 1000
	// minContextSection is the least budget worth a section of its own.
	minContextSection = 200
	// maxContextBlocks leaves room under Slack's 50 blocks for the
	// deployments and the closing line.
	maxContextBlocks = 48
)

// RenderContext renders an incident's gathered context as a thread reply:
// the fallback text and the blocks. Every section stays within Slack's
// limits (3000 characters a section, 50 blocks a message, the total
// under 11,000 characters); label values, log lines and queries are
// escaped. A section that does not fit whole loses whole lines, never part
// of one, so that no link, code span or code block is cut open. Sources
// that timed out or failed are named in the last line.
func RenderContext(c *incident.Context, now time.Time) (string, []goslack.Block) {
	var (
		deps   []incident.Deployment
		notes  []string
		bodies []func(limit int) string
	)
	for _, sec := range c.Sections {
		switch sec.Status {
		case incident.SourceTimeout:
			notes = append(notes, Escape(sec.Source)+": timed out")
			continue
		case incident.SourceError:
			notes = append(notes, Escape(sec.Source)+": "+Escape(truncate(sec.Error, 120)))
			continue
		case incident.SourceEmpty:
			notes = append(notes, Escape(sec.Source)+": nothing found")
			continue
		}
		deps = append(deps, sec.Deployments...)
		if len(sec.Logs) > 0 {
			bodies = append(bodies, func(limit int) string { return logsText(sec, limit) })
		}
		for _, sn := range sec.Snapshots {
			bodies = append(bodies, func(limit int) string { return snapshotText(sn, limit) })
		}
	}

	// The closing line has its own share of the budget, so that the
	// sections cannot push the total past it.
	budget := maxContextText - maxContextSummary
	var blocks []goslack.Block
	add := func(s string) {
		budget -= runes(s)
		blocks = append(blocks, mrkdwnSection(s))
	}
	if len(deps) > 0 {
		// Deployments first: "what changed" is the first question.
		add(deploymentsText(deps, now, min(maxSectionText, budget)))
	}
	omitted := 0
	for i, body := range bodies {
		if budget < minContextSection || len(blocks) >= maxContextBlocks {
			omitted++
			continue
		}
		// An even share of what is left, so that long logs cannot crowd
		// out the metrics after them; a short section leaves its unused
		// share to the next ones.
		share := max(budget/(len(bodies)-i), minContextSection)
		add(body(min(maxSectionText, share, budget)))
	}

	parts := []string{fmt.Sprintf("Context gathered in %s", (time.Duration(c.DurationMS) * time.Millisecond).Round(10*time.Millisecond))}
	if omitted > 0 {
		parts = append(parts, fmt.Sprintf("%d more %s left out for length", omitted, plural(omitted, "section", "sections")))
	}
	parts = append(parts, notes...)
	summary := truncateJoined(parts, " · ", maxContextSummary)
	blocks = append(blocks, goslack.NewContextBlock("", mrkdwn(summary)))
	return "Incident context: deployments, error logs and metrics", blocks
}

// fitLines is head, then as many of lines as fit in limit characters
// (joined by sep), then tail, then more(n) when n lines were left out; and
// how many lines it listed. It drops whole lines rather than cut one; only
// a head that alone exceeds limit is cut.
func fitLines(head string, lines []string, sep, tail string, limit int, more func(int) string) (string, int) {
	var b strings.Builder
	b.WriteString(head)
	used := runes(head) + runes(tail)
	listed := 0
	for i, line := range lines {
		if listed > 0 {
			line = sep + line
		}
		reserve := 0
		if i < len(lines)-1 {
			// Room for saying that the lines after this one were left out.
			reserve = runes(more(len(lines) - i))
		}
		if used+runes(line)+reserve > limit {
			break
		}
		b.WriteString(line)
		used += runes(line)
		listed++
	}
	b.WriteString(tail)
	if left := len(lines) - listed; left > 0 {
		b.WriteString(more(left))
	}
	return TruncateEscaped(b.String(), limit), listed
}

func deploymentsText(deps []incident.Deployment, now time.Time, limit int) string {
	lines := make([]string, 0, len(deps))
	for _, d := range deps {
		var b strings.Builder
		b.WriteString("• ")
		name := d.Service
		if d.Name != "" {
			name = d.Namespace + "/" + d.Name
		}
		b.WriteString("*" + Escape(name) + "*")
		if d.Version != "" {
			b.WriteString(" " + codeSpan(d.Version, maxLabelValue))
		}
		if d.Revision > 0 {
			b.WriteString(" revision " + strconv.FormatInt(d.Revision, 10))
		}
		if d.Rollback {
			b.WriteString(" (rollback)")
		}
		if d.Environment != "" && d.Name == "" {
			b.WriteString(" to " + Escape(d.Environment))
		}
		if d.Commit != "" {
			b.WriteString(" commit " + codeSpan(d.Commit, 12))
		}
		if d.Author != "" {
			b.WriteString(" by " + Escape(d.Author))
		}
		b.WriteString(", " + HumanDuration(now.Sub(d.DeployedAt)) + " ago")
		if u, ok := safeURL(d.URL); ok {
			b.WriteString(" <" + u + "|details>")
		}
		lines = append(lines, b.String())
	}
	text, _ := fitLines("*Recent deployments*\n", lines, "\n", "", limit, func(n int) string {
		return fmt.Sprintf("\n_and %d more %s_", n, plural(n, "deployment", "deployments"))
	})
	return text
}

func logsText(sec incident.Section, limit int) string {
	lines := make([]string, 0, len(sec.Logs))
	for _, l := range sec.Logs {
		line := strings.ReplaceAll(l.Line, "```", "'''")
		prefix := ""
		if l.Count > 1 {
			prefix = fmt.Sprintf("×%d ", l.Count)
		}
		lines = append(lines, prefix+Escape(truncate(line, 300)))
	}
	head := fmt.Sprintf("*Error logs* (%s)", Escape(sec.Source))
	more := func(n int) string { return fmt.Sprintf("\n_and %d more %s_", n, plural(n, "line", "lines")) }
	text, listed := fitLines(head+"\n```", lines, "\n", "\n```", limit, more)
	if listed == 0 {
		// No empty code block: just the count.
		return TruncateEscaped(head+fmt.Sprintf("\n_%d %s left out for length_", len(lines), plural(len(lines), "line", "lines")), limit)
	}
	return text
}

func snapshotText(sn incident.Snapshot, limit int) string {
	head := "*" + Escape(sn.Name) + "*  " + codeSpan(sn.Query, 300)
	if len(sn.Warnings) > 0 {
		// Said before the values: they may be partial.
		head += "\n_Prometheus warns: " + Escape(truncate(strings.Join(sn.Warnings, "; "), 300)) + "_"
	}
	if sn.Error != "" {
		return TruncateEscaped(head+"\n_"+Escape(truncate(sn.Error, 300))+"_", limit)
	}
	if len(sn.Values) == 0 {
		return TruncateEscaped(head+"\nno series now", limit)
	}
	lines := make([]string, 0, len(sn.Values))
	for _, v := range sn.Values {
		lines = append(lines, "• "+codeSpan(v.Labels, 150)+" = *"+FormatValue(v.Value)+"*")
	}
	text, _ := fitLines(head+"\n", lines, "\n", "", limit, func(n int) string {
		return fmt.Sprintf("\n_and %d more series_", n)
	})
	return text
}

// FormatValue prints a sample value with four significant digits.
func FormatValue(v float64) string {
	return strconv.FormatFloat(v, 'g', 4, 64)
}
