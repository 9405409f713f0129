package incident

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/alertmanager/template"
)

// DecodeIdentity decodes and validates a webhook body like DecodeMessage,
// but keeps only what committing a delivery needs: the version, group key,
// receiver, status and external URL, and each alert's status, fingerprint,
// times and generator URL. Label and annotation sets are checked to be what
// DecodeMessage would decode (JSON objects of strings), not built: the maps
// were most of the decoding's CPU and garbage. The message is a Partial one
// (see Delivery.Partial): whatever needs its labels decodes the raw bytes.
//
// It accepts nothing that DecodeMessage refuses (FuzzDecodeIdentity checks
// it); it may refuse what DecodeMessage accepts, and callers that must not
// refuse a valid payload fall back to DecodeMessage when it does.
func DecodeIdentity(body []byte) (*Message, error) {
	lm := identityMessages.Get().(*identityMessage)
	defer releaseIdentity(lm)
	if err := unmarshal(body, lm); err != nil {
		return nil, err
	}
	// DecodeMessage's Data stays nil when the body has none of its keys;
	// its alerts are then empty, which Validate refuses alike.
	m := &Message{
		Data:    &template.Data{Receiver: lm.Receiver, Status: lm.Status, ExternalURL: lm.ExternalURL, NotificationReason: lm.NotificationReason},
		Version: lm.Version, GroupKey: lm.GroupKey, TruncatedAlerts: lm.TruncatedAlerts,
	}
	if len(lm.Alerts) > 0 {
		m.Alerts = make(template.Alerts, len(lm.Alerts))
		for i, a := range lm.Alerts {
			m.Alerts[i] = template.Alert{Status: a.Status, StartsAt: a.StartsAt, EndsAt: a.EndsAt, GeneratorURL: a.GeneratorURL, Fingerprint: a.Fingerprint}
		}
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	m.Normalize()
	return m, nil
}

// identityMessages recycles what DecodeIdentity decodes into, so that the
// alerts' array is not grown again for every body (it was a tenth of the
// bytes allocated at saturation, docs/benchmarks.md). Everything is copied
// out of it before it is put back.
var identityMessages = sync.Pool{New: func() any { return new(identityMessage) }}

// maxPooledAlerts is the largest alerts array kept for reuse, so that one
// body with many alerts does not stay pinned in memory.
const maxPooledAlerts = 256

// releaseIdentity zeroes lm, keeping the array of its alerts when it is
// small enough, and puts it back in identityMessages. The decoder writes
// into that array's elements without zeroing them first: the fields a body
// leaves out must not keep a previous body's values.
func releaseIdentity(lm *identityMessage) {
	alerts := lm.Alerts[:cap(lm.Alerts)]
	if len(alerts) > maxPooledAlerts {
		alerts = nil
	}
	clear(alerts)
	*lm = identityMessage{Alerts: alerts[:0]}
	identityMessages.Put(lm)
}

// identityMessage has the JSON shape of Message, with kvShape in place of
// every label set.
type identityMessage struct {
	Receiver           string          `json:"receiver"`
	Status             string          `json:"status"`
	Alerts             []identityAlert `json:"alerts"`
	NotificationReason string          `json:"notification_reason"`
	GroupLabels        kvShape         `json:"groupLabels"`
	CommonLabels       kvShape         `json:"commonLabels"`
	CommonAnnotations  kvShape         `json:"commonAnnotations"`
	RouteLabels        kvShape         `json:"routeLabels"`
	ExternalURL        string          `json:"externalURL"`

	Version         string `json:"version"`
	GroupKey        string `json:"groupKey"`
	TruncatedAlerts uint64 `json:"truncatedAlerts"`
}

type identityAlert struct {
	Status       string    `json:"status"`
	Labels       kvShape   `json:"labels"`
	Annotations  kvShape   `json:"annotations"`
	StartsAt     time.Time `json:"startsAt"`
	EndsAt       time.Time `json:"endsAt"`
	GeneratorURL string    `json:"generatorURL"`
	Fingerprint  string    `json:"fingerprint"`
}

// kvShape accepts what decodes into a map[string]string, builds nothing.
type kvShape struct{}

var errNotKV = errors.New("not an object of strings")

// UnmarshalJSON accepts null, or an object whose values are strings or
// null.
func (*kvShape) UnmarshalJSON(b []byte) error {
	if !isKVJSON(b) {
		return errNotKV
	}
	return nil
}

// isKVJSON reports whether b is null or a JSON object of strings and nulls
// (surrounding whitespace allowed). It is stricter than a decoder can be,
// never more lenient: UTF-8 is checked by the caller over the whole body.
func isKVJSON(b []byte) bool {
	i := skipSpace(b, 0)
	if hasAt(b, i, "null") {
		return skipSpace(b, i+4) == len(b)
	}
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipSpace(b, i+1) == len(b)
	}
	for {
		var ok bool
		if i, ok = scanString(b, i); !ok {
			return false
		}
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		if hasAt(b, i, "null") {
			i += 4
		} else if i, ok = scanString(b, i); !ok {
			return false
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return skipSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
}

// scanString returns the index after the JSON string at b[i].
func scanString(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, false
	}
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return 0, false
		case c == '\\':
			i++
			if i >= len(b) {
				return 0, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return 0, false
				}
				for _, h := range b[i+1 : i+5] {
					if !isHex(h) {
						return 0, false
					}
				}
				i += 4
			default:
				return 0, false
			}
		}
	}
	return 0, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func hasAt(b []byte, i int, s string) bool {
	return i+len(s) <= len(b) && string(b[i:i+len(s)]) == s
}
