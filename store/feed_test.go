package store_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
)

func TestNotifyingPublishesCommits(t *testing.T) {
	s := store.NewNotifying(mustOpenBolt(t, filepath.Join(t.TempDir(), "patchd.db"), store.BoltOptions{}))
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := s.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "c", "a", &store.Change{Body: []byte(`{}`), Kind: store.KindPut})
	put(t, s, "c", "a", &store.Change{Kind: store.KindDelete})
	// Nothing committed: no event.
	if _, err := s.Update(ctx, "c", "a", func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	put(t, s, "c", "a", &store.Change{Body: []byte(`{"v":3}`), Kind: store.KindPut})
	for _, want := range []uint64{1, 2, 3} {
		select {
		case ev := <-ch:
			if ev != (store.Event{Collection: "c", ID: "a", Seq: want}) {
				t.Fatalf("event %+v, want c/a seq %d", ev, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no event for seq %d", want)
		}
	}
	cancel()
	for range ch { // closed once ctx is done
	}
}

func TestBroadcasterSlowSubscriberGetsResync(t *testing.T) {
	var b store.Broadcaster
	ch, err := b.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000 // more than a subscriber buffers
	for i := range n {
		b.Publish(store.Event{Collection: "c", ID: "a", Seq: uint64(i + 1)})
	}
	got := 0
	for len(ch) > 0 {
		<-ch
		got++
	}
	if got == 0 || got >= n {
		t.Fatalf("%d events buffered of %d", got, n)
	}
	// The next publish owes the subscriber a Resync first.
	b.Publish(store.Event{Collection: "c", ID: "a", Seq: n + 1})
	if ev := <-ch; !ev.Resync {
		t.Fatalf("event after an overflow %+v, want Resync", ev)
	}
	if ev := <-ch; ev.Seq != n+1 {
		t.Fatalf("event %+v, want seq %d", ev, n+1)
	}
	b.Close()
	if _, ok := <-ch; ok {
		t.Fatal("channel open after Close")
	}
	if _, err := b.Subscribe(t.Context()); err == nil {
		t.Fatal("Subscribe after Close succeeded")
	}
}
