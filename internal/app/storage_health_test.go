package app_test

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A full disk leaves reads working while every commit fails: the storage
// gauge and readiness say so (before, responder_storage_up stayed 1, so
// ResponderStorageDown never fired, and /-/ready said "storage does not
// answer"), and both recover by themselves once space returns.
func TestApp_StorageUpFollowsCommits(t *testing.T) {
	t.Parallel()
	a, _ := startApp(t, tokenConfig)
	ctx := t.Context()
	base := "http://" + a.Addr()
	require.Equal(t, "1", scrape(t, base, "responder_storage_up"))

	payload, err := os.ReadFile("../../testdata/am_v4_firing.json")
	require.NoError(t, err)
	send := func(i int) int {
		body := strings.Replace(string(payload), `"groupKey": "`, fmt.Sprintf(`"groupKey": "full%d`, i), 1)
		require.NotEqual(t, string(payload), body, "the payload's groupKey is rewritten")
		code, _ := post(t, base+"/webhook/alertmanager", "first-token", body)
		return code
	}
	require.Equal(t, http.StatusOK, send(0))

	w := a.WriterDBForTest()
	var pages int
	require.NoError(t, w.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages))
	_, err = w.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages))
	require.NoError(t, err)
	refused := false
	for i := 1; i < 200 && !refused; i++ {
		code := send(i)
		require.Contains(t, []int{http.StatusOK, http.StatusServiceUnavailable}, code)
		refused = code == http.StatusServiceUnavailable
	}
	require.True(t, refused, "the database is full")

	require.Equal(t, "0", scrape(t, base, "responder_storage_up"), "reads work, commits do not")
	scrape(t, base, "responder_notifications_pending") // the queue gauges stay: reads work
	code, body := get(t, base+"/-/ready")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "storage cannot commit")

	// Space returns: the next scrape's probe write succeeds, with no
	// webhook or readiness probe in between.
	_, err = w.ExecContext(ctx, "PRAGMA max_page_count = 1073741823")
	require.NoError(t, err)
	require.Equal(t, "1", scrape(t, base, "responder_storage_up"))
	code, body = get(t, base+"/-/ready")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, http.StatusOK, send(1000))
}
