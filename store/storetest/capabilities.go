package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/prometheus/client_golang/prometheus"
)

// This file covers what every backend offers beyond reads and writes: the
// ETag-only read, invalid names, the commit feed, metrics, and, for the
// backends that have them, Dump, Load and the copy built on both.

func testETag(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	if _, err := e.s.ETag(t.Context(), testC, testID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ETag of a missing document: %v, want ErrNotFound", err)
	}
	doc := e.put(t, testC, testID, body(1))
	got, err := e.s.ETag(t.Context(), testC, testID)
	if err != nil {
		t.Fatal(err)
	}
	if got != doc.ETag {
		t.Fatalf("ETag=%s, want %s", got, doc.ETag)
	}
	e.del(t, testC, testID)
	if _, err := e.s.ETag(t.Context(), testC, testID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ETag of a deleted document: %v, want ErrNotFound", err)
	}
}

func testUpdateInvalidKey(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	for _, k := range [][2]string{{"", "a"}, {"c", ""}, {"c", "a\x00b"}, {"c", "\xff"}, {"c/d", "a"}, {"c", ".."}} {
		called := false
		_, err := e.s.Update(t.Context(), k[0], k[1], func(context.Context, *store.Document, store.History) (*store.Change, error) {
			called = true
			return &store.Change{Body: []byte(`{}`), Kind: store.KindPut}, nil
		})
		if !errors.Is(err, store.ErrInvalidKey) || called {
			t.Errorf("Update(%q/%q): %v (func called: %v), want ErrInvalidKey before the func", k[0], k[1], err, called)
		}
	}
}

// nextEvent waits for the next event that is not a Resync.
func nextEvent(t *testing.T, ch <-chan store.Event) store.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("event channel closed")
			}
			if !ev.Resync {
				return ev
			}
		case <-timeout:
			t.Fatal("no event within 10s")
		}
	}
}

func testSubscribeCommits(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := e.s.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.put(t, testC, testID, body(1))
	e.del(t, testC, testID)
	// Nothing committed: no event.
	e.write(t, testC, testID, nil)
	e.put(t, testC, testID, body(3))
	// Events are hints and may come twice (never out of order for one
	// document from one store): a repeat of the last one is passed over.
	var last store.Event
	for _, want := range []uint64{1, 2, 3} {
		ev := nextEvent(t, ch)
		for ev == last {
			ev = nextEvent(t, ch)
		}
		if ev != (store.Event{Collection: testC, ID: testID, Seq: want}) {
			t.Fatalf("event %+v, want %s/%s seq %d", ev, testC, testID, want)
		}
		last = ev
	}
	cancel()
	for range ch { // closed once ctx is done
	}
}

func testSubscribeClosed(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	ch, err := e.s.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	for range ch { // closed with the store
	}
	if _, err := e.s.Subscribe(t.Context()); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Subscribe after Close: %v, want ErrClosed", err)
	}
}

func testMetricsCount(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	e.put(t, testC, "a", body(1))
	e.put(t, testC, "b", body(2))
	e.put(t, "other", "a", body(3))
	e.del(t, testC, "b")
	reg := prometheus.NewRegistry()
	if err := reg.Register(e.s.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) == 0 {
				got[mf.GetName()] = m.GetGauge().GetValue()
			}
		}
	}
	for name, want := range map[string]float64{"patchd_documents": 2, "patchd_history_versions": 4, "patchd_collections": 2} {
		if got[name] != want {
			t.Errorf("%s=%v, want %v", name, got[name], want)
		}
	}
}

// dumper returns the store as a Dumper and Loader, or skips the test.
func dumper(t *testing.T, s store.Store) interface {
	store.Store
	store.Dumper
	store.Loader
} {
	t.Helper()
	d, ok := s.(interface {
		store.Store
		store.Dumper
		store.Loader
	})
	if !ok {
		t.Skip("the backend has no Dump and Load")
	}
	return d
}

