package store

import "sync"

// Gate is the lifecycle every backend shares: calls enter it, Close shuts
// it and waits for the calls inside. The zero value is open.
type Gate struct {
	mu     sync.Mutex // guards closed
	closed bool
	active sync.WaitGroup
}

// Enter registers a call in progress, or returns ErrClosed once Shut was
// called. A successful Enter must be paired with Leave.
func (g *Gate) Enter() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	g.active.Add(1)
	return nil
}

// Leave ends a call registered by Enter.
func (g *Gate) Leave() { g.active.Done() }

// Shut makes every later Enter fail and waits for the calls in progress.
// It returns ErrClosed if the gate was shut already.
func (g *Gate) Shut() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrClosed
	}
	g.closed = true
	g.mu.Unlock()
	g.active.Wait()
	return nil
}
