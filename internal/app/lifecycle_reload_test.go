package app_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/app"
)

// TestApp_ReloadSignals: a SIGHUP that reaches Options.ReloadSignals before
// Run (during the start) reloads as Run starts; later ones reload while it
// runs.
func TestApp_ReloadSignals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "responder.yml")
	write := func(token string) {
		text := strings.ReplaceAll(strings.ReplaceAll(tokenConfig, "first-token", token), "$DIR", dir)
		require.NoError(t, os.WriteFile(file, []byte(text), 0o600))
	}
	write("first-token")
	hup := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, app.Options{ConfigFile: file, ListenAddress: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler), ReloadSignals: hup})
	require.NoError(t, err)

	// The file changes and SIGHUP comes while the app is still starting.
	write("second-token")
	hup <- syscall.SIGHUP
	runApp(t, ctx, cancel, a)
	payload, err := os.ReadFile("../../testdata/am_v4_firing.json")
	require.NoError(t, err)
	accepts := func(token string) func() bool {
		return func() bool {
			code, _ := post(t, "http://"+a.Addr()+"/webhook/alertmanager", token, string(payload))
			return code == http.StatusOK
		}
	}
	require.Eventually(t, accepts("second-token"), 5*time.Second, 20*time.Millisecond, "the SIGHUP queued during the start reloaded")

	write("third-token")
	hup <- syscall.SIGHUP
	require.Eventually(t, accepts("third-token"), 5*time.Second, 20*time.Millisecond, "a SIGHUP while running reloads")
}
