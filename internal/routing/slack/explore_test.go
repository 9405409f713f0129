package slack_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	goslack "github.com/slack-go/slack"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/routing/slack"
)

func TestExplore(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	var deps []incident.Deployment
	for i := range 40 {
		deps = append(deps, incident.Deployment{Service: fmt.Sprintf("svc-%d", i), Version: "v1.2.3", Commit: "abcdef1234567890", Author: "ci-bot", URL: fmt.Sprintf("https://ci.example/builds/%d?a=1&b=2", i), DeployedAt: now.Add(-time.Hour)})
	}
	var logs []incident.LogLine
	for i := range 100 {
		logs = append(logs, incident.LogLine{Line: strings.Repeat(fmt.Sprintf("error %d <x> ", i), 30), Count: 2})
	}
	c := &incident.Context{DurationMS: 1234, Sections: []incident.Section{
		{Source: "deployments", Status: "ok", Deployments: deps},
		{Source: "loki", Status: "ok", Logs: logs},
		{Source: "es", Status: "ok", Logs: logs},
		{Source: "es2", Status: "ok", Logs: logs},
		{Source: "es3", Status: "ok", Logs: logs},
		{Source: "es4", Status: "ok", Logs: logs},
	}}
	for i := range 30 {
		c.Sections = append(c.Sections, incident.Section{Source: fmt.Sprintf("broken-%d", i), Status: incident.SourceError, Error: strings.Repeat("boom ", 30)})
	}
	_, blocks := slack.RenderContext(c, now)
	total := 0
	for _, b := range blocks {
		switch b := b.(type) {
		case *goslack.SectionBlock:
			n := utf8.RuneCountInString(b.Text.Text)
			total += n
			t.Logf("section %d: %q", n, b.Text.Text[max(0, len(b.Text.Text)-80):])
		case *goslack.ContextBlock:
			for _, e := range b.ContextElements.Elements {
				tb := e.(*goslack.TextBlockObject)
				total += utf8.RuneCountInString(tb.Text)
				t.Logf("context %d", utf8.RuneCountInString(tb.Text))
			}
		}
	}
	t.Logf("total %d blocks %d", total, len(blocks))
}
