package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
)

// Dry runs, the fields a version records about its write, SinceSeq, and
// UpdateMany.

// many runs UpdateMany with fn and fails the test on an error.
func (e *env) many(t *testing.T, keys []store.Key, fn store.ManyFunc) []*store.Document {
	t.Helper()
	docs, err := e.s.UpdateMany(t.Context(), keys, fn)
	if err != nil {
		t.Fatalf("UpdateMany(%v): %v", keys, err)
	}
	return docs
}

// changes returns a ManyFunc that commits chs as they are.
func changes(chs ...store.DocChange) store.ManyFunc {
	return func(context.Context, []store.Locked) (*store.ManyChange, error) {
		return &store.ManyChange{Changes: chs}, nil
	}
}

// put returns the change that creates or replaces a document with body.
func putChange(doc int, body string) store.DocChange {
	return store.DocChange{Doc: doc, Change: &store.Change{Body: []byte(body), Kind: store.KindPut}}
}

// wantNoTrace checks that a document was never written: no document, no
// history, no idempotency record under key (when not "").
func (e *env) wantNoTrace(t *testing.T, c, id, key string) {
	t.Helper()
	e.wantNotFound(t, c, id)
	if _, _, err := e.s.History(t.Context(), c, id, 0, 0, 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("History(%s/%s): %v, want ErrNotFound", c, id, err)
	}
	if key != "" {
		e.wantNoRecord(t, key)
	}
}

// wantOnlyEvent checks that the next event of ch (Resyncs aside) is want:
// a marker committed after what must not have published one.
// Events are hints that may arrive twice (a backend over a shared database
// also hears its own commits back), so an event of a version that was
// committed before, in seen, is passed over.
func wantOnlyEvent(t *testing.T, ch <-chan store.Event, want store.Event, seen ...store.Event) {
	t.Helper()
	for {
		ev := nextEvent(t, ch)
		if slices.Contains(seen, ev) {
			continue
		}
		if ev != want {
			t.Fatalf("event %+v, want %+v first: something else published an event", ev, want)
		}
		return
	}
}

func testUpdateDryRun(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	ch, err := e.s.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	rec := &store.IdempotencyRecord{Key: "dry", Value: []byte("v"), Expires: e.clock.Now().Add(time.Hour)}
	dry := func(c *store.Change) *store.Change { c.DryRun = true; return c }

	// A create: the document it would be, and nothing written.
	got := e.write(t, testC, "new", dry(&store.Change{Body: []byte(body(1)), Kind: store.KindPut, Idempotency: rec}))
	wantDoc(t, "dry-run create", got, &store.Document{Collection: testC, ID: "new", Body: []byte(body(1)),
		ETag: store.ETagOf([]byte(body(1))), Seq: 1, UpdatedAt: e.clock.Now()})
	e.wantNoTrace(t, testC, "new", "dry")

	// A replace and a delete of an existing document: the next seq, and
	// the document as it was.
	v1 := e.put(t, testC, testID, body(1))
	wantOnlyEvent(t, ch, store.Event{Collection: testC, ID: testID, Seq: 1})
	e.clock.Advance(time.Second)
	got = e.write(t, testC, testID, dry(&store.Change{Body: []byte(body(2)), Kind: store.KindPut, Idempotency: rec}))
	wantDoc(t, "dry-run replace", got, &store.Document{Collection: testC, ID: testID, Body: []byte(body(2)),
		ETag: store.ETagOf([]byte(body(2))), Seq: 2, UpdatedAt: e.clock.Now()})
	if got := e.write(t, testC, testID, dry(&store.Change{Kind: store.KindDelete})); got != nil {
		t.Fatalf("dry-run delete: %+v, want nil", got)
	}
	wantDoc(t, "after dry runs", e.get(t, testC, testID), v1)
	wantSeqs(t, "History", e.history(t, testC, testID), 1)
	e.wantNoRecord(t, "dry")

	// A dry-run delete of a missing document is refused as a real one.
	_, err = e.s.Update(t.Context(), testC, "missing", func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return dry(&store.Change{Kind: store.KindDelete}), nil
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("dry-run delete of a missing document: %v, want ErrNotFound", err)
	}

	// No event for any of them: the next one is the marker's.
	e.put(t, testC, "marker", body(9))
	wantOnlyEvent(t, ch, store.Event{Collection: testC, ID: "marker", Seq: 1}, store.Event{Collection: testC, ID: testID, Seq: 1})
}

