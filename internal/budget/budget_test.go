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

// Two reservations that both need more than is free do not wait for each
// other while holding what they have (hold and wait): one gives its share
// back and waits for the whole, and the other goes on.
func TestReservationsGrowingAtOnce(t *testing.T) {
	b := New(100 << 10)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r1, r2 := b.Reserve(), b.Reserve()
	if err := r1.Grow(ctx, 50<<10); err != nil {
		t.Fatal(err)
	}
	if err := r2.Grow(ctx, 40<<10); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		err := r1.Grow(ctx, 70<<10)
		r1.Release()
		done <- err
	}()
	if err := r2.Grow(ctx, 60<<10); err != nil {
		t.Fatalf("the second reservation waited for the first: %v", err)
	}
	if got := r2.Held(); got != 60<<10 {
		t.Errorf("r2 holds %d, want %d", got, 60<<10)
	}
	r2.Release()
	if err := <-done; err != nil {
		t.Fatalf("the first reservation: %v", err)
	}
	if h := b.Held(); h != 0 {
		t.Errorf("%d bytes held after both released", h)
	}
	// One that cannot get its share in time holds nothing afterwards.
	r3, r4 := b.Reserve(), b.Reserve()
	if err := r3.Grow(ctx, 70<<10); err != nil {
		t.Fatal(err)
	}
	if err := r4.Grow(ctx, 20<<10); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if err := r4.Grow(short, 40<<10); err == nil {
		t.Fatal("grew past the budget")
	}
	if h := r4.Held(); h != 0 {
		t.Errorf("a reservation that timed out holds %d", h)
	}
	r3.Release()
	r4.Release()
	if h := b.Held(); h != 0 {
		t.Errorf("%d bytes held after all released", h)
	}
}

// Wait takes a client's share once the client gives enough back, and not
// before; another client's share is its own.
func TestSharesWait(t *testing.T) {
	s := NewShares(100)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !s.Take("a", 80) {
		t.Fatal("the first take")
	}
	got := make(chan error, 1)
	go func() { got <- s.Wait(ctx, "a", 50) }()
	if err := s.Wait(ctx, "b", 100); err != nil { // another client: at once
		t.Fatal(err)
	}
	s.Give("a", 10) // 70 held: 50 more still does not fit
	select {
	case err := <-got:
		t.Fatalf("Wait returned (%v) with 120 of 100 bytes asked for", err)
	case <-time.After(20 * time.Millisecond):
	}
	s.Give("a", 30)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if !s.Take("a", 10) || s.Take("a", 1) {
		t.Fatal("after the wait the client should hold 90 of 100")
	}
	// A wait that gives up returns its context's error and takes nothing.
	short, stop := context.WithTimeout(ctx, 10*time.Millisecond)
	defer stop()
	if err := s.Wait(short, "a", 20); err == nil {
		t.Fatal("a wait past the share returned without error")
	}
	if !s.Take("a", 0) || s.Take("a", 1) {
		t.Fatal("a wait that gave up took something")
	}
}
