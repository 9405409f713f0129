package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/app"
)

// TestApp_GracefulShutdown cancels the app while requests are in flight:
// every request answered 200 must be stored, and its work must resume and
// finish after a restart on the same database.
func TestApp_GracefulShutdown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "responder.yml")
	require.NoError(t, os.WriteFile(file, []byte("storage:\n  dsn: sqlite://"+dir+"/r.db\n"), 0o600))
	tmpl, err := os.ReadFile("../../testdata/am_v4_firing.json")
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, app.Options{ConfigFile: file, ListenAddress: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	url := "http://" + a.Addr() + "/webhook/alertmanager"

	var (
		acked   sync.Map // group key → notification id
		sent    atomic.Int64
		wg      sync.WaitGroup
		stopped = make(chan struct{})
	)
	client := &http.Client{Timeout: 10 * time.Second}
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stopped:
					return
				default:
				}
				gk := fmt.Sprintf("shutdown-%d-%d", w, i)
				body := strings.Replace(string(tmpl), `{}/{severity=\"critical\"}:{alertname=\"CheckoutLatencyHigh\"}`, gk, 1)
				sent.Add(1)
				// The test's context, not the app's: requests in flight at
				// shutdown must not be cancelled by the client side.
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
				if err != nil {
					continue
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					continue // refused after shutdown: Alertmanager would retry
				}
				var r struct {
					NotificationID int64 `json:"notification_id"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&r)
				_ = resp.Body.Close() // the decoded id and the status are all that count
				if resp.StatusCode == http.StatusOK {
					acked.Store(gk, r.NotificationID)
				}
			}
		})
	}
	require.Eventually(t, func() bool { return sent.Load() > 40 }, 30*time.Second, 5*time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown took longer than 10s")
	}
	close(stopped)
	wg.Wait()
	ackedN := 0
	acked.Range(func(any, any) bool { ackedN++; return true })
	require.Positive(t, ackedN)

	// Restart on the same database: every acknowledged notification is there
	// and its incident gets opened (the queued work resumes).
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	b, err := app.New(ctx2, app.Options{ConfigFile: file, ListenAddress: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	done2 := make(chan error, 1)
	go func() { done2 <- b.Run(ctx2) }()
	defer func() { cancel2(); <-done2 }()
	require.Eventually(t, func() bool {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+b.Addr()+"/api/v1/incidents?limit=1000", nil)
		if err != nil {
			return false
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer func() { _ = resp.Body.Close() }()
		var list struct {
			Incidents []struct {
				GroupKey string `json:"group_key"`
			} `json:"incidents"`
		}
		if json.NewDecoder(resp.Body).Decode(&list) != nil {
			return false
		}
		have := map[string]bool{}
		for _, inc := range list.Incidents {
			have[inc.GroupKey] = true
		}
		missing := 0
		acked.Range(func(k, _ any) bool {
			if !have[k.(string)] {
				missing++
			}
			return true
		})
		return missing == 0
	}, 20*time.Second, 50*time.Millisecond, "every acknowledged notification becomes an incident after restart")
	t.Logf("sent %d, acknowledged %d before shutdown", sent.Load(), ackedN)
}
