package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/postgres"
	"github.com/responder/responder/internal/store/storetest"
	"github.com/responder/responder/internal/testenv"
)

// The package's tests share one throwaway cluster; each gets a database.
func TestMain(m *testing.M) { goleak.VerifyTestMain(testenv.WithPostgres(m)) }

// run opens db's store and runs its writer loop until the test ends.
func run(t testing.TB, db *postgres.DB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
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
}

// openDSN opens a store on dsn with the clock c and runs it.
func openDSN(t *testing.T, dsn string, c *storetest.Clock, setup func(*store.Store)) *store.Store {
	t.Helper()
	db, err := postgres.Open(context.Background(), dsn, store.Options{Now: c.Now})
	require.NoError(t, err)
	if setup != nil {
		setup(db.Store)
	}
	run(t, db)
	return db.Store
}

func open(t *testing.T, c *storetest.Clock, setup func(*store.Store)) *store.Store {
	t.Helper()
	return openDSN(t, testenv.StartPostgres(t), c, setup)
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	storetest.Run(t, open)
}

func TestPostgres_Reopen(t *testing.T) {
	t.Parallel()
	dsn := testenv.StartPostgres(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, dsn, store.Options{})
	require.NoError(t, err)
	require.NoError(t, db.Close())
	db, err = postgres.Open(ctx, dsn, store.Options{})
	require.NoError(t, err, "reopening a migrated database works")
	require.NoError(t, db.Close())
}

// Payloads are compressed with lz4 (migration 0009) on a server that has it,
// as Debian's PostgreSQL 15 does.
func TestPostgres_PayloadCompression(t *testing.T) {
	t.Parallel()
	s := open(t, storetest.NewClock(), nil)
	var method string
	require.NoError(t, s.DB().QueryRowContext(context.Background(),
		`SELECT attcompression::text FROM pg_attribute WHERE attrelid = 'notifications'::regclass AND attname = 'payload'`).Scan(&method))
	require.Equal(t, "l", method, "notifications.payload uses lz4")
}

// TestPostgres_ConcurrentMigrations starts several stores on one empty
// database at once, as replicas starting together do: the migrations run
// once, and every store comes up.
func TestPostgres_ConcurrentMigrations(t *testing.T) {
	t.Parallel()
	dsn := testenv.StartPostgres(t)
	const replicas = 3
	dbs := make([]*postgres.DB, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() { dbs[i], errs[i] = postgres.Open(context.Background(), dsn, store.Options{}) })
	}
	wg.Wait()
	for i := range replicas {
		require.NoError(t, errs[i], "replica %d", i)
		defer func() { require.NoError(t, dbs[i].Close()) }()
	}
	var applied, distinct int
	require.NoError(t, dbs[0].DB().QueryRowContext(t.Context(), `SELECT count(*), count(DISTINCT name) FROM schema_migrations`).Scan(&applied, &distinct))
	require.Equal(t, distinct, applied, "each migration recorded once")
	require.GreaterOrEqual(t, applied, 6)
}

// TestPostgres_ClaimAcrossReplicas claims from several stores (replicas) on
// one database at once: every job is handed out, and to one owner only.
func TestPostgres_ClaimAcrossReplicas(t *testing.T) {
	t.Parallel()
	dsn := testenv.StartPostgres(t)
	c := storetest.NewClock()
	const (
		replicas = 3
		workers  = 4 // per replica
		jobs     = 600
	)
	stores := make([]*store.Store, replicas)
	for i := range stores {
		stores[i] = openDSN(t, dsn, c, nil)
	}
	ctx := t.Context()
	for i := range jobs {
		require.NoError(t, stores[i%replicas].Enqueue(ctx, "notify", int64(i+1), int64(i+1), nil))
	}
	var (
		mu      sync.Mutex
		owners  = map[int64][]string{}
		wg      sync.WaitGroup
		claimed int
	)
	for r, s := range stores {
		for w := range workers {
			owner := fmt.Sprintf("replica-%d/%d", r, w)
			wg.Go(func() {
				for {
					got, err := s.Claim(ctx, owner, 5, time.Minute, "notify")
					if err != nil {
						t.Error(err)
						return
					}
					if len(got) == 0 {
						return
					}
					mu.Lock()
					for _, j := range got {
						owners[j.ID] = append(owners[j.ID], owner)
					}
					claimed += len(got)
					mu.Unlock()
					for _, j := range got {
						if err := s.Complete(ctx, j); err != nil {
							t.Error(err)
						}
					}
				}
			})
		}
	}
	wg.Wait()
	require.Len(t, owners, jobs, "every job claimed")
	require.Equal(t, jobs, claimed, "no job claimed twice")
	for id, o := range owners {
		require.Len(t, o, 1, "job %d claimed by %v", id, o)
	}
	st, err := stores[0].Stats(ctx)
	require.NoError(t, err)
	require.Zero(t, st.ByState[incident.JobQueued]+st.ByState[incident.JobRunning])
}

