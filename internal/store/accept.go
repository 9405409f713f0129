package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/responder/responder/internal/incident"
)

// stmts are the hot-path statements, prepared once on the writer pool.
type stmts struct {
	insertNotif *sql.Stmt
	insertState *sql.Stmt
	markDup     *sql.Stmt
	insertJob   *sql.Stmt
}

func (s *Store) prepare(ctx context.Context) error {
	prep := func(dst **sql.Stmt, q string) error {
		st, err := s.w.PrepareContext(ctx, s.rebind(q))
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		*dst = st
		return nil
	}
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&s.stmts.insertNotif, `INSERT INTO notifications (received_at, group_key, state_hash, status, reason, receiver, alerts, truncated_alerts, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`},
		{&s.stmts.insertState, `INSERT INTO notification_states (state_hash, notification_id) VALUES (?, ?) ON CONFLICT DO NOTHING`},
		{&s.stmts.markDup, `UPDATE notifications SET status = ?, reason = ? WHERE id = ?`},
		{&s.stmts.insertJob, `INSERT INTO jobs (kind, ref_id, incident_id, args, state, max_attempts, run_at, created_at, updated_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)`},
	} {
		if err := prep(p.dst, p.q); err != nil {
			return err
		}
	}
	return nil
}

type acceptReq struct {
	d     incident.Delivery
	reply chan acceptRes
}

type acceptRes struct {
	r   incident.Receipt
	err error
}

// Accept commits a delivery durably (the transaction is fsynced before it
// returns) and queues its processing. Concurrent calls are committed together
// in one transaction, which is what makes fsync-per-request durability cheap
// at high load; at low load a batch is just one delivery, so nothing waits for
// a batch to fill. Errors are incident.Unavailable: the sender should retry.
func (s *Store) Accept(ctx context.Context, d incident.Delivery) (incident.Receipt, error) {
	req := acceptReq{d: d, reply: make(chan acceptRes, 1)}
	stopped := &incident.Error{Kind: incident.Unavailable, Msg: "storage is not accepting: the committer has stopped"}
	select {
	case s.accepts <- req:
	case <-s.stopped:
		return incident.Receipt{}, stopped
	case <-ctx.Done():
		return incident.Receipt{}, &incident.Error{Kind: incident.Unavailable, Msg: "storage busy", Err: ctx.Err()}
	}
	select {
	case res := <-req.reply:
		return res.r, res.err
	case <-s.stopped:
		// Run answers everything it took before it returned; check once more.
		select {
		case res := <-req.reply:
			return res.r, res.err
		default:
			return incident.Receipt{}, stopped
		}
	case <-ctx.Done():
		// The commit may still happen; a retry by the sender is then a
		// duplicate, which is harmless.
		return incident.Receipt{}, &incident.Error{Kind: incident.Unavailable, Msg: "storage did not commit in time", Err: ctx.Err()}
	}
}

