package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
)

func testListUnknownCollection(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	wantEmpty := func(c string) {
		t.Helper()
		es, more, err := e.s.List(t.Context(), c, "", 10)
		if err != nil || len(es) != 0 || more {
			t.Fatalf("List(%s) = %v, %v, %v; want empty", c, es, more, err)
		}
	}
	wantEmpty("nope")
	e.put(t, "other", "a", body(1))
	wantEmpty("nope")
	wantEmpty("othe")
}

func testListOrder(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	in := []string{"b", "a", "c", "B", "a.b", "a-b", "~x", "0", "_", "a_", "aa", "a~", "Z9"}
	etags := make(map[string]string)
	for i, id := range in {
		etags[id] = e.put(t, testC, id, body(i)).ETag
	}
	es, more, err := e.s.List(t.Context(), testC, "", 100)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if got, want := ids(es), slices.Sorted(slices.Values(in)); !slices.Equal(got, want) || more {
		t.Fatalf("List = %q, more %v; want %q (byte order), more false", got, more, want)
	}
	for _, entry := range es {
		if entry.ETag != etags[entry.ID] {
			t.Errorf("List entry %s: ETag %s, want %s", entry.ID, entry.ETag, etags[entry.ID])
		}
	}
}

func testListPaging(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	for i, id := range []string{"e", "c", "a", "d", "b"} {
		e.put(t, testC, id, body(i))
	}
	for _, tc := range []struct {
		name     string
		after    string
		limit    int
		want     []string
		wantMore bool
	}{
		{name: "first page", after: "", limit: 2, want: []string{"a", "b"}, wantMore: true},
		{name: "middle page", after: "b", limit: 2, want: []string{"c", "d"}, wantMore: true},
		{name: "last page", after: "d", limit: 2, want: []string{"e"}, wantMore: false},
		{name: "exact last page", after: "c", limit: 2, want: []string{"d", "e"}, wantMore: false},
		{name: "all", after: "", limit: 5, want: []string{"a", "b", "c", "d", "e"}, wantMore: false},
		{name: "all but one", after: "", limit: 4, want: []string{"a", "b", "c", "d"}, wantMore: true},
		{name: "one", after: "a", limit: 1, want: []string{"b"}, wantMore: true},
		{name: "after a missing id", after: "bb", limit: 10, want: []string{"c", "d", "e"}, wantMore: false},
		{name: "after the last id", after: "e", limit: 2, want: []string{}, wantMore: false},
		{name: "after everything", after: "zzz", limit: 2, want: []string{}, wantMore: false},
	} {
		es, more, err := e.s.List(t.Context(), testC, tc.after, tc.limit)
		if err != nil {
			t.Fatalf("%s: List(after %q, limit %d): %v", tc.name, tc.after, tc.limit, err)
		}
		if got := ids(es); !slices.Equal(got, tc.want) || more != tc.wantMore {
			t.Errorf("%s: List(after %q, limit %d) = %q, more %v; want %q, more %v",
				tc.name, tc.after, tc.limit, got, more, tc.want, tc.wantMore)
		}
	}
}

func testListCollectionsIsolated(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	e.put(t, "c1", "a", body(1))
	e.put(t, "c1", "b", body(2))
	e.put(t, "c2", "a", body(3))
	e.put(t, "c2", "c", body(4))
	e.put(t, "c", "x", body(5))
	e.put(t, "c10", "y", body(6))
	for _, tc := range []struct {
		collection string
		want       []string
	}{
		{collection: "c1", want: []string{"a", "b"}},
		{collection: "c2", want: []string{"a", "c"}},
		{collection: "c", want: []string{"x"}},
		{collection: "c10", want: []string{"y"}},
	} {
		es, more, err := e.s.List(t.Context(), tc.collection, "", 10)
		if err != nil {
			t.Fatalf("List(%s): %v", tc.collection, err)
		}
		if got := ids(es); !slices.Equal(got, tc.want) || more {
			t.Errorf("List(%s) = %q, more %v; want %q", tc.collection, got, more, tc.want)
		}
	}
	if got, want := string(e.get(t, "c2", "a").Body), body(3); got != want {
		t.Errorf("Get(c2/a) body %s, want %s", got, want)
	}
	e.wantNotFound(t, "c2", "b")
	if _, _, err := e.s.History(t.Context(), "c2", "b", 0, 10, 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("History(c2/b) error = %v, want ErrNotFound", err)
	}
}