// dumpAll returns copies of every record of a Dump.
func dumpAll(t *testing.T, d store.Dumper, withHistory bool) []store.Record {
	t.Helper()
	var out []store.Record
	err := d.Dump(t.Context(), withHistory, func(r *store.Record) error {
		c := store.Record{Collection: r.Collection, ID: r.ID}
		if r.Doc != nil {
			doc := *r.Doc
			doc.Body = append([]byte(nil), doc.Body...)
			c.Doc = &doc
		}
		for _, v := range r.History {
			v.Ops = append([]byte(nil), v.Ops...)
			c.History = append(c.History, v)
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	return out
}

// fillForDump writes documents in two collections, one of them deleted
// and one re-created, and returns the dump they must give.
func fillForDump(t *testing.T, e *env) {
	t.Helper()
	writeVariety(t, e) // testC/testID: six versions of every kind
	e.clock.Advance(time.Minute)
	e.put(t, testC, "a", body(1))
	e.put(t, "beta", "gone", body(2))
	e.del(t, "beta", "gone")
	e.put(t, "beta", "x", body(3))
}

func testDumpOrder(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	d := dumper(t, e.s)
	fillForDump(t, e)
	names := func(rs []store.Record) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Collection+"/"+r.ID)
		}
		return out
	}
	current := dumpAll(t, d, false)
	if got, want := names(current), []string{"beta/x", "notes/a", "notes/doc-1"}; !equalStrings(got, want) {
		t.Fatalf("Dump without history: %v, want %v", got, want)
	}
	for _, r := range current {
		if r.History != nil {
			t.Fatalf("%s/%s: history %v in a dump without history", r.Collection, r.ID, seqs(r.History))
		}
		wantDoc(t, "Dump "+r.ID, r.Doc, e.get(t, r.Collection, r.ID))
	}
	all := dumpAll(t, d, true)
	if got, want := names(all), []string{"beta/gone", "beta/x", "notes/a", "notes/doc-1"}; !equalStrings(got, want) {
		t.Fatalf("Dump with history: %v, want %v", got, want)
	}
	for _, r := range all {
		wantVersions(t, "Dump history of "+r.Collection+"/"+r.ID, r.History, e.history(t, r.Collection, r.ID))
		if r.ID == "gone" && r.Doc != nil {
			t.Fatalf("deleted document dumped with a body")
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func testLoadRoundTrip(t *testing.T, open opener) {
	src := newEnv(t, open, store.Retention{})
	fillForDump(t, src)
	recs := dumpAll(t, dumper(t, src.s), true)
	dst := newEnv(t, open, store.Retention{})
	d := dumper(t, dst.s)
	ptrs := make([]*store.Record, len(recs))
	for i := range recs {
		ptrs[i] = &recs[i]
	}
	errs, err := d.Load(t.Context(), ptrs)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Load %s/%s: %v", recs[i].Collection, recs[i].ID, err)
		}
	}
	for _, r := range recs {
		wantVersions(t, "loaded history of "+r.ID, dst.history(t, r.Collection, r.ID), r.History)
		if r.Doc == nil {
			dst.wantNotFound(t, r.Collection, r.ID)
			continue
		}
		wantDoc(t, "loaded "+r.ID, dst.get(t, r.Collection, r.ID), r.Doc)
	}
	// A loaded document goes on from its seq.
	if doc := dst.put(t, testC, "a", body(9)); doc.Seq != 2 {
		t.Fatalf("write after load: seq %d, want 2", doc.Seq)
	}

	// Loading again: every record exists.
	errs, err = d.Load(t.Context(), ptrs)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if !errors.Is(err, store.ErrExists) {
			t.Errorf("second Load of %s/%s: %v, want ErrExists", recs[i].Collection, recs[i].ID, err)
		}
	}
}

func testLoadInvalid(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	d := dumper(t, e.s)
	at := e.clock.Now()
	body := []byte(`{"a":1}`)
	good := func() *store.Record {
		return &store.Record{Collection: testC, ID: "ok",
			Doc:     &store.Document{Collection: testC, ID: "ok", Body: body, ETag: store.ETagOf(body), Seq: 3, UpdatedAt: at},
			History: []store.Version{{Seq: 3, ETag: store.ETagOf(body), At: at, Kind: store.KindPut, Ops: []byte(`[]`)}},
		}
	}
	for _, tc := range []struct {
		name   string
		change func(r *store.Record)
	}{
		{"NoHistory", func(r *store.Record) { r.History = nil }},
		{"WrongETag", func(r *store.Record) { r.Doc.ETag = store.ETagOf([]byte(`{}`)) }},
		{"SeqMismatch", func(r *store.Record) { r.Doc.Seq = 4 }},
		{"TimeMismatch", func(r *store.Record) { r.Doc.UpdatedAt = at.Add(time.Second) }},
		{"Gap", func(r *store.Record) {
			r.History = append([]store.Version{{Seq: 1, ETag: store.ETagOf([]byte(`{}`)), At: at, Kind: store.KindPut}}, r.History...)
		}},
		{"DeletedWithETag", func(r *store.Record) { r.Doc = nil }},
		{"BadID", func(r *store.Record) { r.ID = "a\x00b"; r.Doc.ID = r.ID }},
		{"BadName", func(r *store.Record) { r.ID = "a/b"; r.Doc.ID = r.ID }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good()
			tc.change(r)
			other := good()
			other.ID, other.Doc.ID = "other-"+tc.name, "other-"+tc.name
			errs, err := d.Load(t.Context(), []*store.Record{r, other})
			if err != nil {
				t.Fatal(err)
			}
			if errs[0] == nil || errs[1] != nil {
				t.Fatalf("errs=%v, want the first only", errs)
			}
			e.get(t, testC, other.ID)
			if _, _, err := e.s.History(t.Context(), testC, r.ID, 0, 0, 0); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("the bad record left history: %v", err)
			}
		})
	}
}

