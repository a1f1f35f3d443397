// Package budget bounds the bytes of JSON held decoded as trees at once.
package budget

import (
	"context"
	"sync"
)

// Decoding JSON into a tree takes about ten times its size in memory, and
// on two cores more than a few decodings at once only queue for the CPU.
// A Budget bounds the bytes of JSON being held as trees at once, so that a
// burst of large requests cannot grow the heap without bound: a request
// past the budget waits for others to finish. Documents and bodies under
// Min are not counted; together they are small.
const Min = 16 << 10

// Budget is a weighted FIFO semaphore over bytes. A nil *Budget grants
// everything at once.
type Budget struct {
	mu      sync.Mutex
	free    int64
	cap     int64
	waiters []*budgetWaiter
}

type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

// New returns a Budget of capacity bytes.
func New(capacity int64) *Budget {
	return &Budget{free: capacity, cap: capacity}
}

// Acquire takes n bytes of the budget (at most all of it), waiting until
// they are free or ctx is done. The returned function gives them back; it
// may be called more than once. Amounts under Min take nothing.
func (b *Budget) Acquire(ctx context.Context, n int) (release func(), err error) {
	if b == nil || n < Min {
		return func() {}, nil
	}
	n64 := min(int64(n), b.cap)
	if err := b.take(ctx, n64); err != nil {
		return nil, err
	}
	return b.releaser(n64), nil
}

// take takes n bytes (at most the capacity), waiting in line until they
// are free or ctx is done.
func (b *Budget) take(ctx context.Context, n int64) error {
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.mu.Lock()
	if len(b.waiters) == 0 && b.free >= w.n {
		b.free -= w.n
		b.mu.Unlock()
		return nil
	}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		select {
		case <-w.ready: // granted meanwhile: give it back
			b.free += w.n
			b.grant()
		default:
			for i, x := range b.waiters {
				if x == w {
					b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
					break
				}
			}
			b.grant() // the head may have changed
		}
		return ctx.Err()
	}
}

func (b *Budget) releaser(n int64) func() {
	var once sync.Once
	return func() { once.Do(func() { b.give(n) }) }
}

// give returns n bytes to the budget.
func (b *Budget) give(n int64) {
	b.mu.Lock()
	b.free += n
	b.grant()
	b.mu.Unlock()
}

// Held returns the bytes taken from the budget now.
func (b *Budget) Held() int64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cap - b.free
}

// Reservation is a share of a Budget that grows with what its holder has
// in hand: a request body reserves the bytes it has received, as they
// arrive, so that a client that sends slowly holds no more of the budget
// than it has sent. Like Acquire, a reservation under Min takes nothing;
// once it reaches Min it holds all it has grown to. A Reservation is used
// by one goroutine, but Release may be called from another.
type Reservation struct {
	b    *Budget
	mu   sync.Mutex
	held int64 // bytes taken from b
	done bool
}

// Reserve returns an empty reservation of b.
func (b *Budget) Reserve() *Reservation { return &Reservation{b: b} }

// Grow makes the reservation n bytes (at most the budget's capacity),
// waiting in line for the difference until it is free or ctx is done. It
// never shrinks a reservation. After Release it takes nothing.
func (r *Reservation) Grow(ctx context.Context, n int) error {
	if r.b == nil || n < Min {
		return nil
	}
	want := min(int64(n), r.b.cap)
	r.mu.Lock()
	more := want - r.held
	if r.done || more <= 0 {
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	if err := r.b.take(ctx, more); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done { // released meanwhile: give it straight back
		r.b.give(more)
		return nil
	}
	r.held += more
	return nil
}

// Held returns the bytes the reservation holds.
func (r *Reservation) Held() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held
}

// Release gives back everything the reservation holds; later calls do
// nothing.
func (r *Reservation) Release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return
	}
	r.done = true
	if r.held > 0 {
		r.b.give(r.held)
		r.held = 0
	}
}

// grant wakes waiters in order while they fit. b.mu is held.
func (b *Budget) grant() {
	for len(b.waiters) > 0 && b.free >= b.waiters[0].n {
		w := b.waiters[0]
		b.waiters[0] = nil
		b.waiters = b.waiters[1:]
		b.free -= w.n
		close(w.ready)
	}
}
