package incident

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/template"
)

// SupportedVersion is the Alertmanager webhook payload version responder
// understands.
const SupportedVersion = "4"

// The alert and incident statuses, as Alertmanager spells them.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"
)

// Message is the body Alertmanager's webhook notifier POSTs (version 4). It
// embeds template.Data rather than importing notify/webhook, which would
// drag in Alertmanager's cluster, kafka and tracing dependencies.
type Message struct {
	*template.Data

	Version         string `json:"version"`
	GroupKey        string `json:"groupKey"`
	TruncatedAlerts uint64 `json:"truncatedAlerts"`
}

// StateKey identifies one alert state change: an alert (fingerprint) in one
// firing episode (startsAt) reaching one status. Processing is deduplicated on
// it, because Alertmanager delivers at least once.
type StateKey struct {
	Fingerprint string
	StartsAt    time.Time
	Status      string
}

// StateKeys returns the message's alert state changes, sorted.
func (m *Message) StateKeys() []StateKey {
	keys := make([]StateKey, 0, len(m.Alerts))
	for _, a := range m.Alerts {
		keys = append(keys, StateKey{Fingerprint: a.Fingerprint, StartsAt: a.StartsAt.UTC(), Status: a.Status})
	}
	slices.SortFunc(keys, func(a, b StateKey) int {
		if c := strings.Compare(a.Fingerprint, b.Fingerprint); c != 0 {
			return c
		}
		if c := a.StartsAt.Compare(b.StartsAt); c != 0 {
			return c
		}
		return strings.Compare(a.Status, b.Status)
	})
	return keys
}

// StateHash is a digest of the group key and the set of alert state changes
// the message carries. Two deliveries with the same hash carry nothing new for
// each other: an Alertmanager retry, an HA peer's copy or a repeat_interval
// resend. Annotations and other cosmetic fields are deliberately left out.
func (m *Message) StateHash() string {
	h := sha256.New()
	h.Write([]byte(m.GroupKey))
	for _, k := range m.StateKeys() {
		h.Write([]byte{0})
		h.Write([]byte(k.Fingerprint))
		h.Write([]byte{0})
		h.Write([]byte(k.StartsAt.Format(time.RFC3339Nano)))
		h.Write([]byte{0})
		h.Write([]byte(k.Status))
	}
	return hex.EncodeToString(h.Sum(nil))
}
