package app

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/routing/pagerduty"
	"github.com/responder/responder/internal/store"
)

// console writes the one readable line per incident state change that
// responder always prints, whatever else is configured.
type console struct {
	logger      *slog.Logger
	transitions *prometheus.CounterVec
}

func newConsole(logger *slog.Logger, r prometheus.Registerer) *console {
	c := &console{
		logger: logger.With("component", "console"),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_incident_transitions_total",
			Help: "Applied notifications by what they did to their incident (opened, updated, resolved, duplicate).",
		}, []string{"transition"}),
	}
	for _, t := range []incident.Transition{incident.TransitionOpened, incident.TransitionUpdated, incident.TransitionResolved, incident.TransitionDuplicate} {
		c.transitions.WithLabelValues(string(t))
	}
	r.MustRegister(c.transitions)
	return c
}

// print logs an applied notification. Duplicates are counted, and logged
// only at debug level: they are Alertmanager doing its job.
func (c *console) print(ctx context.Context, notificationID int64, ap incident.Applied) {
	c.transitions.WithLabelValues(string(ap.Transition)).Inc()
	inc := ap.Incident
	if ap.Transition == incident.TransitionDuplicate {
		c.logger.DebugContext(ctx, "notification carried no new alert states", "notification_id", notificationID, "incident_id", inc.ID)
		return
	}
	attrs := []any{
		"incident_id", inc.ID,
		"alertname", inc.CommonLabels["alertname"],
		"severity", inc.CommonLabels["severity"],
		"firing", inc.FiringAlerts,
		"resolved", inc.ResolvedAlerts,
		"new_firing", ap.NewFiring,
		"new_resolved", ap.NewResolved,
	}
	if ap.TruncatedAlerts > 0 {
		// Alertmanager left alerts out (max_alerts): the counts above
		// are of the alerts it sent, and a resolve may be early.
		attrs = append(attrs, "truncated_alerts", ap.TruncatedAlerts)
	}
	if s := inc.CommonAnnotations["summary"]; s != "" {
		attrs = append(attrs, "summary", oneLine(s, 200))
	}
	if inc.ResolvedAt != nil {
		attrs = append(attrs, "duration", inc.ResolvedAt.Sub(inc.OpenedAt).Round(time.Second))
	}
	attrs = append(attrs, "group_key", inc.GroupKey, "episode", inc.Episode)
	switch ap.Transition {
	case incident.TransitionOpened:
		c.logger.InfoContext(ctx, "incident opened", attrs...)
	case incident.TransitionResolved:
		c.logger.InfoContext(ctx, "incident resolved", attrs...)
	default:
		c.logger.InfoContext(ctx, "incident updated", attrs...)
	}
}

// oneLine keeps a log value on one line and bounded.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// queueCollector reports the work queue's depth from storage at scrape time.
type queueCollector struct {
	s             *store.Store
	jobs          *prometheus.Desc
	oldest        *prometheus.Desc
	pending       *prometheus.Desc
	oldestPending *prometheus.Desc
	up            *prometheus.Desc
}

func newQueueCollector(s *store.Store) *queueCollector {
	return &queueCollector{
		s:      s,
		jobs:   prometheus.NewDesc("responder_queue_jobs", "Jobs in the work queue by state (queued, running, parked).", []string{"state"}, nil),
		oldest: prometheus.NewDesc("responder_queue_oldest_due_seconds", "Age of the oldest job that is due and not yet started.", nil, nil),
		pending: prometheus.NewDesc("responder_notifications_pending",
			"Committed webhook notifications not yet applied to their incidents (the ingest backlog; one whose apply failed is a job in responder_queue_jobs instead).", nil, nil),
		oldestPending: prometheus.NewDesc("responder_notifications_oldest_pending_seconds",
			"Age of the oldest committed webhook notification not yet applied to its incident; 0 when none.", nil, nil),
		up: prometheus.NewDesc("responder_storage_up", "1 when storage answered this scrape's queue query and takes commits.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.jobs
	ch <- c.oldest
	ch <- c.pending
	ch <- c.oldestPending
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.s.Stats(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	// Reads may work while commits fail (a full disk, a read-only file
	// system): Ping then tries a write, so that the gauge comes back on its
	// own once space returns, with no webhook or readiness probe needed.
	up := 1.0
	if err := c.s.Ping(ctx); err != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	for _, state := range []string{incident.JobQueued, incident.JobRunning, incident.JobParked} {
		ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(st.ByState[state]), state)
	}
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, st.OldestDue.Seconds())
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(st.Pending))
	ch <- prometheus.MustNewConstMetric(c.oldestPending, prometheus.GaugeValue, st.OldestPending.Seconds())
}

