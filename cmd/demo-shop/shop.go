package main

import (
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The shop's healthy and degraded behaviour. Conversion is the share of
// checkouts that end in a payment: comfortably above the 94% SLO when
// healthy, well below it when degraded.
const (
	healthyConversion  = 0.97
	degradedConversion = 0.82
	// Transaction durations are log-normal around these medians: almost
	// none take over a second when healthy, most do when slow.
	healthyMedianSeconds = 0.18
	slowMedianSeconds    = 1.3
	durationSigma        = 0.45
)

// The low-cardinality label values the shop reports: a fixed handful each,
// never user, order or request IDs.
var (
	providers = []struct {
		name  string
		share float64
	}{{"stripe", 0.6}, {"adyen", 0.3}, {"paypal", 0.1}}
	features = []struct {
		name  string
		share float64 // uses per checkout
	}{{"one_click_checkout", 0.4}, {"wishlist", 0.25}, {"gift_cards", 0.05}}
)

// Options configures a Shop. The zero value of each field means its
// default.
type Options struct {
	// Service is the service label of the shop's series; default checkout.
	Service string
	// Rate is the mean number of checkouts per second; default 40.
	Rate float64
	// Window is how many ticks the conversion rate gauge averages over;
	// default 10.
	Window int
	// Tick is the length of one simulation step; default 1s.
	Tick time.Duration
	// Seed seeds the simulation; the same seed gives the same traffic.
	Seed uint64
}

// Shop simulates a web shop's checkout and exposes the business metrics an
// SRE team alerts on: the conversion rate, requests, transaction latency,
// payments initiated and the provider webhooks confirming them, and feature
// usage.
type Shop struct {
	service string
	rate    float64

	conversion  *prometheus.GaugeVec
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	initiated   *prometheus.CounterVec
	webhooks    *prometheus.CounterVec
	featureUse  *prometheus.CounterVec
	degradedSet prometheus.Gauge

	mu            sync.Mutex
	rnd           *rand.Rand
	window        []tick // ring of the last ticks, for the conversion rate
	next          int
	degradedUntil time.Time
	slow          bool
	lastRate      float64 // the last conversion rate reported, percent
}

// tick is one simulation step's checkouts and the payments they ended in.
type tick struct{ checkouts, converted int }

// New returns a Shop whose metrics are registered on reg. The conversion
// rate series appears with the first Tick, so that Prometheus never scrapes
// a made-up zero.
func New(reg prometheus.Registerer, o Options) *Shop {
	if o.Service == "" {
		o.Service = "checkout"
	}
	if o.Rate <= 0 {
		o.Rate = 40
	}
	if o.Window <= 0 {
		o.Window = 10
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	s := &Shop{
		service: o.Service,
		rate:    o.Rate,
		rnd:     rand.New(rand.NewPCG(o.Seed, o.Seed^0x5eed)), //nolint:gosec // G404: simulated traffic, not security.
		window:  make([]tick, o.Window),
		conversion: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "payment_conversion_rate_percent",
			Help: "Share of checkouts that ended in a payment over the last few seconds, in percent (0-100).",
		}, []string{"service"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests served, by handler and status code.",
		}, []string{"service", "handler", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "transaction_duration_seconds",
			Help:    "Time from the checkout click to the payment's answer.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}, []string{"service"}),
		initiated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payment_initiated_total",
			Help: "Payments sent to a payment provider.",
		}, []string{"provider"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payment_webhook_received_total",
			Help: "Payment confirmations received from a provider's webhook.",
		}, []string{"provider"}),
		featureUse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feature_usage_total",
			Help: "Uses of a product feature.",
		}, []string{"feature"}),
		degradedSet: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "demo_shop_degraded",
			Help: "1 while the demo shop is degraded on purpose (POST /degrade).",
		}),
	}
	// The conversion window starts full of healthy history, so that the
	// first values are as steady as the later ones: a short window of a
	// few dozen checkouts would wander near the SLO by chance.
	for i := range s.window {
		n := int(math.Round(o.Rate * o.Tick.Seconds()))
		s.window[i] = tick{checkouts: n, converted: int(math.Round(float64(n) * healthyConversion))}
	}
	// Every series but the conversion rate starts at zero, as a real
	// service's counters do.
	for _, p := range providers {
		s.initiated.WithLabelValues(p.name)
		s.webhooks.WithLabelValues(p.name)
	}
	for _, f := range features {
		s.featureUse.WithLabelValues(f.name)
	}
	s.duration.WithLabelValues(s.service)
	reg.MustRegister(s.conversion, s.requests, s.duration, s.initiated, s.webhooks, s.featureUse, s.degradedSet)
	return s
}

