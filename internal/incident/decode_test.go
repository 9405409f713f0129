package incident_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/template"
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
)

// readFixture reads a payload from the repository's testdata directory.
func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := fs.ReadFile(os.DirFS(filepath.Join("..", "..", "testdata")), name)
	require.NoError(t, err)
	return b
}

// editFixture decodes a fixture into a generic map, applies edit, and
// re-encodes it, so that each case states only what it changes.
func editFixture(t testing.TB, name string, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(readFixture(t, name), &m))
	edit(m)
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return b
}

func alertAt(m map[string]any, i int) map[string]any {
	return m["alerts"].([]any)[i].(map[string]any)
}

func TestDecodeMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		body     []byte
		wantCode string // "" means accepted
	}{
		{name: "firing fixture", body: readFixture(t, "am_v4_firing.json")},
		{name: "resolved fixture", body: readFixture(t, "am_v4_resolved.json")},
		{name: "ten alerts fixture", body: readFixture(t, "am_v4_firing_10.json")},
		{name: "unknown fields are ignored", body: editFixture(t, "am_v4_firing.json", func(m map[string]any) {
			m["somethingNew"] = map[string]any{"x": 1}
			alertAt(m, 0)["extra"] = true
		})},
		{name: "not JSON", body: []byte("not json"), wantCode: "malformed_json"},
		{name: "empty body", body: nil, wantCode: "malformed_json"},
		{name: "truncated JSON", body: readFixture(t, "am_v4_firing.json")[:100], wantCode: "malformed_json"},
		{name: "JSON array", body: []byte(`[]`), wantCode: "malformed_json"},
		{name: "wrong type for alerts", body: []byte(`{"version":"4","groupKey":"g","alerts":"x"}`), wantCode: "malformed_json"},
		{name: "version 3", body: editFixture(t, "am_v4_firing.json", func(m map[string]any) { m["version"] = "3" }), wantCode: "unsupported_version"},
		{name: "version missing", body: editFixture(t, "am_v4_firing.json", func(m map[string]any) { delete(m, "version") }), wantCode: "unsupported_version"},
		{name: "version as number", body: editFixture(t, "am_v4_firing.json", func(m map[string]any) { m["version"] = 4 }), wantCode: "malformed_json"},
		{name: "group key missing", body: editFixture(t, "am_v4_firing.json", func(m map[string]any) { delete(m, "groupKey") }), wantCode: "missing_group_key"},
		{name: "alerts empty", body: editFixture(t, "am_v4_firing.json", func(m map[string]any) { m["alerts"] = []any{} }), wantCode: "missing_alerts"},
		{name: "alerts absent", body: editFixture(t, "am_v4_firing.json", func(m map[string]any) { delete(m, "alerts") }), wantCode: "missing_alerts"},
		{name: "only envelope fields", body: []byte(`{"version":"4","groupKey":"g"}`), wantCode: "missing_alerts"},
		{name: "status unknown", body: editFixture(t, "am_v4_firing.json", func(m map[string]any) { m["status"] = "pending" }), wantCode: "invalid_status"},
		{name: "status missing", body: editFixture(t, "am_v4_firing.json", func(m map[string]any) { delete(m, "status") }), wantCode: "invalid_status"},
		{name: "alert status unknown", body: editFixture(t, "am_v4_firing.json", func(m map[string]any) { alertAt(m, 1)["status"] = "pending" }), wantCode: "invalid_alert"},
		{name: "alert fingerprint missing", body: editFixture(t, "am_v4_firing.json", func(m map[string]any) { delete(alertAt(m, 0), "fingerprint") }), wantCode: "invalid_alert"},
		{name: "alert startsAt missing", body: editFixture(t, "am_v4_firing.json", func(m map[string]any) { delete(alertAt(m, 0), "startsAt") }), wantCode: "invalid_alert"},
		{name: "alert startsAt not a time", body: editFixture(t, "am_v4_firing.json", func(m map[string]any) { alertAt(m, 0)["startsAt"] = "yesterday" }), wantCode: "malformed_json"},
		{name: "invalid UTF-8 in a label value", body: []byte(`{"version":"4","groupKey":"g","alerts":[{"status":"firing","labels":{"a":"` + "\xff" + `"},"startsAt":"2026-01-02T03:04:05Z","fingerprint":"f"}]}`), wantCode: "invalid_utf8"},
		{name: "invalid UTF-8 in the group key", body: []byte(`{"version":"4","groupKey":"` + "\xc3\x28" + `","alerts":[{"status":"firing","startsAt":"2026-01-02T03:04:05Z","fingerprint":"f"}]}`), wantCode: "invalid_utf8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := incident.DecodeMessage(tt.body)
			if tt.wantCode == "" {
				require.NoError(t, err)
				require.NotNil(t, got)
				require.NotEmpty(t, got.Alerts)
				return
			}
			require.Nil(t, got)
			var ie *incident.Error
			require.ErrorAs(t, err, &ie)
			require.Equal(t, incident.Invalid, ie.Kind)
			require.Equal(t, tt.wantCode, ie.Code)
			require.NotEmpty(t, ie.Error())
		})
	}
}

