package document

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/query"
	"github.com/patchd/patchd/store"
)

// Every stream that follows a collection with a filter judges each change
// of it: the document after the change (its stored body) and, when the
// change touched what the filter reads, before it (the body with the
// change undone). Hundreds of streams judge the same change at once, each
// with its own filter: stateCache keeps what does not depend on the
// filter, per version, so that the body is read, and each tree decoded,
// once for all of them rather than once per stream.

// Bounds of the cache: stateCacheBytes of estimated memory (an entry's
// overhead, its body, treeFactor times it for each tree decoded from it,
// its remembered lookups) and stateCacheEntries entries. A state is of use
// while streams judge a fresh change: a few thousand is plenty.
const (
	stateCacheBytes    = 32 << 20
	stateCacheEntries  = 4096
	stateEntryOverhead = 512
	lookupOverhead     = 128
)

// stateCache is a bounded map from a version of a document to its
// versionState, evicting the least recently made first.
type stateCache struct {
	mu   sync.Mutex
	size int
	m    map[string]*list.Element // values are *versionState
	lru  list.List

	// reads and decodes count the bodies read and the trees decoded.
	reads, decodes atomic.Int64
}

func newStateCache() *stateCache {
	return &stateCache{m: make(map[string]*list.Element)}
}

// versionState is one version of a document as filters judge it. body,
// ops and err are set before ready is closed and only read after; the
// trees are made once, under mu, by the first caller that needs them.
type versionState struct {
	key   string
	ready chan struct{} // closed once current, body, ops and err are set
	size  int           // estimated bytes, counted in stateCache.size (under its mu)

	current bool   // the version is the document's current one
	body    []byte // the current body, when current
	ops     []patch.Op
	err     error

	mu         sync.Mutex
	lookups    map[string]lookup // by pointer: the value there after the version
	afterDone  bool
	after      any // body decoded, for filters that read many members
	beforeDone bool
	before     any  // body with the version undone
	existed    bool // the document existed before the version
	beforeOK   bool // false when the version could not be undone
}

// state returns the versionState of version v of a document, reading it
// (once for all callers at once) if it is not kept.
func (s *Service) state(ctx context.Context, collection, id string, v store.Version) (*versionState, error) {
	c := s.states
	key := collection + "\x00" + id + "\x00" + strconv.FormatUint(v.Seq, 10) + "\x00" + v.ETag
	c.mu.Lock()
	if el, ok := c.m[key]; ok {
		c.mu.Unlock()
		st := el.Value.(*versionState)
		select {
		case <-st.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if st.err != nil && (errors.Is(st.err, context.Canceled) || errors.Is(st.err, context.DeadlineExceeded)) {
			// The reader's request ended, not this one's: read it again.
			return s.state(ctx, collection, id, v)
		}
		return st, st.err
	}
	st := &versionState{key: key, ready: make(chan struct{})}
	c.m[key] = c.lru.PushBack(st)
	c.mu.Unlock()

	ok := false
	defer func() {
		if !ok { // an error, or a panic on its way up
			if st.err == nil {
				st.err = errors.New("document: reading a version for the collection filters failed")
			}
			c.drop(st) // the next caller tries again
		}
		close(st.ready)
	}()
	if st.err = s.readState(ctx, st, collection, id, v); st.err != nil {
		return nil, st.err
	}
	ok = true
	c.grow(st, stateEntryOverhead+len(key)+len(st.body))
	return st, nil
}

// readState reads the current body and the version's ops into st.
func (s *Service) readState(ctx context.Context, st *versionState, collection, id string, v store.Version) error {
	s.states.reads.Add(1)
	doc, err := s.store.Get(ctx, collection, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return err
	case doc.Seq != v.Seq:
		return nil
	}
	ops, err := s.ops.decode(collection, id, v)
	if err != nil {
		return err
	}
	st.current, st.body, st.ops = true, doc.Body, ops
	return nil
}

// lookup is what a pointer finds in a body: its value if got, or only
// whether there is one.
type lookup struct {
	got, ok bool
	value   any
}

// matchAfter evaluates where on the body after the version, looking each
// pointer up in the bytes once for every filter (or decoding the body
// once, for filters that read many members).
func (s *Service) matchAfter(ctx context.Context, collection, id string, st *versionState, where *query.Where) (bool, error) {
	if where.Decodes() {
		tree, err := s.afterTree(ctx, collection, id, st)
		if err != nil {
			if ctx.Err() != nil {
				return false, err
			}
			return false, nil // a stored body that does not parse matches nothing
		}
		return where.Match(tree), nil
	}
	get := func(p patch.Pointer) (any, bool) {
		st.mu.Lock()
		defer st.mu.Unlock()
		key := p.String()
		l, ok := st.lookups[key]
		if !ok || !l.got {
			raw, found := p.LookupRaw(st.body)
			var v any
			if found {
				var root patch.Pointer // the value's own bytes, decoded
				v, found = root.Lookup(raw)
			}
			l = lookup{got: true, ok: found, value: v}
			s.remember(st, key, l, len(raw))
		}
		return l.value, l.ok
	}
	has := func(p patch.Pointer) bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		key := p.String()
		l, ok := st.lookups[key]
		if !ok {
			_, found := p.LookupRaw(st.body)
			l = lookup{ok: found}
			s.remember(st, key, l, 0)
		}
		return l.ok
	}
	return where.MatchLookups(get, has), nil
}

