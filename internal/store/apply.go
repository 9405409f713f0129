package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/prometheus/alertmanager/template"

	"github.com/responder/responder/internal/incident"
)

// ApplyNotification applies a stored notification to its group's incident,
// in one transaction that also completes the ingest job: each alert state
// change (group, fingerprint, startsAt, status) is recorded exactly once, a
// group with no open incident opens a new episode, and an incident whose
// alerts have all resolved is resolved. Running it again for the same
// notification (after a crash between commit and acknowledgement) changes
// nothing and reports Already.
//
// A firing state for an alert that has already resolved (same fingerprint and
// startsAt) is stale, an HA peer or a retry running late, and is ignored; so
// the outcome does not depend on the order in which notifications are applied.
func (s *Store) ApplyNotification(ctx context.Context, j incident.Job) (incident.Applied, error) {
	var out incident.Applied
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return out, fmt.Errorf("begin apply: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit.

	var (
		status  string
		payload []byte
	)
	err = tx.QueryRowContext(ctx, s.rebind(`SELECT status, payload FROM notifications WHERE id = ?`), j.RefID).Scan(&status, &payload)
	if errors.Is(err, sql.ErrNoRows) {
		return out, incident.Permanent(fmt.Errorf("notification %d does not exist", j.RefID))
	}
	if err != nil {
		return out, fmt.Errorf("read notification %d: %w", j.RefID, err)
	}
	if status != incident.NotificationPending {
		out.Already = true
		return out, s.finish(ctx, tx, j)
	}
	m, err := incident.DecodeMessage(payload)
	if err != nil {
		return out, incident.Permanent(fmt.Errorf("decode notification %d: %w", j.RefID, err))
	}
	a := applier{s: s, tx: tx, m: m, notifID: j.RefID, now: ns(s.opts.Now())}
	if out, err = a.apply(ctx); err != nil {
		return out, err
	}
	return out, s.finish(ctx, tx, j)
}

// finish completes the job inside the apply transaction and commits.
func (s *Store) finish(ctx context.Context, tx *sql.Tx, j incident.Job) error {
	if _, err := tx.StmtContext(ctx, s.stmts.completeJob).ExecContext(ctx, ns(s.opts.Now()), j.ID, j.Owner); err != nil {
		return fmt.Errorf("complete job %d: %w", j.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit apply: %w", err)
	}
	return nil
}

type applier struct {
	s       *Store
	tx      *sql.Tx
	m       *incident.Message
	notifID int64
	now     int64

	openID  int64 // the group's open incident, 0 when none
	episode int
	created map[int64]bool   // incidents opened by this notification
	touched map[int64]bool   // incidents whose alerts changed
	before  map[int64]string // status of touched incidents before

	newFiring, newResolved int
}

func (a *applier) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return a.tx.ExecContext(ctx, a.s.rebind(q), args...)
}

func (a *applier) apply(ctx context.Context) (incident.Applied, error) {
	var out incident.Applied
	a.created, a.touched, a.before = map[int64]bool{}, map[int64]bool{}, map[int64]string{}
	gk := a.m.GroupKey
	// Lock the group row: on PostgreSQL this serialises concurrent workers
	// applying notifications of the same group; SQLite serialises all writers.
	if _, err := a.exec(ctx, `INSERT INTO alert_groups (group_key) VALUES (?) ON CONFLICT DO NOTHING`, gk); err != nil {
		return out, fmt.Errorf("insert group: %w", err)
	}
	var open sql.NullInt64
	if err := a.tx.QueryRowContext(ctx, a.s.rebind(`SELECT episode, incident_id FROM alert_groups WHERE group_key = ?`+a.s.dialect.ForUpdate), gk).Scan(&a.episode, &open); err != nil {
		return out, fmt.Errorf("lock group: %w", err)
	}
	a.openID = open.Int64

	for _, al := range a.m.Alerts {
		if err := a.applyAlert(ctx, al); err != nil {
			return out, err
		}
	}
	if len(a.touched) == 0 {
		if _, err := a.exec(ctx, `UPDATE notifications SET status = ?, reason = ?, incident_id = ? WHERE id = ?`,
			incident.NotificationDuplicate, "no new alert state changes", nullInt(a.openID), a.notifID); err != nil {
			return out, fmt.Errorf("mark duplicate: %w", err)
		}
		out.Transition = incident.TransitionDuplicate
		if a.openID != 0 {
			inc, err := a.s.readIncident(ctx, a.tx, a.openID)
			if err != nil {
				return out, err
			}
			out.Incident = *inc
		}
		return out, nil
	}

	// Refresh each touched incident's counters and status. The one reported
	// is the open incident if there is one, else the last touched.
	ids := slices.Sorted(maps.Keys(a.touched))
	primary := ids[len(ids)-1]
	for _, id := range ids {
		if id == a.openID {
			primary = id
		}
		if err := a.refresh(ctx, id); err != nil {
			return out, err
		}
	}
	if _, err := a.exec(ctx, `UPDATE alert_groups SET episode = ?, incident_id = ? WHERE group_key = ?`, a.episode, nullInt(a.openID), gk); err != nil {
		return out, fmt.Errorf("update group: %w", err)
	}
	if _, err := a.exec(ctx, `UPDATE notifications SET status = ?, incident_id = ? WHERE id = ?`, incident.NotificationProcessed, primary, a.notifID); err != nil {
		return out, fmt.Errorf("mark processed: %w", err)
	}
	inc, err := a.s.readIncident(ctx, a.tx, primary)
	if err != nil {
		return out, err
	}
	out.Incident = *inc
	switch {
	case a.created[primary] && inc.Status == incident.StatusFiring:
		out.Transition = incident.TransitionOpened
	case inc.Status == incident.StatusResolved && a.before[primary] != incident.StatusResolved:
		out.Transition = incident.TransitionResolved
	default:
		out.Transition = incident.TransitionUpdated
	}
	out.NewFiring, out.NewResolved = a.newFiring, a.newResolved
	return out, nil
}

// applyAlert records one alert's state, if it is new.
func (a *applier) applyAlert(ctx context.Context, al template.Alert) error {
	gk, startsAt := a.m.GroupKey, ns(al.StartsAt)
	var (
		curIncident int64
		curStatus   string
	)
	err := a.tx.QueryRowContext(ctx, a.s.rebind(`SELECT incident_id, status FROM alerts WHERE group_key = ? AND fingerprint = ? AND starts_at = ?`),
		gk, al.Fingerprint, startsAt).Scan(&curIncident, &curStatus)
	exists := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read alert: %w", err)
	}
	if exists && (curStatus == al.Status || curStatus == incident.StatusResolved) {
		// Already known, or stale: resolved is final for one firing episode.
		return nil
	}
	incidentID := curIncident
	if !exists {
		if a.openID == 0 {
			id, err := a.open(ctx, al)
			if err != nil {
				return err
			}
			a.openID = id
		}
		incidentID = a.openID
	}
	if _, seen := a.before[incidentID]; !seen {
		var st string
		if err := a.tx.QueryRowContext(ctx, a.s.rebind(`SELECT status FROM incidents WHERE id = ?`), incidentID).Scan(&st); err != nil {
			return fmt.Errorf("read incident %d: %w", incidentID, err)
		}
		a.before[incidentID] = st
	}
	res, err := a.exec(ctx, `INSERT INTO changes (incident_id, group_key, fingerprint, starts_at, status, at, notification_id) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		incidentID, gk, al.Fingerprint, startsAt, al.Status, a.now, a.notifID)
	if err != nil {
		return fmt.Errorf("insert change: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil
	}
	labels, annotations := mustJSON(al.Labels), mustJSON(al.Annotations)
	var endsAt sql.NullInt64
	if al.Status == incident.StatusResolved && !al.EndsAt.IsZero() {
		endsAt = sql.NullInt64{Int64: ns(al.EndsAt), Valid: true}
	}
	if exists {
		_, err = a.exec(ctx, `UPDATE alerts SET status = ?, labels = ?, annotations = ?, ends_at = ?, generator_url = ?, updated_at = ? WHERE group_key = ? AND fingerprint = ? AND starts_at = ?`,
			al.Status, labels, annotations, endsAt, al.GeneratorURL, a.now, gk, al.Fingerprint, startsAt)
	} else {
		_, err = a.exec(ctx, `INSERT INTO alerts (group_key, fingerprint, starts_at, incident_id, status, labels, annotations, ends_at, generator_url, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			gk, al.Fingerprint, startsAt, incidentID, al.Status, labels, annotations, endsAt, al.GeneratorURL, a.now)
	}
	if err != nil {
		return fmt.Errorf("store alert: %w", err)
	}
	a.touched[incidentID] = true
	if al.Status == incident.StatusFiring {
		a.newFiring++
	} else {
		a.newResolved++
	}
	return nil
}

