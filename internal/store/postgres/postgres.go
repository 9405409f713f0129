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
// the start with no word).
const DefaultConnectTimeout = 30 * time.Second

// waitingAfter is how long opening may take before it is logged: a healthy
// server answers in milliseconds, and a start that hangs silently looks
// like a crash.
const waitingAfter = 5 * time.Second

// timeouts are Open's bounds, a parameter of open so that tests take a
// second, not 30.
type timeouts struct {
	// connect bounds each attempt to connect to a server when the DSN sets
	// no connect_timeout.
	connect time.Duration
	// waiting is how long opening may take before it is logged.
	waiting time.Duration
}

// Open connects to the database named by dsn (postgres:// or postgresql://,
// as libpq and pgx read it) and migrates it. Errors never contain the DSN's
// password.
//
// Connecting is bounded: each attempt to reach a server the DSN names waits
// at most its connect_timeout, DefaultConnectTimeout when it sets none, for
// the first connection and every later one (migrations' included). Opening
// that takes longer than a few seconds is logged at Info, naming the server.
// The migrations themselves are not bounded: one may wait for another
// replica's, or rewrite a large table.
func Open(ctx context.Context, dsn string, opts store.Options) (*DB, error) {
	return open(ctx, dsn, opts, timeouts{connect: DefaultConnectTimeout, waiting: waitingAfter})
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
	// Until Open returns, say once that it waits, and for what: the
	// listener (and /-/healthy) come only after storage.
	waiting := time.AfterFunc(bounds.waiting, func() {
		opts.Logger.InfoContext(ctx, "waiting for storage", "engine", "postgres", "host", strings.Join(servers, ","),
			"database", cfg.Database, "connect_timeout", cfg.ConnectTimeout)
	})
	defer waiting.Stop()

	pool := sql.OpenDB(newConnector(*cfg))
	pool.SetMaxOpenConns(MaxConns)
	pool.SetMaxIdleConns(MaxConns)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	// pgx bounds each server's attempt by ConnectTimeout; this deadline
	// also bounds the ping once connected, and the whole when the DSN
	// names several servers.
	limit := cfg.ConnectTimeout * time.Duration(len(servers))
	pctx, cancel := context.WithTimeoutCause(ctx, limit, fmt.Errorf("no answer within %s (connect_timeout in the DSN sets this bound): %w", limit, context.DeadlineExceeded))
	err = pool.PingContext(pctx)
	cause := context.Cause(pctx)
	cancel()
	if err != nil {
		_ = pool.Close() // the ping error is the one to report
		if ctx.Err() == nil && cause != nil {
			// Our deadline, not the caller's cancellation: the cause
			// says what happened better than the driver's "timeout".
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
