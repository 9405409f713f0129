// Package sqlite opens responder's default store: one SQLite file in WAL
// mode, fsynced on every commit, using the pure-Go modernc.org/sqlite driver.
package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver.

	"github.com/responder/responder/internal/store"
)

// Dialect is SQLite's: ?-placeholders, no row locks (writers are serialised
// by the database itself, and by the single writer connection).
var Dialect = store.Dialect{
	Name:         "sqlite",
	SingleWriter: true,
	// Deferred applies commit without their own fsync; the next commit at
	// synchronous=FULL (a webhook's, a job claim's) flushes them with the
	// rest of the WAL.
	LazyBegin: "PRAGMA synchronous = NORMAL",
	LazyEnd:   "PRAGMA synchronous = FULL",
}

// DB is a Store on SQLite plus the background WAL checkpointer.
type DB struct {
	*store.Store
	path   string
	ckpt   *sql.DB
	logger *slog.Logger
}

// Open opens (creating if needed) the database file at path, with its
// directory, and migrates it.
func Open(ctx context.Context, path string, opts store.Options) (*DB, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	writer, ckpt, err := OpenWriter(ctx, path)
	if err != nil {
		return nil, err
	}
	reader, err := openPool(ctx, path, 4, "", "query_only(1)")
	if err != nil {
		// The open error is the one to report.
		_ = writer.Close()
		_ = ckpt.Close()
		return nil, err
	}
	db := &DB{Store: store.New(writer, reader, Dialect, opts), path: path, ckpt: ckpt, logger: opts.Logger}
	if err := db.Migrate(ctx); err != nil {
		_ = db.Close() // the migration error is the one to report
		return nil, err
	}
	return db, nil
}

// OpenWriter opens (creating it and its directory if needed) the database
// file at path for writing as the store does: writer is its one writer
// connection, ckpt the connection for Checkpoint. synchronous=FULL fsyncs
// the WAL on every commit: a 200 means the notification is on disk.
// wal_autocheckpoint=0 keeps checkpoints off the commit path (they caused
// 15–70 ms p99 spikes); Checkpoint runs them in the background instead.
func OpenWriter(ctx context.Context, path string) (writer, ckpt *sql.DB, _ error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, nil, fmt.Errorf("create data directory: %w", err)
	}
	writer, err := openPool(ctx, path, 1, "_txlock=immediate", "journal_mode(WAL)", "synchronous(FULL)", "wal_autocheckpoint(0)", "temp_store(MEMORY)")
	if err != nil {
		return nil, nil, err
	}
	ckpt, err = openPool(ctx, path, 1, "")
	if err != nil {
		_ = writer.Close() // the open error is the one to report
		return nil, nil, err
	}
	return writer, ckpt, nil
}

func openPool(ctx context.Context, path string, conns int, txlock string, pragmas ...string) (*sql.DB, error) {
	q := url.Values{}
	for _, p := range append([]string{"busy_timeout(10000)", "foreign_keys(ON)"}, pragmas...) {
		q.Add("_pragma", p)
	}
	dsn := "file:" + path + "?" + q.Encode()
	if txlock != "" {
		dsn += "&" + txlock
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close() // the ping error is the one to report
		return nil, fmt.Errorf("open sqlite %s: %w", filepath.Base(path), err)
	}
	return db, nil
}

// Run commits deliveries and checkpoints the WAL until ctx is cancelled.
func (db *DB) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		db.checkpoint(ctx)
	}()
	err := db.Store.Run(ctx)
	<-done
	return err
}

func (db *DB) checkpoint(ctx context.Context) { Checkpoint(ctx, db.ckpt, db.logger) }

// Checkpoint copies the WAL of the database that conn (a connection of its
// own) opens back into the database file every second, in the background
// (PASSIVE: it never blocks the writer), until ctx is cancelled, so that the
// WAL stays small without the writer ever checkpointing on a request's
// commit (the writer runs with wal_autocheckpoint=0).
func Checkpoint(ctx context.Context, conn *sql.DB, logger *slog.Logger) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := conn.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)"); err != nil && ctx.Err() == nil {
				logger.WarnContext(ctx, "wal checkpoint failed, will retry in 1s", "err", err)
			}
		}
	}
}

// Close checkpoints what it can and closes the database.
func (db *DB) Close() error {
	// Best effort: a failed checkpoint leaves the WAL for the next open, and
	// the store's Close below is the error that matters.
	_, _ = db.ckpt.ExecContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)")
	_ = db.ckpt.Close()
	return db.Store.Close()
}
