package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/testenv"
)

// conns tracks a test server's connections, so that all are closed, and
// its goroutines ended, when the test ends.
type conns struct {
	mu     sync.Mutex
	open   []net.Conn
	closed bool
	wg     sync.WaitGroup
}

// add tracks c; once the server is closed, it closes c instead and reports
// false.
func (cs *conns) add(c net.Conn) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		_ = c.Close()
		return false
	}
	cs.open = append(cs.open, c)
	return true
}

// serve accepts connections on ln until it is closed, and hands each to
// handle in a goroutine of its own.
func (cs *conns) serve(ln net.Listener, handle func(net.Conn)) {
	cs.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil || !cs.add(c) {
				return
			}
			cs.wg.Go(func() { handle(c) })
		}
	})
}

// close closes ln (nil when nothing listens yet) and every connection, and
// waits for the server's goroutines.
func (cs *conns) close(ln net.Listener) {
	if ln != nil {
		_ = ln.Close()
	}
	cs.mu.Lock()
	cs.closed = true
	for _, c := range cs.open {
		_ = c.Close()
	}
	cs.mu.Unlock()
	cs.wg.Wait()
}

// silentServer listens on loopback, accepts connections and never answers
// them: a PostgreSQL that hangs (a wedged server, a proxy whose backend is
// gone). It returns the listener's host:port.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var cs conns
	cs.serve(ln, func(net.Conn) {})
	t.Cleanup(func() { cs.close(ln) })
	return ln.Addr().String()
}

// lateServer returns a loopback host:port on which nothing listens (a
// connection is refused) until after has passed; from then on it forwards
// connections to target: a PostgreSQL that starts after responder does.
func lateServer(t *testing.T, target string, after time.Duration) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	var (
		cs   conns
		mu   sync.Mutex
		ln   net.Listener
		done bool
	)
	forward := func(c net.Conn) {
		b, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", target)
		if err != nil {
			_ = c.Close()
			return
		}
		if !cs.add(b) {
			return
		}
		cs.wg.Go(func() {
			_, _ = io.Copy(b, c)
			_ = b.Close()
		})
		_, _ = io.Copy(c, b)
		_ = c.Close()
	}
	timer := time.AfterFunc(after, func() {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		var err error
		if ln, err = (&net.ListenConfig{}).Listen(context.Background(), "tcp", addr); err != nil {
			t.Errorf("listen on %s: %v", addr, err)
			return
		}
		cs.serve(ln, forward)
	})
	t.Cleanup(func() {
		timer.Stop()
		mu.Lock()
		done = true
		mu.Unlock()
		cs.close(ln)
	})
	return addr
}

// waitingLines returns the times of the "waiting for storage" lines in a
// text log, and the lines.
func waitingLines(t *testing.T, log string) ([]time.Time, []string) {
	t.Helper()
	var times []time.Time
	var lines []string
	for line := range strings.Lines(log) {
		if !strings.Contains(line, `msg="waiting for storage"`) {
			continue
		}
		ts, _, ok := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		require.True(t, ok, line)
		at, err := time.Parse(time.RFC3339Nano, ts)
		require.NoError(t, err)
		times = append(times, at)
		lines = append(lines, line)
	}
	return times, lines
}

// boundCase is a case of a test of Open's bound: the DSN's query, Open's
// bounds, and when Open must give up.
type boundCase struct {
	name   string
	query  string
	bounds timeouts
	want   time.Duration
}

// TestOpen_SilentServer: against a server that accepts connections and
// never answers, opening says it waits, then fails at the deadline
// (connect_timeout, or the default) with an error that names the server and
// not the password.
func TestOpen_SilentServer(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-Pa55word"
	tests := []boundCase{
		{"the default bounds it", "", timeouts{connect: time.Second, waiting: 200 * time.Millisecond, remind: time.Hour}, time.Second},
		{"connect_timeout bounds it", "&connect_timeout=1", timeouts{connect: time.Hour, waiting: 200 * time.Millisecond, remind: time.Hour}, time.Second},
		{"connect_timeout=0 is the default, not forever", "&connect_timeout=0", timeouts{connect: time.Second, waiting: 200 * time.Millisecond, remind: time.Hour}, time.Second},
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

// TestOpen_WaitsForServer: a PostgreSQL that is not up yet when responder
// starts (the two started together: the port refuses connections for
// 1.5 s) is waited for, and Open succeeds soon after it comes up, having
// said that it waits and why.
func TestOpen_WaitsForServer(t *testing.T) {
	t.Parallel()
	const after = 1500 * time.Millisecond
	u, err := url.Parse(testenv.StartPostgres(t))
	require.NoError(t, err)
	u.Host = lateServer(t, u.Host, after)
	var logs testenv.LogBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))

	start := time.Now()
	db, err := open(t.Context(), u.String(), store.Options{Logger: logger},
		timeouts{connect: DefaultConnectTimeout, waiting: 300 * time.Millisecond, remind: remindEvery})
	took := time.Since(start)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	require.GreaterOrEqual(t, took, after)
	require.Less(t, took, after+retryMax+time.Second, "found within the backoff's cap once up")
	t.Logf("the server came up after %s; Open returned after %s", after, took)

	_, lines := waitingLines(t, logs.String())
	require.Len(t, lines, 1, "said once that it waits: %s", logs.String())
	require.Contains(t, lines[0], "engine=postgres host="+u.Host)
	require.Contains(t, lines[0], "connect: connection refused", "with the last attempt's error")
}

