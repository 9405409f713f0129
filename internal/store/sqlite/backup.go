package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// BackupInfo describes a copy that Backup wrote.
type BackupInfo struct {
	// Bytes is the copy's size.
	Bytes int64
	// Migrations is how many schema migrations the copy has: a restore
	// needs a responder version that knows as many.
	Migrations int
	// Notifications is how many notifications the copy holds.
	Notifications int64
}

// backupMode is the mode of the copy Backup writes: its owner's alone. The
// copy holds every notification payload; the database it copies must be
// readable and writable by its owner, so no mode of it is stricter.
const backupMode fs.FileMode = 0o600

// Backup writes a consistent copy of the database at path to dest (a new
// file: it must not exist), then checks the copy and flushes it to disk. It
// may run while responder serves the database: the copy is one read
// snapshot (SQLite's VACUUM INTO), the WAL's commits included, and the
// writer is not held back (a long copy only delays the checkpoints, which
// wait for the snapshot to end). Copying responder.db alone, or it and its
// WAL one after the other, can give a file that misses or tears commits.
//
// The copy is created with backupMode, whatever the umask, before anything
// is written to it.
func Backup(ctx context.Context, path, dest string) (info BackupInfo, err error) {
	// SQLite would create a missing file, and an empty copy of it.
	if _, err := os.Stat(path); err != nil {
		return BackupInfo{}, fmt.Errorf("database: %w", err)
	}
	// The copy is created here, empty, so that it is never readable by
	// others: VACUUM INTO would create it with SQLite's mode (0644 less the
	// umask), and a chmod after it leaves a moment when another user may
	// open it. SQLite writes into an existing file if it is empty.
	// O_EXCL refuses an existing file, a symbolic link included.
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, backupMode) //nolint:gosec // G304: the file the operator asked for.
	if errors.Is(err, fs.ErrExist) {
		return BackupInfo{}, fmt.Errorf("%s already exists: a backup is written to a new file", dest)
	} else if err != nil {
		return BackupInfo{}, err
	}
	// The umask may have taken the owner's write permission away, which
	// SQLite needs; this gives nothing to anyone else.
	err = f.Chmod(backupMode)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	defer func() {
		if err != nil {
			_ = os.Remove(dest) // a partial copy is no backup
		}
	}()
	if err != nil {
		return BackupInfo{}, fmt.Errorf("create %s: %w", dest, err)
	}
	// Not query_only, which refuses VACUUM INTO; nothing here writes to
	// the database.
	src, err := openPool(ctx, path, 1, "")
	if err != nil {
		return BackupInfo{}, err
	}
	defer func() { _ = src.Close() }()
	var tables int
	if err := src.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&tables); err != nil {
		return BackupInfo{}, fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	if tables == 0 {
		return BackupInfo{}, fmt.Errorf("%s is not a responder database (it has no schema_migrations table)", filepath.Base(path))
	}
	if _, err := src.ExecContext(ctx, `VACUUM INTO ?`, dest); err != nil {
		return BackupInfo{}, fmt.Errorf("copy: %w", err)
	}
	return checkCopy(ctx, dest)
}

// checkCopy verifies a copy's integrity, reads what BackupInfo reports and
// fsyncs the file and its directory.
func checkCopy(ctx context.Context, dest string) (BackupInfo, error) {
	db, err := openPool(ctx, dest, 1, "", "query_only(1)")
	if err != nil {
		return BackupInfo{}, err
	}
	defer func() { _ = db.Close() }()
	var ok string
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check(1)`).Scan(&ok); err != nil {
		return BackupInfo{}, fmt.Errorf("check the copy: %w", err)
	}
	if ok != "ok" {
		return BackupInfo{}, fmt.Errorf("the copy fails SQLite's integrity check: %s", ok)
	}
	var info BackupInfo
	if err := db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM schema_migrations), (SELECT count(*) FROM notifications)`).Scan(&info.Migrations, &info.Notifications); err != nil {
		return BackupInfo{}, fmt.Errorf("read the copy: %w", err)
	}
	f, err := os.OpenFile(dest, os.O_RDWR, 0) //nolint:gosec // G304: the file the operator asked for.
	if err != nil {
		return BackupInfo{}, err
	}
	st, err := f.Stat()
	if err == nil {
		info.Bytes = st.Size()
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return BackupInfo{}, fmt.Errorf("flush the copy: %w", err)
	}
	if dir, err := os.Open(filepath.Dir(dest)); err == nil {
		_ = dir.Sync() // best effort: some file systems refuse to sync a directory
		_ = dir.Close()
	}
	return info, nil
}
