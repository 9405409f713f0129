package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/stretchr/testify/require"
)

// TestFloor: a webhook body is committed, compressed, before the 200, also
// when many arrive at once; a body responder would refuse is refused and
// not stored.
func TestFloor(t *testing.T) {
	f, err := openFloor(t.Context(), filepath.Join(t.TempDir(), "floor.db"))
	require.NoError(t, err)
	t.Cleanup(f.close)
	go f.run(t.Context())

	body, err := os.ReadFile("../../testdata/am_v4_firing.json")
	require.NoError(t, err)
	post := func(b []byte) int {
		rec := httptest.NewRecorder()
		f.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/webhook/alertmanager", bytes.NewReader(b)))
		return rec.Code
	}
	const n = 50
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() { codes[i] = post(body) })
	}
	wg.Wait()
	for _, c := range codes {
		require.Equal(t, http.StatusOK, c)
	}
	require.Equal(t, http.StatusBadRequest, post([]byte(`{"version":"4","alerts":[`)))

	var count int
	var payload []byte
	require.NoError(t, f.w.QueryRowContext(t.Context(), `SELECT count(*), max(payload) FROM notifications`).Scan(&count, &payload))
	require.Equal(t, n, count)
	raw, err := s2.Decode(nil, payload)
	require.NoError(t, err)
	require.Equal(t, body, raw)
}
