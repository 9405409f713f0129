package testenv

import (
	"fmt"
	"os"
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
	*process
	url string
}

// StartPrometheus starts Prometheus with configYAML as its configuration
// (scrape configs pointing at the test's own exporters, say), its TSDB in a
// temporary directory and a free port on 127.0.0.1. It returns once
// /-/ready answers 200. flags are added to its command line
// (--enable-feature=..., say). The process is killed when the test ends,
// and its log is written to the test log if the test failed.
func StartPrometheus(t testing.TB, configYAML string, flags ...string) *Prometheus {
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
	args := append([]string{
		"--config.file=" + cfgFile,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr,
		"--log.level=debug",
	}, flags...)
	p := &Prometheus{url: "http://" + addr, process: startProcess(t, "prometheus", bin, dir,
		newProcessLog(regexp.MustCompile(`(Server is ready to receive web requests)`)), args...)}
	timeout := time.NewTimer(StartTimeout)
	defer timeout.Stop()
	p.waitReady(t, p.url, timeout.C)
	return p
}

// URL is Prometheus' base URL, http://127.0.0.1:PORT, without a trailing
// slash.
func (p *Prometheus) URL() string { return p.url }
