package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/responder/responder/internal/incident"
)

// Admission is a remediation decision to record: a run, or a refusal by a
// stateless guard (Refusal set), with the limits the stateful guards check.
type Admission struct {
	IncidentID int64
	Runbook    string
	Target     string
	Params     map[string]string
	Labels     map[string]string
	// Guard and Refusal are set when a stateless guard (checked by the
	// caller) refused already; the run is recorded as refused.
	Guard   string
	Refusal string
	DryRun  bool
	// RequireApproval makes an admitted run wait for approval until
	// ApprovalTimeout has passed.
	RequireApproval bool
	ApprovalTimeout time.Duration
	Cooldown        time.Duration
	MaxRuns         int
	Window          time.Duration
	MaxConcurrent   int
	StormThreshold  int
	// RunbookDigest is the admitted runbook's remediation.Runbook.Digest:
	// the run stops if the runbook in force is no longer that one.
	RunbookDigest string
	// Plan is audited with the decision (the rendered steps of a dry run).
	Plan []incident.AuditRecord
}

// AdmitResult is what AdmitRun recorded.
type AdmitResult struct {
	Run *incident.RemediationRun
	// Created is false when the incident already had a decision for this
	// runbook: nothing was recorded this time.
	Created bool
	// Guard names the guard that refused, "" when the run was admitted.
	Guard string
}

const runColumns = `id, incident_id, runbook, target, params, state, reason, dry_run, approved_by, approved_at, expires_at,
	next_step, verify_until, escalated, created_at, updated_at, finished_at, runbook_digest`

func scanRun(row scanner) (*incident.RemediationRun, *time.Time, error) {
	var (
		r                                         incident.RemediationRun
		params                                    string
		dry, esc                                  int
		approvedAt, expiresAt, verify, finishedAt sql.NullInt64
		created, updated                          int64
	)
	if err := row.Scan(&r.ID, &r.IncidentID, &r.Runbook, &r.Target, &params, &r.State, &r.Reason, &dry, &r.ApprovedBy, &approvedAt, &expiresAt,
		&r.NextStep, &verify, &esc, &created, &updated, &finishedAt, &r.RunbookDigest); err != nil {
		return nil, nil, err
	}
	r.Params = decodeKV(params)
	r.DryRun, r.Escalated = dry == 1, esc == 1
	r.ApprovedAt, r.ExpiresAt, r.FinishedAt = nullTime(approvedAt), nullTime(expiresAt), nullTime(finishedAt)
	r.CreatedAt, r.UpdatedAt = fromNS(created), fromNS(updated)
	return &r, nullTime(verify), nil
}

// lockRemediation takes the remediation_control row lock inside tx: every
// admission and approval serialises on it, on every engine and replica.
func (s *Store) lockRemediation(ctx context.Context, tx *sql.Tx) (paused bool, by string, err error) {
	if _, err := tx.ExecContext(ctx, `UPDATE remediation_control SET updated_at = updated_at WHERE id = 1`); err != nil {
		return false, "", fmt.Errorf("lock remediation: %w", err)
	}
	var p int
	if err := tx.QueryRowContext(ctx, `SELECT paused, paused_by FROM remediation_control WHERE id = 1`).Scan(&p, &by); err != nil {
		return false, "", fmt.Errorf("read remediation pause: %w", err)
	}
	return p == 1, by, nil
}

