package store

// Storm mode, in storage.
//
// A storm is a `storms` row per Slack channel (the configured target) and
// episode. PlanDeliveriesStorm decides, in the transaction that plans an
// incident's deliveries, whether each of its Slack deliveries joins a storm:
// it counts the distinct incidents planned for that channel within the
// window (deliveries.planned_at), and when the channel has an active storm,
// or the count is above the threshold (which starts one), it marks the
// delivery with the storm's id, records a "storm" decision with the reason,
// bumps the storm (count, last_incident_at, version) and queues the storm's
// job. The incident's PagerDuty deliveries join the same storm, and the
// first of them gives the storm its PagerDuty config. SQLite serialises
// writers, so the count, the start and the join see one consistent channel;
// on PostgreSQL the plan locks the channel (Dialect.TargetLock) first.
//
// The storm job (one queued at a time per storm, see queueStorm) is what
// talks to Slack and PagerDuty, with the same lease and stored state as a
// delivery: the digest's ts and synced version, PagerDuty's last action.
// It also ends the storm (EndStorm) once it has been quiet long enough, and
// reschedules itself for that moment while the storm is active.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/responder/responder/internal/incident"
)

// StormPolicy says when a channel is in a storm (routing.StormConfig).
type StormPolicy struct {
	Enabled   bool
	Threshold int
	Window    time.Duration
}

// StormJoin is a storm an incident joined while its deliveries were
// planned.
type StormJoin struct {
	StormID int64
	Target  string
	// Started is true when this incident started the storm.
	Started bool
	// Recent is how many new incidents hit the channel within the window.
	Recent int
}

// Storm is the stored state of one storm.
type Storm struct {
	ID             int64
	Target         string
	StartedAt      time.Time
	LastIncidentAt time.Time
	EndedAt        *time.Time
	IncidentCount  int
	// Version is bumped on every change the digest shows; SyncedVersion is
	// the one the digest shows.
	Version       int64
	ChannelID     string
	TS            string
	Permalink     string
	SyncedVersion int64
	// PDReceiver and PDConfigIndex are the PagerDuty config the storm
	// pages, PDConfigIndex < 0 for none; PDLastAction is what PagerDuty
	// was last told.
	PDReceiver    string
	PDConfigIndex int
	PDLastAction  string
	LastError     string
}

// StormIncident is one incident of a storm, as its digest lists it.
type StormIncident struct {
	ID        int64
	Alertname string
	Summary   string
	Status    string
}

const stormColumns = `id, target, started_at, last_incident_at, ended_at, incident_count, version, channel_id, ts, permalink,
	synced_version, pd_receiver, pd_config_index, pd_last_action, last_error`

func scanStorm(row scanner) (*Storm, error) {
	var (
		st            Storm
		started, last int64
		ended         sql.NullInt64
	)
	if err := row.Scan(&st.ID, &st.Target, &started, &last, &ended, &st.IncidentCount, &st.Version, &st.ChannelID, &st.TS, &st.Permalink,
		&st.SyncedVersion, &st.PDReceiver, &st.PDConfigIndex, &st.PDLastAction, &st.LastError); err != nil {
		return nil, err
	}
	st.StartedAt, st.LastIncidentAt, st.EndedAt = fromNS(started), fromNS(last), nullTime(ended)
	return &st, nil
}

// PlanDeliveries records the routing decision of an incident and, with it,
// one delivery per planned target, and queues a deliver job for each of the
// incident's deliveries, all in one transaction. It reports whether this
// call recorded the decision.
//
// It is idempotent: an incident has at most one route decision, so when one
// is recorded already (a concurrent or repeated route job) decision and
// plans are ignored, and only the deliver jobs are queued, as by
// QueueDeliveries.
func (s *Store) PlanDeliveries(ctx context.Context, incidentID int64, d incident.Decision, plans []incident.Dispatch) (bool, error) {
	planned, _, err := s.PlanDeliveriesStorm(ctx, incidentID, d, plans, StormPolicy{}, time.Time{})
	return planned, err
}

