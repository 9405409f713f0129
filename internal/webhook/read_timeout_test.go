package webhook_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/webhook"
)

// A body that does not arrive within the server's read timeout (the app
// sets http.Server.ReadTimeout) was not malformed: the network was slow.
// Alertmanager is still listening, and it retries only 5xx, so a 400 would
// drop a valid notification for good.
func TestWebhook_BodyReadTimeoutIsRetried(t *testing.T) {
	t.Parallel()
	firing := fixture(t, "am_v4_firing.json")
	e := newEnv(t, envOptions{cfg: bearerConfig})
	// A second server over the same store, with a short read timeout.
	srv := httptest.NewUnstartedServer(webhook.NewServer(slog.New(slog.DiscardHandler), e.db, webhook.Options{
		Config: func() webhook.Config { return bearerConfig },
	}))
	srv.Config.ReadTimeout = 300 * time.Millisecond
	srv.Start()
	defer srv.Close()

	conn, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	// Headers and half the body; the rest is late.
	_, err = fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s",
		hookPath, srv.Listener.Addr(), token, len(firing), firing[:len(firing)/2])
	require.NoError(t, err)

	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var body map[string]any
	require.NoError(t, json.Unmarshal(raw, &body), "body %s", raw)
	require.GreaterOrEqual(t, resp.StatusCode, 500, "a body cut by the read timeout must be retried: %s", raw)
	require.Equal(t, "body_timeout", body["code"])
	counts, _ := e.stored(t)
	require.Empty(t, counts)
}
