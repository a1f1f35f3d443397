package handlers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
)

// gatedPresence answers every list with one session of 1 MiB; lists of
// documents named slow* wait for gate.
type gatedPresence struct {
	store.Presence
	gate chan struct{}
}

func (g *gatedPresence) ListPresence(_ context.Context, c, id string) ([]store.PresenceSession, error) {
	if strings.HasPrefix(id, "slow") {
		<-g.gate
	}
	return []store.PresenceSession{{Collection: c, ID: id, Session: "s", State: []byte(`{"data":"` + strings.Repeat("x", 1<<20) + `"}`), Expires: time.Now().Add(time.Hour)}}, nil
}

// TestPresenceReadsBounded: reads still loading when newer ones push them
// out are dropped like the others, so that the reads kept stay within
// their bounds and the newest are kept (reads evicted while in flight
// were left held and uncounted for good: past the byte bound, every new
// read was then dropped as soon as it settled, and sharing stopped).
func TestPresenceReadsBounded(t *testing.T) {
	g := &gatedPresence{gate: make(chan struct{})}
	r := newPresenceReads()
	ctx := context.Background()
	done := make(chan error, 10)
	for j := range 10 {
		go func() {
			id := fmt.Sprint("slow", j)
			_, err := r.read(ctx, g, presenceKey("c", id), "c", id)
			done <- err
		}()
	}
	for held := 0; held < 10; { // every slow read is in flight
		r.mu.Lock()
		held = len(r.reads)
		r.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	read := func(prefix string) {
		for i := range 40 {
			id := fmt.Sprint(prefix, i)
			if _, err := r.read(ctx, g, presenceKey("c", id), "c", id); err != nil {
				t.Fatal(err)
			}
		}
	}
	read("d")
	close(g.gate)
	for range 10 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	read("e")
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.size > maxPresenceReadsBytes || r.reads[presenceKey("c", "e39")] == nil {
		t.Fatalf("%d reads held, %d bytes (bound %d); the newest kept: %v", len(r.reads), r.size, maxPresenceReadsBytes, r.reads[presenceKey("c", "e39")] != nil)
	}
}
