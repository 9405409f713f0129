package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder/responder/internal/config"
	"github.com/responder/responder/internal/store"
)

const (
	// pruneFirst is when the first pass runs after start: off the start-up
	// path, soon enough to be seen working.
	pruneFirst = time.Minute
	// pruneInterval is the time between passes.
	pruneInterval = 10 * time.Minute
	// pruneBatch bounds what one transaction removes of each kind, so that
	// the writer is never held for long: 100 incidents of 10 alerts took
	// 11 ms (median) on SQLite, 500 took 77 ms, a stall webhook commits
	// would wait out. pruneYield is the pause between two transactions of a
	// pass.
	pruneBatch = 100
	pruneYield = 100 * time.Millisecond
)

// pruner removes, every pruneInterval, what storage.retention no longer
// keeps (store.Prune). With retention 0 it does nothing.
type pruner struct {
	logger *slog.Logger
	db     *store.Store
	cfg    func() *config.Config
	now    func() time.Time
	batch  int

	pruned *prometheus.CounterVec
	failed prometheus.Counter
}

func newPruner(logger *slog.Logger, db *store.Store, cfg func() *config.Config, reg prometheus.Registerer) *pruner {
	p := &pruner{
		logger: logger.With("component", "retention"), db: db, cfg: cfg, now: time.Now, batch: pruneBatch,
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_storage_pruned_total",
			Help: "Records removed by storage.retention, by kind: incidents (each with everything recorded for it), notifications (duplicates of no incident), jobs (finished), deployments, storms.",
		}, []string{"kind"}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "responder_storage_prune_failures_total",
			Help: "Retention passes that stopped on a storage error; the next pass carries on.",
		}),
	}
	for _, k := range []string{"incidents", "notifications", "jobs", "deployments", "storms"} {
		p.pruned.WithLabelValues(k)
	}
	reg.MustRegister(p.pruned, p.failed)
	return p
}

// run prunes every pruneInterval until ctx ends.
func (p *pruner) run(ctx context.Context) error {
	t := time.NewTimer(pruneFirst)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		p.pass(ctx)
		t.Reset(pruneInterval)
	}
}

// pass prunes what ended before now minus the retention in force, a batch
// per transaction, until a batch finds less than a full batch of each kind.
func (p *pruner) pass(ctx context.Context) {
	retention := time.Duration(p.cfg().Storage.Retention)
	if retention <= 0 {
		return
	}
	cutoff := p.now().Add(-retention)
	var total store.Pruned
	for {
		got, err := p.db.Prune(ctx, cutoff, p.batch)
		if err != nil {
			if ctx.Err() == nil {
				p.failed.Inc()
				p.logger.WarnContext(ctx, "pruning stopped on a storage error; the next pass carries on", "err", err)
			}
			break
		}
		if got.Busy {
			// Another replica is pruning the same database.
			p.logger.DebugContext(ctx, "another replica is pruning; this pass stops")
			break
		}
		for kind, n := range map[string]int64{"incidents": got.Incidents, "notifications": got.Notifications, "jobs": got.Jobs, "deployments": got.Deployments, "storms": got.Storms} {
			p.pruned.WithLabelValues(kind).Add(float64(n))
		}
		total = total.Plus(got)
		if max(got.Incidents, got.Notifications, got.Jobs, got.Deployments, got.Storms) < int64(p.batch) {
			break
		}
		// Let the writer loop and the job handlers in between.
		select {
		case <-ctx.Done():
			return
		case <-time.After(pruneYield):
		}
	}
	if total.Total() > 0 {
		p.logger.InfoContext(ctx, "pruned what ended before the retention", "before", cutoff.UTC().Format(time.RFC3339),
			"incidents", total.Incidents, "notifications", total.Notifications, "jobs", total.Jobs, "deployments", total.Deployments, "storms", total.Storms)
	}
}
