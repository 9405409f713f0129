// Package app wires responder's components together and runs them: it is the
// only package that knows the concrete types.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/responder/responder/internal/config"
	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/routing"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/webhook"
)

// shutdownTimeout bounds how long in-flight HTTP requests may take to finish
// once shutdown starts. Queued work is not waited for: it is durable and
// resumes on the next start.
const shutdownTimeout = 5 * time.Second

// Options configure an App.
type Options struct {
	// ConfigFile is the YAML configuration; empty means the embedded default.
	ConfigFile string
	// ListenAddress is host:port; port 0 picks a free port (see Addr).
	ListenAddress string
	Logger        *slog.Logger
	// Registry receives every metric; nil creates a fresh one.
	Registry *prometheus.Registry
	// Owner names this replica's workers in job leases; defaults to
	// hostname/pid.
	Owner string
	// ReloadSignals delivers SIGHUP: each value received while Run runs
	// reloads the configuration, like POST /-/reload. The caller registers
	// it with signal.Notify before New, so that a SIGHUP during a slow start
	// neither kills the process nor gets lost: one that arrives before Run
	// waits in the channel's buffer and is served as Run starts. Nil: only
	// POST /-/reload reloads.
	ReloadSignals <-chan os.Signal
}

// App is one running responder.
type App struct {
	opts     Options
	logger   *slog.Logger
	cfg      atomic.Pointer[config.Config]
	db       *storage
	pipeline *incident.Pipeline
	// queueMetrics count the attempts of every pipeline's jobs.
	queueMetrics *incident.PipelineMetrics
	ln           net.Listener
	srv          *http.Server
	ready        atomic.Bool
	reloadMu     sync.Mutex
	reloads      *reloadMetrics
	console      *console
	notifier     *notifier
	// reconciler compares incidents with Alertmanager's alerts.
	reconciler *reconciler
	// pruner applies storage.retention.
	pruner *pruner
	// remediator runs runbooks on remPipeline, its own workers.
	remediator  *remediator
	remPipeline *incident.Pipeline
	// contexter gathers and posts incident context on ctxPipeline.
	contexter   *contexter
	ctxPipeline *incident.Pipeline
}

