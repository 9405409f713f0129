package app

import (
	"context"
	"fmt"

	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/postgres"
	"github.com/responder/responder/internal/store/sqlite"
)

// storage is the opened storage engine: the shared Store, run and closed
// through its engine (SQLite runs a WAL checkpointer beside the writer
// loop; PostgreSQL runs the writer loop alone).
type storage struct {
	*store.Store
	engine interface {
		Run(ctx context.Context) error
		Close() error
	}
	// walBytes is the size of SQLite's WAL file; nil on other engines.
	walBytes func() (int64, error)
	// failed reports whether a job handler's error is the storage's own
	// failure (a full disk, a lost connection), which the job pipelines
	// count as no attempt.
	failed func(error) bool
}

// Run runs the engine until ctx is cancelled.
func (s *storage) Run(ctx context.Context) error { return s.engine.Run(ctx) }

// Close closes the engine.
func (s *storage) Close() error { return s.engine.Close() }

// openStorage opens and migrates the store named by dsn: a SQLite file, or
// a PostgreSQL database that several replicas may share.
func openStorage(ctx context.Context, dsn string, opts store.Options) (*storage, error) {
	driver, rest, err := store.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	switch driver {
	case "sqlite":
		db, err := sqlite.Open(ctx, rest, opts)
		if err != nil {
			return nil, fmt.Errorf("open storage: %w", err)
		}
		return &storage{Store: db.Store, engine: db, walBytes: db.WALBytes, failed: sqlite.Transient}, nil
	case "postgres":
		// Errors name the server and database, never the DSN (it may hold
		// a password).
		db, err := postgres.Open(ctx, rest, opts)
		if err != nil {
			return nil, fmt.Errorf("open storage: %w", err)
		}
		return &storage{Store: db.Store, engine: db, failed: postgres.Failed}, nil
	default:
		return nil, fmt.Errorf("storage.dsn: %s storage is not available in this version", driver)
	}
}