// TestOpen_NothingListening: a server that never comes up (every
// connection refused) is tried until the bound, then Open fails with the
// last attempt's error. Meanwhile the wait is logged after the first
// bound, then again no more often than the reminder's period, never per
// attempt, and never with the password.
func TestOpen_NothingListening(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-Pa55word"
	tests := []boundCase{
		{"the default bounds it", "", timeouts{connect: 2 * time.Second, waiting: 200 * time.Millisecond, remind: 700 * time.Millisecond}, 2 * time.Second},
		{"connect_timeout bounds it", "&connect_timeout=2", timeouts{connect: time.Hour, waiting: 200 * time.Millisecond, remind: 700 * time.Millisecond}, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			var logs testenv.LogBuffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			dsn := fmt.Sprintf("postgres://responder:%s@%s/incidents?sslmode=prefer%s", secret, addr, tt.query)

			start := time.Now()
			db, err := open(t.Context(), dsn, store.Options{Logger: logger}, tt.bounds)
			took := time.Since(start)
			if db != nil {
				_ = db.Close()
			}
			require.Error(t, err)
			require.GreaterOrEqual(t, took, tt.want)
			require.Less(t, took, tt.want+time.Second)
			require.Contains(t, err.Error(), "no connection within 2s (connect_timeout in the DSN sets this bound), last attempt: ")
			require.Contains(t, err.Error(), "connect: connection refused")
			require.Contains(t, err.Error(), addr, "the error names the server")
			require.Contains(t, err.Error(), `"incidents"`, "the error names the database")
			require.NotContains(t, err.Error(), secret)

			got := logs.String()
			require.NotContains(t, got, secret)
			times, lines := waitingLines(t, got)
			require.GreaterOrEqual(t, len(lines), 2, "reminded: %s", got)
			require.GreaterOrEqual(t, times[0].Sub(start), tt.bounds.waiting-10*time.Millisecond, "not before the first bound")
			for i := 1; i < len(times); i++ {
				require.GreaterOrEqual(t, times[i].Sub(times[i-1]), tt.bounds.remind-10*time.Millisecond, "not per attempt: %s", got)
			}
			for _, line := range lines {
				require.Contains(t, line, "engine=postgres host="+addr+" database=incidents")
				require.Contains(t, line, "connect: connection refused")
			}
		})
	}
}

// TestOpen_StopWhileWaiting: cancelling the start (SIGTERM) while Open
// waits for a server that is not up ends the wait at once, with the
// cancellation as the error.
func TestOpen_StopWhileWaiting(t *testing.T) {
	t.Parallel()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ctx, cancel := context.WithCancel(t.Context())
	stop := time.AfterFunc(600*time.Millisecond, cancel)
	defer stop.Stop()
	start := time.Now()
	db, err := open(ctx, "postgres://responder@"+addr+"/incidents", store.Options{},
		timeouts{connect: DefaultConnectTimeout, waiting: waitingAfter, remind: remindEvery})
	took := time.Since(start)
	if db != nil {
		_ = db.Close()
	}
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, took, 600*time.Millisecond+200*time.Millisecond, "ends at the cancellation, not at the next attempt")
}

