package incident

import "time"

// JobGather gathers an incident's context (deployments, error logs, PromQL
// snapshots) once, and stores it. It is queued with every change of the
// incident; after the first, it finds the stored context and does nothing
// (the cache). Its RefID is the incident.
const JobGather = "gather"

// JobContextPost posts an incident's stored context into the thread of each
// of its Slack messages once the message exists, and adds the summary to its
// PagerDuty alert. Its RefID is the incident.
const JobContextPost = "context_post"

// The status of one context source.
const (
	SourceOK      = "ok"
	SourceEmpty   = "empty"
	SourceTimeout = "timeout"
	SourceError   = "error"
)

// The kinds of context a source provides.
const (
	ContextDeployments = "deployments"
	ContextLogs        = "logs"
	ContextMetrics     = "metrics"
)

// Context is what the gatherer found about an incident: one section per
// source, each with its own status, so that a slow or broken source leaves
// the others whole.
type Context struct {
	GatheredAt time.Time `json:"gathered_at"`
	// DurationMS is how long the whole gathering took.
	DurationMS int64     `json:"duration_ms"`
	Sections   []Section `json:"sections"`
}

// Section is one source's contribution.
type Section struct {
	// Source names the source: "deployments", "kubernetes", "promql",
	// "loki", "elasticsearch", "pod_logs".
	Source string `json:"source"`
	// Kind is ContextDeployments, ContextLogs or ContextMetrics.
	Kind string `json:"kind"`
	// Status is SourceOK, SourceEmpty, SourceTimeout or SourceError.
	Status string `json:"status"`
	// Error says what went wrong; it never carries a URL or a credential.
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms"`

	Deployments []Deployment `json:"deployments,omitempty"`
	Logs        []LogLine    `json:"logs,omitempty"`
	Snapshots   []Snapshot   `json:"snapshots,omitempty"`
}

// Empty reports whether the section carries no result.
func (s *Section) Empty() bool {
	return len(s.Deployments) == 0 && len(s.Logs) == 0 && len(s.Snapshots) == 0
}

// Deployment is one rollout of a service: recorded through the API (by a CI
// pipeline) or found in Kubernetes.
type Deployment struct {
	ID          int64     `json:"id,omitempty"`
	Service     string    `json:"service"`
	Environment string    `json:"environment,omitempty"`
	Version     string    `json:"version,omitempty"`
	Commit      string    `json:"commit,omitempty"`
	Author      string    `json:"author,omitempty"`
	URL         string    `json:"url,omitempty"`
	DeployedAt  time.Time `json:"deployed_at"`
	// Source is "api" or "kubernetes".
	Source string `json:"source,omitempty"`
	// Namespace, Name and Revision locate a Kubernetes rollout; Rollback
	// is set when it brought back an earlier revision.
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	Revision  int64  `json:"revision,omitempty"`
	Rollback  bool   `json:"rollback,omitempty"`
}

// LogLine is one error log line, redacted, standing for Count lines that
// differed only in numbers, hex strings or UUIDs.
type LogLine struct {
	At    time.Time `json:"at"`
	Line  string    `json:"line"`
	Count int       `json:"count"`
	// Origin is the stream, index or pod the line came from.
	Origin string `json:"origin,omitempty"`
}

// Snapshot is one PromQL query: its current values and, for the chart, its
// values over the configured range.
type Snapshot struct {
	Name  string `json:"name"`
	Query string `json:"query"`
	// Error is set when this query failed while others of the source
	// succeeded.
	Error  string    `json:"error,omitempty"`
	At     time.Time `json:"at"`
	Values []Sample  `json:"values,omitempty"`
	// Series are the range query's results; Start, End and StepMS its
	// range.
	Series []Series  `json:"series,omitempty"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	StepMS int64     `json:"step_ms,omitempty"`
	// Truncated counts the series left out to keep the snapshot small.
	Truncated int `json:"truncated,omitempty"`
	// Warnings are what Prometheus said about its answers, e.g. that they
	// are partial (a remote store or a shard did not answer).
	Warnings []string `json:"warnings,omitempty"`
}

// Sample is one series' current value.
type Sample struct {
	// Labels is the series in PromQL notation, e.g. {job="api"}.
	Labels string  `json:"labels"`
	Value  float64 `json:"value"`
}

// Series is one series over the range.
type Series struct {
	Labels string  `json:"labels"`
	Points []Point `json:"points"`
}

// Point is one value of a series; T is Unix milliseconds.
type Point struct {
	T int64   `json:"t"`
	V float64 `json:"v"`
}
