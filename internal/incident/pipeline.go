package incident

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// JobQueue is the durable queue the Pipeline drains. Implementations must be
// safe for several workers and several replicas: Claim hands each due job to
// exactly one caller until its lease expires.
type JobQueue interface {
	// Claim leases up to n due jobs of the given kinds.
	Claim(ctx context.Context, owner string, n int, lease time.Duration, kinds ...string) ([]Job, error)
	Complete(ctx context.Context, j Job) error
	Fail(ctx context.Context, j Job, cause error, retryAt time.Time, park bool) error
	// Release hands a job back without counting the attempt, due again
	// after the given delay: work interrupted by shutdown, or that found its
	// target busy.
	Release(ctx context.Context, j Job, after time.Duration) error
}

// Handler runs one job. Returning nil completes it; an error retries it
// later, or parks it when the error is Permanent or attempts are exhausted.
type Handler interface {
	Handle(ctx context.Context, j Job) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, j Job) error

// Handle implements Handler.
func (f HandlerFunc) Handle(ctx context.Context, j Job) error { return f(ctx, j) }

// PipelineOptions tunes a Pipeline. Zero fields get defaults.
type PipelineOptions struct {
	Owner   string
	Workers int
	// BatchSize is how many due jobs a worker claims at once.
	BatchSize    int
	MinBackoff   time.Duration
	MaxBackoff   time.Duration
	Lease        time.Duration
	PollInterval time.Duration
	// LeaseFunc, when set, gives each claim's lease instead of Lease (the
	// remediation pipeline derives it from the runbooks in force); an
	// attempt's timeout is then four fifths of it.
	LeaseFunc func() time.Duration
	// JobTimeout bounds one attempt; it must be shorter than Lease.
	JobTimeout time.Duration
	// StorageFailed, when set, reports whether a handler's error is the
	// storage's own failure, which passes with time (a full disk, a lost
	// connection, a deadlock), rather than the job's: such a job is handed
	// back without counting the attempt, due again after StorageRetry.
	StorageFailed func(error) bool
	// StorageRetry is when a job handed back after a storage failure is due
	// again (jittered over its upper half, so that the jobs a failure
	// stopped do not all come back at once).
	StorageRetry time.Duration
	// Metrics are the attempt counters and duration histograms, shared by
	// a process's pipelines (their job kinds differ); when nil, the
	// pipeline makes its own and registers them with Registerer, if set.
	Metrics    *PipelineMetrics
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// PipelineMetrics are the metrics of job attempts, by kind.
type PipelineMetrics struct {
	attempts *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewPipelineMetrics returns the metrics for the pipelines of one process,
// registered with reg when it is not nil.
func NewPipelineMetrics(reg prometheus.Registerer) *PipelineMetrics {
	m := &PipelineMetrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_queue_job_attempts_total",
			Help: "Job attempts by kind and outcome (done, retry, parked, busy: handed back because its target was busy, storage: handed back because storage failed).",
		}, []string{"kind", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "responder_queue_job_duration_seconds",
			Help:    "Duration of one job attempt, by kind.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"kind"}),
	}
	if reg != nil {
		reg.MustRegister(m.attempts, m.duration)
	}
	return m
}

// Pipeline runs queued jobs with a pool of workers: it claims due jobs,
// dispatches them to the handler registered for their kind, and completes,
// retries (exponential backoff with jitter) or parks them.
type Pipeline struct {
	logger   *slog.Logger
	queue    JobQueue
	opts     PipelineOptions
	handlers map[string]Handler
	wake     chan struct{}

	attempts *prometheus.CounterVec
	duration *prometheus.HistogramVec
	storage  FailureLog // jobs handed back because storage failed
	claims   FailureLog // failed claims, of every worker
}

// defaultStorageRetry is PipelineOptions.StorageRetry's default: soon
// enough that work resumes within seconds of storage's recovery, seldom
// enough that a few hundred waiting jobs do not hammer a database that is
// failing.
const defaultStorageRetry = 5 * time.Second

// NewPipeline returns a Pipeline; register handlers before Run.
func NewPipeline(logger *slog.Logger, queue JobQueue, opts PipelineOptions) *Pipeline {
	if opts.Owner == "" {
		opts.Owner = "responder"
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 16
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(5*time.Minute, opts.MinBackoff)
	}
	if opts.Lease <= 0 {
		opts.Lease = time.Minute
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.JobTimeout <= 0 || opts.JobTimeout >= opts.Lease {
		opts.JobTimeout = opts.Lease * 4 / 5
	}
	if opts.StorageRetry <= 0 {
		opts.StorageRetry = defaultStorageRetry
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Pipeline{
		logger:   logger,
		queue:    queue,
		opts:     opts,
		handlers: map[string]Handler{},
		wake:     make(chan struct{}, 1),
	}
	m := opts.Metrics
	if m == nil {
		m = NewPipelineMetrics(opts.Registerer)
	}
	p.attempts, p.duration = m.attempts, m.duration
	return p
}

// Backoff returns the pipeline's retry delays, its defaults applied: the
// first retry's and the longest.
func (p *Pipeline) Backoff() (minDelay, maxDelay time.Duration) {
	return p.opts.MinBackoff, p.opts.MaxBackoff
}

// Register routes jobs of kind to h. It must be called before Run.
func (p *Pipeline) Register(kind string, h Handler) {
	p.handlers[kind] = h
	for _, o := range []string{"done", "retry", "parked", "busy", "storage"} {
		p.attempts.WithLabelValues(kind, o)
	}
	p.duration.WithLabelValues(kind)
}

// Wake tells idle workers that new work was committed. It never blocks.
func (p *Pipeline) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run works until ctx is cancelled. A job in flight at that moment is not
// abandoned half-way by the pipeline itself: its handler sees the
// cancellation, and whatever it did not commit is retried after its lease
// expires, here or on another replica.
func (p *Pipeline) Run(ctx context.Context) error {
	kinds := slices.Sorted(maps.Keys(p.handlers))
	if len(kinds) == 0 {
		// Nothing to run here (yet); other replicas may have handlers.
		<-ctx.Done()
		return nil
	}
	var wg sync.WaitGroup
	for i := range p.opts.Workers {
		wg.Go(func() { p.work(ctx, fmt.Sprintf("%s/%d", p.opts.Owner, i), kinds) })
	}
	wg.Wait()
	return nil
}

func (p *Pipeline) work(ctx context.Context, owner string, kinds []string) {
	poll := time.NewTicker(p.opts.PollInterval)
	defer poll.Stop()
	for ctx.Err() == nil {
		lease, timeout := p.opts.Lease, p.opts.JobTimeout
		if p.opts.LeaseFunc != nil {
			lease = p.opts.LeaseFunc()
			timeout = lease * 4 / 5
		}
		jobs, err := p.queue.Claim(ctx, owner, p.opts.BatchSize, lease, kinds...)
		switch {
		case err == nil:
			if f, ok := p.claims.Recovered(p.opts.Now()); ok {
				p.logger.InfoContext(ctx, "claiming jobs works again", "failing_for", f.For.Round(time.Millisecond), "failed_claims", f.Total)
			}
		case ctx.Err() == nil:
			p.logClaimFailure(ctx, err)
		}
		if len(jobs) > 0 {
			if len(jobs) == p.opts.BatchSize {
				// There may be more: wake an idle worker to help.
				p.Wake()
			}
			for _, j := range jobs {
				p.run(ctx, j, timeout)
			}
			// Keep draining while there is work.
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-poll.C:
		}
	}
}

// logClaimFailure logs a failed claim, if it is news: while storage is
// down every worker fails on every poll, and the pipeline says so when it
// starts and at most once every FailureLogEvery while it lasts.
func (p *Pipeline) logClaimFailure(ctx context.Context, err error) {
	f, ok := p.claims.Failed(p.opts.Now())
	switch {
	case !ok:
	case f.First:
		p.logger.WarnContext(ctx, "claim jobs failed, will retry on next poll", "err", Detail(err))
	default:
		p.logger.WarnContext(ctx, "claiming jobs still fails", "failing_for", f.For.Round(time.Second), "failed_claims", f.Total, "err", Detail(err))
	}
}

var errNoHandler = errors.New("no handler registered for job kind")

// exhausted reports a job whose lease expired more often than it may be
// tried: it keeps taking its worker (or the process) down, so it must not
// run again.
func exhausted(j Job) error {
	if j.Attempts <= j.MaxAttempts {
		return nil
	}
	return Permanent(fmt.Errorf("attempt %d exceeds max attempts %d (its lease expired while running)", j.Attempts, j.MaxAttempts))
}

func (p *Pipeline) run(ctx context.Context, j Job, timeout time.Duration) {
	h, ok := p.handlers[j.Kind]
	start := p.opts.Now()
	err := exhausted(j) // recorded below as parked
	storage := false
	switch {
	case err != nil:
	case !ok:
		err = Permanent(fmt.Errorf("%w %q", errNoHandler, j.Kind))
	default:
		jctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("job %s timed out after %s", j.Kind, timeout))
		err = safeHandle(jctx, h, j)
		switch {
		case err == nil:
		case jctx.Err() != nil && ctx.Err() == nil:
			// The job used up its time, whatever failed last: that is
			// an attempt, or a job that always times out would never
			// park.
			err = fmt.Errorf("%w: %w", err, context.Cause(jctx))
		case p.opts.StorageFailed != nil && p.opts.StorageFailed(err):
			storage = true
		}
		cancel()
	}
	p.duration.WithLabelValues(j.Kind).Observe(p.opts.Now().Sub(start).Seconds())
	p.record(ctx, j, err, storage)
}

// record completes, retries or parks a job after an attempt; storage says
// that its handler failed because storage did (PipelineOptions.StorageFailed).
func (p *Pipeline) record(ctx context.Context, j Job, err error, storage bool) {
	log := p.logger.With("job_id", j.ID, "kind", j.Kind, "attempt", j.Attempts)

	// Bookkeeping uses its own short context: a job that finished just as
	// shutdown began should still be recorded as done.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err == nil {
		if cerr := p.queue.Complete(bctx, j); cerr != nil {
			log.WarnContext(ctx, "complete job failed; it will run again after its lease and must be idempotent", "err", Detail(cerr))
			return
		}
		p.attempts.WithLabelValues(j.Kind, "done").Inc()
		if f, ok := p.storage.Recovered(p.opts.Now()); ok {
			p.logger.InfoContext(ctx, "storage works again; the jobs handed back resume", "failing_for", f.For.Round(time.Second), "jobs_handed_back", f.Total)
		}
		return
	}
	if ctx.Err() != nil {
		// Shutting down: hand the job back without counting the attempt, so
		// that it resumes at once on restart or on another replica instead of
		// waiting for its lease to expire.
		if rerr := p.queue.Release(bctx, j, 0); rerr != nil {
			log.WarnContext(ctx, "release job failed; it resumes after its lease expires", "err", Detail(rerr))
		}
		return
	}
	var busy *BusyError
	if errors.As(err, &busy) {
		// Someone else is working on the same target: come back soon,
		// without spending an attempt or growing the backoff.
		if rerr := p.queue.Release(bctx, j, busy.After); rerr != nil {
			log.WarnContext(ctx, "release busy job failed; it resumes after its lease expires", "err", Detail(rerr))
		}
		p.attempts.WithLabelValues(j.Kind, "busy").Inc()
		return
	}
	if storage {
		// Storage failed, not the job: counting it would park every job
		// that runs while a disk is full or the database is gone (the
		// attempts last minutes, the failure may last an hour), and
		// nothing would run them once storage recovers. Come back soon,
		// without spending an attempt or growing the backoff, however
		// long it lasts. If storage cannot record even that, the job
		// resumes after its lease, its attempt spent.
		after := Backoff(1, p.opts.StorageRetry, p.opts.StorageRetry)
		if rerr := p.queue.Release(bctx, j, after); rerr != nil {
			log.WarnContext(ctx, "release job after a storage failure failed; it resumes after its lease expires", "err", Detail(rerr))
		}
		p.attempts.WithLabelValues(j.Kind, "storage").Inc()
		if f, ok := p.storage.Failed(p.opts.Now()); ok {
			log.WarnContext(ctx, "job handed back without counting an attempt: storage failed; jobs wait until it works again",
				"err", Detail(err), "retry_in", after, "handed_back", f.SinceLine)
		}
		return
	}
	last := j.Attempts >= j.MaxAttempts
	park := last || IsPermanent(err)
	delay := Backoff(j.Attempts, p.opts.MinBackoff, p.opts.MaxBackoff)
	var ra RetryAfterer
	if errors.As(err, &ra) && ra.RetryAfter() > delay {
		// The remote told us when to come back (Slack's Retry-After).
		delay = ra.RetryAfter()
	}
	retryAt := p.opts.Now().Add(delay)
	if ferr := p.queue.Fail(bctx, j, err, retryAt, park); ferr != nil {
		log.WarnContext(ctx, "record job failure failed; it will run again after its lease", "err", Detail(ferr), "cause", Detail(err))
		return
	}
	if park {
		p.attempts.WithLabelValues(j.Kind, "parked").Inc()
		if last {
			log.ErrorContext(ctx, "job parked after its last attempt; see /api/v1/jobs?state=parked", "err", Detail(err))
		} else {
			log.ErrorContext(ctx, "job parked at once: its error is permanent (no retry can fix it); see /api/v1/jobs?state=parked", "err", Detail(err))
		}
		return
	}
	p.attempts.WithLabelValues(j.Kind, "retry").Inc()
	log.WarnContext(ctx, "job failed, will retry", "err", Detail(err), "retry_at", retryAt)
}

// RetryAfterer is implemented by errors that know when a retry may succeed,
// such as a rate-limit answer with Retry-After.
type RetryAfterer interface {
	RetryAfter() time.Duration
}

// safeHandle turns a handler panic into a permanent error, so that one bad
// job cannot take the worker pool down.
func safeHandle(ctx context.Context, h Handler, j Job) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Permanent(fmt.Errorf("handler panic: %v", r))
		}
	}()
	return h.Handle(ctx, j)
}
