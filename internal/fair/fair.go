// Package fair shares a few slots of costly work among the clients that
// ask for them: while a slot is free it is taken at once; when none is,
// the clients waiting are served in turn, each client's own requests in
// the order they came. One client with many requests then waits behind
// its own, not in front of everyone else's.
package fair

import (
	"context"
	"slices"
	"sync"
)

// Turns is a set of slots shared in turn among clients. The zero value has
// no slot; use New.
type Turns struct {
	mu      sync.Mutex
	free    int
	waiting map[string][]chan struct{} // by client, oldest first
	turn    []string                   // the clients in waiting, the next one served first
}

// New returns Turns of n slots (at least 1).
func New(n int) *Turns {
	return &Turns{free: max(n, 1), waiting: make(map[string][]chan struct{})}
}

// TryAcquire takes a free slot, if there is one, without waiting; it
// reports whether it took one. A slot it takes is given back by Release.
func (t *Turns) TryAcquire() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.free > 0 {
		t.free--
		return true
	}
	return false
}

// Acquire takes a slot for client, waiting for its turn if none is free.
// It returns ctx's error, holding nothing, if ctx ends first. Every
// Acquire that returns nil is followed by one Release.
func (t *Turns) Acquire(ctx context.Context, client string) error {
	t.mu.Lock()
	if t.free > 0 {
		t.free--
		t.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	if len(t.waiting[client]) == 0 {
		t.turn = append(t.turn, client)
	}
	t.waiting[client] = append(t.waiting[client], ch)
	t.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	q := t.waiting[client]
	i := slices.Index(q, ch)
	if i >= 0 {
		if len(q) == 1 {
			delete(t.waiting, client)
			t.turn = slices.DeleteFunc(t.turn, func(x string) bool { return x == client })
		} else {
			t.waiting[client] = slices.Delete(q, i, i+1)
		}
	}
	t.mu.Unlock()
	if i < 0 {
		t.Release() // the slot was handed over meanwhile: pass it on
	}
	return ctx.Err()
}

// Release gives back a slot Acquire took: to the next waiting client in
// turn, or to the free ones.
func (t *Turns) Release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.turn) == 0 {
		t.free++
		return
	}
	client := t.turn[0]
	q := t.waiting[client]
	if len(q) == 1 {
		delete(t.waiting, client)
		t.turn = t.turn[1:]
	} else {
		t.waiting[client] = q[1:]
		t.turn = append(t.turn[1:], client) // its next one after the others'
	}
	close(q[0])
}

// Waiting returns how many Acquires wait.
func (t *Turns) Waiting() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, q := range t.waiting {
		n += len(q)
	}
	return n
}
