package sqlite

import (
	"errors"
	"fmt"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// The page caches of one store's connections (PRAGMA cache_size, in KiB).
// The readers' are small because the OS page cache holds the file anyway;
// the writer's is the one that saves work (see Open and OpenWriter).
//
// Two reader connections, not four: each keeps its own copy of the schema,
// of every statement prepared on the pool and of its lookaside memory
// (about 270 KB besides its page cache), and the reads are short (probes,
// API pages, metrics). Peak RSS at saturation was lower in 7 of 8 paired
// runs (median 61.9 against 63.3 MB) with no difference in CPU per request
// (docs/benchmarks.md).
const (
	readers        = 2
	readerCacheKiB = 512
	writerCacheKiB = 1024
	ckptCacheKiB   = 128
)

// pageCacheErr says why SQLite's page caches are not in the one buffer of
// configurePageCache (nil when they are). Open logs it.
var pageCacheErr = configurePageCache()

// pageHeaderSize is what SQLite needs besides the page itself for each
// cached page, in bytes (SQLITE_CONFIG_PCACHE_HDRSZ).
var pageHeaderSize int32

// configurePageCache gives SQLite one buffer of page-sized slots for the
// page caches of all its connections (SQLITE_CONFIG_PAGECACHE), as large as
// the caches of one store's connections. SQLite asks 4,368 bytes for each
// cached page (a 4 KiB page and its headers), and the allocator of
// modernc.org/sqlite serves that from an 8 KiB slot: the caches' 3.3 MB
// (with four readers then) took about 7 MB of memory at saturation. In the buffer a page takes its
// 4,368 bytes; when the buffer is full (several stores in one process, as
// in the tests, or pages larger than 4 KiB) SQLite falls back to its
// allocator. Peak RSS at saturation went down by about 3 MB (three paired
// runs, 67.4-67.8 -> 64.6-64.8 MB; docs/benchmarks.md), and 0.9 MB more is
// resident at idle (SQLite threads its free list through the slots).
//
// It must run before SQLite initialises, which modernc.org/sqlite does on
// the first open of a database: so from a package variable, which Go
// initialises before anything in the program can open one. The buffer is
// never freed: SQLite keeps it for the life of the process. Its pages are
// touched only when SQLite initialises (it threads its free list through
// the slots then), so a process that never opens a SQLite database, such as
// responder on PostgreSQL, has only the address space reserved.
func configurePageCache() error {
	tls := libc.NewTLS()
	defer tls.Close()
	args := libc.Xmalloc(tls, 3*8) // a va_list of three 8-byte values
	if args == 0 {
		return errors.New("out of memory for the arguments")
	}
	defer libc.Xfree(tls, args)
	// SQLITE_CONFIG_PCACHE_HDRSZ writes an int: the headers' bytes per
	// page. A package variable, which never moves, receives it.
	hdrsz := uintptr(unsafe.Pointer(&pageHeaderSize)) //nolint:gosec // G103: SQLite's C API writes the result through a pointer.
	if rc := sqlite3.Xsqlite3_config(tls, sqlite3.SQLITE_CONFIG_PCACHE_HDRSZ, libc.VaList(args, hdrsz)); rc != sqlite3.SQLITE_OK {
		return fmt.Errorf("SQLITE_CONFIG_PCACHE_HDRSZ: SQLite error %d", rc)
	}
	hdr := uint32(max(pageHeaderSize, 0))
	if hdr == 0 || hdr > 1<<16 {
		return fmt.Errorf("SQLite reports %d bytes of headers per cached page", pageHeaderSize)
	}
	const page = 4096 // SQLite's default page size, and responder's
	slot := (page + hdr + 7) &^ 7
	n := (writerCacheKiB + readers*readerCacheKiB + ckptCacheKiB) << 10 / slot
	buf := libc.Xmalloc(tls, uint64(slot)*uint64(n))
	if buf == 0 {
		return fmt.Errorf("out of memory for %d page slots", n)
	}
	// va_arg reads each of the three as an 8-byte value: the buffer, the
	// size of a slot and their number.
	if rc := sqlite3.Xsqlite3_config(tls, sqlite3.SQLITE_CONFIG_PAGECACHE, libc.VaList(args, buf, slot, n)); rc != sqlite3.SQLITE_OK {
		libc.Xfree(tls, buf)
		return fmt.Errorf("SQLITE_CONFIG_PAGECACHE: SQLite error %d (already initialised?)", rc)
	}
	return nil
}
