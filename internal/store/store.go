package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/responder/responder/internal/incident"
)

//go:embed migrations
var migrations embed.FS

// Dialect is what differs between the SQL engines.
type Dialect struct {
	// Name is "sqlite" or "postgres"; it selects migrations/<Name>.
	Name string
	// Dollar is true for engines with $1-style placeholders.
	Dollar bool
	// SkipLocked is appended to the claim subquery (FOR UPDATE SKIP LOCKED on
	// engines with row locks; SQLite serialises writers instead).
	SkipLocked string
	// ForUpdate is appended to the group-row select in ApplyNotification.
	ForUpdate string
	// MigrationLock, when set, runs before migrations inside their
	// transaction so that concurrent starts migrate once.
	MigrationLock string
	// TargetLock, when set, takes a transaction-scoped lock on one text key
	// (its one placeholder): joinStorms holds it for each Slack channel
	// while it counts, starts and joins the channel's storm, which SQLite
	// serialises by its single writer.
	TargetLock string
	// PruneLock, when set, tries a transaction-scoped lock that one Prune
	// transaction at a time holds (it answers whether it got it), so that
	// replicas sharing a database do not prune the same rows at once.
	PruneLock string
	// LazyCommit, when set, runs first in the transactions that apply
	// deferred deliveries: their notifications were committed durably
	// before the 200, and applying is idempotent, so such a commit need not
	// wait for its own flush (a crash before it re-applies them). The next
	// durable commit flushes it anyway.
	LazyCommit string
	// LazyBegin and LazyEnd do what LazyCommit does for engines whose
	// durability cannot change inside a transaction (SQLite's synchronous
	// pragma): they run on the writer connection before and after such a
	// transaction. They need SingleWriter, and every other user of the
	// writer finds LazyEnd's setting restored before it writes.
	LazyBegin, LazyEnd string
	// SingleWriter is set for engines with one writer connection (SQLite):
	// its users then take turns through a write gate, the writer loop first.
	SingleWriter bool
	// Transient, when set, reports whether an error is the storage's own
	// and passes with time (a full disk, a lost connection, a deadlock),
	// not the statement's or the data's: applying a notification that
	// fails so is tried again without counting an attempt.
	Transient func(error) bool
}

// transient reports whether err is a failure of the storage that passes
// with time (see Dialect.Transient).
func (s *Store) transient(err error) bool {
	return s.dialect.Transient != nil && s.dialect.Transient(err)
}

// Options tunes a Store. Zero fields get defaults.
type Options struct {
	Logger      *slog.Logger
	MaxAttempts int
	// MaxBatch caps how many deliveries one group commit carries.
	MaxBatch int
	// OnCommit is called after a commit that queued new jobs, to wake workers.
	OnCommit func()
	// OnApplied is called after the commit of each delivery that Accept
	// applied, with what it did (for the console).
	OnApplied func(notificationID int64, ap incident.Applied)
	// FollowUps are the job kinds queued for an incident each time a
	// notification changes it.
	FollowUps []string
	// FollowUpFilter, when set, decides for each applied change which of
	// the FollowUps kinds to queue (e.g. remediation only for alerts that
	// opted in); nil queues them all.
	FollowUpFilter func(kind string, ap incident.Applied) bool
	// HoldTruncated, when it returns true, keeps an incident open that a
	// notification from which Alertmanager left alerts out (max_alerts)
	// would resolve: its status counts only the alerts it kept, so the
	// others may still fire. Something must then settle the incident: a
	// later notification that leaves nothing out, or reconciliation with
	// Alertmanager's API (which is why the app holds only while it runs).
	HoldTruncated func() bool
	// DeferApply makes Accept only store deliveries and queue an ingest job
	// for each, instead of applying them in the same commit. The request
	// path gets cheaper, the incident lags behind by one queue hop.
	DeferApply bool
	// InlineApplyMax is the largest batch whose deliveries are applied in
	// the commit that acknowledges them; larger batches (a burst) are
	// deferred to ingest jobs, which Run applies when no request waits.
	InlineApplyMax int
	// ApplyPoll is how often Run looks for due ingest jobs nobody announced
	// (retries after backoff, other replicas' work).
	ApplyPoll time.Duration
	// MinBackoff and MaxBackoff bound the retry delay of a failed apply.
	MinBackoff, MaxBackoff time.Duration
	Now                    func() time.Time
}

