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

// Capacity returns the budget's size in bytes: the most one Acquire or
// Reservation takes, whatever it asks for.
func (b *Budget) Capacity() int64 {
	if b == nil {
		return 0
	}
	return b.cap
}

// Waiting returns how many Acquires wait for room now.
func (b *Budget) Waiting() int {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.waiters)
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

// Grow makes the reservation n bytes (at most the budget's capacity). The
// difference is taken at once if it is free. If it is not, the
// reservation gives back what it holds and waits in line for all n bytes
// until they are free or ctx is done (it then holds nothing): a
// reservation never waits while it holds a share, so reservations that
// grow at once cannot wait for one another. It never shrinks a
// reservation. After Release it takes nothing.
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
	if r.b.tryTake(more) {
		r.held += more
		r.mu.Unlock()
		return nil
	}
	held := r.held
	r.held = 0
	r.mu.Unlock()
	if held > 0 {
		r.b.give(held)
	}
	if err := r.b.take(ctx, want); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done { // released meanwhile: give it straight back
		r.b.give(want)
		return nil
	}
	r.held = want
	return nil
}

// TryAcquire is Acquire without waiting: ok is false, and nothing is
// taken, unless n bytes are free now and nobody waits for them.
func (b *Budget) TryAcquire(n int) (release func(), ok bool) {
	if b == nil || n < Min {
		return func() {}, true
	}
	n64 := min(int64(n), b.cap)
	if !b.tryTake(n64) {
		return nil, false
	}
	return b.releaser(n64), true
}

// tryTake takes n bytes if they are free and nobody waits for them.
func (b *Budget) tryTake(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.waiters) > 0 || b.free < n {
		return false
	}
	b.free -= n
	return true
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

// Shares bounds what each client holds of a Budget at once, so that one
// client, over many connections that send slowly, cannot hold all of it
// and make every other wait. The zero value is unusable; see NewShares.
type Shares struct {
	mu   sync.Mutex
	max  int64
	held map[string]int64         // only clients that hold something
	wake map[string]chan struct{} // closed at a client's next Give; only clients Wait waits for
}

// NewShares returns Shares that let each client hold at most max bytes.
func NewShares(max int64) *Shares {
	return &Shares{max: max, held: map[string]int64{}, wake: map[string]chan struct{}{}}
}

// Max returns the most one client may hold.
func (s *Shares) Max() int64 { return s.max }

// Take adds n bytes to client's share if it stays within the bound, and
// reports whether it did.
func (s *Shares) Take(client string, n int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[client]+n > s.max {
		return false
	}
	s.held[client] += n
	return true
}

// Wait is Take for a holder that can wait: it adds n bytes (at most Max)
// to client's share once it stays within the bound, waiting until the
// client gives enough back or ctx is done.
func (s *Shares) Wait(ctx context.Context, client string, n int64) error {
	n = min(n, s.max)
	for {
		s.mu.Lock()
		if s.held[client]+n <= s.max {
			s.held[client] += n
			s.mu.Unlock()
			return nil
		}
		wake := s.wake[client]
		if wake == nil {
			wake = make(chan struct{})
			s.wake[client] = wake
		}
		s.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Give gives back n bytes of client's share.
func (s *Shares) Give(client string, n int64) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if wake := s.wake[client]; wake != nil {
		close(wake)
		delete(s.wake, client)
	}
	if left := s.held[client] - n; left > 0 {
		s.held[client] = left
	} else {
		delete(s.held, client)
	}
}
