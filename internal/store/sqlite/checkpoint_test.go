package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// A writer that commits back to back never begins a transaction with the
// whole WAL copied, unless the checkpointer's last pass pauses it: only then
// does the WAL start over (its header's checkpoint sequence moves on)
// instead of growing for as long as the writes go on.
func TestCheckpoint_RewindsTheWALUnderBackToBackCommits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "w.db")
	w, ckpt, err := OpenWriter(ctx, path)
	require.NoError(t, err)
	file, err := OpenSyncFile(path)
	require.NoError(t, err)
	defer func() {
		require.NoError(t, w.Close())
		require.NoError(t, ckpt.Close())
		require.NoError(t, file.Close()) // last (see OpenSyncFile)
	}()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	_, err = w.ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB NOT NULL)`)
	require.NoError(t, err)

	var (
		mu      sync.Mutex
		commits int
	)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			_, err := w.ExecContext(ctx, `INSERT INTO t (b) VALUES (randomblob(3000))`)
			commits++
			mu.Unlock()
			if err != nil {
				t.Error(err)
				return
			}
		}
	})
	pause := func(context.Context) (func(), error) {
		mu.Lock()
		return mu.Unlock, nil
	}
	// The writer is stopped (deferred above) before the database closes.
	// Let the writer get going, so that the WAL has frames to copy.
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return commits >= 20 }, 10*time.Second, time.Millisecond)
	for i := range 5 {
		seq := walCheckpointSeq(t, path)
		require.NoError(t, checkpointOnce(ctx, ckpt, file, nil, pause))
		mu.Lock()
		before := commits
		mu.Unlock()
		// The writer's next commit starts the WAL over.
		require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return commits > before+1 }, 10*time.Second, time.Millisecond)
		require.NotEqual(t, seq, walCheckpointSeq(t, path), "checkpoint %d: the WAL did not start over while the writer committed back to back", i+1)
	}
}

// walCheckpointSeq is the checkpoint sequence number in the header of the
// database's WAL file: SQLite moves it on each time the WAL starts over.
func walCheckpointSeq(t *testing.T, db string) uint32 {
	t.Helper()
	f, err := os.Open(db + "-wal") //nolint:gosec // G304: the test's own database in its temp dir.
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	hdr := make([]byte, 16)
	_, err = f.ReadAt(hdr, 0)
	require.NoError(t, err)
	return binary.BigEndian.Uint32(hdr[12:16])
}

// The paused pass flushes the database file before SQLite counts the frames
// as copied, and the passes before it flush nothing while the writer goes
// on: so the file is flushed before the writer is paused, and the pause
// only waits for what was copied since. A flush that fails pauses nothing.
func TestCheckpoint_FlushesTheFileBeforePausingTheWriter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "w.db")
	w, ckpt, err := OpenWriter(ctx, path)
	require.NoError(t, err)
	defer func() { require.NoError(t, w.Close()); require.NoError(t, ckpt.Close()) }()
	_, err = w.ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB NOT NULL)`)
	require.NoError(t, err)
	_, err = w.ExecContext(ctx, `INSERT INTO t (b) VALUES (randomblob(3000))`)
	require.NoError(t, err)

	var events []string
	pause := func(context.Context) (func(), error) {
		events = append(events, "pause")
		return func() { events = append(events, "resume") }, nil
	}
	file := &recordingSyncer{events: &events}
	require.NoError(t, checkpointOnce(ctx, ckpt, file, nil, pause))
	require.Equal(t, []string{"sync", "pause", "resume"}, events)

	events = nil
	file.err = errors.New("disk gone")
	_, err = w.ExecContext(ctx, `INSERT INTO t (b) VALUES (randomblob(3000))`)
	require.NoError(t, err)
	err = checkpointOnce(ctx, ckpt, file, nil, pause)
	require.ErrorContains(t, err, "disk gone")
	require.Equal(t, []string{"sync"}, events, "the writer was paused although the flush failed")
}

type recordingSyncer struct {
	events *[]string
	err    error
}

func (r *recordingSyncer) Sync() error {
	*r.events = append(*r.events, "sync")
	return r.err
}

// A checkpoint that keeps failing, one a second, is logged when it starts
// failing, then at most once a minute with the count, and once when
// checkpoints work again: not on every attempt.
func TestCheckpoint_LogsFailuresOnceAMinute(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		ckpt := walWithFrames(t, ctx)

		var failing atomic.Bool
		failing.Store(true)
		pause := func(context.Context) (func(), error) {
			if failing.Load() {
				return nil, errors.New("writer gone")
			}
			return func() {}, nil
		}
		logs, wait := runCheckpoint(ctx, ckpt, pause)
		// 150 checkpoints fail, at 1s, 2s, ... 150s; the 151st works.
		time.Sleep(150*time.Second + checkpointEvery/2)
		synctest.Wait()
		failing.Store(false)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		cancel()
		wait()

		require.Equal(t, []string{
			`level=WARN msg="wal checkpoint failed, will retry every second; the wal grows until one works" err="pause the writer: writer gone"`,
			`level=WARN msg="wal checkpoint still failing" failing_for=1m0s failed_checkpoints=61 err="pause the writer: writer gone"`,
			`level=WARN msg="wal checkpoint still failing" failing_for=2m0s failed_checkpoints=121 err="pause the writer: writer gone"`,
			`level=INFO msg="wal checkpoints work again" failing_for=2m30s failed_checkpoints=150`,
		}, strings.Split(strings.TrimSpace(logs.String()), "\n"))
	})
}

// On a disk so slow that every paused pass holds the writer back, the
// warning comes once a minute with a count, not every second.
func TestCheckpoint_LogsSlowPausesOnceAMinute(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		ckpt := walWithFrames(t, ctx)

		// Each pause holds the writer for 200 ms (the resume comes late).
		pause := func(context.Context) (func(), error) {
			return func() { time.Sleep(2 * slowPause) }, nil
		}
		logs, wait := runCheckpoint(ctx, ckpt, pause)
		time.Sleep(150 * time.Second)
		synctest.Wait()
		cancel()
		wait()

		lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
		require.Len(t, lines, 3, "at 0, 1 and 2 minutes: %s", logs.String())
		require.Equal(t, `level=WARN msg="the wal checkpoint held the writer back" took=200ms frames_left=0 slow_checkpoints=1 longest=200ms`, lines[0])
		require.Regexp(t, `slow_checkpoints=(59|60|61) longest=200ms$`, lines[1])
	})
}

// walWithFrames opens a database's writer and checkpoint pools, closed when
// the test ends, and commits a table, so that the WAL has frames and every
// checkpoint goes on to pause the writer. It returns the checkpoint pool.
func walWithFrames(t *testing.T, ctx context.Context) *sql.DB { //nolint:revive // context-as-argument: t first, as in every test helper.
	t.Helper()
	w, ckpt, err := OpenWriter(ctx, filepath.Join(t.TempDir(), "w.db"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Close()); require.NoError(t, ckpt.Close()) })
	_, err = w.ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY)`)
	require.NoError(t, err)
	return ckpt
}

// runCheckpoint runs Checkpoint until ctx is cancelled, logging text lines
// without their time to logs; wait returns once it has stopped.
func runCheckpoint(ctx context.Context, ckpt *sql.DB, pause func(context.Context) (func(), error)) (logs *bytes.Buffer, wait func()) {
	logs = new(bytes.Buffer)
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		Checkpoint(ctx, ckpt, nil, logger, pause)
	}()
	return logs, func() { <-done }
}
