package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/webhook"
)

// send sends one request to srv and returns its status and decoded JSON
// body (nil when the body is not JSON).
func send(t *testing.T, srv *httptest.Server, method, path string, body []byte, set func(r *http.Request)) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, bytes.NewReader(body))
	require.NoError(t, err)
	if set != nil {
		set(req)
	}
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// crossSite makes r what a browser sends when a page of another site
// posts to responder: fetch(url, {method: "POST", mode: "no-cors", body})
// or an auto-submitted <form enctype="text/plain">, both simple requests
// that no CORS preflight stops.
func crossSite(r *http.Request) {
	r.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	r.Header.Set("Origin", "https://attacker.example")
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	r.Header.Set("Sec-Fetch-Mode", "no-cors")
}

// A page of any site can make the browser of someone on the host POST to
// responder: on loopback without authentication (the default), or with
// basic_auth credentials the browser remembers (the API answers 401 with
// WWW-Authenticate: Basic, so a browser prompts for them and keeps them).
// No endpoint is meant for a browser's POST: cross-origin browser requests
// that change something are refused, and nothing happens.
func TestCrossOriginBrowserRequestsRefused(t *testing.T) {
	t.Parallel()
	firing := fixture(t, "am_v4_firing.json")

	t.Run("webhook without authentication", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{cfg: openConfig})
		code, body := send(t, e.srv, http.MethodPost, hookPath, firing, crossSite)
		require.Equal(t, http.StatusForbidden, code, "body %v", body)
		require.Equal(t, "cross_origin", body["code"])
		counts, jobs := e.stored(t)
		require.Empty(t, counts, "a cross-site page injected a notification")
		require.Empty(t, jobs)
		require.Equal(t, map[string]float64{"cross_origin": 1}, e.rejected(t))

		// Firefox before Sec-Fetch-Site, or a plain http page: Origin only.
		code, _ = send(t, e.srv, http.MethodPost, hookPath, firing, func(r *http.Request) {
			r.Header.Set("Origin", "http://attacker.example")
		})
		require.Equal(t, http.StatusForbidden, code)

		// Alertmanager sends neither header.
		code, body = send(t, e.srv, http.MethodPost, hookPath, firing, func(r *http.Request) {
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("User-Agent", "Alertmanager/0.35.0")
		})
		require.Equal(t, http.StatusOK, code, "body %v", body)
	})

	t.Run("basic auth remembered by the browser", func(t *testing.T) {
		t.Parallel()
		rem := &fakeRemediation{}
		var reloads atomic.Int32
		srv := httptest.NewServer(webhook.NewServer(slog.New(slog.DiscardHandler), nil, webhook.Options{
			Config:      func() webhook.Config { return basicConfig },
			Remediation: rem,
			Reload:      func(context.Context) error { reloads.Add(1); return nil },
		}))
		defer srv.Close()
		withCreds := func(r *http.Request) { crossSite(r); r.SetBasicAuth(user, password) }
		for _, path := range []string{"/api/v1/remediation/resume", "/api/v1/remediation/pause"} {
			code, body := send(t, srv, http.MethodPost, path, nil, withCreds)
			require.Equal(t, http.StatusForbidden, code, "%s: body %v", path, body)
		}
		code, body := send(t, srv, http.MethodPost, "/-/reload", nil, crossSite)
		require.Equal(t, http.StatusForbidden, code, "body %v", body)
		rem.mu.Lock()
		require.Empty(t, rem.paused, "a cross-site page paused or resumed remediation")
		rem.mu.Unlock()
		require.Zero(t, reloads.Load(), "a cross-site page reloaded the configuration")

		// Reads stay open to the browser (the same-origin policy keeps
		// other sites from reading the answer), and so do the same
		// requests from curl or a CI job.
		code, _ = send(t, srv, http.MethodGet, "/-/healthy", nil, crossSite)
		require.Equal(t, http.StatusOK, code)
		code, body = send(t, srv, http.MethodPost, "/api/v1/remediation/resume", nil, func(r *http.Request) { r.SetBasicAuth(user, password) })
		require.Equal(t, http.StatusOK, code, "body %v", body)
		code, _ = send(t, srv, http.MethodPost, "/-/reload", nil, nil)
		require.Equal(t, http.StatusOK, code)
		// A browser on the same origin (a person who typed the URL).
		code, _ = send(t, srv, http.MethodPost, "/-/reload", nil, func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "same-origin") })
		require.Equal(t, http.StatusOK, code)
	})

	t.Run("slack interactions still verify", func(t *testing.T) {
		t.Parallel()
		rem := &fakeRemediation{}
		srv := httptest.NewServer(webhook.NewServer(slog.New(slog.DiscardHandler), nil, webhook.Options{
			Remediation: rem, SlackSigningSecret: func() incident.Secret { return "s" },
		}))
		defer srv.Close()
		code, _ := send(t, srv, http.MethodPost, "/slack/interactions", []byte("payload="+url.QueryEscape(`{}`)), nil)
		require.Equal(t, http.StatusUnauthorized, code)
	})
}