// Bounds of the lookups a state remembers: filters read a few members
// each, and a large value is looked up again rather than kept.
const (
	maxLookups      = 64
	maxLookupValue  = 4 << 10 // bytes of the value as stored
	lookupValueCost = 4       // decoded, per stored byte
)

// remember keeps what a pointer found, counted in the cache; st.mu is
// held. raw is the size of the value as stored.
func (s *Service) remember(st *versionState, key string, l lookup, raw int) {
	if len(st.lookups) >= maxLookups || raw > maxLookupValue {
		return
	}
	if st.lookups == nil {
		st.lookups = make(map[string]lookup)
	}
	_, had := st.lookups[key]
	st.lookups[key] = l
	if !had || l.got {
		s.states.grow(st, lookupOverhead+len(key)+lookupValueCost*raw)
	}
}

// afterTree returns the body decoded (shared: callers must not modify it).
func (s *Service) afterTree(ctx context.Context, collection, id string, st *versionState) (any, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.afterDone {
		tree, err := s.decodeStored(ctx, collection, id, st.body)
		if err != nil {
			return nil, err // kept for no one: the next caller tries again
		}
		st.after, st.afterDone = tree, true
		s.states.grow(st, treeFactor*len(st.body))
	}
	return st.after, nil
}

// beforeTree returns the document before the version (shared: callers
// must not modify it), whether it existed, and ok false if the version
// could not be undone.
func (s *Service) beforeTree(ctx context.Context, collection, id string, st *versionState) (tree any, existed, ok bool, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.beforeDone {
		tree, err := s.decodeStored(ctx, collection, id, st.body)
		if err != nil {
			return nil, false, false, err
		}
		// Revert changes tree in place: it is this state's alone.
		if earlier, existed, err := patch.Revert(tree, st.ops); err == nil {
			st.before, st.existed, st.beforeOK = earlier, existed, true
			s.states.grow(st, treeFactor*len(st.body))
		} // else not ok: WalkBack decides, and says why
		st.beforeDone = true
	}
	return st.before, st.existed, st.beforeOK, nil
}

// decodeStored decodes a stored body within the decode budget.
func (s *Service) decodeStored(ctx context.Context, collection, id string, body []byte) (any, error) {
	release, err := s.docs.Acquire(ctx, len(body))
	if err != nil {
		return nil, err
	}
	defer release()
	s.states.decodes.Add(1)
	tree, err := patch.Parse(body, patch.Limits{})
	if err != nil {
		return nil, fmt.Errorf("stored document %s/%s: %w", collection, id, err)
	}
	return tree, nil
}

// grow counts n more bytes of st and evicts the least recent entries past
// the bound (st itself last: a state larger than the whole bound is
// dropped once made, and made again by the next caller).
func (c *stateCache) grow(st *versionState, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[st.key]
	if !ok || el.Value != st {
		return // evicted meanwhile
	}
	st.size += n
	c.size += n
	for (c.size > stateCacheBytes || c.lru.Len() > stateCacheEntries) && c.lru.Len() > 0 {
		c.remove(c.lru.Front())
	}
}

// drop removes st if it is still kept.
func (c *stateCache) drop(st *versionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[st.key]; ok && el.Value == st {
		c.remove(el)
	}
}

// remove drops an entry; c.mu is held.
func (c *stateCache) remove(el *list.Element) {
	st := c.lru.Remove(el).(*versionState)
	delete(c.m, st.key)
	c.size -= st.size
}
