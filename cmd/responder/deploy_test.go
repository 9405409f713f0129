package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDeployRecord(t *testing.T) {
	t.Parallel()
	var got map[string]string
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		if r.URL.Path != "/api/v1/deployments" || json.NewDecoder(r.Body).Decode(&got) != nil {
			http.Error(w, "unexpected request", http.StatusNotFound)
			return
		}
		if got["service"] == "refused" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"status":"error","error":"service is required"}`))
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"status":"success","id":7}`))
	}))
	defer srv.Close()
	tokFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokFile, []byte("s3cret\n"), 0o600))

	var stdout, stderr bytes.Buffer
	code := run([]string{
		"deploy", "record", "--url=" + srv.URL, "--service=checkout", "--environment=prod", "--version=1.4.2",
		"--commit=9f1c2ab", "--author=ci", "--link=https://ci.example/runs/42", "--deployed-at=2026-03-02T09:55:00Z",
		"--bearer-token-file=" + tokFile,
	}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	require.Equal(t, "recorded deployment 7 of checkout\n", stdout.String())
	require.Equal(t, "Bearer s3cret", auth)
	require.Equal(t, map[string]string{
		"service": "checkout", "environment": "prod", "version": "1.4.2", "commit": "9f1c2ab", "author": "ci",
		"url": "https://ci.example/runs/42", "deployed_at": "2026-03-02T09:55:00Z",
	}, got)

	stdout.Reset()
	stderr.Reset()
	code = run([]string{"deploy", "record", "--url=" + srv.URL, "--service=refused"}, &stdout, &stderr)
	require.Equal(t, 1, code)
	require.Contains(t, stderr.String(), "400 Bad Request")

	stderr.Reset()
	srv.Close()
	code = run([]string{"deploy", "record", "--url=http://ci:s3cret@" + srv.Listener.Addr().String() + "/?token=s3cret", "--service=x"}, &stdout, &stderr)
	require.Equal(t, 1, code)
	require.Contains(t, stderr.String(), "did not answer")
	require.NotContains(t, stderr.String(), "s3cret")

	// A password file without a user name was ignored: the request went
	// out unauthenticated. Two kinds of credentials are refused too.
	for _, args := range [][]string{
		{"--basic-auth.password-file=" + tokFile},
		{"--bearer-token=t", "--basic-auth.username=ci", "--basic-auth.password-file=" + tokFile},
	} {
		stderr.Reset()
		code = run(append([]string{"deploy", "record", "--url=http://127.0.0.1:1", "--service=x"}, args...), &stdout, &stderr)
		require.Equal(t, 2, code, "%v: %s", args, stderr.String())
		require.Contains(t, stderr.String(), "--basic-auth")
	}

	require.Equal(t, 2, run([]string{"deploy", "record", "--service=x"}, &stdout, &stderr), "--url is required")
}
