package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	pclient "github.com/patchd/patchd/client"
	"github.com/patchd/patchd/internal/faults"
)

// TestCollectionWatchAcrossReplicas: the Go client follows a collection
// through replica A (behind a proxy) while writers write through replica
// B. The stream is cut while versions commit, and A is killed and
// replaced by a new replica; every version of every document arrives once,
// in seq order, none lost: the cursors are positions in the shared change
// log, valid on any replica.
func TestCollectionWatchAcrossReplicas(t *testing.T) {
	db := pg.Database(t)
	a, b := startReplica(t, db), startReplica(t, db)
	proxy, err := faults.NewProxy()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	proxy.SetTarget(strings.TrimPrefix(a.URL, "http://"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	fast := pclient.WithRetry(pclient.RetryPolicy{Attempts: 100, BaseDelay: 5 * time.Millisecond, MaxDelay: 100 * time.Millisecond})
	watcher := pclient.New("http://"+proxy.Addr(), fast)
	writer := pclient.New(b.URL, fast)

	events := watcher.Watch(ctx, pclient.Subscriptions{Collections: []pclient.CollectionSubscription{{Collection: "orders"}}, Ready: true})
	if ev := <-events; ev.Type != pclient.EventReady {
		t.Fatalf("event %+v, want ready", ev)
	}

	// Four writers, each on its own documents, through B only.
	const writers, docs, writes = 4, 3, 30
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	progress := make(chan struct{}, writers*writes)
	for w := range writers {
		wg.Go(func() {
			for i := range writes {
				id := fmt.Sprintf("w%d-%d", w, i%docs)
				var err error
				if i < docs {
					_, err = writer.Create(ctx, "orders", id, map[string]int{"i": i})
				} else {
					_, err = writer.Merge(ctx, "orders", id, map[string]int{"i": i}, pclient.IfMatch("*"))
				}
				if err != nil {
					errs <- fmt.Errorf("%s write %d: %w", id, i, err)
					return
				}
				progress <- struct{}{}
			}
		})
	}

	got := map[string]uint64{} // per document, the last seq received
	received := 0
	check := func(ev pclient.Event) {
		t.Helper()
		switch ev.Type {
		case pclient.EventReady:
			return
		case pclient.EventChange:
		default:
			t.Fatalf("event %+v (%v)", ev, ev.Err)
		}
		if ev.Seq != got[ev.ID]+1 {
			t.Fatalf("%s: change %d after %d: lost or repeated", ev.ID, ev.Seq, got[ev.ID])
		}
		got[ev.ID] = ev.Seq
		received++
	}
	// A third of the writes in, cut the stream and keep the watcher away
	// while writes go on; two thirds in, kill A and follow through a new
	// replica.
	var a2 *replica
	for n := 1; n <= writers*writes; n++ {
		select {
		case <-progress:
		case err := <-errs:
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		switch n {
		case writers * writes / 3:
			proxy.SetTarget(deadAddr(t))
			proxy.Cut()
		case writers*writes/3 + 20:
			proxy.SetTarget(strings.TrimPrefix(a.URL, "http://"))
		case 2 * writers * writes / 3:
			a.kill()
			a2 = startReplica(t, db)
			proxy.SetTarget(strings.TrimPrefix(a2.URL, "http://"))
		}
		// Take what has come, without waiting.
		for drained := false; !drained; {
			select {
			case ev := <-events:
				check(ev)
			default:
				drained = true
			}
		}
	}
	wg.Wait()
	if a2 == nil {
		t.Fatal("replica A was never replaced")
	}
	for received < writers*writes {
		select {
		case ev := <-events:
			check(ev)
		case <-ctx.Done():
			t.Fatalf("%d changes of %d: %v", received, writers*writes, got)
		}
	}
	for w := range writers {
		for d := range docs {
			id := fmt.Sprintf("w%d-%d", w, d)
			if want := uint64(writes / docs); got[id] != want {
				t.Errorf("%s: last change %d, want %d", id, got[id], want)
			}
		}
	}
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
