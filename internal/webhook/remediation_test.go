package webhook_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/webhook"
)

type fakeRemediation struct {
	mu        sync.Mutex
	decisions []string
	paused    []bool
}

func (f *fakeRemediation) Pause(_ context.Context, paused bool, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paused = append(f.paused, paused)
	return nil
}

func (f *fakeRemediation) Decide(_ context.Context, runID int64, user string, approve bool) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.decisions = append(f.decisions, strconv.FormatInt(runID, 10)+" "+user+" "+strconv.FormatBool(approve))
	return "ok", nil
}

var _ webhook.Remediation = (*fakeRemediation)(nil)

func TestSlackInteractions_Signature(t *testing.T) {
	t.Parallel()
	const secret = incident.Secret("signing-secret")
	rem := &fakeRemediation{}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	srv := httptest.NewServer(webhook.NewServer(slog.New(slog.DiscardHandler), nil, webhook.Options{
		Remediation: rem, SlackSigningSecret: func() incident.Secret { return secret }, Now: func() time.Time { return now },
	}))
	defer srv.Close()
	payload := `{"type":"block_actions","user":{"id":"U1"},"actions":[{"action_id":"remediation_approve","value":"7"}]}`
	body := "payload=" + url.QueryEscape(payload)
	send := func(ts int64, sig string) int {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/slack/interactions", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
		req.Header.Set("X-Slack-Signature", sig)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	ts := now.Unix()
	for name, tc := range map[string]struct {
		ts  int64
		sig string
	}{
		"forged":        {ts, webhook.SignSlackRequest("other-secret", ts, []byte(body))},
		"stale":         {ts - 301, webhook.SignSlackRequest(secret, ts-301, []byte(body))},
		"future":        {ts + 301, webhook.SignSlackRequest(secret, ts+301, []byte(body))},
		"missing":       {ts, ""},
		"other body":    {ts, webhook.SignSlackRequest(secret, ts, []byte(body+"x"))},
		"not hex":       {ts, "v0=zz"},
		"wrong version": {ts, strings.Replace(webhook.SignSlackRequest(secret, ts, []byte(body)), "v0=", "v1=", 1)},
	} {
		require.Equal(t, http.StatusUnauthorized, send(tc.ts, tc.sig), name)
	}
	rem.mu.Lock()
	require.Empty(t, rem.decisions, "nothing is decided on a bad signature")
	rem.mu.Unlock()

	require.Equal(t, http.StatusOK, send(ts-200, webhook.SignSlackRequest(secret, ts-200, []byte(body))))
	rem.mu.Lock()
	require.Equal(t, []string{"7 U1 true"}, rem.decisions)
	rem.mu.Unlock()

	t.Run("no secret configured", func(t *testing.T) {
		t.Parallel()
		require.False(t, webhook.VerifySlackSignature("", http.Header{}, nil, now))
	})
}
