package app_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // The test reads the shared database directly.
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/routing/routingtest"
	"github.com/responder/responder/internal/testenv"
)

// The multi-replica test's load: groups, Slack channels they spread over,
// and queue settings short enough that a dead replica's leases expire soon.
const (
	replicaCount    = 3
	replicaGroups   = 500
	replicaChannels = 50
	replicaWorkers  = 8
	replicaLease    = 3 * time.Second
	// replicaPDDelay holds every PagerDuty answer, so that deliver jobs are
	// in flight when a replica is killed.
	replicaPDDelay = 200 * time.Millisecond
	replicaWait    = 60 * time.Second
	// Every replicaEligibleEvery-th group opts in to remediation.
	replicaEligibleEvery = 5
)

// TestReplicas_PostgreSQL runs three responder processes on one real
// PostgreSQL and delivers each of 500 alert groups to all three, as an
// Alertmanager HA cluster may. Part-way, one replica is SIGKILLed while it
// holds deliver jobs; the others take them over once their leases expire.
// In the end every group has exactly one incident, one Slack parent and one
// PagerDuty alert, and every fifth group (they opt in to remediation) one
// remediation run whose exec step left one marker file: nothing is lost,
// and nothing doubled (a PagerDuty trigger
// whose answer the dead replica never stored may be sent again, which
// PagerDuty deduplicates by dedup_key; the test bounds and reports it).
func TestReplicas_PostgreSQL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three responder processes on PostgreSQL; skipped with -short")
	}
	began := time.Now()
	phase := func(what string) { t.Logf("%6.2fs %s", time.Since(began).Seconds(), what) }
	dsn := testenv.StartPostgres(t)
	bin := buildCrashBinary(t)
	phase("postgres up, binary built")

	slackToken := "xoxb-replicas-test" //nolint:gosec // G101: a token for the fake Slack, not a credential.
	fakeSlack := routingtest.NewFakeSlack(t, slackToken)
	fakePD := routingtest.NewFakePagerDuty(t)
	fakePD.SetDelay(replicaPDDelay)
	channels := make([]string, replicaChannels)
	var routes, receivers strings.Builder
	for c := range replicaChannels {
		channels[c] = fakeSlack.AddChannel(fmt.Sprintf("#ch-%02d", c))
		fmt.Fprintf(&routes, "    - matchers: ['channel=\"ch-%02d\"']\n      receiver: ch-%02d\n", c, c)
		fmt.Fprintf(&receivers, "  - name: ch-%02d\n    slack_configs: [{ channel: '#ch-%02d' }]\n", c, c)
	}
	// The remediation runbook leaves one marker file per run; its 2 s step
	// timeout makes the remediation lease short, so that a dead replica's
	// runs are taken over within the test.
	markDir, rbDir := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(rbDir, "mark.yaml"), fmt.Appendf(nil, `
name: mark
match: ['alertname=~"ReplicaGroup.*"']
params:
  group: { label: alertname, pattern: '^ReplicaGroup[0-9]{4}$' }
guards: { cooldown: 1h, max_runs: 3, window: 24h }
steps:
  - name: mark
    exec: { command: /usr/bin/mktemp, args: ['-p', %q, 'run-{{ .Params.group }}.XXXXXX'], timeout: 2s }
`, markDir), 0o600))
	cfgFile := filepath.Join(t.TempDir(), "responder.yml")
	require.NoError(t, os.WriteFile(cfgFile, fmt.Appendf(nil, `global:
  slack_api_url: %q
  slack_bot_token: %q
  pagerduty_events_url: %q
storage:
  dsn: %s
  queue:
    workers: %d
    lease: %s
    poll_interval: 100ms
    min_backoff: 100ms
    max_backoff: 1s
webhook:
  authorization:
    credentials: %s
storm:
  enabled: false
remediation:
  enabled: true
  dry_run: false
  runbooks_dir: %s
  max_concurrent: 200
  storm_threshold: 100000
route:
  receiver: pagerduty
  routes:
    - matchers: ['severity="critical"']
      receiver: pagerduty
      continue: true
%sreceivers:
  - name: pagerduty
    pagerduty_configs: [{ routing_key: %q }]
%s`, fakeSlack.URL(), slackToken, fakePD.URL(), dsn, replicaWorkers, replicaLease, crashToken, rbDir, routes.String(), notifyRoutingKey, receivers.String()), 0o600))

	// Start the replicas one after the other: each migrates (the first
	// does the work, the others find it done under the migration lock).
	procs := make([]*crashProcess, replicaCount)
	for i := range procs {
		procs[i] = startCrashProcess(t, bin, cfgFile)
	}
	phase("replicas ready")

	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	host, err := os.Hostname()
	require.NoError(t, err)
	victim := procs[0]
	victimOwner := fmt.Sprintf("%s/%d/", host, victim.cmd.Process.Pid)

	payloads := make([][]byte, replicaGroups)
	alertnames := make([]string, replicaGroups)
	groupKeys := make([]string, replicaGroups)
	for i := range payloads {
		payloads[i], alertnames[i], groupKeys[i] = replicaPayload(t, i)
	}

	// Kill the victim once a third of the load is in and it holds running
	// jobs; note which.
	var (
		sent     atomic.Int64
		killed   atomic.Bool
		killOnce sync.Once
		inFlight []int64 // job IDs the victim held at the kill
	)
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopWatch:
				return
			case <-tick.C:
			}
			if sent.Load() < replicaGroups*replicaCount/3 {
				continue
			}
			var n int
			if err := db.QueryRowContext(t.Context(), `SELECT count(*) FROM jobs WHERE state = 'running' AND starts_with(lease_owner, $1)`, victimOwner).Scan(&n); err != nil || n == 0 {
				continue
			}
			killOnce.Do(func() {
				killed.Store(true)
				if err := victim.cmd.Process.Kill(); err != nil {
					t.Errorf("kill replica: %v", err)
				}
			})
			return
		}
	}()

	// Every group to every replica, as Alertmanager HA peers would each
	// send it, from concurrent senders.
	client := crashClient(t)
	var (
		mu      sync.Mutex
		acks    = map[int]int{} // group → 200s
		refused int
	)
	crashSend(3*crashSenders, replicaGroups*replicaCount, func(k int) bool {
		g, r := k/replicaCount, k%replicaCount
		res := crashPost(t.Context(), client, procs[r].addr, payloads[g])
		sent.Add(1)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case res.code == http.StatusOK:
			acks[g]++
		case r == 0 && killed.Load():
			refused++ // the dead replica: its peers have the group
		default:
			t.Errorf("group %d to replica %d: HTTP %d %s %v", g, r, res.code, res.body, res.err)
		}
		return true
	})
	close(stopWatch)
	<-watchDone
	phase(fmt.Sprintf("load sent: %d deliveries, %d refused by the killed replica", replicaGroups*replicaCount, refused))
	require.True(t, killed.Load(), "the victim never held running jobs while the load ran")
	victim.wait(t)
	for g := range replicaGroups {
		require.GreaterOrEqual(t, acks[g], replicaCount-1, "group %d acknowledged by the surviving replicas", g)
	}
	rows, err := db.QueryContext(t.Context(), `SELECT id, kind FROM jobs WHERE state = 'running' AND starts_with(lease_owner, $1)`, victimOwner)
	require.NoError(t, err)
	heldKinds := map[string]int{}
	for rows.Next() {
		var (
			id   int64
			kind string
		)
		require.NoError(t, rows.Scan(&id, &kind))
		inFlight = append(inFlight, id)
		heldKinds[kind]++
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	t.Logf("the killed replica held %d running jobs: %v", len(inFlight), heldKinds)

	// The survivors finish everything, the dead replica's jobs included
	// once their leases expire.
	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		require.NoError(t, db.QueryRowContext(t.Context(), q, args...).Scan(&n), q)
		return n
	}
	// Each group's PagerDuty alert, keyed by its dedup key; a remediation
	// run the kill left unknown is escalated under a key of its own.
	dedupKeys := make([]string, replicaGroups) // group g's is the SHA-256 of its group key
	groupDedup := make(map[string]bool, replicaGroups)
	for g, gk := range groupKeys {
		sum := sha256.Sum256([]byte(gk))
		dedupKeys[g] = hex.EncodeToString(sum[:])
		groupDedup[dedupKeys[g]] = true
	}
	groupsPaged := func() int {
		n := 0
		for key := range fakePD.Open() {
			if groupDedup[key] {
				n++
			}
		}
		return n
	}
	finished := func() bool {
		return count(`SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')`) == 0 &&
			count(`SELECT count(*) FROM remediation_runs WHERE state IN ('pending', 'running', 'awaiting_approval')`) == 0 &&
			count(`SELECT count(*) FROM notifications WHERE status IN ('pending', 'retry')`) == 0 &&
			groupsPaged() == replicaGroups
	}
	deadline := time.Now().Add(replicaWait)
	for !finished() {
		if time.Now().After(deadline) {
			t.Fatalf("the survivors did not finish the work within %s; unfinished jobs: %v; groups paged: %d",
				replicaWait, jobSummary(t, db), groupsPaged())
		}
		time.Sleep(100 * time.Millisecond)
	}
	phase("work finished")

	require.Zero(t, count(`SELECT count(*) FROM jobs WHERE state = 'parked'`), "parked jobs")
	require.Equal(t, replicaGroups, count(`SELECT count(*) FROM incidents`), "one incident per group")
	require.Equal(t, replicaGroups, count(`SELECT count(DISTINCT group_key) FROM incidents`))
	require.Zero(t, count(`SELECT count(*) FROM (SELECT 1 FROM changes GROUP BY group_key, fingerprint, starts_at, status HAVING count(*) <> 1) x`))
	require.Equal(t, replicaGroups, count(`SELECT count(*) FROM notifications WHERE status = 'processed'`), "one delivery per group applied, the others duplicates")
	require.Equal(t, replicaGroups, count(`SELECT count(*) FROM decisions WHERE kind = 'route'`), "each incident routed once")
	if len(inFlight) > 0 {
		var pending []int64
		rows, err := db.QueryContext(t.Context(), `SELECT id FROM jobs WHERE id = ANY($1) AND state <> 'done'`, inFlight)
		require.NoError(t, err)
		for rows.Next() {
			var id int64
			require.NoError(t, rows.Scan(&id))
			pending = append(pending, id)
		}
		require.NoError(t, rows.Close())
		require.Empty(t, pending, "jobs of the killed replica not finished by the others")
		require.Zero(t, count(`SELECT count(*) FROM jobs WHERE id = ANY($1) AND attempts < 2`, inFlight), "each was taken over")
	}

	// Slack: exactly one parent per group, in its channel.
	parents := 0
	for g, name := range alertnames {
		n := 0
		for _, m := range fakeSlack.Messages(channels[g%replicaChannels]) {
			if strings.Contains(m.Text+m.BlocksJSON, name) {
				n++
			}
		}
		require.Equal(t, 1, n, "slack parents of %s", name)
		parents += n
	}
	// PagerDuty: one open alert and one trigger per group, except where the
	// killed replica had sent a trigger whose answer it never recorded: the
	// replica that took over sends it again (PagerDuty deduplicates it by
	// dedup_key), so at most one group per worker of the killed replica.
	triggers := map[string]int{}
	for _, ev := range fakePD.Events() {
		if ev.EventAction == "trigger" {
			triggers[ev.DedupKey]++
		}
	}
	open := fakePD.Open()
	byCount := map[int]int{}
	for g, gk := range groupKeys {
		key := dedupKeys[g]
		require.Contains(t, open, key, "pagerduty alert of %s", gk)
		require.GreaterOrEqual(t, triggers[key], 1)
		require.LessOrEqual(t, triggers[key], 2, "triggers of %s", gk)
		byCount[triggers[key]]++
	}
	require.LessOrEqual(t, byCount[2], replicaWorkers, "repeated triggers beyond what the killed replica had in flight")
	t.Logf("%d groups: %d slack parents, %d pagerduty alerts; groups by pagerduty triggers sent (dedup_key makes repeats harmless): %v",
		replicaGroups, parents, len(open), byCount)

	// Remediation: one run per eligible group, none for the others; each
	// succeeded run's step ran once (one marker). A run whose step the
	// killed replica had started is never repeated: it ends unknown (and is
	// escalated), with the marker there or not depending on how far the
	// step got.
	runStates := map[string]int{}
	for g, name := range alertnames {
		var runs int
		var state sql.NullString
		require.NoError(t, db.QueryRowContext(t.Context(), `SELECT count(*), max(r.state) FROM remediation_runs r JOIN incidents i ON i.id = r.incident_id WHERE i.group_key = $1`,
			groupKeys[g]).Scan(&runs, &state))
		marks, err := filepath.Glob(filepath.Join(markDir, "run-"+name+".*"))
		require.NoError(t, err)
		if g%replicaEligibleEvery != 0 {
			require.Zero(t, runs, "remediation runs of %s, which did not opt in", name)
			require.Empty(t, marks, "markers of %s", name)
			continue
		}
		require.Equal(t, 1, runs, "remediation runs of %s", name)
		runStates[state.String]++
		require.LessOrEqual(t, len(marks), 1, "step executions of %s", name)
		if state.String != "unknown" {
			require.Equal(t, "succeeded", state.String, "run of %s", name)
			require.Len(t, marks, 1, "step executions of %s", name)
		}
	}
	require.LessOrEqual(t, runStates["unknown"], replicaWorkers, "runs left unknown beyond what the killed replica could hold")
	escalations := 0
	for key := range open {
		if !groupDedup[key] {
			escalations++
		}
	}
	require.Equal(t, runStates["unknown"], escalations, "one PagerDuty escalation per run the kill left unknown, nothing else")
	t.Logf("remediation runs by final state: %v", runStates)

	// What the replicas warned about (lock waits, retries), for the record.
	warnings := map[string]int{}
	for _, p := range procs {
		p.log.mu.Lock()
		for _, line := range p.log.lines {
			var rec struct{ Level, Msg, Err string }
			if json.Unmarshal([]byte(line), &rec) == nil && (rec.Level == "WARN" || rec.Level == "ERROR") {
				warnings[rec.Level+" "+rec.Msg+": "+firstLine(rec.Err)]++
			}
		}
		p.log.mu.Unlock()
	}
	for w, n := range warnings {
		t.Logf("%d× %s", n, w)
	}

	// The survivors stop cleanly.
	for _, p := range procs[1:] {
		require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
		p.wait(t)
	}
	phase("stopped")
}

