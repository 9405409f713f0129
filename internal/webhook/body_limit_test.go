package webhook_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/alecthomas/units"
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/webhook"
)

// Each 413 names the limit that refused the body: webhook.max_body_size
// for the webhook, and the fixed limit of POST /api/v1/deployments, which
// that setting does not change.
func TestBodyLimit_Message(t *testing.T) {
	t.Parallel()
	cfg := bearerConfig
	cfg.MaxBodySize = 64 * units.KiB
	srv := httptest.NewServer(webhook.NewServer(slog.New(slog.DiscardHandler), nil, webhook.Options{
		Config:      func() webhook.Config { return cfg },
		Deployments: &recordedDeployments{},
	}))
	defer srv.Close()
	post := func(path string, body io.Reader) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+path, body)
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		bearer(token)(req)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}

	deployment := []byte(`{"service":"a","author":"` + strings.Repeat("x", 17<<10) + `"}`)
	for name, body := range map[string]io.Reader{"with Content-Length": bytes.NewReader(deployment), "chunked": chunked(deployment)} {
		code, got := post("/api/v1/deployments", body)
		require.Equal(t, http.StatusRequestEntityTooLarge, code, name)
		require.JSONEq(t, `{"status":"error","code":"too_large","error":"request body exceeds the fixed limit of a deployment request (16384 bytes)"}`, got, name)
	}

	hook := bytes.Repeat([]byte(" "), 65<<10)
	code, got := post(hookPath, bytes.NewReader(hook))
	require.Equal(t, http.StatusRequestEntityTooLarge, code)
	require.JSONEq(t, `{"status":"error","code":"too_large","error":"request body exceeds webhook.max_body_size (65536 bytes)"}`, got)
}
