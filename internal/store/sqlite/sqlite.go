// Package sqlite opens responder's default store: one SQLite file in WAL
// mode, fsynced on every commit, using the pure-Go modernc.org/sqlite driver.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"modernc.org/sqlite" // also registers the "sqlite" database/sql driver.
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/responder/responder/internal/incident"
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
	Transient: Transient,
}

// Transient reports whether err is a failure of SQLite's file or its
// locks rather than of a statement: the disk is full, a write or read
// failed, the file cannot be written or opened, the database is busy.
// A corrupt database is not: it stays so until someone repairs it.
func Transient(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code() & 0xff { // the primary result code of an extended one
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_READONLY,
		sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL:
		return true
	}
	return false
}

// DB is a Store on SQLite plus the background WAL checkpointer.
type DB struct {
	*store.Store
	path   string
	ckpt   *sql.DB
	file   *os.File // see OpenSyncFile
	lock   *os.File // see lockDatabase; nil for an in-memory database
	logger *slog.Logger
}

// Open opens (creating if needed) the database file at path, with its
// directory, and migrates it. The database is this process's until Close:
// another Open of it, here or in another process, fails with ErrInUse (see
// lockDatabase).
func Open(ctx context.Context, path string, opts store.Options) (*DB, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	lock, err := lockDatabase(path)
	if err != nil {
		return nil, err
	}
	closeLock := func() {
		if lock != nil {
			_ = lock.Close() // the open error is the one to report
		}
	}
	writer, ckpt, err := OpenWriter(ctx, path)
	if err != nil {
		closeLock()
		return nil, err
	}
	if pageCacheErr != nil {
		opts.Logger.WarnContext(ctx, "SQLite's page caches are not in their shared buffer; at saturation they take about 3 MB more memory", "err", pageCacheErr)
	}
	// The readers keep page caches of 512 KiB, not SQLite's 2 MiB each: the
	// OS page cache holds the file anyway, and the writer's cache (1 MiB,
	// see OpenWriter) is the one that saves work. Peak RSS at saturation
	// went down by 2-3 MB (median of three paired runs, 73.5 -> 71.8 MB)
	// with ingest and the drain of a burst unchanged within the noise
	// (docs/benchmarks.md).
	reader, err := openPool(ctx, path, readers, "", "query_only(1)", cacheSize(readerCacheKiB))
	if err != nil {
		// The open error is the one to report.
		_ = writer.Close()
		_ = ckpt.Close()
		closeLock()
		return nil, err
	}
	file, err := OpenSyncFile(path)
	if err != nil {
		// The open error is the one to report.
		_ = writer.Close()
		_ = ckpt.Close()
		_ = reader.Close()
		closeLock()
		return nil, err
	}
	db := &DB{Store: store.New(writer, reader, Dialect, opts), path: path, ckpt: ckpt, file: file, lock: lock, logger: opts.Logger}
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
// journal_size_limit cuts a WAL that a burst grew past 64 MiB back to that
// size when it starts over (see checkpointOnce). The writer's page cache is
// 1 MiB, not SQLite's 2: halving it lowered peak RSS at saturation by 2-3 MB
// (four paired runs, 71.7-73.2 -> 69.2-69.6 MB, when each cached page still
// took an 8 KiB slot of modernc.org/sqlite's allocator; see
// configurePageCache) with ingest and the drain of a burst unchanged within
// the noise (docs/benchmarks.md).
func OpenWriter(ctx context.Context, path string) (writer, ckpt *sql.DB, _ error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, nil, fmt.Errorf("create data directory: %w", err)
	}
	if err := createPrivate(path); err != nil {
		return nil, nil, err
	}
	writer, err := openPool(ctx, path, 1, "_txlock=immediate", "journal_mode(WAL)", "synchronous(FULL)", "wal_autocheckpoint(0)", "journal_size_limit(67108864)", "temp_store(MEMORY)", cacheSize(writerCacheKiB))
	if err != nil {
		return nil, nil, err
	}
	// The checkpointer copies WAL frames into the file; it reads little
	// through its own page cache.
	ckpt, err = openPool(ctx, path, 1, "", cacheSize(ckptCacheKiB))
	if err != nil {
		_ = writer.Close() // the open error is the one to report
		return nil, nil, err
	}
	return writer, ckpt, nil
}

