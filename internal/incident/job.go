package incident

import (
	"errors"
	"math/rand/v2"
	"time"
)

// The job states of the durable work queue.
const (
	JobQueued  = "queued"
	JobRunning = "running"
	JobDone    = "done"
	JobParked  = "parked"
)

// JobIngest applies one stored notification to its incident. Later pipeline
// steps (notifications, context, remediation) add their own kinds.
const JobIngest = "ingest"

// Job is one unit of durable work.
type Job struct {
	ID          int64     `json:"id"`
	Kind        string    `json:"kind"`
	RefID       int64     `json:"ref_id"`
	IncidentID  int64     `json:"incident_id,omitempty"`
	Args        []byte    `json:"-"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	MaxAttempts int       `json:"max_attempts"`
	RunAt       time.Time `json:"run_at"`
	LastError   string    `json:"last_error,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	// Owner is the lease holder while the job runs.
	Owner string `json:"-"`
}

// PermanentError marks a failure that no retry can fix: the job is parked at
// once instead of being retried.
type PermanentError struct{ Err error }

// Error implements error.
func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that the pipeline parks the job instead of retrying.
func Permanent(err error) error { return &PermanentError{Err: err} }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// BusyError says that a job's target is being worked on by another job (its
// lease is held): the job is handed back, due again After, without counting
// an attempt.
type BusyError struct {
	Err   error
	After time.Duration
}

// Error implements error.
func (e *BusyError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *BusyError) Unwrap() error { return e.Err }

// Busy wraps err so that the pipeline retries the job after the delay
// without spending an attempt.
func Busy(err error, after time.Duration) error { return &BusyError{Err: err, After: after} }

// Backoff returns the delay before the attempt after the given number of
// failed attempts: exponential from min, capped at max, with jitter that
// spreads retries over the upper half of the interval so that a burst of
// failures does not retry in lock step.
func Backoff(attempts int, minDelay, maxDelay time.Duration) time.Duration {
	d := minDelay
	for i := 1; i < attempts && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half+1) //nolint:gosec // G404: retry jitter, not a secret; predictability is harmless.
}
