package fair

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// untilWaiting waits until n Acquires of t wait.
func untilWaiting(t *testing.T, tu *Turns, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); tu.Waiting() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d Acquires wait, want %d", tu.Waiting(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestInTurn: when the slot is taken, the clients waiting are served in
// turn: b's one request right after a's first, before a's others.
func TestInTurn(t *testing.T) {
	tu := New(1)
	if err := tu.Acquire(context.Background(), "holder"); err != nil {
		t.Fatal(err)
	}
	served := make(chan string, 4)
	var wg sync.WaitGroup
	acquire := func(client string) {
		defer wg.Done()
		if err := tu.Acquire(context.Background(), client); err != nil {
			t.Error(err)
			return
		}
		served <- client
		tu.Release()
	}
	wg.Add(4)
	for i := range 3 {
		go acquire("a")
		untilWaiting(t, tu, i+1)
	}
	go acquire("b")
	untilWaiting(t, tu, 4)
	tu.Release()
	var order []string
	for range 4 {
		order = append(order, <-served)
	}
	wg.Wait()
	if got, want := strings.Join(order, ","), "a,b,a,a"; got != want {
		t.Fatalf("served %s, want %s", got, want)
	}
	// The slot is free again: taken at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tu.Acquire(ctx, "c"); err != nil {
		t.Fatalf("Acquire of the free slot: %v", err)
	}
}

// TestWaitEnds: an Acquire whose context ends while it waits returns the
// context's error and holds nothing; the slot released later goes to the
// next waiting client, or back to the free ones.
func TestWaitEnds(t *testing.T) {
	tu := New(1)
	if err := tu.Acquire(context.Background(), "holder"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- tu.Acquire(ctx, "a") }()
	untilWaiting(t, tu, 1)
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire after its context ended: %v, want context.Canceled", err)
	}
	if n := tu.Waiting(); n != 0 {
		t.Fatalf("%d Acquires still wait", n)
	}
	tu.Release()
	done, stop := context.WithCancel(context.Background())
	stop()
	if err := tu.Acquire(done, "b"); err != nil {
		t.Fatalf("the slot is not free after the wait ended and the holder released it: %v", err)
	}
}

// TestTryAcquire: TryAcquire takes a free slot and never waits; a slot
// it took goes, at Release, to a client waiting meanwhile.
func TestTryAcquire(t *testing.T) {
	tu := New(1)
	if !tu.TryAcquire() {
		t.Fatal("TryAcquire of a free slot failed")
	}
	if tu.TryAcquire() {
		t.Fatal("TryAcquire took a slot that was held")
	}
	got := make(chan error, 1)
	go func() { got <- tu.Acquire(context.Background(), "a") }()
	untilWaiting(t, tu, 1)
	tu.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if tu.TryAcquire() {
		t.Fatal("TryAcquire took the slot handed to the waiting client")
	}
	tu.Release()
	if !tu.TryAcquire() {
		t.Fatal("TryAcquire failed after the last Release")
	}
}
