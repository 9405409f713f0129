package webhook

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	rejected      *prometheus.CounterVec
	alerts        *prometheus.CounterVec
	notifications *prometheus.CounterVec
	truncated     prometheus.Counter
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_http_requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"handler", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "responder_http_request_duration_seconds",
			Help:    "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"handler"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_webhook_rejected_total",
			Help: "Webhook requests refused, by reason (nothing of them was stored).",
		}, []string{"reason"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_alerts_received_total",
			Help: "Alerts in committed webhook notifications, by status.",
		}, []string{"status"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_webhook_notifications_total",
			Help: "Committed webhook notifications, by outcome (new, or duplicate of an earlier one).",
		}, []string{"outcome"}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "responder_notifications_truncated_total",
			Help: "New committed webhook notifications from which Alertmanager left alerts out (max_alerts; truncatedAlerts > 0).",
		}),
	}
	for _, s := range []string{"firing", "resolved"} {
		m.alerts.WithLabelValues(s)
	}
	for _, o := range []string{"new", "duplicate"} {
		m.notifications.WithLabelValues(o)
	}
	// Every reason is exported at 0 from the start: increase() does not
	// count a series' first sample, so a reason that appeared with its first
	// refusal would hide that refusal from alerts.
	for _, r := range []string{"unauthorized", "bad_signature", "too_large", "malformed_json", "unsupported_version", "missing_alerts", "invalid_utf8", "missing_group_key", "invalid_status", "invalid_alert", "unsupported_encoding", "storage_unavailable", "nul_character", "body_timeout", "cross_origin", "forbidden_host"} {
		m.rejected.WithLabelValues(r)
	}
	if r != nil {
		r.MustRegister(m.requests, m.duration, m.rejected, m.alerts, m.notifications, m.truncated)
	}
	return m
}

func (m *metrics) observe(route string, code int, d time.Duration) {
	if route == "" {
		route = "other"
	}
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}
