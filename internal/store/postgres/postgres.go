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
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
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

// Open connects to the database named by dsn (postgres:// or postgresql://,
// as libpq and pgx read it) and migrates it. Errors never contain the DSN's
// password.
func Open(ctx context.Context, dsn string, opts store.Options) (*DB, error) {
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
	pool := stdlib.OpenDB(*cfg)
	pool.SetMaxOpenConns(MaxConns)
	pool.SetMaxIdleConns(MaxConns)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	if err := pool.PingContext(ctx); err != nil {
		_ = pool.Close() // the ping error is the one to report
		return nil, fmt.Errorf("open postgres %s: %w", describe(cfg), redact(err, cfg.Password))
	}
	// One pool serves writes and reads: PostgreSQL runs concurrent writers.
	db := &DB{Store: store.New(pool, pool, Dialect, opts)}
	if err := db.Migrate(ctx); err != nil {
		_ = db.Close() // the migration error is the one to report
		return nil, redact(err, cfg.Password)
	}
	return db, nil
}

// describe names the server and database for messages, without credentials.
func describe(cfg *pgx.ConnConfig) string {
	return fmt.Sprintf("database %q on %s:%d", cfg.Database, cfg.Host, cfg.Port)
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