// New loads the configuration, opens and migrates storage and binds the
// listener. Nothing runs until Run.
func New(ctx context.Context, opts Options) (*App, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Owner == "" {
		host, _ := os.Hostname()
		opts.Owner = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	cfg, err := loadConfig(opts.ConfigFile)
	if err != nil {
		return nil, err
	}
	if err := checkExposure(opts.ListenAddress, cfg); err != nil {
		return nil, err
	}
	a := &App{opts: opts, logger: opts.Logger}
	a.cfg.Store(cfg)

	reg := opts.Registry
	reg.MustRegister(
		versioncollector.NewCollector("responder"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	// A configuration that cannot start leaves the database as it was: a
	// newer responder migrates it, and the older one it is rolled back to
	// then refuses it.
	if err := checkStart(cfg); err != nil {
		return nil, err
	}
	// So does an address that is taken (another responder still running,
	// perhaps the older version on this very database): try it now. It is
	// bound for good only once storage is open, so that until then a probe
	// or Alertmanager is refused at once rather than left waiting.
	if err := checkListen(ctx, opts.ListenAddress); err != nil {
		return nil, err
	}
	// Storage first: nothing is accepted before it is open and migrated.
	q := cfg.Storage.Queue
	db, err := openStorage(ctx, cfg.Storage.DSN, store.Options{
		Logger: opts.Logger, MaxAttempts: q.MaxAttempts, MinBackoff: q.MinBackoff, MaxBackoff: q.MaxBackoff, ApplyPoll: q.PollInterval,
	})
	if err != nil {
		return nil, err
	}
	a.db = db
	reg.MustRegister(newQueueCollector(db.Store), newPausedCollector(db.Store))
	a.reloads = newReloadMetrics(reg)
	if db.walBytes != nil {
		reg.MustRegister(newWALGauge(db.walBytes, opts.Logger))
	}

	// The remediation and context pipelines count their jobs here too.
	a.queueMetrics = incident.NewPipelineMetrics(reg)
	a.pipeline = incident.NewPipeline(opts.Logger.With("component", "queue"), db, incident.PipelineOptions{
		Owner: opts.Owner, Workers: q.Workers, MinBackoff: q.MinBackoff, MaxBackoff: q.MaxBackoff,
		Lease: q.Lease, PollInterval: q.PollInterval, Metrics: a.queueMetrics, StorageFailed: db.failed,
	})
	a.console = newConsole(opts.Logger, reg)
	// Every incident change queues a route job, committed with the change;
	// route jobs queue the deliver jobs.
	a.notifier = newNotifier(opts.Logger, db.Store, a.console, q.Lease, reg)
	if err := a.notifier.apply(cfg); err != nil {
		_ = db.Close() // the configuration error is the one to report
		return nil, err
	}
	a.pipeline.Register(incident.JobRoute, incident.HandlerFunc(a.notifier.route))
	a.pipeline.Register(incident.JobDeliver, incident.HandlerFunc(a.notifier.deliver))
	a.pipeline.Register(incident.JobStorm, incident.HandlerFunc(a.notifier.storm))
	a.pipeline.Register(incident.JobReroute, incident.HandlerFunc(a.notifier.reroute))
	a.reconciler = newReconciler(opts.Logger, db.Store, a.Config, reg)
	a.pruner = newPruner(opts.Logger, db.Store, a.Config, reg)
	a.pipeline.Register(jobReconciled, incident.HandlerFunc(a.reconciler.record))
	if err := a.setupRemediation(cfg, db.Store, reg, q.PollInterval); err != nil {
		_ = db.Close() // the configuration error is the one to report
		return nil, err
	}
	if err := a.setupContext(cfg, db.Store, q.PollInterval); err != nil {
		_ = db.Close() // the configuration error is the one to report
		return nil, err
	}
	db.SetHooks(a.wake, func(id int64, ap incident.Applied) { a.console.print(context.Background(), id, ap) },
		incident.JobRoute, incident.JobRemediate, incident.JobGather)
	db.SetFollowUpFilter(a.followUp)
	// A notification from which Alertmanager left alerts out may not
	// resolve an incident while reconciliation can settle it.
	db.SetHoldTruncated(func() bool {
		c := a.Config()
		return c.Reconcile.Enabled && c.Global.AlertmanagerURL != ""
	})
	// A 200 waits only for its notification's commit; the writer loop
	// applies it right after, in a commit that needs no fsync of its own.
	// Applying in the acknowledging commit made requests wait for other
	// requests' incident updates (p99 at 1,000 new notifications/s: about
	// 60 ms inline against 25 ms deferred, docs/benchmarks.md).
	db.SetDeferApply(true)

	handler := webhook.NewServer(opts.Logger, db, webhook.Options{
		Config:             func() webhook.Config { return a.cfg.Load().Webhook },
		Incidents:          db,
		Ready:              a.readiness,
		Reload:             func(context.Context) error { return a.Reload() },
		Metrics:            promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
		Registerer:         reg,
		Deployments:        db,
		Remediation:        a.remediator,
		SlackSigningSecret: func() incident.Secret { return a.cfg.Load().Global.SlackSigningSecret },
	})
	a.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	ln, err := listen(ctx, opts.ListenAddress)
	if err != nil {
		_ = db.Close() // the listen error is the one to report
		return nil, err
	}
	a.ln = ln
	return a, nil
}

// listen binds addr. An address in use says what to do about it: the
// system's own "bind: address already in use" does not.
func listen(ctx context.Context, addr string) (net.Listener, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("listen on %s: another process listens there (another responder?): stop it, or choose another --web.listen-address: %w", addr, err)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// checkListen binds addr and lets it go, so that an address New could not
// listen on stops the start before storage is opened.
func checkListen(ctx context.Context, addr string) error {
	ln, err := listen(ctx, addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// checkStart builds, without storage, what New builds after opening it and
// may refuse: the router, the runbooks and their Kubernetes client, the
// context sources (a kubeconfig or http_config that cannot be used). The
// errors are New's.
func checkStart(cfg *config.Config) error {
	if _, err := routing.NewRouter(cfg.Route, cfg.TimeIntervals); err != nil {
		return fmt.Errorf("build router: %w", err)
	}
	if _, err := CheckRemediation(cfg); err != nil {
		return err
	}
	c := &contexter{logger: slog.New(slog.DiscardHandler), now: time.Now}
	_, err := c.build(cfg)
	return err
}

// followUp decides which follow-up jobs an applied change queues, so that
// incidents that need no context or remediation cost no jobs: context is
// gathered once, when the incident opens (later changes would find it
// cached); remediation is considered for incidents whose labels opt in, and
// on resolve, to cancel the runs of those that did.
func (a *App) followUp(kind string, ap incident.Applied) bool {
	switch kind {
	case incident.JobGather:
		return ap.Transition == incident.TransitionOpened
	case incident.JobRemediate:
		// Also with remediation disabled: the refusal is audited.
		rc := a.Config().Remediation
		return labelSet(&ap.Incident)[rc.OptInLabel] == rc.OptInValue
	}
	return true
}

// Addr is the address the HTTP server listens on.
func (a *App) Addr() string { return a.ln.Addr().String() }

// Config returns the configuration in force.
func (a *App) Config() *config.Config { return a.cfg.Load() }

// Run serves until ctx is cancelled or a component fails, then shuts down:
// stop accepting requests and let in-flight ones finish (bounded by
// shutdownTimeout), then stop the workers and the committer, then close
// storage. Unfinished jobs stay in storage and resume on the next start.
func (a *App) Run(ctx context.Context) error {
	// Close errors at exit have no one to act on them; the data is committed.
	defer func() { _ = a.db.Close() }()
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()

	var g run.Group
	// Context and reload requests: the actor that ends the group when asked
	// to stop. The command owns SIGHUP (it must take it before storage
	// opens, or a SIGHUP during a slow start kills the process); requests
	// that came while New ran wait in the channel, coalesced by its buffer.
	{
		ctx, cancel := context.WithCancel(ctx)
		reload := func() {
			if err := a.Reload(); err != nil {
				a.logger.ErrorContext(ctx, "reload on SIGHUP failed; the previous configuration stays in force", "err", err)
			}
		}
		g.Add(func() error {
			select {
			case <-a.opts.ReloadSignals:
				// The file may have changed while storage opened.
				a.logger.InfoContext(ctx, "reloading: SIGHUP arrived during startup")
				reload()
			default:
			}
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-a.opts.ReloadSignals:
					reload()
				}
			}
		}, func(error) { cancel() })
	}
	// HTTP. Its interrupt blocks until in-flight requests have finished;
	// oklog/run calls interrupts in the order actors were added, so the
	// committer below is still running while those requests wait for their
	// commits.
	g.Add(func() error {
		a.ready.Store(true)
		a.logger.InfoContext(ctx, "listening", "address", a.Addr(), "config", a.configName())
		if err := a.srv.Serve(a.ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	}, func(error) {
		a.ready.Store(false)
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := a.srv.Shutdown(sctx); err != nil {
			a.logger.WarnContext(ctx, "http shutdown did not finish in time; remaining requests were cut off", "err", err)
			_ = a.srv.Close() // best effort: cut off what Shutdown could not drain
		}
	})
	// Committer (and WAL checkpointer), then the workers.
	g.Add(func() error { return a.db.Run(workCtx) }, func(error) { stopWork() })
	g.Add(func() error { return a.pipeline.Run(workCtx) }, func(error) { stopWork() })
	g.Add(func() error { return a.reconciler.run(workCtx) }, func(error) { stopWork() })
	g.Add(func() error { return a.pruner.run(workCtx) }, func(error) { stopWork() })
	g.Add(func() error { return a.remPipeline.Run(workCtx) }, func(error) { stopWork() })
	g.Add(func() error { return a.ctxPipeline.Run(workCtx) }, func(error) { stopWork() })
	err := g.Run()
	a.logger.InfoContext(ctx, "stopped")
	return err
}

func (a *App) readiness(ctx context.Context) error {
	if !a.ready.Load() {
		return errors.New("not serving")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := a.db.Ping(ctx); err != nil {
		if errors.Is(err, store.ErrCannotCommit) {
			return errors.New("storage cannot commit (the log says why)")
		}
		return errors.New("storage does not answer")
	}
	return nil
}

// Reload re-reads the configuration file. An invalid file is rejected and
// the configuration in force stays; responder_config_last_reload_successful
// says which happened.
func (a *App) Reload() error {
	err := a.reload()
	a.reloads.observe(err)
	return err
}

func (a *App) reload() error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	cur := a.cfg.Load()
	next, err := loadConfig(a.opts.ConfigFile)
	if err != nil {
		return err
	}
	if err := checkExposure(a.opts.ListenAddress, next); err != nil {
		return err
	}
	// The router and notifiers first: if they cannot be built, the old
	// configuration stays whole.
	rem, err := a.remediator.build(next)
	if err != nil {
		return err
	}
	gatherer, err := a.contexter.build(next)
	if err != nil {
		return err
	}
	if err := a.notifier.apply(next); err != nil {
		return err
	}
	a.remediator.install(rem)
	a.contexter.cur.Store(gatherer)
	if next.Storage.DSN != cur.Storage.DSN {
		a.logger.Warn("storage.dsn changed; it takes effect only after a restart")
	}
	a.cfg.Store(next)
	a.logger.Info("configuration reloaded", "config", a.configName())
	return nil
}

func (a *App) configName() string {
	if a.opts.ConfigFile == "" {
		return "embedded default"
	}
	return a.opts.ConfigFile
}

// loadConfig loads the file, or the embedded default when there is none.
func loadConfig(file string) (*config.Config, error) {
	if file == "" {
		return config.Default(), nil
	}
	// LoadFile's errors already name the file.
	return config.LoadFile(file)
}

// checkExposure refuses a listener beyond loopback without webhook
// authentication: anyone who can reach it could inject alerts.
func checkExposure(addr string, cfg *config.Config) error {
	if cfg.Webhook.Enabled() {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("web.listen-address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("refusing to listen on %q without webhook authentication: configure webhook.authorization or webhook.basic_auth, or listen on 127.0.0.1", addr)
}
