package app_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite" // The test reads the database file directly.

	"github.com/responder/responder/internal/incident"
)

// The crash test's load: distinct notifications, senders, and the number of
// 200s after which the process is killed.
const (
	crashNotifications = 2000
	crashSenders       = 16
	crashKillAfter     = 600
	crashToken         = "crash-test-token"
	crashQueueWorkers  = 4
	crashWait          = 30 * time.Second
	// crashDrainWait bounds applying ~2,000 notifications, one fsynced
	// transaction each, on a slow shared disk.
	crashDrainWait = 60 * time.Second
)

// TestCrashSafety SIGKILLs a loaded responder and checks, after a restart on
// the same database, that no acknowledged notification was lost and that the
// work of each one ran exactly once.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test builds and kills the binary; skipped with -short")
	}
	began := time.Now()
	phase := func(what string) { t.Logf("%6.2fs %s", time.Since(began).Seconds(), what) }
	bin := buildCrashBinary(t)
	phase("built")
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "responder.db")
	cfgFile := filepath.Join(dir, "responder.yml")
	// A short lease, so that the jobs running at the kill are taken over soon
	// after the restart rather than a minute later (context jobs lease for
	// their gathering budget plus a margin).
	cfg := fmt.Sprintf(`context:
  budget: 2s
  timeout: 1s
storage:
  dsn: sqlite://%s
  queue:
    workers: %d
    lease: 3s
    poll_interval: 100ms
    min_backoff: 100ms
    max_backoff: 1s
webhook:
  authorization:
    credentials: %s
route:
  receiver: console
receivers:
  - name: console
`, dbPath, crashQueueWorkers, crashToken)
	require.NoError(t, os.WriteFile(cfgFile, []byte(cfg), 0o600))

	payloads := make([][]byte, crashNotifications)
	want := make([]crashGroup, crashNotifications)
	for i := range payloads {
		payloads[i], want[i] = crashPayload(t, i)
	}

	// Run 1: load, then SIGKILL part-way.
	p1 := startCrashProcess(t, bin, cfgFile)
	phase("run 1 ready")
	results := make([]crashResult, crashNotifications)
	var acked atomic.Int64
	var killOnce sync.Once
	var killed atomic.Bool
	kill := func() {
		killOnce.Do(func() {
			killed.Store(true)
			if err := p1.cmd.Process.Kill(); err != nil {
				t.Errorf("kill responder: %v", err)
			}
		})
	}
	client := crashClient(t)
	crashSend(crashSenders, crashNotifications, func(i int) bool {
		if killed.Load() {
			return false // never sent: Alertmanager would send it later
		}
		results[i] = crashPost(t.Context(), client, p1.addr, payloads[i])
		results[i].sent = true
		if results[i].code == http.StatusOK && acked.Add(1) >= crashKillAfter {
			kill()
		}
		return true
	})
	kill() // in case the load finished first
	p1.wait(t)
	phase("run 1 killed")

	var ackedBeforeKill, inFlight, refused, notSent, other []int
	for i, r := range results {
		switch {
		case !r.sent:
			notSent = append(notSent, i)
		case r.code == http.StatusOK:
			ackedBeforeKill = append(ackedBeforeKill, i)
		case r.code != 0:
			other = append(other, i)
		case errors.Is(r.err, syscall.ECONNREFUSED):
			refused = append(refused, i)
		default:
			inFlight = append(inFlight, i)
		}
	}
	t.Logf("run 1: %d acknowledged before the kill, %d in flight at the kill, %d refused after it, %d not sent",
		len(ackedBeforeKill), len(inFlight), len(refused), len(notSent))
	for _, i := range other {
		t.Errorf("notification %d: HTTP %d before the kill: %s", i, results[i].code, results[i].body)
	}
	require.GreaterOrEqual(t, len(ackedBeforeKill), crashKillAfter)
	require.Less(t, len(ackedBeforeKill), crashNotifications, "the kill came after all the load; nothing was tested")

	// Run 2: restart on the same database.
	p2 := startCrashProcess(t, bin, cfgFile)
	phase("run 2 ready")

	// Every acknowledged notification is on disk, before anything is resent.
	stored := crashStoredGroups(t, dbPath)
	t.Logf("after restart: %d notifications stored (%d acknowledged)", len(stored), len(ackedBeforeKill))
	for _, i := range ackedBeforeKill {
		require.True(t, stored[want[i].groupKey], "notification %d was acknowledged with 200 but is not stored", i)
	}

	// Resend what was not acknowledged, as Alertmanager would: all of it
	// must be accepted now. What was committed before the kill but not
	// acknowledged comes back as a duplicate.
	var resend []int
	resend = append(resend, inFlight...)
	resend = append(resend, refused...)
	resend = append(resend, notSent...)
	resent := make([]crashResult, len(resend))
	client = crashClient(t)
	crashSend(crashSenders, len(resend), func(k int) bool {
		resent[k] = crashPost(t.Context(), client, p2.addr, payloads[resend[k]])
		return true
	})
	phase("resent")
	var dupOnResend int
	for k, r := range resent {
		i := resend[k]
		require.NoError(t, r.err, "resending notification %d", i)
		require.Equal(t, http.StatusOK, r.code, "resending notification %d: %s", i, r.body)
		if r.duplicate {
			dupOnResend++
			require.True(t, stored[want[i].groupKey], "notification %d: a duplicate of nothing stored", i)
		} else {
			require.False(t, stored[want[i].groupKey], "notification %d was stored before, but its resend was not a duplicate", i)
		}
	}
	t.Logf("resent %d unacknowledged notifications: %d had been committed before the kill", len(resend), dupOnResend)

	// The queue drains: the jobs running at the kill are taken over once
	// their lease expires.
	var (
		left        []incident.Job
		lastMetrics map[string]float64
	)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("queue at the end: metrics %v; jobs (up to 5) %+v", lastMetrics, left[:min(5, len(left))])
		}
	})
	require.Eventually(t, func() bool {
		left = left[:0]
		for _, st := range []string{"queued", "running"} {
			var body struct {
				Jobs []incident.Job `json:"jobs"`
			}
			if err := p2.get(t.Context(), "/api/v1/jobs?state="+st, &body); err != nil || len(body.Jobs) > 0 {
				left = append(left, body.Jobs...)
				return false
			}
		}
		m, err := p2.queueMetrics(t.Context())
		lastMetrics = m
		return err == nil && m["queued"] == 0 && m["running"] == 0 && m["parked"] == 0
	}, crashDrainWait, 100*time.Millisecond, "the work queue did not drain")
	phase("queue drained")
	var parked struct {
		Jobs []json.RawMessage `json:"jobs"`
	}
	require.NoError(t, p2.get(t.Context(), "/api/v1/jobs?state=parked", &parked))
	require.Empty(t, parked.Jobs, "jobs were parked")
	var firing struct {
		Incidents []json.RawMessage `json:"incidents"`
	}
	require.NoError(t, p2.get(t.Context(), "/api/v1/incidents?status=firing&limit=1000", &firing))
	require.Len(t, firing.Incidents, 1000, "every group has a firing incident; the API caps a page at 1000")

	// A clean stop this time.
	require.NoError(t, p2.cmd.Process.Signal(syscall.SIGTERM))
	p2.wait(t)
	require.Zero(t, p2.cmd.ProcessState.ExitCode(), "exit code after SIGTERM; log:\n%s", p2.log.tail())

	phase("run 2 stopped")
	crashCheckDatabase(t, dbPath, want)
	phase("database checked")

	// The console line of an incident is printed once, after its commit: a
	// job that ran twice would print a second one (a kill between commit and
	// print may lose one, never add one).
	opened := map[string]int{}
	for _, p := range []*crashProcess{p1, p2} {
		for gk, n := range p.log.openedByGroup() {
			opened[gk] += n
		}
	}
	for gk, n := range opened {
		require.Equal(t, 1, n, "incident of %s opened %d times in the console", gk, n)
	}
	// At most one line per queue worker can be lost to the kill.
	require.GreaterOrEqual(t, len(opened), crashNotifications-crashQueueWorkers)
	t.Logf("total: %d notifications, %d acknowledged before the kill, %d in flight at the kill, %d stored before the resend, %d console lines",
		crashNotifications, len(ackedBeforeKill), len(inFlight), len(stored), len(opened))
}

