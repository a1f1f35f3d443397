package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
)

// TestSettledForgetsBase: a settled write no longer refers to the pending
// version it was built on, so that a document that always has a write
// queued does not keep every one of its versions reachable.
func TestSettledForgetsBase(t *testing.T) {
	b, err := Open(filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
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
	b.committer.beforeCommit = func(batch []*commitReq) {
		// Hold the first commit until all 64 writes are in it or queued
		// behind it, each built on the one before.
		once.Do(func() {
			deadline := time.Now().Add(10 * time.Second)
			for {
				b.committer.mu.Lock()
				n := len(b.committer.queue)
				b.committer.mu.Unlock()
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
			_, err := b.Update(context.Background(), "c", "hot", func(context.Context, *store.Document, store.History) (*store.Change, error) {
				return &store.Change{Body: fmt.Appendf(nil, `{"i":%d}`, i), Kind: store.KindPut}, nil
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

// TestMapWithin: under an address-space limit the map leaves the runtime
// half of it, in whole GiB (ulimit -v 6000000000 mapped 4 GiB before, and
// a restart ran out of address space in its first allocations).
func TestMapWithin(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		want  int
		limit uint64
		got   int
	}{
		{16 * gib, 0, 16 * gib},
		{16 * gib, 6_000_000_000, 2 * gib},
		{16 * gib, 1_500_000_000, 0},
		{1 * gib, 6_000_000_000, 1 * gib},
		{16 * gib, 64 * gib, 16 * gib},
		{16 * gib, 20 * gib, 10 * gib},
	} {
		if got := mapWithin(c.want, c.limit); got != c.got {
			t.Errorf("mapWithin(%d, %d) = %d, want %d", c.want, c.limit, got, c.got)
		}
	}
}