// TestPostgres_ExpiredLeaseAcrossReplicas: a replica claims a job and dies
// (it never completes it); once the lease expires another replica takes it
// over, and the dead owner can no longer complete it.
func TestPostgres_ExpiredLeaseAcrossReplicas(t *testing.T) {
	t.Parallel()
	dsn := testenv.StartPostgres(t)
	c := storetest.NewClock()
	dead, alive := openDSN(t, dsn, c, nil), openDSN(t, dsn, c, nil)
	ctx := t.Context()
	require.NoError(t, dead.Enqueue(ctx, "notify", 1, 1, nil))
	got, err := dead.Claim(ctx, "dead/0", 10, 30*time.Second, "notify")
	require.NoError(t, err)
	require.Len(t, got, 1)

	none, err := alive.Claim(ctx, "alive/0", 10, 30*time.Second, "notify")
	require.NoError(t, err)
	require.Empty(t, none, "the lease holds")

	c.Advance(31 * time.Second)
	taken, err := alive.Claim(ctx, "alive/0", 10, 30*time.Second, "notify")
	require.NoError(t, err)
	require.Len(t, taken, 1, "the expired lease is taken over")
	require.Equal(t, got[0].ID, taken[0].ID)
	require.Equal(t, 2, taken[0].Attempts)

	require.NoError(t, dead.Complete(ctx, got[0]), "a late completion is ignored")
	running, err := alive.ListJobs(ctx, incident.JobFilter{State: incident.JobRunning, Limit: 0})
	require.NoError(t, err)
	require.Len(t, running, 1)
	require.NoError(t, alive.Complete(ctx, taken[0]))
	done, err := alive.ListJobs(ctx, incident.JobFilter{State: incident.JobDone, Limit: 0})
	require.NoError(t, err)
	require.Len(t, done, 1)
}

