package store

import (
	"context"
	"fmt"
	"sync"
)

// Gate is the lifecycle every backend shares: calls enter it, Close shuts
// it and waits for the calls inside. The zero value is open and writable.
type Gate struct {
	// ReadOnly makes EnterWrite refuse with ErrReadOnly. Set it before
	// the first call.
	ReadOnly bool

	mu     sync.Mutex // guards closed
	closed bool
	active sync.WaitGroup
}

// Enter registers a call in progress, or returns an error wrapping
// ErrClosed once Shut was called, or ctx's error; op names the call in the
// error. A successful Enter must be paired with Leave.
func (g *Gate) Enter(ctx context.Context, op string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return fmt.Errorf("store: %s: %w", op, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	g.active.Add(1)
	return nil
}

// EnterWrite is Enter for a write of a document: it also refuses an
// invalid name (ErrInvalidKey) and a read-only store (ErrReadOnly).
func (g *Gate) EnterWrite(ctx context.Context, collection, id string) error {
	op := "update " + collection + "/" + id
	switch {
	case !ValidName(collection) || !ValidName(id):
		return fmt.Errorf("store: update %q/%q: %w", collection, id, ErrInvalidKey)
	case g.ReadOnly:
		return fmt.Errorf("store: %s: %w", op, ErrReadOnly)
	}
	return g.Enter(ctx, op)
}

// EnterRead is Enter for a read of one document (op names it): a name no
// store keeps gives an error wrapping ErrNotFound, which is what a read of
// it means.
func (g *Gate) EnterRead(ctx context.Context, op, collection, id string) error {
	if !ValidName(collection) || !ValidName(id) {
		return fmt.Errorf("store: %s %q/%q: %w", op, collection, id, ErrNotFound)
	}
	return g.Enter(ctx, op+" "+collection+"/"+id)
}

// EnterLoad is Enter for a Load: it also refuses a read-only store and
// checks every record (see CheckRecord), returning each record's error.
func (g *Gate) EnterLoad(ctx context.Context, recs []*Record) ([]error, error) {
	if g.ReadOnly {
		return nil, fmt.Errorf("store: load: %w", ErrReadOnly)
	}
	if err := g.Enter(ctx, "load"); err != nil {
		return nil, err
	}
	errs := make([]error, len(recs))
	for i, r := range recs {
		errs[i] = CheckRecord(r)
	}
	return errs, nil
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
