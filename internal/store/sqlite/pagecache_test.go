package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/responder/responder/internal/store"
)

// statusCurrent and statusHighwater receive sqlite3_status64; package
// variables never move, so SQLite may write to them.
var statusCurrent, statusHighwater int64

// sqliteStatus returns SQLite's counter op (SQLITE_STATUS_*): its current
// value and its high-water mark.
func sqliteStatus(t *testing.T, op int32) (current, highwater int64) {
	t.Helper()
	tls := libc.NewTLS()
	defer tls.Close()
	cur, hi := uintptr(unsafe.Pointer(&statusCurrent)), uintptr(unsafe.Pointer(&statusHighwater)) //nolint:gosec // G103: SQLite's C API writes through pointers.
	rc := sqlite3.Xsqlite3_status64(tls, op, cur, hi, 0)
	require.Equal(t, int32(sqlite3.SQLITE_OK), rc)
	return statusCurrent, statusHighwater
}

// The page caches take their pages from the one buffer of
// configurePageCache, at 4,368 bytes each, not from 8 KiB slots of the
// allocator: a store that fills its writer's cache takes slots of the
// buffer, and a page goes to the allocator only when the buffer is full.
// Without the buffer SQLite counts no slot in use, so this fails.
func TestPageCache_PagesComeFromTheSharedBuffer(t *testing.T) {
	require.NoError(t, pageCacheErr)
	require.Positive(t, pageHeaderSize)
	require.Less(t, pageHeaderSize, int32(1024), "SQLite's headers per cached page are a few hundred bytes")

	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "responder.db"), store.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	before, _ := sqliteStatus(t, sqlite3.SQLITE_STATUS_PAGECACHE_USED)
	// About 2 MB of rows: more pages than the writer's cache holds.
	_, err = db.DB().ExecContext(ctx, `CREATE TABLE filler (id INTEGER PRIMARY KEY, v TEXT)`)
	require.NoError(t, err)
	row := strings.Repeat("x", 1000)
	for i := range 40 {
		var b strings.Builder
		b.WriteString("INSERT INTO filler (v) VALUES ")
		for j := range 50 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "('%d%s')", i*50+j, row)
		}
		_, err := db.DB().ExecContext(ctx, b.String())
		require.NoError(t, err)
	}
	used, _ := sqliteStatus(t, sqlite3.SQLITE_STATUS_PAGECACHE_USED)
	require.Greater(t, used-before, int64(100), "pages cached by this store come from the buffer (slots in use)")
	size, _ := sqliteStatus(t, sqlite3.SQLITE_STATUS_PAGECACHE_SIZE)
	require.LessOrEqual(t, size, int64(4096)+int64(pageHeaderSize), "the largest page cache request fits a slot")
}
