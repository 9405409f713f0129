package sqlite

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/responder/responder/internal/store"
)

// ErrInUse is the error of Open when another process holds the database.
var ErrInUse = errors.New("the database is in use by another responder")

// lockDatabase makes the database file at path this process's alone: an
// exclusive flock(2) on path+".lock", held until the returned file is
// closed (the kernel also drops it when the process dies, SIGKILL
// included). SQLite itself lets several processes share a file, and two
// responders on one file each applied and notified: the store's writer
// loop, its job leases and the Slack pacer assume one process (several
// replicas need PostgreSQL). The lock is a file of its own, not the
// database's, because closing any descriptor of the database drops the
// POSIX locks SQLite holds on it, and `responder backup` reads the
// database while responder runs. The file holds the holder's process ID,
// for the error of the next one.
func lockDatabase(path string) (*os.File, error) {
	if !store.SQLiteFileName(path) {
		return nil, nil //nolint:nilnil // not a file: nothing to lock.
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	name := path + ".lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600) //nolint:gosec // G304: beside the operator's storage.dsn.
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := flock(f); err != nil {
		holder := ""
		if b, rerr := io.ReadAll(io.LimitReader(f, 32)); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = fmt.Sprintf(" (process %d, as its lock file %s says)", pid, filepath.Base(name))
			}
		}
		_ = f.Close() // the lock's error is the one to report
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w%s: SQLite storage takes one responder at a time; stop the other one, or use PostgreSQL (storage.dsn: postgres://...) for several replicas", path, ErrInUse, holder)
		}
		return nil, fmt.Errorf("lock %s: %w", filepath.Base(name), err)
	}
	// Best effort: the process ID only makes the next one's error clearer.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// flock takes an exclusive lock on f without waiting, retrying when a
// signal interrupts the call.
func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) //nolint:gosec // G115: a descriptor fits an int.
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
