package postgres_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/postgres"
	"github.com/responder/responder/internal/store/storetest"
	"github.com/responder/responder/internal/testenv"
)

// fillPool makes the pool open n connections and use each of them twice,
// as a busy replica does, so that all of them sit idle in it afterwards,
// used less than a second ago.
func fillPool(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	for range 2 {
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				_, err := db.ExecContext(t.Context(), `SELECT pg_sleep(0.05)`)
				require.NoError(t, err)
			})
		}
		wg.Wait()
	}
	require.Equal(t, n, db.Stats().Idle)
}

// terminateBackends ends every other session on dsn's database, as an
// operator's pg_terminate_backend, a failover or a pooler's restart does,
// and waits until they are gone.
func terminateBackends(t *testing.T, dsn string) int {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	require.NoError(t, err)
	admin := stdlib.OpenDB(*cfg)
	defer func() { require.NoError(t, admin.Close()) }()
	const others = `FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`
	var n int
	require.NoError(t, admin.QueryRowContext(t.Context(), `SELECT count(pg_terminate_backend(pid)) `+others).Scan(&n))
	require.Eventually(t, func() bool {
		var left int
		require.NoError(t, admin.QueryRowContext(t.Context(), `SELECT count(*) `+others).Scan(&left))
		return left == 0
	}, 10*time.Second, 10*time.Millisecond)
	return n
}

// TestPostgres_TerminatedConnections ends every connection of a store's
// pool on the server (pg_terminate_backend: an operator, a failover, a
// pooler's restart) while the pool holds them, each used less than a
// second ago, so that pgx does not ping it before reuse: the store does not
// know they are dead. No notification sent afterwards is refused: a BEGIN
// that finds its connection ended is begun again on another. Once one dead
// connection is found, every connection is pinged before reuse for a
// while, so that at most the statement that found the first fails (one
// outside a transaction cannot be sent again: it may have run). Before,
// each dead connection failed the first transaction or statement given to
// it: 19 of 40 notifications were refused (503 for Alertmanager), 10 of 40
// claims and 20 of 40 reads failed, after a pool of 20 was ended.
func TestPostgres_TerminatedConnections(t *testing.T) {
	t.Parallel()
	m := storetest.Payload(t, "am_v4_firing.json")
	tests := []struct {
		name      string
		do        func(t *testing.T, s *store.Store, c *storetest.Clock, i int) error
		maxFailed int
	}{
		{"notifications are accepted", func(t *testing.T, s *store.Store, c *storetest.Clock, i int) error {
			m := *m
			m.GroupKey = fmt.Sprintf(`{}:{alertname="terminated-%d"}`, i)
			raw, err := json.Marshal(&m)
			require.NoError(t, err)
			_, err = s.Accept(t.Context(), incident.Delivery{Message: &m, Raw: raw, ReceivedAt: c.Now()})
			return err
		}, 0},
		{"jobs are claimed", func(t *testing.T, s *store.Store, _ *storetest.Clock, _ int) error {
			_, err := s.Claim(t.Context(), "w/0", 1, time.Minute, incident.JobRoute)
			return err
		}, 1},
		{"reads answer", func(t *testing.T, s *store.Store, _ *storetest.Clock, _ int) error {
			_, err := s.Stats(t.Context())
			return err
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dsn := testenv.StartPostgres(t)
			c := storetest.NewClock()
			s := openDSN(t, dsn, c, nil)
			fillPool(t, s.DB(), postgres.MaxConns)
			require.Equal(t, postgres.MaxConns, terminateBackends(t, dsn))
			const tries = 40
			failed := 0
			for i := range tries {
				if err := tt.do(t, s, c, i); err != nil {
					t.Logf("try %d: %v", i, err)
					require.True(t, postgres.Transient(err), "storage's own failure: %v", err)
					failed++
				}
			}
			t.Logf("%d of %d tries failed after the pool's connections were ended", failed, tries)
			require.LessOrEqual(t, failed, tt.maxFailed, "failures of %d tries after the pool's connections were ended", tries)
		})
	}
}
