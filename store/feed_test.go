package store_test

import (
	"testing"

	"github.com/patchd/patchd/store"
)

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
