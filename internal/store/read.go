package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	gojson "github.com/goccy/go-json"

	"github.com/responder/responder/internal/incident"
)

const incidentColumns = `id, group_key, episode, status, receiver, group_labels, common_labels, common_annotations,
	external_url, opened_at, updated_at, resolved_at, firing_alerts, resolved_alerts, version`

type scanner interface{ Scan(dest ...any) error }

func scanIncident(row scanner) (*incident.Incident, error) {
	var (
		inc             incident.Incident
		gl, cl, ca      string
		opened, updated int64
		resolved        sql.NullInt64
	)
	if err := row.Scan(&inc.ID, &inc.GroupKey, &inc.Episode, &inc.Status, &inc.Receiver, &gl, &cl, &ca,
		&inc.ExternalURL, &opened, &updated, &resolved, &inc.FiringAlerts, &inc.ResolvedAlerts, &inc.Version); err != nil {
		return nil, err
	}
	inc.GroupLabels, inc.CommonLabels, inc.CommonAnnotations = decodeKV(gl), decodeKV(cl), decodeKV(ca)
	inc.OpenedAt, inc.UpdatedAt, inc.ResolvedAt = fromNS(opened), fromNS(updated), nullTime(resolved)
	return &inc, nil
}

// decodeKV decodes a label set written by mustJSON. It uses goccy/go-json,
// like the webhook (decode.go in internal/incident): label sets are most
// of what the job handlers' reads decode.
func decodeKV(s string) map[string]string {
	kv := map[string]string{}
	_ = gojson.Unmarshal([]byte(s), &kv) // written by mustJSON; never malformed
	return kv
}