// AdmitRun records a remediation decision for an incident, checking the
// stateful guards (pause, storm, cooldown, budget, target lock,
// concurrency) in the same transaction, under a lock that serialises
// admissions. An incident gets at most one decision per runbook: a second
// call returns the first with Created false. An admitted run queues its
// first remediation_step job in the same commit.
func (s *Store) AdmitRun(ctx context.Context, a Admission) (AdmitResult, error) {
	now := s.opts.Now()
	tx, err := s.begin(ctx, false)
	if err != nil {
		return AdmitResult{}, fmt.Errorf("begin admit run: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
	paused, by, err := s.lockRemediation(ctx, tx.Tx)
	if err != nil {
		return AdmitResult{}, err
	}
	if r, _, err := scanRun(tx.QueryRowContext(ctx, s.rebind(`SELECT `+runColumns+` FROM remediation_runs WHERE incident_id = ? AND runbook = ?`), a.IncidentID, a.Runbook)); err == nil {
		return AdmitResult{Run: r}, nil
	} else if !errors.Is(err, sql.ErrNoRows) {
		return AdmitResult{}, fmt.Errorf("read remediation run: %w", err)
	}
	guard, reason := a.Guard, a.Refusal
	if guard == "" {
		guard, reason, err = s.statefulGuards(ctx, tx.Tx, a, paused, by, now)
		if err != nil {
			return AdmitResult{}, err
		}
	}
	state, counted, active := incident.RunRunning, 1, 1
	var expires sql.NullInt64
	switch {
	case guard != "":
		state, counted, active = incident.RunRefused, 0, 0
	case a.DryRun:
		state, counted, active = incident.RunDryRun, 0, 0
		reason = "dry run: planned and audited, nothing executed"
	case a.RequireApproval:
		state = incident.RunAwaitingApproval
		expires = sql.NullInt64{Int64: ns(now.Add(a.ApprovalTimeout)), Valid: true}
		reason = "waiting for approval in Slack"
	default:
		reason = "admitted: every guard passed"
	}
	var finished sql.NullInt64
	if active == 0 {
		finished = sql.NullInt64{Int64: ns(now), Valid: true}
	}
	var id int64
	if err := tx.QueryRowContext(ctx, s.rebind(`INSERT INTO remediation_runs (incident_id, runbook, target, params, labels, state, reason, dry_run, counted, active,
			expires_at, created_at, updated_at, finished_at, runbook_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		a.IncidentID, a.Runbook, a.Target, mustJSON(a.Params), mustJSON(a.Labels), state, truncate(reason), boolInt(a.DryRun), counted, active,
		expires, ns(now), ns(now), finished, a.RunbookDigest).Scan(&id); err != nil {
		return AdmitResult{}, fmt.Errorf("record remediation run: %w", err)
	}
	outcome := "admitted"
	if guard != "" {
		outcome = "refused: " + guard
	} else if a.DryRun {
		outcome = incident.RunDryRun
	}
	recs := append([]incident.AuditRecord{{Phase: incident.AuditDecision, StepIndex: -1, Outcome: outcome, Output: reason, Actor: "responder", At: now}}, a.Plan...)
	if guard != "" {
		recs = recs[:1]
	}
	for _, rec := range recs {
		if err := s.insertAudit(ctx, tx.Tx, id, rec); err != nil {
			return AdmitResult{}, err
		}
	}
	if active == 1 {
		if err := s.enqueueAt(ctx, tx.Tx, incident.JobRemediationStep, id, a.IncidentID, now); err != nil {
			return AdmitResult{}, err
		}
	}
	r, _, err := scanRun(tx.QueryRowContext(ctx, s.rebind(`SELECT `+runColumns+` FROM remediation_runs WHERE id = ?`), id))
	if err != nil {
		return AdmitResult{}, fmt.Errorf("read remediation run: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return AdmitResult{}, fmt.Errorf("commit remediation run: %w", err)
	}
	if active == 1 {
		s.opts.OnCommit()
	}
	return AdmitResult{Run: r, Created: true, Guard: guard}, nil
}

// statefulGuards checks, in order: pause, storm, and for a run that would
// execute, cooldown, budget, target lock and concurrency.
func (s *Store) statefulGuards(ctx context.Context, tx *sql.Tx, a Admission, paused bool, by string, now time.Time) (string, string, error) {
	if paused {
		return "paused", "remediation is paused" + byWhom(by) + " (POST /api/v1/remediation/resume lifts it)", nil
	}
	var firing int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM incidents WHERE status = 'firing'`).Scan(&firing); err != nil {
		return "", "", fmt.Errorf("count firing incidents: %w", err)
	}
	if a.StormThreshold > 0 && firing > a.StormThreshold {
		return "storm", fmt.Sprintf("storm breaker: %d incidents are firing, more than remediation.storm_threshold %d; a storm is for humans", firing, a.StormThreshold), nil
	}
	if a.DryRun {
		return "", "", nil
	}
	var last sql.NullInt64
	var lastID sql.NullInt64
	if err := tx.QueryRowContext(ctx, s.rebind(`SELECT created_at, id FROM remediation_runs WHERE target = ? AND counted = 1 ORDER BY created_at DESC, id DESC LIMIT 1`),
		a.Target).Scan(&last, &lastID); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", "", fmt.Errorf("read last run: %w", err)
	}
	if last.Valid && a.Cooldown > 0 && now.Sub(fromNS(last.Int64)) < a.Cooldown {
		ago := now.Sub(fromNS(last.Int64)).Round(time.Second)
		return "cooldown", fmt.Sprintf("cooldown: %s last ran %s ago (run %d); its cooldown is %s", a.Target, ago, lastID.Int64, a.Cooldown), nil
	}
	var inWindow int
	if err := tx.QueryRowContext(ctx, s.rebind(`SELECT count(*) FROM remediation_runs WHERE target = ? AND counted = 1 AND created_at > ?`),
		a.Target, ns(now.Add(-a.Window))).Scan(&inWindow); err != nil {
		return "", "", fmt.Errorf("count runs in window: %w", err)
	}
	if a.MaxRuns > 0 && inWindow >= a.MaxRuns {
		return "max_runs", fmt.Sprintf("budget: %s ran %d times in the last %s, its max_runs", a.Target, inWindow, a.Window), nil
	}
	var holder sql.NullInt64
	if err := tx.QueryRowContext(ctx, s.rebind(`SELECT id FROM remediation_runs WHERE target = ? AND active = 1`), a.Target).Scan(&holder); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", "", fmt.Errorf("read target lock: %w", err)
	}
	if holder.Valid {
		return "lock", fmt.Sprintf("lock: run %d is already in progress for %s", holder.Int64, a.Target), nil
	}
	// A run waiting for approval holds its place: an approval starts it
	// without checking the limit again, and a decision made in Slack
	// cannot be told "too many runs, click again later".
	var held, awaiting int
	if err := tx.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(CASE WHEN state = 'awaiting_approval' THEN 1 ELSE 0 END), 0)
		FROM remediation_runs WHERE active = 1`).Scan(&held, &awaiting); err != nil {
		return "", "", fmt.Errorf("count active runs: %w", err)
	}
	if a.MaxConcurrent > 0 && held >= a.MaxConcurrent {
		return "max_concurrent", fmt.Sprintf("concurrency: %d runs are executing or waiting for approval (%d waiting), remediation.max_concurrent is %d",
			held, awaiting, a.MaxConcurrent), nil
	}
	return "", "", nil
}

func byWhom(by string) string {
	if by == "" {
		return ""
	}
	return " by " + by
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// enqueueAt adds a job due at the given time inside tx.
func (s *Store) enqueueAt(ctx context.Context, tx *sql.Tx, kind string, refID, incidentID int64, at time.Time) error {
	now := ns(s.opts.Now())
	if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO jobs (kind, ref_id, incident_id, args, state, max_attempts, run_at, created_at, updated_at)
		VALUES (?, ?, ?, NULL, 'queued', ?, ?, ?, ?)`), kind, refID, nullInt(incidentID), s.opts.MaxAttempts, ns(at), now, now); err != nil {
		return fmt.Errorf("enqueue %s job: %w", kind, err)
	}
	return nil
}

