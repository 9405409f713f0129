package slack_test

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	goslack "github.com/slack-go/slack"
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/routing/slack"
)

// FuzzRenderContext: whatever the gathered lines, labels and queries hold,
// the context reply keeps to Slack's limits (50 blocks, 3,000 characters a
// section, 11,000 in all), never leaves a <…> token or a code block cut
// open, and stays valid UTF-8; and TruncateEscaped of escaped text keeps to
// its length without cutting markup open.
func FuzzRenderContext(f *testing.F) {
	f.Add("error: connection refused <x> & y", `pod="web-1"`, uint8(3), uint16(40))
	f.Add(strings.Repeat("é```<a|b>&amp;", 40), "a`b", uint8(200), uint16(7))
	f.Add("", "", uint8(0), uint16(0))
	f.Add("\xff\xfe", "<!channel>", uint8(60), uint16(3000))
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, line, label string, reps uint8, n uint16) {
		var logs []incident.LogLine
		var deps []incident.Deployment
		var values []incident.Sample
		for i := range int(reps) {
			logs = append(logs, incident.LogLine{Line: line, Count: i % 3})
			deps = append(deps, incident.Deployment{Service: label, Version: line, URL: "https://ci.example/" + label, DeployedAt: now.Add(-time.Minute)})
			values = append(values, incident.Sample{Labels: label, Value: float64(i)})
		}
		c := &incident.Context{DurationMS: 1234, Sections: []incident.Section{
			{Source: "deployments", Kind: incident.ContextDeployments, Status: incident.SourceOK, Deployments: deps},
			{Source: label, Kind: incident.ContextLogs, Status: incident.SourceOK, Logs: logs},
			{Source: "promql", Kind: incident.ContextMetrics, Status: incident.SourceOK, Snapshots: []incident.Snapshot{
				{Name: label, Query: line, Values: values, Warnings: []string{line, label}},
				{Name: "failed", Query: line, Error: line},
			}},
			{Source: "loki", Kind: incident.ContextLogs, Status: incident.SourceError, Error: line},
		}}
		_, blocks := slack.RenderContext(c, now)
		require.LessOrEqual(t, len(blocks), 50)
		total := 0
		for _, b := range blocks {
			var texts []string
			switch b := b.(type) {
			case *goslack.SectionBlock:
				require.NotNil(t, b.Text)
				require.LessOrEqual(t, utf8.RuneCountInString(b.Text.Text), 3000)
				texts = append(texts, b.Text.Text)
			case *goslack.ContextBlock:
				for _, e := range b.ContextElements.Elements {
					if tb, ok := e.(*goslack.TextBlockObject); ok {
						texts = append(texts, tb.Text)
					}
				}
			default:
				t.Fatalf("unexpected block %T", b)
			}
			for _, s := range texts {
				total += utf8.RuneCountInString(s)
				requireWholeMarkup(t, s)
				if utf8.ValidString(line) && utf8.ValidString(label) {
					require.True(t, utf8.ValidString(s), "%q", s)
				}
			}
		}
		require.LessOrEqual(t, total, 11000)

		cut := slack.TruncateEscaped("<https://ci.example/x|"+slack.Escape(label)+"> "+slack.Escape(line), int(n))
		require.LessOrEqual(t, utf8.RuneCountInString(cut), int(n))
		requireWholeMarkup(t, cut)
	})
}
