package promql_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/responder/responder/internal/context/promql"
	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"), goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

// exporter serves two gauges for Prometheus to scrape.
const exporterBody = `# HELP shop_errors_ratio Share of failed requests.
# TYPE shop_errors_ratio gauge
shop_errors_ratio{service="checkout"} 0.25
shop_errors_ratio{service="cart"} 0.5
`

// StartScrapedPrometheus starts a real Prometheus scraping an in-test
// exporter every second and waits until the first scrape is stored.
func startScrapedPrometheus(t *testing.T) string {
	t.Helper()
	prom := startPrometheusScraping(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte(exporterBody))
	}))
	src, err := promql.New(promql.Options{URL: prom.URL(), Queries: []promql.Query{{Name: "up", Query: `up{job="shop"}`}}})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		sec, err := src.Gather(t.Context(), &incident.Incident{})
		return err == nil && len(sec.Snapshots) == 1 && len(sec.Snapshots[0].Values) == 1 && sec.Snapshots[0].Values[0].Value == 1
	}, 30*time.Second, 200*time.Millisecond, "prometheus never scraped the exporter")
	return prom.URL()
}

// startPrometheusScraping starts a real Prometheus, with flags, scraping
// exporter as job "shop" every second.
func startPrometheusScraping(t *testing.T, exporter http.Handler, flags ...string) *testenv.Prometheus {
	t.Helper()
	exp := httptest.NewServer(exporter)
	t.Cleanup(exp.Close)
	u, err := url.Parse(exp.URL)
	require.NoError(t, err)
	return testenv.StartPrometheus(t, fmt.Sprintf(`global: { scrape_interval: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: shop
    static_configs: [{ targets: ['%s'] }]
`, u.Host), flags...)
}

func generatorURL(expr string) string {
	return "http://prometheus.example:9090/graph?g0.expr=" + url.QueryEscape(expr) + "&g0.tab=1"
}

func TestSource_RealPrometheus(t *testing.T) {
	promURL := startScrapedPrometheus(t)
	src, err := promql.New(promql.Options{
		URL: promURL, AlertExpression: true, Range: 5 * time.Minute, Step: 15 * time.Second,
		Queries: []promql.Query{{Name: "errors of the service", Query: `shop_errors_ratio{service="{{ .Labels.service }}"}`}},
	})
	require.NoError(t, err)
	inc := &incident.Incident{
		CommonLabels: map[string]string{"alertname": "ErrorsHigh", "service": "cart"},
		Alerts: []incident.Alert{{
			Status: "firing", Labels: map[string]string{"alertname": "ErrorsHigh"},
			GeneratorURL: generatorURL(`shop_errors_ratio{service="checkout"} > 0.1`),
		}},
	}
	sec, err := src.Gather(t.Context(), inc)
	require.NoError(t, err)
	require.Len(t, sec.Snapshots, 2)

	alert := sec.Snapshots[0]
	require.Equal(t, "ErrorsHigh", alert.Name)
	require.Equal(t, `shop_errors_ratio{service="checkout"} > 0.1`, alert.Query)
	require.Empty(t, alert.Error)
	require.Len(t, alert.Values, 1)
	require.InDelta(t, 0.25, alert.Values[0].Value, 1e-9)
	require.Contains(t, alert.Values[0].Labels, `service="checkout"`)
	require.Len(t, alert.Series, 1)
	require.NotEmpty(t, alert.Series[0].Points)

	conf := sec.Snapshots[1]
	require.Equal(t, `shop_errors_ratio{service="cart"}`, conf.Query)
	require.Len(t, conf.Values, 1)
	require.InDelta(t, 0.5, conf.Values[0].Value, 1e-9)

	chart, err := promql.Chart(alert)
	require.NoError(t, err)
	img, err := png.Decode(bytes.NewReader(chart))
	require.NoError(t, err)
	require.Equal(t, promql.ChartWidth, img.Bounds().Dx())
	require.Equal(t, promql.ChartHeight, img.Bounds().Dy())
}