func (s *Store) insertAudit(ctx context.Context, tx *sql.Tx, runID int64, r incident.AuditRecord) error {
	var exit sql.NullInt64
	if r.ExitCode != nil {
		exit = sql.NullInt64{Int64: int64(*r.ExitCode), Valid: true}
	}
	if r.At.IsZero() {
		r.At = s.opts.Now()
	}
	_, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO remediation_audit (run_id, phase, step, step_index, kind, input, outcome, exit_code, http_status, output, duration_ns, actor, at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		runID, r.Phase, r.Step, r.StepIndex, r.Kind, truncate(r.Input), truncate(r.Outcome), exit, r.HTTPStatus, truncate(r.Output), int64(r.Duration), r.Actor, ns(r.At))
	if err != nil {
		return fmt.Errorf("record audit of run %d: %w", runID, err)
	}
	return nil
}

// LeaseRun reads a run and leases it to owner, so that only one worker
// advances it at a time. It fails with incident.Conflict while another
// owner holds the lease, and incident.NotFound for no such run. It also
// returns when verification must have passed (nil before the steps are
// done).
func (s *Store) LeaseRun(ctx context.Context, id int64, owner string, lease time.Duration) (*incident.RemediationRun, *time.Time, error) {
	now := s.opts.Now()
	r, verify, err := scanRun(s.wQueryRow(ctx, `UPDATE remediation_runs SET lease_owner = ?, lease_until = ?
		WHERE id = ? AND (lease_owner = '' OR lease_owner = ? OR lease_until < ?) RETURNING `+runColumns,
		owner, ns(now.Add(lease)), id, owner, ns(now)))
	if err == nil {
		return r, verify, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, nil, fmt.Errorf("lease run %d: %w", id, err)
	}
	var n int
	if err := s.wQueryRow(ctx, `SELECT count(*) FROM remediation_runs WHERE id = ?`, id).Scan(&n); err != nil {
		return nil, nil, fmt.Errorf("lease run %d: %w", id, err)
	}
	if n == 0 {
		return nil, nil, incident.Errorf(incident.NotFound, "remediation run %d not found", id)
	}
	return nil, nil, incident.Errorf(incident.Conflict, "remediation run %d is being advanced by another worker", id)
}

