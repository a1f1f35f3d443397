package document

import (
	"context"
	"errors"
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

// sixVersions writes c/d six times: version seq holds n = seq-1.
func sixVersions(t *testing.T, s *Service) {
	t.Helper()
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
}

// gathered waits until n callers wait for the next walk of c/d.
func gathered(s *Service, n int) {
	for {
		s.walks.mu.Lock()
		got := 0
		if b := s.walks.pending["c\x00d"]; b != nil {
			got = len(b.wheres)
		}
		s.walks.mu.Unlock()
		if got == n {
			return
		}
		runtime.Gosched()
	}
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
	sixVersions(t, s)
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
	gathered(s, more)
	close(held.release)
	wg.Wait()
	if n := s.walks.walks; n != 2 {
		t.Errorf("%d walks for %d filters, want 2", n, more+1)
	}
}

// prunedHistory is a store whose history has lost the versions up to seq
// gone: a walk that needs them finds them moved.
type prunedHistory struct {
	*heldHistory
	gone uint64
}

func (p *prunedHistory) History(ctx context.Context, collection, id string, after uint64, limit, maxBytes int) ([]store.Version, bool, error) {
	vs, more, err := p.heldHistory.History(ctx, collection, id, after, limit, maxBytes)
	kept := vs[:0:0]
	for _, v := range vs {
		if v.Seq > p.gone {
			kept = append(kept, v)
		}
	}
	return kept, more, err
}

// TestWalkMatchesSharedErrorStaysWithItsCaller: a walk shared with a
// caller that needs versions gone from history fails for that caller
// only; one that needs none of them gets its answers (it was failed too,
// and its stream reset).
func TestWalkMatchesSharedErrorStaysWithItsCaller(t *testing.T) {
	_, st := newService(t)
	held := &heldHistory{Store: st, entered: make(chan struct{}), release: make(chan struct{})}
	s := New(&prunedHistory{heldHistory: held, gone: 3}, DefaultConfig())
	ctx := context.Background()
	sixVersions(t, s)
	where, _ := query.ParseWhere(`{"/n":{"ge":4}}`)
	type answer struct {
		m   map[uint64]bool
		err error
	}
	first, lagging, current := make(chan answer, 1), make(chan answer, 1), make(chan answer, 1)
	go func() { m, err := s.WalkMatches(ctx, "c", "d", 5, where); first <- answer{m, err} }()
	<-held.entered // the first walk is under way; the next two gather
	go func() { m, err := s.WalkMatches(ctx, "c", "d", 2, where); lagging <- answer{m, err} }()
	go func() { m, err := s.WalkMatches(ctx, "c", "d", 5, where); current <- answer{m, err} }()
	gathered(s, 2)
	close(held.release)
	want := map[uint64]bool{4: false, 5: true, 6: true} // seq s holds n = s-1
	for name, ch := range map[string]chan answer{"first": first, "current": current} {
		a := <-ch
		if a.err != nil || !maps.Equal(a.m, want) {
			t.Errorf("%s caller (from 5): %v %v, want %v", name, a.m, a.err, want)
		}
	}
	if a := <-lagging; !errors.Is(a.err, ErrHistoryMoved) {
		t.Errorf("lagging caller (from 2): %v %v, want ErrHistoryMoved", a.m, a.err)
	}
}

// panicHistory is a store whose first History read panics.
type panicHistory struct {
	store.Store
	once sync.Once
}

func (p *panicHistory) History(ctx context.Context, collection, id string, after uint64, limit, maxBytes int) ([]store.Version, bool, error) {
	p.once.Do(func() { panic("a fault in the store") })
	return p.Store.History(ctx, collection, id, after, limit, maxBytes)
}

// TestWalkMatchesPanicIsAnError: the shared walk runs outside any request,
// where nothing recovered a panic (the whole server went down): its
// callers get an error, and the document's next walk runs.
func TestWalkMatchesPanicIsAnError(t *testing.T) {
	_, st := newService(t)
	s := New(&panicHistory{Store: st}, DefaultConfig())
	sixVersions(t, s)
	where, _ := query.ParseWhere(`{"/n":{"ge":4}}`)
	if _, err := s.WalkMatches(context.Background(), "c", "d", 5, where); err == nil {
		t.Fatal("a walk whose store read panicked: no error")
	}
	got, err := s.WalkMatches(context.Background(), "c", "d", 5, where)
	if want := map[uint64]bool{4: false, 5: true, 6: true}; err != nil || !maps.Equal(got, want) {
		t.Fatalf("the next walk: %v %v, want %v", got, err, want)
	}
}
