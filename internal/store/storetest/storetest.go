// Package storetest is the behaviour suite every store engine must pass:
// the same tests run against SQLite and PostgreSQL.
package storetest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/template"
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
)

// Clock is a settable time source for tests.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at a fixed instant.
func NewClock() *Clock { return &Clock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Opener opens a fresh, migrated, empty store whose clock is c.Now, calls
// setup (when not nil) before anything runs, and runs the store's writer loop
// until the test ends.
type Opener func(t *testing.T, c *Clock, setup func(*store.Store)) *store.Store

// Run runs the whole suite. Apply tests run twice: with deliveries applied
// in their own commit (the default), and deferred to ingest jobs.
func Run(t *testing.T, open Opener) {
	deferred := func(t *testing.T, c *Clock, setup func(*store.Store)) *store.Store {
		return open(t, c, func(s *store.Store) {
			s.SetDeferApply(true)
			if setup != nil {
				setup(s)
			}
		})
	}
	t.Run("Accept", func(t *testing.T) { testAccept(t, open) })
	t.Run("AcceptDeferred", func(t *testing.T) { testAcceptDeferred(t, deferred) })
	t.Run("AcceptBatch", func(t *testing.T) { testAcceptBatch(t, deferred) })
	t.Run("DuplicatePayload", func(t *testing.T) { testDuplicatePayload(t, deferred) })
	for name, o := range map[string]Opener{"Inline": open, "Deferred": deferred} {
		t.Run("Apply"+name, func(t *testing.T) { testApply(t, o) })
		t.Run("ApplyOrder"+name, func(t *testing.T) { testApplyOrder(t, o) })
	}
	for name, o := range map[string]Opener{"Inline": open, "Deferred": deferred} {
		t.Run("PartialDelivery"+name, func(t *testing.T) { testPartialDelivery(t, o) })
	}
	for name, o := range map[string]Opener{"Inline": open, "Deferred": deferred} {
		t.Run("Prune"+name, func(t *testing.T) { testPrune(t, o) })
	}
	t.Run("FollowUps", func(t *testing.T) { testFollowUps(t, open) })
	t.Run("ParkIngest", func(t *testing.T) { testParkIngest(t, open) })
	for name, o := range map[string]Opener{"Inline": open, "Deferred": deferred} {
		t.Run("ApplyFailure"+name, func(t *testing.T) { testApplyFailure(t, o) })
	}
	t.Run("ListPages", func(t *testing.T) { testListPages(t, open) })
	for name, o := range map[string]Opener{"Inline": open, "Deferred": deferred} {
		t.Run("HoldTruncated"+name, func(t *testing.T) { testHoldTruncated(t, o) })
	}
	t.Run("Queue", func(t *testing.T) { testQueue(t, open) })
	t.Run("ClaimOrder", func(t *testing.T) { testClaimOrder(t, open) })
	t.Run("ConcurrentClaims", func(t *testing.T) { testConcurrentClaims(t, open) })
	t.Run("Migrate", func(t *testing.T) { testMigrateTwice(t, open) })
	t.Run("MigrateNewerSchema", func(t *testing.T) { testMigrateNewerSchema(t, open) })
	t.Run("PlanDeliveries", func(t *testing.T) { testPlanDeliveries(t, open) })
	t.Run("AddDeliveries", func(t *testing.T) { testAddDeliveries(t, open) })
	t.Run("LeaseDelivery", func(t *testing.T) { testLeaseDelivery(t, open) })
	t.Run("Remediation", func(t *testing.T) {
		testRemediation(t, open)
		testRemediationApproval(t, open)
		testRemediationApprovalConcurrency(t, open)
	})
	t.Run("Context", func(t *testing.T) { testContext(t, open) })
}

// recorder collects what Accept applied inline.
type recorder struct {
	mu      sync.Mutex
	applied []incident.Applied
}

// openRecording opens a store whose applied deliveries are recorded.
func openRecording(t *testing.T, open Opener, c *Clock, followUps ...string) (*store.Store, *recorder) {
	r := &recorder{}
	s := open(t, c, func(s *store.Store) {
		s.SetHooks(nil, func(_ int64, ap incident.Applied) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.applied = append(r.applied, ap)
		}, followUps...)
	})
	return s, r
}

// Payload loads a testdata payload from the repository's testdata folder.
func Payload(t testing.TB, name string) *incident.Message {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata", name)) //nolint:gosec // G304: a test-chosen file in the repository's testdata.
	require.NoError(t, err)
	m, err := incident.DecodeMessage(b)
	require.NoError(t, err)
	return m
}

// clone deep-copies a message so that tests can change it.
func clone(t testing.TB, m *incident.Message) *incident.Message {
	t.Helper()
	b, err := json.Marshal(m)
	require.NoError(t, err)
	out, err := incident.DecodeMessage(b)
	require.NoError(t, err)
	return out
}

// withAlerts returns a copy of m whose alerts are given as fingerprint→status.
func withAlerts(t testing.TB, m *incident.Message, startsAt time.Time, states map[string]string) *incident.Message {
	t.Helper()
	out := clone(t, m)
	tmpl := out.Alerts[0]
	out.Alerts = nil
	for fp, st := range states {
		a := tmpl
		a.Fingerprint, a.Status, a.StartsAt = fp, st, startsAt
		a.Labels = template.KV{"alertname": "CheckoutLatencyHigh", "pod": fp}
		if st == incident.StatusResolved {
			a.EndsAt = startsAt.Add(10 * time.Minute)
		}
		out.Alerts = append(out.Alerts, a)
	}
	return out
}

func accept(t testing.TB, s *store.Store, m *incident.Message, at time.Time) incident.Receipt {
	t.Helper()
	raw, err := json.Marshal(m)
	require.NoError(t, err)
	r, err := s.Accept(context.Background(), incident.Delivery{Message: m, Raw: raw, ReceivedAt: at})
	require.NoError(t, err)
	return r
}