// Store keeps notifications, incidents and jobs. It is safe for concurrent
// use, and, on PostgreSQL, by several replicas.
type Store struct {
	w, r *sql.DB
	gate *writeGate  // nil unless the engine has a single writer
	lazy atomic.Bool // the writer connection may still run LazyBegin's setting
	// payloads remembers, by alert states, a stored notification and the
	// digest of its bytes (see insertBatch).
	payloads *lru.Cache[string, payloadRef]
	dialect  Dialect
	opts     Options
	logger   *slog.Logger
	accepts  chan acceptReq
	lends    chan *lendReq // handlers asking for the writer loop's transaction
	looping  atomic.Bool   // Run is serving accepts and lends
	stmts    stmts
	cache    sync.Map // query text → *sql.Stmt on the writer pool
	missed   sync.Map // query texts to prepare
	rcache   sync.Map // query text → *sql.Stmt on the reader pool

	stopped  chan struct{} // closed when Run returns
	stopOnce sync.Once
	applyNow chan struct{}      // wakes Run to apply due ingest jobs
	settle   chan chan struct{} // Settle's requests, answered when Run is idle
	health   commitHealth
}

// New returns a Store over a writer and a reader pool (the same pool where
// the engine allows concurrent writers). Call Migrate, then Run.
func New(w, r *sql.DB, d Dialect, opts Options) *Store {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultQueueConfig.MaxAttempts
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.OnCommit == nil {
		opts.OnCommit = func() {}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.InlineApplyMax <= 0 {
		opts.InlineApplyMax = 4
	}
	if opts.ApplyPoll <= 0 {
		opts.ApplyPoll = time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultQueueConfig.MinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultQueueConfig.MaxBackoff, opts.MinBackoff)
	}
	if opts.OnApplied == nil {
		opts.OnApplied = func(int64, incident.Applied) {}
	}
	payloads, _ := lru.New[string, payloadRef](payloadRefs) // fails only for a size below 1
	var gate *writeGate
	if d.SingleWriter {
		gate = newWriteGate()
	}
	return &Store{
		w: w, r: r, gate: gate, dialect: d, opts: opts, logger: opts.Logger, payloads: payloads,
		// A group commit takes at most MaxBatch deliveries from accepts, so
		// a longer queue would only hold more requests' memory: with 4,096
		// the queue's buffer alone was 0.48 MB of live heap (about 120 bytes
		// a delivery). Beyond it, requests wait in Accept's send, as they
		// would for their turn in the queue.
		accepts:  make(chan acceptReq, opts.MaxBatch),
		lends:    make(chan *lendReq, 1024),
		stopped:  make(chan struct{}),
		applyNow: make(chan struct{}, 1),
		settle:   make(chan chan struct{}),
	}
}

// Dialect returns the store's dialect.
func (s *Store) Dialect() Dialect { return s.dialect }

// DB returns the writer pool, for engine-specific maintenance.
func (s *Store) DB() *sql.DB { return s.w }

// SetHooks replaces the post-commit hooks and the follow-up job kinds; call
// it before Run.
func (s *Store) SetHooks(onCommit func(), onApplied func(int64, incident.Applied), followUps ...string) {
	if onCommit != nil {
		s.opts.OnCommit = onCommit
	}
	if onApplied != nil {
		s.opts.OnApplied = onApplied
	}
	s.opts.FollowUps = followUps
}

// SetHoldTruncated sets Options.HoldTruncated. Call it before Run.
func (s *Store) SetHoldTruncated(f func() bool) {
	s.opts.HoldTruncated = f
}

// SetFollowUpFilter sets Options.FollowUpFilter. Call it before Run.
func (s *Store) SetFollowUpFilter(f func(kind string, ap incident.Applied) bool) {
	s.opts.FollowUpFilter = f
}

// wakeApply tells Run that ingest jobs may be due.
func (s *Store) wakeApply() {
	select {
	case s.applyNow <- struct{}{}:
	default:
	}
}

// SetDeferApply switches between applying deliveries in their commit (the
// default) and queueing an ingest job for each; call it before Run.
func (s *Store) SetDeferApply(deferApply bool) { s.opts.DeferApply = deferApply }

// cached returns the prepared statement for q, if there is one yet. A miss
// is remembered, and prepareMissed prepares it once no transaction holds the
// writer (the SQLite writer pool has one connection, so preparing inside a
// transaction would wait for itself). Parsing SQL was a fifth of the apply
// path's CPU before statements were cached; the set of query texts is small
// (multi-row inserts vary only by their row count, which is capped).
func (s *Store) cached(q string) *sql.Stmt {
	if st, ok := s.cache.Load(q); ok {
		return st.(*sql.Stmt)
	}
	s.missed.Store(q, true)
	return nil
}

// prepareMissed prepares the statements that missed the cache. Call it only
// when no transaction is open on the writer pool.
func (s *Store) prepareMissed(ctx context.Context) {
	s.missed.Range(func(k, _ any) bool {
		q := k.(string)
		s.missed.Delete(q)
		if _, ok := s.cache.Load(q); ok {
			return true
		}
		if err := s.gate.lock(ctx, true); err != nil {
			return false
		}
		st, err := s.w.PrepareContext(ctx, s.rebind(q))
		s.gate.unlock()
		if err != nil {
			s.logger.WarnContext(ctx, "prepare statement failed; it runs unprepared", "err", err)
			return true
		}
		s.cache.Store(q, st)
		return true
	})
}

