package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/responder/responder/internal/incident"
)

// Pruned counts what one Prune call removed.
type Pruned struct {
	// Incidents are resolved incidents, each with everything recorded for
	// it: its alerts and their changes, the notifications applied to it
	// and their alert states, decisions, deliveries, context, remediation
	// runs with their audit trails, and jobs.
	Incidents int64
	// Notifications are notifications that belong to no incident
	// (duplicates), with the alert states they carried first.
	Notifications int64
	// Jobs are finished jobs that belong to no pruned incident.
	Jobs int64
	// Deployments are recorded deployments.
	Deployments int64
	// Storms are ended storms no kept delivery refers to.
	Storms int64
	// Busy is true when another replica was pruning: nothing was done.
	Busy bool
}

// Plus returns the sums of p's and o's counts.
func (p Pruned) Plus(o Pruned) Pruned {
	return Pruned{
		Incidents: p.Incidents + o.Incidents, Notifications: p.Notifications + o.Notifications,
		Jobs: p.Jobs + o.Jobs, Deployments: p.Deployments + o.Deployments, Storms: p.Storms + o.Storms,
	}
}

// Total is how many rows of the kinds above were removed.
func (p Pruned) Total() int64 {
	return p.Incidents + p.Notifications + p.Jobs + p.Deployments + p.Storms
}

