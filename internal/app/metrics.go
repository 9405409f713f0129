package app

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/routing/pagerduty"
	"github.com/responder/responder/internal/routing/slack"
	"github.com/responder/responder/internal/store"
)

// The outcomes of a notification, as counted in
// responder_notifications_total.
const (
	outcomeSent    = "sent"
	outcomeRetry   = "retry"
	outcomeFailed  = "failed"
	outcomeSkipped = "skipped"
)

// notifyMetrics count and time every call to Slack and PagerDuty.
type notifyMetrics struct {
	notifications *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	rateLimited   *prometheus.CounterVec
	// postChecks counts the searches for an earlier Slack post whose
	// answer was lost, by result (found, not_found, error).
	postChecks *prometheus.CounterVec
}

func newNotifyMetrics(r prometheus.Registerer) *notifyMetrics {
	m := &notifyMetrics{
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_notifications_total",
			Help: "Calls to Slack and PagerDuty by outcome (sent, retry, failed), and deliveries that needed none (skipped: nothing to send, or a storm sends for them).",
		}, []string{"integration", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "responder_notification_duration_seconds",
			Help:    "Time of one call to Slack or PagerDuty, including the wait for the per-channel pace.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}, []string{"integration"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_notifications_rate_limited_total",
			Help: "Calls that Slack or PagerDuty answered with 429; they are retried.",
		}, []string{"integration"}),
		postChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_slack_post_checks_total",
			Help: "Searches of a channel's history for a post whose answer was lost (a timeout, a crash), by result: found (adopted, not posted again), not_found (posted), error (posted after a search that failed for good).",
		}, []string{"result"}),
	}
	for _, r := range []string{"found", "not_found", "error"} {
		m.postChecks.WithLabelValues(r)
	}
	for _, i := range []string{incident.IntegrationSlack, incident.IntegrationPagerDuty} {
		for _, o := range []string{outcomeSent, outcomeRetry, outcomeFailed, outcomeSkipped} {
			m.notifications.WithLabelValues(i, o)
		}
		m.duration.WithLabelValues(i)
		m.rateLimited.WithLabelValues(i)
	}
	r.MustRegister(m.notifications, m.duration, m.rateLimited, m.postChecks)
	return m
}

// observe records one call that started at start.
func (m *notifyMetrics) observe(integration string, start time.Time, retry bool, err error) {
	m.duration.WithLabelValues(integration).Observe(time.Since(start).Seconds())
	outcome := outcomeSent
	switch {
	case err == nil:
	case retry:
		outcome = outcomeRetry
	default:
		outcome = outcomeFailed
	}
	m.notifications.WithLabelValues(integration, outcome).Inc()
	if err != nil && rateLimited(err) {
		m.rateLimited.WithLabelValues(integration).Inc()
	}
}

// skipped counts a delivery that needed no call.
func (m *notifyMetrics) skipped(integration string) {
	m.notifications.WithLabelValues(integration, outcomeSkipped).Inc()
}

func rateLimited(err error) bool {
	var ra *slack.RetryAfterError
	var pe *pagerduty.APIError
	return errors.As(err, &ra) || (errors.As(err, &pe) && pe.StatusCode == http.StatusTooManyRequests)
}

// stormCollector reports storms from storage at scrape time, so that a
// restart or another replica does not change them.
type stormCollector struct {
	s *store.Store
	// channels are the configured Slack channels: the gauge's label values
	// come from the configuration only, so that they stay bounded.
	channels func() []string
	total    *prometheus.Desc
	active   *prometheus.Desc
}

func newStormCollector(s *store.Store, channels func() []string) *stormCollector {
	return &stormCollector{
		s:        s,
		channels: channels,
		total:    prometheus.NewDesc("responder_storms_total", "Storms started: more new incidents on one Slack channel within storm.window than storm.threshold.", nil, nil),
		active:   prometheus.NewDesc("responder_storm_active", "1 while the channel is in a storm, else 0.", []string{"channel"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *stormCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.total
	ch <- c.active
}

// Collect implements prometheus.Collector.
func (c *stormCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	total, active, err := c.s.StormStats(ctx)
	if err != nil {
		// responder_storage_up says why.
		return
	}
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(total))
	on := map[string]bool{}
	for _, t := range active {
		on[t] = true
	}
	for _, channel := range c.channels() {
		v := 0.0
		if on[channel] {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, v, channel)
	}
}

// reloadMetrics are the gauges Alertmanager and Prometheus export about
// their configuration reloads, under responder's name: a reload that fails
// leaves the previous configuration in force, so nothing else shows it.
type reloadMetrics struct {
	ok, at prometheus.Gauge
}

// newReloadMetrics registers the gauges, set for the configuration loaded
// at start.
func newReloadMetrics(r prometheus.Registerer) *reloadMetrics {
	m := &reloadMetrics{
		ok: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "responder_config_last_reload_successful",
			Help: "1 when the last configuration reload (POST /-/reload or SIGHUP) succeeded, 0 when it failed and the previous configuration stays in force.",
		}),
		at: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "responder_config_last_reload_success_timestamp_seconds",
			Help: "Time of the last successful configuration load (the start, or a reload).",
		}),
	}
	r.MustRegister(m.ok, m.at)
	m.observe(nil)
	return m
}

// observe records the outcome of a reload.
func (m *reloadMetrics) observe(err error) {
	if err != nil {
		m.ok.Set(0)
		return
	}
	m.ok.Set(1)
	m.at.SetToCurrentTime()
}

// pausedCollector reports at scrape time whether remediation is paused
// (POST /api/v1/remediation/pause): a pause is durable and shared by every
// replica, and one that nobody lifted stops every runbook silently.
type pausedCollector struct {
	s      *store.Store
	paused *prometheus.Desc
}

func newPausedCollector(s *store.Store) *pausedCollector {
	return &pausedCollector{s: s, paused: prometheus.NewDesc("responder_remediation_paused",
		"1 while remediation is paused (POST /api/v1/remediation/pause), on every replica, else 0.", nil, nil)}
}

// Describe implements prometheus.Collector.
func (c *pausedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.paused }

// Collect implements prometheus.Collector.
func (c *pausedCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	paused, _, err := c.s.RemediationPaused(ctx)
	if err != nil {
		// responder_storage_up says why.
		return
	}
	v := 0.0
	if paused {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(c.paused, prometheus.GaugeValue, v)
}
