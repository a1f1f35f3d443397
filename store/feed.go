package store

import (
	"context"
	"sync"
)

// Event is a hint that a document has a new version. Events are hints,
// not the versions themselves: they may arrive late, twice or out of
// order, and several may be merged, so a consumer keeps, per document it
// watches, the last seq it has handled and reads History after it.
type Event struct {
	// Collection and ID name the document; Seq is the version committed.
	Collection string
	ID         string
	Seq        uint64
	// Resync means hints may have been missed (the feed reconnected, a
	// consumer fell behind, or a periodic safety-net tick): the consumer
	// re-reads the History of every document it watches. Collection, ID
	// and Seq are empty.
	Resync bool
}

// subscriberBuffer is how many Events a subscriber may fall behind before
// it gets a Resync instead.
const subscriberBuffer = 256

// Broadcaster fans Events out to subscribers without ever blocking the
// publisher: a subscriber whose buffer is full misses Events and gets a
// Resync as soon as there is room. The zero value is ready to use. Every
// backend publishes its commits through one.
type Broadcaster struct {
	mu     sync.Mutex
	subs   map[*listener]struct{}
	closed bool
}

// listener is one Subscribe call's channel.
type listener struct {
	ch     chan Event
	missed bool // an Event was dropped; a Resync is owed
}

// Subscribe registers a subscriber until ctx is done or Close is called.
func (b *Broadcaster) Subscribe(ctx context.Context) (<-chan Event, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.subs == nil {
		b.subs = make(map[*listener]struct{})
	}
	s := &listener{ch: make(chan Event, subscriberBuffer)}
	b.subs[s] = struct{}{}
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.subs[s]; ok {
			delete(b.subs, s)
			close(s.ch)
		}
	})
	return s.ch, nil
}

// Publish sends ev to every subscriber that has room for it.
func (b *Broadcaster) Publish(ev Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if s.missed {
			select {
			case s.ch <- Event{Resync: true}:
				s.missed = false
			default:
				continue
			}
			if ev.Resync {
				continue
			}
		}
		select {
		case s.ch <- ev:
		default:
			s.missed = true
		}
	}
}

// Close closes every subscriber's channel; later Subscribes fail with
// ErrClosed.
func (b *Broadcaster) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		delete(b.subs, s)
		close(s.ch)
	}
}
