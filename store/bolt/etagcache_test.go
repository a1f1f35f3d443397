package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
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

// The committer writes the ETags of what it commits through to the
// cache, and what does not exist is kept too: the ETag of a document
// written before another write, or of one deleted, or of one that never
// existed (a collection's schema, asked for at every write), takes no
// read transaction.
func TestBolt_ETagCachedAcrossWrites(t *testing.T) {
	ctx := context.Background()
	s := mustOpenBolt(t, filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	bolt.SetCheckpointEvery(s, time.Hour, 1<<40) // a checkpoint's read transaction is not the test's
	a := storetest.Commit(t, s, "notes", "a", &store.Change{Body: []byte(`{"n":1}`), Kind: store.KindPut})
	storetest.Commit(t, s, "notes", "gone", &store.Change{Body: []byte(`{}`), Kind: store.KindPut})
	storetest.Commit(t, s, "notes", "gone", &store.Change{Kind: store.KindDelete})
	if _, err := s.ETag(ctx, store.SchemaCollection, "notes"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ETag of a schema never written: %v", err)
	}
	storetest.Commit(t, s, "notes", "b", &store.Change{Body: []byte(`{"n":2}`), Kind: store.KindPut})

	before := bolt.ReadTxs(s)
	if etag, err := s.ETag(ctx, "notes", "a"); err != nil || etag != a.ETag {
		t.Fatalf("ETag of a: %q, %v; want %q", etag, err, a.ETag)
	}
	if _, err := s.ETag(ctx, "notes", "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ETag of a deleted document: %v", err)
	}
	if _, err := s.ETag(ctx, store.SchemaCollection, "notes"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ETag of a schema never written: %v", err)
	}
	if n := bolt.ReadTxs(s) - before; n != 0 {
		t.Fatalf("%d read transactions for three ETags the cache knows", n)
	}
	// What the cache knows follows the next write of the document.
	a2 := storetest.Commit(t, s, "notes", "a", &store.Change{Body: []byte(`{"n":3}`), Kind: store.KindPut})
	if etag, err := s.ETag(ctx, "notes", "a"); err != nil || etag != a2.ETag {
		t.Fatalf("ETag of a after its write: %q, %v; want %q", etag, err, a2.ETag)
	}
	storetest.Commit(t, s, "notes", "a", &store.Change{Kind: store.KindDelete})
	if _, err := s.ETag(ctx, "notes", "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ETag of a after its delete: %v", err)
	}
}