// Without authentication responder listens on loopback only, so that no
// one else can reach it. A page that rebinds its own name to 127.0.0.1
// (DNS rebinding) reaches it through the browser of someone on the host,
// as the same origin: it can read every incident and post alerts. Its
// requests carry its own name in Host, which no one who really addresses
// loopback sends: without authentication, only loopback Hosts are
// answered.
func TestDNSRebindingRefusedWithoutAuth(t *testing.T) {
	t.Parallel()
	firing := fixture(t, "am_v4_firing.json")
	e := newEnv(t, envOptions{cfg: openConfig})
	_, port, err := net.SplitHostPort(e.srv.Listener.Addr().String())
	require.NoError(t, err)
	rebound := func(r *http.Request) { r.Host = "rebind.attacker.example:" + port }

	code, body := send(t, e.srv, http.MethodGet, "/api/v1/incidents", nil, rebound)
	require.Equal(t, http.StatusForbidden, code, "a rebound name read the incidents: %v", body)
	require.Equal(t, "forbidden_host", body["code"])
	code, _ = send(t, e.srv, http.MethodPost, hookPath, firing, func(r *http.Request) {
		rebound(r)
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Origin", "http://rebind.attacker.example:"+port)
	})
	require.Equal(t, http.StatusForbidden, code)
	for _, path := range []string{"/metrics", "/debug/pprof/cmdline"} {
		code, _ = send(t, e.srv, http.MethodGet, path, nil, rebound)
		require.Equal(t, http.StatusForbidden, code, path)
	}
	counts, _ := e.stored(t)
	require.Empty(t, counts, "a rebound name injected a notification")
	// Slack's requests are left to their signature (a tunnel names itself).
	code, body = send(t, e.srv, http.MethodPost, "/slack/interactions", []byte("payload=%7B%7D"), rebound)
	require.Equal(t, http.StatusUnauthorized, code, "body %v", body)
	require.Equal(t, "bad_signature", body["code"])

	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LocalHost:" + port, "[::1]:" + port, "[::1]", "127.0.0.2", "localhost"} {
		code, body = send(t, e.srv, http.MethodGet, "/api/v1/incidents", nil, func(r *http.Request) { r.Host = host })
		require.Equal(t, http.StatusOK, code, "Host %s: %v", host, body)
	}
	code, body = send(t, e.srv, http.MethodPost, hookPath, firing, func(r *http.Request) { r.Host = "localhost:" + port })
	require.Equal(t, http.StatusOK, code, "body %v", body)

	// With authentication, the listener may be anywhere and be reached by
	// any name: the credentials decide.
	authed := newEnv(t, envOptions{cfg: bearerConfig})
	code, body = send(t, authed.srv, http.MethodGet, "/api/v1/incidents", nil, func(r *http.Request) {
		r.Host = "responder.example.com"
		bearer(token)(r)
	})
	require.Equal(t, http.StatusOK, code, "body %v", body)
}