func testVersionWho(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	e.put(t, testC, testID, body(1))
	e.write(t, testC, testID, &store.Change{Body: []byte(body(2)), Kind: store.KindJSONPatch, Ops: []byte(`[2]`),
		Actor: "alice", RequestID: "req-2"})
	e.write(t, testC, testID, &store.Change{Body: []byte(body(1)), Kind: store.KindRevert, Ops: []byte(`[3]`),
		Actor: "token:0a1b2c3d", RequestID: "req-3", Reverts: 2})
	at := e.clock.Now()
	want := []store.Version{
		{Seq: 1, ETag: store.ETagOf([]byte(body(1))), At: at, Kind: store.KindPut},
		{Seq: 2, ETag: store.ETagOf([]byte(body(2))), At: at, Kind: store.KindJSONPatch, Ops: []byte(`[2]`), Actor: "alice", RequestID: "req-2"},
		{Seq: 3, ETag: store.ETagOf([]byte(body(1))), At: at, Kind: store.KindRevert, Ops: []byte(`[3]`), Actor: "token:0a1b2c3d", RequestID: "req-3", Reverts: 2},
	}
	wantVersions(t, "History", e.history(t, testC, testID), want)
	// Since finds the newest version with the ETag: the revert.
	base, later, err := e.since(t, testC, testID, want[0].ETag)
	if err != nil || len(later) != 0 {
		t.Fatalf("Since(body 1): %v %v", seqs(later), err)
	}
	wantVersion(t, "Since(body 1)", base, want[2])
	base, later, err = e.sinceSeq(t, testC, testID, 2)
	if err != nil {
		t.Fatal(err)
	}
	wantVersions(t, "SinceSeq(2)", append([]store.Version{base}, later...), want[1:])

	if d, ok := e.s.(store.Dumper); ok {
		recs := dumpAll(t, d, true)
		if len(recs) != 1 {
			t.Fatalf("Dump: %d records", len(recs))
		}
		wantVersions(t, "Dump history", recs[0].History, want)
	}
}

// sinceSeq calls History.SinceSeq from inside an UpdateFunc that commits
// nothing.
func (e *env) sinceSeq(t *testing.T, c, id string, seq uint64) (base store.Version, later []store.Version, err error) {
	t.Helper()
	_, uerr := e.s.Update(t.Context(), c, id, func(ctx context.Context, _ *store.Document, h store.History) (*store.Change, error) {
		base, later, err = h.SinceSeq(ctx, seq)
		return nil, nil
	})
	if uerr != nil {
		t.Fatalf("Update(%s/%s) for SinceSeq: %v", c, id, uerr)
	}
	return base, later, err
}

func testSinceSeq(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{Versions: 3, Age: -1})
	for i := 1; i <= 5; i++ {
		e.put(t, testC, testID, body(i))
	}
	e.del(t, testC, testID)
	// Retained: 4, 5, 6 (the delete).
	for _, tc := range []struct {
		seq  uint64
		want []uint64
	}{
		{4, []uint64{4, 5, 6}},
		{5, []uint64{5, 6}},
		{6, []uint64{6}},
	} {
		base, later, err := e.sinceSeq(t, testC, testID, tc.seq)
		if err != nil {
			t.Fatalf("SinceSeq(%d): %v", tc.seq, err)
		}
		wantSeqs(t, fmt.Sprintf("SinceSeq(%d)", tc.seq), append([]store.Version{base}, later...), tc.want...)
	}
	for _, seq := range []uint64{0, 1, 3, 7, 1 << 62} {
		if _, _, err := e.sinceSeq(t, testC, testID, seq); !errors.Is(err, store.ErrBaseUnknown) {
			t.Errorf("SinceSeq(%d): %v, want ErrBaseUnknown", seq, err)
		}
	}
	if _, _, err := e.sinceSeq(t, testC, "never", 1); !errors.Is(err, store.ErrBaseUnknown) {
		t.Errorf("SinceSeq of a document without history: %v, want ErrBaseUnknown", err)
	}
}

