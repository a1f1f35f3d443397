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
	w := &budgetWaiter{n: min(int64(n), b.cap), ready: make(chan struct{})}
	b.mu.Lock()
	if len(b.waiters) == 0 && b.free >= w.n {
		b.free -= w.n
		b.mu.Unlock()
		return b.releaser(w.n), nil
	}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return b.releaser(w.n), nil
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
		return nil, ctx.Err()
	}
}

func (b *Budget) releaser(n int64) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			b.free += n
			b.grant()
			b.mu.Unlock()
		})
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
