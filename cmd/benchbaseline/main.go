// Command benchbaseline is the yardstick of scripts/bench.sh: the cheapest
// reasonable Alertmanager webhook receiver. It is plain net/http plus
// encoding/json decoding into template.Data, with no storage, no
// authentication and no middleware, and it answers 200 once the body has
// decoded. Responder's durable ingest is measured against it in the same run.
//
// With --floor.storage-path it is the floor instead (see floor.go): the same
// server, committing each body durably before the 200, and nothing else.
//
// With --probe.fsync-dir it serves nothing: it measures the disk's fsync
// latency at a steady rate (see probe.go), prints it as JSON and exits.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/alertmanager/template"

	"github.com/responder/responder/internal/store/sqlite"
)

// maxBodySize matches responder's default webhook.max_body_size.
const maxBodySize = 4 << 20

// message is Alertmanager's v4 webhook body, as responder decodes it.
type message struct {
	*template.Data

	Version         string `json:"version"`
	GroupKey        string `json:"groupKey"`
	TruncatedAlerts uint64 `json:"truncatedAlerts"`
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("benchbaseline", flag.ContinueOnError)
	listen := fs.String("web.listen-address", "127.0.0.1:9097", "Address to listen on; port 0 picks a free port (logged).")
	floorPath := fs.String("floor.storage-path", "", "Run as the floor: commit each body to this SQLite file (created) before the 200.")
	probeDir := fs.String("probe.fsync-dir", "", "Serve nothing: write and fsync a small block in a temporary file in this directory, --probe.rate times a second for --probe.duration, print the latencies as JSON and exit.")
	probeRate := fs.Int("probe.rate", 1000, "Fsyncs per second of the fsync probe.")
	probeDuration := fs.Duration("probe.duration", 5*time.Second, "How long the fsync probe runs.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *probeDir != "" {
		res, err := probeFsync(ctx, *probeDir, *probeRate, *probeDuration)
		if err != nil {
			logger.Error("fsync probe failed", "err", err)
			return 1
		}
		if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
			logger.Error("cannot print the probe's result", "err", err)
			return 1
		}
		return 0
	}

	var handler http.Handler = http.HandlerFunc(handle)
	if *floorPath != "" {
		f, err := openFloor(ctx, *floorPath)
		if err != nil {
			logger.Error("cannot open the floor's database", "err", err)
			return 1
		}
		defer f.close()
		go f.run(ctx)
		go sqlite.Checkpoint(ctx, f.ckpt, f.file, logger, f.pause)
		handler = f
	}

	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", *listen)
	if err != nil {
		logger.Error("cannot listen", "err", err)
		return 1
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("listening", "address", ln.Addr().String())
	select {
	case err := <-errc:
		logger.Error("serve", "err", err)
		return 1
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Warn("shutdown cut requests off", "err", err)
	}
	return 0
}

// handle answers every path: POST bodies are decoded, anything else is
// healthy, so that the benchmark can poll any URL for readiness.
func handle(w http.ResponseWriter, r *http.Request) {
	body, ok := readPost(w, r)
	if !ok {
		return
	}
	var m message
	if err := json.Unmarshal(body, &m); err != nil {
		http.Error(w, "malformed JSON payload", http.StatusBadRequest)
		return
	}
	if m.Data == nil || len(m.Alerts) == 0 {
		http.Error(w, "alerts are required", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	// A failed write means the client went away; there is no one left to tell.
	_, _ = fmt.Fprintf(w, `{"status":"success","alerts":%d}`+"\n", len(m.Alerts))
}

// readPost reads a POST's body. Anything else is answered as healthy, and a
// body that cannot be read as a bad request: ok is then false.
func readPost(w http.ResponseWriter, r *http.Request) (body []byte, ok bool) {
	if r.Method != http.MethodPost {
		_, _ = io.WriteString(w, "Healthy.\n")
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodySize))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return nil, false
	}
	return body, true
}