// testSinceTooLarge: Since and SinceSeq refuse, with ErrHistoryTooLarge,
// to read versions after the base whose ops pass MaxHistoryRead bytes, and
// read those within it.
func testSinceTooLarge(t *testing.T, open opener) {
	e := newEnvWith(t, open, Options{Retention: store.Retention{Versions: 100, Age: -1}, MaxHistoryRead: 4000})
	var etags []string
	for i := 1; i <= 6; i++ {
		ops := []byte(`["` + strings.Repeat("x", 1000) + `"]`)
		doc := e.write(t, testC, testID, &store.Change{Body: []byte(body(i)), Kind: store.KindJSONPatch, Ops: ops})
		etags = append(etags, doc.ETag)
	}
	// After version 1: five versions of about 1 KB of ops; after version
	// 4, two.
	if _, _, err := e.since(t, testC, testID, etags[0]); !errors.Is(err, store.ErrHistoryTooLarge) {
		t.Errorf("Since(version 1): %v, want ErrHistoryTooLarge", err)
	}
	if _, _, err := e.sinceSeq(t, testC, testID, 1); !errors.Is(err, store.ErrHistoryTooLarge) {
		t.Errorf("SinceSeq(1): %v, want ErrHistoryTooLarge", err)
	}
	base, later, err := e.since(t, testC, testID, etags[3])
	if err != nil {
		t.Fatalf("Since(version 4): %v", err)
	}
	wantSeqs(t, "Since(version 4)", append([]store.Version{base}, later...), 4, 5, 6)
	base, later, err = e.sinceSeq(t, testC, testID, 4)
	if err != nil {
		t.Fatalf("SinceSeq(4): %v", err)
	}
	wantSeqs(t, "SinceSeq(4)", append([]store.Version{base}, later...), 4, 5, 6)
	// A base that is not there is base-unknown, however much history
	// follows: an ETag never seen, and a pruned version.
	if _, _, err := e.since(t, testC, testID, store.ETagOf([]byte(`{"never":1}`))); !errors.Is(err, store.ErrBaseUnknown) {
		t.Errorf("Since(an ETag never seen): %v, want ErrBaseUnknown", err)
	}
	p := newEnvWith(t, open, Options{Retention: store.Retention{Versions: 3, Age: -1}, MaxHistoryRead: 2000})
	for i := 1; i <= 6; i++ {
		ops := []byte(`["` + strings.Repeat("x", 1000) + `"]`)
		p.write(t, testC, testID, &store.Change{Body: []byte(body(i)), Kind: store.KindJSONPatch, Ops: ops})
	}
	if _, _, err := p.sinceSeq(t, testC, testID, 2); !errors.Is(err, store.ErrBaseUnknown) {
		t.Errorf("SinceSeq(a pruned version): %v, want ErrBaseUnknown", err)
	}
}

