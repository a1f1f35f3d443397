package storetest

import (
	"context"
	"errors"
	"strings"
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
	if string(rec.Value) != "answer 1" || !rec.Expires.Equal(expires) {
		t.Fatalf("record %q expires %v, want %q expires %v", rec.Value, rec.Expires, "answer 1", expires)
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
	for i, v := range []string{"first", "second"} {
		// The second record expires before the first would have: the
		// store must forget the first one's expiry, not keep either.
		exp := e.clock.Now().Add(time.Duration(20-10*i) * time.Second)
		if _, err := e.writeWithRecord(t, []byte(body(i)), &store.IdempotencyRecord{Key: "k", Value: []byte(v), Expires: exp}); err != nil {
			t.Fatal(err)
		}
	}
	e.wantRecord(t, "k", "second")
	e.clock.Advance(10 * time.Second)
	e.wantNoRecord(t, "k")
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
