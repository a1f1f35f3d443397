package budget

import (
	"context"
	"testing"
	"time"
)

func TestBudget(t *testing.T) {
	b := New(100 << 10)
	ctx := context.Background()
	r1, err := b.Acquire(ctx, 60<<10)
	if err != nil {
		t.Fatal(err)
	}
	small, _ := b.Acquire(ctx, Min-1) // not counted
	small()
	got := make(chan func(), 1)
	go func() {
		r, err := b.Acquire(ctx, 60<<10)
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	// A waiter that gives up leaves the queue as it was.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := b.Acquire(cctx, 50<<10); err == nil {
		t.Fatal("acquired past the budget")
	}
	select {
	case <-got:
		t.Fatal("the second 60 KiB was granted while the first was held")
	default:
	}
	r1()
	r1() // twice is harmless
	r2 := <-got
	huge, err := func() (func(), error) { // larger than the budget: takes all of it, once free
		r2()
		return b.Acquire(ctx, 1<<30)
	}()
	if err != nil {
		t.Fatal(err)
	}
	huge()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.free != b.cap || len(b.waiters) != 0 {
		t.Fatalf("free %d of %d, %d waiters after everything was released", b.free, b.cap, len(b.waiters))
	}
}
