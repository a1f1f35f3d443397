package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// PresenceSession is one client's announcement that it has a document
// open: who, and where in the document it is. Sessions are not documents:
// they live until Expires unless renewed, and are never stored in history
// or backups.
type PresenceSession struct {
	// Collection and ID name the document; Session is the id the client
	// chose for itself.
	Collection string
	ID         string
	Session    string
	// Client names who announced it, for PresenceLimits.PerClient; it is
	// never shown.
	Client string
	// Actor is the author as history would record it, "" for none.
	Actor string
	// State is what the client announced, a canonical JSON object.
	State []byte
	// Expires is when the session ends unless renewed.
	Expires time.Time
}

// PresenceLimits bound the sessions a registry holds; zero or less means
// no bound.
type PresenceLimits struct {
	PerDocument int // sessions of one document
	PerClient   int // sessions of one PresenceSession.Client
	Total       int // sessions of every document
	// PerClientDocument is one client's sessions of one document, below
	// PerDocument so that no client can take every place of a document.
	PerClientDocument int
}

// PresenceFullError is a new session refused by a PresenceLimits bound.
// Renewing a session already there is never refused.
type PresenceFullError struct {
	// Scope is the bound reached: "document", "client", "total" or
	// "client's share of a document".
	Scope string
	// Limit is that bound.
	Limit int
}

func (e *PresenceFullError) Error() string {
	return fmt.Sprintf("presence: %d sessions already (the %s limit)", e.Limit, e.Scope)
}

// ErrPresenceFull is matched by every *PresenceFullError (errors.Is).
var ErrPresenceFull = errors.New("presence: too many sessions")

// ErrPresenceNotYours refuses a client the renewal or the end of a live
// session another client announced: session ids are shown to every reader
// of the document, and they must not let one person speak or leave for
// another.
var ErrPresenceNotYours = errors.New("presence: the session was announced by another client")

// Is makes errors.Is(err, ErrPresenceFull) true.
func (e *PresenceFullError) Is(target error) bool { return target == ErrPresenceFull }

// Presence is a registry of presence sessions, shared by every process
// serving the same data (every replica over one database). Stores that are
// shared between processes implement it; NewMemoryPresence serves a store
// that one process holds.
type Presence interface {
	// PutPresence announces s, or renews it when the session is there,
	// until ttl from now, and returns when it expires. A new session past
	// a bound is a *PresenceFullError; a live session of another client
	// (PresenceSession.Client) is ErrPresenceNotYours, and is left as it
	// is. An expired one is anyone's.
	PutPresence(ctx context.Context, s PresenceSession, ttl time.Duration) (time.Time, error)
	// EndPresence ends a session of client (PresenceSession.Client); one
	// that is not there is ErrNotFound, a live one of another client
	// ErrPresenceNotYours.
	EndPresence(ctx context.Context, collection, id, session, client string) error
	// ListPresence returns the live sessions of a document in session
	// order.
	ListPresence(ctx context.Context, collection, id string) ([]PresenceSession, error)
	// WatchPresence returns hints, as Events with Seq 0, that the sessions
	// of a document may have changed: announced, renewed, ended or
	// expired. A Resync event means hints may have been missed. The
	// channel closes when ctx is done or the registry is closed.
	WatchPresence(ctx context.Context) (<-chan Event, error)
}

// PresenceStore is a Store shared by several processes that keeps their
// presence sessions: every replica over one database sees the same ones.
type PresenceStore interface {
	// Presence returns the shared registry with the given bounds.
	Presence(limits PresenceLimits) Presence
}

// MemoryPresence is a Presence held in this process's memory. Expired
// sessions are swept by a goroutine, each wakes its document's watchers;
// Close stops it.
type MemoryPresence struct {
	limits PresenceLimits
	now    func() time.Time

	mu      sync.Mutex
	docs    map[string]map[string]*PresenceSession // by doc key, then session
	clients map[string]int                         // sessions per Client
	total   int
	next    time.Time // when the sweeper wakes next; zero: not scheduled

	feed  Broadcaster
	kick  chan struct{}
	stop  chan struct{}
	done  chan struct{}
	close sync.Once
}

var _ Presence = (*MemoryPresence)(nil)