func TestDecodeMessageFields(t *testing.T) {
	t.Parallel()
	m, err := incident.DecodeMessage(readFixture(t, "am_v4_resolved.json"))
	require.NoError(t, err)
	require.Equal(t, "4", m.Version)
	require.Equal(t, `{}/{severity="critical"}:{alertname="CheckoutLatencyHigh"}`, m.GroupKey)
	require.Equal(t, "resolved", m.Status)
	require.Equal(t, "responder", m.Receiver)
	require.Equal(t, "CheckoutLatencyHigh", m.GroupLabels["alertname"])
	require.Len(t, m.Alerts, 2)
	a := m.Alerts[0]
	require.Equal(t, "6a4f37c34a2d1e00", a.Fingerprint)
	require.Equal(t, "resolved", a.Status)
	require.Equal(t, "checkout-7d9f8b6c5-00000", a.Labels["pod"])
	require.True(t, a.StartsAt.Equal(time.Date(2026, 11, 25, 14, 4, 5, 123000000, time.UTC)), "startsAt %s is cut to the millisecond, as Alertmanager's API has it", a.StartsAt)
	require.True(t, a.EndsAt.Equal(time.Date(2026, 11, 25, 14, 31, 5, 0, time.UTC)), "endsAt %s", a.EndsAt)
}

func validMessage() *incident.Message {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &incident.Message{
		Data: &template.Data{
			Receiver: "r", Status: "firing",
			Alerts: template.Alerts{
				{Status: "firing", Fingerprint: "a", StartsAt: start, Labels: template.KV{"alertname": "A"}},
				{Status: "resolved", Fingerprint: "b", StartsAt: start, EndsAt: start.Add(time.Minute)},
			},
			GroupLabels: template.KV{"alertname": "A"},
		},
		Version:  "4",
		GroupKey: "{}:{alertname=\"A\"}",
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		edit     func(m *incident.Message)
		wantCode string
	}{
		{name: "valid", edit: func(*incident.Message) {}},
		{name: "version empty", edit: func(m *incident.Message) { m.Version = "" }, wantCode: "unsupported_version"},
		{name: "version 5", edit: func(m *incident.Message) { m.Version = "5" }, wantCode: "unsupported_version"},
		{name: "group key empty", edit: func(m *incident.Message) { m.GroupKey = "" }, wantCode: "missing_group_key"},
		{name: "data nil", edit: func(m *incident.Message) { m.Data = nil }, wantCode: "missing_alerts"},
		{name: "alerts nil", edit: func(m *incident.Message) { m.Alerts = nil }, wantCode: "missing_alerts"},
		{name: "notification status empty", edit: func(m *incident.Message) { m.Status = "" }, wantCode: "invalid_status"},
		{name: "notification status capitalised", edit: func(m *incident.Message) { m.Status = "Firing" }, wantCode: "invalid_status"},
		{name: "status empty", edit: func(m *incident.Message) { m.Alerts[0].Status = "" }, wantCode: "invalid_alert"},
		{name: "status capitalised", edit: func(m *incident.Message) { m.Alerts[1].Status = "Resolved" }, wantCode: "invalid_alert"},
		{name: "fingerprint empty", edit: func(m *incident.Message) { m.Alerts[1].Fingerprint = "" }, wantCode: "invalid_alert"},
		{name: "fingerprint invalid UTF-8", edit: func(m *incident.Message) { m.Alerts[1].Fingerprint = "\xff" }, wantCode: "invalid_alert"},
		{name: "startsAt zero", edit: func(m *incident.Message) { m.Alerts[0].StartsAt = time.Time{} }, wantCode: "invalid_alert"},
		{name: "receiver invalid UTF-8", edit: func(m *incident.Message) { m.Receiver = "\xff" }, wantCode: "invalid_utf8"},
		{name: "external URL invalid UTF-8", edit: func(m *incident.Message) { m.ExternalURL = "\xfe" }, wantCode: "invalid_utf8"},
		{name: "status invalid UTF-8", edit: func(m *incident.Message) { m.Status = "\xfe" }, wantCode: "invalid_utf8"},
		{name: "group label key invalid UTF-8", edit: func(m *incident.Message) { m.GroupLabels["\xff"] = "x" }, wantCode: "invalid_utf8"},
		{name: "common annotation invalid UTF-8", edit: func(m *incident.Message) { m.CommonAnnotations = template.KV{"s": "\xff"} }, wantCode: "invalid_utf8"},
		{name: "route label invalid UTF-8", edit: func(m *incident.Message) { m.RouteLabels = template.KV{"s": "\xff"} }, wantCode: "invalid_utf8"},
		{name: "alert label invalid UTF-8", edit: func(m *incident.Message) { m.Alerts[0].Labels["x"] = "\xff" }, wantCode: "invalid_utf8"},
		{name: "alert annotation invalid UTF-8", edit: func(m *incident.Message) { m.Alerts[1].Annotations = template.KV{"x": "\xff"} }, wantCode: "invalid_utf8"},
		{name: "generator URL invalid UTF-8", edit: func(m *incident.Message) { m.Alerts[1].GeneratorURL = "\xff" }, wantCode: "invalid_utf8"},
		{name: "overlong version is truncated in the message", edit: func(m *incident.Message) { m.Version = "4444444444444444444444444444" }, wantCode: "unsupported_version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := validMessage()
			tt.edit(m)
			err := m.Validate()
			if tt.wantCode == "" {
				require.NoError(t, err)
				return
			}
			var ie *incident.Error
			require.ErrorAs(t, err, &ie)
			require.Equal(t, incident.Invalid, ie.Kind)
			require.Equal(t, tt.wantCode, ie.Code)
			require.Equal(t, incident.Invalid, incident.KindOf(err))
			require.Less(t, len(ie.Error()), 200, "error message must stay short: %q", ie.Error())
		})
	}
}

