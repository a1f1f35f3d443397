package document

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"sync"
	"testing"

	"github.com/patchd/patchd/query"
	"github.com/patchd/patchd/store"
)

// heldHistory is a store whose first History read waits until release is
// closed, having said so on entered: a walk under way while others come.
type heldHistory struct {
	store.Store
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (h *heldHistory) History(ctx context.Context, collection, id string, after uint64, limit, maxBytes int) ([]store.Version, bool, error) {
	h.once.Do(func() {
		close(h.entered)
		<-h.release
	})
	return h.Store.History(ctx, collection, id, after, limit, maxBytes)
}

// TestWalkMatchesShared: filters that judge a document's past states at
// once share walks: those that come while a walk is under way gather and
// are judged by one more walk, each with the answers its own walk would
// give (before, each walked on its own: 33 walks here).
func TestWalkMatchesShared(t *testing.T) {
	_, st := newService(t)
	held := &heldHistory{Store: st, entered: make(chan struct{}), release: make(chan struct{})}
	s := New(held, DefaultConfig())
	ctx := context.Background()
	if _, err := s.Write(ctx, Write{Kind: Put, Collection: "c", ID: "d", Body: []byte(`{"n":0}`)}); err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 5; n++ {
		w := Write{Kind: MergePatch, Collection: "c", ID: "d", Body: fmt.Appendf(nil, `{"n":%d}`, n)}
		w.Pre.IfMatch, _ = ParseETagList("If-Match", []string{"*"})
		if _, err := s.Write(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	// Version seq holds n = seq-1; before version 1 there was no document.
	want := func(where string) map[uint64]bool {
		w, err := query.ParseWhere(where)
		if err != nil {
			t.Fatal(err)
		}
		m := map[uint64]bool{}
		if err := s.WalkBack(ctx, "c", "d", 2, func(seq uint64, doc any) error {
			m[seq] = w.Match(doc)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return m
	}
	wheres := []string{`{"/n":{"ge":3}}`, `{"/n":1}`, `{"/n":{"exists":true}}`}
	wants := make([]map[uint64]bool, len(wheres))
	held.once.Do(func() { close(held.entered) }) // the walks of want are not held
	for i, w := range wheres {
		wants[i] = want(w)
	}
	held.once, held.entered = sync.Once{}, make(chan struct{})

	judge := func(i int) error {
		w, _ := query.ParseWhere(wheres[i%len(wheres)])
		got, err := s.WalkMatches(ctx, "c", "d", 2, w)
		if err != nil {
			return err
		}
		if !maps.Equal(got, wants[i%len(wheres)]) {
			return fmt.Errorf("%s: %v, want %v", wheres[i%len(wheres)], got, wants[i%len(wheres)])
		}
		return nil
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := judge(0); err != nil {
			t.Error(err)
		}
	})
	<-held.entered // the first walk is under way
	const more = 32
	for i := 1; i <= more; i++ {
		wg.Go(func() {
			if err := judge(i); err != nil {
				t.Error(err)
			}
		})
	}
	// Every one of them has joined the gathering batch before the first
	// walk goes on.
	for {
		s.walks.mu.Lock()
		n := 0
		if b := s.walks.pending["c\x00d"]; b != nil {
			n = len(b.wheres)
		}
		s.walks.mu.Unlock()
		if n == more {
			break
		}
		runtime.Gosched()
	}
	close(held.release)
	wg.Wait()
	if n := s.walks.walks; n != 2 {
		t.Errorf("%d walks for %d filters, want 2", n, more+1)
	}
}
