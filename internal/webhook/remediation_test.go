package webhook_test

import (
	"context"
	"errors"
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
	"github.com/responder/responder/internal/testenv"
	"github.com/responder/responder/internal/webhook"
)

type fakeRemediation struct {
	mu        sync.Mutex
	decisions []string
	paused    []bool
	by        []string
	pauseErr  error
}

func (f *fakeRemediation) Pause(_ context.Context, paused bool, by string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pauseErr != nil {
		return "", f.pauseErr
	}
	f.paused = append(f.paused, paused)
	f.by = append(f.by, by)
	return by, nil
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

// A pause or resume may say who asks and why; that text is what is
// recorded (and shown in refused runs' reasons), checked like any input.
func TestPause_By(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, body string
		code       int
		by         string // recorded, when code is 200
	}{
		{"no body", "", http.StatusOK, "api"},
		{"who and why", `{"by": "alice", "comment": "deploy freeze until 18:00"}`, http.StatusOK, "alice (deploy freeze until 18:00)"},
		{"why only", `{"comment": "incident 42"}`, http.StatusOK, "api (incident 42)"},
		{"not JSON", "pause please", http.StatusBadRequest, ""},
		{"an unknown field", `{"user": "alice"}`, http.StatusBadRequest, ""},
		{"a control character", `{"by": "alice\u001b[31m"}`, http.StatusBadRequest, ""},
		{"too long", `{"comment": "` + strings.Repeat("x", 257) + `"}`, http.StatusBadRequest, ""},
		{"trailing data", `{"by": "a"} and more`, http.StatusBadRequest, ""},
		{"a right-to-left override", `{"by": "evil\u202egnp.exe"}`, http.StatusBadRequest, ""},
		{"a wrong type", `{"by": 123}`, http.StatusBadRequest, ""},
		{"too large", strings.Repeat(" ", 5<<10), http.StatusBadRequest, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rem := &fakeRemediation{}
			srv := httptest.NewServer(webhook.NewServer(slog.New(slog.DiscardHandler), nil, webhook.Options{Remediation: rem}))
			defer srv.Close()
			code, body := send(t, srv, http.MethodPost, "/api/v1/remediation/pause", []byte(tt.body), nil)
			require.Equal(t, tt.code, code, "body %v", body)
			rem.mu.Lock()
			defer rem.mu.Unlock()
			if tt.code != http.StatusOK {
				require.Equal(t, "bad_pause_request", body["code"])
				require.Empty(t, rem.paused, "nothing changed")
				return
			}
			require.Equal(t, []string{tt.by}, rem.by)
			require.Equal(t, tt.by, body["by"])
		})
	}
}

// A pause that storage did not commit is a 503 with the webhook's code, and
// the log names the driver's error, which the answer leaves out.
func TestPause_NotCommitted(t *testing.T) {
	t.Parallel()
	rem := &fakeRemediation{pauseErr: &incident.Error{Kind: incident.Internal, Msg: "set remediation pause", Err: errors.New("database or disk is full")}}
	var log testenv.LogBuffer
	srv := httptest.NewServer(webhook.NewServer(slog.New(slog.NewTextHandler(&log, nil)), nil, webhook.Options{Remediation: rem}))
	defer srv.Close()
	code, body := send(t, srv, http.MethodPost, "/api/v1/remediation/pause", nil, nil)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "storage_unavailable", body["code"])
	require.NotContains(t, body["error"], "full")
	require.Contains(t, log.String(), "database or disk is full")
}
