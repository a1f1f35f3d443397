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

// Notifier is implemented by stores that report commits, including, for a
// shared database, those made by other processes.
type Notifier interface {
	// Subscribe returns a channel of Events for commits after the call
	// (and possibly some before), closed when ctx is done or the store is
	// closed. A consumer that starts watching a document subscribes first,
	// then reads its History, so that no commit falls between the two.
	Subscribe(ctx context.Context) (<-chan Event, error)
}

// subscriberBuffer is how many Events a subscriber may fall behind before
// it gets a Resync instead.
const subscriberBuffer = 256

// Broadcaster fans Events out to subscribers without ever blocking the
// publisher: a subscriber whose buffer is full misses Events and gets a
// Resync as soon as there is room. The zero value is ready to use.
type Broadcaster struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
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
		b.subs = make(map[*subscriber]struct{})
	}
	s := &subscriber{ch: make(chan Event, subscriberBuffer)}
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

// Notifying wraps a Store whose writes all go through this process (the
// bbolt store) so that it is also a Notifier: every Update that commits
// publishes an Event. Backends over a shared database implement Notifier
// themselves.
type Notifying struct {
	Store
	feed Broadcaster
}

var _ Notifier = (*Notifying)(nil)

// NewNotifying returns s wrapped as a Notifier.
func NewNotifying(s Store) *Notifying { return &Notifying{Store: s} }

// Subscribe returns a channel of the wrapped store's commits.
func (n *Notifying) Subscribe(ctx context.Context) (<-chan Event, error) {
	return n.feed.Subscribe(ctx)
}

// Update calls the wrapped store's Update and, when it commits a version,
// publishes its Event.
func (n *Notifying) Update(ctx context.Context, collection, id string, fn UpdateFunc) (*Document, error) {
	var (
		prev    uint64 // seq of the document fn last saw
		changed bool
	)
	doc, err := n.Store.Update(ctx, collection, id, func(ctx context.Context, cur *Document, h History) (*Change, error) {
		ch, err := fn(ctx, cur, h)
		prev, changed = 0, err == nil && ch != nil
		if cur != nil {
			prev = cur.Seq
		}
		return ch, err
	})
	if err == nil && changed {
		ev := Event{Collection: collection, ID: id, Seq: prev + 1}
		if doc != nil {
			ev.Seq = doc.Seq
		}
		n.feed.Publish(ev)
	}
	return doc, err
}

// Close closes the subscribers' channels, then the wrapped store.
func (n *Notifying) Close() error {
	n.feed.Close()
	return n.Store.Close()
}