func testListDeletedNotListed(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	for i, id := range []string{"a", "b", "c"} {
		e.put(t, testC, id, body(i))
	}
	e.del(t, testC, "b")
	es, more, err := e.s.List(t.Context(), testC, "", 10)
	if got, want := ids(es), []string{"a", "c"}; err != nil || !slices.Equal(got, want) || more {
		t.Fatalf("List = %q, %v, %v; want %q", got, more, err, want)
	}
	es, more, err = e.s.List(t.Context(), testC, "", 1)
	if got, want := ids(es), []string{"a"}; err != nil || !slices.Equal(got, want) || !more {
		t.Fatalf("List(limit 1) = %q, %v, %v; want %q, more", got, more, err, want)
	}
	e.del(t, testC, "a")
	e.del(t, testC, "c")
	es, more, err = e.s.List(t.Context(), testC, "", 10)
	if err != nil || len(es) != 0 || more {
		t.Fatalf("List(all deleted) = %v, %v, %v; want empty", es, more, err)
	}
}

func testHistoryNotFound(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	if _, _, err := e.s.History(t.Context(), testC, testID, 0, 10, 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("History(empty store) error = %v, want ErrNotFound", err)
	}
	// Neighbours whose ids share a prefix with testID do not count.
	e.put(t, testC, "doc", body(1))
	e.put(t, testC, "doc-10", body(2))
	e.put(t, "other", testID, body(3))
	vs, more, err := e.s.History(t.Context(), testC, testID, 0, 10, 0)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("History = %v, %v, %v; want ErrNotFound", seqs(vs), more, err)
	}
}

func testHistoryPaging(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	// Neighbours with versions of their own, on both sides in key order.
	e.put(t, testC, "doc", body(100))
	e.put(t, testC, "doc-0", body(101))
	e.put(t, testC, "doc-10", body(102))
	e.put(t, testC, "doc-2", body(103))
	for i := 1; i <= 5; i++ {
		e.put(t, testC, testID, body(i))
	}
	for _, tc := range []struct {
		name     string
		after    uint64
		limit    int
		want     []uint64
		wantMore bool
	}{
		{name: "first page", after: 0, limit: 2, want: []uint64{1, 2}, wantMore: true},
		{name: "middle page", after: 2, limit: 2, want: []uint64{3, 4}, wantMore: true},
		{name: "last page", after: 4, limit: 2, want: []uint64{5}, wantMore: false},
		{name: "exact last page", after: 3, limit: 2, want: []uint64{4, 5}, wantMore: false},
		{name: "all", after: 0, limit: 5, want: []uint64{1, 2, 3, 4, 5}, wantMore: false},
		{name: "all but one", after: 0, limit: 4, want: []uint64{1, 2, 3, 4}, wantMore: true},
		{name: "large limit", after: 1, limit: 1000, want: []uint64{2, 3, 4, 5}, wantMore: false},
		{name: "after the last", after: 5, limit: 2, want: []uint64{}, wantMore: false},
		{name: "far after the last", after: 1 << 40, limit: 2, want: []uint64{}, wantMore: false},
	} {
		vs, more, err := e.s.History(t.Context(), testC, testID, tc.after, tc.limit, 0)
		if err != nil {
			t.Fatalf("%s: History(after %d, limit %d): %v", tc.name, tc.after, tc.limit, err)
		}
		if got := seqs(vs); !slices.Equal(got, tc.want) || more != tc.wantMore {
			t.Errorf("%s: History(after %d, limit %d) = %v, more %v; want %v, more %v",
				tc.name, tc.after, tc.limit, got, more, tc.want, tc.wantMore)
		}
		for _, v := range vs {
			if want := store.ETagOf([]byte(body(int(v.Seq)))); v.ETag != want { // #nosec G115 -- seqs of a test are small
				t.Errorf("%s: version %d ETag %s, want %s", tc.name, v.Seq, v.ETag, want)
			}
		}
	}
}

