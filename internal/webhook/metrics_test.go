package webhook_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// rejectedSeries reads every series of responder_webhook_rejected_total,
// zeros included.
func (e *env) rejectedSeries(t *testing.T) map[string]bool {
	t.Helper()
	mfs, err := e.reg.Gather()
	require.NoError(t, err)
	out := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "responder_webhook_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				out[lp.GetValue()] = true
			}
		}
	}
	return out
}

// TestMetrics_RejectedFromZero checks that a refusal counts in a series that
// was exported at 0 before it: increase() does not see a series' first
// sample, so an alert on the first refusal of a kind (one forged Slack
// request, say) would never fire.
func TestMetrics_RejectedFromZero(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	before := e.rejectedSeries(t)

	code, _ := send(t, e.srv, http.MethodPost, "/slack/interactions", []byte("payload=%7B%7D"), nil)
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = send(t, e.srv, http.MethodPost, hookPath, []byte("{"), func(r *http.Request) { r.Header.Set("Content-Type", "application/json") })
	require.Equal(t, http.StatusBadRequest, code)
	code, _ = send(t, e.srv, http.MethodPost, hookPath, fixture(t, "am_v4_firing.json"), func(r *http.Request) { r.Host = "responder.example" })
	require.Equal(t, http.StatusForbidden, code)

	counted := e.rejected(t)
	require.Len(t, counted, 3, "every request above is counted")
	for reason := range counted {
		require.True(t, before[reason], "responder_webhook_rejected_total{reason=%q} appeared with its first count", reason)
	}
}
