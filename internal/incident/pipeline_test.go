package incident_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memQueue is an in-memory JobQueue with the same lease rules as the store.
type memQueue struct {
	mu   sync.Mutex
	jobs map[int64]*incident.Job
	runs []time.Time // when each failure was recorded
}

var _ incident.JobQueue = (*memQueue)(nil)

func newMemQueue(jobs ...incident.Job) *memQueue {
	q := &memQueue{jobs: map[int64]*incident.Job{}}
	for _, j := range jobs {
		j.State = incident.JobQueued
		q.jobs[j.ID] = &j
	}
	return q
}

func (q *memQueue) Claim(_ context.Context, owner string, n int, _ time.Duration, kinds ...string) ([]incident.Job, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []incident.Job
	for _, j := range q.jobs {
		if len(out) == n {
			break
		}
		if j.State == incident.JobQueued && !j.RunAt.After(time.Now()) && slices.Contains(kinds, j.Kind) {
			j.State, j.Owner = incident.JobRunning, owner
			j.Attempts++
			out = append(out, *j)
		}
	}
	return out, nil
}

func (q *memQueue) Complete(_ context.Context, j incident.Job) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.jobs[j.ID].State = incident.JobDone
	return nil
}

func (q *memQueue) Fail(_ context.Context, j incident.Job, cause error, retryAt time.Time, park bool) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	cur := q.jobs[j.ID]
	cur.State, cur.RunAt, cur.LastError = incident.JobQueued, retryAt, cause.Error()
	if park {
		cur.State = incident.JobParked
	}
	q.runs = append(q.runs, time.Now())
	return nil
}

func (q *memQueue) Release(_ context.Context, j incident.Job, after time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	cur := q.jobs[j.ID]
	cur.State, cur.RunAt = incident.JobQueued, time.Now().Add(after)
	cur.Attempts--
	return nil
}

func (q *memQueue) get(id int64) incident.Job {
	q.mu.Lock()
	defer q.mu.Unlock()
	return *q.jobs[id]
}

func TestPipeline_Run(t *testing.T) {
	tests := []struct {
		name      string
		handler   func(calls int) error
		wantState string
		wantCalls int
		wantError string
	}{
		{"success completes", func(int) error { return nil }, incident.JobDone, 1, ""},
		{"transient failure is retried until it succeeds", func(calls int) error {
			if calls < 3 {
				return errors.New("slack: 503")
			}
			return nil
		}, incident.JobDone, 3, ""},
		{"permanent failure parks at once", func(int) error { return incident.Permanent(errors.New("ok:false channel_not_found")) }, incident.JobParked, 1, "ok:false channel_not_found"},
		{"exhausted attempts park", func(int) error { return errors.New("always down") }, incident.JobParked, 5, "always down"},
		{"a panic parks the job and spares the worker", func(int) error { panic("boom") }, incident.JobParked, 1, "handler panic: boom"},
		{"a busy target is retried without spending attempts", func(calls int) error {
			if calls <= 20 {
				return incident.Busy(errors.New("lease held"), 100*time.Millisecond)
			}
			return nil
		}, incident.JobDone, 21, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newMemQueue(incident.Job{ID: 1, Kind: "k", MaxAttempts: 5})
				reg := prometheus.NewPedanticRegistry()
				p := incident.NewPipeline(slog.New(slog.DiscardHandler), q, incident.PipelineOptions{
					Workers: 2, MinBackoff: time.Second, MaxBackoff: 8 * time.Second, PollInterval: 100 * time.Millisecond, Registerer: reg,
				})
				calls := 0
				p.Register("k", incident.HandlerFunc(func(context.Context, incident.Job) error {
					calls++
					return tt.handler(calls)
				}))
				runFor(t, p, time.Minute) // fake time: enough for every backoff
				got := q.get(1)
				require.Equal(t, tt.wantState, got.State)
				require.Equal(t, tt.wantCalls, calls)
				require.Contains(t, got.LastError, tt.wantError)
				if tt.wantState == incident.JobParked {
					require.InDelta(t, 1, testutil.ToFloat64(prometheusCounter(t, reg, "parked")), 0)
				}
			})
		})
	}
}

// runFor runs p for d (of synctest's time) and waits until it stops.
func runFor(t *testing.T, p *incident.Pipeline, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	time.Sleep(d)
	cancel()
	<-done
}

