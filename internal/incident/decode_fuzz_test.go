package incident_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/alertmanager/template"
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
)

// FuzzDecodeWebhook checks that DecodeMessage never panics, classifies every
// rejection as Invalid, and agrees with encoding/json: whatever goccy/go-json
// accepts, encoding/json accepts too and decodes to the same Message.
//
//	go test -run='^$' -fuzz=FuzzDecodeWebhook -fuzztime=60s ./internal/incident/
func FuzzDecodeWebhook(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("..", "..", "testdata", "*.json"))
	require.NoError(f, err)
	require.NotEmpty(f, seeds)
	for _, p := range seeds {
		b, err := fs.ReadFile(os.DirFS(filepath.Dir(p)), filepath.Base(p))
		require.NoError(f, err)
		f.Add(b)
	}
	const alert = `{"status":"firing","labels":{"a":"b"},"startsAt":"2026-01-02T03:04:05Z","fingerprint":"f"}`
	for _, s := range []string{
		``,
		`null`,
		`{}`,
		`[]`,
		`{"version":"4","groupKey":"g","alerts":[` + alert + `]}`,
		`{"version":"4","groupKey":"g","alerts":[` + alert + `]} trailing`,
		`{"version":"4","groupKey":"g","alerts":[` + alert + `],"version":"3"}`,
		`{"VERSION":"4","GroupKey":"g","Alerts":[` + alert + `]}`,
		`{"version":"4","groupKey":"g\u0000","alerts":[` + alert + `]}`,
		`{"version":"4","groupKey":"\ud800","alerts":[` + alert + `]}`,
		`{"version":"4","groupKey":"g","truncatedAlerts":-1,"alerts":[` + alert + `]}`,
		`{"version":"4","groupKey":"g","truncatedAlerts":1e2,"alerts":[` + alert + `]}`,
		`{"version":"4","groupKey":"g","truncatedAlerts":18446744073709551616,"alerts":[` + alert + `]}`,
		`{"version":"4","groupKey":"g","alerts":[{"status":"firing","startsAt":"2026-01-02T03:04:05+02:00","fingerprint":"f"}]}`,
		`{"version":"4","groupKey":"g","alerts":[{"status":"firing","startsAt":"2026-01-02T03:04:05.999999999999Z","fingerprint":"f"}]}`,
		`{"version":"4","groupKey":"g","alerts":[{"status":"firing","startsAt":null,"fingerprint":"f"}]}`,
		`{"version":"4","groupKey":"g","alerts":[{"status":"firing","labels":null,"startsAt":"2026-01-02T03:04:05Z","fingerprint":"f"}]}`,
		`{"version":"4","groupKey":"g","receiver":null,"alerts":[` + alert + `,` + alert + `]}`,
		`{"version":"4","groupKey":"g","alerts":[{"status":"firing","labels":{"a":"b","a":"c"},"startsAt":"2026-01-02T03:04:05Z","fingerprint":"f"}]}`,
		`{"version":"4","groupKey":"g","alerts":[{"status":"firing","labels":{"a":"` + "\xff" + `"},"startsAt":"2026-01-02T03:04:05Z","fingerprint":"f"}]}`,
		`{"version":"4","groupKey":"g","alerts":[{"status":"firing","labels":{"a":1},"startsAt":"2026-01-02T03:04:05Z","fingerprint":"f"}]}`,
		` {"version" : "4" , "groupKey" : "g" , "alerts" : [ ` + alert + ` ] } `,
	} {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := incident.DecodeMessage(body)
		if err != nil {
			require.Nil(t, got)
			var ie *incident.Error
			require.ErrorAs(t, err, &ie)
			require.Equal(t, incident.Invalid, ie.Kind, "error %v", err)
			require.NotEmpty(t, ie.Code)
			// goccy rejected: encoding/json must not accept the same bytes as a
			// valid message, unless the input is not UTF-8 (encoding/json
			// silently replaces invalid bytes with U+FFFD; we refuse them).
			if !utf8.Valid(body) {
				return
			}
			var std incident.Message
			if json.Unmarshal(body, &std) == nil && std.Validate() == nil {
				t.Fatalf("goccy/go-json rejected a body that encoding/json accepts as a valid message: %v", err)
			}
			return
		}
		require.NotNil(t, got)
		require.NoError(t, got.Validate())
		// Both decoders replace invalid UTF-8 with U+FFFD; accepting such a
		// body would store and show something Alertmanager never sent.
		require.True(t, utf8.Valid(body), "DecodeMessage accepted a body that is not valid UTF-8")

		var std incident.Message
		require.NoError(t, json.Unmarshal(body, &std), "DecodeMessage accepted a body that encoding/json rejects")
		require.NoError(t, std.Validate())
		std.Normalize()
		wantMsg, wantTimes := normalise(t, &std)
		gotMsg, gotTimes := normalise(t, got)
		require.Equal(t, wantMsg, gotMsg)
		require.Equal(t, wantTimes, gotTimes)
		require.Equal(t, std.StateHash(), got.StateHash())
	})
}

// stamp is a time as an instant plus its zone offset: two decoders may
// allocate distinct *time.Location values for the same fixed zone, which
// require.Equal would otherwise compare.
type stamp struct {
	Sec    int64
	Nsec   int
	Offset int
}

func stampOf(t time.Time) stamp {
	_, off := t.Zone()
	return stamp{Sec: t.Unix(), Nsec: t.Nanosecond(), Offset: off}
}

// normalise returns a copy of m with every time replaced by the zero time,
// and the times themselves as stamps, in order.
func normalise(t *testing.T, m *incident.Message) (incident.Message, []stamp) {
	t.Helper()
	out := *m
	if m.Data == nil {
		return out, nil
	}
	d := *m.Data
	d.Alerts = make(template.Alerts, len(m.Alerts))
	var stamps []stamp
	for i, a := range m.Alerts {
		stamps = append(stamps, stampOf(a.StartsAt), stampOf(a.EndsAt))
		a.StartsAt, a.EndsAt = time.Time{}, time.Time{}
		d.Alerts[i] = a
	}
	out.Data = &d
	return out, stamps
}
