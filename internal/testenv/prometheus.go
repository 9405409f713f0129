package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// PrometheusEnv names the environment variable that overrides the
// Prometheus binary.
const PrometheusEnv = "RESPONDER_TEST_PROMETHEUS"

// PrometheusNames are the names looked up on PATH.
var PrometheusNames = []string{"prometheus"}

// Prometheus is a real Prometheus process serving on loopback for the
// duration of one test.
type Prometheus struct {
	url  string
	log  *processLog
	done chan struct{}
	err  error
}

// StartPrometheus starts Prometheus with configYAML as its configuration
// (scrape configs pointing at the test's own exporters, say), its TSDB in a
// temporary directory and a free port on 127.0.0.1. It returns once
// /-/ready answers 200. The process is killed when the test ends, and its
// log is written to the test log if the test failed.
func StartPrometheus(t testing.TB, configYAML string) *Prometheus {
	t.Helper()
	bin := Binary(t, PrometheusEnv, PrometheusNames...)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(configYAML), 0o600); err != nil {
		t.Fatalf("write prometheus config: %v", err)
	}
	// Prometheus logs the configured address, not the bound one, so the
	// port is picked here; a clash makes it exit, which is reported.
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	p := &Prometheus{url: "http://" + addr, log: newProcessLog(regexp.MustCompile(`(Server is ready to receive web requests)`)), done: make(chan struct{})}
	cmd := exec.Command(bin, //nolint:gosec,noctx // G204: the binary is the test runner's own setting; the cleanup kills it.
		"--config.file="+cfgFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=debug",
	)
	cmd.Dir = dir
	cmd.Stdout = p.log
	cmd.Stderr = p.log
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
			t.Logf("prometheus log (%s):\n%s", bin, p.log.String())
		}
	})
	p.waitReady(t)
	return p
}

func (p *Prometheus) waitReady(t testing.TB) {
	t.Helper()
	timeout := time.NewTimer(StartTimeout)
	defer timeout.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/-/ready", nil)
		if err != nil {
			cancel()
			t.Fatalf("prometheus ready request: %v", err)
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
			t.Fatalf("prometheus exited before it was ready: %v", p.err)
		case <-timeout.C:
			t.Fatalf("prometheus at %s not ready within %s; last answer: %s", p.url, StartTimeout, last)
		}
	}
}

// URL is Prometheus' base URL, http://127.0.0.1:PORT, without a trailing
// slash.
func (p *Prometheus) URL() string { return p.url }

// Log returns everything the process has written so far.
func (p *Prometheus) Log() string { return p.log.String() }