// testHistoryBytes pages a history by the size of its versions' ops: a
// page ends before the version that would take it past maxBytes, but
// always holds one version, and the limit still applies.
func testHistoryBytes(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	// Seqs 1 to 6 with ops of 10, 20, 30, 40, 50 and 0 bytes; the even
	// ones with an actor and a request id, which count for nothing.
	for i := 1; i <= 6; i++ {
		ops := bytes.Repeat([]byte{'x'}, 10*(i%6))
		ch := &store.Change{Body: []byte(body(i)), Kind: store.KindPut, Ops: ops}
		if i%2 == 0 {
			ch.Actor, ch.RequestID = "alice", fmt.Sprintf("req-%d", i)
		}
		e.write(t, testC, testID, ch)
	}
	for _, tc := range []struct {
		name     string
		after    uint64
		limit    int
		maxBytes int
		want     []uint64
		wantMore bool
	}{
		{name: "exactly", after: 0, limit: 10, maxBytes: 30, want: []uint64{1, 2}, wantMore: true},
		{name: "one short", after: 0, limit: 10, maxBytes: 29, want: []uint64{1}, wantMore: true},
		{name: "first alone over", after: 3, limit: 10, maxBytes: 5, want: []uint64{4}, wantMore: true},
		{name: "limit first", after: 0, limit: 2, maxBytes: 1000, want: []uint64{1, 2}, wantMore: true},
		{name: "to the end", after: 3, limit: 10, maxBytes: 90, want: []uint64{4, 5, 6}, wantMore: false},
		{name: "empty ops fit", after: 4, limit: 10, maxBytes: 50, want: []uint64{5, 6}, wantMore: false},
		{name: "no bound", after: 0, limit: 10, maxBytes: 0, want: []uint64{1, 2, 3, 4, 5, 6}, wantMore: false},
		{name: "after the last", after: 6, limit: 10, maxBytes: 1, want: []uint64{}, wantMore: false},
	} {
		vs, more, err := e.s.History(t.Context(), testC, testID, tc.after, tc.limit, tc.maxBytes)
		if err != nil {
			t.Fatalf("%s: History(after %d, limit %d, maxBytes %d): %v", tc.name, tc.after, tc.limit, tc.maxBytes, err)
		}
		if got := seqs(vs); !slices.Equal(got, tc.want) || more != tc.wantMore {
			t.Errorf("%s: History(after %d, limit %d, maxBytes %d) = %v, more %v; want %v, more %v",
				tc.name, tc.after, tc.limit, tc.maxBytes, got, more, tc.want, tc.wantMore)
		}
		for _, v := range vs {
			if want := 10 * int(v.Seq%6); len(v.Ops) != want { // #nosec G115 -- seqs of a test are small
				t.Errorf("%s: version %d has %d bytes of ops, want %d", tc.name, v.Seq, len(v.Ops), want)
			}
		}
	}
}

// writeVariety commits versions of every kind with distinct ops and
// rebasedFrom values, advancing the clock a minute before each, and
// returns the versions the store must report.
func writeVariety(t *testing.T, e *env) []store.Version {
	t.Helper()
	a0 := []byte(`{"a":0}`)
	changes := []store.Change{
		{Body: a0, Kind: store.KindPut, Ops: []byte(`[{"op":"replace","path":"","value":{"a":0}}]`)},
		{Body: []byte(`{"a":1}`), Kind: store.KindJSONPatch, Ops: []byte(`[{"op":"replace","path":"/a","value":1}]`)},
		{Body: []byte(`{"a":1,"b":2}`), Kind: store.KindMergePatch, Ops: []byte(`[{"op":"add","path":"/b","value":2}]`), RebasedFrom: store.ETagOf(a0)},
		{Body: nil, Kind: store.KindDelete, Ops: []byte(`[{"op":"remove","path":""}]`)},
		{Body: []byte(`{}`), Kind: store.KindPut},
		{Body: []byte(`{"z":"\u0000"}`), Kind: store.KindJSONPatch, Ops: []byte{0, 1, 0xff, '"', 0}, RebasedFrom: `"not-a-real-etag"`},
	}
	want := make([]store.Version, len(changes))
	for i, ch := range changes {
		e.clock.Advance(time.Minute)
		want[i] = store.Version{
			Seq:         uint64(i + 1),
			At:          e.clock.Now(),
			Kind:        ch.Kind,
			Ops:         ch.Ops,
			RebasedFrom: ch.RebasedFrom,
		}
		if ch.Body != nil {
			want[i].ETag = store.ETagOf(ch.Body)
		}
		e.write(t, testC, testID, &ch)
	}
	return want
}

func testHistoryFields(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	want := writeVariety(t, e)
	vs := e.history(t, testC, testID)
	wantVersions(t, "History", vs, want)

	// The caller owns the versions' bytes.
	vs[1].Ops[0] = 'X'
	wantVersions(t, "History again", e.history(t, testC, testID), want)
}

func testSinceCurrent(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	e.put(t, testC, testID, body(1))
	cur := e.put(t, testC, testID, body(2))
	base, later, err := e.since(t, testC, testID, cur.ETag)
	if err != nil {
		t.Fatalf("Since(current): %v", err)
	}
	wantVersion(t, "base", base, store.Version{Seq: 2, ETag: cur.ETag, At: cur.UpdatedAt, Kind: store.KindPut})
	if len(later) != 0 {
		t.Errorf("later = %v, want none", seqs(later))
	}
}