// drain waits until no ingest job is due (the writer loop applies deferred
// deliveries when idle) and returns what was applied since the last call.
func drain(t testing.TB, s *store.Store, r *recorder) []incident.Applied {
	t.Helper()
	require.Eventually(t, func() bool {
		counts, err := s.NotificationCounts(context.Background())
		require.NoError(t, err)
		if counts[incident.NotificationPending] > 0 {
			return false
		}
		jobs, err := s.ListJobs(context.Background(), incident.JobFilter{State: incident.JobQueued, Limit: 1000})
		require.NoError(t, err)
		for _, j := range jobs {
			if j.Kind == incident.JobIngest {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
	// The last apply's hooks run after its commit: wait for them too.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, s.Settle(sctx))
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.applied
	r.applied = nil
	return out
}

func testAccept(t *testing.T, open Opener) {
	c := NewClock()
	s := open(t, c, nil)
	m := Payload(t, "am_v4_firing.json")

	first := accept(t, s, m, c.Now())
	require.False(t, first.Duplicate)
	again := accept(t, s, m, c.Now())
	require.True(t, again.Duplicate, "identical alert states are a duplicate")
	require.NotEqual(t, first.NotificationID, again.NotificationID, "duplicates are stored too")

	cosmetic := clone(t, m)
	cosmetic.CommonAnnotations["summary"] = "changed wording"
	require.True(t, accept(t, s, cosmetic, c.Now()).Duplicate, "annotations do not make a delivery new")

	resolved := Payload(t, "am_v4_resolved.json")
	require.False(t, accept(t, s, resolved, c.Now()).Duplicate)

	counts, err := s.NotificationCounts(context.Background())
	require.NoError(t, err)
	require.Equal(t, map[string]int{incident.NotificationProcessed: 2, incident.NotificationDuplicate: 2}, counts,
		"new deliveries are applied in their commit")
	jobs, err := s.ListJobs(context.Background(), incident.JobFilter{State: "", Limit: 0})
	require.NoError(t, err)
	require.Empty(t, jobs, "no ingest job when the apply succeeded inline")
	list, err := s.ListIncidents(context.Background(), incident.ListFilter{})
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, incident.StatusResolved, list[0].Status)
}

func testAcceptDeferred(t *testing.T, open Opener) {
	c := NewClock()
	s, r := openRecording(t, open, c)
	ctx := context.Background()
	m := Payload(t, "am_v4_firing.json")
	require.False(t, accept(t, s, m, c.Now()).Duplicate)
	require.True(t, accept(t, s, m, c.Now()).Duplicate)
	got := drain(t, s, r)
	require.Len(t, got, 1, "the deferred delivery is applied once, by the writer loop")
	require.Equal(t, incident.TransitionOpened, got[0].Transition)
	counts, err := s.NotificationCounts(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{incident.NotificationProcessed: 1, incident.NotificationDuplicate: 1}, counts)
	jobs, err := s.ListJobs(ctx, incident.JobFilter{State: "", Limit: 0})
	require.NoError(t, err)
	require.Empty(t, jobs, "a deferred delivery needs no job row unless its apply fails")

	// Applying is idempotent: the same notification applied again (as if its
	// outcome had been lost) records nothing new.
	_, err = s.DB().ExecContext(ctx, `UPDATE notifications SET status = 'pending' WHERE status = 'processed'`)
	require.NoError(t, err)
	_, err = s.ApplyDue(ctx, 10)
	require.NoError(t, err)
	again := drain(t, s, r)
	require.Len(t, again, 1)
	require.Equal(t, incident.TransitionDuplicate, again[0].Transition)
	list, err := s.ListIncidents(ctx, incident.ListFilter{})
	require.NoError(t, err)
	require.Len(t, list, 1)
	full, err := s.GetIncident(ctx, list[0].ID)
	require.NoError(t, err)
	require.Len(t, full.History, len(m.Alerts), "each change once")
}

// openWithFiring opens a recording store and reads the firing fixture,
// with the bytes a webhook would have received for it.
func openWithFiring(t *testing.T, open Opener) (*Clock, *store.Store, *recorder, *incident.Message, []byte) {
	t.Helper()
	c := NewClock()
	s, r := openRecording(t, open, c)
	m := Payload(t, "am_v4_firing.json")
	raw, err := json.Marshal(m)
	require.NoError(t, err)
	return c, s, r, m, raw
}

// testPartialDelivery: a delivery whose message holds only what committing
// needs (the webhook knew the bytes) is stored under the state hash it
// carries, and applied as the whole message its raw bytes hold, labels and
// annotations included; the same states again are a duplicate.
func testPartialDelivery(t *testing.T, open Opener) {
	c, s, r, m, raw := openWithFiring(t, open)
	ctx := context.Background()
	// What the webhook gives when it knows the bytes: no labels, no
	// fingerprints, the state hash computed before.
	partial := &incident.Message{Version: m.Version, GroupKey: m.GroupKey, Data: &template.Data{Receiver: m.Receiver, Status: m.Status}}
	for _, a := range m.Alerts {
		partial.Alerts = append(partial.Alerts, template.Alert{Status: a.Status})
	}
	// The webhook reuses the memory of Raw once Accept has returned: the
	// store must keep nothing of it (webhook.Sink).
	own := bytes.Clone(raw)
	rec, err := s.Accept(ctx, incident.Delivery{Message: partial, Raw: own, ReceivedAt: c.Now(), Digest: sha256.Sum256(raw), StateHash: m.StateHash(), Partial: true})
	require.NoError(t, err)
	require.False(t, rec.Duplicate)
	copy(own, bytes.Repeat([]byte{' '}, len(own)))
	got := drain(t, s, r)
	require.Len(t, got, 1)
	require.Equal(t, incident.TransitionOpened, got[0].Transition)
	inc, err := s.GetIncident(ctx, got[0].Incident.ID)
	require.NoError(t, err)
	require.Equal(t, map[string]string(m.CommonLabels), inc.CommonLabels, "applied from the raw bytes, not the identity")
	require.Len(t, inc.Alerts, len(m.Alerts))
	for _, a := range inc.Alerts {
		require.NotEmpty(t, a.Labels)
	}
	require.True(t, accept(t, s, m, c.Now()).Duplicate, "stored under the state hash it carried")
}

// testAcceptBatch: concurrent deliveries are stored by multi-row batches
// (deferred, they are not applied in the commit): each receipt names its
// own notification, and each group's states are new exactly once however
// many copies arrive together.
func testAcceptBatch(t *testing.T, open Opener) {
	c := NewClock()
	s, r := openRecording(t, open, c)
	ctx := context.Background()
	base := Payload(t, "am_v4_firing.json")
	const groups, copies = 60, 4
	type result struct {
		groupKey string
		rec      incident.Receipt
		err      error
	}
	results := make(chan result, groups*copies)
	var wg sync.WaitGroup
	for g := range groups {
		m := clone(t, base)
		m.GroupKey = fmt.Sprintf("{}:{batch=\"%d\"}", g)
		for j := range m.Alerts {
			m.Alerts[j].Fingerprint = fmt.Sprintf("%08x%08x", g, j)
		}
		raw, err := json.Marshal(m)
		require.NoError(t, err)
		for range copies {
			wg.Go(func() {
				rec, err := s.Accept(ctx, incident.Delivery{Message: m, Raw: raw, ReceivedAt: c.Now()})
				results <- result{m.GroupKey, rec, err}
			})
		}
	}
	wg.Wait()
	close(results)
	q := s.Rebind(`SELECT group_key, status FROM notifications WHERE id = ?`)
	fresh := map[string]int{}
	seen := map[int64]bool{}
	for res := range results {
		require.NoError(t, res.err)
		require.False(t, seen[res.rec.NotificationID], "notification %d answered twice", res.rec.NotificationID)
		seen[res.rec.NotificationID] = true
		var gk, status string
		require.NoError(t, s.DB().QueryRowContext(ctx, q, res.rec.NotificationID).Scan(&gk, &status))
		require.Equal(t, res.groupKey, gk, "receipt %d names its own notification", res.rec.NotificationID)
		require.Equal(t, res.rec.Duplicate, status == incident.NotificationDuplicate, "receipt and row agree on notification %d (%s)", res.rec.NotificationID, status)
		if !res.rec.Duplicate {
			fresh[gk]++
		}
	}
	require.Len(t, fresh, groups, "every group's states were new once")
	for gk, n := range fresh {
		require.Equal(t, 1, n, "new deliveries of %s", gk)
	}
	got := drain(t, s, r)
	require.Len(t, got, groups, "one apply per group")
	list, err := s.ListIncidents(ctx, incident.ListFilter{Limit: 1000})
	require.NoError(t, err)
	require.Len(t, list, groups)
}

// testDuplicatePayload: a duplicate with the very bytes of a stored
// notification stores no copy of them, and says which notification has
// them; a duplicate with other bytes (same alert states, another
// annotation) keeps its own.
func testDuplicatePayload(t *testing.T, open Opener) {
	c, s, r, m, raw := openWithFiring(t, open)
	ctx := context.Background()
	deliver := func(m *incident.Message, raw []byte) incident.Receipt {
		t.Helper()
		rec, err := s.Accept(ctx, incident.Delivery{Message: m, Raw: raw, ReceivedAt: c.Now()})
		require.NoError(t, err)
		return rec
	}
	row := func(id int64) (reason string, size int) {
		t.Helper()
		q := s.Rebind(`SELECT reason, length(payload) FROM notifications WHERE id = ?`)
		require.NoError(t, s.DB().QueryRowContext(ctx, q, id).Scan(&reason, &size))
		return reason, size
	}
	first := deliver(m, raw)
	require.False(t, first.Duplicate)
	same := deliver(m, raw)
	require.True(t, same.Duplicate)
	reason, size := row(same.NotificationID)
	require.Zero(t, size, "an identical duplicate stores no copy")
	require.Contains(t, reason, fmt.Sprintf("payload identical to notification %d's", first.NotificationID))

	other := clone(t, m)
	other.CommonAnnotations = template.KV{"summary": "reworded"}
	otherRaw, err := json.Marshal(other)
	require.NoError(t, err)
	changed := deliver(other, otherRaw)
	require.True(t, changed.Duplicate, "same alert states")
	reason, size = row(changed.NotificationID)
	require.Positive(t, size, "other bytes are stored")
	require.Less(t, size, len(otherRaw), "compressed")
	require.NotContains(t, reason, "payload identical")
	require.Contains(t, reason, fmt.Sprintf("same alert states as notification %d", first.NotificationID))
	// A later duplicate names the first notification too, not the one
	// whose payload the store remembers.
	again := deliver(m, raw)
	require.True(t, again.Duplicate)
	reason, _ = row(again.NotificationID)
	require.Contains(t, reason, fmt.Sprintf("same alert states as notification %d", first.NotificationID))
	// Past the shortest retention, the notification with the bytes may be
	// pruned (by another replica, unseen here): they are stored again.
	c.Advance(store.MinRetention)
	late := deliver(m, raw)
	require.True(t, late.Duplicate)
	reason, size = row(late.NotificationID)
	require.Positive(t, size, "not pointed to: the notification with these bytes may be pruned")
	require.NotContains(t, reason, "payload identical")
	// The first notification keeps its payload; it was applied once.
	_, size = row(first.NotificationID)
	require.Positive(t, size)
	require.Len(t, drain(t, s, r), 1)
}

// testApplyFailure: a delivery whose apply fails is still acknowledged and
// stored, and a retry applies it once the cause is gone.
func testApplyFailure(t *testing.T, open Opener) {
	c := NewClock()
	s, r := openRecording(t, open, c)
	ctx := context.Background()
	// The failure is injected with a trigger, in each engine's dialect.
	inject, drop := map[string][]string{
		"sqlite": {`CREATE TRIGGER inject_failure BEFORE INSERT ON changes WHEN NEW.group_key = 'poison'
		BEGIN SELECT RAISE(ABORT, 'injected failure'); END`},
		"postgres": {
			`CREATE FUNCTION inject_failure() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$`,
			`CREATE TRIGGER inject_failure BEFORE INSERT ON changes FOR EACH ROW WHEN (NEW.group_key = 'poison') EXECUTE FUNCTION inject_failure()`,
		},
	}, map[string]string{
		"sqlite":   `DROP TRIGGER inject_failure`,
		"postgres": `DROP TRIGGER inject_failure ON changes`,
	}
	if _, ok := inject[s.Dialect().Name]; !ok {
		t.Skipf("no failure injection for %s", s.Dialect().Name)
	}
	for _, q := range inject[s.Dialect().Name] {
		_, err := s.DB().ExecContext(ctx, q)
		require.NoError(t, err)
	}
	m := clone(t, Payload(t, "am_v4_firing.json"))
	m.GroupKey = "poison"
	rec := accept(t, s, m, c.Now())
	require.False(t, rec.Duplicate)
	require.Eventually(t, func() bool {
		jobs, err := s.ListJobs(ctx, incident.JobFilter{State: incident.JobQueued, Limit: 0})
		require.NoError(t, err)
		return len(jobs) == 1 && strings.Contains(jobs[0].LastError, "injected failure")
	}, 5*time.Second, 10*time.Millisecond, "the failed apply waits for its retry")
	counts, err := s.NotificationCounts(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{incident.NotificationRetry: 1}, counts)

	_, err = s.DB().ExecContext(ctx, drop[s.Dialect().Name])
	require.NoError(t, err)
	c.Advance(time.Minute) // past the backoff
	got := drain(t, s, r)
	require.Len(t, got, 1)
	require.Equal(t, incident.TransitionOpened, got[0].Transition)
	done, err := s.ListJobs(ctx, incident.JobFilter{State: incident.JobDone, Limit: 0})
	require.NoError(t, err)
	require.Len(t, done, 1)
	require.Equal(t, 2, done[0].Attempts)
}

// testParkIngest: an apply that cannot succeed is parked, not retried for
// ever, and does not hold up the others.
func testParkIngest(t *testing.T, open Opener) {
	c := NewClock()
	s, r := openRecording(t, open, c)
	ctx := context.Background()
	now := c.Now().UnixNano()
	_, err := s.DB().ExecContext(ctx, `INSERT INTO jobs (kind, ref_id, state, max_attempts, run_at, created_at, updated_at) VALUES ('ingest', 424242, 'queued', 3, `+
		fmt.Sprint(now)+`, `+fmt.Sprint(now)+`, `+fmt.Sprint(now)+`)`)
	require.NoError(t, err)
	more, err := s.ApplyDue(ctx, 10)
	require.NoError(t, err)
	require.False(t, more)
	parked, err := s.ListJobs(ctx, incident.JobFilter{State: incident.JobParked, Limit: 0})
	require.NoError(t, err)
	require.Len(t, parked, 1, "a missing notification is a permanent failure")
	require.Contains(t, parked[0].LastError, "does not exist")
	require.Empty(t, drain(t, s, r))
}

func testFollowUps(t *testing.T, open Opener) {
	c := NewClock()
	s, _ := openRecording(t, open, c, "notify")
	ctx := context.Background()
	m := Payload(t, "am_v4_firing.json")
	accept(t, s, m, c.Now())
	accept(t, s, m, c.Now()) // a duplicate queues nothing
	accept(t, s, Payload(t, "am_v4_resolved.json"), c.Now())
	jobs, err := s.ListJobs(ctx, incident.JobFilter{State: incident.JobQueued, Limit: 0})
	require.NoError(t, err)
	require.Len(t, jobs, 2, "one follow-up per change, committed with it")
	for _, j := range jobs {
		require.Equal(t, "notify", j.Kind)
		require.Equal(t, j.IncidentID, j.RefID)
		require.NotZero(t, j.IncidentID)
	}
}

func testApply(t *testing.T, open Opener) {
	c := NewClock()
	s, r := openRecording(t, open, c)
	ctx := context.Background()
	base := Payload(t, "am_v4_firing.json")
	t0 := c.Now().Add(-time.Hour)

	accept(t, s, withAlerts(t, base, t0, map[string]string{"a": "firing"}), c.Now())
	got := drain(t, s, r)
	require.Len(t, got, 1)
	require.Equal(t, incident.TransitionOpened, got[0].Transition)
	require.Equal(t, 1, got[0].Incident.Episode)
	id := got[0].Incident.ID

	// Alert b joins.
	accept(t, s, withAlerts(t, base, t0, map[string]string{"a": "firing", "b": "firing"}), c.Now())
	got = drain(t, s, r)
	require.Equal(t, incident.TransitionUpdated, got[0].Transition)
	require.Equal(t, 1, got[0].NewFiring)
	require.Equal(t, id, got[0].Incident.ID)

	// a resolves, b still fires.
	accept(t, s, withAlerts(t, base, t0, map[string]string{"a": "resolved", "b": "firing"}), c.Now())
	got = drain(t, s, r)
	require.Equal(t, incident.TransitionUpdated, got[0].Transition)
	require.Equal(t, 1, got[0].NewResolved)
	require.Equal(t, incident.StatusFiring, got[0].Incident.Status)

	// A repeat of an old state (a firing, b firing): a is stale, nothing new.
	accept(t, s, withAlerts(t, base, t0, map[string]string{"a": "firing", "b": "firing", "c": "resolved"}), c.Now())
	got = drain(t, s, r)
	require.Equal(t, 0, got[0].NewFiring, "a firing after a resolved is stale")

	// Everything resolves.
	accept(t, s, withAlerts(t, base, t0, map[string]string{"a": "resolved", "b": "resolved"}), c.Now())
	got = drain(t, s, r)
	require.Equal(t, incident.TransitionResolved, got[0].Transition)
	require.Equal(t, incident.StatusResolved, got[0].Incident.Status)
	require.NotNil(t, got[0].Incident.ResolvedAt)

	// The group fires again: a new episode, a new incident.
	t1 := t0.Add(2 * time.Hour)
	accept(t, s, withAlerts(t, base, t1, map[string]string{"a": "firing"}), c.Now())
	got = drain(t, s, r)
	require.Equal(t, incident.TransitionOpened, got[0].Transition)
	require.Equal(t, 2, got[0].Incident.Episode)
	require.NotEqual(t, id, got[0].Incident.ID)

	full, err := s.GetIncident(ctx, id)
	require.NoError(t, err)
	require.Len(t, full.Alerts, 3)
	// a firing, b firing, a resolved, c resolved, b resolved: each exactly once.
	require.Len(t, full.History, 5)
	seen := map[string]int{}
	for _, h := range full.History {
		seen[h.Fingerprint+"/"+h.Status]++
	}
	for k, n := range seen {
		require.Equal(t, 1, n, "change %s recorded once", k)
	}
	require.Len(t, full.Notifications, 5)

	firing, err := s.ListIncidents(ctx, incident.ListFilter{Status: incident.StatusFiring})
	require.NoError(t, err)
	require.Len(t, firing, 1)
	_, err = s.GetIncident(ctx, 999)
	require.Equal(t, incident.NotFound, incident.KindOf(err))
}

// testApplyOrder: the outcome does not depend on the order in which
// notifications are applied.
func testApplyOrder(t *testing.T, open Opener) {
	c := NewClock()
	s, r := openRecording(t, open, c)
	ctx := context.Background()
	base := Payload(t, "am_v4_firing.json")
	t0 := c.Now().Add(-time.Hour)
	firing := withAlerts(t, base, t0, map[string]string{"a": "firing"})
	resolved := withAlerts(t, base, t0, map[string]string{"a": "resolved"})

	// Commit the resolve first, as if the firing delivery came late from an
	// HA peer.
	accept(t, s, resolved, c.Now())
	accept(t, s, firing, c.Now())
	got := drain(t, s, r)
	require.Len(t, got, 2)
	require.Equal(t, incident.TransitionResolved, got[0].Transition)
	require.Equal(t, incident.TransitionDuplicate, got[1].Transition, "a late firing is stale")
	all, err := s.ListIncidents(ctx, incident.ListFilter{})
	require.NoError(t, err)
	require.Len(t, all, 1, "no second episode from a stale firing")
	require.Equal(t, incident.StatusResolved, all[0].Status)
}

// testListPages: ListFilter.Before pages through incidents newest first,
// with and without a status, and every incident is on exactly one page.
func testListPages(t *testing.T, open Opener) {
	c := NewClock()
	s := open(t, c, nil)
	ctx := context.Background()
	base := Payload(t, "am_v4_firing.json")
	const groups = 7
	for i := range groups {
		state := incident.StatusFiring
		if i%2 == 1 {
			state = incident.StatusResolved
		}
		m := withAlerts(t, base, c.Now().Add(-time.Hour), map[string]string{"a": state})
		m.GroupKey = fmt.Sprintf(`{}:{alertname="Page%d"}`, i)
		accept(t, s, m, c.Now())
	}
	pages := func(status string) [][]int64 {
		var (
			out    [][]int64
			before int64
		)
		for range groups + 1 {
			list, err := s.ListIncidents(ctx, incident.ListFilter{Status: status, Limit: 3, Before: before})
			require.NoError(t, err)
			if len(list) == 0 {
				return out
			}
			var ids []int64
			for _, inc := range list {
				if status != "" {
					require.Equal(t, status, inc.Status)
				}
				ids = append(ids, inc.ID)
			}
			out = append(out, ids)
			before = ids[len(ids)-1]
		}
		t.Fatalf("paging did not end: %v", out)
		return nil
	}
	all := pages("")
	require.Len(t, all, 3)
	flat := slices.Concat(all...)
	require.Len(t, flat, groups)
	require.True(t, slices.IsSortedFunc(flat, func(a, b int64) int { return cmp.Compare(b, a) }), "newest first, no overlap: %v", flat)
	require.Equal(t, []int{3, 3, 1}, []int{len(all[0]), len(all[1]), len(all[2])})

	firing := slices.Concat(pages(incident.StatusFiring)...)
	require.Len(t, firing, 4)
	require.True(t, slices.IsSortedFunc(firing, func(a, b int64) int { return cmp.Compare(b, a) }))

	// Jobs page the same way, by state too: seven queued, two of them
	// then claimed (running).
	for i := range 7 {
		require.NoError(t, s.Enqueue(ctx, kinds[0], int64(i+1), 0, nil))
	}
	claimed, err := s.Claim(ctx, "w1", 2, time.Minute, kinds...)
	require.NoError(t, err)
	require.Len(t, claimed, 2)
	every, err := s.ListJobs(ctx, incident.JobFilter{Limit: incident.MaxLimit})
	require.NoError(t, err)
	require.Len(t, every, 7)
	for _, state := range []string{"", incident.JobQueued, incident.JobRunning} {
		var (
			got    []int64
			before int64
		)
		for range len(every) + 1 {
			list, err := s.ListJobs(ctx, incident.JobFilter{State: state, Limit: 2, Before: before})
			require.NoError(t, err)
			if len(list) == 0 {
				break
			}
			require.LessOrEqual(t, len(list), 2)
			for _, j := range list {
				if state != "" {
					require.Equal(t, state, j.State)
				}
				got = append(got, j.ID)
			}
			before = list[len(list)-1].ID
		}
		var want []int64
		for _, j := range every {
			if state == "" || j.State == state {
				want = append(want, j.ID)
			}
		}
		require.Equal(t, want, got, "state %q: every job once, newest first", state)
	}
}

// testHoldTruncated: with HoldTruncated, a notification from which
// Alertmanager left alerts out does not resolve the open incident, even when
// it resolves every alert storage knows; a later one that leaves nothing out
// (here with the same alert states, as reconciliation sends it) resolves it.
// Without it, the truncated notification resolves the incident at once.
func testHoldTruncated(t *testing.T, open Opener) {
	for _, hold := range []bool{true, false} {
		t.Run(fmt.Sprintf("hold=%v", hold), func(t *testing.T) {
			c := NewClock()
			s := open(t, c, func(s *store.Store) { s.SetHoldTruncated(func() bool { return hold }) })
			ctx := context.Background()
			start := c.Now().Add(-time.Hour)
			firing := withAlerts(t, Payload(t, "am_v4_firing.json"), start, map[string]string{"a": incident.StatusFiring})
			firing.TruncatedAlerts = 1
			accept(t, s, firing, c.Now())
			resolved := withAlerts(t, firing, start, map[string]string{"a": incident.StatusResolved})
			resolved.Status, resolved.TruncatedAlerts = incident.StatusResolved, 1
			accept(t, s, resolved, c.Now())

			status := func() (string, int) {
				var inc incident.Incident
				require.Eventually(t, func() bool {
					list, err := s.ListIncidents(ctx, incident.ListFilter{})
					require.NoError(t, err)
					if len(list) != 1 || list[0].ResolvedAlerts != 1 {
						return false
					}
					inc = list[0]
					return true
				}, 10*time.Second, 10*time.Millisecond)
				return inc.Status, inc.FiringAlerts
			}
			st, n := status()
			held, err := s.HeldIncidents(ctx)
			require.NoError(t, err)
			if !hold {
				require.Equal(t, incident.StatusResolved, st, "resolved by the truncated notification")
				require.Empty(t, held)
				return
			}
			require.Equal(t, incident.StatusFiring, st, "kept open: the alert left out may still fire")
			require.Zero(t, n)
			require.Len(t, held, 1, "the held incident is listed as such")
			require.Len(t, held[0].Alerts, 1, "with its alerts")
			firingNow, err := s.FiringIncidents(ctx)
			require.NoError(t, err)
			require.Len(t, firingNow, 1)

			// The same states, nothing left out, under a state hash of its
			// own (reconciliation's release): it resolves the incident.
			release := clone(t, resolved)
			release.TruncatedAlerts = 0
			raw, err := json.Marshal(release)
			require.NoError(t, err)
			r, err := s.Accept(ctx, incident.Delivery{Message: release, Raw: raw, ReceivedAt: c.Now(), StateHash: strings.Repeat("ab", 32)})
			require.NoError(t, err)
			require.False(t, r.Duplicate)
			require.Eventually(t, func() bool {
				list, err := s.ListIncidents(ctx, incident.ListFilter{})
				require.NoError(t, err)
				return len(list) == 1 && list[0].Status == incident.StatusResolved && list[0].ResolvedAt != nil
			}, 10*time.Second, 10*time.Millisecond, "released")
			held, err = s.HeldIncidents(ctx)
			require.NoError(t, err)
			require.Empty(t, held, "released")

			// A group that fires again opens a new episode.
			again := withAlerts(t, firing, c.Now(), map[string]string{"b": incident.StatusFiring})
			accept(t, s, again, c.Now())
			require.Eventually(t, func() bool {
				list, err := s.ListIncidents(ctx, incident.ListFilter{Status: incident.StatusFiring})
				require.NoError(t, err)
				return len(list) == 1 && list[0].Episode == 2
			}, 10*time.Second, 10*time.Millisecond)
		})
	}
}

// kinds are the job kinds the tests claim, as a pipeline with handlers for
// them would.
var kinds = []string{"notify", incident.JobDeliver, incident.JobRoute}

func testQueue(t *testing.T, open Opener) {
	c := NewClock()
	s := open(t, c, nil)
	ctx := context.Background()
	require.Equal(t, incident.Invalid, incident.KindOf(s.Enqueue(ctx, incident.JobIngest, 1, 0, nil)), "only Accept queues ingest jobs")
	require.NoError(t, s.Enqueue(ctx, "notify", 7, 7, []byte(`{"x":1}`)))

	jobs, err := s.Claim(ctx, "w1", 10, time.Minute, kinds...)
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	j := jobs[0]
	require.Equal(t, 1, j.Attempts)

	again, err := s.Claim(ctx, "w2", 10, time.Minute, kinds...)
	require.NoError(t, err)
	require.Empty(t, again, "a leased job is not handed out twice")

	// The lease expires (the worker died): another worker takes over.
	c.Advance(61 * time.Second)
	taken, err := s.Claim(ctx, "w2", 10, time.Minute, kinds...)
	require.NoError(t, err)
	require.Len(t, taken, 1)
	require.Equal(t, 2, taken[0].Attempts)

	// The old owner can no longer complete or fail it.
	require.NoError(t, s.Complete(ctx, j))
	require.NoError(t, s.Fail(ctx, j, errors.New("late"), c.Now(), true))
	running, err := s.ListJobs(ctx, incident.JobFilter{State: incident.JobRunning, Limit: 0})
	require.NoError(t, err)
	require.Len(t, running, 1)

	// A failure schedules a retry: not due before retryAt.
	require.NoError(t, s.Fail(ctx, taken[0], errors.New("slack: 503"), c.Now().Add(30*time.Second), false))
	none, err := s.Claim(ctx, "w3", 10, time.Minute, kinds...)
	require.NoError(t, err)
	require.Empty(t, none)
	c.Advance(31 * time.Second)
	retry, err := s.Claim(ctx, "w3", 10, time.Minute, kinds...)
	require.NoError(t, err)
	require.Len(t, retry, 1)
	require.Equal(t, 3, retry[0].Attempts)

	// Parking keeps the error and takes the job out of the queue.
	require.NoError(t, s.Fail(ctx, retry[0], errors.New("poison: cannot decode"), c.Now(), true))
	parked, err := s.ListJobs(ctx, incident.JobFilter{State: incident.JobParked, Limit: 0})
	require.NoError(t, err)
	require.Len(t, parked, 1)
	require.Equal(t, "poison: cannot decode", parked[0].LastError)
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, st.ByState[incident.JobParked])
	c.Advance(time.Hour)
	none, err = s.Claim(ctx, "w3", 10, time.Minute, kinds...)
	require.NoError(t, err)
	require.Empty(t, none, "parked jobs never run by themselves")
	other, err := s.Claim(ctx, "w3", 10, time.Minute, "something-else")
	require.NoError(t, err)
	require.Empty(t, other, "only the kinds asked for are claimed")

	// An operator retries it; a shutdown hands it back without counting.
	require.NoError(t, s.Retry(ctx, parked[0].ID))
	back, err := s.Claim(ctx, "w4", 10, time.Minute, kinds...)
	require.NoError(t, err)
	require.Len(t, back, 1)
	require.Equal(t, 1, back[0].Attempts)
	require.NoError(t, s.Release(ctx, back[0], 0))
	back, err = s.Claim(ctx, "w5", 10, time.Minute, kinds...)
	require.NoError(t, err)
	require.Len(t, back, 1, "a released job is due at once")
	require.Equal(t, 1, back[0].Attempts, "a released attempt does not count")
	require.Equal(t, incident.NotFound, incident.KindOf(s.Retry(ctx, 12345)))
}

// A claim takes the jobs due longest, whatever their kinds, and those whose
// lease expired count as due since their run_at.
func testClaimOrder(t *testing.T, open Opener) {
	c := NewClock()
	s := open(t, c, nil)
	ctx := context.Background()
	enqueue := func(kind string, ref int64) {
		t.Helper()
		require.NoError(t, s.Enqueue(ctx, kind, ref, ref, nil))
		c.Advance(time.Second)
	}
	refs := func(jobs []incident.Job) []int64 {
		var out []int64
		for _, j := range jobs {
			out = append(out, j.RefID)
		}
		slices.Sort(out)
		return out
	}
	claim := func(n int) []int64 {
		t.Helper()
		jobs, err := s.Claim(ctx, "w", n, time.Minute, kinds...)
		require.NoError(t, err)
		return refs(jobs)
	}
	enqueue("something-else", 9)
	enqueue(incident.JobRoute, 1)
	enqueue(incident.JobDeliver, 2)
	enqueue(incident.JobRoute, 3)
	enqueue(incident.JobDeliver, 4)
	require.Equal(t, []int64{1, 2}, claim(2), "the two due longest, of either kind")
	require.Equal(t, []int64{3}, claim(1))

	// The leases of 1, 2 and 3 expire; 5 and 6 are queued after them.
	c.Advance(61 * time.Second)
	enqueue(incident.JobRoute, 5)
	enqueue(incident.JobRoute, 6)
	require.Equal(t, []int64{1, 2}, claim(2), "expired leases are due since their run_at")
	require.Equal(t, []int64{3, 4, 5, 6}, claim(10), "and no job of another kind")
}

func testConcurrentClaims(t *testing.T, open Opener) {
	c := NewClock()
	s := open(t, c, nil)
	ctx := context.Background()
	const n = 60
	for i := range n {
		require.NoError(t, s.Enqueue(ctx, "notify", int64(i+1), int64(i+1), nil))
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		claimed = map[int64]int{}
		total   atomic.Int64
	)
	for w := range 4 {
		wg.Go(func() {
			for {
				jobs, err := s.Claim(ctx, fmt.Sprintf("w%d", w), 3, time.Minute, kinds...)
				if err != nil {
					t.Error(err)
					return
				}
				if len(jobs) == 0 {
					return
				}
				mu.Lock()
				for _, j := range jobs {
					claimed[j.ID]++
				}
				mu.Unlock()
				total.Add(int64(len(jobs)))
			}
		})
	}
	wg.Wait()
	require.Len(t, claimed, n)
	require.Equal(t, int64(n), total.Load(), "each job claimed exactly once")
}

func testMigrateTwice(t *testing.T, open Opener) {
	s := open(t, NewClock(), nil)
	require.NoError(t, s.Migrate(context.Background()), "migrating an up-to-date database is a no-op")
}

// RequireUnattempted fails the test unless s holds one notification, still
// pending, and no job: applying it failed with storage's own error, which
// counts no attempt.
func RequireUnattempted(t testing.TB, s *store.Store) {
	t.Helper()
	counts, err := s.NotificationCounts(context.Background())
	require.NoError(t, err)
	require.Equal(t, map[string]int{incident.NotificationPending: 1}, counts, "still pending")
	jobs, err := s.ListJobs(context.Background(), incident.JobFilter{})
	require.NoError(t, err)
	require.Empty(t, jobs, "no retry job: no attempt counted")
}

// testMigrateNewerSchema migrates a database that a newer version
// migrated (as a downgrade or an old replica's restart meets it): it is
// refused, with a reason that says so, and nothing is recorded.
func testMigrateNewerSchema(t *testing.T, open Opener) {
	s := open(t, NewClock(), nil)
	ctx := context.Background()
	_, err := s.DB().ExecContext(ctx, s.Rebind(`INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)`), "9999_from_a_newer_version.sql", 1)
	require.NoError(t, err)
	var before int
	require.NoError(t, s.DB().QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&before))
	err = s.Migrate(ctx)
	require.ErrorContains(t, err, "migrated by a newer version of responder")
	require.ErrorContains(t, err, "9999_from_a_newer_version.sql")
	var after int
	require.NoError(t, s.DB().QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&after))
	require.Equal(t, before, after)
}

