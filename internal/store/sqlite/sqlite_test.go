package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/sqlite"
	"github.com/responder/responder/internal/store/storetest"
)

func open(t *testing.T, c *storetest.Clock, setup func(*store.Store)) *store.Store {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "responder.db"), store.Options{Now: c.Now})
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
	return db.Store
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

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