func testSinceABA(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	a := e.put(t, testC, testID, `{"v":"A"}`)
	b := e.put(t, testC, testID, `{"v":"B"}`)
	e.put(t, testC, testID, `{"v":"A"}`)
	c := e.put(t, testC, testID, `{"v":"C"}`)

	base, later, err := e.since(t, testC, testID, a.ETag)
	if err != nil {
		t.Fatalf("Since(A): %v", err)
	}
	if base.Seq != 3 || base.ETag != a.ETag {
		t.Errorf("Since(A) base = seq %d %s, want the newest A, seq 3", base.Seq, base.ETag)
	}
	wantSeqs(t, "Since(A) later", later, 4)
	if later[0].ETag != c.ETag {
		t.Errorf("Since(A) later[0].ETag = %s, want C's %s", later[0].ETag, c.ETag)
	}

	base, later, err = e.since(t, testC, testID, b.ETag)
	if err != nil {
		t.Fatalf("Since(B): %v", err)
	}
	if base.Seq != 2 {
		t.Errorf("Since(B) base seq %d, want 2", base.Seq)
	}
	wantSeqs(t, "Since(B) later", later, 3, 4)
}

func testSinceAnyOf(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	var etags []string
	for i := 1; i <= 4; i++ {
		etags = append(etags, e.put(t, testC, testID, body(i)).ETag)
	}
	const nope = `"00000000000000000000000000000000"`
	for _, tc := range []struct {
		name      string
		etags     []string
		wantBase  uint64
		wantLater []uint64
	}{
		{name: "two known", etags: []string{etags[1], etags[0]}, wantBase: 2, wantLater: []uint64{3, 4}},
		{name: "known last in list", etags: []string{nope, etags[0]}, wantBase: 1, wantLater: []uint64{2, 3, 4}},
		{name: "newest wins", etags: []string{etags[0], etags[3], etags[2]}, wantBase: 4, wantLater: []uint64{}},
	} {
		base, later, err := e.since(t, testC, testID, tc.etags...)
		if err != nil {
			t.Fatalf("%s: Since: %v", tc.name, err)
		}
		if base.Seq != tc.wantBase || base.ETag != etags[tc.wantBase-1] {
			t.Errorf("%s: base seq %d %s, want seq %d %s", tc.name, base.Seq, base.ETag, tc.wantBase, etags[tc.wantBase-1])
		}
		if got := seqs(later); !slices.Equal(got, tc.wantLater) {
			t.Errorf("%s: later %v, want %v", tc.name, got, tc.wantLater)
		}
	}
}

func testSinceUnknown(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	other := e.put(t, testC, "other", body(99))
	if _, _, err := e.since(t, testC, testID, other.ETag); !errors.Is(err, store.ErrBaseUnknown) {
		t.Errorf("Since on a missing document: error %v, want ErrBaseUnknown", err)
	}
	e.put(t, testC, testID, body(1))
	e.put(t, testC, testID, body(2))
	for _, tc := range []struct {
		name  string
		etags []string
	}{
		{name: "unknown", etags: []string{`"00000000000000000000000000000000"`}},
		{name: "another document's", etags: []string{other.ETag}},
		{name: "none", etags: nil},
	} {
		if _, _, err := e.since(t, testC, testID, tc.etags...); !errors.Is(err, store.ErrBaseUnknown) {
			t.Errorf("Since(%s): error %v, want ErrBaseUnknown", tc.name, err)
		}
	}
}

func testSinceFields(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	want := writeVariety(t, e)
	base, later, err := e.since(t, testC, testID, want[0].ETag)
	if err != nil {
		t.Fatalf("Since: %v", err)
	}
	wantVersion(t, "base", base, want[0])
	wantVersions(t, "later", later, want[1:])

	// The caller owns the versions' bytes.
	later[0].Ops[0] = 'X'
	_, later, err = e.since(t, testC, testID, want[0].ETag)
	if err != nil {
		t.Fatalf("Since again: %v", err)
	}
	wantVersions(t, "later again", later, want[1:])
}

func testSinceAcrossDelete(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	a := e.put(t, testC, testID, body(1))
	e.del(t, testC, testID)
	b := e.put(t, testC, testID, body(2))
	base, later, err := e.since(t, testC, testID, a.ETag)
	if err != nil {
		t.Fatalf("Since: %v", err)
	}
	if base.Seq != 1 {
		t.Errorf("base seq %d, want 1", base.Seq)
	}
	wantSeqs(t, "later", later, 2, 3)
	if later[0].Kind != store.KindDelete || later[0].ETag != "" || later[1].ETag != b.ETag {
		t.Errorf("later = [%s %q, %s %q], want [delete \"\", put %s]", later[0].Kind, later[0].ETag, later[1].Kind, later[1].ETag, b.ETag)
	}
}