func testCopy(t *testing.T, open opener) {
	src := newEnv(t, open, store.Retention{})
	fillForDump(t, src)
	dst := newEnv(t, open, store.Retention{})
	var last store.CopyProgress
	st, err := store.Copy(t.Context(), dumper(t, src.s), dumper(t, dst.s), func(p store.CopyProgress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	if st.Documents != 4 || st.Copied != 4 || st.Versions != 10 {
		t.Fatalf("copy stats %+v, want 4 documents, 4 copied, 10 versions", st)
	}
	if last.Phase != "verify" || last.Done != 4 || last.Total != 4 {
		t.Fatalf("last progress %+v", last)
	}
	// Run again: everything is there already in the same state.
	if st, err = store.Copy(t.Context(), dumper(t, src.s), dumper(t, dst.s), nil); err != nil || st.Copied != 0 {
		t.Fatalf("second copy: %+v, %v; want nothing copied", st, err)
	}
	// A destination document in another state is a conflict.
	dst.put(t, testC, "a", body(42))
	if _, err := store.Copy(t.Context(), dumper(t, src.s), dumper(t, dst.s), nil); !errors.Is(err, store.ErrCopyConflict) {
		t.Fatalf("copy over a changed document: %v, want ErrCopyConflict", err)
	}
}

// testCopyIdempotency: a copy carries the live idempotency records, with
// their scopes and expiries; expired ones stay behind, and the records the
// destination holds already are kept.
func testCopyIdempotency(t *testing.T, open opener) {
	src := newEnv(t, open, store.Retention{})
	if _, ok := src.s.(store.IdempotencyCopier); !ok {
		t.Skip("the backend does not copy idempotency records")
	}
	exp := src.clock.Now().Add(time.Hour)
	for i, k := range []string{"k1", "k2", "gone"} {
		e := exp
		if k == "gone" {
			e = src.clock.Now().Add(time.Second)
		}
		if _, err := src.writeWithRecord(t, []byte(body(i)), &store.IdempotencyRecord{Key: k, Scope: "s" + k, Value: []byte("v" + k), Expires: e}); err != nil {
			t.Fatal(err)
		}
	}
	src.clock.Advance(2 * time.Second)
	dst := newEnv(t, open, store.Retention{})
	dst.clock.Advance(2 * time.Second)
	// The destination already answers k2 with its own record.
	if _, err := dst.s.Update(t.Context(), "elsewhere", "x", func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return &store.Change{Body: []byte(`{}`), Kind: store.KindPut, Idempotency: &store.IdempotencyRecord{Key: "k2", Value: []byte("mine"), Expires: exp}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	st, err := store.Copy(t.Context(), dumper(t, src.s), dumper(t, dst.s), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Keys != 2 || st.KeysCopied != 1 {
		t.Fatalf("copy stats %+v, want 2 keys, 1 copied", st)
	}
	rec, err := dst.s.Idempotency(t.Context(), "k1")
	if err != nil || string(rec.Value) != "vk1" || rec.Scope != "sk1" || !rec.Expires.Equal(exp) || rec.Seq != 1 {
		t.Fatalf("copied record k1: %+v, %v", rec, err)
	}
	dst.wantRecord(t, "k2", "mine")
	dst.wantNoRecord(t, "gone")
	// Copying again changes nothing.
	if st, err := store.Copy(t.Context(), dumper(t, src.s), dumper(t, dst.s), nil); err != nil || st.KeysCopied != 0 {
		t.Fatalf("second copy: %+v, %v; want no key copied", st, err)
	}
}

// testPing: an open store answers Ping; a closed one says so.
func testPing(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	if err := e.s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Ping(t.Context()); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Ping after Close: %v, want ErrClosed", err)
	}
}