// Run is the store's writer loop, until ctx is cancelled. It commits
// accepted deliveries first, in groups with the job handlers' writes (see
// lend.go): a request waiting for its 200 always goes ahead. It applies
// deferred deliveries (ingest jobs) when requests stop arriving back to back
// (applyQuiet), a batch at a time, and, so that a sustained stream cannot
// starve them, for a slice of time whenever none was applied for
// applyMaxWait. Deliveries still queued when ctx is cancelled are refused
// with Unavailable, so their senders retry.
func (s *Store) Run(ctx context.Context) error {
	defer s.stopOnce.Do(func() { close(s.stopped) })
	s.looping.Store(true)
	defer s.refuseLends()
	defer s.looping.Store(false)
	batch := make([]acceptReq, 0, s.opts.MaxBatch)
	poll := time.NewTicker(s.opts.ApplyPoll)
	defer poll.Stop()
	// Unfinished work from before a restart resumes at once.
	pending := true
	var lastAccept, lastApply time.Time
	// take commits the deliveries waiting (r first, if any) and the
	// handlers' writes waiting (l first, if any) in one transaction.
	take := func(r *acceptReq, l *lendReq) {
		batch = batch[:0]
		if r != nil {
			batch = append(batch, *r)
		}
	more:
		for len(batch) < s.opts.MaxBatch {
			select {
			case r := <-s.accepts:
				batch = append(batch, r)
			default:
				break more
			}
		}
		if l == nil {
			select {
			case l = <-s.lends:
			default:
			}
		}
		if len(batch) > 0 {
			lastAccept = time.Now()
		}
		if s.commitBatch(ctx, batch, l) && !pending {
			pending, lastApply = true, time.Now()
		}
	}
	quiet := time.NewTimer(time.Hour)
	defer quiet.Stop()
	var applyFails incident.FailureLog
	for {
		// Requests first.
		select {
		case <-ctx.Done():
			s.refuseQueued()
			return nil
		case r := <-s.accepts:
			take(&r, nil)
			continue
		default:
		}
		// Then deferred applies and the handlers' writes take turns, so
		// that neither a stream of handler writes (a storm's paced Slack
		// jobs handing themselves back) nor a backlog of applies starves
		// the other.
		var quietC <-chan time.Time
		settle := s.settle
		applied := false
		if pending {
			settle = nil
			wait := applyQuiet - time.Since(lastAccept)
			starved := time.Since(lastApply) >= applyMaxWait
			if wait <= 0 || starved {
				slice := time.Duration(0)
				if starved {
					slice = applySlice
				}
				more, err := s.applyDue(context.WithoutCancel(ctx), applyBatch, slice)
				if ctx.Err() == nil {
					s.logApply(ctx, &applyFails, err)
				}
				pending, lastApply, applied = more && err == nil, time.Now(), true
			} else {
				quiet.Reset(min(wait, applyMaxWait-time.Since(lastApply)))
				quietC = quiet.C
			}
		}
		select {
		case l := <-s.lends:
			take(nil, l)
			continue
		default:
		}
		if applied {
			continue
		}
		select {
		case <-quietC:
		case <-ctx.Done():
			s.refuseQueued()
			return nil
		case r := <-s.accepts:
			take(&r, nil)
		case l := <-s.lends:
			take(nil, l)
		case <-poll.C:
			if !pending {
				pending, lastApply = true, time.Now()
			}
		case <-s.applyNow:
			if !pending {
				pending, lastApply = true, time.Now()
			}
		case ch := <-settle:
			// Idle: nothing due was left to apply, and the hooks of all
			// that was applied have run.
			close(ch)
		}
	}
}

// logApply logs a deferred apply's outcome, if it is news (fails records
// the run of failures): while storage fails (a full disk, a lost
// database), the writer loop tries again every ApplyPoll, and a warning
// for each try flooded the log. It warns when applies start failing, at
// most once a minute while they go on, as for failed commits
// (commitHealth), and once when one works again.
func (s *Store) logApply(ctx context.Context, fails *incident.FailureLog, err error) {
	now := time.Now()
	if err == nil {
		if f, ok := fails.Recovered(now); ok {
			s.logger.InfoContext(ctx, "applying deferred notifications works again", "failing_for", f.For.Round(time.Millisecond), "failed_applies", f.Total)
		}
		return
	}
	switch f, ok := fails.Failed(now); {
	case !ok:
	case f.First:
		s.logger.WarnContext(ctx, "applying deferred notifications failed; will retry", "err", incident.Detail(err))
	default:
		s.logger.WarnContext(ctx, "applying deferred notifications still fails", "failing_for", f.For.Round(time.Second), "failed_applies", f.Total, "err", incident.Detail(err))
	}
}

