package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/testenv"
)

// mainEnv makes the test binary run responder's command line instead of the
// tests, so that tests can start it as a process of its own and send it
// signals.
const mainEnv = "RESPONDER_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(testenv.WithPostgres(m).Run())
}

// processWait bounds every wait for the subprocess.
const processWait = 10 * time.Second

// serveProcess is `responder serve` running in a subprocess.
type serveProcess struct {
	cmd  *exec.Cmd
	log  *testenv.LogBuffer
	done chan struct{}
}

// startServe runs `responder serve` on cfgFile in a subprocess (the test
// binary itself, see TestMain), killed when the test ends.
func startServe(t *testing.T, cfgFile string) *serveProcess {
	t.Helper()
	p := &serveProcess{log: &testenv.LogBuffer{}, done: make(chan struct{})}
	//nolint:gosec,noctx // the test binary itself; the test signals and kills it at moments it chooses
	p.cmd = exec.Command(os.Args[0], "serve", "--config.file="+cfgFile, "--web.listen-address=127.0.0.1:0")
	p.cmd.Env = append(os.Environ(), mainEnv+"=1")
	p.cmd.Stdout = io.Discard
	p.cmd.Stderr = p.log
	require.NoError(t, p.cmd.Start())
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("responder log:\n%s", p.log.String())
		}
	})
	return p
}

func (p *serveProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process.
func (p *serveProcess) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig))
}

// wait waits for the process to exit and returns how it ended.
func (p *serveProcess) wait(t *testing.T) *os.ProcessState {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState
	case <-time.After(processWait):
		t.Fatalf("responder did not exit within %s", processWait)
		return nil
	}
}

// waitConnected waits until the process has connected to g: it is then
// opening storage.
func (p *serveProcess) waitConnected(t *testing.T, g *gate) {
	t.Helper()
	select {
	case <-g.accepted:
	case <-p.done:
		t.Fatalf("responder exited before connecting to storage: %v", p.cmd.ProcessState)
	case <-time.After(processWait):
		t.Fatalf("responder did not connect to storage within %s", processWait)
	}
}

// gate listens on loopback for PostgreSQL connections and holds each one,
// unanswered, until release; then it relays them to backend. With no
// backend it never answers: a PostgreSQL that accepts and hangs.
type gate struct {
	ln       net.Listener
	accepted chan struct{} // closed at the first connection
	released chan struct{}
	release  func()
}

func newGate(t *testing.T, backend string) *gate {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	g := &gate{ln: ln, accepted: make(chan struct{}), released: make(chan struct{})}
	g.release = sync.OnceFunc(func() { close(g.released) })
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	track := func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		conns = append(conns, c)
	}
	first := sync.OnceFunc(func() { close(g.accepted) })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c)
			first()
			wg.Go(func() { g.relay(c, backend, track) })
		}
	})
	t.Cleanup(func() {
		g.release()
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return g
}

// relay holds c until the gate opens, then copies between c and backend.
func (g *gate) relay(c net.Conn, backend string, track func(net.Conn)) {
	<-g.released
	if backend == "" {
		return // silent: c stays open, unanswered, until cleanup
	}
	b, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", backend)
	if err != nil {
		_ = c.Close()
		return
	}
	track(b)
	go func() {
		_, _ = io.Copy(b, c)
		_ = b.Close()
	}()
	_, _ = io.Copy(c, b)
	_ = c.Close()
}

// writeConfig writes a configuration whose storage is the PostgreSQL dsn.
func writeConfig(t *testing.T, path, dsn string) {
	t.Helper()
	cfg := fmt.Sprintf("storage:\n  dsn: %s\nroute:\n  receiver: console\nreceivers:\n  - name: console\n", dsn)
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
}

// TestServe_SignalsDuringStartup: while storage is slow to open (a
// PostgreSQL that accepts and never answers), SIGHUP does not kill the
// process, and SIGTERM or SIGINT stop it at once, cleanly.
func TestServe_SignalsDuringStartup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		signals []syscall.Signal // sent in order; the process must survive all but the last
	}{
		{"SIGHUP is not fatal", []syscall.Signal{syscall.SIGHUP, syscall.SIGHUP, syscall.SIGTERM}},
		{"SIGTERM stops", []syscall.Signal{syscall.SIGTERM}},
		{"SIGINT stops", []syscall.Signal{syscall.SIGINT}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := newGate(t, "")
			cfgFile := filepath.Join(t.TempDir(), "responder.yml")
			writeConfig(t, cfgFile, "postgres://responder:s3cret@"+g.ln.Addr().String()+"/responder?sslmode=disable")
			p := startServe(t, cfgFile)
			// Once it connects, the process is opening storage.
			p.waitConnected(t, g)

			last := len(tt.signals) - 1
			for _, sig := range tt.signals[:last] {
				p.signal(t, sig)
				require.Never(t, p.exited, 500*time.Millisecond, 20*time.Millisecond, "%v during startup ended the process", sig)
			}
			sent := time.Now()
			p.signal(t, tt.signals[last])
			st := p.wait(t)
			require.Less(t, time.Since(sent), 3*time.Second, "stops promptly")
			require.Equal(t, 0, st.ExitCode(), "a requested stop is clean: %v", st)
			require.Contains(t, p.log.String(), "stopped during startup")
			require.NotContains(t, p.log.String(), "level=ERROR")
			require.NotContains(t, p.log.String(), "s3cret")
		})
	}
}

// TestServe_ReloadQueuedDuringStartup: a SIGHUP that arrives while storage
// opens is served once the service runs, so that a configuration changed
// during the start takes effect.
func TestServe_ReloadQueuedDuringStartup(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(testenv.StartPostgres(t))
	require.NoError(t, err)
	g := newGate(t, u.Host)
	u.Host = g.ln.Addr().String()
	q := u.Query()
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	cfgFile := filepath.Join(t.TempDir(), "responder.yml")
	writeConfig(t, cfgFile, u.String())
	p := startServe(t, cfgFile)
	p.waitConnected(t, g)

	// The config changes and a reloader sends SIGHUP, all during the start.
	writeConfig(t, cfgFile, u.String()+"&application_name=reloaded")
	p.signal(t, syscall.SIGHUP)
	require.Never(t, p.exited, 500*time.Millisecond, 20*time.Millisecond, "SIGHUP during startup ended the process")
	require.NotContains(t, p.log.String(), "configuration reloaded", "nothing reloads before the app runs")

	g.release()
	require.Eventually(t, func() bool {
		l := p.log.String()
		return strings.Contains(l, `msg=listening`) && strings.Contains(l, "reloading: SIGHUP arrived during startup") &&
			strings.Contains(l, `msg="configuration reloaded"`)
	}, processWait, 20*time.Millisecond, "the queued SIGHUP reloads once the app runs")
	// The changed DSN came in with the reload: it is read only at start.
	require.Contains(t, p.log.String(), "storage.dsn changed; it takes effect only after a restart")

	p.signal(t, syscall.SIGTERM)
	st := p.wait(t)
	require.Equal(t, 0, st.ExitCode(), "%v", st)
	require.NotContains(t, p.log.String(), "level=ERROR")
}