// PlanDeliveriesStorm is PlanDeliveries with storm mode: when it records
// the decision, each Slack delivery joins its channel's storm as p says
// (see the top of this file), and it returns the storms joined. A recheck
// that is not zero queues, with the decision, a reroute job due then (see
// AddDeliveries).
func (s *Store) PlanDeliveriesStorm(ctx context.Context, incidentID int64, d incident.Decision, plans []incident.Dispatch, p StormPolicy, recheck time.Time) (bool, []StormJoin, error) {
	if d.Kind != incident.DecisionRoute {
		return false, nil, incident.Errorf(incident.Invalid, "plan deliveries: decision kind %q is not %q", d.Kind, incident.DecisionRoute)
	}
	detail := decisionDetail(d)
	now := s.opts.Now()
	tx, err := s.begin(ctx, false)
	if err != nil {
		return false, nil, fmt.Errorf("begin plan deliveries: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
	// The partial unique index decisions_route_once makes a second route
	// decision for the incident a no-op.
	res, err := s.txExec(ctx, tx, `INSERT INTO decisions (incident_id, kind, summary, detail, at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		incidentID, d.Kind, d.Summary, detail, ns(d.At))
	if err != nil {
		return false, nil, fmt.Errorf("record route decision of incident %d: %w", incidentID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, nil, fmt.Errorf("record route decision of incident %d: %w", incidentID, err)
	}
	planned := n > 0
	var joins []StormJoin
	if planned {
		if _, err := s.insertDeliveries(ctx, tx, incidentID, plans, now); err != nil {
			return false, nil, err
		}
		if p.Enabled {
			if joins, err = s.joinStorms(ctx, tx.Tx, incidentID, plans, p, now); err != nil {
				return false, nil, err
			}
		}
		if !recheck.IsZero() {
			if err := s.enqueueAt(ctx, tx.Tx, incident.JobReroute, incidentID, incidentID, recheck); err != nil {
				return false, nil, err
			}
		}
	}
	queued, err := s.queueDeliveries(ctx, tx.Tx, incidentID)
	if err != nil {
		return false, nil, err
	}
	if err := tx.Commit(); err != nil {
		return false, nil, fmt.Errorf("commit plan deliveries: %w", err)
	}
	if queued > 0 || len(joins) > 0 {
		s.opts.OnCommit()
	}
	return planned, joins, nil
}

// AddDeliveries adds to a routed incident the deliveries of plans it does
// not have yet (a receiver whose route was muted by a time interval when
// the incident was routed, and is not any more), with decision d, which is
// recorded only when a delivery was added (with a new incident version, so
// that the targets it had show it too), and queues the deliver jobs, all in
// one transaction. A recheck that is not zero queues a reroute job
// due then, in the same transaction. It returns how many deliveries it
// added: none when another worker or replica added them first, which makes
// a repeated reroute job harmless.
func (s *Store) AddDeliveries(ctx context.Context, incidentID int64, d incident.Decision, plans []incident.Dispatch, recheck time.Time) (int, error) {
	if d.Kind == incident.DecisionRoute {
		return 0, incident.Errorf(incident.Invalid, "add deliveries: an incident has one %q decision, recorded by PlanDeliveries", d.Kind)
	}
	detail := decisionDetail(d)
	now := s.opts.Now()
	tx, err := s.begin(ctx, false)
	if err != nil {
		return 0, fmt.Errorf("begin add deliveries: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
	added, err := s.insertDeliveries(ctx, tx, incidentID, plans, now)
	if err != nil {
		return 0, err
	}
	queued := 0
	if added > 0 {
		if _, err := s.txExec(ctx, tx, `INSERT INTO decisions (incident_id, kind, summary, detail, at) VALUES (?, ?, ?, ?, ?)`,
			incidentID, d.Kind, d.Summary, detail, ns(d.At)); err != nil {
			return 0, fmt.Errorf("record %s decision of incident %d: %w", d.Kind, incidentID, err)
		}
		// A new version, so that the deliveries it had bring their targets
		// in step too: the Slack message shows the decision.
		if _, err := s.txExec(ctx, tx, `UPDATE incidents SET version = version + 1 WHERE id = ?`, incidentID); err != nil {
			return 0, fmt.Errorf("record %s decision of incident %d: %w", d.Kind, incidentID, err)
		}
		if queued, err = s.queueDeliveries(ctx, tx.Tx, incidentID); err != nil {
			return 0, err
		}
	}
	if !recheck.IsZero() {
		if err := s.enqueueAt(ctx, tx.Tx, incident.JobReroute, incidentID, incidentID, recheck); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit add deliveries: %w", err)
	}
	if queued > 0 {
		s.opts.OnCommit()
	}
	return added, nil
}

// insertDeliveries inserts one delivery per plan that the incident does
// not have yet, and returns how many it inserted.
func (s *Store) insertDeliveries(ctx context.Context, tx txConn, incidentID int64, plans []incident.Dispatch, now time.Time) (int, error) {
	added := 0
	for _, p := range plans {
		res, err := s.txExec(ctx, tx, `INSERT INTO deliveries (incident_id, receiver, integration, config_index, target, updated_at, planned_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			incidentID, p.Receiver, p.Integration, p.ConfigIndex, p.Target, ns(now), ns(now))
		if err != nil {
			return 0, fmt.Errorf("plan %s delivery to %s of incident %d: %w", p.Integration, p.Receiver, incidentID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("plan %s delivery to %s of incident %d: %w", p.Integration, p.Receiver, incidentID, err)
		}
		added += int(n)
	}
	return added, nil
}

// joinStorms makes the incident's Slack deliveries join their channels'
// storms, starting one where the channel just went over the threshold.
func (s *Store) joinStorms(ctx context.Context, tx *sql.Tx, incidentID int64, plans []incident.Dispatch, p StormPolicy, now time.Time) ([]StormJoin, error) {
	var (
		joins   []StormJoin
		targets []string
	)
	for _, d := range plans {
		if d.Integration == incident.IntegrationSlack && !slices.Contains(targets, d.Target) {
			targets = append(targets, d.Target)
		}
	}
	if s.dialect.TargetLock != "" {
		// Concurrent plans (other workers, other replicas) must see one
		// consistent channel: lock each, in one order so that two plans
		// sharing channels cannot deadlock.
		for _, target := range slices.Sorted(slices.Values(targets)) {
			if _, err := s.txExec(ctx, tx, s.dialect.TargetLock, target); err != nil {
				return nil, fmt.Errorf("lock channel %s: %w", target, err)
			}
		}
	}
	for _, target := range targets {
		var recent int
		if err := s.txQueryRow(ctx, tx, `SELECT count(DISTINCT incident_id) FROM deliveries
			WHERE integration = ? AND target = ? AND planned_at >= ?`,
			incident.IntegrationSlack, target, ns(now.Add(-p.Window))).Scan(&recent); err != nil {
			return nil, fmt.Errorf("count new incidents on %s: %w", target, err)
		}
		j := StormJoin{Target: target, Recent: recent}
		err := s.txQueryRow(ctx, tx, `SELECT id FROM storms WHERE target = ? AND ended_at IS NULL`, target).Scan(&j.StormID)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if recent <= p.Threshold {
				continue
			}
			if err := s.txQueryRow(ctx, tx, `INSERT INTO storms (target, started_at, last_incident_at) VALUES (?, ?, ?) RETURNING id`,
				target, ns(now), ns(now)).Scan(&j.StormID); err != nil {
				return nil, fmt.Errorf("start storm on %s: %w", target, err)
			}
			j.Started = true
			if err := s.foldUnposted(ctx, tx, j.StormID, incidentID, target, p, now); err != nil {
				return nil, err
			}
		case err != nil:
			return nil, fmt.Errorf("read storm on %s: %w", target, err)
		}
		if _, err := s.txExec(ctx, tx, `UPDATE storms SET last_incident_at = ?, incident_count = incident_count + 1, version = version + 1 WHERE id = ?`,
			ns(now), j.StormID); err != nil {
			return nil, fmt.Errorf("join storm %d: %w", j.StormID, err)
		}
		if _, err := s.txExec(ctx, tx, `UPDATE deliveries SET storm_id = ? WHERE incident_id = ? AND integration = ? AND target = ?`,
			j.StormID, incidentID, incident.IntegrationSlack, target); err != nil {
			return nil, fmt.Errorf("join storm %d: %w", j.StormID, err)
		}
		reason := fmt.Sprintf("in storm #%d on %s: %d new incidents in %s", j.StormID, target, recent, shortDuration(p.Window))
		if _, err := s.txExec(ctx, tx, `INSERT INTO decisions (incident_id, kind, summary, detail, at) VALUES (?, ?, ?, '{}', ?)`,
			incidentID, incident.DecisionStorm, reason, ns(now)); err != nil {
			return nil, fmt.Errorf("record storm decision of incident %d: %w", incidentID, err)
		}
		if err := s.queueStorm(ctx, tx, j.StormID, now); err != nil {
			return nil, err
		}
		joins = append(joins, j)
	}
	if len(joins) == 0 {
		return nil, nil
	}
	// The storm pages instead of the incident: the first storm joined takes
	// its PagerDuty deliveries, and the first such config is the storm's.
	first := joins[0].StormID
	for _, d := range plans {
		if d.Integration != incident.IntegrationPagerDuty {
			continue
		}
		if _, err := s.txExec(ctx, tx, `UPDATE deliveries SET storm_id = ? WHERE incident_id = ? AND integration = ? AND receiver = ? AND config_index = ?`,
			first, incidentID, incident.IntegrationPagerDuty, d.Receiver, d.ConfigIndex); err != nil {
			return nil, fmt.Errorf("join storm %d: %w", first, err)
		}
		if _, err := s.txExec(ctx, tx, `UPDATE storms SET pd_receiver = ?, pd_config_index = ? WHERE id = ? AND pd_config_index < 0`,
			d.Receiver, d.ConfigIndex, first); err != nil {
			return nil, fmt.Errorf("join storm %d: %w", first, err)
		}
	}
	return joins, nil
}

// foldUnposted moves into a starting storm the incidents of the window whose
// Slack parents are not posted yet (and not being posted): instead of each
// waiting for the channel's one call per second, they are shown at once in
// the digest.
func (s *Store) foldUnposted(ctx context.Context, tx *sql.Tx, stormID, incidentID int64, target string, p StormPolicy, now time.Time) error {
	rows, err := s.txQuery(ctx, tx, `SELECT DISTINCT incident_id FROM deliveries
		WHERE integration = ? AND target = ? AND storm_id = 0 AND ts = '' AND planned_at >= ? AND incident_id <> ?
		AND (lease_owner = '' OR lease_until < ?)`,
		incident.IntegrationSlack, target, ns(now.Add(-p.Window)), incidentID, ns(now))
	if err != nil {
		return fmt.Errorf("find unposted incidents on %s: %w", target, err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			_ = rows.Close()
			return fmt.Errorf("find unposted incidents on %s: %w", target, err)
		}
		ids = append(ids, id)
	}
	_ = rows.Close() // read fully; Err reports what went wrong
	if err := rows.Err(); err != nil {
		return fmt.Errorf("find unposted incidents on %s: %w", target, err)
	}
	reason := fmt.Sprintf("in storm #%d on %s: its message was not posted yet when the storm began", stormID, target)
	folded := 0
	for _, id := range ids {
		// The lease is checked again as the row is written: on PostgreSQL a
		// deliver job of another replica may have leased it since the
		// select above, and then posts it itself.
		res, err := s.txExec(ctx, tx, `UPDATE deliveries SET storm_id = ? WHERE incident_id = ? AND integration = ? AND target = ? AND ts = ''
			AND storm_id = 0 AND (lease_owner = '' OR lease_until < ?)`,
			stormID, id, incident.IntegrationSlack, target, ns(now))
		if err != nil {
			return fmt.Errorf("fold incident %d into storm %d: %w", id, stormID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("fold incident %d into storm %d: %w", id, stormID, err)
		}
		if n == 0 {
			continue
		}
		folded++
		if _, err := s.txExec(ctx, tx, `INSERT INTO decisions (incident_id, kind, summary, detail, at) VALUES (?, ?, ?, '{}', ?)`,
			id, incident.DecisionStorm, reason, ns(now)); err != nil {
			return fmt.Errorf("record storm decision of incident %d: %w", id, err)
		}
	}
	if _, err := s.txExec(ctx, tx, `UPDATE storms SET incident_count = incident_count + ? WHERE id = ?`, folded, stormID); err != nil {
		return fmt.Errorf("fold into storm %d: %w", stormID, err)
	}
	return nil
}

// shortDuration prints 1m rather than 1m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// queueStorm makes sure the storm's job runs at runAt at the latest: it
// moves a queued one earlier, or queues one. One queued job is enough, since
// it reads the storm when it runs.
func (s *Store) queueStorm(ctx context.Context, tx *sql.Tx, stormID int64, runAt time.Time) error {
	now := s.opts.Now()
	res, err := s.txExec(ctx, tx, `UPDATE jobs SET run_at = CASE WHEN run_at > ? THEN ? ELSE run_at END, updated_at = ?
		WHERE kind = ? AND ref_id = ? AND state = 'queued'`, ns(runAt), ns(runAt), ns(now), incident.JobStorm, stormID)
	if err != nil {
		return fmt.Errorf("queue storm %d job: %w", stormID, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	if _, err := s.txExec(ctx, tx, `INSERT INTO jobs (kind, ref_id, incident_id, args, state, max_attempts, run_at, created_at, updated_at)
		VALUES (?, ?, NULL, NULL, 'queued', ?, ?, ?, ?)`, incident.JobStorm, stormID, s.opts.MaxAttempts, ns(runAt), ns(now), ns(now)); err != nil {
		return fmt.Errorf("queue storm %d job: %w", stormID, err)
	}
	return nil
}

// QueueStorm makes sure the storm's job runs at runAt at the latest. With
// changed set, it first bumps the storm's version: something its digest
// shows changed (an incident of the storm resolved, say).
func (s *Store) QueueStorm(ctx context.Context, stormID int64, runAt time.Time, changed bool) error {
	tx, err := s.begin(ctx, false)
	if err != nil {
		return fmt.Errorf("begin queue storm: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
	if changed {
		if _, err := s.txExec(ctx, tx, `UPDATE storms SET version = version + 1 WHERE id = ?`, stormID); err != nil {
			return fmt.Errorf("touch storm %d: %w", stormID, err)
		}
	}
	if err := s.queueStorm(ctx, tx.Tx, stormID, runAt); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit queue storm: %w", err)
	}
	s.opts.OnCommit()
	return nil
}

// LeaseStorm reads a storm and leases it to owner until lease has passed,
// like LeaseDelivery. SaveStorm ends the lease.
func (s *Store) LeaseStorm(ctx context.Context, id int64, owner string, lease time.Duration) (*Storm, error) {
	now := s.opts.Now()
	st, err := scanStorm(s.wQueryRow(ctx, `UPDATE storms SET lease_owner = ?, lease_until = ?
		WHERE id = ? AND (lease_owner = '' OR lease_owner = ? OR lease_until < ?) RETURNING `+stormColumns,
		owner, ns(now.Add(lease)), id, owner, ns(now)))
	if err == nil {
		return st, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("lease storm %d: %w", id, err)
	}
	var n int
	if err := s.wQueryRow(ctx, `SELECT count(*) FROM storms WHERE id = ?`, id).Scan(&n); err != nil {
		return nil, fmt.Errorf("lease storm %d: %w", id, err)
	}
	if n == 0 {
		return nil, incident.Errorf(incident.NotFound, "storm %d not found", id)
	}
	return nil, incident.Errorf(incident.Conflict, "storm %d is being sent by another worker", id)
}

// SaveStorm stores what was sent for a storm (its digest message, synced
// version, PagerDuty's last action, last error). With release set it ends
// owner's lease, if owner still holds it.
func (s *Store) SaveStorm(ctx context.Context, st Storm, owner string, release bool) error {
	keep := owner
	if release {
		keep = ""
	}
	_, err := s.wExec(ctx, `UPDATE storms SET channel_id = ?, ts = ?, permalink = ?, synced_version = ?, pd_last_action = ?, last_error = ?,
			lease_until = CASE WHEN lease_owner = ? AND ? = '' THEN 0 ELSE lease_until END,
			lease_owner = CASE WHEN lease_owner = ? THEN ? ELSE lease_owner END
		WHERE id = ?`,
		st.ChannelID, st.TS, st.Permalink, st.SyncedVersion, st.PDLastAction, truncate(st.LastError),
		owner, keep, owner, keep, st.ID)
	if err != nil {
		return fmt.Errorf("save storm %d: %w", st.ID, err)
	}
	return nil
}

// EndStorm ends the storm if no incident has joined it since quietSince,
// and reports whether it did.
func (s *Store) EndStorm(ctx context.Context, id int64, quietSince time.Time) (bool, error) {
	res, err := s.wExec(ctx, `UPDATE storms SET ended_at = ?, version = version + 1 WHERE id = ? AND ended_at IS NULL AND last_incident_at <= ?`,
		ns(s.opts.Now()), id, ns(quietSince))
	if err != nil {
		return false, fmt.Errorf("end storm %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("end storm %d: %w", id, err)
	}
	return n > 0, nil
}

// GetStorm reads a storm.
func (s *Store) GetStorm(ctx context.Context, id int64) (*Storm, error) {
	st, err := scanStorm(s.rQueryRow(ctx, `SELECT `+stormColumns+` FROM storms WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, incident.Errorf(incident.NotFound, "storm %d not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("read storm %d: %w", id, err)
	}
	return st, nil
}

// StormIncidents returns the incidents in a storm's digest, newest first,
// and the storm's version they are as of: both are read in one statement,
// so one snapshot. What a version stands for (a join, an incident's status)
// is committed with the version's bump or before it, so a digest built from
// these incidents shows everything up to that version. Version is 0 if the
// storm is gone.
func (s *Store) StormIncidents(ctx context.Context, id int64) (_ []StormIncident, version int64, _ error) {
	rows, err := s.rQuery(ctx, `SELECT 0, version, '', '', '' FROM storms WHERE id = ?
		UNION ALL
		SELECT 1, i.id, i.common_labels, i.common_annotations, i.status FROM incidents i
		WHERE i.id IN (SELECT d.incident_id FROM deliveries d WHERE d.storm_id = ? AND d.integration = ?)
		ORDER BY 1, 2 DESC`,
		id, id, incident.IntegrationSlack)
	if err != nil {
		return nil, 0, fmt.Errorf("read incidents of storm %d: %w", id, err)
	}
	defer func() { _ = rows.Close() }()
	var out []StormIncident
	for rows.Next() {
		var (
			member int
			v      int64
			cl, ca string
			status string
		)
		if err := rows.Scan(&member, &v, &cl, &ca, &status); err != nil {
			return nil, 0, fmt.Errorf("read incidents of storm %d: %w", id, err)
		}
		if member == 0 {
			version = v
			continue
		}
		out = append(out, StormIncident{ID: v, Status: status, Alertname: decodeKV(cl)["alertname"], Summary: decodeKV(ca)["summary"]})
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("read incidents of storm %d: %w", id, err)
	}
	return out, version, nil
}

// StormStats counts the storms ever started and returns the channels with
// an active one, for metrics.
func (s *Store) StormStats(ctx context.Context) (total int, active []string, err error) {
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM storms`).Scan(&total); err != nil {
		return 0, nil, fmt.Errorf("storm stats: %w", err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT target FROM storms WHERE ended_at IS NULL`)
	if err != nil {
		return 0, nil, fmt.Errorf("storm stats: %w", err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return 0, nil, fmt.Errorf("storm stats: %w", err)
		}
		active = append(active, t)
	}
	return total, active, rows.Err()
}
