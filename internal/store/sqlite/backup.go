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

// backupCopied runs between the copy's check and its link to dest: tests
// make a file appear at dest there.
var backupCopied = func(dest string) {}

// Backup writes a consistent copy of the database at path to dest (a new
// file: it must not exist), then checks the copy and flushes it to disk. It
// may run while responder serves the database: the copy is one read
// snapshot (SQLite's VACUUM INTO), the WAL's commits included, and the
// writer is not held back (a long copy only delays the checkpoints, which
// wait for the snapshot to end). Copying responder.db alone, or it and its
// WAL one after the other, can give a file that misses or tears commits.
//
// The copy is written and checked in a directory of its own beside dest,
// readable by its owner alone, and is then linked to dest, which fails if
// dest exists: dest is never a partial copy, never overwritten, and no
// other user can swap a file of theirs in under the name between the
// checks and the copy (in a directory that others may write to). The copy
// has backupMode, whatever the umask.
func Backup(ctx context.Context, path, dest string) (info BackupInfo, err error) {
	// SQLite would create a missing file, and an empty copy of it.
	if _, err := os.Stat(path); err != nil {
		return BackupInfo{}, fmt.Errorf("database: %w", err)
	}
	exists := func() error { return fmt.Errorf("%s already exists: a backup is written to a new file", dest) }
	// Early, for a clear error before a long copy; the link at the end is
	// what makes it so. Lstat: a symbolic link is not followed.
	if _, err := os.Lstat(dest); err == nil {
		return BackupInfo{}, exists()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return BackupInfo{}, err
	}
	work, err := os.MkdirTemp(filepath.Dir(dest), ".responder-backup-") // 0700
	if err != nil {
		return BackupInfo{}, fmt.Errorf("create a work directory beside %s: %w", dest, err)
	}
	defer func() { _ = os.RemoveAll(work) }() // the copy, once linked, lives on under dest
	tmp := filepath.Join(work, "copy.db")
	// The copy is created here, empty, so that it is never readable by
	// others: VACUUM INTO would create it with SQLite's mode (0644 less the
	// umask). SQLite writes into an existing file if it is empty.
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, backupMode) //nolint:gosec // G304: in the directory just created.
	if err != nil {
		return BackupInfo{}, err
	}
	// The umask may have taken the owner's write permission away, which
	// SQLite needs; this gives nothing to anyone else.
	err = f.Chmod(backupMode)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return BackupInfo{}, fmt.Errorf("create the copy: %w", err)
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
	if _, err := src.ExecContext(ctx, `VACUUM INTO ?`, tmp); err != nil {
		return BackupInfo{}, fmt.Errorf("copy: %w", err)
	}
	if info, err = checkCopy(ctx, tmp); err != nil {
		return BackupInfo{}, err
	}
	backupCopied(dest)
	// link(2) refuses an existing dest, a symbolic link included.
	if err := os.Link(tmp, dest); errors.Is(err, fs.ErrExist) {
		return BackupInfo{}, exists()
	} else if err != nil {
		return BackupInfo{}, fmt.Errorf("name the copy %s: %w", dest, err)
	}
	if dir, err := os.Open(filepath.Dir(dest)); err == nil {
		_ = dir.Sync() // best effort: some file systems refuse to sync a directory
		_ = dir.Close()
	}
	return info, nil
}

// checkCopy verifies a copy's integrity, reads what BackupInfo reports and
// fsyncs the file.
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
	return info, nil
}