// open creates the group's next episode.
func (a *applier) open(ctx context.Context, first template.Alert) (int64, error) {
	a.episode++
	m := a.m
	var id int64
	err := a.tx.QueryRowContext(ctx, a.s.rebind(`INSERT INTO incidents (group_key, episode, status, receiver, group_labels, common_labels, common_annotations, external_url, opened_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		m.GroupKey, a.episode, first.Status, m.Receiver, mustJSON(m.GroupLabels), mustJSON(m.CommonLabels), mustJSON(m.CommonAnnotations), m.ExternalURL,
		ns(first.StartsAt), a.now).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("open incident: %w", err)
	}
	a.created[id] = true
	a.before[id] = ""
	return id, nil
}

// refresh recomputes an incident's counters and status from its alerts.
func (a *applier) refresh(ctx context.Context, id int64) error {
	var firing, resolved int
	var lastEnd sql.NullInt64
	if err := a.tx.QueryRowContext(ctx, a.s.rebind(`SELECT
			coalesce(sum(CASE WHEN status = 'firing' THEN 1 ELSE 0 END), 0),
			coalesce(sum(CASE WHEN status = 'resolved' THEN 1 ELSE 0 END), 0),
			max(ends_at)
		FROM alerts WHERE incident_id = ?`), id).Scan(&firing, &resolved, &lastEnd); err != nil {
		return fmt.Errorf("count alerts of incident %d: %w", id, err)
	}
	status := incident.StatusFiring
	var resolvedAt sql.NullInt64
	if firing == 0 {
		status = incident.StatusResolved
		resolvedAt = sql.NullInt64{Int64: a.now, Valid: true}
		if lastEnd.Valid {
			resolvedAt = lastEnd
		}
		if a.openID == id {
			a.openID = 0
		}
	}
	m := a.m
	if _, err := a.exec(ctx, `UPDATE incidents SET status = ?, firing_alerts = ?, resolved_alerts = ?, resolved_at = ?, updated_at = ?,
			common_labels = ?, common_annotations = ? WHERE id = ?`,
		status, firing, resolved, resolvedAt, a.now, mustJSON(m.CommonLabels), mustJSON(m.CommonAnnotations), id); err != nil {
		return fmt.Errorf("update incident %d: %w", id, err)
	}
	return nil
}

// mustJSON encodes a label set; a map of strings always encodes.
func mustJSON(kv map[string]string) string {
	if kv == nil {
		return "{}"
	}
	b, err := json.Marshal(kv)
	if err != nil {
		panic(fmt.Sprintf("encode labels: %v", err))
	}
	return string(b)
}