func testManyCommit(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	ch, err := e.s.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	e.put(t, "b", "y", body(1))
	wantOnlyEvent(t, ch, store.Event{Collection: "b", ID: "y", Seq: 1})
	e.clock.Advance(time.Second)
	at := e.clock.Now()
	// Keys in no particular order; the changes name them by index.
	keys := []store.Key{{Collection: "b", ID: "y"}, {Collection: "a", ID: "x"}}
	var saw []store.Locked
	docs := e.many(t, keys, func(_ context.Context, locked []store.Locked) (*store.ManyChange, error) {
		saw = locked
		return &store.ManyChange{Changes: []store.DocChange{
			putChange(1, body(10)),
			{Doc: 0, Change: &store.Change{Body: []byte(body(2)), Kind: store.KindMergePatch, Ops: []byte(`[2]`), Actor: "bob", RequestID: "r1"}},
		}}, nil
	})
	if len(saw) != 2 || saw[0].Doc == nil || saw[0].Seq != 1 || saw[1].Doc != nil || saw[1].Seq != 0 {
		t.Fatalf("the ManyFunc saw %+v", saw)
	}
	want := []*store.Document{
		{Collection: "a", ID: "x", Body: []byte(body(10)), ETag: store.ETagOf([]byte(body(10))), Seq: 1, UpdatedAt: at},
		{Collection: "b", ID: "y", Body: []byte(body(2)), ETag: store.ETagOf([]byte(body(2))), Seq: 2, UpdatedAt: at},
	}
	if len(docs) != len(want) {
		t.Fatalf("UpdateMany returned %d documents, want %d", len(docs), len(want))
	}
	for i := range want {
		wantDoc(t, fmt.Sprintf("result %d", i), docs[i], want[i])
		wantDoc(t, fmt.Sprintf("Get %d", i), e.get(t, want[i].Collection, want[i].ID), want[i])
	}
	wantVersions(t, "History b/y", e.history(t, "b", "y")[1:], []store.Version{
		{Seq: 2, ETag: want[1].ETag, At: at, Kind: store.KindMergePatch, Ops: []byte(`[2]`), Actor: "bob", RequestID: "r1"},
	})
	// One event per version, in the order of the changes.
	got := []store.Event{nextEvent(t, ch), nextEvent(t, ch)}
	if got[0] != (store.Event{Collection: "a", ID: "x", Seq: 1}) || got[1] != (store.Event{Collection: "b", ID: "y", Seq: 2}) {
		t.Fatalf("events %+v", got)
	}
}

func testManySameDocument(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	e.put(t, testC, testID, body(1))
	e.del(t, testC, testID) // seq 2: the next version is 3, though the document does not exist
	keys := []store.Key{{Collection: testC, ID: testID}}
	var seq uint64
	docs := e.many(t, keys, func(_ context.Context, locked []store.Locked) (*store.ManyChange, error) {
		seq = locked[0].Seq
		return &store.ManyChange{Changes: []store.DocChange{
			putChange(0, body(3)),
			putChange(0, body(4)),
			{Doc: 0, Change: &store.Change{Kind: store.KindDelete}},
			putChange(0, body(6)),
		}}, nil
	})
	if seq != 2 {
		t.Fatalf("Locked.Seq of a deleted document = %d, want 2", seq)
	}
	if len(docs) != 4 || docs[0].Seq != 3 || docs[1].Seq != 4 || docs[2] != nil || docs[3].Seq != 6 {
		t.Fatalf("UpdateMany returned %+v", docs)
	}
	if got := e.get(t, testC, testID); string(got.Body) != body(6) || got.Seq != 6 {
		t.Fatalf("Get: %s seq %d", got.Body, got.Seq)
	}
	hist := e.history(t, testC, testID)
	wantSeqs(t, "History", hist, 1, 2, 3, 4, 5, 6)
	if hist[4].Kind != store.KindDelete || hist[4].ETag != "" || hist[3].ETag != store.ETagOf([]byte(body(4))) {
		t.Fatalf("History: %+v", hist)
	}
}