// prometheusCounter finds the attempts counter for kind "k" and outcome.
func prometheusCounter(t *testing.T, reg *prometheus.Registry, outcome string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "responder_queue_job_attempts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == "k" && labels["outcome"] == outcome {
				return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return m.GetCounter().GetValue() })
			}
		}
	}
	t.Fatalf("no counter for outcome %s", outcome)
	return nil
}

func TestPipeline_BackoffGrows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newMemQueue(incident.Job{ID: 1, Kind: "k", MaxAttempts: 6})
		p := incident.NewPipeline(slog.New(slog.DiscardHandler), q, incident.PipelineOptions{
			Workers: 1, MinBackoff: time.Second, MaxBackoff: 10 * time.Second, PollInterval: 10 * time.Millisecond,
		})
		var starts []time.Time
		p.Register("k", incident.HandlerFunc(func(context.Context, incident.Job) error {
			starts = append(starts, time.Now())
			return errors.New("down")
		}))
		runFor(t, p, 2*time.Minute)
		require.Len(t, starts, 6)
		// Gaps follow 1s, 2s, 4s, 8s, 10s (capped), each jittered into the
		// upper half of its interval.
		want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second}
		for i, w := range want {
			gap := starts[i+1].Sub(starts[i])
			require.GreaterOrEqual(t, gap, w/2, "gap %d", i)
			require.LessOrEqual(t, gap, w+20*time.Millisecond, "gap %d", i)
		}
	})
}

func TestPipeline_WakeRunsWorkWithoutPolling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newMemQueue()
		p := incident.NewPipeline(slog.New(slog.DiscardHandler), q, incident.PipelineOptions{Workers: 1, PollInterval: time.Hour})
		ran := make(chan time.Time, 1)
		p.Register("k", incident.HandlerFunc(func(context.Context, incident.Job) error { ran <- time.Now(); return nil }))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { _ = p.Run(ctx); close(done) }()
		synctest.Wait()
		q.mu.Lock()
		q.jobs[7] = &incident.Job{ID: 7, Kind: "k", State: incident.JobQueued, MaxAttempts: 3}
		q.mu.Unlock()
		start := time.Now()
		p.Wake()
		at := <-ran
		require.Equal(t, start, at, "the job ran at once, not at the next poll")
		cancel()
		<-done
	})
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	for attempts := 1; attempts < 20; attempts++ {
		d := incident.Backoff(attempts, time.Second, time.Minute)
		require.GreaterOrEqual(t, d, time.Second/2)
		require.LessOrEqual(t, d, time.Minute)
	}
}

// errDiskFull stands for a storage driver's error that storage reports as
// its own (PipelineOptions.StorageFailed).
var errDiskFull = errors.New("database or disk is full (5)")

// storageError is how a storage failure reaches a handler: the store's
// classified error keeps the driver's in Err, out of its message.
func storageError() error {
	return fmt.Errorf("route incident 7: %w", &incident.Error{Kind: incident.Unavailable, Msg: "storage cannot commit: commit", Err: errDiskFull})
}

// TestPipeline_StorageFailureIsNoAttempt: a handler that fails because
// storage did (a full disk for far longer than a job's attempts last) is
// handed back without counting an attempt, due again after StorageRetry,
// for as long as it lasts, and runs once storage works again. Before, each
// failure was an attempt with a growing backoff, and the job was parked
// after its fifth.
func TestPipeline_StorageFailureIsNoAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newMemQueue(incident.Job{ID: 1, Kind: "k", MaxAttempts: 5})
		reg := prometheus.NewPedanticRegistry()
		p := incident.NewPipeline(slog.New(slog.DiscardHandler), q, incident.PipelineOptions{
			Workers: 2, MinBackoff: time.Second, MaxBackoff: 8 * time.Second, PollInterval: 100 * time.Millisecond, Registerer: reg,
			StorageFailed: func(err error) bool { return errors.Is(err, errDiskFull) }, StorageRetry: 4 * time.Second,
		})
		var starts []time.Time
		p.Register("k", incident.HandlerFunc(func(context.Context, incident.Job) error {
			starts = append(starts, time.Now())
			if len(starts) <= 30 {
				return storageError()
			}
			return nil
		}))
		runFor(t, p, 5*time.Minute)
		got := q.get(1)
		require.Equal(t, incident.JobDone, got.State, "not parked: %s", got.LastError)
		require.Len(t, starts, 31)
		require.Equal(t, 1, got.Attempts, "only the attempt that succeeded counts")
		for i := 1; i < len(starts); i++ {
			gap := starts[i].Sub(starts[i-1])
			require.GreaterOrEqual(t, gap, 2*time.Second, "gap %d: StorageRetry jittered into its upper half", i)
			require.LessOrEqual(t, gap, 4*time.Second+100*time.Millisecond, "gap %d: StorageRetry, not a growing backoff", i)
		}
		for outcome, want := range map[string]float64{"storage": 30, "done": 1, "retry": 0, "parked": 0} {
			require.InDelta(t, want, testutil.ToFloat64(prometheusCounter(t, reg, outcome)), 0, outcome)
		}
	})
}

