// Package postgres opens responder's multi-replica store: the shared
// database/sql Store on PostgreSQL, through pgx's database/sql driver.
//
// Several replicas may share one database. What SQLite gets from its single
// writer, PostgreSQL gets from row locks: workers claim jobs with FOR UPDATE
// SKIP LOCKED, applying a notification locks its group's row, planning a
// delivery locks its Slack channel (an advisory lock), and every lease is a
// conditional UPDATE, which PostgreSQL re-checks against the latest committed
// row. Migrations run under an advisory lock, so replicas that start together
// migrate once.
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/responder/responder/internal/store"
)

// Lock keys. The migration lock is a single bigint key, channel locks are
// (class, hash) pairs: PostgreSQL keeps the two forms apart.
const (
	// migrationLockKey is an arbitrary key, unlikely to meet another
	// application's advisory lock on a shared server. (It must not change:
	// replicas of two versions starting together must share it.)
	migrationLockKey = "7166744553034197618"
	// targetLockClass is the first key of a channel lock.
	targetLockClass = "1919251300"
	// pruneLockKey is "respprun" in ASCII.
	pruneLockKey = "8243121619731641710"
)

// Dialect is PostgreSQL's: $n placeholders and row locks where SQLite
// serialises writers.
var Dialect = store.Dialect{
	Name:          "postgres",
	Dollar:        true,
	SkipLocked:    " FOR UPDATE SKIP LOCKED",
	ForUpdate:     " FOR UPDATE",
	MigrationLock: "SELECT pg_advisory_xact_lock(" + migrationLockKey + ")",
	TargetLock:    "SELECT pg_advisory_xact_lock(" + targetLockClass + ", hashtext(?))",
	PruneLock:     "SELECT pg_try_advisory_xact_lock(" + pruneLockKey + ")",
	LazyCommit:    "SET LOCAL synchronous_commit = off",
	Transient:     Transient,
}

// Transient reports whether err is a failure of the server or of the
// connection to it rather than of a statement: a lost or refused
// connection, a deadlock or serialization failure, a server that is
// shutting down, out of disk or memory, or read-only (a standby after a
// failover). Constraint violations, bad data and SQL errors are not.
func Transient(err error) bool {
	return failed(err) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// Failed is Transient for errors of work that also calls other services
// over HTTP (a job handler posting to Slack): their network errors and
// truncated answers are not the database's. It leaves out an error that
// came through net/http's client (a *url.Error) and an EOF, which a
// truncated HTTP answer gives too: a connection to the database lost in the
// middle of a statement is then the job's failure, as any other, and the
// next statement finds the server gone, which is Failed.
func Failed(err error) bool {
	var ue *url.Error
	return !errors.As(err, &ue) && failed(err)
}

// failed is Transient without EOF.
func failed(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01", // serialization failure, deadlock
			"25006", // read-only transaction
			"55P03": // lock not available
			return true
		}
		switch pe.Code[:min(len(pe.Code), 2)] {
		case "08", "53", "57", "58": // connection, resources, operator intervention, system
			return true
		}
		return false
	}
	var ne net.Error
	var ce *pgconn.ConnectError
	return errors.As(err, &ne) || errors.As(err, &ce) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, driver.ErrBadConn)
}

// MaxConns bounds one replica's connections. The writer loop holds one
// while it commits; queue workers and API reads borrow one per statement or
// transaction. Three replicas stay well inside PostgreSQL's default
// max_connections (100).
const MaxConns = 20

// DB is a Store on PostgreSQL.
type DB struct {
	*store.Store
}

// DefaultConnectTimeout bounds each attempt to connect to a server when
// the DSN sets no connect_timeout (or sets 0, which libpq reads as "wait
// forever": a server that accepts connections and never answers would hang
// the start with no word). It also bounds how long Open waits for a server
// that is not up yet.
const DefaultConnectTimeout = 30 * time.Second

// waitingAfter is how long opening may take before it is logged: a healthy
// server answers in milliseconds, and a start that hangs silently looks
// like a crash.
const waitingAfter = 5 * time.Second

// remindEvery is how often a start still waiting for storage says so
// again, with the last attempt's error: often enough to follow a long
// connect_timeout, not once per attempt.
const remindEvery = 30 * time.Second