func TestStateHash(t *testing.T) {
	t.Parallel()
	base := validMessage().StateHash()
	require.Len(t, base, 64)

	tests := []struct {
		name     string
		edit     func(m *incident.Message)
		wantSame bool
	}{
		{name: "unchanged", edit: func(*incident.Message) {}, wantSame: true},
		{name: "alerts reordered", edit: func(m *incident.Message) {
			m.Alerts[0], m.Alerts[1] = m.Alerts[1], m.Alerts[0]
		}, wantSame: true},
		{name: "annotations differ", edit: func(m *incident.Message) {
			m.Alerts[0].Annotations = template.KV{"summary": "something else"}
			m.CommonAnnotations = template.KV{"summary": "x"}
		}, wantSame: true},
		{name: "cosmetic envelope fields differ", edit: func(m *incident.Message) {
			m.Receiver, m.ExternalURL, m.TruncatedAlerts = "other", "http://am2", 3
			m.Alerts[0].GeneratorURL = "http://prom2/graph"
			m.Alerts[1].EndsAt = m.Alerts[1].EndsAt.Add(time.Hour)
		}, wantSame: true},
		{name: "same instant in another zone", edit: func(m *incident.Message) {
			m.Alerts[0].StartsAt = m.Alerts[0].StartsAt.In(time.FixedZone("CET", 3600))
		}, wantSame: true},
		{name: "a status differs", edit: func(m *incident.Message) { m.Alerts[0].Status = "resolved" }},
		{name: "group key differs", edit: func(m *incident.Message) { m.GroupKey += "x" }},
		{name: "startsAt differs", edit: func(m *incident.Message) { m.Alerts[0].StartsAt = m.Alerts[0].StartsAt.Add(time.Nanosecond) }},
		{name: "fingerprint differs", edit: func(m *incident.Message) { m.Alerts[0].Fingerprint = "c" }},
		{name: "an alert added", edit: func(m *incident.Message) {
			m.Alerts = append(m.Alerts, template.Alert{Status: "firing", Fingerprint: "c", StartsAt: m.Alerts[0].StartsAt})
		}},
		{name: "an alert removed", edit: func(m *incident.Message) { m.Alerts = m.Alerts[:1] }},
		{name: "field boundary moved between group key and fingerprint", edit: func(m *incident.Message) {
			m.GroupKey += "a"
			m.Alerts[0].Fingerprint = ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := validMessage()
			tt.edit(m)
			got := m.StateHash()
			if tt.wantSame {
				require.Equal(t, base, got)
			} else {
				require.NotEqual(t, base, got)
			}
		})
	}
}

