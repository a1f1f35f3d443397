package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
	"github.com/patchd/patchd/store/postgres"
	"github.com/patchd/patchd/store/storetest"
)

// boltWith makes a bbolt store holding n small documents in two
// collections, plus documents with varied histories, and returns it with
// the names of every document.
func boltWith(t *testing.T, n int) (*bolt.Store, [][2]string) {
	t.Helper()
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	b, err := bolt.Open(filepath.Join(t.TempDir(), "src.db"), store.Options{
		Now: func() time.Time { at = at.Add(time.Second); return at },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	var names [][2]string
	for i := range n {
		c := []string{"notes", "forms"}[i%2]
		id := fmt.Sprintf("doc-%04d", i)
		storetest.Commit(t, b, c, id, &store.Change{Body: fmt.Appendf(nil, `{"i":%d}`, i), Kind: store.KindPut})
		names = append(names, [2]string{c, id})
	}
	// Varied histories: patches with ops, a rebase, a delete, a re-creation,
	// literal-preserving numbers.
	v1 := storetest.Commit(t, b, "mixed", "a", &store.Change{Body: []byte(`{"n":1e400,"z":-0}`), Kind: store.KindPut, Ops: []byte(`[{"op":"replace","path":"","value":{"n":1e400,"z":-0}}]`)})
	storetest.Commit(t, b, "mixed", "a", &store.Change{Body: []byte(`{"n":2,"z":-0}`), Kind: store.KindJSONPatch, Ops: []byte(`[{"op":"replace","path":"/n","value":2}]`),
		Actor: "alice", RequestID: "r-2"})
	storetest.Commit(t, b, "mixed", "a", &store.Change{Body: []byte(`{"m":1,"n":2,"z":-0}`), Kind: store.KindMergePatch, Ops: []byte(`[{"op":"add","path":"/m","value":1}]`), RebasedFrom: v1.ETag})
	storetest.Commit(t, b, "mixed", "a", &store.Change{Body: []byte(`{"m":1,"n":1e400,"z":-0}`), Kind: store.KindRevert, Ops: []byte(`[{"op":"replace","path":"/n","value":1e400}]`),
		RebasedFrom: v1.ETag, Actor: "token:0a1b2c3d", RequestID: "r-4", Reverts: 2})
	storetest.Commit(t, b, store.SchemaCollection, "forms", &store.Change{Body: []byte(`{"type":"object"}`), Kind: store.KindPut, Actor: "admin"})
	storetest.Commit(t, b, "mixed", "gone", &store.Change{Body: []byte(`{}`), Kind: store.KindPut})
	storetest.Commit(t, b, "mixed", "gone", &store.Change{Kind: store.KindDelete, Ops: []byte(`[{"op":"remove","path":""}]`)})
	storetest.Commit(t, b, "mixed", "back", &store.Change{Body: []byte(`{"v":1}`), Kind: store.KindPut})
	storetest.Commit(t, b, "mixed", "back", &store.Change{Kind: store.KindDelete})
	storetest.Commit(t, b, "mixed", "back", &store.Change{Body: []byte(`{"v":3}`), Kind: store.KindPut})
	names = append(names, [2]string{"mixed", "a"}, [2]string{"mixed", "gone"}, [2]string{"mixed", "back"}, [2]string{store.SchemaCollection, "forms"})
	return b, names
}

// sameDocuments fails unless src and dst hold the same documents and
// histories.
func sameDocuments(t *testing.T, src, dst store.Store, names [][2]string) {
	t.Helper()
	ctx := context.Background()
	for _, n := range names {
		a, aerr := src.Get(ctx, n[0], n[1])
		b, berr := dst.Get(ctx, n[0], n[1])
		if !errors.Is(aerr, berr) && (aerr != nil || berr != nil) && !(errors.Is(aerr, store.ErrNotFound) && errors.Is(berr, store.ErrNotFound)) {
			t.Fatalf("%v: Get errors %v and %v", n, aerr, berr)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%v: documents differ:\n%+v\n%+v", n, a, b)
		}
		av, _, err := src.History(ctx, n[0], n[1], 0, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		bv, _, err := dst.History(ctx, n[0], n[1], 0, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(av, bv) {
			t.Fatalf("%v: histories differ:\n%+v\n%+v", n, av, bv)
		}
	}
}

func TestCopyFromBolt(t *testing.T) {
	src, names := boltWith(t, 20)
	dst := open(t, pg.Database(t), postgres.Options{})
	var last store.CopyProgress
	st, err := store.Copy(context.Background(), src, dst, func(p store.CopyProgress) { last = p })
	if err != nil {
		t.Fatalf("CopyFromBolt: %v", err)
	}
	if st.Documents != 24 || st.Copied != 24 || st.Versions != 20+4+2+3+1 {
		t.Errorf("stats %+v, want 24 documents, 24 copied, 30 versions", st)
	}
	if last != (store.CopyProgress{Phase: "verify", Done: 24, Total: 24}) {
		t.Errorf("last progress %+v", last)
	}
	sameDocuments(t, src, dst, names)

	// Writes go on from the copied seqs; a stale edit finds its base in
	// the copied history.
	doc := storetest.Commit(t, dst, "mixed", "back", &store.Change{Body: []byte(`{"v":4}`), Kind: store.KindPut})
	if doc.Seq != 4 {
		t.Errorf("seq after the copy = %d, want 4", doc.Seq)
	}
	a, _ := src.Get(context.Background(), "mixed", "a")
	_, err = dst.Update(context.Background(), "mixed", "a", func(ctx context.Context, _ *store.Document, h store.History) (*store.Change, error) {
		base, later, err := h.Since(ctx, []string{store.ETagOf([]byte(`{"n":1e400,"z":-0}`))})
		if err != nil || base.Seq != 1 || len(later) != 3 || later[2].ETag != a.ETag || later[2].Reverts != 2 || later[0].Actor != "alice" {
			t.Errorf("Since over copied history = %+v, %d later, %v", base, len(later), err)
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Running it again copies nothing and verifies everything; a document
	// changed since is a conflict, not overwritten.
	st, err = store.Copy(context.Background(), src, dst, nil)
	if !errors.Is(err, store.ErrCopyConflict) {
		t.Fatalf("copy over a changed document: %+v, %v; want ErrCopyConflict", st, err)
	}
}

func TestCopyFromBoltResumes(t *testing.T) {
	src, names := boltWith(t, 600)
	dst := open(t, pg.Database(t), postgres.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := store.Copy(ctx, src, dst, func(p store.CopyProgress) {
		if p.Phase == "copy" && p.Done > 0 {
			cancel() // interrupted after the first batch
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted copy: %v, want context.Canceled", err)
	}
	var partial int
	if err := dst.Pool().QueryRow(context.Background(), `SELECT count(*) FROM documents`).Scan(&partial); err != nil {
		t.Fatal(err)
	}
	if partial == 0 || partial >= len(names) {
		t.Fatalf("%d documents after the interruption, want some of %d", partial, len(names))
	}
	st, err := store.Copy(context.Background(), src, dst, nil)
	if err != nil {
		t.Fatalf("resumed copy: %v", err)
	}
	if st.Documents != len(names) || st.Copied != len(names)-partial {
		t.Fatalf("resumed copy %+v, want %d documents, %d copied", st, len(names), len(names)-partial)
	}
	sameDocuments(t, src, dst, names)
}

func TestVerifyCatchesDamage(t *testing.T) {
	src, _ := boltWith(t, 4)
	dst := open(t, pg.Database(t), postgres.Options{})
	if _, err := store.Copy(context.Background(), src, dst, nil); err != nil {
		t.Fatal(err)
	}
	// One byte of one body changes behind patchd's back.
	if _, err := dst.Pool().Exec(context.Background(),
		`UPDATE documents SET body = convert_to('{"i":9}', 'UTF8') WHERE collection = 'forms' AND id = 'doc-0001'`); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Copy(context.Background(), src, dst, nil); !errors.Is(err, store.ErrVerify) {
		t.Fatalf("copy over a damaged body: %v, want ErrVerify", err)
	}
}