// The backoff between attempts to reach a server that is not up yet: the
// first retry after retryFirst, each next one after twice as long, at most
// retryMax apart. A server that comes up is found within retryMax.
const (
	retryFirst = 250 * time.Millisecond
	retryMax   = 2 * time.Second
)

// timeouts are Open's bounds, a parameter of open so that tests take a
// second, not 30.
type timeouts struct {
	// connect bounds each attempt to connect to a server when the DSN sets
	// no connect_timeout.
	connect time.Duration
	// waiting is how long opening may take before it is logged.
	waiting time.Duration
	// remind is how often opening that still waits is logged again.
	remind time.Duration
}

// Open connects to the database named by dsn (postgres:// or postgresql://,
// as libpq and pgx read it) and migrates it. Errors never contain the DSN's
// password.
//
// Connecting is bounded: each attempt to reach a server the DSN names waits
// at most its connect_timeout, DefaultConnectTimeout when it sets none, for
// the first connection and every later one (migrations' included). A server
// that is not up yet (the connection refused, its name not resolving yet,
// PostgreSQL starting up or out of connections) is tried again, with a
// short backoff, within the same bound: responder and its database are
// often started together. An error that waiting cannot mend (a wrong
// password, a role or database that does not exist) fails at once. Opening
// that takes longer than a few seconds is logged at Info, naming the server,
// and again every half minute with the last attempt's error. The migrations
// themselves are not bounded: one may wait for another replica's, or
// rewrite a large table.
func Open(ctx context.Context, dsn string, opts store.Options) (*DB, error) {
	return open(ctx, dsn, opts, timeouts{connect: DefaultConnectTimeout, waiting: waitingAfter, remind: remindEvery})
}

func open(ctx context.Context, dsn string, opts store.Options, bounds timeouts) (*DB, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx redacts the password in the connection string it quotes,
		// but the message is ours to keep free of it.
		return nil, errors.New("open postgres: the DSN does not parse (check its syntax and parameters)")
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "responder"
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = bounds.connect
	}
	servers := hosts(cfg)
	// Until Open returns, say that it waits, and for what: the listener
	// (and /-/healthy) come only after storage.
	w := startWaitLog(ctx, opts.Logger, bounds, cfg.Password,
		"engine", "postgres", "host", strings.Join(servers, ","), "database", cfg.Database, "connect_timeout", cfg.ConnectTimeout)
	defer w.stop()

	pool := sql.OpenDB(newConnector(*cfg))
	pool.SetMaxOpenConns(MaxConns)
	pool.SetMaxIdleConns(MaxConns)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	// pgx bounds each server's attempt by ConnectTimeout; this deadline
	// also bounds the ping once connected, the wait for a server that is
	// not up yet, and the whole when the DSN names several servers.
	limit := cfg.ConnectTimeout * time.Duration(len(servers))
	pctx, cancel := context.WithTimeoutCause(ctx, limit, fmt.Errorf("no answer within %s (connect_timeout in the DSN sets this bound): %w", limit, context.DeadlineExceeded))
	between, err := ping(pctx, pool, w)
	cause := context.Cause(pctx)
	cancel()
	if err != nil {
		_ = pool.Close() // the ping error is the one to report
		switch {
		case ctx.Err() != nil && between:
			// Stopped while waiting to try again: that is what happened,
			// not the last attempt's failure.
			err = ctx.Err()
		case ctx.Err() != nil:
			// The caller's cancellation cut an attempt: its error says so.
		case between:
			// The bound passed while waiting to try again: the last
			// attempt says why the server was not reached.
			err = fmt.Errorf("no connection within %s (connect_timeout in the DSN sets this bound), last attempt: %w", limit, err)
		case cause != nil:
			// Our deadline cut an attempt, not the caller's cancellation:
			// the cause says what happened better than the driver's
			// "timeout".
			err = cause
		}
		return nil, fmt.Errorf("open postgres %s: %w", describe(cfg, servers), redact(err, cfg.Password))
	}
	// One pool serves writes and reads: PostgreSQL runs concurrent writers.
	db := &DB{Store: store.New(pool, pool, Dialect, opts)}
	if err := db.Migrate(ctx); err != nil {
		_ = db.Close() // the migration error is the one to report
		return nil, fmt.Errorf("migrate postgres %s: %w", describe(cfg, servers), redact(err, cfg.Password))
	}
	return db, nil
}

