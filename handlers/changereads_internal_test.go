package handlers

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// failFirst fails the first read of the change log with errFirst, once
// released, so that the read's other waiters must read for themselves.
type failFirst struct {
	store.Store
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

var errFirst = errors.New("the first reader went away")

func (f *failFirst) Changes(ctx context.Context, c string, after store.Cursor, limit int) (store.ChangeLog, error) {
	first := false
	f.once.Do(func() { first = true })
	if first {
		close(f.entered)
		<-f.release
		return store.ChangeLog{}, errFirst
	}
	return f.Store.Changes(ctx, c, after, limit)
}

// TestChangeReadsSharedFailure: when the read a stream waited for fails
// (its reader went away), the stream reads for itself and can render the
// changes it got.
func TestChangeReadsSharedFailure(t *testing.T) {
	b, err := bolt.Open(filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	log, err := b.Changes(context.Background(), "c", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Update(context.Background(), "c", "d", func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return &store.Change{Body: []byte(`{}`), Kind: store.KindPut, Ops: []byte(`[{"k":"root","v":{}}]`)}, nil
	}); err != nil {
		t.Fatal(err)
	}
	f := &failFirst{Store: b, entered: make(chan struct{}), release: make(chan struct{})}
	svc := document.New(f, document.DefaultConfig())
	r := newChangeReads()
	waiting := make(chan struct{})
	r.waiting = func() { close(waiting) }
	first := make(chan error, 1)
	go func() {
		_, err := r.read(context.Background(), svc, "c", log.Next, 10, 0, time.Time{})
		first <- err
	}()
	<-f.entered
	second := make(chan *changeRead, 1)
	go func() {
		e, err := r.read(context.Background(), svc, "c", log.Next, 10, 0, time.Time{})
		if err != nil {
			t.Error(err)
		}
		second <- e
	}()
	// The second reader finds the first's read in flight and waits for it.
	select {
	case <-waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the second reader did not wait for the first's read")
	}
	close(f.release)
	if err := <-first; !errors.Is(err, errFirst) {
		t.Fatalf("first reader: %v", err)
	}
	e := <-second
	if e == nil || len(e.log.Changes) != 1 {
		t.Fatalf("second reader got %+v", e)
	}
	if _, err := e.event("c", 0); err != nil {
		t.Fatal(err)
	}
}

// TestChangeReadsOrderBounded: the eviction order of shared reads stays
// bounded when a few keys are read again and again (it grew by one entry
// per read while the reads themselves stayed under their bound: a stream
// on a busy collection leaked an entry per wake-up).
func TestChangeReadsOrderBounded(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc := document.New(st, document.DefaultConfig())
	r := newChangeReads()
	ctx := context.Background()
	for i := range 10_000 {
		r.bump("c")
		if _, err := r.read(ctx, svc, []string{"c", "d"}[i%2], nil, 100, r.gen("c"), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.order) > 8*maxSharedReads {
		t.Fatalf("%d entries in the eviction order for %d reads kept", len(r.order), len(r.reads))
	}
}