// crashGroup is what one notification should leave behind.
type crashGroup struct {
	groupKey string
	// changes maps fingerprint to its status.
	changes map[string]string
}

// crashPayload builds notification i from the firing fixture: its own group,
// two or three alerts, and every fifth one with a resolved alert.
func crashPayload(t *testing.T, i int) ([]byte, crashGroup) {
	t.Helper()
	b, err := fs.ReadFile(os.DirFS(filepath.Join("..", "..", "testdata")), "am_v4_firing.json")
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	g := crashGroup{groupKey: fmt.Sprintf(`{}/{severity="critical"}:{alertname="CrashTest",crash="%d"}`, i), changes: map[string]string{}}
	m["groupKey"] = g.groupKey
	m["groupLabels"] = map[string]any{"alertname": "CrashTest", "crash": strconv.Itoa(i)}
	tmpl := m["alerts"].([]any)[0].(map[string]any)
	n := 2 + i%2
	alerts := make([]any, 0, n)
	for j := range n {
		a := maps.Clone(tmpl)
		fp := fmt.Sprintf("%012x%04x", i, j)
		a["fingerprint"] = fp
		a["labels"] = map[string]any{"alertname": "CrashTest", "crash": strconv.Itoa(i), "pod": fmt.Sprintf("pod-%d", j)}
		if i%5 == 0 && j == n-1 {
			a["status"], a["endsAt"] = "resolved", "2026-11-25T14:31:05Z"
		}
		g.changes[fp] = a["status"].(string)
		alerts = append(alerts, a)
	}
	m["alerts"] = alerts
	out, err := json.Marshal(m)
	require.NoError(t, err)
	return out, g
}

