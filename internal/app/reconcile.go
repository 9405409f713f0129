package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder/responder/internal/config"
	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/reconcile"
	"github.com/responder/responder/internal/store"
)

// jobReconciled records the "reconciled" decision of a notification that
// reconciliation synthesised, once it is applied. Its RefID is the
// notification, its Args the reason.
const jobReconciled = "reconciled"

// decisionReconcile is the kind of the decisions reconciliation records.
const decisionReconcile = "reconcile"

// reconciler runs reconciliation rounds with Alertmanager and feeds their
// fixes through the ordinary ingest path, so that they are deduplicated
// against the webhooks that may still arrive.
type reconciler struct {
	logger *slog.Logger
	db     *store.Store
	cfg    func() *config.Config
	now    func() time.Time

	rounds *prometheus.CounterVec
	fixes  *prometheus.CounterVec

	// cur is the reconciler of the configuration it was built for.
	cur    *reconcile.Reconciler
	curKey string
}

func newReconciler(logger *slog.Logger, db *store.Store, cfg func() *config.Config, reg prometheus.Registerer) *reconciler {
	r := &reconciler{
		logger: logger.With("component", "reconcile"), db: db, cfg: cfg, now: time.Now,
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_reconcile_rounds_total",
			Help: "Reconciliation rounds with Alertmanager by result (ok, error).",
		}, []string{"result"}),
		fixes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_reconcile_fixes_total",
			Help: "Notifications synthesised by reconciliation, by kind: opened (a webhook never arrived), resolved (a resolve never arrived) or released (an incident kept open by a truncated notification, settled).",
		}, []string{"kind"}),
	}
	for _, l := range []string{"ok", "error"} {
		r.rounds.WithLabelValues(l)
	}
	for _, l := range []string{"opened", "resolved", "released"} {
		r.fixes.WithLabelValues(l)
	}
	reg.MustRegister(r.rounds, r.fixes)
	return r
}

// run reconciles every interval of the configuration in force until ctx
// ends. Without global.alertmanager_url, or with reconcile.enabled false,
// it only waits for a reload that turns it on.
func (r *reconciler) run(ctx context.Context) error {
	for {
		cfg := r.cfg()
		wait := cfg.Reconcile.Interval
		if rec := r.current(cfg); rec != nil {
			r.round(ctx, rec)
		} else {
			r.unhold(ctx, cfg)
			wait = time.Minute
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// current returns the reconciler for cfg, built anew when the settings it
// depends on changed, or nil when reconciliation is off.
func (r *reconciler) current(cfg *config.Config) *reconcile.Reconciler {
	rc, amURL := cfg.Reconcile, cfg.Global.AlertmanagerURL
	if !rc.Enabled || amURL == "" {
		r.cur, r.curKey = nil, ""
		return nil
	}
	key := fmt.Sprintf("%s\x00%s\x00%v", amURL, rc.Grace, rc.Receivers)
	if r.cur != nil && r.curKey == key {
		return r.cur
	}
	client, err := reconcile.NewClient(amURL, &http.Client{Timeout: 10 * time.Second})
	if err != nil {
		r.logger.Error("reconciliation is off", "err", err)
		return nil
	}
	r.cur, r.curKey = reconcile.New(rc, client, amURL, r.db, r.logger), key
	return r.cur
}

func (r *reconciler) round(ctx context.Context, rec *reconcile.Reconciler) {
	now := r.now()
	fixes, err := rec.Round(ctx, now)
	if err != nil {
		r.rounds.WithLabelValues("error").Inc()
		r.logger.WarnContext(ctx, "reconciliation with alertmanager failed; it is tried again next interval", "err", err)
		return
	}
	r.rounds.WithLabelValues("ok").Inc()
	for _, f := range fixes {
		if err := r.apply(ctx, f, now); err != nil {
			r.logger.WarnContext(ctx, "storing a reconciliation fix failed; it is tried again next interval", "group_key", f.Message.GroupKey, "err", err)
		}
	}
}

// unhold releases the incidents held while reconciliation was on (it was
// turned off by a reload, or before a restart): nothing else would settle
// them until their group's next notification, which for a group that has
// resolved never comes.
func (r *reconciler) unhold(ctx context.Context, cfg *config.Config) {
	incs, err := r.db.HeldIncidents(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.logger.WarnContext(ctx, "reading held incidents failed; tried again in a minute", "err", err)
		}
		return
	}
	now := r.now()
	for _, f := range reconcile.Unhold(incs, now, cfg.Global.AlertmanagerURL) {
		if err := r.apply(ctx, f, now); err != nil {
			r.logger.WarnContext(ctx, "releasing a held incident failed; tried again in a minute", "group_key", f.Message.GroupKey, "err", err)
		}
	}
}

// apply stores a fix as a notification, as if Alertmanager had sent it, and
// queues the job that records why once it is applied.
func (r *reconciler) apply(ctx context.Context, f reconcile.Fix, now time.Time) error {
	f.Message.Normalize()
	raw, err := json.Marshal(f.Message)
	if err != nil {
		return fmt.Errorf("encode notification: %w", err)
	}
	d := incident.Delivery{Message: f.Message, Raw: raw, ReceivedAt: now}
	if f.Release {
		// Its alert states are the ones storage has: by them alone it
		// would be a duplicate of the truncated notification that held the
		// incident, and never applied.
		sum := sha256.Sum256([]byte(f.Message.StateHash() + "\x00release\x00" + now.UTC().Format(time.RFC3339Nano)))
		d.StateHash = hex.EncodeToString(sum[:])
	}
	rec, err := r.db.Accept(ctx, d)
	if err != nil {
		return err
	}
	if rec.Duplicate {
		return nil // the webhook arrived meanwhile
	}
	kind := "opened"
	switch {
	case f.Release:
		kind = "released"
	case hasResolved(f.Message):
		kind = "resolved"
	}
	r.fixes.WithLabelValues(kind).Inc()
	r.logger.InfoContext(ctx, "reconciled", "group_key", f.Message.GroupKey, "reason", f.Reason, "notification_id", rec.NotificationID)
	return r.db.Enqueue(ctx, jobReconciled, rec.NotificationID, 0, []byte(f.Reason))
}

func hasResolved(m *incident.Message) bool {
	for _, a := range m.Alerts {
		if a.Status == incident.StatusResolved {
			return true
		}
	}
	return false
}

// record handles a reconciled job: it records the decision on the incident
// the notification was applied to.
func (r *reconciler) record(ctx context.Context, j incident.Job) error {
	id, err := r.db.NotificationIncident(ctx, j.RefID)
	switch {
	case incident.KindOf(err) == incident.NotFound:
		return nil // applied as a duplicate after all: nothing was reconciled
	case err != nil:
		return err
	case id == 0:
		return incident.Busy(fmt.Errorf("notification %d is not applied yet", j.RefID), time.Second)
	}
	return r.db.AddDecision(ctx, id, incident.Decision{Kind: decisionReconcile, Summary: string(j.Args), At: r.now()})
}
