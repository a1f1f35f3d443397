package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestSettledForgetsBase: a settled write no longer refers to the pending
// version it was built on, so that a document that always has a write
// queued does not keep every one of its versions reachable.
func TestSettledForgetsBase(t *testing.T) {
	b, err := OpenBolt(filepath.Join(t.TempDir(), "patchd.db"), BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var (
		mu      sync.Mutex
		seen    []*commitReq
		hadBase int
		once    sync.Once
	)
	b.gc.beforeCommit = func(batch []*commitReq) {
		// Hold the first commit until all 64 writes are in it or queued
		// behind it, each built on the one before.
		once.Do(func() {
			deadline := time.Now().Add(10 * time.Second)
			for {
				b.gc.mu.Lock()
				n := len(b.gc.queue)
				b.gc.mu.Unlock()
				if n+len(batch) >= 64 || time.Now().After(deadline) {
					return
				}
				time.Sleep(100 * time.Microsecond)
			}
		})
		mu.Lock()
		for _, r := range batch {
			if r.prev != nil {
				hadBase++
			}
		}
		seen = append(seen, batch...)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			_, err := b.Update(context.Background(), "c", "hot", func(context.Context, *Document, History) (*Change, error) {
				return &Change{Body: fmt.Appendf(nil, `{"i":%d}`, i), Kind: KindPut}, nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	withBase := 0
	for _, r := range seen {
		<-r.done
		if r.prev != nil {
			withBase++
		}
	}
	if hadBase < 63 {
		t.Fatalf("only %d writes were built on a pending version", hadBase)
	}
	if withBase > 0 {
		t.Fatalf("%d of %d settled writes still refer to their base", withBase, len(seen))
	}
}
