// Package testenv starts the real servers that responder's tests talk to
// (Alertmanager for now) on loopback, and finds their binaries.
//
// A binary comes from an environment variable (RESPONDER_TEST_ALERTMANAGER,
// ...) or from PATH. When it is missing the test is skipped, except under
// CI=true, where a missing binary is a failure: CI runs `make test`, which
// installs them. Every helper also skips under `go test -short`.
//
// The package knows nothing of responder's internals, so any package's tests
// may import it.
package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"
)

// AlertmanagerEnv names the environment variable that overrides the
// Alertmanager binary.
const AlertmanagerEnv = "RESPONDER_TEST_ALERTMANAGER"

// AlertmanagerNames are the names looked up on PATH, Debian's first.
var AlertmanagerNames = []string{"prometheus-alertmanager", "alertmanager"}

// StartTimeout bounds how long a server may take to listen and become ready.
const StartTimeout = 30 * time.Second

// InCI reports whether the CI environment variable says the tests run in CI,
// where a missing binary is a failure rather than a skip.
func InCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// Binary returns the path of a binary the test needs: the file named by the
// environment variable envVar when it is set, otherwise the first of names
// found on PATH.
//
// Under `go test -short` the test is skipped. A missing binary skips the
// test, or fails it when CI=true ("run `make test`, which installs it"). An
// envVar that is set but does not name an executable file always fails the
// test: it is an explicit setting that is wrong, not a binary that is absent.
func Binary(t testing.TB, envVar string, names ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("skipping: needs a real %s binary, and -short is set", describe(envVar, names))
	}
	if p := os.Getenv(envVar); p != "" {
		if err := executable(p); err != nil {
			t.Fatalf("%s=%s: %v", envVar, p, err)
		}
		return p
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("%s not found on PATH and %s is not set", describe(envVar, names), envVar)
	if InCI() {
		t.Fatalf("%s; CI=true, so this is a failure: run `make test`, which installs it", msg)
	}
	t.Skipf("skipping: %s (run `make test` to install it, or set %s)", msg, envVar)
	return ""
}

// describe names a binary for messages.
func describe(envVar string, names []string) string {
	if len(names) == 0 {
		return envVar
	}
	return fmt.Sprintf("%q", names[0])
}

// executable checks that p is a regular file someone may execute.
func executable(p string) error {
	fi, err := os.Stat(p) //nolint:gosec // G703: the path is the test runner's own setting.
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not executable")
	}
	return nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. Prefer
// port 0 and reading the real address back wherever the server allows it:
// another process may take the port before the caller binds it.
func FreePort(t testing.TB) int {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	return port
}

// Alertmanager is a real Alertmanager process serving on loopback, without
// clustering, for the duration of one test.
type Alertmanager struct {
	*process
	url string
}

// listeningRE matches the line in which Alertmanager (0.25's go-kit log and
// the later slog format alike) reports its real listen address.
var listeningRE = regexp.MustCompile(`msg="Listening on" address=(\S+)`)

// StartAlertmanager starts Alertmanager with configYAML as its configuration,
// its storage in a temporary directory, listening on a port of its choice on
// 127.0.0.1 and with clustering disabled. It returns once /-/ready answers
// 200. The process is killed when the test ends, and its log is written to
// the test log if the test failed.
func StartAlertmanager(t testing.TB, configYAML string) *Alertmanager {
	t.Helper()
	bin := Binary(t, AlertmanagerEnv, AlertmanagerNames...)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgFile, []byte(configYAML), 0o600); err != nil {
		t.Fatalf("write alertmanager config: %v", err)
	}
	storage := filepath.Join(dir, "data")
	if err := os.Mkdir(storage, 0o700); err != nil {
		t.Fatalf("create alertmanager storage: %v", err)
	}

	am := &Alertmanager{process: startProcess(t, "alertmanager", bin, dir, newProcessLog(listeningRE),
		"--config.file="+cfgFile,
		"--storage.path="+storage,
		"--web.listen-address=127.0.0.1:0",
		"--cluster.listen-address=",
		"--log.level=debug",
	)}
	timeout := time.NewTimer(StartTimeout)
	defer timeout.Stop()
	select {
	case addr := <-am.log.match:
		am.url = "http://" + addr
	case <-am.done:
		t.Fatalf("alertmanager exited before listening: %v", am.err)
	case <-timeout.C:
		t.Fatalf("alertmanager did not log its listen address within %s", StartTimeout)
	}
	am.waitReady(t, am.url, timeout.C)
	return am
}

// URL is Alertmanager's base URL, http://127.0.0.1:PORT, without a trailing
// slash.
func (am *Alertmanager) URL() string { return am.url }

