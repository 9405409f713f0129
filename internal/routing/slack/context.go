package slack

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	goslack "github.com/slack-go/slack"

	"github.com/responder/responder/internal/incident"
)

// maxContextText bounds the whole context reply; Slack refuses messages
// whose blocks add up to much more (msg_blocks_too_long, around 13k).
const maxContextText = 11000

// RenderContext renders an incident's gathered context as a thread reply:
// the fallback text and the blocks. Every section stays within Slack's
// limits (3000 characters a section, 50 blocks a message, the total
// under 11,000 characters); label values, log lines and queries are
// escaped. Sources that timed out or failed are named in the last line.
func RenderContext(c *incident.Context, now time.Time) (string, []goslack.Block) {
	var blocks []goslack.Block
	budget := maxContextText
	add := func(s string) {
		if budget <= 0 || len(blocks) >= 48 {
			return
		}
		s = TruncateEscaped(s, min(maxSectionText, budget))
		budget -= runes(s)
		blocks = append(blocks, mrkdwnSection(s))
	}
	var deps []incident.Deployment
	var notes []string
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
			add(logsText(sec))
		}
		for _, sn := range sec.Snapshots {
			add(snapshotText(sn))
		}
	}
	if len(deps) > 0 {
		// Deployments first: "what changed" is the first question.
		blocks = append([]goslack.Block{mrkdwnSection(TruncateEscaped(deploymentsText(deps, now), maxSectionText))}, blocks...)
	}
	summary := fmt.Sprintf("Context gathered in %s", (time.Duration(c.DurationMS) * time.Millisecond).Round(10*time.Millisecond))
	if len(notes) > 0 {
		summary += " · " + strings.Join(notes, " · ")
	}
	blocks = append(blocks, goslack.NewContextBlock("", mrkdwn(TruncateEscaped(summary, maxSectionText))))
	return "Incident context: deployments, error logs and metrics", blocks
}

func deploymentsText(deps []incident.Deployment, now time.Time) string {
	var b strings.Builder
	b.WriteString("*Recent deployments*")
	for _, d := range deps {
		b.WriteString("\n• ")
		name := d.Service
		if d.Name != "" {
			name = d.Namespace + "/" + d.Name
		}
		b.WriteString("*" + Escape(name) + "*")
		if d.Version != "" {
			b.WriteString(" `" + Escape(strings.ReplaceAll(d.Version, "`", "'")) + "`")
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
			b.WriteString(" commit `" + Escape(truncate(d.Commit, 12)) + "`")
		}
		if d.Author != "" {
			b.WriteString(" by " + Escape(d.Author))
		}
		b.WriteString(", " + HumanDuration(now.Sub(d.DeployedAt)) + " ago")
		if u, ok := safeURL(d.URL); ok {
			b.WriteString(" <" + u + "|details>")
		}
	}
	return b.String()
}

func logsText(sec incident.Section) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*Error logs* (%s)\n```", Escape(sec.Source))
	for _, l := range sec.Logs {
		line := strings.ReplaceAll(l.Line, "```", "'''")
		if l.Count > 1 {
			fmt.Fprintf(&b, "×%d ", l.Count)
		}
		b.WriteString(Escape(truncate(line, 300)) + "\n")
	}
	b.WriteString("```")
	return b.String()
}

func snapshotText(sn incident.Snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%s*  `%s`", Escape(sn.Name), Escape(truncate(strings.ReplaceAll(sn.Query, "`", "'"), 300)))
	if sn.Error != "" {
		b.WriteString("\n_" + Escape(sn.Error) + "_")
		return b.String()
	}
	if len(sn.Values) == 0 {
		b.WriteString("\nno series now")
	}
	for _, v := range sn.Values {
		b.WriteString("\n• `" + Escape(truncate(v.Labels, 150)) + "` = *" + FormatValue(v.Value) + "*")
	}
	return b.String()
}

// FormatValue prints a sample value with four significant digits.
func FormatValue(v float64) string {
	return strconv.FormatFloat(v, 'g', 4, 64)
}