// passwordRole creates a role that must give its password to connect to
// the test cluster (whose other roles are trusted: a rule for it alone is
// put first in pg_hba.conf), and returns its name and password. It edits
// the server's files, so it runs only on the throwaway cluster.
func passwordRole(t *testing.T, dsn string) (string, string) {
	t.Helper()
	if os.Getenv(testenv.PostgresDSNEnv) != "" {
		t.Skipf("skipping: the test edits pg_hba.conf, which it does only on its own throwaway cluster, not on %s's server", testenv.PostgresDSNEnv)
	}
	const password = "right-Pa55word"
	role := fmt.Sprintf("responder_pw_%d", os.Getpid())
	admin, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	defer func() { _ = admin.Close() }()
	ctx := t.Context()
	var hba string
	require.NoError(t, admin.QueryRowContext(ctx, "SHOW hba_file").Scan(&hba))
	old, err := os.ReadFile(hba) //nolint:gosec // G304: the test cluster's own file.
	require.NoError(t, err)
	rule := fmt.Sprintf("host all %s 127.0.0.1/32 scram-sha-256\n", role)
	require.NoError(t, os.WriteFile(hba, append([]byte(rule), old...), 0o600)) //nolint:gosec // G703: the test cluster's own file.
	t.Cleanup(func() {
		if err := os.WriteFile(hba, old, 0o600); err != nil { //nolint:gosec // G703: the test cluster's own file.
			t.Errorf("restore %s: %v", hba, err)
		}
	})
	_, err = admin.ExecContext(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", role, password))
	require.NoError(t, err)
	_, err = admin.ExecContext(ctx, "SELECT pg_reload_conf()")
	require.NoError(t, err)
	// The postmaster reloads the file on its own time.
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	u.User = url.UserPassword(role, "probe-wrong")
	require.Eventually(t, func() bool {
		c, err := pgconn.Connect(ctx, u.String())
		if err == nil {
			_ = c.Close(ctx)
			return false
		}
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "28P01"
	}, 10*time.Second, 20*time.Millisecond, "the password rule takes effect")
	return role, password
}

// TestOpen_FailsAtOnce: what waiting cannot mend fails the start at once,
// with the server's reason and without the password, on a real
// PostgreSQL: a wrong password, a role or a database that does not exist,
// TLS the server does not offer, a DSN that does not parse.
func TestOpen_FailsAtOnce(t *testing.T) {
	t.Parallel()
	const secret = "wrong-Pa55word"
	dsn := testenv.StartPostgres(t)
	role, password := passwordRole(t, dsn)
	at := func(user, password, database string) string {
		u, err := url.Parse(dsn)
		require.NoError(t, err)
		u.User = url.UserPassword(user, password)
		if database != "" {
			u.Path = "/" + database
		}
		return u.String()
	}
	c, err := pgconn.Connect(t.Context(), at(role, password, ""))
	require.NoError(t, err, "the role's own password works")
	require.NoError(t, c.Close(t.Context()))

	tests := []struct {
		name string
		dsn  string
		want string
	}{
		{"wrong password", at(role, secret, ""), "(SQLSTATE 28P01)"},
		{"no such role", at("nobody_here", secret, ""), "(SQLSTATE 28000)"},
		{"no such database", at(role, password, "no_such_database"), "(SQLSTATE 3D000)"},
		{"TLS refused (sslmode=require)", strings.Replace(at(role, password, ""), "sslmode=disable", "sslmode=require", 1), "server refused TLS connection"},
		{"the DSN does not parse", "postgres://nobody:" + secret + "@127.0.0.1:5432/db?sslmode=bogus", "the DSN does not parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs testenv.LogBuffer
			start := time.Now()
			// Open's own bounds: 30 s, which a wrong password must not wait.
			db, err := Open(t.Context(), tt.dsn, store.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			took := time.Since(start)
			if db != nil {
				_ = db.Close()
			}
			require.ErrorContains(t, err, tt.want)
			require.NotContains(t, err.Error(), "no connection within")
			require.NotContains(t, err.Error(), secret)
			require.Less(t, took, time.Second)
			require.Empty(t, logs.String())
			t.Logf("failed after %s: %v", took, err)
		})
	}
}

// TestNotUpYet: which failures to connect are waited out.
func TestNotUpYet(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	pgErr := func(code string) error { return &pgconn.PgError{Severity: "FATAL", Code: code} }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", fmt.Errorf("dial error: %w", refused), true},
		{"name does not resolve yet", &net.DNSError{Err: "no such host", Name: "db", IsNotFound: true}, true},
		{"closed during the handshake", fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF), true},
		{"starting up", pgErr("57P03"), true},
		{"too many connections", pgErr("53300"), true},
		{"wrong password", pgErr("28P01"), false},
		{"no such role", pgErr("28000"), false},
		{"no such database", pgErr("3D000"), false},
		{"no CONNECT privilege", pgErr("42501"), false},
		{"TLS refused, then starting up", errors.Join(errors.New("server refused TLS connection"), pgErr("57P03")), true},
		{"one server refused, the next a wrong password", errors.Join(refused, fmt.Errorf("server error: %w", pgErr("28P01"))), false},
		{"TLS refused (sslmode=require)", errors.New("server refused TLS connection"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, notUpYet(tt.err))
		})
	}
}
