package handlers

import (
	"fmt"
	"slices"
	"sync"

	"github.com/patchd/patchd/store"
)

// Streams that follow one document (GET .../events, or POST /events) are
// woken together by each commit of it, and each sends the same version
// event. versionEvents renders each event once for all of them and keeps
// it while they write it: a stream blocked on a slow client then holds the
// shared bytes, not a copy, so that the memory of many streams following a
// large document is that of one event, not one per stream.

// Bounds of the rendered events kept: useful only while the streams woken
// together take them, and kept small, since what is kept raises the heap
// the collector lets grow (BenchmarkHistoryLargeVersions). An event larger
// than half of maxVersionEventsBytes is rendered by each stream for itself;
// a stream holds its events, shared or not, only while it writes them.
const (
	maxVersionEvents      = 256
	maxVersionEventsBytes = 4 << 20
)

// versionEventKey names a rendered event: a version of a document, with
// the document's c and id in its data (POST /events) or without (GET).
type versionEventKey struct {
	c, id  string
	seq    uint64
	etag   string // the version's: seqs restart in a database loaded anew
	target bool
}

// versionEvent is one event's data, rendered once.
type versionEvent struct {
	key  versionEventKey
	done chan struct{} // closed when data and err are set
	data []byte
	err  error
	size int // bytes counted in versionEvents.size; guarded by its mu
}

// versionEvents holds the recent rendered events.
type versionEvents struct {
	mu     sync.Mutex
	events map[versionEventKey]*versionEvent
	order  []*versionEvent // oldest first; some may have left events
	size   int             // bytes of the events rendered and kept

	renders int // events rendered; for tests
}

func newVersionEvents() *versionEvents {
	return &versionEvents{events: map[versionEventKey]*versionEvent{}}
}

// data returns the data of the version event of v of coll/id, with c and
// id when target is set: rendered by the first stream that asks, and
// shared with the others.
func (ve *versionEvents) data(coll, id string, v store.Version, target bool) ([]byte, error) {
	render := func() ([]byte, error) {
		var t *eventTarget
		if target {
			t = &eventTarget{c: coll, id: id}
		}
		return appendVersionOf(make([]byte, 0, len(v.Ops)+384), v, t)
	}
	if len(v.Ops) > maxVersionEventsBytes/2 {
		return render()
	}
	key := versionEventKey{c: coll, id: id, seq: v.Seq, etag: v.ETag, target: target}
	ve.mu.Lock()
	if e := ve.events[key]; e != nil {
		ve.mu.Unlock()
		<-e.done // a render, with no I/O: it ends
		return e.data, e.err
	}
	e := &versionEvent{key: key, done: make(chan struct{})}
	ve.events[key] = e
	ve.order = append(ve.order, e)
	ve.renders++
	ve.mu.Unlock()

	data, err := render()

	ve.mu.Lock()
	defer ve.mu.Unlock()
	e.data, e.err = data, err
	close(e.done)
	kept := ve.events[key] == e // not evicted while it rendered
	switch {
	case kept && err != nil:
		delete(ve.events, key)
	case kept:
		e.size = len(data)
		ve.size += e.size
	}
	ve.evict()
	return data, err
}

// evict drops the oldest events past the bounds; one still rendering
// counts no bytes yet. ve.mu is held.
func (ve *versionEvents) evict() {
	if len(ve.order) > 4*maxVersionEvents {
		ve.order = slices.DeleteFunc(ve.order, func(e *versionEvent) bool { return ve.events[e.key] != e })
	}
	for len(ve.order) > 0 && (len(ve.events) > maxVersionEvents || ve.size > maxVersionEventsBytes) {
		old := ve.order[0]
		ve.order[0] = nil // the array still holds what is sliced off
		ve.order = ve.order[1:]
		if ve.events[old.key] == old {
			delete(ve.events, old.key)
			ve.size -= old.size
		}
	}
}

// renderedVersion is a version event's seq and shared data.
type renderedVersion struct {
	seq  uint64
	data []byte
}

// all renders the events of vs, read together, before any is written, and
// lets go of vs's bytes: a stream then waits on a slow client holding the
// shared events only, not the versions it read.
func (ve *versionEvents) all(coll, id string, vs []store.Version, target bool) ([]renderedVersion, error) {
	out := make([]renderedVersion, len(vs))
	for i, v := range vs {
		data, err := ve.data(coll, id, v, target)
		if err != nil {
			return nil, fmt.Errorf("%s/%s seq %d: %w", coll, id, v.Seq, err)
		}
		out[i] = renderedVersion{seq: v.Seq, data: data}
		vs[i] = store.Version{}
	}
	return out, nil
}
