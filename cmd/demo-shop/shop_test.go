package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// newTestShop returns a shop on a pedantic registry, with fixed traffic.
func newTestShop(t *testing.T) (*Shop, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	return New(reg, Options{Seed: 42}), reg
}

// family is what the tests look at of one metric family. (The tests do not
// import client_model, which go.mod has only as an indirect dependency.)
type family struct {
	typ    string     // GAUGE, COUNTER, HISTOGRAM
	labels [][]string // each series' label names
	values []float64  // each series' value (a counter's or a gauge's)
	// le1 and count are the first histogram series' le="1" bucket and its
	// sample count.
	le1, count uint64
}

// families gathers reg by metric name.
func families(t *testing.T, reg prometheus.Gatherer) map[string]family {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := make(map[string]family, len(mfs))
	for _, mf := range mfs {
		f := family{typ: mf.GetType().String()}
		for _, m := range mf.GetMetric() {
			var names []string
			for _, l := range m.GetLabel() {
				names = append(names, l.GetName())
			}
			f.labels = append(f.labels, names)
			f.values = append(f.values, m.GetCounter().GetValue()+m.GetGauge().GetValue())
			if h := m.GetHistogram(); h != nil && f.count == 0 {
				f.count = h.GetSampleCount()
				for _, b := range h.GetBucket() {
					if b.GetUpperBound() == 1 {
						f.le1 = b.GetCumulativeCount()
					}
				}
			}
		}
		out[mf.GetName()] = f
	}
	return out
}

// conversion is the shop's current conversion rate gauge.
func conversion(t *testing.T, reg prometheus.Gatherer) float64 {
	t.Helper()
	f, ok := families(t, reg)["payment_conversion_rate_percent"]
	require.True(t, ok, "payment_conversion_rate_percent is not exposed")
	require.Len(t, f.values, 1)
	return f.values[0]
}

func sum(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s
}

// slowShare is the share of transactions that took over a second.
func slowShare(t *testing.T, reg prometheus.Gatherer) float64 {
	t.Helper()
	f := families(t, reg)["transaction_duration_seconds"]
	require.Positive(t, f.count)
	return 1 - float64(f.le1)/float64(f.count)
}

func TestShop_Metrics(t *testing.T) {
	shop, reg := newTestShop(t)

	// No made-up conversion rate before the first simulated traffic.
	require.NotContains(t, families(t, reg), "payment_conversion_rate_percent")

	for i := range 30 {
		shop.Tick(t0.Add(time.Duration(i)*time.Second), time.Second)
	}
	mfs := families(t, reg)

	// The metrics the example rules watch, with their types and labels.
	want := map[string]struct {
		typ    string
		labels []string
	}{
		"payment_conversion_rate_percent": {"GAUGE", []string{"service"}},
		"http_requests_total":             {"COUNTER", []string{"code", "handler", "service"}},
		"transaction_duration_seconds":    {"HISTOGRAM", []string{"service"}},
		"payment_initiated_total":         {"COUNTER", []string{"provider"}},
		"payment_webhook_received_total":  {"COUNTER", []string{"provider"}},
		"feature_usage_total":             {"COUNTER", []string{"feature"}},
	}
	for name, w := range want {
		f, ok := mfs[name]
		require.True(t, ok, name)
		require.Equal(t, w.typ, f.typ, name)
		// Low cardinality: a handful of series each.
		require.LessOrEqual(t, len(f.labels), 10, name)
		for _, got := range f.labels {
			require.Equal(t, w.labels, got, name)
		}
	}

	// Healthy: about 97% of about 40 checkouts a second, above the SLO.
	require.InDelta(t, 97, conversion(t, reg), 2.5)
	checkouts := 0.0
	for _, code := range []string{"200", "402", "502"} {
		checkouts += testutil.ToFloat64(shop.requests.WithLabelValues("checkout", "/checkout", code))
	}
	require.InDelta(t, 30*40, checkouts, 30*40*0.1)
	// Every payment's webhook arrives, and transactions are fast.
	require.InDelta(t, sum(mfs["payment_initiated_total"].values), sum(mfs["payment_webhook_received_total"].values), 0)
	require.Less(t, slowShare(t, reg), 0.01)
	require.Positive(t, sum(mfs["feature_usage_total"].values))
	// The pedantic registry found nothing wrong; neither does the linter.
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
}