// Settle waits until the writer loop is idle: no due delivery is left to
// apply and every OnApplied hook of what it applied has returned. Tests use
// it to read a consistent picture; it waits as long as work keeps coming.
func (s *Store) Settle(ctx context.Context) error {
	ch := make(chan struct{})
	select {
	case s.settle <- ch:
	case <-s.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Deferred deliveries wait for a pause in the requests: applying one takes
// a new incident's worth of writes (tens of pages), and a request arriving
// meanwhile waits for it; Alertmanager's bursts end within seconds, and the
// applies catch up then. At 1,000 new notifications/s on 2 cores the median
// p99 of three 4 s runs was 15.4 ms with a 5 ms pause, 19.1 ms with 1 ms and
// 17.3 ms with none (differences within this machine's noise; 5 ms had the
// lowest median). Under a stream that never pauses, applyMaxWait bounds the
// wait: they then run for applySlice before yielding again.
const (
	applyQuiet   = 5 * time.Millisecond
	applyMaxWait = 50 * time.Millisecond
	applySlice   = 5 * time.Millisecond
)

// applyBatch is how many deferred deliveries one apply transaction carries:
// large enough to share an fsync, small enough that a waiting request is not
// held up for long.
const applyBatch = 32

func (s *Store) refuseQueued() {
	for {
		select {
		case r := <-s.accepts:
			r.reply <- acceptRes{err: &incident.Error{Kind: incident.Unavailable, Msg: "shutting down"}}
		default:
			return
		}
	}
}

// commitBatch commits a batch, with the handlers' writes from l on (see
// lend.go), and answers its requests. It reports whether deliveries were
// deferred to ingest jobs.
func (s *Store) commitBatch(ctx context.Context, batch []acceptReq, l *lendReq) (deferred bool) {
	// The commit itself must not be cut short by shutdown: requests in this
	// batch are waiting for an answer.
	ctx = context.WithoutCancel(ctx)
	defer s.prepareMissed(ctx)
	res, kept, deferred, err := s.commit(ctx, batch, l)
	if err != nil || len(batch) > 0 {
		// A group of handlers' writes alone is small: one that fits does
		// not show that the next notification will (see commitHealth).
		s.observeCommit(ctx, err)
	}
	for _, l := range kept {
		l.result <- nil
	}
	if err != nil && (len(batch) > 1 || l != nil) && len(batch) > 0 {
		// Isolate a bad delivery from the rest of its batch (and from
		// the handlers' writes, which have had their answer).
		for i := range batch {
			r, _, d, err := s.commit(ctx, batch[i:i+1], nil)
			s.observeCommit(ctx, err)
			deferred = deferred || d
			if err != nil {
				batch[i].reply <- acceptRes{err: err}
				continue
			}
			batch[i].reply <- acceptRes{r: r[0]}
		}
		return deferred
	}
	for i := range batch {
		if err != nil {
			batch[i].reply <- acceptRes{err: err}
			continue
		}
		batch[i].reply <- acceptRes{r: res[i]}
	}
	return deferred
}

// commit runs one group transaction: the handlers' writes from l on, and
// the batch's deliveries. On success it returns the handlers whose writes
// it carried, for commitBatch to answer; on failure it has answered them.
func (s *Store) commit(ctx context.Context, batch []acceptReq, l *lendReq) (_ []incident.Receipt, kept []*lendReq, _ bool, err error) {
	unavailable := func(what string, err error) error {
		return &incident.Error{Kind: incident.Unavailable, Msg: "storage cannot commit: " + what, Err: err}
	}
	defer func() {
		if err != nil {
			for _, l := range kept {
				l.result <- err
			}
			kept = nil
		}
	}()
	tx, err := s.begin(ctx, true)
	if err != nil {
		err = unavailable("begin", err)
		if l != nil && l.state.CompareAndSwap(lendQueued, lendGranted) {
			l.grant <- lendGrant{err: err}
		}
		return nil, kept, false, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
	// The handlers' writes first: if the deliveries' inserts fail, the
	// handlers learn it from the group's error like any failed commit.
	if l != nil {
		if kept, err = s.lendAll(ctx, tx.Tx, l); err != nil {
			return nil, kept, false, unavailable("lent transaction", err)
		}
	}
	// Apply in group-key order (stable, so one group's deliveries keep their
	// arrival order): concurrent batches on several replicas then take group
	// locks in the same order and cannot deadlock.
	order := make([]int, len(batch))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return strings.Compare(batch[a].d.Message.GroupKey, batch[b].d.Message.GroupKey)
	})
	out := make([]incident.Receipt, len(batch))
	applied := make([]*incident.Applied, len(batch))
	// Under load (a large batch), applying every delivery here would make
	// each request wait for the others' incident updates: store them, answer,
	// and apply them as soon as no request is waiting. At ordinary load the
	// delivery is applied in the commit that acknowledges it.
	inline := !s.opts.DeferApply && len(batch) <= s.opts.InlineApplyMax
	// The batch's alert states already stored, in one query rather than one
	// per delivery (each a round trip on PostgreSQL).
	hashes := make([]string, len(batch))
	for i := range batch {
		hashes[i] = batch[i].d.Hash()
	}
	known, err := s.knownStates(ctx, tx.Tx, hashes)
	if err != nil {
		return nil, kept, false, unavailable("find states", err)
	}
	queued, deferred := false, false
	refs := map[string]payloadRef{}
	if inline {
		for _, i := range order {
			rec, ap, q, d, err := s.insertDelivery(ctx, tx.Tx, batch[i].d, hashes[i], known)
			if err != nil {
				return nil, kept, false, unavailable("insert", err)
			}
			out[i], applied[i], queued, deferred = rec, ap, queued || q, deferred || d
		}
	} else if len(batch) > 0 {
		// Nothing is applied here: store the whole batch in a few
		// multi-row statements (on PostgreSQL each statement is a round
		// trip; one per delivery made a batch of 64 cost 64 to 128).
		if out, deferred, err = s.insertBatch(ctx, tx.Tx, batch, order, hashes, known, refs); err != nil {
			return nil, kept, false, unavailable("insert", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, kept, false, unavailable("commit", err)
	}
	// Only committed rows may stand in for a later duplicate's payload.
	for h, ref := range refs {
		s.payloads.Add(h, ref)
	}
	if queued {
		s.opts.OnCommit()
	}
	for _, i := range order {
		if applied[i] != nil {
			s.opts.OnApplied(out[i].NotificationID, *applied[i])
		}
	}
	return out, kept, deferred, nil
}

// insertBatch stores a batch's deliveries without applying them (they are
// pending; the writer loop applies them next), in three statements
// whatever the batch's size: the notifications, their new alert states, and
// (rarely) the marking of those another replica stored first. A delivery
// whose states are already stored, or stored by an earlier delivery of the
// batch, is a duplicate.
//
// A duplicate whose bytes are those of a notification stored before (the
// payloads cache knows which) stores no copy of them: its reason names that
// notification. Retries and HA peers send the same bytes again and again,
// and the copies were most of what a duplicate wrote. refs gets the rows
// that stored their payload, for the cache once the batch is committed.
func (s *Store) insertBatch(ctx context.Context, tx *sql.Tx, batch []acceptReq, order []int, hashes []string, known map[string]int64, refs map[string]payloadRef) ([]incident.Receipt, bool, error) {
	out := make([]incident.Receipt, len(batch))
	first := map[string]int{} // new states → the batch index of the first delivery with them
	args := make([]any, 0, 8*len(order))
	digests := make([][sha256.Size]byte, len(batch))
	full := make([]bool, len(batch)) // the row stores its payload
	for _, i := range order {
		d := batch[i].d
		m := d.Message
		digests[i] = d.Digest
		if digests[i] == ([sha256.Size]byte{}) {
			digests[i] = sha256.Sum256(d.Raw)
		}
		payload, status, reason := d.Raw, incident.NotificationPending, ""
		_, seen := first[hashes[i]]
		if firstID, ok := known[hashes[i]]; ok {
			status, reason = incident.NotificationDuplicate, fmt.Sprintf("same alert states as notification %d", firstID)
			if ref, ok := s.payloads.Get(hashes[i]); ok && ref.digest == digests[i] && d.ReceivedAt.Sub(ref.at) < MinRetention {
				payload = []byte{}
				reason += fmt.Sprintf("; payload identical to notification %d's, not stored again", ref.id)
			}
		} else if seen {
			status, reason = incident.NotificationDuplicate, "same alert states as a concurrent notification"
		} else {
			first[hashes[i]] = i
		}
		out[i].Duplicate = status == incident.NotificationDuplicate
		full[i] = len(payload) > 0
		args = append(args, ns(d.ReceivedAt), m.GroupKey, hashes[i], status, reason, m.Receiver, len(m.Alerts), truncated(m), packPayload(payload))
	}
	ids, err := queryColumn[int64](ctx, s, tx, `INSERT INTO notifications (received_at, group_key, state_hash, status, reason, receiver, alerts, truncated_alerts, payload) VALUES `+
		tuples(len(order), 9)+` RETURNING id`, args)
	if err != nil {
		return nil, false, fmt.Errorf("insert notifications: %w", err)
	}
	if len(ids) != len(order) {
		return nil, false, fmt.Errorf("insert notifications: %d ids for %d rows", len(ids), len(order))
	}
	// The engines assign a multi-row insert's ids in the order of its rows
	// (a sequence's nextval per row, or SQLite's next rowid), so the sorted
	// ids are the rows' in order.
	slices.Sort(ids)
	var stateArgs []any
	for k, i := range order {
		out[i].NotificationID = ids[k]
		if full[i] {
			refs[hashes[i]] = payloadRef{id: ids[k], digest: digests[i], at: batch[i].d.ReceivedAt}
		}
		if !out[i].Duplicate {
			stateArgs = append(stateArgs, hashes[i], ids[k])
		}
	}
	if len(first) == 0 {
		return out, false, nil
	}
	inserted, err := queryColumn[string](ctx, s, tx, `INSERT INTO notification_states (state_hash, notification_id) VALUES `+tuples(len(first), 2)+
		` ON CONFLICT DO NOTHING RETURNING state_hash`, stateArgs)
	if err != nil {
		return nil, false, fmt.Errorf("insert states: %w", err)
	}
	stored := make(map[string]bool, len(inserted))
	for _, h := range inserted {
		stored[h] = true
	}
	deferred := false
	for h, i := range first {
		if stored[h] {
			deferred = true
			continue
		}
		// Another replica committed the same states first.
		out[i].Duplicate = true
		if _, err := tx.StmtContext(ctx, s.stmts.markDup).ExecContext(ctx, incident.NotificationDuplicate, "same alert states as a concurrent notification", out[i].NotificationID); err != nil {
			return nil, false, fmt.Errorf("mark duplicate: %w", err)
		}
	}
	return out, deferred, nil
}

// payloadRef is a stored notification whose payload a byte-identical
// duplicate points to instead of storing it again.
type payloadRef struct {
	id     int64
	digest [sha256.Size]byte
	// at is when the notification was received. Prune may delete it once
	// it is older than the retention, and Prune on another replica does not
	// clear this one's cache: a notification older than the shortest
	// retention is not pointed to.
	at time.Time
}

// payloadRefs is how many alert states' payloads are remembered for
// duplicates, at about 240 bytes each (the LRU entry, its map slot and the
// hex key): 2,048 took 0.5 MB of live heap, 4,096 took 1 MB, which the GC's
// headroom doubles in RSS. A byte-identical duplicate is a retry or a copy
// from a peer with the same external URL, seconds after the first: 2,048
// distinct alert states cover 15 s (Alertmanager's default peer timeout)
// at up to 136 new notifications a second. One that falls out only has
// its payload stored again.
const payloadRefs = 2048

// queryColumn runs q in tx and returns its one column, row by row (an
// INSERT ... RETURNING of ids or keys).
func queryColumn[T any](ctx context.Context, s *Store, tx *sql.Tx, q string, args []any) ([]T, error) {
	rows, err := s.queryTx(ctx, tx, q, args)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// queryTx runs q in tx, prepared when its text is cached (see cached).
func (s *Store) queryTx(ctx context.Context, tx txConn, q string, args []any) (*sql.Rows, error) {
	if st := s.cached(q); st != nil {
		return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return tx.QueryContext(ctx, s.rebind(q), args...)
}

// execTx is queryTx for a statement.
func (s *Store) execTx(ctx context.Context, tx txConn, q string, args []any) (sql.Result, error) {
	if st := s.cached(q); st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, s.rebind(q), args...)
}

// queryRowTx is queryTx for one row.
func (s *Store) queryRowTx(ctx context.Context, tx txConn, q string, args []any) *sql.Row {
	if st := s.cached(q); st != nil {
		return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, s.rebind(q), args...)
}

// queueRetry marks a notification whose apply failed and queues the ingest
// job that retries it after a backoff.
func (s *Store) queueRetry(ctx context.Context, tx *sql.Tx, notifID int64, cause error, now time.Time, attempts int) error {
	if _, err := tx.ExecContext(ctx, s.rebind(`UPDATE notifications SET status = ? WHERE id = ?`), incident.NotificationRetry, notifID); err != nil {
		return fmt.Errorf("mark notification %d for retry: %w", notifID, err)
	}
	state, retryAt := incident.JobQueued, now.Add(incident.Backoff(attempts, s.opts.MinBackoff, s.opts.MaxBackoff))
	if incident.IsPermanent(cause) || attempts >= s.opts.MaxAttempts {
		state = incident.JobParked
	}
	if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO jobs (kind, ref_id, state, attempts, max_attempts, run_at, last_error, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		incident.JobIngest, notifID, state, attempts, s.opts.MaxAttempts, ns(retryAt), truncateError(cause), ns(now), ns(now)); err != nil {
		return fmt.Errorf("queue retry of notification %d: %w", notifID, err)
	}
	return nil
}

// stateChunk bounds the hashes of one knownStates query, well under
// SQLite's and PostgreSQL's limits on bound parameters.
const stateChunk = 500

// knownStates returns, of hashes, those already stored, each with the
// notification that first carried it.
func (s *Store) knownStates(ctx context.Context, tx *sql.Tx, hashes []string) (map[string]int64, error) {
	known := map[string]int64{}
	for start := 0; start < len(hashes); start += stateChunk {
		part := hashes[start:min(start+stateChunk, len(hashes))]
		args := make([]any, len(part))
		for i, h := range part {
			args[i] = h
		}
		q := `SELECT state_hash, notification_id FROM notification_states WHERE state_hash IN (` + placeholders(len(part)) + `)`
		rows, err := s.queryTx(ctx, tx, q, args)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var (
				h  string
				id int64
			)
			if err := rows.Scan(&h, &id); err != nil {
				_ = rows.Close() // the scan error is the one to report
				return nil, err
			}
			known[h] = id
		}
		_ = rows.Close() // rows.Err reports a failed read
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return known, nil
}

// truncated is m's truncatedAlerts as a column value: a count of alerts,
// capped where an int64 ends.
func truncated(m *incident.Message) int64 {
	return int64(min(m.TruncatedAlerts, math.MaxInt64)) //nolint:gosec // G115: capped at MaxInt64 just before.
}

// fullMessage is the delivery's whole message: a Partial one (only what
// committing needs) is decoded from the raw bytes.
func fullMessage(d incident.Delivery) (*incident.Message, error) {
	if !d.Partial {
		return d.Message, nil
	}
	m, err := incident.DecodeMessage(d.Raw)
	if err != nil {
		return nil, incident.Permanent(fmt.Errorf("decode notification: %w", err))
	}
	return m, nil
}

// insertDelivery stores one delivery and applies it to its incident in the
// same transaction (under a savepoint). If applying fails, the notification is
// still committed, with an ingest job that retries the apply from the queue:
// a bug or a bad payload must never make Alertmanager resend for ever.
// Deliveries that are only stored (a burst, or DeferApply) go through
// insertBatch instead.
func (s *Store) insertDelivery(ctx context.Context, tx *sql.Tx, d incident.Delivery, hash string, known map[string]int64) (_ incident.Receipt, _ *incident.Applied, queued, deferred bool, _ error) {
	m := d.Message
	now := ns(d.ReceivedAt)
	if firstID, ok := known[hash]; ok {
		var id int64
		reason := fmt.Sprintf("same alert states as notification %d", firstID)
		if err := tx.StmtContext(ctx, s.stmts.insertNotif).QueryRowContext(ctx, now, m.GroupKey, hash, incident.NotificationDuplicate, reason, m.Receiver, len(m.Alerts), truncated(m), packPayload(d.Raw)).Scan(&id); err != nil {
			return incident.Receipt{}, nil, false, false, fmt.Errorf("insert notification: %w", err)
		}
		return incident.Receipt{NotificationID: id, Duplicate: true}, nil, false, false, nil
	}
	// Not stored before this batch; if an earlier delivery of the batch, or
	// another replica, stores the same states first, inserting the state
	// below finds it.
	var id int64
	if err := tx.StmtContext(ctx, s.stmts.insertNotif).QueryRowContext(ctx, now, m.GroupKey, hash, incident.NotificationPending, "", m.Receiver, len(m.Alerts), truncated(m), packPayload(d.Raw)).Scan(&id); err != nil {
		return incident.Receipt{}, nil, false, false, fmt.Errorf("insert notification: %w", err)
	}
	res, err := tx.StmtContext(ctx, s.stmts.insertState).ExecContext(ctx, hash, id)
	if err != nil {
		return incident.Receipt{}, nil, false, false, fmt.Errorf("insert state: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// Another replica committed the same states first.
		if _, err := tx.StmtContext(ctx, s.stmts.markDup).ExecContext(ctx, incident.NotificationDuplicate, "same alert states as a concurrent notification", id); err != nil {
			return incident.Receipt{}, nil, false, false, fmt.Errorf("mark duplicate: %w", err)
		}
		return incident.Receipt{NotificationID: id, Duplicate: true}, nil, false, false, nil
	}
	if _, err := tx.ExecContext(ctx, "SAVEPOINT apply_inline"); err != nil {
		return incident.Receipt{}, nil, false, false, fmt.Errorf("savepoint: %w", err)
	}
	var applied incident.Applied
	full, aerr := fullMessage(d)
	if aerr == nil {
		applied, aerr = s.applyMessage(ctx, tx, id, full, false)
	}
	if aerr != nil {
		if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT apply_inline"); err != nil {
			return incident.Receipt{}, nil, false, false, fmt.Errorf("rollback to savepoint: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT apply_inline"); err != nil {
		return incident.Receipt{}, nil, false, false, fmt.Errorf("release savepoint: %w", err)
	}
	if aerr != nil {
		s.logger.WarnContext(ctx, "applying a notification failed; it is stored and queued for a retry", "notification_id", id, "group_key", m.GroupKey, "err", aerr)
		if err := s.queueRetry(ctx, tx, id, aerr, d.ReceivedAt, 1); err != nil {
			return incident.Receipt{}, nil, false, false, err
		}
		return incident.Receipt{NotificationID: id}, nil, false, true, nil
	}
	queued = len(s.opts.FollowUps) > 0 && applied.Transition != incident.TransitionDuplicate
	return incident.Receipt{NotificationID: id}, &applied, queued, false, nil
}
