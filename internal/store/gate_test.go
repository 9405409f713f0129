package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// The writer loop, once waiting, goes before job handlers that waited
// longer.
func TestWriteGate_HighGoesFirst(t *testing.T) {
	g := newWriteGate()
	ctx := context.Background()
	if err := g.lock(ctx, false); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		order []string
		wg    sync.WaitGroup
	)
	take := func(name string, high bool) {
		defer wg.Done()
		if err := g.lock(ctx, high); err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		order = append(order, name)
		mu.Unlock()
		g.unlock()
	}
	wg.Add(3)
	go take("job1", false)
	go take("job2", false)
	time.Sleep(20 * time.Millisecond) // both jobs wait before the writer loop
	go take("loop", true)
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.high == 1 })
	g.unlock()
	wg.Wait()
	if len(order) != 3 || order[0] != "loop" {
		t.Fatalf("order %v: want the writer loop first", order)
	}
}

// A job handler gives up when its context ends, and a cancelled writer-loop
// waiter does not keep job handlers out.
func TestWriteGate_Cancel(t *testing.T) {
	g := newWriteGate()
	if err := g.lock(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := g.lock(ctx, false); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("low lock on a held gate: %v, want deadline exceeded", err)
	}
	hctx, hcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.lock(hctx, true) }()
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.high == 1 })
	hcancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("high lock: %v, want canceled", err)
	}
	g.unlock()
	lctx, lcancel := context.WithTimeout(context.Background(), time.Second)
	defer lcancel()
	if err := g.lock(lctx, false); err != nil {
		t.Fatalf("low lock after the high waiter left: %v", err)
	}
	g.unlock()
}

// High-priority callers that always have a turn waiting (a sustained
// burst) still let a job handler through every maxHighStreak turns.
func TestWriteGate_LowNotStarved(t *testing.T) {
	g := newWriteGate()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// Two of them, so that one is always waiting when the other lets go.
	for range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := g.lock(ctx, true); err != nil {
					return
				}
				time.Sleep(50 * time.Microsecond) // a commit
				g.unlock()
			}
		})
	}
	defer func() {
		cancel()
		wg.Wait()
	}()
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.held && g.high > 0 })
	for i := range 20 {
		lctx, lcancel := context.WithTimeout(context.Background(), time.Second)
		err := g.lock(lctx, false)
		lcancel()
		if err != nil {
			t.Fatalf("job handler %d starved behind a busy writer loop: %v", i, err)
		}
		g.unlock()
	}
}

// A store without a gate (engines with concurrent writers) never blocks.
func TestWriteGate_Nil(t *testing.T) {
	var g *writeGate
	if err := g.lock(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if err := g.lock(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	g.unlock()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