// ping pings pool until a server answers, an attempt fails in a way that
// waiting cannot mend (notUpYet), or ctx ends. It returns the last
// attempt's error, and whether ctx ended between attempts rather than
// during one.
func ping(ctx context.Context, pool *sql.DB, w *waitLog) (between bool, err error) {
	delay := retryFirst
	for {
		err := pool.PingContext(ctx)
		if err == nil || ctx.Err() != nil || !notUpYet(err) {
			return false, err
		}
		w.failed(err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return true, err
		case <-t.C:
		}
		delay = min(2*delay, retryMax)
	}
}

// notUpYet reports whether a failed attempt to connect may succeed if made
// again soon: the server is not up yet, or is going down or up again. That
// is a network error (refused, unreachable, a name that does not resolve
// yet, a timeout), a connection closed during the handshake, or a server
// error of class 08 (connection), 53 (out of connections or memory) or 57
// (starting up, shutting down, in recovery). A server error of any other
// class (28: a wrong password or a role that does not exist, 3D: no such
// database, 42: no CONNECT privilege) fails at once, even when another of
// the servers the DSN names was only refused: pgx tries each in turn and
// joins their errors.
func notUpYet(err error) bool {
	if anyError(err, func(e error) bool {
		pe, ok := e.(*pgconn.PgError) //nolint:errorlint // anyError walks the tree.
		return ok && !slices.Contains([]string{"08", "53", "57"}, pe.Code[:min(len(pe.Code), 2)])
	}) {
		return false
	}
	var pe *pgconn.PgError
	var ne net.Error
	return errors.As(err, &pe) || errors.As(err, &ne) || pgconn.Timeout(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// anyError reports whether f holds for err or any error it wraps, joined
// errors included.
func anyError(err error, f func(error) bool) bool {
	if err == nil {
		return false
	}
	if f(err) {
		return true
	}
	switch u := err.(type) { //nolint:errorlint // walks the tree errors.As would, with every branch.
	case interface{ Unwrap() error }:
		return anyError(u.Unwrap(), f)
	case interface{ Unwrap() []error }:
		return slices.ContainsFunc(u.Unwrap(), func(e error) bool { return anyError(e, f) })
	}
	return false
}

// waitLog says that Open waits for storage: first after bounds.waiting,
// then every bounds.remind until stopped, with the last failed attempt's
// error once there is one.
type waitLog struct {
	mu       sync.Mutex
	timer    *time.Timer
	stopped  bool
	attempts int   // failed attempts so far
	last     error // the last one's error, redacted
	password string
}

// startWaitLog starts the log of a wait; attrs name what is waited for.
func startWaitLog(ctx context.Context, logger *slog.Logger, bounds timeouts, password string, attrs ...any) *waitLog {
	w := &waitLog{password: password}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer = time.AfterFunc(bounds.waiting, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.stopped {
			return
		}
		args := slices.Clone(attrs)
		if w.last != nil {
			args = append(args, "failed_attempts", w.attempts, "err", w.last)
		}
		logger.InfoContext(ctx, "waiting for storage", args...)
		w.timer.Reset(bounds.remind)
	})
	return w
}

// failed records a failed attempt.
func (w *waitLog) failed(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.attempts++
	w.last = redact(err, w.password)
}

// stop ends the log: nothing is logged after it returns.
func (w *waitLog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.timer.Stop()
}

// hosts lists the servers the DSN names, as host:port, without
// credentials. The fallbacks pgx derives for sslmode=prefer repeat the
// main server and are listed once.
func hosts(cfg *pgx.ConnConfig) []string {
	out := []string{hostPort(cfg.Host, cfg.Port)}
	for _, fb := range cfg.Fallbacks {
		if hp := hostPort(fb.Host, fb.Port); !slices.Contains(out, hp) {
			out = append(out, hp)
		}
	}
	return out
}

// hostPort joins a host, or a Unix socket directory, with its port.
func hostPort(host string, port uint16) string {
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// describe names the servers and database for messages, without
// credentials.
func describe(cfg *pgx.ConnConfig, servers []string) string {
	return fmt.Sprintf("database %q on %s", cfg.Database, strings.Join(servers, ","))
}

// redact drops an error's text when it would contain the password (pgx's
// own errors do not, but a server's message is not ours to vouch for).
func redact(err error, password string) error {
	if err == nil || password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return errRedacted
}

var errRedacted = errors.New("postgres error (message withheld: it contained the password)")

// pingIdle is how long a pooled connection may sit unused before it is
// pinged when next taken (pgx's default), and how long every connection is
// pinged when taken after one was found dead (see connector).
const pingIdle = time.Second

// connector is pgx's database/sql connector, with its connections wrapped
// in conn, and a check of connections before reuse that finds those the
// server ended.
//
// A connection the server ended (pg_terminate_backend, a restart, a
// failover) stays in the pool until it is next used, and pgx pings a
// connection before reuse only when it sat unused for more than pingIdle:
// under load each is reused sooner, so each dead one failed the next
// transaction or statement given to it, which for a webhook was a 503 (19
// of 40 notifications after a pool of 20 was ended). So a failed BEGIN on
// a connection the server ended is begun again on another (conn.BeginTx),
// and once a dead connection is found every connection is pinged before
// reuse for pingIdle: a restart or a failover ends them all at once, and
// pinging only then costs nothing the rest of the time (a ping before
// every reuse doubled a one-row read, 55 to 105 µs on loopback). A
// connection pgx closed for another reason (a cancelled statement) costs a
// second of pings too.
type connector struct {
	driver.Connector
	dead *deaths
}

// newConnector returns the connector of cfg's pool.
func newConnector(cfg pgx.ConnConfig) connector {
	d := &deaths{}
	shouldPing := func(_ context.Context, p stdlib.ShouldPingParams) bool {
		return p.IdleDuration > pingIdle || d.recent()
	}
	return connector{Connector: stdlib.GetConnector(cfg, stdlib.OptionShouldPing(shouldPing)), dead: d}
}

// Connect implements driver.Connector.
func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, ok := dc.(*stdlib.Conn)
	if !ok {
		_ = dc.Close() // the type is the error to report
		return nil, fmt.Errorf("pgx connector returned a %T, not a *stdlib.Conn", dc)
	}
	return &conn{Conn: sc, dead: c.dead}, nil
}

// deaths remembers when the pool last found a dead connection.
type deaths struct{ last atomic.Int64 }

// found records a dead connection.
func (d *deaths) found() { d.last.Store(time.Now().UnixNano()) }

// recent reports whether a dead connection was found within pingIdle.
func (d *deaths) recent() bool {
	last := d.last.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < pingIdle
}

// conn is a pgx database/sql connection that tells database/sql, and its
// connector, when it is dead, so that the pool discards it and, where
// nothing can have been written, runs the work again on another
// connection.
type conn struct {
	*stdlib.Conn
	dead *deaths
}

// BeginTx starts a transaction. A BEGIN that failed and left the
// connection closed (the server had ended it) is reported as
// driver.ErrBadConn, wrapped with its cause: a transaction that has not
// begun wrote nothing, so database/sql may begin it again on another
// connection, which it does. pgx's stdlib does so only when nothing was
// sent, and a connection the server has ended takes the BEGIN (the write
// succeeds) before it answers with the server's goodbye.
func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.Conn.BeginTx(ctx, opts)
	if err != nil && ctx.Err() == nil && c.Conn.Conn().IsClosed() {
		c.dead.found()
		return nil, badConnError{err}
	}
	return tx, err
}

// ResetSession implements driver.SessionResetter: pgx's, which pings when
// the connector says so, noting a connection the ping found dead.
func (c *conn) ResetSession(ctx context.Context) error {
	err := c.Conn.ResetSession(ctx)
	if errors.Is(err, driver.ErrBadConn) && ctx.Err() == nil {
		c.dead.found()
	}
	return err
}

// IsValid implements driver.Validator: a connection pgx closed after a
// failure leaves the pool when it is put back, not when it is next taken,
// and the connector learns that connections are dying.
func (c *conn) IsValid() bool {
	if c.Conn.Conn().IsClosed() {
		c.dead.found()
		return false
	}
	return true
}

// badConnError is a failure database/sql may retry on another connection
// (it is driver.ErrBadConn), with its cause, which it reports when the
// retries fail too.
type badConnError struct{ err error }

func (e badConnError) Error() string   { return e.err.Error() }
func (e badConnError) Unwrap() []error { return []error{e.err, driver.ErrBadConn} }
