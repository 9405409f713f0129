package webhook_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A notification from which Alertmanager left alerts out (max_alerts) is
// committed like any other, counted once, and logged as a warning that
// names its group, since its status counts only the alerts it kept.
func TestWebhook_TruncatedNotification(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	e := newEnv(t, envOptions{cfg: bearerConfig, logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	truncated := edited(t, "am_v4_firing.json", func(m map[string]any) { m["truncatedAlerts"] = 3 })
	whole := edited(t, "am_v4_firing.json", func(m map[string]any) { m["groupKey"] = `{}:{alertname="Whole"}` })

	for range 2 { // the second is a duplicate: not counted again
		got := e.post(t, bytes.NewReader(truncated), bearer(token))
		require.Equal(t, http.StatusOK, got.code, "body %v", got.body)
	}
	got := e.post(t, bytes.NewReader(whole), bearer(token))
	require.Equal(t, http.StatusOK, got.code, "body %v", got.body)

	require.Equal(t, map[string]float64{"new": 2, "duplicate": 1}, counters(t, e.reg, "responder_webhook_notifications_total", "outcome"))
	require.Equal(t, 1, counterValue(t, e, "responder_notifications_truncated_total"))

	var warnings []string
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "max_alerts") {
			warnings = append(warnings, line)
		}
	}
	require.Len(t, warnings, 1, "logs:\n%s", logs.String())
	require.Contains(t, warnings[0], `"level":"WARN"`)
	require.Contains(t, warnings[0], `"truncated_alerts":3`)
	require.Contains(t, warnings[0], `"group_key":`)
	require.NotContains(t, warnings[0], "Whole")

	// The incident's notifications show what was left out of each.
	want := map[string][]float64{`{}:{alertname="Whole"}`: {0}}
	code, list, raw := call(t, e.srv, apiCall{http.MethodGet, "/api/v1/incidents"})
	require.Equal(t, http.StatusOK, code, raw)
	incs := list["incidents"].([]any)
	require.Len(t, incs, 2, raw)
	for _, v := range incs {
		inc := v.(map[string]any)
		code, full, raw := call(t, e.srv, apiCall{http.MethodGet, fmt.Sprintf("/api/v1/incidents/%d", int64(inc["id"].(float64)))})
		require.Equal(t, http.StatusOK, code, raw)
		var got []float64
		for _, n := range full["notifications"].([]any) {
			tr, _ := n.(map[string]any)["truncated_alerts"].(float64)
			got = append(got, tr)
		}
		w, ok := want[inc["group_key"].(string)]
		if !ok {
			w = []float64{3} // its byte-identical duplicate is not applied
		}
		require.Equal(t, w, got, raw)
	}
}

// counterValue reads an unlabelled counter.
func counterValue(t *testing.T, e *env, name string) int {
	t.Helper()
	mfs, err := e.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return int(mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
