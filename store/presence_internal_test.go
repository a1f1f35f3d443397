package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestMemoryPresence(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := NewMemoryPresence(PresenceLimits{PerDocument: 2, PerClient: 2, Total: 3}, clock.now)
	defer m.Close()
	events, err := m.WatchPresence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hint := func(want string) {
		t.Helper()
		select {
		case ev := <-events:
			if got := ev.Collection + "/" + ev.ID; got != want {
				t.Fatalf("hint of %s, want %s", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no hint of %s", want)
		}
	}
	put := func(c, id, session, client string, ttl time.Duration) error {
		_, err := m.PutPresence(ctx, PresenceSession{Collection: c, ID: id, Session: session, Client: client, State: []byte(`{}`)}, ttl)
		return err
	}
	if err := put("f", "1", "s1", "ann", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	hint("f/1")
	if err := put("f", "1", "s2", "bob", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	hint("f/1")
	var full *PresenceFullError
	if err := put("f", "1", "s3", "cat", time.Second); !errors.As(err, &full) || full.Scope != "document" || !errors.Is(err, ErrPresenceFull) {
		t.Fatalf("third session of a document: %v", err)
	}
	if err := put("f", "2", "s1", "ann", time.Second); err != nil {
		t.Fatal(err)
	}
	hint("f/2")
	if err := put("f", "3", "s1", "ann", time.Second); !errors.As(err, &full) || full.Scope != "client" {
		t.Fatalf("third session of a client: %v", err)
	}
	if err := put("f", "3", "s1", "cat", time.Second); !errors.As(err, &full) || full.Scope != "total" {
		t.Fatalf("fourth session: %v", err)
	}
	// Renewing is not refused, whatever the bounds.
	if err := put("f", "1", "s1", "ann", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	hint("f/1")

	// The sweeper waits on real time, which a loaded machine lets pass:
	// stop it, so that only the sweep below removes what expires.
	m.close.Do(func() {
		close(m.stop)
		<-m.done
	})
	defer m.feed.Close()
	// Past 10 s, s1 of f/1 and f/2 have expired: they are not listed, and a
	// sweep removes them and hints their documents.
	clock.add(10 * time.Second)
	ss, err := m.ListPresence(ctx, "f", "1")
	if err != nil || len(ss) != 1 || ss[0].Session != "s2" || !ss[0].Expires.Equal(clock.now().Add(10*time.Second)) {
		t.Fatalf("sessions %+v, %v", ss, err)
	}
	if err := m.EndPresence(ctx, "f", "2", "s1", "ann"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ending an expired session: %v", err)
	}
	if next := m.sweep(); !next.Equal(clock.now().Add(10 * time.Second)) {
		t.Fatalf("next expiry %v", next)
	}
	hint("f/1")
	if err := put("f", "3", "s1", "cat", time.Second); err != nil {
		t.Fatalf("room after the sweep: %v", err)
	}
	hint("f/3")
	// A live session is its client's alone, to renew or to end.
	if err := put("f", "3", "s1", "ann", time.Second); !errors.Is(err, ErrPresenceNotYours) {
		t.Fatalf("another client renewing: %v", err)
	}
	if err := m.EndPresence(ctx, "f", "3", "s1", "ann"); !errors.Is(err, ErrPresenceNotYours) {
		t.Fatalf("another client ending: %v", err)
	}
	if ss, _ := m.ListPresence(ctx, "f", "3"); len(ss) != 1 || ss[0].Client != "cat" {
		t.Fatalf("after the refusals: %+v", ss)
	}
	if err := m.EndPresence(ctx, "f", "3", "s1", "cat"); err != nil {
		t.Fatal(err)
	}
	hint("f/3")
	if err := m.EndPresence(ctx, "f", "3", "s1", "cat"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ending twice: %v", err)
	}
}

func TestMemoryPresenceSweeper(t *testing.T) {
	ctx := context.Background()
	m := NewMemoryPresence(PresenceLimits{}, nil)
	defer m.Close()
	events, err := m.WatchPresence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.PutPresence(ctx, PresenceSession{Collection: "f", ID: "1", Session: "s", State: []byte(`{}`)}, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	<-events // the announcement
	select {
	case ev := <-events: // the expiry, which no call announces
		if ev.Collection != "f" || ev.ID != "1" {
			t.Fatalf("hint %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no hint of the expiry")
	}
	if ss, _ := m.ListPresence(ctx, "f", "1"); len(ss) != 0 {
		t.Fatalf("sessions %+v", ss)
	}
	m.Close()
	if _, ok := <-events; ok {
		t.Fatal("the watcher's channel stays open after Close")
	}
}
