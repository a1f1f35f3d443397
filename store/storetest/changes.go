package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
)

// The change log group: Store.Changes and Store.ListDocuments.

// logged is one change as a test remembers it.
type logged struct {
	id  string
	seq uint64
}

// changes reads a collection's change log after cur until it is caught up
// (reading again while changes are pending), in pages of limit, and
// returns the changes and the cursor after them.
func (e *env) changes(t *testing.T, c string, cur store.Cursor, limit int) ([]store.CollectionChange, store.Cursor) {
	t.Helper()
	var all []store.CollectionChange
	deadline := time.Now().Add(30 * time.Second)
	for {
		log, err := e.s.Changes(t.Context(), c, cur, limit)
		if err != nil {
			t.Fatalf("Changes(%s, %x, %d): %v", c, cur, limit, err)
		}
		if limit > 0 && len(log.Changes) > limit {
			t.Fatalf("Changes(%s, limit %d): %d changes", c, limit, len(log.Changes))
		}
		if log.Next == nil {
			t.Fatalf("Changes(%s): nil Next", c)
		}
		for i, ch := range log.Changes {
			if ch.Cursor == nil {
				t.Fatalf("Changes(%s): change %d has no cursor", c, i)
			}
		}
		all = append(all, log.Changes...)
		cur = log.Next
		switch {
		case log.More:
			if len(log.Changes) == 0 {
				t.Fatalf("Changes(%s): More without changes", c)
			}
		case log.Pending:
			if time.Now().After(deadline) {
				t.Fatalf("Changes(%s): still pending after 30 s", c)
			}
			time.Sleep(time.Millisecond) // another transaction is finishing; poll
		default:
			return all, cur
		}
	}
}

// present returns the cursor of the present of a collection.
func (e *env) present(t *testing.T, c string) store.Cursor {
	t.Helper()
	log, err := e.s.Changes(t.Context(), c, nil, 10)
	if err != nil {
		t.Fatalf("Changes(%s, nil): %v", c, err)
	}
	if len(log.Changes) != 0 || log.More || log.Next == nil {
		t.Fatalf("Changes(%s, nil) = %d changes, more %v, next %x; want none and a cursor", c, len(log.Changes), log.More, log.Next)
	}
	return log.Next
}

// skipBefore drops from the start of chs the changes of before (in that
// order, each at most once): changes committed before a present cursor
// that the backend may still return after it.
func skipBefore(t *testing.T, chs []store.CollectionChange, before ...logged) []store.CollectionChange {
	t.Helper()
	for len(chs) > 0 && len(before) > 0 {
		if got := (logged{chs[0].ID, chs[0].Version.Seq}); got != before[0] {
			before = before[1:]
			continue
		}
		chs, before = chs[1:], before[1:]
	}
	return chs
}

func idSeqs(chs []store.CollectionChange) []logged {
	out := make([]logged, len(chs))
	for i, ch := range chs {
		out[i] = logged{ch.ID, ch.Version.Seq}
	}
	return out
}

// wantLogged checks that chs hold exactly want, in that order.
func wantLogged(t *testing.T, what string, chs []store.CollectionChange, want ...logged) {
	t.Helper()
	got := idSeqs(chs)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: changes %v, want %v", what, got, want)
	}
}

// testChangesFromPresent: a cursor of the present is after every change
// made before it and before every change made after it; every change
// carries its version as History has it.
func testChangesFromPresent(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	empty := e.present(t, testC)
	if chs, _ := e.changes(t, testC, empty, 10); len(chs) != 0 {
		t.Fatalf("Changes of an empty collection: %v", idSeqs(chs))
	}
	e.put(t, testC, "a", body(1))
	e.put(t, testC, "b", body(2))
	start := e.present(t, testC)
	e.clock.Advance(time.Second)
	e.put(t, testC, "a", body(3))
	e.write(t, testC, "b", &store.Change{Body: []byte(body(4)), Kind: store.KindJSONPatch, Ops: []byte(`[op]`), RebasedFrom: `"x"`,
		Actor: "ana", RequestID: "req-1"})
	e.del(t, testC, "a")
	e.put(t, testC, "c", body(5))
	e.put(t, "other", "a", body(6)) // another collection: not in this log

	chs, next := e.changes(t, testC, start, 0)
	// A backend whose log is not in commit order may place its present
	// before changes committed just before it (never after one committed
	// later): those come first, in order.
	chs = skipBefore(t, chs, logged{"a", 1}, logged{"b", 1})
	wantLogged(t, "Changes after the present", chs, logged{"a", 2}, logged{"b", 2}, logged{"a", 3}, logged{"c", 1})
	hist := map[string][]store.Version{"a": e.history(t, testC, "a"), "b": e.history(t, testC, "b"), "c": e.history(t, testC, "c")}
	for i, ch := range chs {
		wantVersion(t, fmt.Sprintf("change %d (%s/%d)", i, ch.ID, ch.Version.Seq), ch.Version, hist[ch.ID][ch.Version.Seq-1])
	}
	if chs[2].Version.Kind != store.KindDelete || chs[2].Version.ETag != "" {
		t.Errorf("delete change: kind %q etag %q", chs[2].Version.Kind, chs[2].Version.ETag)
	}
	if again, _ := e.changes(t, testC, next, 0); len(again) != 0 {
		t.Fatalf("Changes after the last cursor: %v", idSeqs(again))
	}
	// From the empty collection's present: everything.
	all, _ := e.changes(t, testC, empty, 0)
	wantLogged(t, "Changes from the start", all, logged{"a", 1}, logged{"b", 1}, logged{"a", 2}, logged{"b", 2}, logged{"a", 3}, logged{"c", 1})
}

