package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
)

// writeWithRecord commits body (nil: delete) to the test document with an
// idempotency record.
func (e *env) writeWithRecord(t *testing.T, body []byte, rec *store.IdempotencyRecord) (*store.Document, error) {
	t.Helper()
	kind := store.KindPut
	if body == nil {
		kind = store.KindDelete
	}
	return e.s.Update(t.Context(), testC, testID, func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return &store.Change{Body: body, Kind: kind, Idempotency: rec}, nil
	})
}

// wantRecord checks that key holds value.
func (e *env) wantRecord(t *testing.T, key, value string) {
	t.Helper()
	rec, err := e.s.Idempotency(t.Context(), key)
	if err != nil {
		t.Fatalf("Idempotency(%q): %v", key, err)
	}
	if rec.Key != key || string(rec.Value) != value {
		t.Fatalf("Idempotency(%q) = key %q value %q, want value %q", key, rec.Key, rec.Value, value)
	}
}

// wantNoRecord checks that key holds nothing.
func (e *env) wantNoRecord(t *testing.T, key string) {
	t.Helper()
	if rec, err := e.s.Idempotency(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Idempotency(%q) = %+v, %v; want ErrNotFound", key, rec, err)
	}
}

func testIdempotencyRoundTrip(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	e.wantNoRecord(t, "k1")
	expires := e.clock.Now().Add(time.Hour)
	doc, err := e.writeWithRecord(t, []byte(body(1)), &store.IdempotencyRecord{Key: "k1", Value: []byte("answer 1"), Expires: expires})
	if err != nil {
		t.Fatal(err)
	}
	wantDoc(t, "Get", e.get(t, testC, testID), doc)
	rec, err := e.s.Idempotency(t.Context(), "k1")
	if err != nil {
		t.Fatalf("Idempotency: %v", err)
	}
	if string(rec.Value) != "answer 1" || !rec.Expires.Equal(expires) || rec.Seq != doc.Seq {
		t.Fatalf("record %q expires %v seq %d, want %q expires %v seq %d", rec.Value, rec.Expires, rec.Seq, "answer 1", expires, doc.Seq)
	}
	// Keys are exact: no prefix or case folding.
	for _, k := range []string{"k", "k1 ", "K1", "k10"} {
		e.wantNoRecord(t, k)
	}
	// Binary keys and values survive.
	key := "p\x00\xffkey"
	if _, err := e.writeWithRecord(t, []byte(body(2)), &store.IdempotencyRecord{Key: key, Value: []byte{0, 1, 2}, Expires: expires}); err != nil {
		t.Fatal(err)
	}
	e.wantRecord(t, key, "\x00\x01\x02")
	e.wantRecord(t, "k1", "answer 1")
	// The store sets the seq, whatever the change says; after a delete,
	// it is the seq the history goes on with.
	e.del(t, testC, testID)
	doc, err = e.writeWithRecord(t, []byte(body(3)), &store.IdempotencyRecord{Key: "k3", Value: []byte("v"), Expires: expires, Seq: 99})
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := e.s.Idempotency(t.Context(), "k3"); err != nil || rec.Seq != 4 || doc.Seq != 4 {
		t.Fatalf("record after a delete: %+v, %v; document seq %d; want seq 4", rec, err, doc.Seq)
	}
}

func testIdempotencyOnlyWithCommit(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	e.put(t, testC, testID, body(1))
	rec := &store.IdempotencyRecord{Key: "k", Value: []byte("v"), Expires: e.clock.Now().Add(time.Hour)}
	// An UpdateFunc error commits nothing, record included.
	boom := errors.New("boom")
	_, err := e.s.Update(t.Context(), testC, testID, func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return &store.Change{Body: []byte(body(2)), Kind: store.KindPut, Idempotency: rec}, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update: %v, want boom", err)
	}
	e.wantNoRecord(t, "k")
	// A delete carries its record too.
	if _, err := e.writeWithRecord(t, nil, rec); err != nil {
		t.Fatal(err)
	}
	e.wantNotFound(t, testC, testID)
	e.wantRecord(t, "k", "v")
	// Deleting a document that does not exist commits nothing.
	rec2 := &store.IdempotencyRecord{Key: "k2", Value: []byte("v2"), Expires: e.clock.Now().Add(time.Hour)}
	if _, err := e.writeWithRecord(t, nil, rec2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete of a missing document: %v, want ErrNotFound", err)
	}
	e.wantNoRecord(t, "k2")
}

