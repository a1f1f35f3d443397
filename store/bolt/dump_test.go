package bolt_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// dumpAll collects what Dump visits, with deep copies.
func dumpAll(t *testing.T, s *bolt.Store, withHistory bool) []store.Record {
	t.Helper()
	var out []store.Record
	err := s.Dump(context.Background(), withHistory, func(r *store.Record) error {
		out = append(out, *r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBolt_DumpLoad(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := fill(t, filepath.Join(dir, "src.db"))

	docs := dumpAll(t, src, false)
	var names []string
	for _, r := range docs {
		if r.Doc == nil || r.History != nil {
			t.Fatalf("record without history: %+v", r)
		}
		names = append(names, r.Collection+"/"+r.ID)
	}
	if got, want := names, []string{"c/d0", "c/d2", "other/x"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("documents %v, want %v", got, want)
	}

	all := dumpAll(t, src, true)
	names = nil
	for _, r := range all {
		names = append(names, r.Collection+"/"+r.ID)
	}
	if got, want := names, []string{"c/d0", "c/d1", "c/d2", "gone/y", "other/x"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("records %v, want %v", got, want)
	}

	dst := mustOpenBolt(t, filepath.Join(dir, "dst.db"), store.Options{})
	recs := make([]*store.Record, len(all))
	for i := range all {
		recs[i] = &all[i]
	}
	errs, err := dst.Load(ctx, recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range errs {
		if e != nil {
			t.Fatalf("record %d: %v", i, e)
		}
	}
	if got, want := snapshot(t, dst), snapshot(t, src); !reflect.DeepEqual(got, want) {
		t.Fatalf("loaded store differs:\n%v\nwant\n%v", got, want)
	}
	if got := dumpAll(t, dst, true); !reflect.DeepEqual(got, all) {
		t.Fatal("dump of the loaded store differs")
	}

	// Loading again: every record exists, nothing changes.
	errs, err = dst.Load(ctx, recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range errs {
		if !errors.Is(e, store.ErrExists) {
			t.Fatalf("record %d loaded twice: %v", i, e)
		}
	}

	// Writes continue the loaded history.
	doc := put(t, dst, "c", "d0", &store.Change{Body: []byte(`{"after":1}`), Kind: store.KindPut})
	if want := all[0].History[len(all[0].History)-1].Seq + 1; doc.Seq != want {
		t.Fatalf("seq after load %d, want %d", doc.Seq, want)
	}
}

func TestBolt_LoadRejects(t *testing.T) {
	ctx := context.Background()
	dst := mustOpenBolt(t, filepath.Join(t.TempDir(), "dst.db"), store.Options{})
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	body := []byte(`{"a":1}`)
	good := func() *store.Record {
		return &store.Record{Collection: "c", ID: "ok",
			Doc:     &store.Document{Collection: "c", ID: "ok", Body: body, ETag: store.ETagOf(body), Seq: 3, UpdatedAt: at},
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
			r.History = append([]store.Version{{Seq: 1, ETag: `"x"`, At: at, Kind: store.KindPut}}, r.History...)
		}},
		{"DeletedWithETag", func(r *store.Record) { r.Doc = nil }},
		{"BadID", func(r *store.Record) { r.ID = "a\x00b"; r.Doc.ID = r.ID }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good()
			tc.change(r)
			other := good()
			other.ID, other.Doc.ID = "other-"+tc.name, "other-"+tc.name
			errs, err := dst.Load(ctx, []*store.Record{r, other})
			if err != nil {
				t.Fatal(err)
			}
			if errs[0] == nil || errs[1] != nil {
				t.Fatalf("errs=%v, want the first only", errs)
			}
			if _, err := dst.Get(ctx, "c", other.ID); err != nil {
				t.Fatalf("the good record was not loaded: %v", err)
			}
			if _, _, err := dst.History(ctx, "c", r.ID, 0, 0); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("the bad record left history: %v", err)
			}
		})
	}
}
