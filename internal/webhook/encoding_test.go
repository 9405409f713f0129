package webhook_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// Alertmanager never compresses its bodies: one in any Content-Encoding
// but identity is refused with 415 (a 4xx, so a misconfigured sender is
// not retried forever), naming the encoding, before it is read.
func TestWebhook_ContentEncoding(t *testing.T) {
	t.Parallel()
	firing := fixture(t, "am_v4_firing.json")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, err := zw.Write(firing)
	require.NoError(t, err)
	require.NoError(t, zw.Close())

	tests := []struct {
		name     string
		encoding []string
		body     []byte
		wantCode int
		wantName string
	}{
		{name: "gzip", encoding: []string{"gzip"}, body: gz.Bytes(), wantCode: 415, wantName: `"gzip"`},
		{name: "gzip, uncompressed body", encoding: []string{"gzip"}, body: firing, wantCode: 415, wantName: `"gzip"`},
		{name: "deflate", encoding: []string{"deflate"}, body: firing, wantCode: 415, wantName: `"deflate"`},
		{name: "br", encoding: []string{"br"}, body: firing, wantCode: 415, wantName: `"br"`},
		{name: "list with identity", encoding: []string{"identity, gzip"}, body: gz.Bytes(), wantCode: 415, wantName: `"gzip"`},
		{name: "second header", encoding: []string{"identity", "zstd"}, body: firing, wantCode: 415, wantName: `"zstd"`},
		{name: "identity", encoding: []string{"identity"}, body: firing, wantCode: 200},
		{name: "Identity", encoding: []string{"Identity"}, body: firing, wantCode: 200},
		{name: "empty", encoding: []string{""}, body: firing, wantCode: 200},
		{name: "none", body: firing, wantCode: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{cfg: bearerConfig})
			got := e.post(t, bytes.NewReader(tt.body), func(r *http.Request) {
				bearer(token)(r)
				for _, v := range tt.encoding {
					r.Header.Add("Content-Encoding", v)
				}
			})
			require.Equal(t, tt.wantCode, got.code, "body %v", got.body)
			counts, _ := e.stored(t)
			if tt.wantCode == http.StatusOK {
				total := 0
				for _, n := range counts {
					total += n
				}
				require.Equal(t, 1, total, "stored notifications: %v", counts)
				require.Empty(t, e.rejected(t))
				return
			}
			require.Equal(t, "error", got.body["status"])
			require.Equal(t, "unsupported_encoding", got.body["code"])
			require.Contains(t, got.body["error"], "Content-Encoding "+tt.wantName+" is not supported")
			require.Empty(t, counts, "a refused notification was stored")
			require.Equal(t, map[string]float64{"unsupported_encoding": 1}, e.rejected(t))
		})
	}
	t.Run("credentials first", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{cfg: bearerConfig})
		got := e.post(t, bytes.NewReader(gz.Bytes()), func(r *http.Request) { r.Header.Set("Content-Encoding", "gzip") })
		require.Equal(t, http.StatusUnauthorized, got.code, "body %v", got.body)
	})
	t.Run("long encoding is clipped", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{cfg: bearerConfig})
		long := fmt.Sprintf("x-%0500d", 7)
		got := e.post(t, bytes.NewReader(firing), func(r *http.Request) {
			bearer(token)(r)
			r.Header.Set("Content-Encoding", long)
		})
		require.Equal(t, http.StatusUnsupportedMediaType, got.code)
		require.Less(t, len(fmt.Sprint(got.body["error"])), 200)
	})
}
