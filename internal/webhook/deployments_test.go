package webhook_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/webhook"
)

type recordedDeployments struct {
	mu   sync.Mutex
	got  []incident.Deployment
	fail bool
}

func (r *recordedDeployments) RecordDeployment(_ context.Context, d incident.Deployment) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return 0, errors.New("disk full")
	}
	r.got = append(r.got, d)
	return int64(len(r.got)), nil
}

func TestRecordDeployment(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	rec := &recordedDeployments{}
	srv := httptest.NewServer(webhook.NewServer(slog.New(slog.DiscardHandler), nil, webhook.Options{
		Config:      func() webhook.Config { return bearerConfig },
		Deployments: rec,
		Now:         func() time.Time { return now },
	}))
	defer srv.Close()
	post := func(body, tok string) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/api/v1/deployments", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}

	full := `{"service":"checkout","environment":"prod","version":"1.4.2","commit":"9f1c2ab","author":"ci-bot","url":"https://ci.example/runs/42","deployed_at":"2026-03-02T09:55:00Z"}`
	code, body := post(full, "")
	require.Equal(t, http.StatusUnauthorized, code, body)
	code, body = post(full, "wrong")
	require.Equal(t, http.StatusUnauthorized, code, body)
	code, body = post(full, token)
	require.Equal(t, http.StatusCreated, code, body)
	require.JSONEq(t, `{"status":"success","id":1}`, body)
	require.Equal(t, incident.Deployment{
		Service: "checkout", Environment: "prod", Version: "1.4.2", Commit: "9f1c2ab", Author: "ci-bot", URL: "https://ci.example/runs/42",
		DeployedAt: time.Date(2026, 3, 2, 9, 55, 0, 0, time.UTC), Source: "api",
	}, rec.got[0])

	code, _ = post(`{"service":"cart"}`, token)
	require.Equal(t, http.StatusCreated, code)
	require.Equal(t, now, rec.got[1].DeployedAt, "no deployed_at means now")

	for name, bad := range map[string]string{ //nolint:gosec // G101: made-up bad inputs, no credentials.
		"no service":         `{"version":"1"}`,
		"malformed":          `{"service":`,
		"unknown field":      `{"service":"a","colour":"red"}`,
		"bad time":           `{"service":"a","deployed_at":"yesterday"}`,
		"future":             `{"service":"a","deployed_at":"2027-01-01T00:00:00Z"}`,
		"bad url":            `{"service":"a","url":"javascript:alert(1)"}`,
		"url credentials":    `{"service":"a","url":"https://u:p@ci.example/"}`,
		"multi-line":         `{"service":"a\nb"}`,
		"too long":           `{"service":"` + strings.Repeat("a", 600) + `"}`,
		"trailing document":  `{"service":"a"}{"service":"b"}`,
		"trailing bracket":   `{"service":"a"}]`,
		"not utf-8":          "{\"service\":\"\xff\"}",
		"before 1970":        `{"service":"a","deployed_at":"1441-03-02T10:00:00Z"}`,
		"terminal escape":    `{"service":"a","author":"\u001b[31mred"}`,
		"next line (C1)":     `{"service":"a","version":"1\u0085b"}`,
		"line separator":     `{"service":"a","commit":"1\u2028b"}`,
		"long unknown field": `{"service":"a","` + strings.Repeat("x", 10000) + `":1}`,
	} {
		code, body := post(bad, token)
		require.Equal(t, http.StatusBadRequest, code, "%s: %s", name, body)
		require.Less(t, len(body), 600, "%s: the 400 quotes too much of the body", name)
	}
	require.Len(t, rec.got, 2)

	// A compressed body is refused as such, not as malformed JSON.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/api/v1/deployments", strings.NewReader(full))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode, string(b))
	require.Contains(t, string(b), `"code":"unsupported_encoding"`)
	require.Len(t, rec.got, 2, "nothing recorded")

	code, _ = post(`{"service":"a","version":"v1\t(tab is text)"}`, token)
	require.Equal(t, http.StatusCreated, code, "a tab is allowed")
	require.Equal(t, "v1\t(tab is text)", rec.got[2].Version)

	rec.fail = true
	code, body = post(full, token)
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.NotContains(t, body, "disk full")
	require.Contains(t, body, `"code":"storage_unavailable"`, "the webhook's code, not service_unavailable")
}
