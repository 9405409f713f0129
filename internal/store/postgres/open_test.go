package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/testenv"
)

// silentServer listens on loopback, accepts connections and never answers
// them: a PostgreSQL that hangs (a wedged server, a proxy whose backend is
// gone). It returns the listener's host:port.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// TestOpen_SilentServer: against a server that accepts connections and
// never answers, opening says it waits, then fails at the deadline
// (connect_timeout, or the default) with an error that names the server and
// not the password.
func TestOpen_SilentServer(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-Pa55word"
	tests := []struct {
		name   string
		query  string
		bounds timeouts
		want   time.Duration
	}{
		{"the default bounds it", "", timeouts{connect: time.Second, waiting: 200 * time.Millisecond}, time.Second},
		{"connect_timeout bounds it", "&connect_timeout=1", timeouts{connect: time.Hour, waiting: 200 * time.Millisecond}, time.Second},
		{"connect_timeout=0 is the default, not forever", "&connect_timeout=0", timeouts{connect: time.Second, waiting: 200 * time.Millisecond}, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr := silentServer(t)
			var logs testenv.LogBuffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			dsn := fmt.Sprintf("postgres://responder:%s@%s/incidents?sslmode=prefer%s", secret, addr, tt.query)
			// The test's own bound: without the fix, Open waits forever.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()

			start := time.Now()
			db, err := open(ctx, dsn, store.Options{Logger: logger}, tt.bounds)
			took := time.Since(start)
			if db != nil {
				_ = db.Close()
			}
			require.Error(t, err)
			require.NoError(t, ctx.Err(), "open returned only when the test gave up: %v", err)
			require.GreaterOrEqual(t, took, tt.want)
			require.Less(t, took, tt.want+3*time.Second)
			require.ErrorIs(t, err, context.DeadlineExceeded, "a timeout")
			require.Contains(t, err.Error(), addr, "the error names the server")
			require.Contains(t, err.Error(), `"incidents"`, "the error names the database")
			require.Contains(t, err.Error(), "no answer within 1s")
			require.NotContains(t, err.Error(), secret)

			got := logs.String()
			require.Contains(t, got, `msg="waiting for storage" engine=postgres host=`+addr+" database=incidents")
			require.NotContains(t, got, secret)
		})
	}
}