// newWALGauge reports the size of SQLite's WAL file at scrape time.
func newWALGauge(size func() (int64, error), logger *slog.Logger) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "responder_sqlite_wal_bytes",
		Help: "Size of the SQLite WAL file. The checkpointer starts it over about every second; one that keeps growing means something holds a read snapshot open.",
	}, func() float64 {
		n, err := size()
		if err != nil {
			logger.Warn("cannot read the size of the SQLite WAL", "err", err)
			return 0
		}
		return float64(n)
	})
}

// routed logs an incident's routing decision, once per incident.
func (c *console) routed(ctx context.Context, incidentID int64, receivers []string, reason string) {
	names := strings.Join(receivers, ",")
	if names == "" {
		names = "none"
	}
	c.logger.InfoContext(ctx, "incident routed", "incident_id", incidentID, "receivers", names, "reason", reason)
}

// delivered logs what a deliver job sent.
func (c *console) delivered(ctx context.Context, d incident.Dispatch, action string) {
	attrs := []any{"incident_id", d.IncidentID, "receiver", d.Receiver}
	if d.Integration == incident.IntegrationSlack {
		attrs = append(attrs, "channel", d.Target, "channel_id", d.ChannelID, "ts", d.TS)
	} else {
		attrs = append(attrs, "dedup_key", d.Target)
	}
	switch action {
	case actionPosted:
		c.logger.InfoContext(ctx, "slack posted", attrs...)
	case actionUpdated:
		c.logger.InfoContext(ctx, "slack updated", attrs...)
	case actionTriggered:
		c.logger.InfoContext(ctx, "pagerduty triggered", attrs...)
	case actionResolved:
		c.logger.InfoContext(ctx, "pagerduty resolved", attrs...)
	}
}

// stormJoined logs that an incident joined a storm instead of getting a
// message of its own.
func (c *console) stormJoined(ctx context.Context, incidentID int64, j store.StormJoin, window time.Duration) {
	attrs := []any{"incident_id", incidentID, "storm_id", j.StormID, "channel", j.Target, "recent", j.Recent, "window", window}
	if j.Started {
		c.logger.InfoContext(ctx, "storm started", attrs...)
		return
	}
	c.logger.InfoContext(ctx, "incident joined storm", attrs...)
}

// stormEnded logs the end of a storm.
func (c *console) stormEnded(ctx context.Context, st *store.Storm) {
	c.logger.InfoContext(ctx, "storm ended", "storm_id", st.ID, "channel", st.Target, "incidents", st.IncidentCount)
}

// stormDigest logs the post of a storm's digest.
func (c *console) stormDigest(ctx context.Context, st *store.Storm) {
	c.logger.InfoContext(ctx, "slack storm digest posted", "storm_id", st.ID, "channel", st.Target, "channel_id", st.ChannelID, "ts", st.TS)
}

// stormPaged logs what PagerDuty was told about a storm.
func (c *console) stormPaged(ctx context.Context, st *store.Storm, action string) {
	attrs := []any{"storm_id", st.ID, "channel", st.Target, "dedup_key", stormDedupKey(st.Target, st.ID)}
	if action == pagerduty.ActionResolve {
		c.logger.InfoContext(ctx, "pagerduty storm resolved", attrs...)
		return
	}
	c.logger.InfoContext(ctx, "pagerduty storm triggered", attrs...)
}
