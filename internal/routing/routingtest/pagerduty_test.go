package routingtest_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/routing/routingtest"
)

const key = "0123456789abcdef0123456789abcdef"

type response struct {
	status int
	body   map[string]any
}

func post(t *testing.T, f *routingtest.FakePagerDuty, body string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.URL()+routingtest.PagerDutyEnqueuePath, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { require.NoError(t, resp.Body.Close()) }()
	var r response
	r.status = resp.StatusCode
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	require.NoError(t, err)
	_ = json.Unmarshal(buf.Bytes(), &r.body)
	return r
}

func trigger(routingKey, dedup string) string {
	b, _ := json.Marshal(map[string]any{
		"routing_key": routingKey, "event_action": "trigger", "dedup_key": dedup,
		"payload": map[string]any{"summary": "s", "source": "src", "severity": "critical"},
	})
	return string(b)
}

func followUp(action, routingKey, dedup string) string {
	b, _ := json.Marshal(map[string]any{"routing_key": routingKey, "event_action": action, "dedup_key": dedup})
	return string(b)
}

func TestFakePagerDuty_Validation(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 1025)
	tests := []struct {
		name    string
		body    string
		status  int
		wantErr string
	}{
		{"valid trigger", trigger(key, "k"), http.StatusAccepted, ""},
		{"configured short key", trigger("short-key", "k"), http.StatusAccepted, ""},
		{"wrong key length", trigger("nope", "k"), http.StatusBadRequest, "Length of 'routing_key' is incorrect"},
		{"missing key", trigger("", "k"), http.StatusBadRequest, "'routing_key' is missing"},
		{"dedup key too long", trigger(key, strings.Repeat("d", 256)), http.StatusBadRequest, "'dedup_key' is too long"},
		{"bad action", followUp("snooze", key, "k"), http.StatusBadRequest, "'event_action' is invalid"},
		{"resolve without dedup key", followUp("resolve", key, ""), http.StatusBadRequest, "'dedup_key' is missing"},
		{"trigger without payload", followUp("trigger", key, "k"), http.StatusBadRequest, "'payload' is missing"},
		{
			"summary too long",
			`{"routing_key":"` + key + `","event_action":"trigger","payload":{"summary":"` + long + `","source":"s","severity":"info"}}`,
			http.StatusBadRequest, "'payload.summary' is too long",
		},
		{
			"bad severity",
			`{"routing_key":"` + key + `","event_action":"trigger","payload":{"summary":"s","source":"s","severity":"page"}}`,
			http.StatusBadRequest, "'payload.severity' is invalid",
		},
		{
			"missing source",
			`{"routing_key":"` + key + `","event_action":"trigger","payload":{"summary":"s","severity":"info"}}`,
			http.StatusBadRequest, "'payload.source' is missing",
		},
		{"not json", `{"routing_key":`, http.StatusBadRequest, "Could not parse JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := routingtest.NewFakePagerDuty(t, routingtest.WithPagerDutyRoutingKeys("short-key"))
			r := post(t, f, tt.body)
			require.Equal(t, tt.status, r.status)
			if tt.wantErr == "" {
				require.Equal(t, "success", r.body["status"])
				require.Equal(t, "Event processed", r.body["message"])
				require.Equal(t, "k", r.body["dedup_key"])
				require.Len(t, f.Events(), 1)
				return
			}
			require.Contains(t, r.body["errors"].([]any)[0], tt.wantErr)
			require.Empty(t, f.Events())
		})
	}
}