// PostableAlert is an alert as POST /api/v2/alerts accepts it. Zero times are
// left out: Alertmanager then sets startsAt to now and endsAt to now plus
// resolve_timeout. An endsAt in the past resolves the alert.
type PostableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// PostAlerts sends alerts to Alertmanager's POST /api/v2/alerts and fails the
// test unless it answers 200.
func (am *Alertmanager) PostAlerts(t testing.TB, alerts []PostableAlert) {
	t.Helper()
	body, err := json.Marshal(alerts)
	if err != nil {
		t.Fatalf("encode alerts: %v", err)
	}
	resp, err := am.do(t, http.MethodPost, "/api/v2/alerts", body)
	if err != nil {
		t.Fatalf("post alerts: %v", err)
	}
	if resp.status != http.StatusOK {
		t.Fatalf("post alerts: %s: %s", resp.statusText, resp.body)
	}
}

// GettableAlert is the part of an alert from GET /api/v2/alerts that tests
// look at.
type GettableAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Fingerprint string            `json:"fingerprint"`
	Status      struct {
		// State is "active", "suppressed" or "unprocessed".
		State string `json:"state"`
	} `json:"status"`
	Receivers []struct {
		Name string `json:"name"`
	} `json:"receivers"`
}

// Alerts returns Alertmanager's current alerts from GET /api/v2/alerts
// (active, silenced and inhibited alike; resolved alerts are not listed).
func (am *Alertmanager) Alerts(t testing.TB) []GettableAlert {
	t.Helper()
	resp, err := am.do(t, http.MethodGet, "/api/v2/alerts", nil)
	if err != nil {
		t.Fatalf("get alerts: %v", err)
	}
	if resp.status != http.StatusOK {
		t.Fatalf("get alerts: %s: %s", resp.statusText, resp.body)
	}
	var alerts []GettableAlert
	if err := json.Unmarshal(resp.body, &alerts); err != nil {
		t.Fatalf("decode alerts: %v: %s", err, resp.body)
	}
	return alerts
}

type response struct {
	status     int
	statusText string
	body       []byte
}

// do sends one JSON request to Alertmanager's API.
func (am *Alertmanager) do(t testing.TB, method, path string, body []byte) (response, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, am.url+path, r)
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, statusText: resp.Status, body: b}, nil
}

// processLog collects a process's output and reports the first line that
// matches a pattern (its first submatch) on match.
type processLog struct {
	re    *regexp.Regexp
	match chan string // buffered; receives at most one value

	mu      sync.Mutex
	buf     bytes.Buffer
	scanned int // bytes of buf already searched for complete lines
	found   bool
}

func newProcessLog(re *regexp.Regexp) *processLog {
	return &processLog{re: re, match: make(chan string, 1)}
}

// Write implements io.Writer. os/exec calls it from one goroutine per output
// stream; the mutex keeps stdout and stderr from interleaving mid-write.
func (l *processLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if l.found {
		return len(p), nil
	}
	for {
		rest := l.buf.Bytes()[l.scanned:]
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := rest[:i]
		l.scanned += i + 1
		if m := l.re.FindSubmatch(line); m != nil {
			l.found = true
			l.match <- string(m[1])
			return len(p), nil
		}
	}
}

// String returns the output so far.
func (l *processLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// process is a binary a test started: its log, and its exit once it has
// exited.
type process struct {
	name string
	log  *processLog
	done chan struct{} // closed when the process has exited
	err  error         // the process's exit status, set before done closes
}

// startProcess starts bin with args in dir, its output going to log. The
// process is killed when the test ends, and its log is written to the test
// log if the test failed.
func startProcess(t testing.TB, name, bin, dir string, log *processLog, args ...string) *process {
	t.Helper()
	p := &process{name: name, log: log, done: make(chan struct{})}
	// Not CommandContext: the test's context ends before its cleanups run,
	// and the cleanup below kills the process and collects its exit.
	cmd := exec.Command(bin, args...) //nolint:gosec,noctx // G204: the binary is the test runner's own setting.
	cmd.Dir = dir
	cmd.Stdout = log
	cmd.Stderr = log
	// Do not hang on output pipes held open by anything the process left
	// behind once it has been killed.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // fails only when it has already exited
		<-p.done
		if t.Failed() {
			t.Logf("%s log (%s):\n%s", name, bin, log.String())
		}
	})
	return p
}

// Log returns everything the process has written so far.
func (p *process) Log() string { return p.log.String() }

// waitReady polls baseURL's /-/ready until it answers 200, the process
// exits or timeout fires.
func (p *process) waitReady(t testing.TB, baseURL string, timeout <-chan time.Time) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/-/ready", nil)
		if err != nil {
			cancel()
			t.Fatalf("%s ready request: %v", p.name, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancel()
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		cancel()
		select {
		case <-tick.C:
		case <-p.done:
			t.Fatalf("%s exited before it was ready: %v", p.name, p.err)
		case <-timeout:
			t.Fatalf("%s at %s not ready within %s; last answer: %s", p.name, baseURL, StartTimeout, last)
		}
	}
}