func TestStateHashFixtures(t *testing.T) {
	t.Parallel()
	firing, err := incident.DecodeMessage(readFixture(t, "am_v4_firing.json"))
	require.NoError(t, err)
	resolved, err := incident.DecodeMessage(readFixture(t, "am_v4_resolved.json"))
	require.NoError(t, err)
	require.NotEqual(t, firing.StateHash(), resolved.StateHash())

	// An HA peer's copy differs only in annotations: a duplicate.
	peer, err := incident.DecodeMessage(editFixture(t, "am_v4_firing.json", func(m map[string]any) {
		alertAt(m, 0)["annotations"] = map[string]any{"summary": "reworded"}
		m["notification_reason"] = "repeat interval elapsed"
	}))
	require.NoError(t, err)
	require.Equal(t, firing.StateHash(), peer.StateHash())

	keys := firing.StateKeys()
	require.Len(t, keys, 2)
	require.Equal(t, "6a4f37c34a2d1e00", keys[0].Fingerprint)
	require.Equal(t, time.UTC, keys[0].StartsAt.Location())
}

// A notification committed before its status was checked is applied with
// the status Alertmanager gives a group, not refused after an upgrade; what
// the webhook refuses for other reasons stays refused.
func TestDecodeStored(t *testing.T) {
	for _, tc := range []struct {
		name, status string
		alerts       []string
		want         string
	}{
		{name: "missing, one alert firing", alerts: []string{"resolved", "firing"}, want: "firing"},
		{name: "unknown, all resolved", status: "pending", alerts: []string{"resolved", "resolved"}, want: "resolved"},
		{name: "known status kept", status: "resolved", alerts: []string{"firing", "resolved"}, want: "resolved"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := editFixture(t, "am_v4_firing.json", func(m map[string]any) {
				delete(m, "status")
				if tc.status != "" {
					m["status"] = tc.status
				}
				m["alerts"] = m["alerts"].([]any)[:2]
				for i, st := range tc.alerts {
					alertAt(m, i)["status"] = st
				}
			})
			_, err := incident.DecodeMessage(body)
			if tc.status != "resolved" {
				require.ErrorContains(t, err, "status must be", "the webhook refuses it")
			}
			m, err := incident.DecodeStored(body)
			require.NoError(t, err)
			require.Equal(t, tc.want, m.Status)
		})
	}
	_, err := incident.DecodeStored(editFixture(t, "am_v4_firing.json", func(m map[string]any) { m["status"] = "x"; m["version"] = "3" }))
	require.ErrorContains(t, err, "unsupported payload version")
}

// DecodeIdentity reuses what it decodes into: a body that leaves fields
// out must not show the values of the body decoded before it.
func TestDecodeIdentity_KeepsNothingOfThePreviousBody(t *testing.T) {
	full := readFixture(t, "am_v4_firing_10.json")
	bare := editFixture(t, "am_v4_firing_10.json", func(m map[string]any) {
		delete(m, "externalURL")
		delete(m, "truncatedAlerts")
		for _, a := range m["alerts"].([]any) {
			delete(a.(map[string]any), "generatorURL")
			delete(a.(map[string]any), "endsAt")
		}
	})
	// sync.Pool may drop what it is given (always under -race, now and
	// then): many rounds make the reuse all but certain.
	for range 50 {
		_, err := incident.DecodeIdentity(full)
		require.NoError(t, err)
		m, err := incident.DecodeIdentity(bare)
		require.NoError(t, err)
		require.Empty(t, m.ExternalURL)
		require.Len(t, m.Alerts, 10)
		for _, a := range m.Alerts {
			require.Empty(t, a.GeneratorURL)
			require.True(t, a.EndsAt.IsZero(), "endsAt %v", a.EndsAt)
		}
	}
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"v4", 16, "v4"},
		{"version-4-and-more", 9, "version-4…"},
		{"h€llo", 2, "h…"}, // never inside the 3-byte €
		{"h€llo", 4, "h€…"},
		{"€", 0, "…"},
	} {
		require.Equal(t, tc.want, incident.Clip(tc.in, tc.n), "%q, %d", tc.in, tc.n)
	}
}