// testChangesResume: every change's cursor resumes right after it, and
// reading in pages of any size gives the same changes as reading at once.
func testChangesResume(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	start := e.present(t, testC)
	for i := range 12 {
		e.put(t, testC, fmt.Sprintf("d%d", i%4), body(i))
	}
	all, _ := e.changes(t, testC, start, 0)
	if len(all) != 12 {
		t.Fatalf("%d changes, want 12", len(all))
	}
	for _, limit := range []int{1, 5} {
		paged, _ := e.changes(t, testC, start, limit)
		wantLogged(t, fmt.Sprintf("pages of %d", limit), paged, idSeqs(all)...)
	}
	for i, ch := range all {
		rest, _ := e.changes(t, testC, ch.Cursor, 0)
		wantLogged(t, fmt.Sprintf("after change %d", i), rest, idSeqs(all[i+1:])...)
	}
}

// testChangesCursors: a cursor of another collection, or bytes no store
// made, are refused.
func testChangesCursors(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	e.put(t, testC, "a", body(1))
	other := e.present(t, "other")
	for name, cur := range map[string]store.Cursor{
		"another collection": other,
		"garbage":            store.Cursor("\xffnot a cursor at all"),
		"too short":          store.Cursor("b"),
		"empty":              store.Cursor{},
	} {
		if _, err := e.s.Changes(t.Context(), testC, cur, 10); !errors.Is(err, store.ErrInvalidCursor) {
			t.Errorf("Changes with a cursor of %s: %v, want ErrInvalidCursor", name, err)
		}
	}
}

// testChangesPruned: a change stays in the log while its version is
// retained; a cursor before a pruned change is gone, one after it is not.
func testChangesPruned(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{Versions: 2, Age: time.Nanosecond})
	start := e.present(t, testC)
	e.put(t, testC, "cold", body(0))
	mid := e.present(t, testC)
	for i := 1; i <= 2; i++ {
		e.clock.Advance(time.Second)
		e.put(t, testC, "hot", body(i))
	}
	// hot has versions 1 and 2: nothing pruned yet.
	all, _ := e.changes(t, testC, start, 0)
	wantLogged(t, "before pruning", all, logged{"cold", 1}, logged{"hot", 1}, logged{"hot", 2})
	afterOne := all[1].Cursor // after hot 1
	e.clock.Advance(time.Second)
	e.put(t, testC, "hot", body(3)) // prunes hot 1
	wantSeqs(t, "hot history", e.history(t, testC, "hot"), 2, 3)
	for name, cur := range map[string]store.Cursor{"start": start, "before hot 1": mid} {
		if _, err := e.s.Changes(t.Context(), testC, cur, 0); !errors.Is(err, store.ErrCursorGone) {
			t.Errorf("Changes from %s: %v, want ErrCursorGone", name, err)
		}
	}
	rest, _ := e.changes(t, testC, afterOne, 0)
	wantLogged(t, "after the pruned change", rest, logged{"hot", 2}, logged{"hot", 3})
	// The cold document's only version is never pruned.
	if h := e.history(t, testC, "cold"); len(h) != 1 {
		t.Fatalf("cold history %v", seqs(h))
	}
}

