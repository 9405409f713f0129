package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/responder/responder/internal/incident"
)

const dispatchColumns = `id, incident_id, receiver, integration, config_index, target, channel_id, ts, permalink,
	last_action, last_error, synced_version, synced_firing, synced_resolved, attempts, updated_at, storm_id`

func scanDispatch(row scanner) (*incident.Dispatch, error) {
	var (
		d       incident.Dispatch
		updated int64
	)
	if err := row.Scan(&d.ID, &d.IncidentID, &d.Receiver, &d.Integration, &d.ConfigIndex, &d.Target, &d.ChannelID, &d.TS, &d.Permalink,
		&d.LastAction, &d.LastError, &d.SyncedVersion, &d.SyncedFiring, &d.SyncedResolved, &d.Attempts, &updated, &d.StormID); err != nil {
		return nil, err
	}
	d.UpdatedAt = fromNS(updated)
	return &d, nil
}

// QueueDeliveries queues a deliver job for each delivery of an incident
// that has none queued yet, and returns how many it queued. A queued job
// has not read the incident yet, so it will send the latest state: one is
// enough. A running one may have read an older state, so it does not count.
func (s *Store) QueueDeliveries(ctx context.Context, incidentID int64) (int, error) {
	tx, err := s.begin(ctx, false)
	if err != nil {
		return 0, fmt.Errorf("begin queue deliveries: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
	n, err := s.queueDeliveries(ctx, tx.Tx, incidentID)
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit queue deliveries: %w", err)
	}
	if n > 0 {
		s.opts.OnCommit()
	}
	return n, nil
}

func (s *Store) queueDeliveries(ctx context.Context, tx *sql.Tx, incidentID int64) (int, error) {
	rows, err := s.txQuery(ctx, tx, `SELECT d.id FROM deliveries d WHERE d.incident_id = ? AND NOT EXISTS (
			SELECT 1 FROM jobs j WHERE j.incident_id = d.incident_id AND j.kind = ? AND j.ref_id = d.id AND j.state = 'queued')
		ORDER BY d.id`, incidentID, incident.JobDeliver)
	if err != nil {
		return 0, fmt.Errorf("read deliveries of incident %d: %w", incidentID, err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			_ = rows.Close() // the scan error is the one to report
			return 0, fmt.Errorf("read deliveries of incident %d: %w", incidentID, err)
		}
		ids = append(ids, id)
	}
	_ = rows.Close() // rows.Err below reports a failed read
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read deliveries of incident %d: %w", incidentID, err)
	}
	for _, id := range ids {
		if err := s.enqueue(ctx, tx, incident.JobDeliver, id, incidentID, nil); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

// LeaseDelivery reads a delivery and leases it to owner until lease has
// passed, so that no other worker sends to the same target meanwhile. It
// fails with incident.Conflict while another owner holds an unexpired lease,
// and with incident.NotFound when there is no such delivery. SaveDelivery
// ends the lease.
func (s *Store) LeaseDelivery(ctx context.Context, id int64, owner string, lease time.Duration) (*incident.Dispatch, error) {
	now := s.opts.Now()
	d, err := scanDispatch(s.wQueryRow(ctx, `UPDATE deliveries SET lease_owner = ?, lease_until = ?
		WHERE id = ? AND (lease_owner = '' OR lease_owner = ? OR lease_until < ?) RETURNING `+dispatchColumns,
		owner, ns(now.Add(lease)), id, owner, ns(now)))
	if err == nil {
		return d, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("lease delivery %d: %w", id, err)
	}
	var n int
	if err := s.wQueryRow(ctx, `SELECT count(*) FROM deliveries WHERE id = ?`, id).Scan(&n); err != nil {
		return nil, fmt.Errorf("lease delivery %d: %w", id, err)
	}
	if n == 0 {
		return nil, incident.Errorf(incident.NotFound, "delivery %d not found", id)
	}
	return nil, incident.Errorf(incident.Conflict, "delivery %d is being sent by another worker", id)
}

// SaveDelivery stores what was sent to a delivery's target (its Slack
// message, last action, last error and synced version) and counts the
// attempt. It ends owner's lease, if owner still holds it. The state is
// stored even when the lease was lost: it describes a call that was made.
func (s *Store) SaveDelivery(ctx context.Context, d incident.Dispatch, owner string) error {
	_, err := s.wExec(ctx, `UPDATE deliveries SET channel_id = ?, ts = ?, permalink = ?, last_action = ?, last_error = ?,
			synced_version = ?, synced_firing = ?, synced_resolved = ?, attempts = attempts + 1, updated_at = ?,
			lease_owner = CASE WHEN lease_owner = ? THEN '' ELSE lease_owner END,
			lease_until = CASE WHEN lease_owner = ? THEN 0 ELSE lease_until END
		WHERE id = ?`,
		d.ChannelID, d.TS, d.Permalink, d.LastAction, truncate(d.LastError),
		d.SyncedVersion, d.SyncedFiring, d.SyncedResolved, ns(s.opts.Now()), owner, owner, d.ID)
	if err != nil {
		return fmt.Errorf("save delivery %d: %w", d.ID, err)
	}
	return nil
}

// Deliveries returns the deliveries of an incident, in the order they were
// planned.
func (s *Store) Deliveries(ctx context.Context, incidentID int64) ([]incident.Dispatch, error) {
	rows, err := s.rQuery(ctx, `SELECT `+dispatchColumns+` FROM deliveries WHERE incident_id = ? ORDER BY id`, incidentID)
	if err != nil {
		return nil, fmt.Errorf("read deliveries: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := []incident.Dispatch{}
	for rows.Next() {
		d, err := scanDispatch(rows)
		if err != nil {
			return nil, fmt.Errorf("scan delivery: %w", err)
		}
		out = append(out, *d)
	}
	return out, rows.Err()
}

func (s *Store) decisions(ctx context.Context, incidentID int64) ([]incident.Decision, error) {
	rows, err := s.rQuery(ctx, `SELECT kind, summary, detail, at FROM decisions WHERE incident_id = ? ORDER BY id`, incidentID)
	if err != nil {
		return nil, fmt.Errorf("read decisions: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := []incident.Decision{}
	for rows.Next() {
		var (
			d      incident.Decision
			detail string
			at     int64
		)
		if err := rows.Scan(&d.Kind, &d.Summary, &detail, &at); err != nil {
			return nil, fmt.Errorf("scan decision: %w", err)
		}
		d.Detail, d.At = []byte(detail), fromNS(at)
		out = append(out, d)
	}
	return out, rows.Err()
}

// truncate bounds a stored error message like truncateError does.
func truncate(msg string) string {
	if msg == "" {
		return ""
	}
	return truncateError(errors.New(msg))
}

// MarkDelivery records action as the delivery's last action while owner
// holds its lease, without ending the lease: a mark committed before a call
// out (e.g. "posting") tells the next attempt, after a crash or a lost
// answer, that the call may have gone through. It fails with
// incident.Conflict when owner no longer holds the lease.
func (s *Store) MarkDelivery(ctx context.Context, id int64, owner, action string) error {
	res, err := s.wExec(ctx, `UPDATE deliveries SET last_action = ?, updated_at = ? WHERE id = ? AND lease_owner = ?`,
		action, ns(s.opts.Now()), id, owner)
	if err != nil {
		return fmt.Errorf("mark delivery %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("mark delivery %d: %w", id, err)
	} else if n == 0 {
		return incident.Errorf(incident.Conflict, "delivery %d is no longer leased by this worker", id)
	}
	return nil
}
