package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
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
	if err := g.enter(ctx); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return nil
}

// enter is Enter without the error's op, so that no caller builds one
// for a call that enters.
func (g *Gate) enter(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	g.active.Add(1)
	return nil
}

// EnterWrite is Enter for a write of a document: it also refuses an
// invalid name (ErrInvalidKey) and a read-only store (ErrReadOnly).
func (g *Gate) EnterWrite(ctx context.Context, collection, id string) error {
	switch {
	case !ValidCollection(collection) || !ValidName(id):
		return fmt.Errorf("store: update %q/%q: %w", collection, id, ErrInvalidKey)
	case g.ReadOnly:
		return fmt.Errorf("store: update %s/%s: %w", collection, id, ErrReadOnly)
	}
	if err := g.enter(ctx); err != nil {
		return fmt.Errorf("store: update %s/%s: %w", collection, id, err)
	}
	return nil
}

// EnterWriteMany is EnterWrite for an UpdateMany: it checks every key
// (valid, distinct, at most MaxManyKeys) and returns the key indices in
// lock order, the byte order of collection then id.
func (g *Gate) EnterWriteMany(ctx context.Context, keys []Key) ([]int, error) {
	order, err := LockOrder(keys)
	if err != nil {
		return nil, err
	}
	if g.ReadOnly {
		return nil, fmt.Errorf("store: update many: %w", ErrReadOnly)
	}
	if err := g.Enter(ctx, "update many"); err != nil {
		return nil, err
	}
	return order, nil
}

// LockOrder checks the keys of an UpdateMany and returns their indices
// sorted by collection, then id, in byte order: the order in which every
// backend locks them. It returns an error wrapping ErrInvalidKey for an
// invalid or repeated key, no keys, or more than MaxManyKeys.
func LockOrder(keys []Key) ([]int, error) {
	if len(keys) == 0 || len(keys) > MaxManyKeys {
		return nil, fmt.Errorf("store: update many: %d keys, want 1 to %d: %w", len(keys), MaxManyKeys, ErrInvalidKey)
	}
	order := make([]int, len(keys))
	for i, k := range keys {
		if !ValidCollection(k.Collection) || !ValidName(k.ID) {
			return nil, fmt.Errorf("store: update many %q/%q: %w", k.Collection, k.ID, ErrInvalidKey)
		}
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(strings.Compare(keys[a].Collection, keys[b].Collection), strings.Compare(keys[a].ID, keys[b].ID))
	})
	for i := 1; i < len(order); i++ {
		if keys[order[i]] == keys[order[i-1]] {
			k := keys[order[i]]
			return nil, fmt.Errorf("store: update many: %s/%s given twice: %w", k.Collection, k.ID, ErrInvalidKey)
		}
	}
	return order, nil
}

// EnterRead is Enter for a read of one document (op names it): a name no
// store keeps gives an error wrapping ErrNotFound, which is what a read of
// it means.
func (g *Gate) EnterRead(ctx context.Context, op, collection, id string) error {
	if !ValidCollection(collection) || !ValidName(id) {
		return fmt.Errorf("store: %s %q/%q: %w", op, collection, id, ErrNotFound)
	}
	if err := g.enter(ctx); err != nil {
		return fmt.Errorf("store: %s %s/%s: %w", op, collection, id, err)
	}
	return nil
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

// CheckMany checks the changes a ManyFunc returned for the documents it
// was given: every index in range, every idempotency record valid, and no
// delete of a document that does not exist at that point (an error
// wrapping ErrNotFound). Every backend checks them this way before it
// writes anything.
func CheckMany(keys []Key, docs []Locked, mc *ManyChange) error {
	exists := make([]bool, len(docs))
	for i, d := range docs {
		exists[i] = d.Doc != nil
	}
	for _, dc := range mc.Changes {
		if dc.Doc < 0 || dc.Doc >= len(keys) || dc.Change == nil {
			return fmt.Errorf("store: update many: change of document %d of %d: %w", dc.Doc, len(keys), ErrInvalidKey)
		}
		k := keys[dc.Doc]
		if dc.Change.Body == nil && !exists[dc.Doc] {
			return fmt.Errorf("store: delete %s/%s: %w", k.Collection, k.ID, ErrNotFound)
		}
		if err := dc.Change.Idempotency.Check(); err != nil {
			return fmt.Errorf("store: update %s/%s: %w", k.Collection, k.ID, err)
		}
		exists[dc.Doc] = dc.Change.Body != nil
	}
	return nil
}