// replicaPayload builds group i's notification from the firing fixture:
// its own alertname, group key and fingerprints, routed to channel i mod
// replicaChannels.
func replicaPayload(t *testing.T, i int) (payload []byte, alertname, groupKey string) {
	t.Helper()
	b, err := fs.ReadFile(os.DirFS(filepath.Join("..", "..", "testdata")), "am_v4_firing.json")
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	alertname = fmt.Sprintf("ReplicaGroup%04d", i)
	channel := fmt.Sprintf("ch-%02d", i%replicaChannels)
	groupKey = fmt.Sprintf(`{}/{severity="critical"}:{alertname=%q}`, alertname)
	m["groupKey"] = groupKey
	m["groupLabels"] = map[string]any{"alertname": alertname}
	common := m["commonLabels"].(map[string]any)
	common["alertname"], common["channel"] = alertname, channel
	eligible := i%replicaEligibleEvery == 0
	if eligible {
		common["auto_remediation"] = "enabled"
	}
	alerts := m["alerts"].([]any)
	for j, a := range alerts {
		a := maps.Clone(a.(map[string]any))
		labels := maps.Clone(a["labels"].(map[string]any))
		labels["alertname"], labels["channel"] = alertname, channel
		if eligible {
			labels["auto_remediation"] = "enabled"
		}
		a["labels"] = labels
		a["fingerprint"] = fmt.Sprintf("%012x%04x", i, j)
		alerts[j] = a
	}
	out, err := json.Marshal(m)
	require.NoError(t, err)
	return out, alertname, groupKey
}

// firstLine shortens an error for a summary.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

// jobSummary counts the unfinished jobs by kind, state and last error, for a
// failure message.
func jobSummary(t *testing.T, db *sql.DB) map[string]int {
	out := map[string]int{}
	rows, err := db.QueryContext(context.Background(), `SELECT kind, state, left(last_error, 120), count(*) FROM jobs WHERE state <> 'done' GROUP BY 1, 2, 3`)
	if err != nil {
		t.Logf("job summary: %v", err)
		return out
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var kind, state, lastErr string
		var n int
		if err := rows.Scan(&kind, &state, &lastErr, &n); err == nil {
			out[kind+"/"+state+" "+lastErr] = n
		}
	}
	return out
}