// openIncident returns a store holding one firing incident, and its ID.
func openIncident(t *testing.T, open Opener, c *Clock) (*store.Store, int64) {
	t.Helper()
	s, r := openRecording(t, open, c)
	accept(t, s, Payload(t, "am_v4_firing.json"), c.Now())
	applied := drain(t, s, r)
	require.Len(t, applied, 1)
	return s, applied[0].Incident.ID
}

// queuedDeliverJobs returns the ref IDs of the queued deliver jobs.
func queuedDeliverJobs(t *testing.T, s *store.Store) []int64 {
	t.Helper()
	jobs, err := s.ListJobs(context.Background(), incident.JobFilter{State: incident.JobQueued, Limit: 0})
	require.NoError(t, err)
	var refs []int64
	for _, j := range jobs {
		if j.Kind == incident.JobDeliver {
			refs = append(refs, j.RefID)
		}
	}
	return refs
}

func testPlanDeliveries(t *testing.T, open Opener) {
	c := NewClock()
	s, id := openIncident(t, open, c)
	ctx := context.Background()
	decision := incident.Decision{Kind: incident.DecisionRoute, Summary: "receivers: incidents, pagerduty", Detail: json.RawMessage(`{"receivers":["incidents","pagerduty"]}`), At: c.Now()}
	plans := []incident.Dispatch{
		{Receiver: "incidents", Integration: incident.IntegrationSlack, ConfigIndex: 0, Target: "#incidents"},
		{Receiver: "pagerduty", Integration: incident.IntegrationPagerDuty, ConfigIndex: 0, Target: "dedup"},
	}

	planned, err := s.PlanDeliveries(ctx, id, decision, plans)
	require.NoError(t, err)
	require.True(t, planned)
	first, err := s.GetIncident(ctx, id)
	require.NoError(t, err)
	require.Len(t, first.Decisions, 1)
	require.Equal(t, decision.Summary, first.Decisions[0].Summary)
	require.JSONEq(t, string(decision.Detail), string(first.Decisions[0].Detail))
	require.True(t, first.Decisions[0].At.Equal(c.Now()))
	require.Len(t, first.Deliveries, 2)
	require.Equal(t, "#incidents", first.Deliveries[0].Target)
	require.Equal(t, incident.IntegrationPagerDuty, first.Deliveries[1].Integration)
	require.ElementsMatch(t, []int64{first.Deliveries[0].ID, first.Deliveries[1].ID}, queuedDeliverJobs(t, s))

	// A second plan (a concurrent or repeated route job, possibly under a
	// reloaded configuration) changes nothing, and queues no second job
	// while one is queued.
	c.Advance(time.Minute)
	other := decision
	other.Summary, other.At = "receivers: other", c.Now()
	planned, err = s.PlanDeliveries(ctx, id, other, append(plans, incident.Dispatch{Receiver: "other", Integration: incident.IntegrationSlack, Target: "#other"}))
	require.NoError(t, err)
	require.False(t, planned)
	again, err := s.GetIncident(ctx, id)
	require.NoError(t, err)
	require.Equal(t, first.Decisions, again.Decisions)
	require.Equal(t, first.Deliveries, again.Deliveries)
	require.Len(t, queuedDeliverJobs(t, s), 2)
	n, err := s.QueueDeliveries(ctx, id)
	require.NoError(t, err)
	require.Zero(t, n, "a queued deliver job is enough")

	// A running job may have read an older state: a new change queues
	// another.
	claimed, err := s.Claim(ctx, "w", 10, time.Minute, kinds...)
	require.NoError(t, err)
	require.Len(t, claimed, 2)
	require.Empty(t, queuedDeliverJobs(t, s))
	n, err = s.QueueDeliveries(ctx, id)
	require.NoError(t, err)
	require.Equal(t, 2, n)

	_, err = s.PlanDeliveries(ctx, id, incident.Decision{Kind: "digest"}, nil)
	require.Equal(t, incident.Invalid, incident.KindOf(err))
}