// TestPipeline_StorageFailureAfterTimeoutIsAnAttempt: a job that used up
// its time counts the attempt even when what failed last was storage
// (a statement cut short by the job's deadline): otherwise a job that
// always times out would never park.
func TestPipeline_StorageFailureAfterTimeoutIsAnAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newMemQueue(incident.Job{ID: 1, Kind: "k", MaxAttempts: 3})
		p := incident.NewPipeline(slog.New(slog.DiscardHandler), q, incident.PipelineOptions{
			Workers: 1, MinBackoff: time.Second, MaxBackoff: time.Second, PollInterval: 100 * time.Millisecond,
			Lease: 10 * time.Second, JobTimeout: 5 * time.Second,
			StorageFailed: func(err error) bool { return errors.Is(err, errDiskFull) },
		})
		calls := 0
		p.Register("k", incident.HandlerFunc(func(ctx context.Context, _ incident.Job) error {
			calls++
			<-ctx.Done()
			return storageError()
		}))
		runFor(t, p, time.Minute)
		got := q.get(1)
		require.Equal(t, incident.JobParked, got.State)
		require.Equal(t, 3, calls)
		require.Contains(t, got.LastError, "timed out after 5s")
	})
}

// TestPipeline_LogNamesCause: the log line of a failed or parked job names
// the cause an *incident.Error keeps out of its message (its Error is Msg
// only, for HTTP answers): before, a job parked on a full disk was logged
// with err="route incident 7: storage cannot commit: commit" and no word of
// the disk.
func TestPipeline_LogNamesCause(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		line    string
		wantErr string
	}{
		{
			"parked", incident.Permanent(storageError()), "job parked at once",
			`err="route incident 7: storage cannot commit: commit: database or disk is full (5)"`,
		},
		{
			"retried", storageError(), "job failed, will retry",
			`err="route incident 7: storage cannot commit: commit: database or disk is full (5)"`,
		},
		{
			"a message that holds its cause says it once", incident.Errorf(incident.Unavailable, "load incident 7: %w", errDiskFull), "job failed, will retry",
			`err="load incident 7: database or disk is full (5)"`,
		},
		{
			"a nested cause", &incident.Error{Msg: "deliver 3", Err: &incident.Error{Msg: "storage cannot commit: begin", Err: errDiskFull}}, "job failed, will retry",
			`err="deliver 3: storage cannot commit: begin: database or disk is full (5)"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newMemQueue(incident.Job{ID: 1, Kind: "k", MaxAttempts: 5})
				var logs testenv.LogBuffer
				p := incident.NewPipeline(slog.New(slog.NewTextHandler(&logs, nil)), q, incident.PipelineOptions{Workers: 1, PollInterval: 100 * time.Millisecond})
				p.Register("k", incident.HandlerFunc(func(context.Context, incident.Job) error { return tt.err }))
				runFor(t, p, 500*time.Millisecond)
				var line string
				for l := range strings.Lines(logs.String()) {
					if strings.Contains(l, tt.line) {
						line = l
						break
					}
				}
				require.NotEmpty(t, line, "no %q line in:\n%s", tt.line, logs.String())
				require.Contains(t, line, tt.wantErr)
			})
		})
	}
}

// failingClaims is a memQueue whose Claim fails while fail is set.
type failingClaims struct {
	*memQueue
	fail atomic.Bool
}

func (q *failingClaims) Claim(ctx context.Context, owner string, n int, lease time.Duration, kinds ...string) ([]incident.Job, error) {
	if q.fail.Load() {
		return nil, fmt.Errorf("claim jobs: %w", &incident.Error{Kind: incident.Unavailable, Msg: "storage cannot commit: begin", Err: errors.New("connection refused")})
	}
	return q.memQueue.Claim(ctx, owner, n, lease, kinds...)
}

// TestPipeline_ClaimFailuresLoggedOncePerPipeline: while claims fail
// (storage down), every worker tries again on every poll. The pipeline
// logs it when it starts, then at most once a minute with failing_for and
// the count, and once when claiming works again; each worker logged the
// start (16 + 8 + 4 identical lines for the three pipelines), and the
// recovery went unsaid.
func TestPipeline_ClaimFailuresLoggedOncePerPipeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &failingClaims{memQueue: newMemQueue()}
		q.fail.Store(true)
		var logs testenv.LogBuffer
		p := incident.NewPipeline(slog.New(slog.NewTextHandler(&logs, nil)), q, incident.PipelineOptions{Workers: 16, PollInterval: time.Second})
		p.Register("k", incident.HandlerFunc(func(context.Context, incident.Job) error { return nil }))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { _ = p.Run(ctx); close(done) }()
		time.Sleep(150*time.Second + 500*time.Millisecond)
		q.fail.Store(false)
		time.Sleep(5 * time.Second)
		cancel()
		<-done

		var got []string
		for l := range strings.Lines(logs.String()) {
			_, l, _ = strings.Cut(strings.TrimSpace(l), " ") // time=…
			got = append(got, l)
		}
		cause := ` err="claim jobs: storage cannot commit: begin: connection refused"`
		want := []string{
			`level=WARN msg="claim jobs failed, will retry on next poll"` + cause,
			`level=WARN msg="claiming jobs still fails" failing_for=1m0s failed_claims=961` + cause,
			`level=WARN msg="claiming jobs still fails" failing_for=2m0s failed_claims=1921` + cause,
			`level=INFO msg="claiming jobs works again" failing_for=2m31s failed_claims=2416`,
		}
		require.Equal(t, want, got, "16 workers fail every second for 2m31s")
	})
}

// TestPipeline_ParkedLogSaysWhy: a parked job's error line says whether it
// was parked after its last attempt or at once, on its first, because its
// error is permanent (Slack's invalid_auth); both said "after its last
// attempt", at attempt=1 too.
func TestPipeline_ParkedLogSaysWhy(t *testing.T) {
	tests := []struct {
		name     string
		job      incident.Job
		err      error
		wantLine string
	}{
		{
			"permanent",
			incident.Job{ID: 1, Kind: "k", MaxAttempts: 5},
			incident.Permanent(errors.New("slack: invalid_auth")),
			`level=ERROR msg="job parked at once: its error is permanent (no retry can fix it); see /api/v1/jobs?state=parked" job_id=1 kind=k attempt=1 err="slack: invalid_auth"`,
		},
		{
			"attempts used up",
			incident.Job{ID: 1, Kind: "k", MaxAttempts: 1},
			errors.New("slack: 503"),
			`level=ERROR msg="job parked after its last attempt; see /api/v1/jobs?state=parked" job_id=1 kind=k attempt=1 err="slack: 503"`,
		},
		{
			"permanent on its last attempt",
			incident.Job{ID: 1, Kind: "k", Attempts: 4, MaxAttempts: 5},
			incident.Permanent(errors.New("slack: invalid_auth")),
			`level=ERROR msg="job parked after its last attempt; see /api/v1/jobs?state=parked" job_id=1 kind=k attempt=5 err="slack: invalid_auth"`,
		},
		{
			"its lease expired once too often",
			incident.Job{ID: 1, Kind: "k", Attempts: 5, MaxAttempts: 5},
			nil,
			`level=ERROR msg="job parked after its last attempt; see /api/v1/jobs?state=parked" job_id=1 kind=k attempt=6 err="attempt 6 exceeds max attempts 5 (its lease expired while running)"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newMemQueue(tt.job)
				var logs testenv.LogBuffer
				p := incident.NewPipeline(slog.New(slog.NewTextHandler(&logs, nil)), q, incident.PipelineOptions{Workers: 1, PollInterval: 100 * time.Millisecond})
				p.Register("k", incident.HandlerFunc(func(context.Context, incident.Job) error { return tt.err }))
				runFor(t, p, time.Second)
				require.Equal(t, incident.JobParked, q.get(1).State)
				var got []string
				for l := range strings.Lines(logs.String()) {
					if strings.Contains(l, "level=ERROR") {
						_, l, _ = strings.Cut(strings.TrimSpace(l), " ") // time=…
						got = append(got, l)
					}
				}
				require.Equal(t, []string{tt.wantLine}, got)
			})
		})
	}
}
