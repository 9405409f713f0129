package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/responder/responder/internal/incident"
)

// maxErrorLen caps the stored last_error of a job.
const maxErrorLen = 2048

// Claim leases up to n due jobs of the given kinds to owner: queued jobs
// whose run_at has come, and running jobs whose lease expired (their worker
// or replica died). Each claim counts as an attempt. Asking by kind keeps a
// backlog of other work (such as deferred ingest) out of the scan.
func (s *Store) Claim(ctx context.Context, owner string, n int, lease time.Duration, kinds ...string) ([]incident.Job, error) {
	if len(kinds) == 0 {
		return nil, nil
	}
	now := s.opts.Now()
	in := placeholders(len(kinds))
	// Look first, on a reader: several pipelines are woken by every commit
	// and most find nothing of their kinds, which must not cost a write
	// on the one writer. Each EXISTS stops at its first index entry; one
	// OR condition made PostgreSQL read every due job's (a bitmap scan,
	// 0.7 ms among 10,000).
	probe := `SELECT EXISTS (SELECT 1 FROM jobs WHERE kind IN (` + in + `) AND state = 'queued' AND run_at <= ?)
		OR EXISTS (SELECT 1 FROM jobs WHERE kind IN (` + in + `) AND state = 'running' AND lease_until < ?)`
	ks := anys(kinds)
	var due bool
	switch err := s.rQueryRow(ctx, probe, slices.Concat(ks, []any{ns(now)}, ks, []any{ns(now)})...).Scan(&due); {
	case err != nil:
		return nil, fmt.Errorf("claim jobs: %w", err)
	case !due:
		return nil, nil
	}
	q, args := s.claimQuery(owner, n, lease, now, kinds, ks)
	var jobs []incident.Job
	err := s.wQuery(ctx, q, args, func(rows *sql.Rows) error {
		var (
			j          incident.Job
			incidentID sql.NullInt64
			runAt, at  int64
		)
		if err := rows.Scan(&j.ID, &j.Kind, &j.RefID, &incidentID, &j.Args, &j.Attempts, &j.MaxAttempts, &runAt, &at); err != nil {
			return fmt.Errorf("scan job: %w", err)
		}
		j.IncidentID, j.RunAt, j.CreatedAt = incidentID.Int64, fromNS(runAt), fromNS(at)
		j.State, j.Owner, j.UpdatedAt = incident.JobRunning, owner, now
		jobs = append(jobs, j)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim jobs: %w", err)
	}
	return jobs, nil
}

// claimQuery is Claim's UPDATE: it leases the n due jobs of kinds that are
// oldest by run_at (queued and due, or running with an expired lease).
//
// Each kind's due jobs are read in index order (jobs_kind_due), n at most,
// and only those are sorted with the expired leases. One condition over all
// kinds made the engines collect and sort every due job of those kinds for
// each claim, while a burst's incidents waited to be routed: with 10,000
// queued, a claim took 3.7-5.8 ms on SQLite (on the writer) and 6.6 ms on
// PostgreSQL, and takes 0.5-0.9 ms now, as with 100 (BenchmarkClaim, the
// commit included; docs/benchmarks.md). Claims were 12% of the CPU of
// draining a burst on SQLite, 2% after.
//
// PostgreSQL locks what it reads (FOR UPDATE SKIP LOCKED), which a compound
// query cannot carry: there each kind is a LATERAL subquery, and the rows
// it locked but the final LIMIT left out stay queued, locked until the
// claim commits. Its subquery orders by run_at alone, which the index
// gives (ties come in the index's order): with "run_at, id", a table not
// yet analysed got a plan that sorted every due job of the kind (5.2 ms
// with 10,000 queued).
func (s *Store) claimQuery(owner string, n int, lease time.Duration, now time.Time, kinds []string, ks []any) (string, []any) {
	in := placeholders(len(kinds))
	if s.dialect.SingleWriter {
		args := []any{owner, ns(now.Add(lease)), ns(now)}
		due := make([]string, len(kinds))
		for i, k := range kinds {
			due[i] = `SELECT id, run_at FROM (SELECT id, run_at FROM jobs WHERE kind = ? AND state = 'queued' AND run_at <= ? ORDER BY run_at, id LIMIT ?)`
			args = append(args, k, ns(now), n)
		}
		args = append(append(args, ks...), ns(now), n)
		return `UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?, lease_until = ?, updated_at = ?
		WHERE id IN (SELECT id FROM (` + strings.Join(due, " UNION ALL ") + `
			UNION ALL SELECT id, run_at FROM jobs WHERE kind IN (` + in + `) AND state = 'running' AND lease_until < ?)
		ORDER BY run_at, id LIMIT ?)
		RETURNING id, kind, ref_id, incident_id, args, attempts, max_attempts, run_at, created_at`, args
	}
	values := strings.TrimSuffix(strings.Repeat("(CAST(? AS TEXT)), ", len(kinds)), ", ")
	args := slices.Concat(ks, []any{ns(now), n}, ks, []any{ns(now), n, n, owner, ns(now.Add(lease)), ns(now)})
	return `WITH due AS (SELECT d.id, d.run_at FROM (VALUES ` + values + `) AS k (kind),
			LATERAL (SELECT id, run_at FROM jobs WHERE jobs.kind = k.kind AND state = 'queued' AND run_at <= ?
				ORDER BY run_at LIMIT ?` + s.dialect.SkipLocked + `) AS d),
		expired AS (SELECT id, run_at FROM jobs WHERE kind IN (` + in + `) AND state = 'running' AND lease_until < ?
			ORDER BY run_at, id LIMIT ?` + s.dialect.SkipLocked + `),
		pick AS (SELECT id, run_at FROM due UNION ALL SELECT id, run_at FROM expired ORDER BY run_at, id LIMIT ?)
		UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?, lease_until = ?, updated_at = ?
		WHERE id IN (SELECT id FROM pick)
		RETURNING id, kind, ref_id, incident_id, args, attempts, max_attempts, run_at, created_at`, args
}

// anys returns ss as query arguments.
func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// Complete marks a job done if its owner still holds it. A job whose lease
// was taken over is left to its new owner.
func (s *Store) Complete(ctx context.Context, j incident.Job) error {
	_, err := s.wExec(ctx, `UPDATE jobs SET state = 'done', lease_owner = NULL, lease_until = NULL, updated_at = ?
		WHERE id = ? AND state = 'running' AND lease_owner = ?`, ns(s.opts.Now()), j.ID, j.Owner)
	if err != nil {
		return fmt.Errorf("complete job %d: %w", j.ID, err)
	}
	return nil
}

// Fail records a failed attempt: the job is queued again at retryAt, or
// parked with its error when park is set.
func (s *Store) Fail(ctx context.Context, j incident.Job, cause error, retryAt time.Time, park bool) error {
	state := incident.JobQueued
	if park {
		state = incident.JobParked
	}
	msg := truncateError(cause)
	_, err := s.wExec(ctx, `UPDATE jobs SET state = ?, run_at = ?, last_error = ?, lease_owner = NULL, lease_until = NULL, updated_at = ?
		WHERE id = ? AND state = 'running' AND lease_owner = ?`,
		state, ns(retryAt), msg, ns(s.opts.Now()), j.ID, j.Owner)
	if err != nil {
		return fmt.Errorf("fail job %d: %w", j.ID, err)
	}
	return nil
}

// Release puts a running job back in the queue, due after the delay,
// without counting the attempt, if owner still holds it.
func (s *Store) Release(ctx context.Context, j incident.Job, after time.Duration) error {
	now := s.opts.Now()
	_, err := s.wExec(ctx, `UPDATE jobs SET state = 'queued', attempts = attempts - 1, run_at = ?, lease_owner = NULL, lease_until = NULL, updated_at = ?
		WHERE id = ? AND state = 'running' AND lease_owner = ?`, ns(now.Add(after)), ns(now), j.ID, j.Owner)
	if err != nil {
		return fmt.Errorf("release job %d: %w", j.ID, err)
	}
	return nil
}

// truncateError bounds an error message for storage, on a rune boundary.
func truncateError(err error) string {
	msg := err.Error()
	if len(msg) > maxErrorLen {
		msg = msg[:maxErrorLen]
		for !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
	}
	return msg
}

// queryJobsTx reads (id, ref_id, attempts, max_attempts) rows inside tx.
func (s *Store) queryJobsTx(ctx context.Context, tx *sql.Tx, q string, args ...any) ([]incident.Job, error) {
	rows, err := tx.QueryContext(ctx, s.rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("read due jobs: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var jobs []incident.Job
	for rows.Next() {
		j := incident.Job{Kind: incident.JobIngest}
		if err := rows.Scan(&j.ID, &j.RefID, &j.Attempts, &j.MaxAttempts); err != nil {
			return nil, fmt.Errorf("read due jobs: %w", err)
		}
		jobs = append(jobs, j)
	}
	return jobs, rows.Err()
}

// Enqueue adds a job of kind for the pipeline's workers.
func (s *Store) Enqueue(ctx context.Context, kind string, refID, incidentID int64, args []byte) error {
	if kind == incident.JobIngest {
		return incident.Errorf(incident.Invalid, "ingest jobs are queued by Accept only")
	}
	tx, err := s.begin(ctx, false)
	if err != nil {
		return fmt.Errorf("begin enqueue: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
	if err := s.enqueue(ctx, tx.Tx, kind, refID, incidentID, args); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit enqueue: %w", err)
	}
	s.opts.OnCommit()
	return nil
}

// Retry puts a parked job back in the queue with a fresh attempt budget.
func (s *Store) Retry(ctx context.Context, id int64) error {
	res, err := s.wExec(ctx, `UPDATE jobs SET state = 'queued', attempts = 0, run_at = ?, updated_at = ? WHERE id = ? AND state = 'parked'`,
		ns(s.opts.Now()), ns(s.opts.Now()), id)
	s.wakeApply()
	if err != nil {
		return fmt.Errorf("retry job %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return incident.Errorf(incident.NotFound, "no parked job %d", id)
	}
	s.opts.OnCommit()
	return nil
}

// enqueue adds a job inside tx, so that it commits with the work that caused it.
func (s *Store) enqueue(ctx context.Context, tx *sql.Tx, kind string, refID, incidentID int64, args []byte) error {
	now := ns(s.opts.Now())
	if _, err := tx.StmtContext(ctx, s.stmts.insertJob).ExecContext(ctx, kind, refID, nullInt(incidentID), args, s.opts.MaxAttempts, now, now, now); err != nil {
		return fmt.Errorf("enqueue %s job: %w", kind, err)
	}
	return nil
}

func nullInt(v int64) sql.NullInt64 { return sql.NullInt64{Int64: v, Valid: v != 0} }

// ListJobs returns jobs, newest first: in a state (all states when empty),
// older than f.Before when it is set.
func (s *Store) ListJobs(ctx context.Context, f incident.JobFilter) ([]incident.Job, error) {
	q, args := page(`SELECT id, kind, ref_id, incident_id, state, attempts, max_attempts, run_at, last_error, created_at, updated_at FROM jobs`,
		"state", f.State, f.Before, f.Limit)
	return s.queryJobs(ctx, q, args...)
}

func (s *Store) queryJobs(ctx context.Context, q string, args ...any) ([]incident.Job, error) {
	rows, err := s.rQuery(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer func() { _ = rows.Close() }()
	jobs := []incident.Job{}
	for rows.Next() {
		var (
			j                 incident.Job
			incidentID        sql.NullInt64
			runAt, created, u int64
		)
		if err := rows.Scan(&j.ID, &j.Kind, &j.RefID, &incidentID, &j.State, &j.Attempts, &j.MaxAttempts, &runAt, &j.LastError, &created, &u); err != nil {
			return nil, fmt.Errorf("scan job: %w", err)
		}
		j.IncidentID, j.RunAt, j.CreatedAt, j.UpdatedAt = incidentID.Int64, fromNS(runAt), fromNS(created), fromNS(u)
		jobs = append(jobs, j)
	}
	return jobs, rows.Err()
}

// QueueStats counts jobs by state and reports the age of the oldest due job.
type QueueStats struct {
	ByState   map[string]int
	OldestDue time.Duration
	// Pending counts the committed notifications not yet applied to their
	// incidents, and OldestPending is the age of the oldest of them (0 when
	// none): the ingest backlog, which has no job rows (a notification gets
	// an ingest job only when its apply fails) and so is not in ByState.
	Pending       int
	OldestPending time.Duration
}

// Stats reads the queue's counters, for metrics.
func (s *Store) Stats(ctx context.Context) (QueueStats, error) {
	st := QueueStats{ByState: map[string]int{}}
	rows, err := s.r.QueryContext(ctx, `SELECT state, count(*) FROM jobs WHERE state <> 'done' GROUP BY state`)
	if err != nil {
		return st, fmt.Errorf("queue stats: %w", err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			return st, fmt.Errorf("queue stats: %w", err)
		}
		st.ByState[state] = n
	}
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("queue stats: %w", err)
	}
	var oldest sql.NullInt64
	now := s.opts.Now()
	if err := s.rQueryRow(ctx, `SELECT min(run_at) FROM jobs WHERE state = 'queued' AND run_at <= ?`, ns(now)).Scan(&oldest); err != nil {
		return st, fmt.Errorf("queue stats: %w", err)
	}
	if oldest.Valid {
		st.OldestDue = now.Sub(fromNS(oldest.Int64))
	}
	// Both read the small partial index of pending notifications; ids grow
	// with received_at, so the lowest id is the oldest.
	if err := s.rQueryRow(ctx, `SELECT count(*) FROM notifications WHERE status = 'pending'`).Scan(&st.Pending); err != nil {
		return st, fmt.Errorf("queue stats: %w", err)
	}
	var received sql.NullInt64
	if err := s.rQueryRow(ctx, `SELECT received_at FROM notifications WHERE id = (SELECT min(id) FROM notifications WHERE status = 'pending')`).Scan(&received); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("queue stats: %w", err)
	}
	if received.Valid {
		st.OldestPending = max(now.Sub(fromNS(received.Int64)), 0)
	}
	return st, nil
}

func clampLimit(n int) int { return incident.PageLimit(n) }