type crashResult struct {
	sent      bool
	code      int
	duplicate bool
	body      string
	err       error
}

func crashClient(t *testing.T) *http.Client {
	c := &http.Client{
		Timeout:   20 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: crashSenders, DisableCompression: true},
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func crashPost(ctx context.Context, client *http.Client, addr string, payload []byte) crashResult {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/webhook/alertmanager", bytes.NewReader(payload))
	if err != nil {
		return crashResult{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+crashToken)
	resp, err := client.Do(req)
	if err != nil {
		return crashResult{err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		// The status arrived but the body did not: not an acknowledgement.
		return crashResult{err: err}
	}
	r := crashResult{code: resp.StatusCode, body: string(b)}
	var body struct {
		Duplicate bool `json:"duplicate"`
	}
	if err := json.Unmarshal(b, &body); err == nil {
		r.duplicate = body.Duplicate
	}
	return r
}

// crashSend calls send(i) for i in [0, n) from workers goroutines; a worker
// stops taking work when send returns false.
func crashSend(workers, n int, send func(i int) bool) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				if !send(i) {
					// Drain so the producer never blocks.
					for range next {
					}
					return
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// buildCrashBinary builds cmd/responder once into a temporary directory.
func buildCrashBinary(t *testing.T) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "go", "env", "GOMOD").Output()
	require.NoError(t, err)
	root := filepath.Dir(strings.TrimSpace(string(out)))
	require.FileExists(t, filepath.Join(root, "go.mod"))
	bin := filepath.Join(t.TempDir(), "responder")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/responder") //nolint:gosec // our own module, into a temp dir
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", b)
	return bin
}

// crashProcess is one responder subprocess.
type crashProcess struct {
	cmd    *exec.Cmd
	addr   string
	log    *crashLog
	client *http.Client
	done   chan struct{}
}

// startCrashProcess starts the binary on a free loopback port, reads the
// port from its "listening" log line, and waits for /-/ready.
func startCrashProcess(t *testing.T, bin, cfgFile string) *crashProcess {
	t.Helper()
	p := &crashProcess{log: newCrashLog(), client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}, done: make(chan struct{})}
	//nolint:gosec,noctx // the binary just built; the test kills it itself, at a moment it chooses
	p.cmd = exec.Command(bin, "serve", "--config.file="+cfgFile, "--web.listen-address=127.0.0.1:0", "--log.format=json")
	p.cmd.Stderr = p.log
	p.cmd.Stdout = io.Discard
	require.NoError(t, p.cmd.Start())
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.client.CloseIdleConnections()
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("responder pid %d log (tail):\n%s", p.cmd.Process.Pid, p.log.tail())
		}
	})
	select {
	case p.addr = <-p.log.listening:
	case <-p.done:
		t.Fatalf("responder exited before listening: %v\n%s", p.cmd.ProcessState, p.log.tail())
	case <-time.After(crashWait):
		t.Fatalf("responder did not log its address within %s:\n%s", crashWait, p.log.tail())
	}
	require.Eventually(t, func() bool {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+p.addr+"/-/ready", nil)
		if err != nil {
			return false
		}
		resp, err := p.client.Do(req)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, crashWait, 20*time.Millisecond, "responder not ready")
	return p
}

// wait waits for the process to exit.
func (p *crashProcess) wait(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(crashWait):
		t.Fatalf("responder pid %d did not exit within %s", p.cmd.Process.Pid, crashWait)
	}
}

// get GETs an API path with credentials and decodes its JSON body.
func (p *crashProcess) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+crashToken)
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

// queueMetrics scrapes responder_queue_jobs by state.
func (p *crashProcess) queueMetrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), `responder_queue_jobs{state="`)
		if !ok {
			continue
		}
		state, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			return nil, fmt.Errorf("unexpected series %q", sc.Text())
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return nil, err
		}
		out[state] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no responder_queue_jobs in /metrics")
	}
	return out, nil
}

