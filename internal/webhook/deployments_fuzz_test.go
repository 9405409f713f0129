package webhook_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/webhook"
)

// FuzzParseDeployment feeds CI-sent bodies to ParseDeployment. A rejection
// is an Invalid incident.Error with code invalid_deployment and a zero
// Deployment. An accepted body is one valid UTF-8 JSON object that
// encoding/json decodes on its own (no trailing data), and the result keeps
// the documented limits: a trimmed, non-empty service; every field one line
// of at most 512 bytes of valid UTF-8 without control characters but tab; an absolute http(s) URL without
// credentials; a UTC time from 1970 to now+5m that survives storage (Unix
// nanoseconds) and JSON. Printing the result as a request and parsing it
// again gives the same deployment.
//
//	go test -run='^$' -fuzz='^FuzzParseDeployment$' -fuzztime=60s ./internal/webhook/
func FuzzParseDeployment(f *testing.F) {
	for _, s := range []string{
		`{"service":"checkout","environment":"prod","version":"1.4.2","commit":"9f1c2ab","author":"ci-bot","url":"https://ci.example/runs/42","deployed_at":"2026-03-02T09:55:00Z"}`,
		`{"service":"cart"}`,
		`{"service":"  cart  ","deployed_at":"2026-03-02T11:55:00+02:00"}`,
		`{"service":"cart","deployed_at":"2026-03-02T10:04:59.999999999Z"}`,
		`{"service":"cart","deployed_at":"1970-01-01T00:00:00Z"}`,
		`{"service":"cart","url":"http://ci.example:8080/a?b=c#d"}`,
		`{"service":"cart","url":"HTTPS://CI.EXAMPLE/"}`,
		`{"service":"caf\u00e9","author":"\u2603","version":"\t1"}`,
		`{"SERVICE":"cart","Version":"2"}`,
		`{"service":"a","service":"b"}`,
		` {"service":"a"} ` + "\n",
		`null`,
		``,
		`[]`,
		`{"version":"1"}`,
		`{"service":`,
		`{"service":"a","colour":"red"}`,
		`{"service":"a","deployed_at":"yesterday"}`,
		`{"service":"a","deployed_at":"2027-01-01T00:00:00Z"}`,
		`{"service":"a","url":"javascript:alert(1)"}`,
		`{"service":"a","url":"https://u:p@ci.example/"}`,
		`{"service":"a","url":"https:///path"}`,
		`{"service":"a\nb"}`,
		`{"service":"a\u0000"}`,
		`{"service":"a","author":"\u001b[2J"}`,
		`{"service":"a","version":"1\u0085b\u2029c\td"}`,
		`{"service":"a","` + strings.Repeat("x", 3000) + `":1}`,
		`{"service":"` + strings.Repeat("a", 600) + `"}`,
		`{"service":"a"}{"service":"b"}`,
		`{"service":"a"}]`,
		`{"service":"a"}}`,
		`{"service":"a","deployed_at":"1441-03-02T10:00:00Z"}`,
		`{"service":"a","deployed_at":"0000-01-01T00:00:00+01:00"}`,
		`{"service":"a","deployed_at":"1969-12-31T23:59:59.999Z"}`,
		"{\"service\":\"\xff\"}",
		`{"service":"\ud800"}`,
		`{"service":1}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := webhook.ParseDeployment(body, now)
		if err != nil {
			require.Less(t, len(err.Error()), 400, "the error quotes too much of the body")
			require.Equal(t, incident.Deployment{}, d)
			var ie *incident.Error
			require.ErrorAs(t, err, &ie)
			require.Equal(t, incident.Invalid, ie.Kind, "error %v", err)
			require.Equal(t, "invalid_deployment", ie.Code)
			return
		}
		// encoding/json would replace invalid bytes with U+FFFD: accepting
		// them would record something the pipeline never sent.
		require.True(t, utf8.Valid(body), "accepted a body that is not valid UTF-8")
		var r webhook.DeploymentRequest
		require.NoError(t, json.Unmarshal(body, &r), "accepted a body that encoding/json refuses as a whole")

		require.Equal(t, strings.TrimSpace(r.Service), d.Service)
		require.NotEmpty(t, d.Service)
		require.Equal(t, r.Environment, d.Environment)
		require.Equal(t, r.Version, d.Version)
		require.Equal(t, r.Commit, d.Commit)
		require.Equal(t, r.Author, d.Author)
		require.Equal(t, r.URL, d.URL)
		require.Equal(t, "api", d.Source)
		require.Zero(t, d.ID)
		require.Empty(t, d.Namespace+d.Name)
		for name, v := range map[string]string{
			"service": d.Service, "environment": d.Environment, "version": d.Version, "commit": d.Commit, "author": d.Author, "url": d.URL,
		} {
			require.True(t, utf8.ValidString(v), "%s is not valid UTF-8", name)
			require.LessOrEqual(t, len(v), 512, name)
			for _, r := range v {
				require.False(t, (unicode.IsControl(r) && r != '\t') || r == '\u2028' || r == '\u2029', "%s holds %U", name, r)
			}
		}
		if d.URL != "" {
			u, err := url.Parse(d.URL)
			require.NoError(t, err)
			require.Contains(t, []string{"http", "https"}, u.Scheme)
			require.NotEmpty(t, u.Host)
			require.Nil(t, u.User, "url carries credentials")
		}

		require.Equal(t, time.UTC, d.DeployedAt.Location())
		require.False(t, d.DeployedAt.After(now.Add(5*time.Minute)), "deployed_at %s is in the future", d.DeployedAt)
		require.False(t, d.DeployedAt.Before(time.Unix(0, 0)), "deployed_at %s is before 1970", d.DeployedAt)
		if r.DeployedAt == "" {
			require.True(t, d.DeployedAt.Equal(now))
		} else {
			want, err := time.Parse(time.RFC3339Nano, r.DeployedAt)
			require.NoError(t, err)
			require.True(t, d.DeployedAt.Equal(want), "%s != %s", d.DeployedAt, want)
		}
		// Storage keeps Unix nanoseconds; the API shows JSON.
		require.True(t, time.Unix(0, d.DeployedAt.UnixNano()).Equal(d.DeployedAt), "deployed_at %s does not survive storage", d.DeployedAt)
		stamp, err := json.Marshal(d.DeployedAt)
		require.NoError(t, err)
		var back time.Time
		require.NoError(t, json.Unmarshal(stamp, &back))
		require.True(t, back.Equal(d.DeployedAt))

		again, err := json.Marshal(webhook.DeploymentRequest{
			Service: d.Service, Environment: d.Environment, Version: d.Version, Commit: d.Commit, Author: d.Author, URL: d.URL,
			DeployedAt: d.DeployedAt.Format(time.RFC3339Nano),
		})
		require.NoError(t, err)
		d2, err := webhook.ParseDeployment(again, now)
		require.NoError(t, err, "the accepted deployment printed as a request is refused: %s", again)
		require.Equal(t, d, d2)
	})
}
