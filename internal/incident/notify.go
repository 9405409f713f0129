package incident

import (
	"encoding/json"
	"time"
)

// The job kinds that notify people of an incident's changes.
const (
	// JobRoute decides, once per incident, where it goes (the route
	// decision and one Dispatch per target), and on every later change
	// queues a JobDeliver for each of its targets. Its RefID is the
	// incident.
	JobRoute = "route"
	// JobDeliver brings one target (a Slack message, a PagerDuty alert) in
	// step with its incident. Its RefID is the Dispatch.
	JobDeliver = "deliver"
	// JobStorm brings a storm's digest message and its PagerDuty page in
	// step with the storm, and ends the storm when it has been quiet long
	// enough. Its RefID is the storm.
	JobStorm = "storm"
	// JobReroute routes an incident again when a route that was muted by
	// its time intervals when the incident was routed stops being muted
	// (Monday 09:00 for a critical incident that opened on Saturday), and
	// adds the deliveries of the receivers it now chooses. Its RefID is the
	// incident.
	JobReroute = "reroute"
)

// The kinds of decisions.
const (
	// DecisionRoute is the kind of the one routing decision of an incident.
	DecisionRoute = "route"
	// DecisionStorm records that an incident joined a storm: its channel
	// shows it in the storm's digest instead of a message of its own.
	DecisionStorm = "storm"
	// DecisionReroute records the receivers a reroute job added to an
	// incident, and why.
	DecisionReroute = "reroute"
)

// The integrations a Dispatch sends through.
const (
	IntegrationSlack     = "slack"
	IntegrationPagerDuty = "pagerduty"
)

// Decision is one decision taken for an incident, with the reason a person
// can read in Summary and the machine-readable record (for a route
// decision, the route tree's trace) in Detail.
type Decision struct {
	Kind    string          `json:"kind"`
	Summary string          `json:"summary"`
	Detail  json.RawMessage `json:"detail,omitempty"`
	At      time.Time       `json:"at"`
}

// Dispatch is one notification target of an incident, one per receiver,
// integration and config index of the routing decision, and what that
// target was last sent. (Delivery names the webhook request.)
type Dispatch struct {
	ID          int64  `json:"id"`
	IncidentID  int64  `json:"incident_id"`
	Receiver    string `json:"receiver"`
	Integration string `json:"integration"`
	// ConfigIndex is the position among the receiver's configs of that
	// integration (slack_configs[i], pagerduty_configs[i]).
	ConfigIndex int `json:"config_index"`
	// Target is the Slack channel as configured, or the PagerDuty dedup key.
	Target string `json:"target"`
	// ChannelID, TS and Permalink locate the Slack parent message once it
	// is posted.
	ChannelID string `json:"channel_id,omitempty"`
	TS        string `json:"ts,omitempty"`
	Permalink string `json:"permalink,omitempty"`
	// LastAction is what the target was last told: "posted" or "updated"
	// for Slack, "trigger" or "resolve" for PagerDuty.
	LastAction string `json:"last_action,omitempty"`
	LastError  string `json:"last_error,omitempty"`
	// SyncedVersion is the incident version the target shows, with the
	// alert counts of that version, from which the next thread reply says
	// what changed.
	SyncedVersion  int64     `json:"synced_version"`
	SyncedFiring   int       `json:"synced_firing"`
	SyncedResolved int       `json:"synced_resolved"`
	Attempts       int       `json:"attempts"`
	UpdatedAt      time.Time `json:"updated_at"`
	// StormID is the storm the target is part of, 0 for none: its
	// channel's digest (or the storm's PagerDuty page) stands in for a
	// message (or a page) of its own.
	StormID int64 `json:"storm_id,omitempty"`
}