// testAddDeliveries: a route decision can queue a reroute job due later;
// a reroute adds only the deliveries the incident lacks, with its decision,
// once, and can queue the next reroute.
func testAddDeliveries(t *testing.T, open Opener) {
	c := NewClock()
	s, id := openIncident(t, open, c)
	ctx := context.Background()
	monday := c.Now().Add(36 * time.Hour)
	slackPlan := incident.Dispatch{Receiver: "incidents", Integration: incident.IntegrationSlack, Target: "#incidents"}
	pdPlan := incident.Dispatch{Receiver: "pager", Integration: incident.IntegrationPagerDuty, Target: "dedup"}
	planned, _, err := s.PlanDeliveriesStorm(ctx, id, incident.Decision{Kind: incident.DecisionRoute, Summary: "receivers: incidents; muted: pager", At: c.Now()},
		[]incident.Dispatch{slackPlan}, store.StormPolicy{}, monday)
	require.NoError(t, err)
	require.True(t, planned)
	reroutes := func() []incident.Job {
		t.Helper()
		jobs, err := s.ListJobs(ctx, incident.JobFilter{State: incident.JobQueued})
		require.NoError(t, err)
		var out []incident.Job
		for _, j := range jobs {
			if j.Kind == incident.JobReroute {
				out = append(out, j)
			}
		}
		return out
	}
	rr := reroutes()
	require.Len(t, rr, 1, "queued with the route decision")
	require.Equal(t, id, rr[0].RefID)
	require.True(t, rr[0].RunAt.Equal(monday), "due when the route stops being muted: %s", rr[0].RunAt)
	claimed, err := s.Claim(ctx, "w", 10, time.Minute, incident.JobReroute)
	require.NoError(t, err)
	require.Empty(t, claimed, "not due before then")

	c.Advance(36 * time.Hour)
	routed, err := s.GetIncident(ctx, id)
	require.NoError(t, err)
	decision := incident.Decision{Kind: incident.DecisionReroute, Summary: "added: pager", At: c.Now()}
	added, err := s.AddDeliveries(ctx, id, decision, []incident.Dispatch{slackPlan, pdPlan}, time.Time{})
	require.NoError(t, err)
	require.Equal(t, 2-1, added, "the Slack delivery was there")
	inc, err := s.GetIncident(ctx, id)
	require.NoError(t, err)
	require.Len(t, inc.Deliveries, 2)
	require.Equal(t, incident.IntegrationPagerDuty, inc.Deliveries[1].Integration)
	require.Len(t, inc.Decisions, 2)
	require.Equal(t, incident.DecisionReroute, inc.Decisions[1].Kind)
	require.Equal(t, routed.Version+1, inc.Version, "a new version, so that the Slack message shows it")
	require.Len(t, queuedDeliverJobs(t, s), 2)

	// Again (another replica, or a job run twice): nothing added, no second
	// decision; the next reroute is queued all the same.
	next := c.Now().Add(24 * time.Hour)
	added, err = s.AddDeliveries(ctx, id, decision, []incident.Dispatch{pdPlan}, next)
	require.NoError(t, err)
	require.Zero(t, added)
	again, err := s.GetIncident(ctx, id)
	require.NoError(t, err)
	require.Len(t, again.Decisions, 2)
	require.Equal(t, inc.Version, again.Version)
	require.Len(t, reroutes(), 2)

	_, err = s.AddDeliveries(ctx, id, incident.Decision{Kind: incident.DecisionRoute}, []incident.Dispatch{pdPlan}, time.Time{})
	require.Equal(t, incident.Invalid, incident.KindOf(err))
}

