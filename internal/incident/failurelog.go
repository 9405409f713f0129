package incident

import (
	"sync"
	"time"
)

// FailureLogEvery bounds how often a FailureLog says that a failure goes
// on.
const FailureLogEvery = time.Minute

// FailureLog decides when to log a failure that repeats for as long as its
// cause lasts: work retried every few seconds while storage fails, which
// must not write a line on every try. It says to log the first failure of
// a run, then at most one every FailureLogEvery, and the success that ends
// the run. It is safe for concurrent use; its zero value is ready.
type FailureLog struct {
	mu     sync.Mutex
	since  time.Time // the run's first failure; zero when there is no run
	logged time.Time // the last line's
	total  int       // failures in the run
	n      int       // failures since the last line
}

// Failure describes a run of failures, for a log line.
type Failure struct {
	// First is set on the run's first failure.
	First bool
	// For is how long the run has lasted.
	For time.Duration
	// Total counts the run's failures, and SinceLine those since the last
	// line; both include the one just recorded.
	Total, SinceLine int
}

// Failed records a failure at now, and reports whether to log it.
func (l *FailureLog) Failed(now time.Time) (Failure, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	l.n++
	first := l.since.IsZero()
	if first {
		l.since = now
	} else if now.Sub(l.logged) < FailureLogEvery {
		return Failure{}, false
	}
	f := Failure{First: first, For: now.Sub(l.since), Total: l.total, SinceLine: l.n}
	l.logged, l.n = now, 0
	return f, true
}

// Recovered records a success at now, and reports the run of failures it
// ends, if there was one (to log).
func (l *FailureLog) Recovered(now time.Time) (Failure, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.since.IsZero() {
		return Failure{}, false
	}
	f := Failure{For: now.Sub(l.since), Total: l.total, SinceLine: l.n}
	l.since, l.logged, l.total, l.n = time.Time{}, time.Time{}, 0, 0
	return f, true
}
