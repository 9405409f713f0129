// Command demo-shop is the tiny web shop behind `make demo`. It simulates
// checkout traffic and exposes, on /metrics, the business metrics that the
// example alert rules (examples/prometheus/rules) watch:
//
//   - payment_conversion_rate_percent{service} (gauge, 0-100; SLO 94%)
//   - http_requests_total{service,handler,code}
//   - transaction_duration_seconds{service} (histogram)
//   - payment_initiated_total{provider}, payment_webhook_received_total{provider}
//   - feature_usage_total{feature}
//
// Healthy, it converts about 97% of checkouts. On demand it degrades:
//
//	POST /degrade?minutes=N[&slow=true]   conversion drops to about 82% for N minutes
//	                                      (default 10); slow=true also makes
//	                                      transactions take over a second
//	POST /recover                         back to healthy now
//	GET  /                                the shop's state, as JSON
//
// It also plays a PagerDuty Events API v2 endpoint at /pagerduty/v2/enqueue,
// so that the demo can show a page being sent without a PagerDuty account:
// every event is accepted and logged, nothing leaves the machine.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses the flags and serves until SIGINT or SIGTERM; it returns the
// exit code.
func run(args []string, stdout, stderr io.Writer) int {
	a := kingpin.New("demo-shop", "A simulated web shop exposing business metrics, for responder's demo.")
	a.UsageWriter(stderr)
	a.ErrorWriter(stderr)
	a.Terminate(nil)
	listen := a.Flag("web.listen-address", "Address to listen on.").Default("127.0.0.1:8080").String()
	service := a.Flag("service", "The service label of the shop's series.").Default("checkout").String()
	rate := a.Flag("checkout.rate", "Mean checkouts per second.").Default("40").Float64()
	interval := a.Flag("tick", "How often the simulated traffic is advanced.").Default("1s").Duration()
	seed := a.Flag("seed", "Seed of the simulated traffic; 0 picks one from the clock.").Default("0").Uint64()
	if _, err := a.Parse(args); err != nil {
		fmt.Fprintf(stderr, "demo-shop: %v (see --help)\n", err)
		return 2
	}
	if *interval <= 0 {
		fmt.Fprintln(stderr, "demo-shop: --tick must be positive")
		return 2
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano()) //nolint:gosec // G115: any bits will do for a seed.
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	shop := New(reg, Options{Service: *service, Rate: *rate, Tick: *interval, Seed: *seed})

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "demo-shop: %v\n", err)
		return 1
	}
	srv := &http.Server{Handler: newHandler(logger, shop, reg, time.Now), ReadHeaderTimeout: 5 * time.Second}
	// The address on stdout lets a caller that listens on port 0 find it.
	fmt.Fprintf(stdout, "demo-shop listening on http://%s\n", ln.Addr())
	logger.Info("listening", "address", ln.Addr().String(), "service", *service)

	done := make(chan struct{})
	go func() {
		defer close(done)
		simulate(ctx, shop, *interval)
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	code := 0
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		logger.Error("server stopped", "err", err)
		code = 1
	}
	stop()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Warn("shutdown incomplete; connections were closed", "err", err)
	}
	<-done
	return code
}

// simulate advances the shop's traffic every interval until ctx ends. The
// first tick runs at once, so that the metrics have values by the first
// scrape.
func simulate(ctx context.Context, shop *Shop, interval time.Duration) {
	shop.Tick(time.Now(), interval)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			shop.Tick(now, interval)
		}
	}
}

// maxDegradeMinutes bounds POST /degrade?minutes=N.
const maxDegradeMinutes = 24 * 60

// newHandler returns the shop's HTTP handler.
func newHandler(logger *slog.Logger, shop *Shop, g prometheus.Gatherer, now func() time.Time) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "demo-shop is healthy")
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, shop.Status(now()))
	})
	mux.HandleFunc("POST /degrade", func(w http.ResponseWriter, r *http.Request) {
		minutes := 10
		if v := r.URL.Query().Get("minutes"); v != "" {
			m, err := strconv.Atoi(v)
			if err != nil || m < 1 || m > maxDegradeMinutes {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("minutes must be a whole number from 1 to %d", maxDegradeMinutes)})
				return
			}
			minutes = m
		}
		slow, _ := strconv.ParseBool(r.URL.Query().Get("slow"))
		shop.Degrade(now(), time.Duration(minutes)*time.Minute, slow)
		logger.InfoContext(r.Context(), "degraded", "minutes", minutes, "slow", slow)
		writeJSON(w, http.StatusOK, shop.Status(now()))
	})
	mux.HandleFunc("POST /recover", func(w http.ResponseWriter, r *http.Request) {
		shop.Recover()
		logger.InfoContext(r.Context(), "recovered")
		writeJSON(w, http.StatusOK, shop.Status(now()))
	})
	mux.HandleFunc("POST /pagerduty/v2/enqueue", handlePagerDuty(logger))
	return mux
}

// pagerDutyEvent is the part of a PagerDuty Events API v2 event the sink
// logs. The routing key is never logged.
type pagerDutyEvent struct {
	EventAction string `json:"event_action"`
	DedupKey    string `json:"dedup_key"`
	Payload     struct {
		Summary  string `json:"summary"`
		Severity string `json:"severity"`
		Source   string `json:"source"`
	} `json:"payload"`
}

// handlePagerDuty accepts PagerDuty Events API v2 events and logs them,
// answering as PagerDuty does.
func handlePagerDuty(logger *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var ev pagerDutyEvent
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&ev); err != nil || ev.EventAction == "" {
			writeJSON(w, http.StatusBadRequest, map[string]any{"status": "invalid event", "message": "Event object is invalid", "errors": []string{"malformed event"}})
			return
		}
		attrs := []any{"event_action", ev.EventAction, "dedup_key", ev.DedupKey}
		if ev.Payload.Summary != "" {
			attrs = append(attrs, "severity", ev.Payload.Severity, "summary", ev.Payload.Summary)
		}
		logger.InfoContext(r.Context(), "pagerduty sink received an event", attrs...)
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "success", "message": "Event processed", "dedup_key": ev.DedupKey})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}