// crashLog collects a process's JSON log lines: it reports the listening
// address and counts "incident opened" console lines by group key.
type crashLog struct {
	mu        sync.Mutex
	partial   []byte
	lines     []string
	opened    map[string]int
	listening chan string
}

func newCrashLog() *crashLog {
	return &crashLog{opened: map[string]int{}, listening: make(chan string, 1)}
}

// Write implements io.Writer.
func (l *crashLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		l.lines = append(l.lines, line)
		var rec struct {
			Msg      string `json:"msg"`
			Address  string `json:"address"`
			GroupKey string `json:"group_key"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		switch rec.Msg {
		case "listening":
			select {
			case l.listening <- rec.Address:
			default:
			}
		case "incident opened":
			l.opened[rec.GroupKey]++
		}
	}
}

func (l *crashLog) openedByGroup() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.opened)
}

func (l *crashLog) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := l.lines[max(0, len(l.lines)-40):]
	return strings.Join(lines, "\n")
}

// openCrashDB opens the database file read-only.
func openCrashDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	q := url.Values{}
	q.Add("mode", "ro")
	q.Add("_pragma", "busy_timeout(10000)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.NoError(t, db.PingContext(t.Context()))
	return db
}

// crashStoredGroups returns the group keys that have a stored notification.
func crashStoredGroups(t *testing.T, path string) map[string]bool {
	t.Helper()
	db := openCrashDB(t, path)
	defer func() { _ = db.Close() }()
	rows, err := db.QueryContext(t.Context(), `SELECT DISTINCT group_key FROM notifications`)
	require.NoError(t, err)
	defer func() { _ = rows.Close() }()
	out := map[string]bool{}
	for rows.Next() {
		var gk string
		require.NoError(t, rows.Scan(&gk))
		out[gk] = true
	}
	require.NoError(t, rows.Err())
	return out
}

// crashCheckDatabase checks the stopped process's database: every group was
// applied exactly once.
func crashCheckDatabase(t *testing.T, path string, want []crashGroup) {
	t.Helper()
	db := openCrashDB(t, path)

	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		require.NoError(t, db.QueryRowContext(t.Context(), q, args...).Scan(&n), q)
		return n
	}
	require.Zero(t, count(`SELECT count(*) FROM notifications WHERE status = 'pending'`), "notifications left pending")
	require.Equal(t, len(want), count(`SELECT count(*) FROM notifications WHERE status = 'processed'`), "processed notifications")
	require.Equal(t, len(want), count(`SELECT count(DISTINCT group_key) FROM notifications`))
	// Deliveries are applied in their own commit; an ingest job exists only
	// for one whose inline apply failed, and it must have finished.
	require.Zero(t, count(`SELECT count(*) FROM jobs WHERE state <> 'done'`), "jobs not done")
	require.Zero(t, count(`SELECT count(*) FROM (SELECT group_key FROM incidents GROUP BY group_key HAVING count(*) <> 1)`), "groups with other than one incident")
	require.Equal(t, len(want), count(`SELECT count(*) FROM incidents`))
	require.Zero(t, count(`SELECT count(*) FROM (SELECT 1 FROM changes GROUP BY group_key, fingerprint, starts_at, status HAVING count(*) <> 1)`),
		"alert state changes recorded more than once")

	type change struct{ gk, fp, status string }
	got := map[change]int{}
	rows, err := db.QueryContext(t.Context(), `SELECT c.group_key, c.fingerprint, c.status FROM changes c JOIN incidents i ON i.id = c.incident_id AND i.group_key = c.group_key`)
	require.NoError(t, err)
	for rows.Next() {
		var c change
		require.NoError(t, rows.Scan(&c.gk, &c.fp, &c.status))
		got[c]++
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	wantChanges := map[change]int{}
	for _, g := range want {
		for fp, st := range g.changes {
			wantChanges[change{g.groupKey, fp, st}] = 1
		}
	}
	require.Len(t, got, len(wantChanges), "number of alert state changes")
	require.Equal(t, wantChanges, got)

	// Each incident's counters agree with its alerts.
	require.Zero(t, count(`SELECT count(*) FROM incidents i WHERE
		firing_alerts <> (SELECT count(*) FROM alerts a WHERE a.incident_id = i.id AND a.status = 'firing') OR
		resolved_alerts <> (SELECT count(*) FROM alerts a WHERE a.incident_id = i.id AND a.status = 'resolved') OR
		status <> 'firing'`), "incidents whose counters or status disagree with their alerts")
	// Each processed notification points at its group's incident.
	require.Zero(t, count(`SELECT count(*) FROM notifications n WHERE n.status = 'processed' AND NOT EXISTS
		(SELECT 1 FROM incidents i WHERE i.id = n.incident_id AND i.group_key = n.group_key)`))
}