func testLeaseDelivery(t *testing.T, open Opener) {
	c := NewClock()
	s, id := openIncident(t, open, c)
	ctx := context.Background()
	_, err := s.PlanDeliveries(ctx, id, incident.Decision{Kind: incident.DecisionRoute, Summary: "receivers: incidents", At: c.Now()},
		[]incident.Dispatch{{Receiver: "incidents", Integration: incident.IntegrationSlack, Target: "#incidents"}})
	require.NoError(t, err)
	inc, err := s.GetIncident(ctx, id)
	require.NoError(t, err)
	require.Len(t, inc.Deliveries, 1)
	did := inc.Deliveries[0].ID

	d, err := s.LeaseDelivery(ctx, did, "a", time.Minute)
	require.NoError(t, err)
	require.Empty(t, d.TS)
	_, err = s.LeaseDelivery(ctx, did, "b", time.Minute)
	require.Equal(t, incident.Conflict, incident.KindOf(err), "another owner waits for the lease")
	_, err = s.LeaseDelivery(ctx, did, "a", time.Minute)
	require.NoError(t, err, "the owner may lease again")
	_, err = s.LeaseDelivery(ctx, did+100, "a", time.Minute)
	require.Equal(t, incident.NotFound, incident.KindOf(err))

	d.ChannelID, d.TS, d.Permalink, d.LastAction = "C1", "1700000000.000100", "https://slack.example/p1", "posted"
	d.SyncedVersion, d.SyncedFiring, d.SyncedResolved = inc.Version, inc.FiringAlerts, inc.ResolvedAlerts
	require.NoError(t, s.SaveDelivery(ctx, *d, "a"))
	got, err := s.LeaseDelivery(ctx, did, "b", time.Minute)
	require.NoError(t, err, "saving ends the lease")
	require.Equal(t, "1700000000.000100", got.TS)
	require.Equal(t, "C1", got.ChannelID)
	require.Equal(t, "posted", got.LastAction)
	require.Equal(t, inc.Version, got.SyncedVersion)
	require.Equal(t, 1, got.Attempts)

	// b crashes; its lease expires.
	_, err = s.LeaseDelivery(ctx, did, "a", time.Minute)
	require.Equal(t, incident.Conflict, incident.KindOf(err))
	c.Advance(2 * time.Minute)
	_, err = s.LeaseDelivery(ctx, did, "a", time.Minute)
	require.NoError(t, err, "an expired lease is taken over")

	// A mark before a call out keeps the lease and is seen by the next
	// holder; only the holder may mark.
	require.Equal(t, incident.Conflict, incident.KindOf(s.MarkDelivery(ctx, did, "b", "posting")))
	require.NoError(t, s.MarkDelivery(ctx, did, "a", "posting"))
	_, err = s.LeaseDelivery(ctx, did, "b", time.Minute)
	require.Equal(t, incident.Conflict, incident.KindOf(err), "marking does not end the lease")
	c.Advance(2 * time.Minute)
	got, err = s.LeaseDelivery(ctx, did, "b", time.Minute)
	require.NoError(t, err)
	require.Equal(t, "posting", got.LastAction, "the next holder sees the mark")
}