// NewMemoryPresence returns an empty registry with the given bounds, on the
// clock now (nil: time.Now).
func NewMemoryPresence(limits PresenceLimits, now func() time.Time) *MemoryPresence {
	if now == nil {
		now = time.Now
	}
	m := &MemoryPresence{
		limits:  limits,
		now:     now,
		docs:    make(map[string]map[string]*PresenceSession),
		clients: make(map[string]int),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go m.sweeper()
	return m
}

// PresenceShareScope is the Scope of a PresenceFullError for
// PresenceLimits.PerClientDocument.
const PresenceShareScope = "client's share of a document"

// clientSessions counts the sessions of client among a document's.
func clientSessions(sessions map[string]*PresenceSession, client string) int {
	n := 0
	for _, s := range sessions {
		if s.Client == client {
			n++
		}
	}
	return n
}

// presenceKey is a document's key in MemoryPresence.docs.
func presenceKey(collection, id string) string { return collection + "\x00" + id }

// PutPresence announces or renews s (see Presence).
func (m *MemoryPresence) PutPresence(ctx context.Context, s PresenceSession, ttl time.Duration) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	now := m.now()
	s.Expires = now.Add(ttl)
	s.State = bytes.Clone(s.State)
	k := presenceKey(s.Collection, s.ID)
	m.mu.Lock()
	sessions := m.docs[k]
	old, ok := sessions[s.Session]
	if ok && !now.Before(old.Expires) {
		m.removeLocked(k, old) // expired, not yet swept: a new session
		sessions, ok = m.docs[k], false
	}
	if ok && old.Client != s.Client {
		m.mu.Unlock()
		return time.Time{}, fmt.Errorf("presence %s/%s %s: %w", s.Collection, s.ID, s.Session, ErrPresenceNotYours)
	}
	if !ok {
		var full *PresenceFullError
		switch l := m.limits; {
		case l.PerDocument > 0 && len(sessions) >= l.PerDocument:
			full = &PresenceFullError{Scope: "document", Limit: l.PerDocument}
		case l.PerClientDocument > 0 && clientSessions(sessions, s.Client) >= l.PerClientDocument:
			full = &PresenceFullError{Scope: PresenceShareScope, Limit: l.PerClientDocument}
		case l.PerClient > 0 && m.clients[s.Client] >= l.PerClient:
			full = &PresenceFullError{Scope: "client", Limit: l.PerClient}
		case l.Total > 0 && m.total >= l.Total:
			full = &PresenceFullError{Scope: "total", Limit: l.Total}
		}
		if full != nil {
			m.mu.Unlock()
			return time.Time{}, full
		}
		if sessions == nil {
			sessions = make(map[string]*PresenceSession)
			m.docs[k] = sessions
		}
		m.total++
	} else {
		m.clients[old.Client]--
		if m.clients[old.Client] <= 0 {
			delete(m.clients, old.Client)
		}
	}
	m.clients[s.Client]++
	sessions[s.Session] = &s
	kick := m.next.IsZero() || s.Expires.Before(m.next)
	m.mu.Unlock()
	if kick {
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
	m.feed.Publish(Event{Collection: s.Collection, ID: s.ID})
	return s.Expires, nil
}

// removeLocked forgets s, the session of document key k.
func (m *MemoryPresence) removeLocked(k string, s *PresenceSession) {
	sessions := m.docs[k]
	delete(sessions, s.Session)
	if len(sessions) == 0 {
		delete(m.docs, k)
	}
	m.total--
	if m.clients[s.Client]--; m.clients[s.Client] <= 0 {
		delete(m.clients, s.Client)
	}
}

// EndPresence ends a session (see Presence).
func (m *MemoryPresence) EndPresence(ctx context.Context, collection, id, session, client string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k := presenceKey(collection, id)
	m.mu.Lock()
	s, ok := m.docs[k][session]
	live := ok && m.now().Before(s.Expires)
	if live && s.Client != client {
		m.mu.Unlock()
		return fmt.Errorf("presence %s/%s %s: %w", collection, id, session, ErrPresenceNotYours)
	}
	if ok {
		m.removeLocked(k, s)
	}
	m.mu.Unlock()
	if !live {
		return fmt.Errorf("presence %s/%s %s: %w", collection, id, session, ErrNotFound)
	}
	m.feed.Publish(Event{Collection: collection, ID: id})
	return nil
}

// ListPresence returns a document's live sessions (see Presence).
func (m *MemoryPresence) ListPresence(ctx context.Context, collection, id string) ([]PresenceSession, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := m.now()
	m.mu.Lock()
	out := make([]PresenceSession, 0, len(m.docs[presenceKey(collection, id)]))
	for _, s := range m.docs[presenceKey(collection, id)] {
		if now.Before(s.Expires) {
			out = append(out, *s)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b PresenceSession) int { return strings.Compare(a.Session, b.Session) })
	return out, nil
}

// WatchPresence returns hints of changed sessions (see Presence).
func (m *MemoryPresence) WatchPresence(ctx context.Context) (<-chan Event, error) {
	return m.feed.Subscribe(ctx)
}

// Close stops the sweeper and closes every watcher's channel.
func (m *MemoryPresence) Close() {
	m.close.Do(func() {
		close(m.stop)
		<-m.done
		m.feed.Close()
	})
}

// sweeper removes sessions as they expire, telling their documents'
// watchers, until Close.
func (m *MemoryPresence) sweeper() {
	defer close(m.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := m.sweep()
		if next.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(max(next.Sub(m.now()), time.Millisecond))
		}
		select {
		case <-timer.C:
		case <-m.kick:
		case <-m.stop:
			return
		}
	}
}

// sweep removes expired sessions and returns when the next one expires
// (zero when none is left).
func (m *MemoryPresence) sweep() time.Time {
	now := m.now()
	var changed []Event
	m.mu.Lock()
	var next time.Time
	for k, sessions := range m.docs {
		for _, s := range sessions {
			if !now.Before(s.Expires) {
				if len(changed) == 0 || changed[len(changed)-1] != (Event{Collection: s.Collection, ID: s.ID}) {
					changed = append(changed, Event{Collection: s.Collection, ID: s.ID})
				}
				m.removeLocked(k, s)
			} else if next.IsZero() || s.Expires.Before(next) {
				next = s.Expires
			}
		}
	}
	m.next = next
	m.mu.Unlock()
	for _, ev := range changed {
		m.feed.Publish(ev)
	}
	return next
}
