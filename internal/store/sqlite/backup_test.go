package sqlite_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/sqlite"
	"github.com/responder/responder/internal/store/storetest"
)

// A backup taken while notifications are accepted holds every one that was
// answered before it began, opens as a responder database, and is written
// only to a new file.
func TestBackup_WhileAccepting(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := storetest.NewClock()
	path := filepath.Join(t.TempDir(), "responder.db")
	db := openAt(t, path, store.Options{Now: c.Now}, nil)
	m := storetest.Payload(t, "am_v4_firing_10.json")
	accept := func(i int) {
		m := *m
		m.GroupKey = "{}:{backup=\"" + strconv.Itoa(i) + "\"}"
		raw, err := json.Marshal(&m)
		require.NoError(t, err)
		_, err = db.Accept(ctx, incident.Delivery{Message: &m, Raw: raw, ReceivedAt: c.Now()})
		require.NoError(t, err)
	}
	const before = 200
	for i := range before {
		accept(i)
	}

	// Accepts go on, from 4 senders, while the copy is made.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				accept(1_000_000*(w+1) + i)
			}
		})
	}
	dest := filepath.Join(t.TempDir(), "copy.db")
	info, err := sqlite.Backup(ctx, path, dest)
	close(stop)
	wg.Wait()
	require.NoError(t, err)
	require.GreaterOrEqual(t, info.Notifications, int64(before))
	require.Positive(t, info.Migrations)
	st, err := os.Stat(dest)
	require.NoError(t, err)
	require.Equal(t, st.Size(), info.Bytes)

	// The copy opens as a store (no migration to run) and holds what the
	// backup counted.
	cp, err := sqlite.Open(ctx, dest, store.Options{})
	require.NoError(t, err)
	counts, err := cp.NotificationCounts(ctx)
	require.NoError(t, err)
	var total int64
	for _, n := range counts {
		total += int64(n)
	}
	require.Equal(t, info.Notifications, total)
	require.NoError(t, cp.Close())

	// A second backup to the same file is refused, and leaves it alone.
	st, err = os.Stat(dest)
	require.NoError(t, err)
	_, err = sqlite.Backup(ctx, path, dest)
	require.ErrorContains(t, err, "already exists")
	st2, err := os.Stat(dest)
	require.NoError(t, err)
	require.Equal(t, st.ModTime(), st2.ModTime())
}

// TestBackup_Mode: the copy holds every notification payload, so only its
// owner may read it: it is created 0600, whatever the umask (here none at
// all, under which SQLite creates its files 0644), and no journal or WAL
// file is left beside it. Not parallel: the umask is the process's.
func TestBackup_Mode(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "responder.db")
	db := openAt(t, path, store.Options{}, nil)
	m := storetest.Payload(t, "am_v4_firing_10.json")
	raw, err := json.Marshal(m)
	require.NoError(t, err)
	_, err = db.Accept(ctx, incident.Delivery{Message: m, Raw: raw, ReceivedAt: storetest.NewClock().Now()})
	require.NoError(t, err)

	dir := t.TempDir()
	dest := filepath.Join(dir, "copy.db")
	info, err := sqlite.Backup(ctx, path, dest)
	require.NoError(t, err)
	require.Equal(t, int64(1), info.Notifications)
	st, err := os.Stat(dest)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o600), st.Mode().Perm())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "only the copy: %v", entries)
}

func TestBackup_Refuses(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()

	// A missing database is not created.
	missing := filepath.Join(dir, "missing.db")
	_, err := sqlite.Backup(ctx, missing, filepath.Join(dir, "a.db"))
	require.ErrorContains(t, err, "database:")
	require.NoFileExists(t, missing)
	require.NoFileExists(t, filepath.Join(dir, "a.db"))

	// A file that is not responder's leaves no copy behind.
	other := filepath.Join(dir, "other.db")
	require.NoError(t, os.WriteFile(other, nil, 0o600))
	_, err = sqlite.Backup(ctx, other, filepath.Join(dir, "b.db"))
	require.ErrorContains(t, err, "not a responder database")
	require.NoFileExists(t, filepath.Join(dir, "b.db"))

	// An existing file is not written to, even an empty one (which VACUUM
	// INTO would fill), nor is a symbolic link followed.
	empty := filepath.Join(dir, "empty.db")
	require.NoError(t, os.WriteFile(empty, nil, 0o644)) //nolint:gosec // G306: a mode that Backup must leave as it is.
	_, err = sqlite.Backup(ctx, other, empty)
	require.ErrorContains(t, err, "already exists")
	st, err := os.Stat(empty)
	require.NoError(t, err)
	require.Zero(t, st.Size())
	require.Equal(t, fs.FileMode(0o644), st.Mode().Perm(), "left as it was")
	link := filepath.Join(dir, "link.db")
	require.NoError(t, os.Symlink(filepath.Join(dir, "target.db"), link))
	_, err = sqlite.Backup(ctx, other, link)
	require.ErrorContains(t, err, "already exists")
	require.NoFileExists(t, filepath.Join(dir, "target.db"))

	// Nor does a file that is not SQLite.
	junk := filepath.Join(dir, "junk.db")
	require.NoError(t, os.WriteFile(junk, []byte("this is not a database, but it is long enough to have a header of 100 bytes......................"), 0o600))
	_, err = sqlite.Backup(ctx, junk, filepath.Join(dir, "c.db"))
	require.Error(t, err)
	require.NoFileExists(t, filepath.Join(dir, "c.db"))

	// No work directory is left by any of them.
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		require.NotContains(t, e.Name(), "responder-backup", "a work directory is left")
	}
}

// A file that appears at the destination while the copy is made (another
// user's, in a directory others may write to; or a second backup) is left
// as it is, and so is the file a symbolic link put there names: the copy is
// named dest only if nothing has that name, and no partial copy or work
// directory is left behind. Not parallel: the hook is the package's.
func TestBackup_DestinationTakenDuringTheCopy(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "responder.db")
	openAt(t, path, store.Options{}, nil)
	for _, tc := range []struct {
		name  string
		place func(dest, target string) error
	}{
		{"file", func(dest, _ string) error { return os.WriteFile(dest, []byte("theirs"), 0o600) }},
		{"symbolic link", func(dest, target string) error { return os.Symlink(target, dest) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dest, target := filepath.Join(dir, "copy.db"), filepath.Join(dir, "target.db")
			sqlite.SetBackupCopied(t.Cleanup, func(d string) {
				require.Equal(t, dest, d)
				require.NoError(t, tc.place(dest, target))
			})
			_, err := sqlite.Backup(ctx, path, dest)
			require.ErrorContains(t, err, "already exists")
			if b, err := os.ReadFile(dest); err == nil { //nolint:gosec // G304: the test's own file.
				require.Equal(t, "theirs", string(b), "left as it was")
			}
			require.NoFileExists(t, target)
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Len(t, entries, 1, "only what was placed there: %v", entries)
		})
	}
}

// The database file and its -wal and -shm hold every notification's
// payload: they are created readable by their owner only, whatever the
// umask (SQLite created them 0644 under umask 022).
func TestSQLite_FilesArePrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "data", "responder.db")
	db := openAt(t, path, store.Options{}, nil)
	m := storetest.Payload(t, "am_v4_firing.json")
	raw, err := json.Marshal(m)
	require.NoError(t, err)
	_, err = db.Accept(t.Context(), incident.Delivery{Message: m, Raw: raw, ReceivedAt: storetest.NewClock().Now()})
	require.NoError(t, err)
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(name)
		require.NoError(t, err)
		require.Equal(t, fs.FileMode(0o600), st.Mode().Perm(), name)
	}
}