// Degrade makes checkouts fail far more often from now until now+d, and
// makes transactions slow too when slow is set.
func (s *Shop) Degrade(now time.Time, d time.Duration, slow bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.degradedUntil = now.Add(d)
	s.slow = slow
}

// Recover ends a degradation now.
func (s *Shop) Recover() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.degradedUntil = time.Time{}
	s.slow = false
}

// Status is what GET / reports.
type Status struct {
	Service               string     `json:"service"`
	Degraded              bool       `json:"degraded"`
	DegradedUntil         *time.Time `json:"degraded_until,omitempty"`
	Slow                  bool       `json:"slow"`
	ConversionRatePercent float64    `json:"conversion_rate_percent"`
}

// Status reports the shop's state at now.
func (s *Shop) Status(now time.Time) Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Service: s.service, ConversionRatePercent: math.Round(s.lastRate*10) / 10}
	if now.Before(s.degradedUntil) {
		until := s.degradedUntil
		st.Degraded, st.DegradedUntil, st.Slow = true, &until, s.slow
	}
	return st
}

// Tick simulates the traffic of one step of length d ending at now, and
// updates every metric.
func (s *Shop) Tick(now time.Time, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	degraded := now.Before(s.degradedUntil)
	slow := degraded && s.slow
	s.degradedSet.Set(b2f(degraded))
	p := healthyConversion
	if degraded {
		p = degradedConversion
	}
	median := healthyMedianSeconds
	if slow {
		median = slowMedianSeconds
	}

	// The number of checkouts varies by ±20% around the rate.
	n := int(math.Round(s.rate * d.Seconds() * (0.8 + 0.4*s.rnd.Float64())))
	t := tick{checkouts: n}
	for range n {
		// Each checkout follows a few page views and a cart update.
		s.requests.WithLabelValues(s.service, "/products", "200").Add(3)
		s.requests.WithLabelValues(s.service, "/cart", "200").Inc()
		for _, f := range features {
			if s.rnd.Float64() < f.share {
				s.featureUse.WithLabelValues(f.name).Inc()
			}
		}
		s.duration.WithLabelValues(s.service).Observe(median * math.Exp(durationSigma*s.rnd.NormFloat64()))
		if s.rnd.Float64() >= p {
			// Healthy failures are card declines; a degraded shop fails
			// before it reaches the provider.
			code := "402"
			if degraded {
				code = "502"
			}
			s.requests.WithLabelValues(s.service, "/checkout", code).Inc()
			continue
		}
		t.converted++
		s.requests.WithLabelValues(s.service, "/checkout", "200").Inc()
		prov := s.provider()
		s.initiated.WithLabelValues(prov).Inc()
		s.webhooks.WithLabelValues(prov).Inc()
	}

	s.window[s.next] = t
	s.next = (s.next + 1) % len(s.window)
	var sum tick
	for _, w := range s.window {
		sum.checkouts += w.checkouts
		sum.converted += w.converted
	}
	if sum.checkouts > 0 {
		s.lastRate = 100 * float64(sum.converted) / float64(sum.checkouts)
		s.conversion.WithLabelValues(s.service).Set(s.lastRate)
	}
}

// provider picks a payment provider by its share of payments.
func (s *Shop) provider() string {
	r := s.rnd.Float64()
	for _, p := range providers {
		if r < p.share {
			return p.name
		}
		r -= p.share
	}
	return providers[0].name
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