// Prune removes, in one transaction, up to limit of each kind of record
// that ended before cutoff (see Pruned): incidents resolved before it,
// notifications received, jobs finished and deployments made before it,
// and storms ended before it. Nothing that is still open, pending or
// queued is removed: firing incidents, incidents with queued or running
// jobs, pending notifications, and unfinished jobs stay, however old.
// Call it again while it removes limit of a kind. A state change
// redelivered after its notification was pruned is taken as new; callers
// keep cutoff well beyond Alertmanager's own notification log retention
// (5 days by default), after which it does not redeliver.
func (s *Store) Prune(ctx context.Context, cutoff time.Time, limit int) (Pruned, error) {
	var out Pruned
	tx, err := s.begin(ctx, false)
	if err != nil {
		return out, fmt.Errorf("prune: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	before := ns(cutoff)
	if q := s.dialect.PruneLock; q != "" {
		var got bool
		if err := tx.QueryRowContext(ctx, q).Scan(&got); err != nil {
			return out, fmt.Errorf("prune: lock: %w", err)
		}
		if !got {
			out.Busy = true
			return out, nil
		}
	}

	ids, err := queryColumn[int64](ctx, s, tx.Tx, `SELECT id FROM incidents
		WHERE status = ? AND resolved_at < ?
		AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.incident_id = incidents.id AND jobs.state IN (?, ?))
		ORDER BY id LIMIT ?`, []any{incident.StatusResolved, before, incident.JobQueued, incident.JobRunning, limit})
	if err != nil {
		return out, fmt.Errorf("prune: select incidents: %w", err)
	}
	if len(ids) > 0 {
		if err := s.pruneIncidents(ctx, tx.Tx, ids); err != nil {
			return out, err
		}
		out.Incidents = int64(len(ids))
	}

	// Notifications of no incident: duplicates, and those whose apply
	// found nothing new while no incident was open. The alert states a
	// notification carried first go with it.
	// The statuses are literals, as in the WHERE of SQLite's partial index
	// notifications_orphans: SQLite uses a partial index only for a query
	// whose WHERE implies the index's, which bound values cannot.
	orphans, err := queryColumn[int64](ctx, s, tx.Tx, `SELECT id FROM notifications
		WHERE incident_id IS NULL AND status IN ('`+incident.NotificationDuplicate+`', '`+incident.NotificationProcessed+`') AND received_at < ? ORDER BY id LIMIT ?`,
		[]any{before, limit})
	if err != nil {
		return out, fmt.Errorf("prune: select notifications: %w", err)
	}
	if len(orphans) > 0 {
		// Most of them are copies whose states belong to a kept
		// notification: only the rows that name the orphan itself go.
		if err := s.deleteIn(ctx, tx.Tx, `DELETE FROM notification_states WHERE state_hash IN (SELECT state_hash FROM notifications WHERE id IN (%[1]s))
			AND notification_id IN (%[1]s)`, orphans); err != nil {
			return out, err
		}
		if err := s.deleteIn(ctx, tx.Tx, `DELETE FROM notifications WHERE id IN (%[1]s)`, orphans); err != nil {
			return out, err
		}
		out.Notifications = int64(len(orphans))
	}

	for _, d := range []struct {
		n *int64
		q string
	}{
		// Ingest and other jobs of no incident, finished long ago.
		{&out.Jobs, `DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE state = 'done' AND updated_at < ? ORDER BY id LIMIT ?)`},
		{&out.Deployments, `DELETE FROM deployments WHERE id IN (SELECT id FROM deployments WHERE deployed_at < ? ORDER BY id LIMIT ?)`},
		{&out.Storms, `DELETE FROM storms WHERE id IN (SELECT id FROM storms WHERE ended_at IS NOT NULL AND ended_at < ?
			AND NOT EXISTS (SELECT 1 FROM deliveries WHERE deliveries.storm_id = storms.id) ORDER BY id LIMIT ?)`},
	} {
		res, err := tx.ExecContext(ctx, s.rebind(d.q), before, limit)
		if err != nil {
			return out, fmt.Errorf("prune: %w", err)
		}
		*d.n, _ = res.RowsAffected()
	}
	if out.Incidents > 0 || out.Notifications > 0 {
		// The payloads cache may name a deleted notification: a later
		// duplicate with its bytes would point to a payload that is gone
		// instead of storing its own. Forgotten before the commit, since
		// the writer loop commits deliveries in the same transaction as
		// a lent Prune, after it (a failed commit only costs the cache,
		// which fills again from new rows).
		s.payloads.Purge()
	}
	if err := tx.Commit(); err != nil {
		return Pruned{}, fmt.Errorf("prune: commit: %w", err)
	}
	return out, nil
}

// pruneIncidents deletes the incidents ids and everything recorded for them.
// Every statement finds its rows through an index on the incident (or the
// run, the delivery, the state hash), so that a batch costs its own rows,
// not a scan of a table that grows with the history.
func (s *Store) pruneIncidents(ctx context.Context, tx *sql.Tx, ids []int64) error {
	for _, q := range []string{
		`DELETE FROM remediation_audit WHERE run_id IN (SELECT id FROM remediation_runs WHERE incident_id IN (%[1]s))`,
		`DELETE FROM remediation_runs WHERE incident_id IN (%[1]s)`,
		// A notification applied to an incident is the first to carry its
		// alert states (later copies are duplicates of no incident).
		`DELETE FROM notification_states WHERE state_hash IN (SELECT state_hash FROM notifications WHERE incident_id IN (%[1]s))
			AND notification_id IN (SELECT id FROM notifications WHERE incident_id IN (%[1]s))`,
		`DELETE FROM notifications WHERE incident_id IN (%[1]s)`,
		`DELETE FROM alerts WHERE incident_id IN (%[1]s)`,
		`DELETE FROM changes WHERE incident_id IN (%[1]s)`,
		`DELETE FROM decisions WHERE incident_id IN (%[1]s)`,
		`DELETE FROM context_posts WHERE delivery_id IN (SELECT id FROM deliveries WHERE incident_id IN (%[1]s))`,
		`DELETE FROM deliveries WHERE incident_id IN (%[1]s)`,
		`DELETE FROM incident_context WHERE incident_id IN (%[1]s)`,
		`DELETE FROM jobs WHERE incident_id IN (%[1]s)`,
		// The group keeps its episode counter; a resolved incident is no
		// longer its group's open one (apply cleared that).
		`DELETE FROM incidents WHERE id IN (%[1]s)`,
	} {
		if err := s.deleteIn(ctx, tx, q, ids); err != nil {
			return err
		}
	}
	return nil
}

// deleteIn runs q, in which each %[1]s stands for the placeholders of ids.
func (s *Store) deleteIn(ctx context.Context, tx *sql.Tx, q string, ids []int64) error {
	lists := strings.Count(q, "%[1]s")
	args := make([]any, 0, lists*len(ids))
	for range lists {
		for _, id := range ids {
			args = append(args, id)
		}
	}
	if _, err := tx.ExecContext(ctx, s.rebind(fmt.Sprintf(q, placeholders(len(ids)))), args...); err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	return nil
}
