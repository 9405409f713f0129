package incident_test

import (
	"encoding/json"
	"errors"
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
	addSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzDecodeWebhook(t, body)
	})
}

// addSeeds adds the testdata payloads and hand-made edge cases.
func addSeeds(f *testing.F) {
	f.Helper()
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
		`{"version":"4","groupKey":"g","alerts":[{"status":"firing","labels":{"a":null},"annotations":{},"startsAt":"2026-01-02T03:04:05Z","fingerprint":"f"}]}`,
		`{"version":"4","groupKey":"g","alerts":[{"status":"firing","labels":{"a":"\u00e9\n\"","b":"\x"},"startsAt":"2026-01-02T03:04:05Z","fingerprint":"f"}]}`,
		`{"version":"4","groupKey":"g","alerts":[{"status":"firing","labels":{"a":"b",},"startsAt":"2026-01-02T03:04:05Z","fingerprint":"f"}]}`,
		`{"version":"4","groupKey":"g","alerts":[{"status":"firing","labels":{"a":["b"]},"startsAt":"2026-01-02T03:04:05Z","fingerprint":"f"}]}`,
		`{"version":"4","groupKey":"g","alerts":[{"status":"firing","labels":{"a":"b"}},{"status":"firing","LABELS":"x","startsAt":"2026-01-02T03:04:05Z","fingerprint":"f"}]}`,
		`{"version":"4","groupKey":"g","commonLabels":{"a":"	"},"routeLabels":[],"notification_reason":1,"alerts":[` + alert + `]}`,
		`{"version":"4","groupKey":"g","alerts":[` + alert + `],"alerts":null}`,
	} {
		f.Add([]byte(s))
	}
}

func fuzzDecodeWebhook(t *testing.T, body []byte) {
	t.Helper()
	{
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
	}
}

// FuzzDecodeIdentity checks DecodeIdentity against DecodeMessage: it
// accepts exactly the same bodies (refusing one that DecodeMessage accepts
// would only cost a fallback, but none is known), with the same error code
// when both refuse, and yields the same identity: version, group key,
// receiver, status, the alerts' statuses, fingerprints and times, and so
// the same state hash.
//
//	go test -run='^$' -fuzz=FuzzDecodeIdentity -fuzztime=60s ./internal/incident/
func FuzzDecodeIdentity(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		full, ferr := incident.DecodeMessage(body)
		id, ierr := incident.DecodeIdentity(body)
		if ferr != nil {
			require.Error(t, ierr, "DecodeIdentity accepted a body DecodeMessage refuses (%v)", ferr)
			require.Equal(t, codeOf(ferr), codeOf(ierr), "%v / %v", ferr, ierr)
			return
		}
		require.NoError(t, ierr, "DecodeIdentity refused a body DecodeMessage accepts")
		require.Equal(t, full.StateHash(), id.StateHash())
		require.Equal(t, full.Version, id.Version)
		require.Equal(t, full.GroupKey, id.GroupKey)
		require.Equal(t, full.TruncatedAlerts, id.TruncatedAlerts)
		require.Equal(t, full.Receiver, id.Receiver)
		require.Equal(t, full.Status, id.Status)
		require.Equal(t, full.ExternalURL, id.ExternalURL)
		require.Len(t, id.Alerts, len(full.Alerts))
		for i, a := range full.Alerts {
			b := id.Alerts[i]
			require.Equal(t, a.Status, b.Status)
			require.Equal(t, a.Fingerprint, b.Fingerprint)
			require.Equal(t, a.GeneratorURL, b.GeneratorURL)
			require.Equal(t, stampOf(a.StartsAt), stampOf(b.StartsAt))
			require.Equal(t, stampOf(a.EndsAt), stampOf(b.EndsAt))
		}
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

func codeOf(err error) string {
	var ie *incident.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}