// TestPostgres_ConcurrentAccept sends the same deliveries to several
// replicas at once, as an Alertmanager HA pair does: each group gets one
// incident, each alert state one change, and exactly one copy of each
// delivery is new.
func TestPostgres_ConcurrentAccept(t *testing.T) {
	t.Parallel()
	dsn := testenv.StartPostgres(t)
	c := storetest.NewClock()
	const (
		replicas = 3
		groups   = 60
	)
	stores := make([]*store.Store, replicas)
	for i := range stores {
		stores[i] = openDSN(t, dsn, c, nil)
	}
	base := storetest.Payload(t, "am_v4_firing.json")
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		fresh = map[string]int{}
	)
	for _, s := range stores {
		for g := range groups {
			wg.Go(func() {
				m := *base
				m.GroupKey = fmt.Sprintf("%s:{replica_test=\"%d\"}", base.GroupKey, g)
				raw, err := json.Marshal(&m)
				if err != nil {
					t.Error(err)
					return
				}
				rec, err := s.Accept(context.Background(), incident.Delivery{Message: &m, Raw: raw, ReceivedAt: c.Now()})
				if err != nil {
					t.Error(err)
					return
				}
				if !rec.Duplicate {
					mu.Lock()
					fresh[m.GroupKey]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	require.Len(t, fresh, groups)
	for gk, n := range fresh {
		require.Equal(t, 1, n, "group %s accepted as new %d times", gk, n)
	}
	ctx := t.Context()
	require.Eventually(t, func() bool {
		counts, err := stores[0].NotificationCounts(ctx)
		require.NoError(t, err)
		return counts[incident.NotificationPending] == 0 && counts[incident.NotificationRetry] == 0
	}, 30*time.Second, 20*time.Millisecond)
	counts, err := stores[0].NotificationCounts(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{incident.NotificationProcessed: groups, incident.NotificationDuplicate: groups * (replicas - 1)}, counts)
	list, err := stores[0].ListIncidents(ctx, incident.ListFilter{Limit: 1000})
	require.NoError(t, err)
	require.Len(t, list, groups, "one incident per group")
	var changes, distinct int
	require.NoError(t, stores[0].DB().QueryRowContext(ctx, `SELECT count(*), count(DISTINCT (group_key, fingerprint, starts_at, status)) FROM changes`).Scan(&changes, &distinct))
	require.Equal(t, distinct, changes)
	require.Equal(t, groups*len(base.Alerts), changes)
}

// TestPostgres_LeaseDeliveryRace: of many workers leasing one delivery at
// once, from several replicas, exactly one wins.
func TestPostgres_LeaseDeliveryRace(t *testing.T) {
	t.Parallel()
	dsn := testenv.StartPostgres(t)
	c := storetest.NewClock()
	a, b := openDSN(t, dsn, c, nil), openDSN(t, dsn, c, nil)
	ctx := t.Context()
	m := storetest.Payload(t, "am_v4_firing.json")
	raw, err := json.Marshal(m)
	require.NoError(t, err)
	rec, err := a.Accept(ctx, incident.Delivery{Message: m, Raw: raw, ReceivedAt: c.Now()})
	require.NoError(t, err)
	list, err := a.ListIncidents(ctx, incident.ListFilter{})
	require.NoError(t, err)
	require.Len(t, list, 1, "notification %d", rec.NotificationID)
	_, err = a.PlanDeliveries(ctx, list[0].ID, incident.Decision{Kind: incident.DecisionRoute, Summary: "receivers: incidents", At: c.Now()},
		[]incident.Dispatch{{Receiver: "incidents", Integration: incident.IntegrationSlack, Target: "#incidents"}})
	require.NoError(t, err)
	inc, err := a.GetIncident(ctx, list[0].ID)
	require.NoError(t, err)
	did := inc.Deliveries[0].ID

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins []string
	)
	for i := range 16 {
		s := []*store.Store{a, b}[i%2]
		owner := fmt.Sprintf("w%d", i)
		wg.Go(func() {
			_, err := s.LeaseDelivery(ctx, did, owner, time.Minute)
			switch {
			case err == nil:
				mu.Lock()
				wins = append(wins, owner)
				mu.Unlock()
			case incident.KindOf(err) != incident.Conflict:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	require.Len(t, wins, 1, "one lease holder")
}

// TestPostgres_StormAcrossReplicas plans incidents on one channel from
// several replicas at once: the channel is locked while it is counted, so
// exactly one storm starts, and every incident past the threshold joins it.
func TestPostgres_StormAcrossReplicas(t *testing.T) {
	t.Parallel()
	dsn := testenv.StartPostgres(t)
	c := storetest.NewClock()
	const (
		replicas  = 3
		incidents = 30
		threshold = 5
	)
	stores := make([]*store.Store, replicas)
	for i := range stores {
		stores[i] = openDSN(t, dsn, c, nil)
	}
	policy := store.StormPolicy{Enabled: true, Threshold: threshold, Window: time.Hour}
	for id := range incidents {
		_, err := stores[0].DB().ExecContext(t.Context(), `INSERT INTO incidents (id, group_key, episode, status, receiver, group_labels, common_labels, common_annotations, external_url, opened_at, updated_at)
			VALUES ($1, $2, 1, 'firing', 'incidents', '{}', '{}', '{}', '', 0, 0)`, id+1, fmt.Sprintf("g%d", id+1))
		require.NoError(t, err)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		started int
		joined  int
	)
	for id := range incidents {
		s := stores[id%replicas]
		wg.Go(func() {
			_, joins, err := s.PlanDeliveriesStorm(t.Context(), int64(id+1),
				incident.Decision{Kind: incident.DecisionRoute, Summary: "receivers: incidents", At: c.Now()},
				[]incident.Dispatch{{Receiver: "incidents", Integration: incident.IntegrationSlack, Target: "#storm"}}, policy, time.Time{})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, j := range joins {
				joined++
				if j.Started {
					started++
				}
			}
		})
	}
	wg.Wait()
	require.Equal(t, 1, started, "one storm")
	total, active, err := stores[0].StormStats(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, total)
	require.Equal(t, []string{"#storm"}, active)
	// The first threshold incidents get their own parents (none is posted
	// yet, so the starting storm folds them in); every later one joins.
	require.Equal(t, incidents-threshold, joined)
	var members int
	require.NoError(t, stores[0].DB().QueryRowContext(t.Context(), `SELECT count(DISTINCT incident_id) FROM deliveries WHERE storm_id <> 0`).Scan(&members))
	require.Equal(t, incidents, members, "joined or folded, each once")
	var id int64
	require.NoError(t, stores[0].DB().QueryRowContext(t.Context(), `SELECT id FROM storms`).Scan(&id))
	st, err := stores[0].GetStorm(t.Context(), id)
	require.NoError(t, err)
	digest, version, err := stores[1].StormIncidents(t.Context(), id)
	require.NoError(t, err)
	require.Equal(t, st.Version, version, "the digest's incidents come with the version they are as of")
	require.Len(t, digest, incidents, "joined or folded, in the digest")
}

// TestPostgres_NoPasswordInErrors: a DSN's password never shows in an error.
func TestPostgres_NoPasswordInErrors(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-Pa55word"
	dsn := testenv.StartPostgres(t)
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	u.User = url.UserPassword("nobody", secret)
	u.Host = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) // nobody listens: waited for until connect_timeout
	q := u.Query()
	q.Set("connect_timeout", "1")
	u.RawQuery = q.Encode()
	for _, bad := range []string{u.String(), "postgres://nobody:" + secret + "@127.0.0.1:notaport/db", "postgres://nobody:" + secret + "@127.0.0.1/db?sslmode=bogus"} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := postgres.Open(ctx, bad, store.Options{})
		cancel()
		require.Error(t, err)
		require.NotContains(t, err.Error(), secret)
	}
}

// TestPostgres_PruneOneReplicaAtATime: while another replica's prune holds
// the pruning lock, Prune does nothing and says so; once it is released,
// Prune runs.
func TestPostgres_PruneOneReplicaAtATime(t *testing.T) {
	t.Parallel()
	s := open(t, storetest.NewClock(), nil)
	ctx := t.Context()
	other, err := s.DB().Conn(ctx)
	require.NoError(t, err)
	defer func() { _ = other.Close() }()
	key, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(postgres.Dialect.PruneLock, "SELECT pg_try_advisory_xact_lock("), ")"), 10, 64)
	require.NoError(t, err)
	_, err = other.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key)
	require.NoError(t, err)

	got, err := s.Prune(ctx, time.Now(), 10)
	require.NoError(t, err)
	require.True(t, got.Busy)

	_, err = other.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", key)
	require.NoError(t, err)
	got, err = s.Prune(ctx, time.Now(), 10)
	require.NoError(t, err)
	require.False(t, got.Busy)
}

func BenchmarkClaim(b *testing.B) {
	storetest.BenchmarkClaim(b, func(b *testing.B) *store.Store {
		db, err := postgres.Open(context.Background(), testenv.StartPostgres(b), store.Options{})
		require.NoError(b, err)
		run(b, db)
		return db.Store
	})
}
