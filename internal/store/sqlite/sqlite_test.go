package sqlite_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/sqlite"
	"github.com/responder/responder/internal/store/storetest"
)

func open(t *testing.T, c *storetest.Clock, setup func(*store.Store)) *store.Store {
	t.Helper()
	return openOpts(t, store.Options{Now: c.Now}, setup).Store
}

// openOpts opens a new database with opts, calls setup, and runs it until
// the test ends.
func openOpts(t *testing.T, opts store.Options, setup func(*store.Store)) *sqlite.DB {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "responder.db"), opts, setup)
}

// openAt is openOpts with the database at path.
func openAt(t *testing.T, path string, opts store.Options, setup func(*store.Store)) *sqlite.DB {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db, err := sqlite.Open(ctx, path, opts)
	require.NoError(t, err)
	if setup != nil {
		setup(db.Store)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = db.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		require.NoError(t, db.Close())
	})
	return db
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, open)
}

func TestSQLite_Reopen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "responder.db")
	ctx := context.Background()
	db, err := sqlite.Open(ctx, path, store.Options{})
	require.NoError(t, err)
	require.NoError(t, db.Close())
	db, err = sqlite.Open(ctx, path, store.Options{})
	require.NoError(t, err, "reopening a migrated database works")
	require.NoError(t, db.Close())
}

// holdEnv names the database that the test binary, started again by
// TestSQLite_OneResponderAtATime, opens and holds until it is killed.
const holdEnv = "RESPONDER_TEST_HOLD_DATABASE"

func holdDatabase(path string) {
	db, err := sqlite.Open(context.Background(), path, store.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("open")
	time.Sleep(time.Minute)
	_ = db.Close() // not reached: the test kills this process
	os.Exit(1)
}

// Two responders on one SQLite file each applied and notified: a second
// Open, in this process or another, is refused until the first is closed
// or its process is gone (SIGKILL included), and changes nothing.
func TestSQLite_OneResponderAtATime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "data", "responder.db")
	db, err := sqlite.Open(ctx, path, store.Options{})
	require.NoError(t, err)
	_, err = sqlite.Open(ctx, path, store.Options{})
	require.ErrorIs(t, err, sqlite.ErrInUse)
	require.ErrorContains(t, err, fmt.Sprintf("(process %d, as its lock file responder.db.lock says)", os.Getpid()))
	require.ErrorContains(t, err, "use PostgreSQL")
	require.NoError(t, db.Close())
	db, err = sqlite.Open(ctx, path, store.Options{})
	require.NoError(t, err, "a closed database opens again")
	require.NoError(t, db.Close())

	// Another process holds it, then is killed.
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$") //nolint:gosec // G204: the test binary itself.
	cmd.Env = append(os.Environ(), holdEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "open\n", line)
	before, err := os.ReadFile(path) //nolint:gosec // G304: the test's temp file.
	require.NoError(t, err)
	_, err = sqlite.Open(ctx, path, store.Options{})
	require.ErrorIs(t, err, sqlite.ErrInUse)
	require.ErrorContains(t, err, fmt.Sprintf("(process %d,", cmd.Process.Pid))
	after, err := os.ReadFile(path) //nolint:gosec // G304: the test's temp file.
	require.NoError(t, err)
	require.Equal(t, before, after, "a refused Open leaves the file alone")
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait() // killed: its error says so
	db, err = sqlite.Open(ctx, path, store.Options{})
	require.NoError(t, err, "the kernel dropped the killed process's lock")
	require.NoError(t, db.Close())
}

// Deferred applies commit at synchronous=NORMAL; the writer connection is
// back at FULL for everything else, so a 200 still means fsynced.
func TestSQLite_LazyApplyRestoresFullSync(t *testing.T) {
	t.Parallel()
	c := storetest.NewClock()
	s := open(t, c, func(s *store.Store) { s.SetDeferApply(true) })
	ctx := context.Background()
	m := storetest.Payload(t, "am_v4_firing.json")
	raw, err := json.Marshal(m)
	require.NoError(t, err)
	_, err = s.Accept(ctx, incident.Delivery{Message: m, Raw: raw, ReceivedAt: c.Now()})
	require.NoError(t, err)
	require.NoError(t, s.Settle(ctx))
	counts, err := s.NotificationCounts(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, counts[incident.NotificationProcessed], "the writer loop applied the deferred delivery")
	var level int
	require.NoError(t, s.DB().QueryRowContext(ctx, "PRAGMA synchronous").Scan(&level))
	require.Equal(t, 2, level, "synchronous=FULL after a lazy apply")
}

func TestMain(m *testing.M) {
	if path := os.Getenv(holdEnv); path != "" {
		holdDatabase(path)
		return
	}
	goleak.VerifyTestMain(m)
}

// Stats counts the ingest backlog (pending notifications, which have no job
// rows) apart from the jobs, with the age of its oldest notification. The
// writer loop does not run here, so nothing is applied meanwhile.
func TestSQLite_StatsCountsPendingNotifications(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := storetest.NewClock()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "responder.db"), store.Options{Now: c.Now})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	st, err := db.Stats(ctx)
	require.NoError(t, err)
	require.Zero(t, st.Pending)
	require.Zero(t, st.OldestPending)

	now := c.Now()
	for _, n := range []struct {
		status string
		age    time.Duration
	}{
		{incident.NotificationProcessed, 300 * time.Second}, // applied: not backlog
		{incident.NotificationRetry, 200 * time.Second},     // failed once: an ingest job counts it
		{incident.NotificationPending, 90 * time.Second},
		{incident.NotificationDuplicate, 50 * time.Second},
		{incident.NotificationPending, 10 * time.Second},
	} {
		_, err := db.DB().ExecContext(ctx, `INSERT INTO notifications (received_at, group_key, state_hash, status, receiver, alerts, payload)
			VALUES (?, 'g', ?, ?, 'r', 1, x'00')`, now.Add(-n.age).UnixNano(), n.status+n.age.String(), n.status)
		require.NoError(t, err)
	}
	st, err = db.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, st.Pending)
	require.Equal(t, 90*time.Second, st.OldestPending)
	require.Zero(t, st.ByState[incident.JobQueued], "pending notifications are not jobs")
}

// The writer's page cache is 1 MiB (see OpenWriter): SQLite's default of
// 2 MiB took about 4 MB of RSS in modernc.org/sqlite's allocator.
func TestSQLite_WriterPageCacheIsOneMebibyte(t *testing.T) {
	t.Parallel()
	s := open(t, storetest.NewClock(), nil)
	var size int
	require.NoError(t, s.DB().QueryRowContext(context.Background(), "PRAGMA cache_size").Scan(&size))
	require.Equal(t, -1024, size, "negative: KiB")
}
