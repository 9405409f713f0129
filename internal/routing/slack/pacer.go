package slack

import (
	"context"
	"sync"
	"time"
)

// maxIdleKeys bounds the pacer's memory: past it, keys whose slot has passed
// are forgotten (they would not delay anyone anyway).
const maxIdleKeys = 1024

// Pacer spaces calls per key (a Slack channel): at most one call per interval
// for each key, with no limit across keys. Slack allows about one message per
// second per channel, so pacing ourselves avoids most 429s instead of retrying
// them. Waiting callers are served in arrival order. It is safe for concurrent
// use. It reads the clock with time.Now, so testing/synctest can fake it.
type Pacer struct {
	interval time.Duration

	mu   sync.Mutex
	next map[string]time.Time // key → earliest time of the next call
}

// NewPacer returns a Pacer allowing one call per interval per key. With an
// interval ≤ 0 only Defer makes callers wait.
func NewPacer(interval time.Duration) *Pacer {
	return &Pacer{interval: max(interval, 0), next: map[string]time.Time{}}
}

// Wait blocks until a call for key may go out, or ctx is done, in which case
// it returns the context's cause and gives its slot back if nobody queued
// behind it.
func (p *Pacer) Wait(ctx context.Context, key string) error {
	p.mu.Lock()
	now := time.Now()
	at := p.next[key]
	if at.Before(now) {
		at = now
	}
	p.next[key] = at.Add(p.interval)
	p.prune(now)
	p.mu.Unlock()

	d := at.Sub(now)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		p.mu.Lock()
		if p.next[key].Equal(at.Add(p.interval)) {
			p.next[key] = at
		}
		p.mu.Unlock()
		return context.Cause(ctx)
	}
}

// Defer holds calls for key back for d from now, e.g. after Slack answered
// 429 with Retry-After, so that other callers do not run into the same
// limit.
func (p *Pacer) Defer(key string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if at := time.Now().Add(d); at.After(p.next[key]) {
		p.next[key] = at
	}
}

// Delay is how long a call for key would wait now, without reserving
// anything.
func (p *Pacer) Delay(key string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(time.Until(p.next[key]), 0)
}

// Carry makes to's next slot at least from's: for a key that is learnt to
// be another name of the same channel.
func (p *Pacer) Carry(from, to string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if at := p.next[from]; at.After(p.next[to]) {
		p.next[to] = at
	}
}

// prune forgets keys whose next slot is in the past; p.mu must be held.
func (p *Pacer) prune(now time.Time) {
	if len(p.next) <= maxIdleKeys {
		return
	}
	for k, at := range p.next {
		if at.Before(now) {
			delete(p.next, k)
		}
	}
}
