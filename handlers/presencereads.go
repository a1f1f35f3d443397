package handlers

import (
	"context"
	"sync"
	"time"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// presenceReads shares the reads of a document's presence among the
// streams that follow it: a change wakes every one of them, and each read
// the sessions from the store and rendered the same event (60 streams of
// one document, 100 sessions of 1 KB: 26 ms of CPU for every presence
// PUT). A change raises the document's generation before it wakes them;
// a stream takes a read that began at that generation or later, else
// reads and renders once for the others.
type presenceReads struct {
	mu          sync.Mutex
	generations // of presence keys; guarded by mu
	reads       map[string]*presenceRead
	order       []string // oldest first; compacted
	size        int
}

// Bounds of the presence reads kept: a read is kept until newer ones push
// it out.
const (
	maxPresenceReads      = 1024
	maxPresenceReadsBytes = 16 << 20
)

// presenceReadFresh is how long a read is shared: a stream that looks
// again without a change announced (its heartbeat, or when presence
// events cannot be followed) reads for itself past it, so that what it
// sends is never older than presence events may be late.
const presenceReadFresh = time.Second

// presenceRead is one read of a document's presence, rendered as the data
// of a presence event.
type presenceRead struct {
	gen   uint64
	start time.Time
	done  chan struct{}
	empty bool   // no sessions
	fp    []byte // presenceFingerprint
	data  []byte
	err   error
	// counted says its bytes are in presenceReads.size; guarded by
	// presenceReads.mu.
	counted bool
}

func (e *presenceRead) bytes() int { return len(e.data) + len(e.fp) }

func newPresenceReads() *presenceReads {
	return &presenceReads{reads: map[string]*presenceRead{}}
}

// bump raises key's generation ("" raises every key's). followPresence
// calls it before it wakes the key's streams.
func (r *presenceReads) bump(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.generations.bump(key)
}

// read returns the presence of document (coll, id), whose presence key is
// key, from a read that began after its last change was announced.
func (r *presenceReads) read(ctx context.Context, p store.Presence, key, coll, id string) (*presenceRead, error) {
	r.mu.Lock()
	gen := r.generations.of(key)
	if e := r.reads[key]; e != nil && e.gen >= gen && time.Since(e.start) < presenceReadFresh {
		r.mu.Unlock()
		if err := awaitRead(ctx, e.done); err != nil {
			return nil, err
		}
		if e.err == nil {
			return e, nil
		}
		// Its reader's error (its context, say): read for yourself.
		e = &presenceRead{gen: gen, start: time.Now(), done: make(chan struct{})}
		e.load(ctx, p, coll, id)
		return e, e.err
	}
	e := &presenceRead{gen: gen, start: time.Now(), done: make(chan struct{})}
	if old := r.reads[key]; old != nil && old.counted {
		r.size -= old.bytes()
	}
	r.reads[key] = e
	r.order = append(r.order, key)
	r.mu.Unlock()
	e.load(ctx, p, coll, id)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reads[key] == e {
		if e.err != nil {
			delete(r.reads, key)
		} else {
			r.size += e.bytes()
			e.counted = true
		}
	}
	r.evict()
	return e, e.err
}

// load reads and renders the presence, and publishes it.
func (e *presenceRead) load(ctx context.Context, p store.Presence, coll, id string) {
	defer close(e.done)
	ss, err := p.ListPresence(ctx, coll, id)
	if err != nil {
		e.err = err
		return
	}
	list, err := sessionsJSON(ss)
	if err != nil {
		e.err = err
		return
	}
	e.empty, e.fp = len(ss) == 0, presenceFingerprint(ss)
	e.data = patch.Canonical(map[string]any{"c": coll, "id": id, "sessions": list})
}

// evict compacts the order and drops the oldest reads past the bounds.
// The caller holds r.mu.
func (r *presenceReads) evict() {
	if len(r.order) > 2*maxPresenceReads {
		r.order = compactOrder(r.order, func(k string) bool { return r.reads[k] != nil })
	}
	for len(r.order) > 0 && (len(r.reads) > maxPresenceReads || r.size > maxPresenceReadsBytes) {
		k := r.order[0]
		r.order = r.order[1:]
		if e := r.reads[k]; e != nil {
			// One in flight is dropped too: its readers hold it, and it
			// is not counted when it settles (read checks it is still
			// held).
			delete(r.reads, k)
			if e.counted {
				r.size -= e.bytes()
			}
		}
	}
}