// testPrune: Prune removes incidents resolved before the cutoff with
// everything recorded for them, duplicates of no incident, finished jobs
// and deployments; it keeps firing incidents, incidents with queued work,
// and everything after the cutoff. A state change redelivered after its
// incident was pruned is new: it opens the group's next episode.
func testPrune(t *testing.T, open Opener) {
	c := NewClock()
	s, r := openRecording(t, open, c)
	ctx := context.Background()
	db := s.DB()
	q := s.Rebind
	count := func(table, where string, args ...any) int {
		t.Helper()
		var n int
		require.NoError(t, db.QueryRowContext(ctx, q(`SELECT count(*) FROM `+table+` WHERE `+where), args...).Scan(&n))
		return n
	}
	base := Payload(t, "am_v4_firing.json")
	group := func(key string, states map[string]string) *incident.Message {
		m := withAlerts(t, base, c.Now().Add(-time.Minute), states)
		m.GroupKey = key
		return m
	}
	// episode fires then resolves the group; it returns the incident.
	episode := func(key string) int64 {
		t.Helper()
		accept(t, s, group(key, map[string]string{"a": "firing"}), c.Now())
		accept(t, s, group(key, map[string]string{"a": "resolved"}), c.Now())
		got := drain(t, s, r)
		require.Equal(t, incident.TransitionResolved, got[len(got)-1].Transition)
		return got[len(got)-1].Incident.ID
	}

	old := episode("old")
	oldResolved := group("old", map[string]string{"a": "resolved"})
	require.True(t, accept(t, s, oldResolved, c.Now()).Duplicate, "a retry")
	busy := episode("busy")
	_, err := db.ExecContext(ctx, q(`INSERT INTO jobs (kind, ref_id, incident_id, state, max_attempts, run_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
		"deliver", 1, busy, incident.JobQueued, 3, ns(c.Now()), ns(c.Now()), ns(c.Now()))
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, q(`INSERT INTO jobs (kind, ref_id, incident_id, state, max_attempts, run_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
		"deliver", 1, nil, incident.JobDone, 3, ns(c.Now()), ns(c.Now()), ns(c.Now()))
	require.NoError(t, err)
	firingMsg := group("firing", map[string]string{"a": "firing"})
	accept(t, s, firingMsg, c.Now())
	firing := drain(t, s, r)[0].Incident.ID
	// A copy of the firing group's notification: a duplicate of no
	// incident, whose states belong to the kept notification.
	require.True(t, accept(t, s, firingMsg, c.Now()).Duplicate)
	// A copy with other bytes (a reworded annotation) stores its own.
	reworded := clone(t, firingMsg)
	reworded.CommonAnnotations = template.KV{"summary": "reworded"}
	require.True(t, accept(t, s, reworded, c.Now()).Duplicate)
	_, err = s.RecordDeployment(ctx, incident.Deployment{Service: "checkout", DeployedAt: c.Now()})
	require.NoError(t, err)

	c.Advance(48 * time.Hour)
	recent := episode("recent")
	_, err = s.RecordDeployment(ctx, incident.Deployment{Service: "checkout", DeployedAt: c.Now()})
	require.NoError(t, err)
	require.Equal(t, 1, count("alerts", "incident_id = ?", old))
	require.Equal(t, 7, count("notification_states", "1 = 1"), "old, busy and recent: fired and resolved; firing: fired")

	got, err := s.Prune(ctx, c.Now().Add(-24*time.Hour), 100)
	require.NoError(t, err)
	require.Equal(t, store.Pruned{Incidents: 1, Notifications: 3, Jobs: 1, Deployments: 1}, got)
	require.Equal(t, 5, count("notification_states", "1 = 1"), "the old incident's two")
	// The reworded copy went, and its bytes with it: the same bytes again
	// are stored, not pointed to.
	rec := accept(t, s, reworded, c.Now())
	require.True(t, rec.Duplicate)
	var size int
	require.NoError(t, db.QueryRowContext(ctx, q(`SELECT length(payload) FROM notifications WHERE id = ?`), rec.NotificationID).Scan(&size))
	require.Positive(t, size, "the notification that had these bytes was pruned")
	require.True(t, accept(t, s, firingMsg, c.Now()).Duplicate, "the firing group's states are kept with their notification")
	_, err = s.GetIncident(ctx, old)
	require.Equal(t, incident.NotFound, incident.KindOf(err))
	for _, id := range []int64{busy, firing, recent} {
		_, err := s.GetIncident(ctx, id)
		require.NoError(t, err, "incident %d is kept", id)
	}
	for _, table := range []string{"alerts", "changes", "notifications", "jobs"} {
		require.Zero(t, count(table, "incident_id = ?", old), table)
	}
	require.Equal(t, 1, count("jobs", "incident_id = ? AND state = ?", busy, incident.JobQueued), "queued work is kept")
	require.Equal(t, 1, count("deployments", "1 = 1"))

	again, err := s.Prune(ctx, c.Now().Add(-24*time.Hour), 100)
	require.NoError(t, err)
	require.Zero(t, again.Total(), "nothing left before the cutoff")

	// Past Alertmanager's retention a redelivery is not expected; if one
	// comes, it is new, and the group's episodes go on.
	require.False(t, accept(t, s, group("old", map[string]string{"a": "firing"}), c.Now()).Duplicate)
	reopened := drain(t, s, r)
	require.Equal(t, incident.TransitionOpened, reopened[0].Transition)
	require.Equal(t, 2, reopened[0].Incident.Episode)
}

func ns(t time.Time) int64 { return t.UnixNano() }
