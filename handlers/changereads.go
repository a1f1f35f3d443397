package handlers

import (
	"context"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/store"
)

// Streams that follow one collection are woken together by each commit in
// it and, when they keep up, all read the change log after the same
// cursor. changeReads lets them share that read, and the rendering of
// each change event, instead of reading and encoding it once per stream.
//
// A read can be shared only by streams that it is new enough for: each
// collection has a generation, raised before its streams are woken, and a
// stream uses a read only if the read began at or after the generation
// the stream saw when it woke. A commit that woke a stream is therefore in
// any read the stream uses (or, over PostgreSQL, pending in it).

// Bounds of the reads kept for sharing: they are useful only while the
// streams woken together take them.
const (
	maxSharedReads      = 64
	maxSharedReadsBytes = 16 << 20
)

// changeKey names a read: changes of a collection after a cursor.
type changeKey struct {
	coll   string
	cursor string
	limit  int
}

// changeRead is one read of a change log, shared.
type changeRead struct {
	gen   uint64        // the collection's generation when the read began
	start time.Time     // when it began
	done  chan struct{} // closed when log and err are set
	log   store.ChangeLog
	err   error
	size  int // bytes held: the changes' ops and rendered events

	mu       sync.Mutex
	rendered [][]byte // change event data by index, once rendered
}

// genSlots is how many generation counters collections share: a commit
// raises its collection's slot, so collections that share a slot only
// share fewer reads, and the counters take fixed memory however many
// collections there are.
const genSlots = 1024

// changeReads holds the recent reads of every collection.
type changeReads struct {
	mu          sync.Mutex
	generations // of collections; guarded by mu
	reads       map[changeKey]*changeRead
	order       []changeKey // oldest first
	size        int

	waiting func() // test hook: a reader waits for a shared read; nil outside tests
}

func newChangeReads() *changeReads {
	return &changeReads{reads: map[changeKey]*changeRead{}}
}

// generations are the generation counters of keys (collections, or
// documents' presence), which share genSlots counters: a change raises its
// key's before it wakes the streams that follow it, so that a read begun
// at that generation or later holds the change. The owner's mutex guards
// them.
type generations struct {
	gens [genSlots]uint64 // by slot of key
	all  uint64           // raised for every key at once (resync)
}

// slot returns the counter of key.
func slot(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % genSlots)
}

// bump raises key's generation ("" raises every key's).
func (g *generations) bump(key string) {
	if key == "" {
		g.all++
		return
	}
	g.gens[slot(key)]++
}

// of returns key's generation.
func (g *generations) of(key string) uint64 { return g.gens[slot(key)] + g.all }

// bump raises a collection's generation ("" raises every collection's).
// The hub calls it before it wakes the collection's streams.
func (r *changeReads) bump(coll string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.generations.bump(coll)
}

// gen returns a collection's generation.
func (r *changeReads) gen(coll string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.generations.of(coll)
}

// read returns the changes of coll after cursor, from a read that began at
// generation minGen or later, and after notBefore when that is not zero (a
// read for changes that were pending must be newer than the one that found
// them pending): a shared one when there is, else its own, which it
// shares.
func (r *changeReads) read(ctx context.Context, svc *document.Service, coll string, cursor store.Cursor, limit int, minGen uint64, notBefore time.Time) (*changeRead, error) {
	key := changeKey{coll: coll, cursor: string(cursor), limit: limit}
	r.mu.Lock()
	if e := r.reads[key]; e != nil && e.gen >= minGen && e.start.After(notBefore) {
		r.mu.Unlock()
		if r.waiting != nil {
			r.waiting()
		}
		if err := awaitRead(ctx, e.done); err != nil {
			return nil, err
		}
		if e.err == nil {
			return e, nil
		}
		return r.readOwn(ctx, svc, key, cursor, minGen)
	}
	e := &changeRead{gen: r.generations.of(coll), start: time.Now(), done: make(chan struct{})}
	r.insert(key, e)
	r.mu.Unlock()
	e.log, e.err = svc.Changes(ctx, coll, cursor, limit)
	r.settle(key, e)
	if e.err != nil {
		return nil, e.err
	}
	return e, nil
}

// awaitRead waits until a shared read is done, or ctx ends.
func awaitRead(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// readOwn reads without sharing (after a shared read failed: its error may
// have been its reader's context).
func (r *changeReads) readOwn(ctx context.Context, svc *document.Service, key changeKey, cursor store.Cursor, minGen uint64) (*changeRead, error) {
	e := &changeRead{gen: minGen, start: time.Now(), done: make(chan struct{})}
	e.log, e.err = svc.Changes(ctx, key.coll, cursor, key.limit)
	e.rendered = make([][]byte, len(e.log.Changes))
	close(e.done)
	if e.err != nil {
		return nil, e.err
	}
	return e, nil
}

// insert adds e under key and drops the oldest settled reads past the
// bounds. The caller holds r.mu.
func (r *changeReads) insert(key changeKey, e *changeRead) {
	if old := r.reads[key]; old != nil {
		r.size -= old.size
	}
	r.reads[key] = e
	r.order = append(r.order, key)
	if len(r.order) > 4*maxSharedReads {
		r.compact()
	}
	for len(r.order) > 0 && (len(r.reads) > maxSharedReads || r.size > maxSharedReadsBytes) {
		k := r.order[0]
		r.order = r.order[1:]
		if old := r.reads[k]; old != nil && old != e {
			delete(r.reads, k)
			r.size -= old.size
		}
	}
}

// compact keeps in r.order only the last entry of each key still held: a
// key read again is appended again. The caller holds r.mu.
func (r *changeReads) compact() {
	r.order = compactOrder(r.order, func(k changeKey) bool { return r.reads[k] != nil })
}

// compactOrder returns the keys of an eviction order, oldest first, that
// are still held, each once, at its last place.
func compactOrder[K comparable](order []K, held func(K) bool) []K {
	seen := make(map[K]bool)
	var kept []K
	for i := len(order) - 1; i >= 0; i-- {
		if k := order[i]; !seen[k] && held(k) {
			seen[k] = true
			kept = append(kept, k)
		}
	}
	slices.Reverse(kept)
	return kept
}

// settle publishes a finished read; a failed one is forgotten.
func (r *changeReads) settle(key changeKey, e *changeRead) {
	size := 0
	for _, ch := range e.log.Changes {
		size += len(ch.Version.Ops) + 2*len(ch.Cursor) + 256
	}
	e.rendered = make([][]byte, len(e.log.Changes))
	close(e.done)
	r.mu.Lock()
	defer r.mu.Unlock()
	e.size = size // read by insert under r.mu
	if r.reads[key] != e {
		return // evicted meanwhile
	}
	if e.err != nil {
		delete(r.reads, key)
		return
	}
	r.size += e.size
}

// event returns the data of change i as a change event without match,
// rendered once for every stream that sends it.
func (e *changeRead) event(coll string, i int) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if b := e.rendered[i]; b != nil {
		return b, nil
	}
	b, err := changeData(coll, e.log.Changes[i], nil)
	if err != nil {
		return nil, err
	}
	e.rendered[i] = b
	return b, nil
}

// changeData renders a change event's data: the history entry with c, id,
// cursor and, when match is not nil, match.
func changeData(coll string, ch store.CollectionChange, match *bool) ([]byte, error) {
	t := eventTarget{c: coll, id: ch.ID, cursor: encodeCursor(ch.Cursor), match: match}
	return appendVersionOf(make([]byte, 0, len(ch.Version.Ops)+384), ch.Version, &t)
}
