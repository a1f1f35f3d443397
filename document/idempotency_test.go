package document_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/store"
)

// heldRecord holds the first read of an idempotency record after it is
// armed until released, as a slow replay (rebuilding a large answer) holds
// its retry.
type heldRecord struct {
	store.Store
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (h *heldRecord) Idempotency(ctx context.Context, key string) (*store.IdempotencyRecord, error) {
	if h.armed.CompareAndSwap(true, false) {
		close(h.entered)
		<-h.release
	}
	return h.Store.Idempotency(ctx, key)
}

// TestConcurrentReplays: retries of a keyed write that was committed long
// ago are answered with its answer while another retry of it is still
// being answered (they were 409 idempotency-key-in-use: the key was held
// through the replay as if the first request were still running).
func TestConcurrentReplays(t *testing.T) {
	_, st := openService(t)
	ctx := context.Background()
	h := &heldRecord{Store: st, entered: make(chan struct{}), release: make(chan struct{})}
	svc := document.New(h, document.DefaultConfig())
	key := &document.IdempotencyKey{Key: "k", Scope: "s", Fingerprint: "f"}
	patch := func(body string, key *document.IdempotencyKey) (document.Result, error) {
		return svc.Write(ctx, document.Write{Kind: document.MergePatch, Collection: "r", ID: "d", Body: []byte(body),
			Pre: document.Preconditions{IfMatch: document.ETagList{Present: true, Any: true}}, Idempotency: key})
	}
	if _, err := svc.Write(ctx, document.Write{Kind: document.Put, Collection: "r", ID: "d", Body: []byte(`{"n":0}`)}); err != nil {
		t.Fatal(err)
	}
	first, err := patch(`{"n":1}`, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := patch(`{"m":1}`, nil); err != nil { // the replay must rebuild the answer
		t.Fatal(err)
	}
	h.armed.Store(true)
	held := make(chan error, 1)
	go func() {
		res, err := patch(`{"n":1}`, key)
		if err == nil && (!res.Replayed || res.Doc.ETag != first.Doc.ETag) {
			t.Errorf("held retry: %+v", res)
		}
		held <- err
	}()
	<-h.entered
	res, err := patch(`{"n":1}`, key)
	close(h.release)
	if err != nil || !res.Replayed || res.Doc.ETag != first.Doc.ETag || string(res.Doc.Body) != string(first.Doc.Body) {
		t.Errorf("retry while another is answered: %+v %v; want the first answer %s", res, err, first.Doc.Body)
	}
	if err := <-held; err != nil {
		t.Errorf("held retry: %v", err)
	}

	// The same in batches.
	h.entered, h.release = make(chan struct{}), make(chan struct{})
	h.armed.Store(true)
	batch := func() ([]document.Result, error) {
		return svc.Batch(ctx, []document.Write{{Kind: document.MergePatch, Collection: "r", ID: "d", Body: []byte(`{"n":1}`),
			Pre: document.Preconditions{IfMatch: document.ETagList{Present: true, Any: true}}, Idempotency: key}}, false)
	}
	go func() {
		_, err := batch()
		held <- err
	}()
	<-h.entered
	rs, err := batch()
	close(h.release)
	if err != nil || len(rs) != 1 || !rs[0].Replayed || rs[0].Doc.ETag != first.Doc.ETag {
		t.Errorf("batch retry while another is answered: %+v %v", rs, err)
	}
	if err := <-held; err != nil {
		t.Errorf("held batch retry: %v", err)
	}
}

// missThenHold: the armed read of the record reads it (a miss), then waits
// until released: a request that looked for its key's record before
// another with the key committed, and is descheduled before its decision.
type missThenHold struct {
	store.Store
	armed            atomic.Bool
	entered, release chan struct{}
}

func (h *missThenHold) Idempotency(ctx context.Context, key string) (*store.IdempotencyRecord, error) {
	rec, err := h.Store.Idempotency(ctx, key)
	if h.armed.CompareAndSwap(true, false) {
		close(h.entered)
		<-h.release
	}
	return rec, err
}

// race runs held until its record read misses, then then to completion,
// then lets held go on; it returns both answers.
func race[T any](h *missThenHold, held, then func() (T, error)) (heldRes T, herr error, thenRes T, terr error) {
	h.entered, h.release = make(chan struct{}), make(chan struct{})
	h.armed.Store(true)
	done := make(chan struct{})
	go func() { heldRes, herr = held(); close(done) }()
	<-h.entered
	thenRes, terr = then()
	close(h.release)
	<-done
	return
}

// TestKeyHeldWhileLooking: a request looks for its key's record while it
// holds the key, so a second request with the key meanwhile is 409
// idempotency-key-in-use and decides nothing, and the first, decided after
// its look, commits once, as JSON Patch with a test, strict PATCH, batch
// and revert. (Looking before taking the key, a retry that looked just
// before the first committed and took the key just after was decided
// afresh: 422, 412, 409, a 200 not marked replayed.)
func TestKeyHeldWhileLooking(t *testing.T) {
	_, st := openService(t)
	ctx := context.Background()
	h := &missThenHold{Store: st}
	svc := document.New(h, document.DefaultConfig())
	anyTag := document.Preconditions{IfMatch: document.ETagList{Present: true, Any: true}}
	key := func(k string) *document.IdempotencyKey {
		return &document.IdempotencyKey{Key: k, Scope: "s", Fingerprint: "f-" + k}
	}
	write := func(w document.Write) func() (document.Result, error) {
		return func() (document.Result, error) { return svc.Write(ctx, w) }
	}
	versions := func() int {
		vs, _, err := st.History(ctx, "r", "d", 0, 100, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		return len(vs)
	}
	check := func(name string, before int, held document.Result, herr, terr error) {
		t.Helper()
		if herr != nil || held.Replayed {
			t.Errorf("%s: the request holding the key: replayed=%v err=%v; want it applied", name, held.Replayed, herr)
		}
		if !errors.Is(terr, document.ErrIdempotencyKeyInUse) {
			t.Errorf("%s: the request meanwhile: %v; want idempotency-key-in-use", name, terr)
		}
		if n := versions(); n != before+1 {
			t.Errorf("%s: %d versions, want %d: applied once", name, n, before+1)
		}
	}
	if _, err := svc.Write(ctx, document.Write{Kind: document.Put, Collection: "r", ID: "d", Body: []byte(`{"a":[],"x":1}`)}); err != nil {
		t.Fatal(err)
	}
	// 1. PATCH with a test op.
	n := versions()
	f := write(document.Write{Kind: document.JSONPatch, Collection: "r", ID: "d", Pre: anyTag, Idempotency: key("k1"),
		Body: []byte(`[{"op":"test","path":"/x","value":1},{"op":"replace","path":"/x","value":2}]`)})
	hr, he, _, te := race(h, f, f)
	check("json patch with test", n, hr, he, te)
	// 2. PATCH, Prefer: handling=strict with the current ETag.
	n = versions()
	cur, _ := st.Get(ctx, "r", "d")
	tag, _ := document.ParseETagList("If-Match", []string{cur.ETag})
	f = write(document.Write{Kind: document.MergePatch, Collection: "r", ID: "d", Idempotency: key("k2"),
		Pre: document.Preconditions{IfMatch: tag, Strict: true}, Body: []byte(`{"y":1}`)})
	hr, he, _, te = race(h, f, f)
	check("strict merge patch", n, hr, he, te)
	// 3. A batch.
	n = versions()
	b := func() ([]document.Result, error) {
		return svc.Batch(ctx, []document.Write{{Kind: document.JSONPatch, Collection: "r", ID: "d", Pre: anyTag, Idempotency: key("k3"),
			Body: []byte(`[{"op":"add","path":"/a/-","value":1}]`)}}, false)
	}
	hb, he, _, te := race(h, b, b)
	if he != nil || len(hb) != 1 || hb[0].Replayed || !errors.Is(te, document.ErrIdempotencyKeyInUse) || versions() != n+1 {
		t.Errorf("batch: holding %v %v, meanwhile %v, %d versions after %d", hb, he, te, versions(), n)
	}
	// 4. A revert of version 2 (x 1 -> 2).
	n = versions()
	f = write(document.Write{Kind: document.Revert, Collection: "r", ID: "d", Revert: 2, Pre: anyTag, Idempotency: key("k4")})
	hr, he, _, te = race(h, f, f)
	check("revert", n, hr, he, te)
}

// TestRetryOnAnotherReplica: a retry on one replica (a second Service over
// the same store) that is decided after the first request committed on
// another, and is refused for what that request did, answers the first's
// answer (it was 422: the test of the patch failed against the first's
// result; nothing was applied twice).
func TestRetryOnAnotherReplica(t *testing.T) {
	_, st := openService(t)
	ctx := context.Background()
	h := &missThenHold{Store: st}
	a, b := document.New(h, document.DefaultConfig()), document.New(h, document.DefaultConfig())
	if _, err := a.Write(ctx, document.Write{Kind: document.Put, Collection: "r", ID: "d", Body: []byte(`{"x":1}`)}); err != nil {
		t.Fatal(err)
	}
	w := document.Write{Kind: document.JSONPatch, Collection: "r", ID: "d", Body: []byte(`[{"op":"test","path":"/x","value":1},{"op":"replace","path":"/x","value":2}]`),
		Pre: document.Preconditions{IfMatch: document.ETagList{Present: true, Any: true}}, Idempotency: &document.IdempotencyKey{Key: "k", Scope: "s", Fingerprint: "f"}}
	retry, rerr, first, err := race(h,
		func() (document.Result, error) { return b.Write(ctx, w) },
		func() (document.Result, error) { return a.Write(ctx, w) })
	if err != nil {
		t.Fatalf("first: %v", err)
	}
	if rerr != nil || !retry.Replayed || retry.Doc.ETag != first.Doc.ETag || string(retry.Doc.Body) != string(first.Doc.Body) {
		t.Fatalf("retry on the other replica: %+v %v; want the first's answer %s", retry, rerr, first.Doc.Body)
	}
	vs, _, err := st.History(ctx, "r", "d", 0, 10, 1<<20)
	if err != nil || len(vs) != 2 {
		t.Fatalf("%d versions (%v), want 2: applied once", len(vs), err)
	}
}