func TestShop_Degrade(t *testing.T) {
	shop, reg := newTestShop(t)
	now := t0
	run := func(n int) {
		for range n {
			shop.Tick(now, time.Second)
			now = now.Add(time.Second)
		}
	}
	run(10)
	require.Greater(t, conversion(t, reg), 94.0)

	shop.Degrade(now, time.Minute, false)
	require.True(t, shop.Status(now).Degraded)
	run(10)
	require.InDelta(t, 82, conversion(t, reg), 3)
	require.Less(t, slowShare(t, reg), 0.01, "not slow unless asked")

	t.Run("recover", func(t *testing.T) {
		shop.Recover()
		require.False(t, shop.Status(now).Degraded)
		run(10)
		require.Greater(t, conversion(t, reg), 94.0)
	})

	t.Run("slow", func(t *testing.T) {
		shop.Degrade(now, time.Minute, true)
		run(100)
		require.Greater(t, slowShare(t, reg), 0.3)
	})

	t.Run("ends by itself", func(t *testing.T) {
		shop.Degrade(now, 5*time.Second, false)
		run(5)
		require.False(t, shop.Status(now).Degraded)
		run(10)
		require.Greater(t, conversion(t, reg), 94.0)
	})
}

func TestHandler(t *testing.T) {
	shop, reg := newTestShop(t)
	shop.Tick(t0, time.Second)
	var logs bytes.Buffer
	h := newHandler(slog.New(slog.NewTextHandler(&logs, nil)), shop, reg, func() time.Time { return t0 })

	do := func(method, target, body string) (int, string) {
		t.Helper()
		req := httptest.NewRequestWithContext(t.Context(), method, target, strings.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		b, err := io.ReadAll(rec.Result().Body)
		require.NoError(t, err)
		return rec.Code, string(b)
	}
	status := func(body string) Status {
		t.Helper()
		var st Status
		require.NoError(t, json.Unmarshal([]byte(body), &st))
		return st
	}

	code, body := do(http.MethodGet, "/metrics", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `payment_conversion_rate_percent{service="checkout"}`)
	require.Contains(t, body, `transaction_duration_seconds_bucket{service="checkout",le="1"}`)

	for _, bad := range []string{"abc", "0", "-1", "100000"} {
		code, body = do(http.MethodPost, "/degrade?minutes="+bad, "")
		require.Equal(t, http.StatusBadRequest, code, bad)
		require.Contains(t, body, "minutes must be")
	}
	code, _ = do(http.MethodGet, "/degrade", "")
	require.Equal(t, http.StatusMethodNotAllowed, code)

	code, body = do(http.MethodPost, "/degrade?minutes=5&slow=true", "")
	require.Equal(t, http.StatusOK, code)
	st := status(body)
	require.True(t, st.Degraded)
	require.True(t, st.Slow)
	require.Equal(t, t0.Add(5*time.Minute), *st.DegradedUntil)

	code, body = do(http.MethodGet, "/", "")
	require.Equal(t, http.StatusOK, code)
	require.True(t, status(body).Degraded)

	code, body = do(http.MethodPost, "/recover", "")
	require.Equal(t, http.StatusOK, code)
	require.False(t, status(body).Degraded)

	t.Run("pagerduty sink", func(t *testing.T) {
		code, body := do(http.MethodPost, "/pagerduty/v2/enqueue",
			`{"routing_key":"not-logged","event_action":"trigger","dedup_key":"abc","payload":{"summary":"checkout is down","severity":"critical","source":"demo"}}`)
		require.Equal(t, http.StatusAccepted, code)
		require.JSONEq(t, `{"status":"success","message":"Event processed","dedup_key":"abc"}`, body)
		require.Contains(t, logs.String(), `event_action=trigger dedup_key=abc severity=critical summary="checkout is down"`)
		require.NotContains(t, logs.String(), "not-logged")

		code, _ = do(http.MethodPost, "/pagerduty/v2/enqueue", `{"nonsense":`)
		require.Equal(t, http.StatusBadRequest, code)
	})
}
