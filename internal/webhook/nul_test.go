package webhook_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/postgres"
	"github.com/responder/responder/internal/testenv"
	"github.com/responder/responder/internal/webhook"
)

// PostgreSQL refuses a NUL character in text: a notification whose
// identity (groupKey, receiver, an alert's fingerprint) holds one,
// as "\u0000" in the JSON, can never be committed. It is bad input, to be
// refused with a 400, not a 503 that Alertmanager retries for ever.
func TestWebhook_NULInIdentityIsBadInput(t *testing.T) {
	t.Parallel()
	dsn := testenv.StartPostgres(t)
	db, err := postgres.Open(t.Context(), dsn, store.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- db.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	srv := httptest.NewServer(webhook.NewServer(slog.New(slog.DiscardHandler), db, webhook.Options{
		Config: func() webhook.Config { return bearerConfig },
	}))
	defer srv.Close()

	for _, tc := range []struct {
		name string
		edit func(m map[string]any)
	}{
		// Committing fails: 503, retried for ever.
		{"groupKey", func(m map[string]any) { m["groupKey"] = "{}:{alertname=\"a\x00\"}" }},
		{"receiver", func(m map[string]any) { m["receiver"] = "web\x00hook" }},
		// Committed, then applying fails on every attempt: the incident
		// never opens, and Alertmanager was told all is well.
		{"fingerprint", func(m map[string]any) { alertAt(m, 0)["fingerprint"] = "ab\x00cd" }},
		{"externalURL", func(m map[string]any) { m["externalURL"] = "http://am.example/\x00" }},
		{"generatorURL", func(m map[string]any) { alertAt(m, 0)["generatorURL"] = "http://prom.example/\x00" }},
	} {
		body := edited(t, "am_v4_firing.json", tc.edit)
		require.Contains(t, string(body), `\u0000`, tc.name)
		code, got := send(t, srv, http.MethodPost, hookPath, body, bearer(token))
		require.Equal(t, http.StatusBadRequest, code, "%s: %v", tc.name, got)
		require.Equal(t, "nul_character", got["code"], tc.name)
	}
	counts, err := db.NotificationCounts(t.Context())
	require.NoError(t, err)
	require.Empty(t, counts, "a notification with a NUL was committed")
	// The same notification without the NUL is committed.
	code, got := send(t, srv, http.MethodPost, hookPath, bytes.Clone(fixture(t, "am_v4_firing.json")), bearer(token))
	require.Equal(t, http.StatusOK, code, "%v", got)
}