func testManyNothing(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	e.put(t, testC, testID, body(1))
	keys := []store.Key{{Collection: testC, ID: testID}, {Collection: testC, ID: "new"}}
	rec := &store.IdempotencyRecord{Key: "k", Value: []byte("v"), Expires: e.clock.Now().Add(time.Hour)}
	errFn := errors.New("refused")
	for _, tc := range []struct {
		name    string
		fn      store.ManyFunc
		wantErr error
	}{
		{"FuncError", func(context.Context, []store.Locked) (*store.ManyChange, error) { return nil, errFn }, errFn},
		{"Nil", func(context.Context, []store.Locked) (*store.ManyChange, error) { return nil, nil }, nil},
		{"Empty", changes(), nil},
		{"DeleteMissing", changes(
			store.DocChange{Doc: 0, Change: &store.Change{Body: []byte(body(2)), Kind: store.KindPut, Idempotency: rec}},
			store.DocChange{Doc: 1, Change: &store.Change{Kind: store.KindDelete}},
		), store.ErrNotFound},
		{"DeleteTwice", changes(
			store.DocChange{Doc: 0, Change: &store.Change{Kind: store.KindDelete}},
			store.DocChange{Doc: 0, Change: &store.Change{Kind: store.KindDelete}},
		), store.ErrNotFound},
		{"BadIndex", changes(putChange(0, body(2)), putChange(2, body(2))), store.ErrInvalidKey},
		{"BadRecord", changes(putChange(1, body(2)),
			store.DocChange{Doc: 0, Change: &store.Change{Body: []byte(body(2)), Kind: store.KindPut, Idempotency: &store.IdempotencyRecord{}}}),
			store.ErrInvalidIdempotency},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docs, err := e.s.UpdateMany(t.Context(), keys, tc.fn)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) || docs != nil {
				t.Fatalf("UpdateMany: %v, %v; want nil, %v", docs, err, tc.wantErr)
			}
			wantSeqs(t, "History", e.history(t, testC, testID), 1)
			e.wantNoTrace(t, testC, "new", "k")
		})
	}
}

func testManyInvalidKeys(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	for _, keys := range [][]store.Key{
		nil,
		{{Collection: testC, ID: "a"}, {Collection: testC, ID: "a"}},
		{{Collection: testC, ID: "a"}, {Collection: "..", ID: "b"}},
		{{Collection: testC, ID: "a/b"}},
		make([]store.Key, store.MaxManyKeys+1),
	} {
		called := false
		_, err := e.s.UpdateMany(t.Context(), keys, func(context.Context, []store.Locked) (*store.ManyChange, error) {
			called = true
			return nil, nil
		})
		if !errors.Is(err, store.ErrInvalidKey) || called {
			t.Errorf("UpdateMany(%d keys): %v (func called: %v), want ErrInvalidKey before the func", len(keys), err, called)
		}
	}
	// The schema collection is a collection stores keep.
	e.many(t, []store.Key{{Collection: store.SchemaCollection, ID: testC}}, changes(putChange(0, body(1))))
	e.get(t, store.SchemaCollection, testC)
}

func testManyDryRun(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	ch, err := e.s.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	v1 := e.put(t, testC, testID, body(1))
	wantOnlyEvent(t, ch, store.Event{Collection: testC, ID: testID, Seq: 1})
	rec := &store.IdempotencyRecord{Key: "dry-many", Value: []byte("v"), Expires: e.clock.Now().Add(time.Hour)}
	keys := []store.Key{{Collection: testC, ID: testID}, {Collection: "other", ID: "new"}}
	docs := e.many(t, keys, func(context.Context, []store.Locked) (*store.ManyChange, error) {
		return &store.ManyChange{DryRun: true, Changes: []store.DocChange{
			{Doc: 0, Change: &store.Change{Body: []byte(body(2)), Kind: store.KindPut, Idempotency: rec}},
			putChange(1, body(3)),
			{Doc: 0, Change: &store.Change{Kind: store.KindDelete}},
		}}, nil
	})
	if len(docs) != 3 || docs[0].Seq != 2 || docs[0].ETag != store.ETagOf([]byte(body(2))) || docs[1].Seq != 1 || docs[2] != nil {
		t.Fatalf("dry-run UpdateMany returned %+v", docs)
	}
	wantDoc(t, "after the dry run", e.get(t, testC, testID), v1)
	wantSeqs(t, "History", e.history(t, testC, testID), 1)
	e.wantNoTrace(t, "other", "new", "dry-many")
	e.put(t, testC, "marker", body(9))
	wantOnlyEvent(t, ch, store.Event{Collection: testC, ID: "marker", Seq: 1}, store.Event{Collection: testC, ID: testID, Seq: 1})
}

