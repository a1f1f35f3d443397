package document

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/patchd/patchd/query"
)

// A stream that follows a collection with a filter and reads two or more
// changes of one document at once (a batch that wrote it twice, a stream
// that fell behind) cannot judge them from the stored body: it rebuilds
// the document's past states by undoing its versions (WalkBack). Hundreds
// of streams do so for the same change at once. walkGroup lets them share
// the walk as writes share a commit: the first walks at once; those that
// come while it runs gather, and the first of them walks for all once the
// running walk is done, judging every gathered filter at every state.

// walkGroup gathers the walks of one document's past states.
type walkGroup struct {
	mu      sync.Mutex
	pending map[string]*walkBatch // per document: gathering, not started
	running map[string]*walkBatch // per document: the walk under way

	walks int // walks made, for tests; under mu
}

// walkBatch is one walk and the filters it judges.
type walkBatch struct {
	from   uint64 // the oldest version any of them needs
	wheres []*query.Where

	done    chan struct{} // closed once results and err are set
	results []map[uint64]bool
	err     error
}

func newWalkGroup() *walkGroup {
	return &walkGroup{pending: map[string]*walkBatch{}, running: map[string]*walkBatch{}}
}

// WalkMatches judges where on a document's states from just before version
// from up to its current version, as WalkBack rebuilds them: the result
// maps each seq to whether the document matched right after it (seq from-1:
// before version from). Concurrent calls for one document share walks;
// each returns once the walk that judged its filter is done, or its ctx
// is. Errors are WalkBack's.
func (s *Service) WalkMatches(ctx context.Context, collection, id string, from uint64, where *query.Where) (map[uint64]bool, error) {
	g := s.walks
	key := collection + "\x00" + id
	g.mu.Lock()
	b, leader := g.pending[key], false
	if b == nil {
		b, leader = &walkBatch{from: from, done: make(chan struct{})}, true
		g.pending[key] = b
	}
	b.from = min(b.from, from)
	i := len(b.wheres)
	b.wheres = append(b.wheres, where)
	g.mu.Unlock()

	if leader {
		// The walk goes on for the others if this caller's request ends.
		go g.lead(context.WithoutCancel(ctx), s, collection, id, key, b)
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if b.err != nil && errors.Is(b.err, ErrHistoryMoved) && from > b.from {
		// The shared walk went further back than this caller needs, for
		// another's sake, and found versions gone: this caller's own walk
		// may well not need them.
		return s.walkAlone(ctx, collection, id, from, where)
	}
	if b.err != nil {
		return nil, b.err
	}
	return b.results[i], nil
}

// walkAlone is WalkMatches for one caller, without sharing.
func (s *Service) walkAlone(ctx context.Context, collection, id string, from uint64, where *query.Where) (map[uint64]bool, error) {
	results, err := s.judgeStates(ctx, collection, id, from, []*query.Where{where})
	if err != nil {
		return nil, err
	}
	return results[0], nil
}

// judgeStates judges each of wheres on the document's states WalkBack
// rebuilds from its current version down to just before version from.
func (s *Service) judgeStates(ctx context.Context, collection, id string, from uint64, wheres []*query.Where) ([]map[uint64]bool, error) {
	results := make([]map[uint64]bool, len(wheres))
	for j := range results {
		results[j] = map[uint64]bool{}
	}
	err := s.WalkBack(ctx, collection, id, from, func(seq uint64, doc any) error {
		for j, w := range wheres {
			results[j][seq] = w.Match(doc)
		}
		return nil
	})
	return results, err
}

// lead waits for the walk under way of the document, if any, closes the
// gathering of b and walks for all of its filters.
func (g *walkGroup) lead(ctx context.Context, s *Service, collection, id, key string, b *walkBatch) {
	g.mu.Lock()
	for {
		r := g.running[key]
		if r == nil {
			break
		}
		g.mu.Unlock()
		<-r.done
		g.mu.Lock()
	}
	delete(g.pending, key) // later callers gather in a new batch
	g.running[key] = b
	g.walks++
	wheres, from := b.wheres, b.from
	g.mu.Unlock()

	// The walk runs outside any request, where nothing would recover a
	// panic: it becomes the walk's error, and the waiters and the next
	// walk of the document are let go whatever happens.
	defer func() {
		if r := recover(); r != nil {
			b.results, b.err = nil, fmt.Errorf("document: the walk of %s/%s failed: %v", collection, id, r)
		}
		g.mu.Lock()
		delete(g.running, key)
		g.mu.Unlock()
		close(b.done)
	}()
	b.results, b.err = s.judgeStates(ctx, collection, id, from, wheres)
}