// PauseWriter holds off the writer loop and every other writer until
// resume is called, on an engine with a single writer (SQLite's
// checkpointer pauses it for the last pass of a checkpoint); elsewhere it
// returns at once. The pause begins between transactions.
func (s *Store) PauseWriter(ctx context.Context) (resume func(), _ error) {
	if err := s.gate.lock(ctx, true); err != nil {
		return nil, err
	}
	return s.gate.unlock, nil
}

// Close closes both pools.
func (s *Store) Close() error {
	err := s.w.Close()
	if s.r != s.w {
		if rerr := s.r.Close(); err == nil {
			err = rerr
		}
	}
	return err
}

// Rebind turns the ?-placeholders of a query for DB() into what the engine
// takes ($n on PostgreSQL). The query must not contain a literal question
// mark.
func (s *Store) Rebind(q string) string { return s.rebind(q) }

// rebind turns ?-placeholders into $n for engines that need it. Queries in
// this package never contain a literal question mark.
func (s *Store) rebind(q string) string {
	if !s.dialect.Dollar {
		return q
	}
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Migrate applies the embedded migrations that have not run yet, each in its
// own transaction, and records them in schema_migrations.
func (s *Store) Migrate(ctx context.Context) error {
	dir := "migrations/" + s.dialect.Name
	entries, err := fs.ReadDir(migrations, dir)
	if err != nil {
		return fmt.Errorf("read migrations: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sql") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if err := s.createMigrationsTable(ctx); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	if err := s.checkNotNewer(ctx, names); err != nil {
		return err
	}
	for _, name := range names {
		if err := s.migrateOne(ctx, dir, name); err != nil {
			return err
		}
	}
	return s.prepare(ctx)
}

// checkNotNewer refuses a database that a newer version migrated: one
// with a migration recorded that this binary does not have. Its code would
// write to a schema it does not know (a table a later migration replaced,
// a column it does not fill), and its migrations, which all count as
// applied, would not notice.
func (s *Store) checkNotNewer(ctx context.Context, known []string) error {
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // it only read.
	applied, err := queryColumn[string](ctx, s, tx, `SELECT name FROM schema_migrations`, nil)
	if err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	slices.Sort(applied)
	var unknown []string
	for _, name := range applied {
		if _, found := slices.BinarySearch(known, name); !found {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("the database was migrated by a newer version of responder (it has migrations this one does not: %s): "+
			"run that version, or restore the backup taken before the upgrade; nothing was changed", strings.Join(unknown, ", "))
	}
	return nil
}

// createMigrationsTable creates schema_migrations if needed, under the
// migration lock where the engine has one: concurrent CREATE TABLE IF NOT
// EXISTS can fail on PostgreSQL.
func (s *Store) createMigrationsTable(ctx context.Context) error {
	const q = `CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)`
	if s.dialect.MigrationLock == "" {
		_, err := s.w.ExecContext(ctx, q)
		return err
	}
	tx, err := s.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
	if _, err := tx.ExecContext(ctx, s.dialect.MigrationLock); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, q); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *Store) migrateOne(ctx context.Context, dir, name string) error {
	body, err := fs.ReadFile(migrations, dir+"/"+name)
	if err != nil {
		return fmt.Errorf("read migration %s: %w", name, err)
	}
	tx, err := s.begin(ctx, false)
	if err != nil {
		return fmt.Errorf("begin migration %s: %w", name, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
	if s.dialect.MigrationLock != "" {
		if _, err := tx.ExecContext(ctx, s.dialect.MigrationLock); err != nil {
			return fmt.Errorf("lock migrations: %w", err)
		}
	}
	var n int
	if err := tx.QueryRowContext(ctx, s.rebind(`SELECT count(*) FROM schema_migrations WHERE name = ?`), name).Scan(&n); err != nil {
		return fmt.Errorf("check migration %s: %w", name, err)
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return fmt.Errorf("apply migration %s: %w", name, err)
	}
	if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)`), name, s.opts.Now().UnixNano()); err != nil {
		return fmt.Errorf("record migration %s: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit migration %s: %w", name, err)
	}
	s.logger.InfoContext(ctx, "applied migration", "migration", name)
	return nil
}

// ns converts a time to the stored Unix nanoseconds.
func ns(t time.Time) int64 { return t.UnixNano() }

// fromNS converts stored Unix nanoseconds back to a UTC time.
func fromNS(n int64) time.Time { return time.Unix(0, n).UTC() }

// nullTime converts a nullable column to *time.Time.
func nullTime(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromNS(n.Int64)
	return &t
}