func testManyIdempotency(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	exp := e.clock.Now().Add(time.Hour)
	keys := []store.Key{{Collection: testC, ID: "a"}, {Collection: testC, ID: "b"}}
	e.many(t, keys, changes(
		store.DocChange{Doc: 1, Change: &store.Change{Body: []byte(body(1)), Kind: store.KindPut,
			Idempotency: &store.IdempotencyRecord{Key: "kb", Value: []byte("vb"), Expires: exp}}},
		store.DocChange{Doc: 0, Change: &store.Change{Body: []byte(body(2)), Kind: store.KindPut,
			Idempotency: &store.IdempotencyRecord{Key: "ka", Value: []byte("va"), Expires: exp}}},
	))
	e.wantRecord(t, "ka", "va")
	e.wantRecord(t, "kb", "vb")
}

func testManyHistory(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	v1 := e.put(t, testC, "a", body(1))
	e.put(t, testC, "a", body(2))
	keys := []store.Key{{Collection: testC, ID: "a"}, {Collection: testC, ID: "b"}}
	e.many(t, keys, func(ctx context.Context, locked []store.Locked) (*store.ManyChange, error) {
		base, later, err := locked[0].History.Since(ctx, []string{v1.ETag})
		if err != nil || base.Seq != 1 || len(later) != 1 {
			t.Errorf("Since(v1) in UpdateMany: %+v %v %v", base, seqs(later), err)
		}
		if _, _, err := locked[1].History.Since(ctx, []string{v1.ETag}); !errors.Is(err, store.ErrBaseUnknown) {
			t.Errorf("Since of a new document: %v, want ErrBaseUnknown", err)
		}
		if _, later, err := locked[0].History.SinceSeq(ctx, 2); err != nil || len(later) != 0 {
			t.Errorf("SinceSeq(2) in UpdateMany: %v %v", seqs(later), err)
		}
		return nil, nil
	})
}

// testManyConcurrent runs UpdateManys over the same documents in opposite
// key orders, with Updates of each among them: every one completes (no
// deadlock, no lost update).
func testManyConcurrent(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{Versions: 100000, Age: 24 * time.Hour})
	names := []string{"a", "b", "c"}
	for _, id := range names {
		e.put(t, testC, id, `{"n":0}`)
	}
	type counter struct {
		N int `json:"n"`
	}
	bump := func(doc *store.Document) (*store.Change, error) {
		var v counter
		if err := json.Unmarshal(doc.Body, &v); err != nil {
			return nil, err
		}
		return &store.Change{Body: fmt.Appendf(nil, `{"n":%d}`, v.N+1), Kind: store.KindPut}, nil
	}
	bumpAll := func(_ context.Context, locked []store.Locked) (*store.ManyChange, error) {
		mc := &store.ManyChange{}
		for i, l := range locked {
			if l.Doc == nil {
				return nil, errors.New("counter missing")
			}
			ch, err := bump(l.Doc)
			if err != nil {
				return nil, err
			}
			mc.Changes = append(mc.Changes, store.DocChange{Doc: i, Change: ch})
		}
		return mc, nil
	}
	const workers, rounds = 6, 20
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			keys := make([]store.Key, len(names))
			for i, id := range names {
				keys[i] = store.Key{Collection: testC, ID: id}
			}
			if w%2 == 1 {
				slices.Reverse(keys)
			}
			for r := range rounds {
				var err error
				if w%3 == 2 {
					_, err = e.s.Update(ctx, testC, names[r%len(names)], func(_ context.Context, cur *store.Document, _ store.History) (*store.Change, error) {
						return bump(cur)
					})
				} else {
					_, err = e.s.UpdateMany(ctx, keys, bumpAll)
				}
				if err != nil {
					errs <- fmt.Errorf("worker %d, round %d: %w", w, r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 0
	for _, id := range names {
		var v counter
		if err := json.Unmarshal(e.get(t, testC, id).Body, &v); err != nil {
			t.Fatal(err)
		}
		total += v.N
	}
	manyWorkers, oneWorkers := 0, 0
	for w := range workers {
		if w%3 == 2 {
			oneWorkers++
		} else {
			manyWorkers++
		}
	}
	if want := manyWorkers*rounds*len(names) + oneWorkers*rounds; total != want {
		t.Fatalf("sum of counters %d, want %d (lost updates)", total, want)
	}
}
