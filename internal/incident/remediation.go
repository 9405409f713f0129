package incident

import "time"

// The job kinds of remediation.
const (
	// JobRemediate decides, for an incident that changed, whether a
	// runbook runs for it: it checks the guards and records the decision
	// (a run, or a refusal with its reason). Its RefID is the incident.
	JobRemediate = "remediate"
	// JobRemediationStep advances one remediation run by one step: it runs
	// the next step, waits, polls the verification, or escalates. Its RefID
	// is the run.
	JobRemediationStep = "remediation_step"
)

// The states of a remediation run.
const (
	// RunRefused is a run a guard stopped before any step; Reason says why.
	RunRefused = "refused"
	// RunDryRun is a run that was planned and audited but executed nothing.
	RunDryRun = "dry_run"
	// RunAwaitingApproval waits for a human to approve it in Slack.
	RunAwaitingApproval = "awaiting_approval"
	// RunRunning is executing its steps or verifying them.
	RunRunning = "running"
	// RunSucceeded ran every step and passed its verification.
	RunSucceeded = "succeeded"
	// RunFailed had a step fail, or its verification did not hold in time.
	RunFailed = "failed"
	// RunUnknown stopped because a step was started but its outcome was not
	// recorded (a crash mid-step); the step is never executed again.
	RunUnknown = "unknown"
	// RunCancelled stopped before its remaining steps: the alert resolved,
	// remediation was paused, or the approval was rejected or expired.
	RunCancelled = "cancelled"
)

// The phases of an audit record.
const (
	// AuditDecision records a decision about the run: admitted, refused,
	// approved, rejected, cancelled, verified, escalated.
	AuditDecision = "decision"
	// AuditStart is written, durably, before a step executes.
	AuditStart = "start"
	// AuditEnd is written after a step, with its outcome.
	AuditEnd = "end"
	// AuditPlan is a step of a dry run, rendered but not executed.
	AuditPlan = "plan"
)

// RemediationRun is one decision to run (or not) a runbook for an incident,
// with its audit trail.
type RemediationRun struct {
	ID         int64  `json:"id"`
	IncidentID int64  `json:"incident_id"`
	Runbook    string `json:"runbook"`
	// RunbookDigest identifies the runbook's content the run was admitted
	// with (remediation.Runbook.Digest); empty for runs admitted before
	// responder recorded it.
	RunbookDigest string `json:"runbook_digest,omitempty"`
	// Target is the runbook name and its resolved parameters: cooldowns,
	// budgets and the one-run-at-a-time lock are per target.
	Target string            `json:"target"`
	Params map[string]string `json:"params,omitempty"`
	State  string            `json:"state"`
	// Reason says, in words, why the run is in its state.
	Reason     string     `json:"reason,omitempty"`
	DryRun     bool       `json:"dry_run"`
	ApprovedBy string     `json:"approved_by,omitempty"`
	ApprovedAt *time.Time `json:"approved_at,omitempty"`
	// ExpiresAt is when an approval request lapses.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// NextStep is the index of the step to run next; len(steps) once they
	// have all run.
	NextStep   int           `json:"next_step"`
	Escalated  bool          `json:"escalated"`
	CreatedAt  time.Time     `json:"created_at"`
	UpdatedAt  time.Time     `json:"updated_at"`
	FinishedAt *time.Time    `json:"finished_at,omitempty"`
	Audit      []AuditRecord `json:"audit,omitempty"`
}

// Active reports whether the run holds its target's lock: it waits for
// approval or executes.
func (r *RemediationRun) Active() bool {
	return r.State == RunAwaitingApproval || r.State == RunRunning
}

// AuditRecord is one entry of a run's audit trail: a decision, or the start
// or end of a step. It never holds a secret.
type AuditRecord struct {
	ID    int64  `json:"id"`
	RunID int64  `json:"run_id"`
	Phase string `json:"phase"`
	// Step and StepIndex name the step (empty and -1 for a decision).
	Step      string `json:"step,omitempty"`
	StepIndex int    `json:"step_index"`
	Kind      string `json:"kind,omitempty"`
	// Input is what the step was given, rendered (argv, method and URL,
	// Kubernetes object, silence matchers).
	Input string `json:"input,omitempty"`
	// Outcome is "ok", "failed", "timeout", "dry_run", "unknown" or
	// "cancelled" for steps, or the decision taken.
	Outcome    string        `json:"outcome,omitempty"`
	ExitCode   *int          `json:"exit_code,omitempty"`
	HTTPStatus int           `json:"http_status,omitempty"`
	Output     string        `json:"output,omitempty"`
	Duration   time.Duration `json:"duration,omitempty"`
	// Actor is who decided: "responder", or the Slack user who approved.
	Actor string    `json:"actor,omitempty"`
	At    time.Time `json:"at"`
}
