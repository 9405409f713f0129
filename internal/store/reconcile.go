package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/responder/responder/internal/incident"
)

// FiringIncidents returns every firing incident with its alerts, for
// reconciliation with Alertmanager.
func (s *Store) FiringIncidents(ctx context.Context) ([]incident.Incident, error) {
	return s.firingIncidents(ctx, "")
}

// HeldIncidents returns, with their alerts, the firing incidents with no
// alert firing: those a notification from which Alertmanager left alerts
// out did not resolve (see Options.HoldTruncated).
func (s *Store) HeldIncidents(ctx context.Context) ([]incident.Incident, error) {
	return s.firingIncidents(ctx, ` AND firing_alerts = 0`)
}

// firingIncidents returns the firing incidents that also match and (a
// literal condition), with their alerts.
func (s *Store) firingIncidents(ctx context.Context, and string) ([]incident.Incident, error) {
	rows, err := s.rQuery(ctx, `SELECT `+incidentColumns+` FROM incidents WHERE status = ?`+and+` ORDER BY id`, incident.StatusFiring)
	if err != nil {
		return nil, fmt.Errorf("list firing incidents: %w", err)
	}
	var out []incident.Incident
	for rows.Next() {
		inc, err := scanIncident(rows)
		if err != nil {
			_ = rows.Close() // the scan error is the one to report
			return nil, fmt.Errorf("scan incident: %w", err)
		}
		out = append(out, *inc)
	}
	_ = rows.Close() // rows.Err reports a failed read
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list firing incidents: %w", err)
	}
	for i := range out {
		if out[i].Alerts, err = s.alerts(ctx, out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Receivers returns the Alertmanager receivers that incidents came from.
func (s *Store) Receivers(ctx context.Context) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT DISTINCT receiver FROM incidents ORDER BY receiver`)
	if err != nil {
		return nil, fmt.Errorf("list receivers: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, fmt.Errorf("scan receiver: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// NotificationIncident returns the incident a notification was applied to,
// or 0 while it is not applied yet. A duplicate notification is never
// applied: it returns incident.NotFound.
func (s *Store) NotificationIncident(ctx context.Context, notificationID int64) (int64, error) {
	var (
		status string
		id     sql.NullInt64
	)
	err := s.rQueryRow(ctx, `SELECT status, incident_id FROM notifications WHERE id = ?`, notificationID).Scan(&status, &id)
	if errors.Is(err, sql.ErrNoRows) || status == incident.NotificationDuplicate {
		return 0, incident.Errorf(incident.NotFound, "notification %d was not applied to an incident", notificationID)
	}
	if err != nil {
		return 0, fmt.Errorf("read notification %d: %w", notificationID, err)
	}
	return id.Int64, nil
}

// AddDecision records a decision taken for an incident.
func (s *Store) AddDecision(ctx context.Context, incidentID int64, d incident.Decision) error {
	detail := decisionDetail(d)
	if _, err := s.wExec(ctx, `INSERT INTO decisions (incident_id, kind, summary, detail, at) VALUES (?, ?, ?, ?, ?)`,
		incidentID, d.Kind, d.Summary, detail, ns(d.At)); err != nil {
		return fmt.Errorf("record decision for incident %d: %w", incidentID, err)
	}
	return nil
}

// decisionDetail is a decision's detail as stored: its JSON, "{}" for none.
func decisionDetail(d incident.Decision) string {
	if len(d.Detail) == 0 {
		return "{}"
	}
	return string(d.Detail)
}