// Syncer flushes a file to disk: an *os.File.
type Syncer interface{ Sync() error }

// OpenSyncFile opens the database file at path for Checkpoint to flush.
// Close it only after every connection to the database is closed: closing
// any descriptor of a file drops the POSIX locks that the process holds on
// it, SQLite's included.
func OpenSyncFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0) //nolint:gosec // G304: the configured database file.
	if err != nil {
		return nil, fmt.Errorf("open %s for checkpoints: %w", filepath.Base(path), err)
	}
	return f, nil
}

// createPrivate creates the database file, empty, readable by its owner
// only, unless it exists: SQLite would create it with the umask's mode
// (0644 as a rule), and it creates the -wal and -shm files with the
// database file's mode. The file holds every notification's payload.
func createPrivate(path string) error {
	if !store.SQLiteFileName(path) {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600) //nolint:gosec // G304: the operator's storage.dsn.
	switch {
	case errors.Is(err, fs.ErrExist):
		return nil
	case err != nil:
		return fmt.Errorf("create database file: %w", err)
	}
	return f.Close()
}

// cacheSize is the pragma that sets a connection's page cache to kib KiB.
func cacheSize(kib int) string { return fmt.Sprintf("cache_size(-%d)", kib) }

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

func (db *DB) checkpoint(ctx context.Context) {
	Checkpoint(ctx, db.ckpt, db.file, db.logger, db.PauseWriter)
}

// Checkpoint copies the WAL of the database that conn (a connection of its
// own) opens back into the database file every second, in the background,
// until ctx is cancelled, so that the writer never checkpoints on a
// request's commit (it runs with wal_autocheckpoint=0). See checkpointOnce
// for file (from OpenSyncFile, or nil) and pause; with a nil pause the WAL
// may grow for as long as the writer commits back to back.
func Checkpoint(ctx context.Context, conn *sql.DB, file Syncer, logger *slog.Logger, pause func(context.Context) (resume func(), err error)) {
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	var h checkpointHealth
	slow := func(took time.Duration, left int) { h.observeSlow(ctx, logger, took, left) }
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			err := checkpointOnce(ctx, conn, file, slow, pause)
			if ctx.Err() != nil {
				return // stopped meanwhile: the error is the cancellation
			}
			h.observe(ctx, logger, err)
		}
	}
}

// checkpointHealth logs a run of failed checkpoints the way storage logs
// failed commits: the first failure, then at most once a minute with how
// long and how many and the last error, and once when a checkpoint works
// again. A checkpoint runs every second, and a warning for each failure
// buried the log while its cause (a full disk, an I/O error) lasted.
type checkpointHealth struct {
	failures incident.FailureLog
	// Paused passes that held the writer longer than slowPause: on a disk
	// that slow, every checkpoint is one. slowMax is the longest since the
	// last warning about them.
	slow    incident.FailureLog
	slowMax time.Duration
}

// observe records a checkpoint's outcome.
func (h *checkpointHealth) observe(ctx context.Context, logger *slog.Logger, err error) {
	now := time.Now()
	if err == nil {
		if f, ok := h.failures.Recovered(now); ok {
			logger.InfoContext(ctx, "wal checkpoints work again", "failing_for", f.For.Round(time.Second), "failed_checkpoints", f.Total)
		}
		return
	}
	f, ok := h.failures.Failed(now)
	switch {
	case !ok:
	case f.First:
		logger.WarnContext(ctx, "wal checkpoint failed, will retry every second; the wal grows until one works", "err", err)
	default:
		logger.WarnContext(ctx, "wal checkpoint still failing", "failing_for", f.For.Round(time.Second), "failed_checkpoints", f.Total, "err", err)
	}
}

// observeSlow records a paused pass that held the writer for took; one
// longer than slowPause is logged, then at most once a minute with how
// many there were since and the longest.
func (h *checkpointHealth) observeSlow(ctx context.Context, logger *slog.Logger, took time.Duration, left int) {
	if took <= slowPause {
		return
	}
	h.slowMax = max(h.slowMax, took)
	if f, ok := h.slow.Failed(time.Now()); ok {
		logger.WarnContext(ctx, "the wal checkpoint held the writer back", "took", took, "frames_left", left, "slow_checkpoints", f.SinceLine, "longest", h.slowMax)
		h.slowMax = 0
	}
}

