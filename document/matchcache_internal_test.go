package document

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/patchd/patchd/query"
	"github.com/patchd/patchd/store"
)

// TestMatchesSharesTheDocument: many filters judging one change of a large
// document (as many streams following its collection do) read its body once
// and decode each tree once, and each gets the answer its filter gives.
func TestMatchesSharesTheDocument(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	start, err := s.Changes(ctx, "c", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 512<<10)
	if _, err := s.Write(ctx, Write{Kind: Put, Collection: "c", ID: "d", Body: fmt.Appendf(nil, `{"n":1,"x":1,"pad":%q}`, pad)}); err != nil {
		t.Fatal(err)
	}
	w := Write{Kind: MergePatch, Collection: "c", ID: "d", Body: []byte(`{"n":5}`)}
	w.Pre.IfMatch, _ = ParseETagList("If-Match", []string{"*"})
	if _, err := s.Write(ctx, w); err != nil {
		t.Fatal(err)
	}
	log, err := s.Changes(ctx, "c", start.Next, 10)
	if err != nil {
		t.Fatal(err)
	}
	changes := log.Changes
	if len(changes) != 2 {
		t.Fatalf("%d changes, want 2", len(changes))
	}
	ch := changes[1] // the merge: /n from 1 to 5
	cases := []struct {
		where         string
		before, after bool
	}{
		{`{"/n":1}`, true, false},
		{`{"/n":{"ge":3}}`, false, true},
		{`{"/x":1,"/n":{"ge":0}}`, true, true},
		// Four members read: decoded rather than looked up four times.
		{`{"/x":1,"/n":5,"/pad":{"exists":true},"/y":{"exists":false},"/z":{"ne":1},"/n2":{"ne":2}}`, false, true},
		{`{"/x":2}`, false, false}, // /n not read: before as after
	}
	const streams = 64
	var wg sync.WaitGroup
	for i := range streams {
		tc := cases[i%len(cases)]
		where, err := query.ParseWhere(tc.where)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			before, after, ok, err := s.Matches(ctx, "c", ch, where)
			if err != nil || !ok || before != tc.before || after != tc.after {
				t.Errorf("%s: before %v after %v ok %v err %v, want %v %v", tc.where, before, after, ok, err, tc.before, tc.after)
			}
		})
	}
	wg.Wait()
	if n := s.states.reads.Load(); n != 1 {
		t.Errorf("the body was read %d times for %d filters, want once", n, streams)
	}
	// One tree before the change (for the filters that read /n), one after
	// (for the filter that reads six members).
	if n := s.states.decodes.Load(); n != 2 {
		t.Errorf("%d trees decoded for %d filters, want 2", n, streams)
	}
}

// TestMatchesStatesBounded: the states kept for the filters are bounded in
// number and counted in size whatever they hold, also those of versions
// that are no longer current (a deleted document: nothing to judge).
func TestMatchesStatesBounded(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	where, err := query.ParseWhere(`{"/n":1}`)
	if err != nil {
		t.Fatal(err)
	}
	for i := range stateCacheEntries + 1000 {
		ch := store.CollectionChange{ID: "gone", Version: store.Version{Seq: uint64(i + 1), ETag: `"0123456789abcdef0123456789abcdef"`}}
		if _, _, ok, err := s.Matches(ctx, "c", ch, where); err != nil || ok {
			t.Fatalf("a change of a document that is gone: ok %v, err %v", ok, err)
		}
	}
	s.states.mu.Lock()
	defer s.states.mu.Unlock()
	if n := s.states.lru.Len(); n > stateCacheEntries {
		t.Errorf("%d states kept, want at most %d", n, stateCacheEntries)
	}
	if s.states.size <= 0 {
		t.Errorf("states of %d entries counted as %d bytes", s.states.lru.Len(), s.states.size)
	}
}
