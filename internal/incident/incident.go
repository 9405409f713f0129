package incident

import (
	"crypto/sha256"
	"time"
)

// Incident is one firing episode of one Alertmanager group: it opens when the
// group's first alert fires and resolves when all of them have resolved. A
// group that fires again afterwards opens a new incident (the next episode).
type Incident struct {
	ID                int64             `json:"id"`
	GroupKey          string            `json:"group_key"`
	Episode           int               `json:"episode"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"group_labels"`
	CommonLabels      map[string]string `json:"common_labels"`
	CommonAnnotations map[string]string `json:"common_annotations"`
	ExternalURL       string            `json:"external_url,omitempty"`
	OpenedAt          time.Time         `json:"opened_at"`
	UpdatedAt         time.Time         `json:"updated_at"`
	ResolvedAt        *time.Time        `json:"resolved_at,omitempty"`
	FiringAlerts      int               `json:"firing_alerts"`
	ResolvedAlerts    int               `json:"resolved_alerts"`
	// Version is bumped by every applied change, so that notification
	// targets can tell whether they show the latest state.
	Version int64 `json:"version"`

	// The fields below are filled only when one incident is read in full.
	Alerts        []Alert           `json:"alerts,omitempty"`
	History       []Change          `json:"history,omitempty"`
	Notifications []NotificationRef `json:"notifications,omitempty"`
	Jobs          []Job             `json:"jobs,omitempty"`
	Decisions     []Decision        `json:"decisions,omitempty"`
	Deliveries    []Dispatch        `json:"deliveries,omitempty"`
	// Context is the gathered context, nil until it is gathered.
	Context *Context `json:"context,omitempty"`
	// Remediation holds the incident's remediation runs with their audit
	// trails.
	Remediation []RemediationRun `json:"remediation,omitempty"`
}

// Alert is the current state of one alert (fingerprint and startsAt) within
// an incident.
type Alert struct {
	Fingerprint  string            `json:"fingerprint"`
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"starts_at"`
	EndsAt       *time.Time        `json:"ends_at,omitempty"`
	GeneratorURL string            `json:"generator_url,omitempty"`
	UpdatedAt    time.Time         `json:"updated_at"`
}

// Change is one alert state change, recorded exactly once however many times
// Alertmanager delivers it.
type Change struct {
	Fingerprint    string    `json:"fingerprint"`
	StartsAt       time.Time `json:"starts_at"`
	Status         string    `json:"status"`
	At             time.Time `json:"at"`
	NotificationID int64     `json:"notification_id"`
}

// NotificationRef is one webhook delivery as stored.
type NotificationRef struct {
	ID         int64     `json:"id"`
	ReceivedAt time.Time `json:"received_at"`
	Status     string    `json:"status"`
	Reason     string    `json:"reason,omitempty"`
	Alerts     int       `json:"alerts"`
	// TruncatedAlerts is how many alerts Alertmanager left out of the
	// notification (webhook_configs max_alerts); its status counts only
	// the alerts it kept.
	TruncatedAlerts int64 `json:"truncated_alerts,omitempty"`
}

// The states of a stored notification.
const (
	NotificationPending   = "pending"
	NotificationProcessed = "processed"
	NotificationDuplicate = "duplicate"
	// NotificationRetry is a notification whose apply failed; an ingest job
	// retries it with backoff.
	NotificationRetry = "retry"
)

// Transition says what applying a notification did to its incident.
type Transition string

// The transitions, in the words the console prints.
const (
	TransitionOpened    Transition = "opened"
	TransitionUpdated   Transition = "updated"
	TransitionResolved  Transition = "resolved"
	TransitionDuplicate Transition = "duplicate"
)

// Applied is the outcome of applying one notification.
type Applied struct {
	// Already is true when the notification had been applied before (a job
	// that ran again after a crash); nothing changed this time.
	Already     bool
	Transition  Transition
	Incident    Incident
	NewFiring   int
	NewResolved int
	// TruncatedAlerts is the applied notification's truncatedAlerts.
	TruncatedAlerts uint64
}

// The sizes of a page of a list: DefaultLimit when none is asked for, at
// most MaxLimit.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// PageLimit is the number of entries a list asked for n entries returns
// at most.
func PageLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultLimit
	case n > MaxLimit:
		return MaxLimit
	}
	return n
}

// ListFilter narrows a list of incidents.
type ListFilter struct {
	Status string
	Limit  int
	// Before, when positive, lists only incidents with a smaller id: the
	// page after one whose last (oldest) incident had this id.
	Before int64
}

// JobFilter narrows a list of jobs.
type JobFilter struct {
	// State, when set, lists only jobs in that state.
	State string
	Limit int
	// Before, when positive, lists only jobs with a smaller id: the page
	// after one whose last (oldest) job had this id.
	Before int64
}

// Delivery is one webhook request, decoded and validated, ready to commit.
type Delivery struct {
	Message    *Message
	Raw        []byte
	ReceivedAt time.Time
	// Digest, when not zero, is the SHA-256 of Raw.
	Digest [sha256.Size]byte
	// StateHash, when set, is Message.StateHash(), computed by the caller.
	StateHash string
	// Partial says that Message holds only what committing a delivery
	// needs, no labels or annotations: what DecodeIdentity keeps, or, for
	// bytes the webhook remembered from a committed delivery, the version,
	// group key, receiver, status and one alert per alert with its status
	// only. StateHash is then set, and whatever needs the rest decodes Raw.
	Partial bool
}

// Hash returns the delivery's state hash (Message.StateHash).
func (d Delivery) Hash() string {
	if d.StateHash != "" {
		return d.StateHash
	}
	return d.Message.StateHash()
}

// Receipt is what committing a Delivery produced.
type Receipt struct {
	NotificationID int64
	// Duplicate is true when an earlier notification carried exactly the
	// same alert state changes; nothing more will be done for this one.
	Duplicate bool
}