const (
	checkpointEvery = time.Second
	// checkpointPasses is how many PASSIVE passes run while the writer
	// goes on, each copying what was committed during the one before.
	checkpointPasses = 3
	// pausedFrames: once no more than this many frames (4 MiB at SQLite's
	// 4 KiB pages) are left to copy, the passes stop and the last one runs.
	pausedFrames = 1024
	// slowPause is how long a paused pass may hold the writer before it is
	// logged as a warning (see checkpointHealth.observeSlow).
	slowPause = 100 * time.Millisecond
)

// checkpointOnce copies the WAL into the database file: PASSIVE passes
// (they never block the writer) copy the bulk, then, with the writer paused
// (pause; nil skips it), a last pass copies what was committed meanwhile.
//
// The last pass also flushes the database file (SQLite fsyncs it before it
// counts the frames as copied), and the passes before, which never reach the
// WAL's end while the writer commits, flush nothing: the paused pass used to
// flush the whole second's copies, 8-12 ms at 1,000 new notifications/s,
// while every request waited (docs/benchmarks.md). So file, when not nil,
// is flushed first, with the writer going on, and one more passive pass
// copies what was committed meanwhile.
//
// The last pass is what lets the WAL start over. SQLite rewinds the WAL to
// its beginning only when a write transaction begins with every frame
// already copied; a writer that commits back to back (a sustained burst)
// always has new frames past the copy of a pass it does not wait for, so
// without the pause the WAL only grows: 255–333 MB after 10 s of 1,000 new
// notifications/s, where a WAL rewound every second stays within the
// frames of about a second, and an fsync that overwrites the WAL cost half
// of one that extends it on the disks measured (docs/benchmarks.md). The
// writer waits for the copy of what it committed during the passes before,
// not for the whole WAL; if the disk cannot keep up, that wait is the
// back-pressure that bounds the WAL.
func checkpointOnce(ctx context.Context, conn *sql.DB, file Syncer, slow func(took time.Duration, left int), pause func(context.Context) (func(), error)) error {
	for range checkpointPasses {
		frames, left, err := checkpointPassive(ctx, conn)
		if err != nil {
			return err
		}
		if frames == 0 {
			return nil // empty: it has just started over
		}
		if left <= pausedFrames {
			// Even with nothing left, a transaction the writer began
			// before the copy ended will not start the WAL over.
			break
		}
	}
	if pause == nil {
		return nil
	}
	if file != nil {
		if err := file.Sync(); err != nil {
			return fmt.Errorf("flush the database file: %w", err)
		}
		if _, _, err := checkpointPassive(ctx, conn); err != nil {
			return err
		}
	}
	resume, err := pause(ctx)
	if err != nil {
		return fmt.Errorf("pause the writer: %w", err)
	}
	start := time.Now()
	_, left, err := checkpointPassive(ctx, conn)
	resume()
	if slow != nil {
		slow(time.Since(start), left)
	}
	return err
}

// checkpointPassive runs one PASSIVE checkpoint and returns how many frames
// the WAL has and how many of them it left uncopied.
func checkpointPassive(ctx context.Context, conn *sql.DB) (frames, left int, _ error) {
	var busy, copied int
	if err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied); err != nil {
		return 0, 0, err
	}
	if frames < 0 { // not in WAL mode
		return 0, 0, nil
	}
	return frames, frames - copied, nil
}

// WALBytes is the size of the database's WAL file; 0 when there is none.
func (db *DB) WALBytes() (int64, error) {
	fi, err := os.Stat(db.path + "-wal")
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// Close checkpoints what it can and closes the database.
func (db *DB) Close() error {
	// Best effort: a failed checkpoint leaves the WAL for the next open, and
	// the store's Close below is the error that matters.
	_, _ = db.ckpt.ExecContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)")
	_ = db.ckpt.Close()
	err := db.Store.Close()
	// Last: every connection is closed (see OpenSyncFile).
	_ = db.file.Close()
	if db.lock != nil {
		// Closing it lets the next responder open the database.
		_ = db.lock.Close()
	}
	return err
}
