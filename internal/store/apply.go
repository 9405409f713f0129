package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/prometheus/alertmanager/template"

	"github.com/responder/responder/internal/incident"
)

// ApplyDue applies up to n deferred deliveries (due ingest jobs, oldest
// first) and completes their jobs, all in one transaction that does not
// wait for its own flush (beginLazy): the notifications were committed
// durably before their 200, and the next durable commit flushes this one.
// It stops early, committing what is done, when a request waits for the
// writer, or a job handler has waited for a slice (applySlice). Each
// delivery runs under its own savepoint, so a failing one is rolled back
// alone and retried later with backoff (or parked after its last attempt)
// while the others commit. It reports whether more may be due.
//
// Applying is idempotent: a notification that is no longer pending (applied
// before a crash hid the job's completion) changes nothing.
func (s *Store) ApplyDue(ctx context.Context, n int) (more bool, err error) {
	return s.applyDue(ctx, n, 0)
}

// applyDue is ApplyDue that does not yield to waiting requests before slice
// has passed.
func (s *Store) applyDue(ctx context.Context, n int, slice time.Duration) (more bool, err error) {
	now := s.opts.Now()
	tx, err := s.beginLazy(ctx)
	if err != nil {
		return false, fmt.Errorf("begin apply: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
	// Deferred deliveries are the pending notifications themselves (a small
	// partial index), oldest first; a job row exists only for one whose apply
	// failed and waits for its retry.
	jobs, err := s.pendingTx(ctx, tx.Tx, n)
	if err != nil {
		return false, err
	}
	if len(jobs) < n {
		retries, err := s.queryJobsTx(ctx, tx.Tx, `SELECT id, ref_id, attempts, max_attempts FROM jobs
			WHERE kind = ? AND state = 'queued' AND run_at <= ? ORDER BY run_at, id LIMIT ?`+s.dialect.SkipLocked, incident.JobIngest, ns(now), n-len(jobs))
		if err != nil {
			return false, err
		}
		jobs = append(jobs, retries...)
	}
	if len(jobs) == 0 {
		return false, nil
	}
	type done struct {
		id int64
		ap incident.Applied
	}
	var applied []done
	queued, yielded := false, false
	waiting := 0 // notifications left for their group's earlier ones
	start := time.Now()
	for i, j := range jobs {
		if i > 0 && ((len(s.accepts) > 0 && time.Since(start) >= slice) ||
			((len(s.lends) > 0 || s.gate.waitingLow()) && time.Since(start) >= applySlice)) {
			// A request is waiting for its 200, or a job handler for the
			// writer (for a slice): commit what is done and let them go
			// first.
			yielded = true
			break
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT apply_job"); err != nil {
			return false, fmt.Errorf("savepoint: %w", err)
		}
		ap, aerr := s.applyJob(ctx, tx.Tx, j)
		if aerr != nil && s.transient(aerr) {
			// The storage failed, not the notification: nothing of the
			// batch is committed and no attempt counts (ten of them, a
			// few minutes of a full disk or a database outage, parked
			// notifications that had been answered 200). The writer
			// loop tries again after ApplyPoll.
			return false, fmt.Errorf("apply notification %d: %w", j.RefID, aerr)
		}
		if aerr != nil {
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT apply_job"); err != nil {
				return false, fmt.Errorf("rollback to savepoint: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT apply_job"); err != nil {
			return false, fmt.Errorf("release savepoint: %w", err)
		}
		if errors.Is(aerr, errEarlierPending) {
			// Not a failure: it stays as it is, and the next round (here
			// or on the replica applying the earlier one) applies it.
			waiting++
			continue
		}
		if aerr != nil {
			if err := s.failIngest(ctx, tx.Tx, j, aerr, now); err != nil {
				return false, err
			}
			continue
		}
		if j.ID != 0 {
			if _, err := s.txExec(ctx, tx, `UPDATE jobs SET state = 'done', attempts = attempts + 1, updated_at = ? WHERE id = ?`, ns(now), j.ID); err != nil {
				return false, fmt.Errorf("complete job %d: %w", j.ID, err)
			}
		}
		if !ap.Already {
			applied = append(applied, done{j.RefID, ap})
			queued = queued || (len(s.opts.FollowUps) > 0 && ap.Transition != incident.TransitionDuplicate)
		}
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("commit apply: %w", err)
	}
	if queued {
		s.opts.OnCommit()
	}
	for _, d := range applied {
		s.opts.OnApplied(d.id, d.ap)
	}
	s.prepareMissed(ctx)
	// A batch that only waited would find the same notifications again at
	// once: the next poll comes back for them, if their replica has not.
	return yielded || (len(jobs) == n && waiting < n), nil
}

// pendingTx reads up to n pending notifications as ingest work without a
// job row (ID 0).
func (s *Store) pendingTx(ctx context.Context, tx *sql.Tx, n int) ([]incident.Job, error) {
	rows, err := s.txQuery(ctx, tx, `SELECT id FROM notifications WHERE status = 'pending' ORDER BY id LIMIT ?`+s.dialect.SkipLocked, n)
	if err != nil {
		return nil, fmt.Errorf("read pending notifications: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []incident.Job
	for rows.Next() {
		j := incident.Job{Kind: incident.JobIngest, MaxAttempts: s.opts.MaxAttempts}
		if err := rows.Scan(&j.RefID); err != nil {
			return nil, fmt.Errorf("read pending notifications: %w", err)
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// failIngest records a failed apply: retried after a backoff, or parked when
// the error is permanent or attempts are exhausted. A pending notification
// gets its ingest job here, on its first failure.
func (s *Store) failIngest(ctx context.Context, tx *sql.Tx, j incident.Job, cause error, now time.Time) error {
	if j.ID == 0 {
		return s.queueRetry(ctx, tx, j.RefID, cause, now, 1)
	}
	attempts := j.Attempts + 1
	state := incident.JobQueued
	if incident.IsPermanent(cause) || attempts >= j.MaxAttempts {
		state = incident.JobParked
		s.logger.ErrorContext(ctx, "applying a notification failed for the last time; the job is parked, see /api/v1/jobs?state=parked",
			"notification_id", j.RefID, "attempt", attempts, "err", cause)
	} else {
		s.logger.WarnContext(ctx, "applying a notification failed; will retry", "notification_id", j.RefID, "attempt", attempts, "err", cause)
	}
	retryAt := now.Add(incident.Backoff(attempts, s.opts.MinBackoff, s.opts.MaxBackoff))
	if _, err := s.txExec(ctx, tx, `UPDATE jobs SET state = ?, attempts = ?, run_at = ?, last_error = ?, updated_at = ? WHERE id = ?`,
		state, attempts, ns(retryAt), truncateError(cause), ns(now), j.ID); err != nil {
		return fmt.Errorf("record failed job %d: %w", j.ID, err)
	}
	return nil
}

// applyJob applies the notification behind an ingest job, if still pending.
func (s *Store) applyJob(ctx context.Context, tx *sql.Tx, j incident.Job) (incident.Applied, error) {
	var (
		out     incident.Applied
		status  string
		payload []byte
	)
	err := s.txQueryRow(ctx, tx, `SELECT status, payload FROM notifications WHERE id = ?`, j.RefID).Scan(&status, &payload)
	if errors.Is(err, sql.ErrNoRows) {
		return out, incident.Permanent(fmt.Errorf("notification %d does not exist", j.RefID))
	}
	if err != nil {
		return out, fmt.Errorf("read notification %d: %w", j.RefID, err)
	}
	if status != incident.NotificationPending && status != incident.NotificationRetry {
		out.Already = true
		return out, nil
	}
	raw, err := unpackPayload(payload)
	if err != nil {
		return out, incident.Permanent(fmt.Errorf("read notification %d: %w", j.RefID, err))
	}
	m, err := incident.DecodeStored(raw)
	if err != nil {
		return out, incident.Permanent(fmt.Errorf("decode notification %d: %w", j.RefID, err))
	}
	// Replicas take pending notifications with SKIP LOCKED, so another one
	// may hold an earlier notification of this group, not yet applied.
	return s.applyMessage(ctx, tx, j.RefID, m, !s.dialect.SingleWriter)
}

// errEarlierPending is applyMessage's answer for a notification whose group
// has an earlier one still pending: it must wait for it.
var errEarlierPending = errors.New("an earlier notification of the group is still pending")

// applyMessage applies a pending notification's message and queues the
// follow-up jobs, inside tx. With inOrder, a notification whose group has
// an earlier notification still pending is not applied (errEarlierPending).
func (s *Store) applyMessage(ctx context.Context, tx *sql.Tx, notifID int64, m *incident.Message, inOrder bool) (incident.Applied, error) {
	a := applier{s: s, tx: tx, m: m, notifID: notifID, now: ns(s.opts.Now()), inOrder: inOrder}
	out, err := a.apply(ctx)
	if err != nil {
		return out, err
	}
	out.TruncatedAlerts = m.TruncatedAlerts
	if out.Transition != incident.TransitionDuplicate {
		for _, kind := range s.opts.FollowUps {
			if f := s.opts.FollowUpFilter; f != nil && !f(kind, out) {
				continue
			}
			if err := s.enqueue(ctx, tx, kind, out.Incident.ID, out.Incident.ID, nil); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

type knownAlert struct {
	incidentID int64
	status     string
}

type alertKey struct {
	fingerprint string
	startsAt    int64
}

type applier struct {
	s       *Store
	tx      *sql.Tx
	m       *incident.Message
	notifID int64
	now     int64
	inOrder bool // wait for the group's earlier pending notifications

	openID  int64 // the group's open incident, 0 when none
	episode int
	created map[int64]bool   // incidents opened by this notification
	before  map[int64]string // status of touched incidents before

	newFiring, newResolved int
}

func (a *applier) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return a.s.execTx(ctx, a.tx, q, args)
}

func (a *applier) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return a.s.queryTx(ctx, a.tx, q, args)
}

func (a *applier) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return a.s.queryRowTx(ctx, a.tx, q, args)
}

// change is one alert state to record.
type change struct {
	alert      template.Alert
	key        alertKey
	incidentID int64
	exists     bool
}

func (a *applier) apply(ctx context.Context) (incident.Applied, error) {
	var out incident.Applied
	a.created, a.before = map[int64]bool{}, map[int64]string{}
	gk := a.m.GroupKey
	// Lock the group row: on PostgreSQL this serialises concurrent workers
	// applying notifications of the same group; SQLite serialises all writers.
	if _, err := a.exec(ctx, `INSERT INTO alert_groups (group_key) VALUES (?) ON CONFLICT DO NOTHING`, gk); err != nil {
		return out, fmt.Errorf("insert group: %w", err)
	}
	var open sql.NullInt64
	if err := a.queryRow(ctx, (`SELECT episode, incident_id FROM alert_groups WHERE group_key = ?`+a.s.dialect.ForUpdate), gk).Scan(&a.episode, &open); err != nil {
		return out, fmt.Errorf("lock group: %w", err)
	}
	a.openID = open.Int64
	if a.inOrder {
		// Under the group's lock: a replica applying an earlier one has
		// committed it by now, and one that has only taken it (its row is
		// locked, it is still pending) applies it later. Applying this one
		// first would record the group's changes out of order (a resolve
		// before its firing opens an incident already resolved, and the
		// firing is then stale: no page).
		var earlier bool
		if err := a.queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM notifications WHERE status = 'pending' AND id < ? AND group_key = ?)`,
			a.notifID, gk).Scan(&earlier); err != nil {
			return out, fmt.Errorf("find earlier notifications: %w", err)
		}
		if earlier {
			return out, errEarlierPending
		}
	}

	known, err := a.known(ctx)
	if err != nil {
		return out, err
	}
	// Decide in memory what is new, then write it in two statements.
	var changes []change
	seen := map[alertKey]string{}
	for _, al := range a.m.Alerts {
		k := alertKey{al.Fingerprint, ns(al.StartsAt)}
		cur, exists := known[k]
		if exists && (cur.status == al.Status || cur.status == incident.StatusResolved) {
			continue // already known, or stale: resolved is final for one episode
		}
		if prev, dup := seen[k]; dup && (prev == al.Status || prev == incident.StatusResolved) {
			continue // the payload lists the alert twice
		}
		seen[k] = al.Status
		changes = append(changes, change{alert: al, key: k, incidentID: cur.incidentID, exists: exists})
	}
	for i := range changes {
		if changes[i].exists {
			continue
		}
		if a.openID == 0 {
			if err := a.open(ctx, changes[i].alert); err != nil {
				return out, err
			}
		}
		changes[i].incidentID = a.openID
	}
	changes, err = a.record(ctx, changes)
	if err != nil {
		return out, err
	}
	releasing := false
	if len(changes) == 0 {
		var open *incident.Incident
		if a.openID != 0 {
			if open, err = a.s.readIncident(ctx, a.tx, a.openID); err != nil {
				return out, err
			}
		}
		// An open incident whose resolve was held (see refresh) is
		// released by a notification that brings no new state but may
		// resolve it: one that leaves nothing out, or any once holding is
		// off. Any other is a duplicate.
		releasing = open != nil && open.Status == incident.StatusFiring && open.FiringAlerts == 0 && !a.holding()
		if !releasing {
			if _, err := a.exec(ctx, `UPDATE notifications SET status = ?, reason = ?, incident_id = ? WHERE id = ?`,
				incident.NotificationDuplicate, "no new alert state changes", nullInt(a.openID), a.notifID); err != nil {
				return out, fmt.Errorf("mark duplicate: %w", err)
			}
			out.Transition = incident.TransitionDuplicate
			if open != nil {
				out.Incident = *open
			}
			return out, nil
		}
	}

	// Refresh each touched incident's counters and status. The one reported
	// is the open incident if there is one, else the last touched.
	touched := map[int64]bool{}
	if releasing {
		touched[a.openID] = true
	}
	for _, c := range changes {
		touched[c.incidentID] = true
	}
	ids := slices.Sorted(maps.Keys(touched))
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

// known reads the stored state of the payload's alerts in one query.
func (a *applier) known(ctx context.Context) (map[alertKey]knownAlert, error) {
	fps := map[string]bool{}
	for _, al := range a.m.Alerts {
		fps[al.Fingerprint] = true
	}
	args := []any{a.m.GroupKey}
	for fp := range fps {
		args = append(args, fp)
	}
	q := `SELECT fingerprint, starts_at, incident_id, status FROM alerts WHERE group_key = ? AND fingerprint IN (` + placeholders(len(fps)) + `)`
	rows, err := a.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read alerts: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := map[alertKey]knownAlert{}
	for rows.Next() {
		var (
			k alertKey
			v knownAlert
		)
		if err := rows.Scan(&k.fingerprint, &k.startsAt, &v.incidentID, &v.status); err != nil {
			return nil, fmt.Errorf("read alerts: %w", err)
		}
		out[k] = v
	}
	return out, rows.Err()
}

// record inserts the changes (the unique key makes a concurrent duplicate a
// no-op) and upserts the alerts of those that were new. It returns the
// changes actually recorded.
func (a *applier) record(ctx context.Context, changes []change) ([]change, error) {
	var recorded []change
	const chunk = 100 // rows per statement, well under every engine's parameter limit
	for start := 0; start < len(changes); start += chunk {
		part := changes[start:min(start+chunk, len(changes))]
		args := make([]any, 0, len(part)*7)
		for _, c := range part {
			args = append(args, c.incidentID, a.m.GroupKey, c.key.fingerprint, c.key.startsAt, c.alert.Status, a.now, a.notifID)
		}
		rows, err := a.query(ctx, (`INSERT INTO changes (incident_id, group_key, fingerprint, starts_at, status, at, notification_id) VALUES ` +
			tuples(len(part), 7) + ` ON CONFLICT DO NOTHING RETURNING fingerprint, starts_at, status`), args...)
		if err != nil {
			return nil, fmt.Errorf("insert changes: %w", err)
		}
		inserted := map[alertKey]string{}
		for rows.Next() {
			var (
				k  alertKey
				st string
			)
			if err := rows.Scan(&k.fingerprint, &k.startsAt, &st); err != nil {
				_ = rows.Close() // the scan error is the one to report
				return nil, fmt.Errorf("insert changes: %w", err)
			}
			inserted[k] = st
		}
		_ = rows.Close() // rows.Err below reports a failed read
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("insert changes: %w", err)
		}
		args = args[:0]
		n := 0
		row := make(map[alertKey]int, len(part)) // alert → its row in args
		for _, c := range part {
			if inserted[c.key] != c.alert.Status {
				continue
			}
			recorded = append(recorded, c)
			var endsAt sql.NullInt64
			if c.alert.Status == incident.StatusResolved && !c.alert.EndsAt.IsZero() {
				endsAt = sql.NullInt64{Int64: ns(c.alert.EndsAt), Valid: true}
			}
			args = append(args, a.m.GroupKey, c.key.fingerprint, c.key.startsAt, c.incidentID, c.alert.Status,
				mustJSON(c.alert.Labels), mustJSON(c.alert.Annotations), endsAt, c.alert.GeneratorURL, a.now)
			if i, ok := row[c.key]; ok {
				// The payload listed the alert firing, then resolved: the
				// later state wins, in one row (PostgreSQL refuses an
				// upsert that touches a row twice).
				copy(args[i*10:i*10+10], args[len(args)-10:])
				args = args[:len(args)-10]
			} else {
				row[c.key] = n
				n++
			}
			if c.alert.Status == incident.StatusFiring {
				a.newFiring++
			} else {
				a.newResolved++
			}
		}
		if n == 0 {
			continue
		}
		// An existing alert keeps its incident: it resolves in the episode it
		// fired in.
		if _, err := a.exec(ctx, `INSERT INTO alerts (group_key, fingerprint, starts_at, incident_id, status, labels, annotations, ends_at, generator_url, updated_at) VALUES `+
			tuples(n, 10)+` ON CONFLICT (group_key, fingerprint, starts_at) DO UPDATE SET status = excluded.status, labels = excluded.labels,
			annotations = excluded.annotations, ends_at = excluded.ends_at, generator_url = excluded.generator_url, updated_at = excluded.updated_at`, args...); err != nil {
			return nil, fmt.Errorf("store alerts: %w", err)
		}
	}
	return recorded, nil
}

// placeholders returns "?, ?, ?" for n values.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// tuples returns "(?, ?), (?, ?)" for rows tuples of width values.
func tuples(rows, width int) string {
	one := "(" + placeholders(width) + ")"
	return strings.TrimSuffix(strings.Repeat(one+", ", rows), ", ")
}

// open creates the group's next episode.
func (a *applier) open(ctx context.Context, first template.Alert) error {
	a.episode++
	m := a.m
	var id int64
	err := a.queryRow(ctx, `INSERT INTO incidents (group_key, episode, status, receiver, group_labels, common_labels, common_annotations, external_url, opened_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		m.GroupKey, a.episode, first.Status, m.Receiver, mustJSON(m.GroupLabels), mustJSON(m.CommonLabels), mustJSON(m.CommonAnnotations), m.ExternalURL,
		ns(first.StartsAt), a.now).Scan(&id)
	if err != nil {
		return fmt.Errorf("open incident: %w", err)
	}
	a.openID = id
	a.created[id] = true
	a.before[id] = ""
	return nil
}

// holding reports whether this notification may not resolve its group's
// open incident: Alertmanager left alerts out of it, and Options.HoldTruncated
// says so.
func (a *applier) holding() bool {
	return a.m.TruncatedAlerts > 0 && a.s.opts.HoldTruncated != nil && a.s.opts.HoldTruncated()
}

// refresh recomputes an incident's counters and status from its alerts.
func (a *applier) refresh(ctx context.Context, id int64) error {
	var (
		firing, resolved int
		lastEnd          sql.NullInt64
		before           string
	)
	if err := a.queryRow(ctx, `SELECT
			coalesce(sum(CASE WHEN status = 'firing' THEN 1 ELSE 0 END), 0),
			coalesce(sum(CASE WHEN status = 'resolved' THEN 1 ELSE 0 END), 0),
			max(ends_at), (SELECT status FROM incidents WHERE id = ?)
		FROM alerts WHERE incident_id = ?`, id, id).Scan(&firing, &resolved, &lastEnd, &before); err != nil {
		return fmt.Errorf("count alerts of incident %d: %w", id, err)
	}
	if _, ok := a.before[id]; !ok {
		a.before[id] = before
	}
	status := incident.StatusFiring
	var resolvedAt sql.NullInt64
	if firing == 0 && before == incident.StatusFiring && a.holding() {
		// Alertmanager left alerts out of this notification, and its
		// status counts only those it kept: the others may still fire.
		a.s.logger.WarnContext(ctx, "incident kept open: this notification resolves every alert responder knows of, but alertmanager left alerts out of it (max_alerts); reconciliation settles it",
			"incident_id", id, "group_key", a.m.GroupKey, "truncated_alerts", a.m.TruncatedAlerts)
	} else if firing == 0 {
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
	if _, err := a.exec(ctx, `UPDATE incidents SET status = ?, firing_alerts = ?, resolved_alerts = ?, resolved_at = ?, updated_at = ?, version = version + 1,
			common_labels = ?, common_annotations = ? WHERE id = ?`,
		status, firing, resolved, resolvedAt, a.now, mustJSON(m.CommonLabels), mustJSON(m.CommonAnnotations), id); err != nil {
		return fmt.Errorf("update incident %d: %w", id, err)
	}
	return nil
}

// mustJSON encodes a label set; a map of strings always encodes. It uses
// goccy/go-json, whose output for a map of valid UTF-8 strings is
// byte for byte encoding/json's (sorted keys, the same escapes;
// TestMustJSON_AsEncodingJSON), 3.5 times faster with one allocation
// instead of 16: encoding label sets was 7% of the CPU of applying new
// notifications (docs/benchmarks.md).
func mustJSON(kv map[string]string) string {
	if kv == nil {
		return "{}"
	}
	b, err := gojson.Marshal(kv)
	if err != nil {
		panic(fmt.Sprintf("encode labels: %v", err))
	}
	return string(b)
}