// readIncident reads an incident in tx, or on the reader pool if tx is nil.
func (s *Store) readIncident(ctx context.Context, tx txConn, id int64) (*incident.Incident, error) {
	const q = `SELECT ` + incidentColumns + ` FROM incidents WHERE id = ?`
	var row *sql.Row
	if tx != nil {
		row = s.txQueryRow(ctx, tx, q, id)
	} else {
		row = s.rQueryRow(ctx, q, id)
	}
	inc, err := scanIncident(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, incident.Errorf(incident.NotFound, "incident %d not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("read incident %d: %w", id, err)
	}
	return inc, nil
}

// page completes a list query: the rows whose column equals value (any when
// value is empty) and whose id is below before (any when it is not
// positive), newest first, at most limit (clampLimit).
func page(q, column, value string, before int64, limit int) (string, []any) {
	var (
		where []string
		args  []any
	)
	if value != "" {
		where = append(where, column+` = ?`)
		args = append(args, value)
	}
	if before > 0 {
		where = append(where, `id < ?`)
		args = append(args, before)
	}
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	return q + ` ORDER BY id DESC LIMIT ?`, append(args, clampLimit(limit))
}

// ListIncidents returns incidents, newest first, without their details.
func (s *Store) ListIncidents(ctx context.Context, f incident.ListFilter) ([]incident.Incident, error) {
	q, args := page(`SELECT `+incidentColumns+` FROM incidents`, "status", f.Status, f.Before, f.Limit)
	rows, err := s.rQuery(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := []incident.Incident{}
	for rows.Next() {
		inc, err := scanIncident(rows)
		if err != nil {
			return nil, fmt.Errorf("scan incident: %w", err)
		}
		out = append(out, *inc)
	}
	return out, rows.Err()
}

// Part is a section of an incident that ReadIncident reads besides its row.
type Part uint16

// The parts of an incident.
const (
	PartAlerts Part = 1 << iota
	PartHistory
	PartNotifications
	PartJobs
	PartDecisions
	PartDeliveries
	PartRemediation
	PartContext

	// PartAll is what the incidents API shows.
	PartAll = PartAlerts | PartHistory | PartNotifications | PartJobs | PartDecisions | PartDeliveries | PartRemediation | PartContext
)

// GetIncident returns one incident with its alerts, state history,
// notifications, jobs, decisions, deliveries, remediation runs and
// gathered context.
func (s *Store) GetIncident(ctx context.Context, id int64) (*incident.Incident, error) {
	return s.ReadIncident(ctx, id, PartAll)
}

// ReadIncident returns one incident with the parts asked for; the others
// are left empty. Job handlers ask for what they use: each part is a query.
func (s *Store) ReadIncident(ctx context.Context, id int64, parts Part) (*incident.Incident, error) {
	inc, err := s.readIncident(ctx, nil, id)
	if err != nil {
		return nil, err
	}
	if parts&PartAlerts != 0 {
		if inc.Alerts, err = s.alerts(ctx, id); err != nil {
			return nil, err
		}
	}
	if parts&PartHistory != 0 {
		if inc.History, err = s.history(ctx, id); err != nil {
			return nil, err
		}
	}
	if parts&PartNotifications != 0 {
		if inc.Notifications, err = s.notifications(ctx, id); err != nil {
			return nil, err
		}
	}
	if parts&PartJobs != 0 {
		if inc.Jobs, err = s.queryJobs(ctx, `SELECT id, kind, ref_id, incident_id, state, attempts, max_attempts, run_at, last_error, created_at, updated_at
		FROM jobs WHERE incident_id = ? OR (kind = ? AND ref_id IN (SELECT id FROM notifications WHERE incident_id = ?)) ORDER BY id`, id, incident.JobIngest, id); err != nil {
			return nil, err
		}
	}
	if parts&PartDecisions != 0 {
		if inc.Decisions, err = s.decisions(ctx, id); err != nil {
			return nil, err
		}
	}
	if parts&PartDeliveries != 0 {
		if inc.Deliveries, err = s.Deliveries(ctx, id); err != nil {
			return nil, err
		}
	}
	if parts&PartRemediation != 0 {
		if inc.Remediation, err = s.RemediationRuns(ctx, id); err != nil {
			return nil, err
		}
	}
	if parts&PartContext != 0 {
		if inc.Context, err = s.IncidentContext(ctx, id); err != nil {
			return nil, err
		}
	}
	return inc, nil
}

func (s *Store) alerts(ctx context.Context, id int64) ([]incident.Alert, error) {
	rows, err := s.rQuery(ctx, `SELECT fingerprint, status, labels, annotations, starts_at, ends_at, generator_url, updated_at
		FROM alerts WHERE incident_id = ? ORDER BY starts_at, fingerprint`, id)
	if err != nil {
		return nil, fmt.Errorf("read alerts: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := []incident.Alert{}
	for rows.Next() {
		var (
			a               incident.Alert
			l, an           string
			starts, updated int64
			ends            sql.NullInt64
		)
		if err := rows.Scan(&a.Fingerprint, &a.Status, &l, &an, &starts, &ends, &a.GeneratorURL, &updated); err != nil {
			return nil, fmt.Errorf("scan alert: %w", err)
		}
		a.Labels, a.Annotations = decodeKV(l), decodeKV(an)
		a.StartsAt, a.EndsAt, a.UpdatedAt = fromNS(starts), nullTime(ends), fromNS(updated)
		out = append(out, a)
	}
	return out, rows.Err()
}

func (s *Store) history(ctx context.Context, id int64) ([]incident.Change, error) {
	rows, err := s.rQuery(ctx, `SELECT fingerprint, starts_at, status, at, notification_id FROM changes WHERE incident_id = ? ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := []incident.Change{}
	for rows.Next() {
		var (
			c          incident.Change
			starts, at int64
		)
		if err := rows.Scan(&c.Fingerprint, &starts, &c.Status, &at, &c.NotificationID); err != nil {
			return nil, fmt.Errorf("scan change: %w", err)
		}
		c.StartsAt, c.At = fromNS(starts), fromNS(at)
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s *Store) notifications(ctx context.Context, id int64) ([]incident.NotificationRef, error) {
	rows, err := s.rQuery(ctx, `SELECT id, received_at, status, reason, alerts, truncated_alerts FROM notifications WHERE incident_id = ? ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("read notifications: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := []incident.NotificationRef{}
	for rows.Next() {
		var (
			n  incident.NotificationRef
			at int64
		)
		if err := rows.Scan(&n.ID, &at, &n.Status, &n.Reason, &n.Alerts, &n.TruncatedAlerts); err != nil {
			return nil, fmt.Errorf("scan notification: %w", err)
		}
		n.ReceivedAt = fromNS(at)
		out = append(out, n)
	}
	return out, rows.Err()
}

// NotificationCounts counts stored notifications by status, for tests and
// operators checking that nothing was lost.
func (s *Store) NotificationCounts(ctx context.Context) (map[string]int, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT status, count(*) FROM notifications GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("count notifications: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := map[string]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("count notifications: %w", err)
		}
		out[st] = n
	}
	return out, rows.Err()
}