// TestSource_Injection proves that a label value cannot change a query: a
// value that would close the matcher and add "or vector(42)" stays a
// literal value that matches no series, in the real Prometheus.
func TestSource_Injection(t *testing.T) {
	promURL := startScrapedPrometheus(t)
	tmpl := `shop_errors_ratio{service="{{ .CommonLabels.service }}"}`
	for _, evil := range []string{
		`x"} or vector(42) or shop_errors_ratio{service="y`,
		`x'} or vector(42) or shop_errors_ratio{service='y`,
		"x\\\"} or vector(42) #",
		"x`} or vector(42)",
	} {
		t.Run(evil, func(t *testing.T) {
			inc := &incident.Incident{CommonLabels: map[string]string{"service": evil}}
			src, err := promql.New(promql.Options{URL: promURL, Queries: []promql.Query{{Name: "q", Query: tmpl}}})
			require.NoError(t, err)
			qs, err := src.Queries(inc)
			require.NoError(t, err)
			require.NotContains(t, qs[0].Query, "or vector(42) or shop_errors_ratio{service=\"y\"}")

			sec, err := src.Gather(t.Context(), inc)
			require.NoError(t, err, "prometheus must parse the escaped query")
			require.Empty(t, sec.Snapshots[0].Error)
			require.Empty(t, sec.Snapshots[0].Values, "the injected vector(42) must not run")
		})
	}
	// The unescaped query would have returned 42: the test can tell.
	src, err := promql.New(promql.Options{URL: promURL, Queries: []promql.Query{{Name: "raw", Query: `shop_errors_ratio{service="x"} or vector(42) or shop_errors_ratio{service="y"}`}}})
	require.NoError(t, err)
	sec, err := src.Gather(t.Context(), &incident.Incident{})
	require.NoError(t, err)
	require.Len(t, sec.Snapshots[0].Values, 1)
	require.InDelta(t, 42, sec.Snapshots[0].Values[0].Value, 0)
}

func TestSource_Errors(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"status":"error","errorType":"bad_data","error":"parse error"}`))
	}))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	u.User = url.UserPassword("user", "s3cret-pass")
	src, err := promql.New(promql.Options{URL: u.String(), Queries: []promql.Query{{Name: "bad", Query: "up{"}}})
	require.NoError(t, err)
	_, err = src.Gather(t.Context(), &incident.Incident{})
	require.ErrorContains(t, err, "bad_data: parse error")
	require.NotContains(t, err.Error(), "s3cret")

	srv.Close() // unreachable now
	_, err = src.Gather(t.Context(), &incident.Incident{})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
	require.NotContains(t, err.Error(), "127.0.0.1")

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = src.Gather(ctx, &incident.Incident{})
	require.Error(t, err)
}

func TestExprFromGeneratorURL(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{generatorURL(`rate(http_errors_total[5m]) > 0.1`), `rate(http_errors_total[5m]) > 0.1`, true},
		{"http://p:9090/graph?g0.expr=up&g0.tab=1", "up", true},
		{"http://p:9090/graph?g0.tab=1", "", false},
		{"", "", false},
		{"::not a url", "", false},
		{"http://p/graph?g0.expr=%20%20", "", false},
	} {
		got, ok := promql.ExprFromGeneratorURL(tt.in)
		require.Equal(t, tt.ok, ok, tt.in)
		require.Equal(t, tt.want, got, tt.in)
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	inc := &incident.Incident{CommonLabels: map[string]string{"job": `a"b\c`}, GroupLabels: map[string]string{"job": "api"}}
	got, err := incident.RenderQuery("q", `up{job="{{ .CommonLabels.job }}", g="{{ .Labels.job }}", m="{{ .Labels.missing }}"}`, inc, promql.EscapeString)
	require.NoError(t, err)
	require.Equal(t, `up{job="a\x22b\\c", g="api", m=""}`, got)
}

func FuzzExprFromGeneratorURL(f *testing.F) {
	f.Add(generatorURL(`sum(rate(x[5m])) by (job) > 1`))
	f.Add("http://p:9090/graph?g0.expr=up&g0.tab=1")
	f.Add("http://p/graph?g0.expr=%zz")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		expr, ok := promql.ExprFromGeneratorURL(raw)
		if !ok {
			require.Empty(t, expr)
			return
		}
		require.NotEmpty(t, expr)
		require.Equal(t, strings.TrimSpace(expr), expr)
		require.LessOrEqual(t, len(expr), 4096)
	})
}

func FuzzEscapeString(f *testing.F) {
	f.Add(`x"} or vector(1) #`)
	f.Add("a'b`c\\d\n\x00")
	f.Add("héllo")
	f.Fuzz(func(t *testing.T, s string) {
		esc := promql.EscapeString(s)
		require.NotContains(t, esc, `"`)
		require.NotContains(t, esc, `'`)
		require.NotContains(t, esc, "`")
		require.NotContains(t, esc, "\n")
		if !utf8.ValidString(s) {
			return
		}
		got, err := strconv.Unquote(`"` + esc + `"`)
		require.NoError(t, err)
		require.Equal(t, s, got)
	})
}

