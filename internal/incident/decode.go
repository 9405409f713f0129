package incident

import (
	"time"
	"unicode/utf8"

	gojson "github.com/goccy/go-json"
)

// DecodeMessage decodes and validates an Alertmanager webhook body. Every
// error is an *Error of kind Invalid: the input can never be accepted as it
// is, so Alertmanager must not retry it.
//
// It uses goccy/go-json, which decodes the payload 3–4× faster than
// encoding/json (see docs/benchmarks.md); a differential fuzz test keeps the
// two in agreement on what they accept and produce.
func DecodeMessage(body []byte) (*Message, error) {
	return decodeMessage(body, false)
}

// DecodeStored decodes a notification that was committed earlier, for
// applying it. Versions before the notification's status was checked
// committed any status; such a notification is read with the status
// Alertmanager would have given it (firing when any of its alerts fires), so
// that an upgrade does not refuse what was acknowledged with a 200.
func DecodeStored(body []byte) (*Message, error) {
	return decodeMessage(body, true)
}

// decodeMessage decodes, validates and normalizes a body; stored gives a
// notification an unknown status the one Alertmanager would have given it.
func decodeMessage(body []byte, stored bool) (*Message, error) {
	var m Message
	if err := unmarshal(body, &m); err != nil {
		return nil, err
	}
	if stored && m.Data != nil && m.Status != StatusFiring && m.Status != StatusResolved {
		m.Status = StatusResolved
		for _, a := range m.Alerts {
			if a.Status == StatusFiring {
				m.Status = StatusFiring
				break
			}
		}
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	m.Normalize()
	return &m, nil
}

// unmarshal decodes a body into v, refusing invalid UTF-8: decoders replace
// it with U+FFFD silently, and a mangled label value must be refused, not
// stored altered.
func unmarshal(body []byte, v any) error {
	if !utf8.Valid(body) {
		return invalid("invalid_utf8", "payload contains invalid UTF-8")
	}
	if err := gojson.Unmarshal(body, v); err != nil {
		return &Error{Kind: Invalid, Code: "malformed_json", Msg: "malformed JSON payload", Err: err}
	}
	return nil
}

// Normalize cuts every alert's startsAt and endsAt to the millisecond.
// Alertmanager's webhook carries them to the nanosecond, its API v2 to the
// millisecond; cut alike, an alert state change read from either has the
// same identity (StateKey), so that reconciliation and a late webhook apply
// it once.
func (m *Message) Normalize() {
	if m.Data == nil {
		return
	}
	for i := range m.Alerts {
		a := &m.Alerts[i]
		a.StartsAt = a.StartsAt.Truncate(time.Millisecond)
		a.EndsAt = a.EndsAt.Truncate(time.Millisecond)
	}
}

// Validate checks what responder relies on: the version, a group key, a
// known status, at least one alert, each with a fingerprint, a start time and
// a known status, and valid UTF-8 in every string that is stored or shown.
// The notification's status need not agree with its alerts' (a notification
// from which Alertmanager left alerts out counts only the ones it kept).
func (m *Message) Validate() error {
	if m.Version != SupportedVersion {
		return invalid("unsupported_version", "unsupported payload version %q (want %q)", Clip(m.Version, 16), SupportedVersion)
	}
	if m.GroupKey == "" {
		return invalid("missing_group_key", "groupKey is required")
	}
	if m.Data == nil || len(m.Alerts) == 0 {
		return invalid("missing_alerts", "alerts are required")
	}
	if !utf8.ValidString(m.GroupKey) || !utf8.ValidString(m.Receiver) || !utf8.ValidString(m.ExternalURL) || !utf8.ValidString(m.Status) {
		return invalid("invalid_utf8", "payload contains invalid UTF-8")
	}
	for _, kv := range []map[string]string{m.GroupLabels, m.CommonLabels, m.CommonAnnotations, m.RouteLabels} {
		if !validKV(kv) {
			return invalid("invalid_utf8", "payload contains invalid UTF-8")
		}
	}
	if m.Status != StatusFiring && m.Status != StatusResolved {
		return invalid("invalid_status", "status must be %q or %q", StatusFiring, StatusResolved)
	}
	for i, a := range m.Alerts {
		switch {
		case a.Status != StatusFiring && a.Status != StatusResolved:
			return invalid("invalid_alert", "alerts[%d]: status must be %q or %q", i, StatusFiring, StatusResolved)
		case a.Fingerprint == "" || !utf8.ValidString(a.Fingerprint):
			return invalid("invalid_alert", "alerts[%d]: fingerprint is required", i)
		case a.StartsAt.IsZero():
			return invalid("invalid_alert", "alerts[%d]: startsAt is required", i)
		case !validKV(a.Labels) || !validKV(a.Annotations) || !utf8.ValidString(a.GeneratorURL):
			return invalid("invalid_utf8", "alerts[%d]: invalid UTF-8 in labels or annotations", i)
		}
	}
	return nil
}

func invalid(code, format string, args ...any) *Error {
	e := Errorf(Invalid, format, args...)
	e.Code = code
	return e
}

func validKV(kv map[string]string) bool {
	for k, v := range kv {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return false
		}
	}
	return true
}

// Clip shortens s to at most n bytes, cut at a rune boundary, ending with
// "…" when it cut: for text quoted in errors and messages.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
