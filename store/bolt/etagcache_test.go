package bolt_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/storetest"
)

// An ETag read that starts after a write was acknowledged names that write
// or a later one, however many reads came before it (ETag keeps what it
// read until the next write).
func TestBolt_ETagAfterWrite(t *testing.T) {
	ctx := context.Background()
	s := mustOpenBolt(t, filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	storetest.Commit(t, s, "notes", "other", &store.Change{Body: []byte(`{}`), Kind: store.KindPut})

	const writes = 300
	seqOf := make(map[string]int, writes) // written under mu
	var mu sync.Mutex
	var acked atomic.Int64 // the last write acknowledged
	type seen struct {
		after int64 // acked when the read began
		etag  string
	}
	var done atomic.Bool
	var wg sync.WaitGroup
	reads := make([][]seen, 4)
	for r := range reads {
		wg.Go(func() {
			for !done.Load() {
				after := acked.Load()
				etag, err := s.ETag(ctx, "notes", "a")
				if err != nil {
					if after > 0 {
						t.Errorf("ETag after write %d: %v", after, err)
						return
					}
					continue
				}
				reads[r] = append(reads[r], seen{after, etag})
				// The other document's reads fill the cache between writes.
				if _, err := s.ETag(ctx, "notes", "other"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := 1; i <= writes; i++ {
		doc := storetest.Commit(t, s, "notes", "a", &store.Change{Body: fmt.Appendf(nil, `{"n":%d}`, i), Kind: store.KindPut})
		mu.Lock()
		seqOf[doc.ETag] = i
		mu.Unlock()
		acked.Store(int64(i))
	}
	done.Store(true)
	wg.Wait()
	n := 0
	for _, rs := range reads {
		for _, r := range rs {
			n++
			if got, ok := seqOf[r.etag]; !ok || int64(got) < r.after {
				t.Fatalf("a read begun after write %d returned write %d's ETag (%s)", r.after, got, r.etag)
			}
		}
	}
	if n < writes {
		t.Fatalf("only %d reads during %d writes", n, writes)
	}
}