func TestFakePagerDuty_DedupSemantics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		bodies   []string
		outcomes []string
		open     []string
	}{
		{
			name:     "trigger appends while open",
			bodies:   []string{trigger(key, "a"), trigger(key, "a")},
			outcomes: []string{routingtest.PagerDutyOpened, routingtest.PagerDutyAppended},
			open:     []string{"a"},
		},
		{
			name:     "trigger after resolve opens a new alert",
			bodies:   []string{trigger(key, "a"), followUp("resolve", key, "a"), trigger(key, "a")},
			outcomes: []string{routingtest.PagerDutyOpened, routingtest.PagerDutyResolved, routingtest.PagerDutyOpened},
			open:     []string{"a"},
		},
		{
			name:     "resolve of unknown key is dropped",
			bodies:   []string{followUp("resolve", key, "a")},
			outcomes: []string{routingtest.PagerDutyDropped},
			open:     []string{},
		},
		{
			name:     "ack then resolve",
			bodies:   []string{trigger(key, "a"), followUp("acknowledge", key, "a"), followUp("resolve", key, "a")},
			outcomes: []string{routingtest.PagerDutyOpened, routingtest.PagerDutyAcknowledged, routingtest.PagerDutyResolved},
			open:     []string{},
		},
		{
			name:     "follow-up from another routing key is dropped",
			bodies:   []string{trigger(key, "a"), followUp("resolve", strings.Repeat("z", 32), "a")},
			outcomes: []string{routingtest.PagerDutyOpened, routingtest.PagerDutyDropped},
			open:     []string{"a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := routingtest.NewFakePagerDuty(t)
			for _, b := range tt.bodies {
				require.Equal(t, http.StatusAccepted, post(t, f, b).status)
			}
			var got []string
			for _, ev := range f.Events() {
				got = append(got, ev.Outcome)
			}
			require.Equal(t, tt.outcomes, got)
			require.Equal(t, tt.open, append([]string{}, f.OpenKeys()...))
		})
	}

	t.Run("trigger without dedup key gets one", func(t *testing.T) {
		t.Parallel()
		f := routingtest.NewFakePagerDuty(t)
		r := post(t, f, trigger(key, ""))
		require.Equal(t, http.StatusAccepted, r.status)
		dedup, _ := r.body["dedup_key"].(string)
		require.Len(t, dedup, 32)
		require.Contains(t, f.Open(), dedup)
	})
}

func TestFakePagerDuty_Failures(t *testing.T) {
	t.Parallel()
	t.Run("fail next", func(t *testing.T) {
		t.Parallel()
		f := routingtest.NewFakePagerDuty(t)
		f.FailNext(2, http.StatusServiceUnavailable)
		require.Equal(t, http.StatusServiceUnavailable, post(t, f, trigger(key, "a")).status)
		require.Equal(t, http.StatusServiceUnavailable, post(t, f, trigger(key, "a")).status)
		require.Equal(t, http.StatusAccepted, post(t, f, trigger(key, "a")).status)
		require.Equal(t, 3, f.Requests())
		require.Len(t, f.Events(), 1)
	})

	t.Run("rate limit per routing key over a rolling window", func(t *testing.T) {
		t.Parallel()
		var mu sync.Mutex
		now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
		f := routingtest.NewFakePagerDuty(t,
			routingtest.WithPagerDutyRateLimit(2, time.Minute), routingtest.WithPagerDutyClock(clock))
		other := strings.Repeat("o", 32)

		require.Equal(t, http.StatusAccepted, post(t, f, trigger(key, "a")).status)
		advance(30 * time.Second)
		require.Equal(t, http.StatusAccepted, post(t, f, trigger(key, "b")).status)
		r := post(t, f, trigger(key, "c"))
		require.Equal(t, http.StatusTooManyRequests, r.status)
		require.Equal(t, "throttle event", r.body["status"])
		require.Equal(t, http.StatusAccepted, post(t, f, trigger(other, "d")).status)
		advance(31 * time.Second) // the first event leaves the window
		require.Equal(t, http.StatusAccepted, post(t, f, trigger(key, "c")).status)
		require.Equal(t, []string{"a", "b", "c", "d"}, f.OpenKeys())
	})

	t.Run("slow response gives way to the client", func(t *testing.T) {
		t.Parallel()
		f := routingtest.NewFakePagerDuty(t)
		f.SetDelay(time.Minute)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.URL()+routingtest.PagerDutyEnqueuePath, strings.NewReader(trigger(key, "a")))
		require.NoError(t, err)
		client := &http.Client{Timeout: 50 * time.Millisecond}
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
		}
		require.Error(t, err)
		require.Empty(t, f.Events())
	})

	t.Run("wrong method and path", func(t *testing.T) {
		t.Parallel()
		f := routingtest.NewFakePagerDuty(t)
		tests := []struct {
			method, path string
			want         int
		}{
			{http.MethodGet, routingtest.PagerDutyEnqueuePath, http.StatusMethodNotAllowed},
			{http.MethodPost, "/v2/change/enqueue", http.StatusNotFound},
		}
		for _, tt := range tests {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, f.URL()+tt.path, strings.NewReader("{}"))
			require.NoError(t, err)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			require.Equal(t, tt.want, resp.StatusCode)
		}
	})
}