// testChangesConcurrent: writers commit to many documents at once while a
// reader follows the log; the reader gets every version exactly once, each
// document's in seq order.
func testChangesConcurrent(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	start := e.present(t, testC)
	const writers, each = 8, 15
	done := make(chan struct{})
	var (
		wg     sync.WaitGroup
		got    []store.CollectionChange
		rerr   error
		readMu sync.Mutex
	)
	wg.Add(1)
	go func() { // the reader, following while the writers write
		defer wg.Done()
		cur := start
		for {
			log, err := e.s.Changes(t.Context(), testC, cur, 7)
			if err != nil {
				rerr = err
				return
			}
			readMu.Lock()
			got = append(got, log.Changes...)
			readMu.Unlock()
			cur = log.Next
			if !log.More && !log.Pending {
				select {
				case <-done:
					return
				default:
					time.Sleep(time.Millisecond)
				}
			}
		}
	}()
	var ww sync.WaitGroup
	for w := range writers {
		ww.Go(func() {
			for i := range each {
				Commit(t, e.s, testC, fmt.Sprintf("d%d", (w+i)%5), &store.Change{Body: []byte(body(w*100 + i)), Kind: store.KindPut})
			}
		})
	}
	ww.Wait()
	// The last read must start after every commit: read until caught up.
	close(done)
	wg.Wait()
	if rerr != nil {
		t.Fatal(rerr)
	}
	rest, _ := e.changes(t, testC, func() store.Cursor {
		if len(got) == 0 {
			return start
		}
		return got[len(got)-1].Cursor
	}(), 0)
	got = append(got, rest...)
	next := map[string]uint64{}
	for _, ch := range got {
		if ch.Version.Seq != next[ch.ID]+1 {
			t.Fatalf("%s: seq %d after %d (%v)", ch.ID, ch.Version.Seq, next[ch.ID], idSeqs(got))
		}
		next[ch.ID] = ch.Version.Seq
	}
	var total uint64
	for id, last := range next {
		if n := uint64(len(e.history(t, testC, id))); n != last {
			t.Errorf("%s: read up to seq %d, history has %d", id, last, n)
		}
		total += last
	}
	if total != uint64(writers*each) {
		t.Fatalf("read %d changes, want %d", total, writers*each)
	}
}

// testListDocuments: ListDocuments lists current documents with bodies in
// id order, pages, and tells which changed after a cursor.
func testListDocuments(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	e.put(t, testC, "b", body(2))
	a := e.put(t, testC, "a", body(1))
	e.put(t, testC, "c", body(3))
	e.del(t, testC, "c")
	e.put(t, "other", "x", body(9))
	since := e.present(t, testC)
	e.put(t, testC, "b", body(20))
	e.put(t, testC, "d", body(4))

	docs, more, err := e.s.ListDocuments(t.Context(), testC, "", 0, since)
	if err != nil {
		t.Fatal(err)
	}
	if more || len(docs) != 3 {
		t.Fatalf("ListDocuments = %d docs, more %v; want 3 (a, b, d)", len(docs), more)
	}
	wantDoc(t, "a", &docs[0].Document, a)
	wantDoc(t, "b", &docs[1].Document, e.get(t, testC, "b"))
	// ChangedSince agrees with the change log read from the same cursor:
	// b and d changed after it; a did not, unless the backend's cursor at
	// "the present" is conservative (PostgreSQL's begins at the oldest
	// transaction still running, on the whole server) and the log gives
	// a's change after it too.
	inLog := map[string]bool{}
	chs, _ := e.changes(t, testC, since, 0)
	for _, ch := range chs {
		inLog[ch.ID] = true
	}
	for i, id := range []string{"a", "b", "d"} {
		if want := inLog[id]; docs[i].ID != id || docs[i].ChangedSince != want {
			t.Errorf("%s ChangedSince = %v, want %v (as the change log has it)", docs[i].ID, docs[i].ChangedSince, want)
		}
	}
	if !inLog["b"] || !inLog["d"] {
		t.Errorf("the change log after the cursor lacks b or d: %v", inLog)
	}
	page, more, err := e.s.ListDocuments(t.Context(), testC, "a", 1, nil)
	if err != nil || !more || len(page) != 1 || page[0].ID != "b" || page[0].ChangedSince {
		t.Fatalf("ListDocuments after a, limit 1 = %+v, %v, %v", page, more, err)
	}
	if _, _, err := e.s.ListDocuments(t.Context(), testC, "", 0, e.present(t, "other")); !errors.Is(err, store.ErrInvalidCursor) {
		t.Fatalf("ListDocuments with another collection's cursor: %v", err)
	}
	entries, _, err := e.s.List(t.Context(), testC, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []uint64{1, 2, 1} {
		if entries[i].Seq != want {
			t.Errorf("List %s Seq = %d, want %d", entries[i].ID, entries[i].Seq, want)
		}
	}
}