// fakePrometheus answers POST /api/v1/query and /api/v1/query_range like
// Prometheus (form-encoded bodies) through answer, which gets the form.
func fakePrometheus(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestSource_TimeoutLeaksNoURL: a query cut short by the source's deadline
// keeps its snapshot (the partial result is stored and served by the API),
// so its error must not carry the request URL the transport error quotes.
func TestSource_TimeoutLeaksNoURL(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := fakePrometheus(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Form.Get("query") == "slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[]}}`))
	})
	defer close(release)
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	u.User = url.UserPassword("prom-user", "s3cret-pass")
	src, err := promql.New(promql.Options{URL: u.String(), Queries: []promql.Query{{Name: "slow", Query: "slow"}}})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	sec, err := src.Gather(ctx, &incident.Incident{})
	require.Error(t, err)
	require.Len(t, sec.Snapshots, 1)
	msg := sec.Snapshots[0].Error
	require.NotEmpty(t, msg)
	for _, leak := range []string{u.Host, "/api/v1", "prom-user", "s3cret"} {
		require.NotContains(t, msg, leak)
	}
}

// TestSource_LargeAnswer: a query over many series answers with a body of
// tens of megabytes, all of it read and decoded to keep MaxSeries of it;
// the answer must be cut off at MaxResponseBytes instead.
func TestSource_LargeAnswer(t *testing.T) {
	t.Parallel()
	srv := fakePrometheus(t, func(w http.ResponseWriter, _ *http.Request) {
		// About 19 MB, unless the client hangs up first.
		_, _ = io.WriteString(w, `{"status":"success","data":{"resultType":"vector","result":[`)
		for i := range 200000 {
			_, err := fmt.Fprintf(w, `{"metric":{"__name__":"up","instance":"host-%06d:9100","job":"node"},"value":[1772445600,"1"]},`, i)
			if err != nil {
				break
			}
		}
		_, _ = io.WriteString(w, `{"metric":{},"value":[1772445600,"1"]}]}}`)
	})
	src, err := promql.New(promql.Options{URL: srv.URL, MaxResponseBytes: 1 << 20, Queries: []promql.Query{{Name: "all", Query: "up"}}})
	require.NoError(t, err)
	_, err = src.Gather(t.Context(), &incident.Incident{})
	require.ErrorContains(t, err, "answer larger than 1 MiB")
}

// Prometheus' warnings (a partial answer: a remote store or a shard did not
// answer) are kept with the snapshot, each once, a few at most.
func TestSource_Warnings(t *testing.T) {
	t.Parallel()
	srv := fakePrometheus(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/query_range") {
			_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"matrix","result":[]},"warnings":["remote read failed: store-b","remote read failed: store-c","remote read failed: store-d"]}`))
			return
		}
		_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"api"},"value":[1772445600,"3"]}]},"warnings":["remote read failed: store-b"]}`))
	})
	src, err := promql.New(promql.Options{URL: srv.URL, Queries: []promql.Query{{Name: "up", Query: "sum(up)"}}})
	require.NoError(t, err)
	sec, err := src.Gather(t.Context(), &incident.Incident{})
	require.NoError(t, err)
	require.Len(t, sec.Snapshots, 1)
	require.Equal(t, []string{"remote read failed: store-b", "remote read failed: store-c", "remote read failed: store-d"}, sec.Snapshots[0].Warnings)
	require.Len(t, sec.Snapshots[0].Values, 1)
}

// A native histogram has no single value: the instant sample's value is 0
// and the range query's points are histograms. The snapshot leaves such
// series out and says how to query them, rather than show or chart a 0.
func TestSource_NativeHistogram(t *testing.T) {
	reg := prometheus.NewRegistry()
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "shop_latency_seconds", Help: "Request latency.",
		NativeHistogramBucketFactor: 1.1,
	})
	reg.MustRegister(latency)
	for _, v := range []float64{0.1, 0.2, 0.4} {
		latency.Observe(v)
	}
	prom := startPrometheusScraping(t, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), "--enable-feature=native-histograms")
	src, err := promql.New(promql.Options{URL: prom.URL(), Range: time.Minute, Step: time.Second, Queries: []promql.Query{
		{Name: "latency", Query: `shop_latency_seconds`},
		{Name: "count", Query: `histogram_count(shop_latency_seconds)`},
	}})
	require.NoError(t, err)
	var sec incident.Section
	require.Eventually(t, func() bool {
		sec, err = src.Gather(t.Context(), &incident.Incident{})
		return err == nil && len(sec.Snapshots) == 2 && len(sec.Snapshots[1].Values) == 1
	}, 30*time.Second, 200*time.Millisecond, "prometheus never stored the native histogram")

	count := sec.Snapshots[1]
	require.InDelta(t, 3, count.Values[0].Value, 1e-9)
	require.Empty(t, count.Warnings)

	hist := sec.Snapshots[0]
	require.Empty(t, hist.Error)
	require.Empty(t, hist.Values, "a histogram shown as its value field, 0")
	for _, s := range hist.Series {
		require.NotEmpty(t, s.Points, "a histogram series charted as nothing")
	}
	require.Len(t, hist.Warnings, 1)
	require.Contains(t, hist.Warnings[0], "native histogram")
	require.Contains(t, hist.Warnings[0], "histogram_quantile")
}