// RunLabels returns the labels a run was decided on.
func (s *Store) RunLabels(ctx context.Context, id int64) (map[string]string, error) {
	var l string
	if err := s.rQueryRow(ctx, `SELECT labels FROM remediation_runs WHERE id = ?`, id).Scan(&l); err != nil {
		return nil, fmt.Errorf("read labels of run %d: %w", id, err)
	}
	return decodeKV(l), nil
}

// StartStep durably records that step idx of a run is about to execute. It
// fails with incident.Conflict when the step was started before: the caller
// must then not execute it again.
func (s *Store) StartStep(ctx context.Context, runID int64, rec incident.AuditRecord) error {
	rec.Phase = incident.AuditStart
	var exit sql.NullInt64
	res, err := s.wExec(ctx, `INSERT INTO remediation_audit (run_id, phase, step, step_index, kind, input, outcome, exit_code, http_status, output, duration_ns, actor, at)
		VALUES (?, ?, ?, ?, ?, ?, '', ?, 0, '', 0, ?, ?) ON CONFLICT DO NOTHING`,
		runID, rec.Phase, rec.Step, rec.StepIndex, rec.Kind, truncate(rec.Input), exit, rec.Actor, ns(s.opts.Now()))
	if err != nil {
		return fmt.Errorf("record start of step %d of run %d: %w", rec.StepIndex, runID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return incident.Errorf(incident.Conflict, "step %d of run %d was started before", rec.StepIndex, runID)
	}
	return nil
}

// RunUpdate is how SaveRun changes a run.
type RunUpdate struct {
	State    string
	Reason   string
	NextStep int
	// VerifyUntil starts (or keeps) the verification window.
	VerifyUntil *time.Time
	Escalated   bool
	// Audit records are appended in the same commit.
	Audit []incident.AuditRecord
	// NextAt, when set, queues the next remediation_step job for then.
	NextAt *time.Time
}

// SaveRun stores a run's progress, appends its audit records and queues its
// next job, in one commit, and ends owner's lease. A final state releases
// the target lock.
func (s *Store) SaveRun(ctx context.Context, r *incident.RemediationRun, owner string, u RunUpdate) error {
	now := s.opts.Now()
	tx, err := s.begin(ctx, false)
	if err != nil {
		return fmt.Errorf("begin save run: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
	active := boolInt(u.State == incident.RunRunning || u.State == incident.RunAwaitingApproval)
	var finished, verify sql.NullInt64
	if active == 0 {
		finished = sql.NullInt64{Int64: ns(now), Valid: true}
	}
	if u.VerifyUntil != nil {
		verify = sql.NullInt64{Int64: ns(*u.VerifyUntil), Valid: true}
	}
	res, err := tx.ExecContext(ctx, s.rebind(`UPDATE remediation_runs SET state = ?, reason = ?, next_step = ?, verify_until = ?, escalated = ?, active = ?,
			finished_at = CASE WHEN finished_at IS NULL THEN ? ELSE finished_at END, updated_at = ?, lease_owner = '', lease_until = 0
		WHERE id = ? AND lease_owner = ?`),
		u.State, truncate(u.Reason), u.NextStep, verify, boolInt(u.Escalated), active, finished, ns(now), r.ID, owner)
	if err != nil {
		return fmt.Errorf("save run %d: %w", r.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return incident.Errorf(incident.Conflict, "run %d: lease lost", r.ID)
	}
	for _, rec := range u.Audit {
		if err := s.insertAudit(ctx, tx.Tx, r.ID, rec); err != nil {
			return err
		}
	}
	if u.NextAt != nil {
		if err := s.enqueueAt(ctx, tx.Tx, incident.JobRemediationStep, r.ID, r.IncidentID, *u.NextAt); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit save run %d: %w", r.ID, err)
	}
	if u.NextAt != nil {
		s.opts.OnCommit()
	}
	return nil
}

// ReleaseRun ends owner's lease on a run without changing it.
func (s *Store) ReleaseRun(ctx context.Context, id int64, owner string) error {
	if _, err := s.wExec(ctx, `UPDATE remediation_runs SET lease_owner = '', lease_until = 0 WHERE id = ? AND lease_owner = ?`, id, owner); err != nil {
		return fmt.Errorf("release run %d: %w", id, err)
	}
	return nil
}

// Approval is a decision taken in Slack on a run that waits for one.
type Approval struct {
	RunID   int64
	User    string
	Approve bool
}

// DecideRun applies an approval or rejection to a run awaiting one. Only the
// first decision counts: a second click, or one after the request expired,
// changes nothing and says why. An approval queues the run's next job in
// the same commit.
func (s *Store) DecideRun(ctx context.Context, d Approval) (*incident.RemediationRun, bool, string, error) {
	now := s.opts.Now()
	tx, err := s.begin(ctx, false)
	if err != nil {
		return nil, false, "", fmt.Errorf("begin decide run: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
	if _, _, err := s.lockRemediation(ctx, tx.Tx); err != nil {
		return nil, false, "", err
	}
	r, _, err := scanRun(tx.QueryRowContext(ctx, s.rebind(`SELECT `+runColumns+` FROM remediation_runs WHERE id = ?`), d.RunID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, "", incident.Errorf(incident.NotFound, "remediation run %d not found", d.RunID)
	}
	if err != nil {
		return nil, false, "", fmt.Errorf("read run %d: %w", d.RunID, err)
	}
	var why string
	switch {
	case r.State != incident.RunAwaitingApproval:
		why = fmt.Sprintf("run %d is %s already; this decision changes nothing", r.ID, r.State)
	case r.ExpiresAt != nil && !now.Before(*r.ExpiresAt):
		why = fmt.Sprintf("the approval request of run %d expired at %s", r.ID, r.ExpiresAt.Format(time.RFC3339))
	}
	rec := incident.AuditRecord{Phase: incident.AuditDecision, StepIndex: -1, Actor: d.User, At: now}
	if why != "" {
		rec.Outcome, rec.Output = "ignored", why
		if err := s.insertAudit(ctx, tx.Tx, r.ID, rec); err != nil {
			return nil, false, "", err
		}
		if err := tx.Commit(); err != nil {
			return nil, false, "", fmt.Errorf("commit decide run: %w", err)
		}
		return r, false, why, nil
	}
	state, reason, active := incident.RunRunning, "approved by "+d.User, 1
	rec.Outcome = "approved"
	if !d.Approve {
		state, reason, active = incident.RunCancelled, "rejected by "+d.User, 0
		rec.Outcome = "rejected"
	}
	var finished sql.NullInt64
	if active == 0 {
		finished = sql.NullInt64{Int64: ns(now), Valid: true}
	}
	if _, err := tx.ExecContext(ctx, s.rebind(`UPDATE remediation_runs SET state = ?, reason = ?, active = ?, approved_by = ?, approved_at = ?, finished_at = ?, updated_at = ?
		WHERE id = ?`), state, reason, active, d.User, ns(now), finished, ns(now), r.ID); err != nil {
		return nil, false, "", fmt.Errorf("decide run %d: %w", r.ID, err)
	}
	rec.Output = reason
	if err := s.insertAudit(ctx, tx.Tx, r.ID, rec); err != nil {
		return nil, false, "", err
	}
	if err := s.enqueueAt(ctx, tx.Tx, incident.JobRemediationStep, r.ID, r.IncidentID, now); err != nil {
		return nil, false, "", err
	}
	if err := tx.Commit(); err != nil {
		return nil, false, "", fmt.Errorf("commit decide run: %w", err)
	}
	s.opts.OnCommit()
	r.State, r.Reason, r.ApprovedBy, r.ApprovedAt = state, reason, d.User, &now
	return r, true, reason, nil
}

// AppendAudit adds one record to a run's audit trail.
func (s *Store) AppendAudit(ctx context.Context, runID int64, rec incident.AuditRecord) error {
	tx, err := s.begin(ctx, false)
	if err != nil {
		return fmt.Errorf("begin audit: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
	if err := s.insertAudit(ctx, tx.Tx, runID, rec); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit audit: %w", err)
	}
	return nil
}

// SetRemediationPaused pauses or resumes all remediation, durably.
func (s *Store) SetRemediationPaused(ctx context.Context, paused bool, by string) error {
	if _, err := s.wExec(ctx, `UPDATE remediation_control SET paused = ?, paused_by = ?, updated_at = ? WHERE id = 1`,
		boolInt(paused), by, ns(s.opts.Now())); err != nil {
		return fmt.Errorf("set remediation pause: %w", err)
	}
	return nil
}

// RemediationPaused reports whether remediation is paused, and by whom.
func (s *Store) RemediationPaused(ctx context.Context) (bool, string, error) {
	var p int
	var by string
	if err := s.r.QueryRowContext(ctx, `SELECT paused, paused_by FROM remediation_control WHERE id = 1`).Scan(&p, &by); err != nil {
		return false, "", fmt.Errorf("read remediation pause: %w", err)
	}
	return p == 1, by, nil
}

// RemediationRun returns one run with its audit trail.
func (s *Store) RemediationRun(ctx context.Context, id int64) (*incident.RemediationRun, error) {
	r, _, err := scanRun(s.rQueryRow(ctx, `SELECT `+runColumns+` FROM remediation_runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, incident.Errorf(incident.NotFound, "remediation run %d not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("read run %d: %w", id, err)
	}
	if r.Audit, err = s.audit(ctx, id); err != nil {
		return nil, err
	}
	return r, nil
}

// RemediationRuns returns the runs of an incident, oldest first, with their
// audit trails.
func (s *Store) RemediationRuns(ctx context.Context, incidentID int64) ([]incident.RemediationRun, error) {
	rows, err := s.rQuery(ctx, `SELECT `+runColumns+` FROM remediation_runs WHERE incident_id = ? ORDER BY id`, incidentID)
	if err != nil {
		return nil, fmt.Errorf("read remediation runs: %w", err)
	}
	var out []incident.RemediationRun
	for rows.Next() {
		r, _, err := scanRun(rows)
		if err != nil {
			_ = rows.Close() // the scan error is the one to report
			return nil, fmt.Errorf("scan remediation run: %w", err)
		}
		out = append(out, *r)
	}
	_ = rows.Close() // rows.Err reports a failed read
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read remediation runs: %w", err)
	}
	for i := range out {
		if out[i].Audit, err = s.audit(ctx, out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Store) audit(ctx context.Context, runID int64) ([]incident.AuditRecord, error) {
	rows, err := s.rQuery(ctx, `SELECT id, run_id, phase, step, step_index, kind, input, outcome, exit_code, http_status, output, duration_ns, actor, at
		FROM remediation_audit WHERE run_id = ? ORDER BY id`, runID)
	if err != nil {
		return nil, fmt.Errorf("read audit of run %d: %w", runID, err)
	}
	defer func() { _ = rows.Close() }()
	out := []incident.AuditRecord{}
	for rows.Next() {
		var (
			a       incident.AuditRecord
			exit    sql.NullInt64
			dur, at int64
		)
		if err := rows.Scan(&a.ID, &a.RunID, &a.Phase, &a.Step, &a.StepIndex, &a.Kind, &a.Input, &a.Outcome, &exit, &a.HTTPStatus, &a.Output, &dur, &a.Actor, &at); err != nil {
			return nil, fmt.Errorf("scan audit: %w", err)
		}
		if exit.Valid {
			c := int(exit.Int64)
			a.ExitCode = &c
		}
		a.Duration, a.At = time.Duration(dur), fromNS(at)
		out = append(out, a)
	}
	return out, rows.Err()
}

// WakeRun queues a remediation_step job for a run now, e.g. when its alert
// resolved and its remaining steps must be cancelled without waiting for
// its next scheduled job. A job that finds nothing to do is harmless.
func (s *Store) WakeRun(ctx context.Context, runID, incidentID int64) error {
	tx, err := s.begin(ctx, false)
	if err != nil {
		return fmt.Errorf("begin wake run: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
	if err := s.enqueueAt(ctx, tx.Tx, incident.JobRemediationStep, runID, incidentID, s.opts.Now()); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit wake run: %w", err)
	}
	s.opts.OnCommit()
	return nil
}