func testIdempotencyExpiry(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	expires := e.clock.Now().Add(10 * time.Second)
	if _, err := e.writeWithRecord(t, []byte(body(1)), &store.IdempotencyRecord{Key: "k", Value: []byte("v"), Expires: expires}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(9 * time.Second)
	e.wantRecord(t, "k", "v")
	e.clock.Advance(time.Second)
	e.wantNoRecord(t, "k")
	// Later writes prune it; a new record under the key works as new.
	for i := range 3 {
		k := "other" + string(rune('a'+i))
		if _, err := e.writeWithRecord(t, []byte(body(2+i)), &store.IdempotencyRecord{Key: k, Value: []byte("o"), Expires: e.clock.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	e.wantNoRecord(t, "k")
	if _, err := e.writeWithRecord(t, []byte(body(9)), &store.IdempotencyRecord{Key: "k", Value: []byte("again"), Expires: e.clock.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	e.wantRecord(t, "k", "again")
	e.wantRecord(t, "othera", "o")
}

func testIdempotencyReplace(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	if _, err := e.writeWithRecord(t, []byte(body(1)), &store.IdempotencyRecord{Key: "k", Value: []byte("first"), Expires: e.clock.Now().Add(20 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(20 * time.Second)
	e.wantNoRecord(t, "k")
	// An expired record is replaced; the new one expires on its own
	// schedule, not on the old one's.
	if _, err := e.writeWithRecord(t, []byte(body(2)), &store.IdempotencyRecord{Key: "k", Value: []byte("second"), Expires: e.clock.Now().Add(10 * time.Second)}); err != nil {
		t.Fatalf("a write over an expired record: %v", err)
	}
	e.wantRecord(t, "k", "second")
	e.clock.Advance(10 * time.Second)
	e.wantNoRecord(t, "k")
}

// testIdempotencyClaim: a write whose key a live record holds commits
// nothing, to the same document or another, and says so.
func testIdempotencyClaim(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	rec := func(v string) *store.IdempotencyRecord {
		return &store.IdempotencyRecord{Key: "k", Scope: "client", Value: []byte(v), Expires: e.clock.Now().Add(time.Hour)}
	}
	first, err := e.writeWithRecord(t, []byte(body(1)), rec("first"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.writeWithRecord(t, []byte(body(2)), rec("second"))
	if !errors.Is(err, store.ErrIdempotencyExists) {
		t.Fatalf("second write with the key: %v, want ErrIdempotencyExists", err)
	}
	wantDoc(t, "document after the refused write", e.get(t, testC, testID), first)
	wantSeqs(t, "History", e.history(t, testC, testID), 1)
	e.wantRecord(t, "k", "first")
	// Another document: refused too, and not created.
	_, err = e.s.Update(t.Context(), testC, "other", func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return &store.Change{Body: []byte(body(3)), Kind: store.KindPut, Idempotency: rec("third")}, nil
	})
	if !errors.Is(err, store.ErrIdempotencyExists) {
		t.Fatalf("a write of another document with the key: %v, want ErrIdempotencyExists", err)
	}
	if _, _, err := e.s.History(t.Context(), testC, "other", 0, 0, 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused write left history: %v", err)
	}
	// A write without a record, or with another key, goes on.
	e.put(t, testC, testID, body(4))
	if _, err := e.writeWithRecord(t, []byte(body(5)), &store.IdempotencyRecord{Key: "k2", Value: []byte("v"), Expires: e.clock.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, "History", e.history(t, testC, testID), 1, 2, 3)
}

// testIdempotencyClaimConcurrent: writes with one key race, to one
// document and to several; exactly one commits, the others commit nothing
// and fail with ErrIdempotencyExists.
func testIdempotencyClaimConcurrent(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	const writers = 8
	for _, sameDoc := range []bool{true, false} {
		key := fmt.Sprintf("race-%v", sameDoc)
		var (
			wg       sync.WaitGroup
			start    = make(chan struct{})
			commits  atomic.Int32
			refusals atomic.Int32
		)
		for i := range writers {
			id := testID
			if !sameDoc {
				id = fmt.Sprintf("doc-%d", i)
			}
			wg.Go(func() {
				<-start
				_, err := e.s.Update(context.Background(), testC, id, func(_ context.Context, cur *store.Document, _ store.History) (*store.Change, error) {
					return &store.Change{Body: fmt.Appendf(nil, `{"w":%d,"k":%q}`, i, key), Kind: store.KindPut,
						Idempotency: &store.IdempotencyRecord{Key: key, Value: []byte{byte(i)}, // #nosec G115 -- a small test index
							Expires: e.clock.Now().Add(time.Hour)}}, nil
				})
				switch {
				case err == nil:
					commits.Add(1)
				case errors.Is(err, store.ErrIdempotencyExists):
					refusals.Add(1)
				default:
					t.Errorf("writer %d: %v", i, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if commits.Load() != 1 || refusals.Load() != writers-1 {
			t.Fatalf("same document %v: %d commits, %d refusals; want 1 and %d", sameDoc, commits.Load(), refusals.Load(), writers-1)
		}
		rec, err := e.s.Idempotency(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		winner := int(rec.Value[0])
		// Exactly the winner's version exists, once.
		versions := 0
		for i := range writers {
			id := testID
			if !sameDoc {
				id = fmt.Sprintf("doc-%d", i)
			}
			vs, _, err := e.s.History(t.Context(), testC, id, 0, 0, 0)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range vs {
				if v.ETag == store.ETagOf(fmt.Appendf(nil, `{"w":%d,"k":%q}`, i, key)) {
					versions++
					if i != winner {
						t.Fatalf("writer %d's version committed, but the record is writer %d's", i, winner)
					}
				}
			}
		}
		if versions != 1 {
			t.Fatalf("same document %v: %d versions of the writers, want 1", sameDoc, versions)
		}
	}
}

// testIdempotencyPerScope: a scope keeps its newest IdempotencyPerScope
// records; other scopes are not touched.
func testIdempotencyPerScope(t *testing.T, open opener) {
	e := newEnvWith(t, open, Options{IdempotencyPerScope: 4})
	write := func(key, scope string, i int) {
		t.Helper()
		e.clock.Advance(time.Second) // later records expire later
		if _, err := e.writeWithRecord(t, []byte(body(i)), &store.IdempotencyRecord{Key: key, Scope: scope, Value: []byte(key), Expires: e.clock.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	write("b-0", "b", 100)
	for i := range 6 {
		write(fmt.Sprintf("a-%d", i), "a", i)
	}
	write("b-1", "b", 101)
	for _, k := range []string{"a-0", "a-1"} {
		e.wantNoRecord(t, k)
	}
	for _, k := range []string{"a-2", "a-3", "a-4", "a-5", "b-0", "b-1"} {
		e.wantRecord(t, k, k)
	}
	// The scope of a record is kept with it.
	if rec, err := e.s.Idempotency(t.Context(), "b-0"); err != nil || rec.Scope != "b" {
		t.Fatalf("record b-0: %+v, %v; want scope b", rec, err)
	}
	// A key whose record was deleted for the bound is free again.
	write("a-0", "a", 7)
	e.wantRecord(t, "a-0", "a-0")
	e.wantNoRecord(t, "a-2")
}

func testIdempotencyInvalid(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	before := e.put(t, testC, testID, body(1))
	for _, key := range []string{"", strings.Repeat("k", store.MaxIdempotencyKey+1)} {
		_, err := e.writeWithRecord(t, []byte(body(2)), &store.IdempotencyRecord{Key: key, Value: []byte("v"), Expires: e.clock.Now().Add(time.Hour)})
		if !errors.Is(err, store.ErrInvalidIdempotency) {
			t.Errorf("key of %d bytes: error %v, want ErrInvalidIdempotency", len(key), err)
		}
	}
	wantDoc(t, "document after refused writes", e.get(t, testC, testID), before)
	wantSeqs(t, "History", e.history(t, testC, testID), 1)
	long := strings.Repeat("k", store.MaxIdempotencyKey)
	if _, err := e.writeWithRecord(t, []byte(body(3)), &store.IdempotencyRecord{Key: long, Value: nil, Expires: e.clock.Now().Add(time.Hour)}); err != nil {
		t.Fatalf("longest key: %v", err)
	}
	e.wantRecord(t, long, "")
}

func testIdempotencyClosed(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Idempotency(t.Context(), "k"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Idempotency after Close: %v, want ErrClosed", err)
	}
}
