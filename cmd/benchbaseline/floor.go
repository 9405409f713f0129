package main

// The floor (--floor.storage-path): the cheapest durable Alertmanager webhook
// receiver. It decodes what responder decodes before it commits
// (incident.DecodeIdentity), compresses the body with S2 as responder stores
// it, and commits one row per request to SQLite, on connections opened and
// checkpointed as responder's store does (sqlite.OpenWriter, Checkpoint), in
// a group commit of whatever is queued, before it answers 200. There is nothing
// else: no authentication, no middleware, no metrics, no duplicate
// detection, no incidents.
//
// Its ratio to the baseline is what durability alone costs on the machine;
// the gap between it and responder is what responder's other work costs.
// Its p99 at a given rate is the floor of any receiver built this way there.

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store/sqlite"
)

// maxBatch bounds a group commit, as responder's store does by default.
const maxBatch = 256

// floor is the receiver: requests hand their row to one writer goroutine,
// which commits whatever is queued in one transaction.
type floor struct {
	w, ckpt *sql.DB
	file    *os.File // for the checkpointer (sqlite.OpenSyncFile)
	queue   chan row
	// mu is held for each commit, and by the checkpointer's last pass, as
	// responder's write gate is (sqlite.Checkpoint).
	mu sync.Mutex
}

type row struct {
	groupKey string
	payload  []byte
	done     chan error
}

func openFloor(ctx context.Context, path string) (*floor, error) {
	w, ckpt, err := sqlite.OpenWriter(ctx, path)
	if err != nil {
		return nil, err
	}
	if _, err := w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS notifications (
		id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL, group_key TEXT NOT NULL, payload BLOB NOT NULL)`); err != nil {
		// The create error is the one to report.
		_ = w.Close()
		_ = ckpt.Close()
		return nil, fmt.Errorf("create table: %w", err)
	}
	file, err := sqlite.OpenSyncFile(path)
	if err != nil {
		// The open error is the one to report.
		_ = w.Close()
		_ = ckpt.Close()
		return nil, err
	}
	return &floor{w: w, ckpt: ckpt, file: file, queue: make(chan row, maxBatch)}, nil
}

func (f *floor) close() {
	_ = f.w.Close()
	_ = f.ckpt.Close()
	_ = f.file.Close() // last (see sqlite.OpenSyncFile)
}

// run is the writer: it commits the queued rows, up to maxBatch at a time,
// and answers each with the commit's outcome.
func (f *floor) run(ctx context.Context) {
	batch := make([]row, 0, maxBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-f.queue:
			batch = append(batch[:0], r)
		}
	more:
		for len(batch) < maxBatch {
			select {
			case r := <-f.queue:
				batch = append(batch, r)
			default:
				break more
			}
		}
		f.mu.Lock()
		err := f.commit(context.WithoutCancel(ctx), batch)
		f.mu.Unlock()
		for _, r := range batch {
			r.done <- err
		}
	}
}

// pause holds the writer off for the checkpointer (sqlite.Checkpoint).
func (f *floor) pause(context.Context) (resume func(), _ error) {
	f.mu.Lock()
	return f.mu.Unlock, nil
}

func (f *floor) commit(ctx context.Context, batch []row) error {
	tx, err := f.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO notifications (received_at, group_key, payload) VALUES (?, ?, ?)`)
	if err != nil {
		return err
	}
	now := time.Now().UnixNano()
	for _, r := range batch {
		if _, err := stmt.ExecContext(ctx, now, r.groupKey, r.payload); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// ServeHTTP answers every path: POST bodies are committed, anything else is
// healthy, so that the benchmark can poll any URL for readiness.
func (f *floor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, ok := readPost(w, r)
	if !ok {
		return
	}
	m, err := incident.DecodeIdentity(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	done := make(chan error, 1)
	select {
	case f.queue <- row{groupKey: m.GroupKey, payload: s2.Encode(nil, body), done: done}:
	case <-r.Context().Done():
		return
	}
	if err := <-done; err != nil {
		http.Error(w, "commit: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	// A failed write means the client went away; there is no one left to tell.
	_, _ = fmt.Fprintf(w, `{"status":"success","alerts":%d}`+"\n", len(m.Alerts))
}
