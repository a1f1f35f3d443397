package document_test

import (
	"context"
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
// until released, as a retry whose read ran just before the first request
// committed and whose goroutine was descheduled until the first released
// its key.
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

// race runs f as a retry whose record read misses, then f as the first
// request to completion, then lets the retry go on; it returns the retry's answer.
func race[T any](h *missThenHold, f func() (T, error)) (first T, ferr error, retry T, rerr error) {
	h.entered, h.release = make(chan struct{}), make(chan struct{})
	h.armed.Store(true)
	done := make(chan struct{})
	go func() { retry, rerr = f(); close(done) }()
	<-h.entered
	first, ferr = f()
	close(h.release)
	<-done
	return
}

// TestRetryAfterFirstCommits: a retry whose look for the record ran just
// before the first request committed, and that takes the key only after the
// first let it go, answers the first's answer, as JSON Patch with a test,
// strict PATCH, batch and revert (it was decided afresh: 422, 412, 409, a
// 200 not marked replayed).
func TestRetryAfterFirstCommits(t *testing.T) {
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
	check := func(name string, first document.Result, ferr error, retry document.Result, rerr error) {
		t.Helper()
		if ferr != nil {
			t.Fatalf("%s: first: %v", name, ferr)
		}
		if rerr != nil || !retry.Replayed {
			t.Errorf("%s: retry answered replayed=%v err=%v; want the first's answer replayed", name, retry.Replayed, rerr)
		}
	}
	if _, err := svc.Write(ctx, document.Write{Kind: document.Put, Collection: "r", ID: "d", Body: []byte(`{"a":[],"x":1}`)}); err != nil {
		t.Fatal(err)
	}
	// 1. PATCH with a test op.
	f, fe, r, re := race(h, write(document.Write{Kind: document.JSONPatch, Collection: "r", ID: "d", Pre: anyTag, Idempotency: key("k1"),
		Body: []byte(`[{"op":"test","path":"/x","value":1},{"op":"replace","path":"/x","value":2}]`)}))
	check("json patch with test", f, fe, r, re)
	// 2. PATCH, Prefer: handling=strict with the current ETag.
	cur, _ := st.Get(ctx, "r", "d")
	tag, _ := document.ParseETagList("If-Match", []string{cur.ETag})
	f, fe, r, re = race(h, write(document.Write{Kind: document.MergePatch, Collection: "r", ID: "d", Idempotency: key("k2"),
		Pre: document.Preconditions{IfMatch: tag, Strict: true}, Body: []byte(`{"y":1}`)}))
	check("strict merge patch", f, fe, r, re)
	// 3. A batch.
	fb, fe, rb, re := race(h, func() ([]document.Result, error) {
		return svc.Batch(ctx, []document.Write{{Kind: document.JSONPatch, Collection: "r", ID: "d", Pre: anyTag, Idempotency: key("k3"),
			Body: []byte(`[{"op":"add","path":"/a/-","value":1}]`)}}, false)
	})
	if fe != nil {
		t.Fatal(fe)
	}
	if re != nil || len(rb) != 1 || !rb[0].Replayed {
		t.Errorf("batch: retry answered %v err=%v; want the first's answer replayed (first %v)", rb, re, fb[0].Replayed)
	}
	// 4. A revert of version 2 (x 1 -> 2).
	f, fe, r, re = race(h, write(document.Write{Kind: document.Revert, Collection: "r", ID: "d", Revert: 2, Pre: anyTag, Idempotency: key("k4")}))
	check("revert", f, fe, r, re)
}

// secondLookHeld holds, once armed, the second read of an idempotency
// record after it has read it (a miss): a retry that has looked twice and
// is about to be decided.
type secondLookHeld struct {
	store.Store
	calls            atomic.Int32 // since armed; 0 when not armed
	entered, release chan struct{}
}

func (h *secondLookHeld) Idempotency(ctx context.Context, key string) (*store.IdempotencyRecord, error) {
	rec, err := h.Store.Idempotency(ctx, key)
	if h.calls.Load() > 0 && h.calls.Add(1) == 3 {
		close(h.entered)
		<-h.release
	}
	return rec, err
}

// TestRetryOnAnotherReplica: a retry on one replica (a second Service over
// the same store) that is decided after the first request committed on
// another, and is refused for what that request did, answers the first's
// answer (it was 422: the test of the patch failed against the first's
// result; nothing was applied twice).
func TestRetryOnAnotherReplica(t *testing.T) {
	_, st := openService(t)
	ctx := context.Background()
	h := &secondLookHeld{Store: st, entered: make(chan struct{}), release: make(chan struct{})}
	a, b := document.New(h, document.DefaultConfig()), document.New(h, document.DefaultConfig())
	if _, err := a.Write(ctx, document.Write{Kind: document.Put, Collection: "r", ID: "d", Body: []byte(`{"x":1}`)}); err != nil {
		t.Fatal(err)
	}
	w := document.Write{Kind: document.JSONPatch, Collection: "r", ID: "d", Body: []byte(`[{"op":"test","path":"/x","value":1},{"op":"replace","path":"/x","value":2}]`),
		Pre: document.Preconditions{IfMatch: document.ETagList{Present: true, Any: true}}, Idempotency: &document.IdempotencyKey{Key: "k", Scope: "s", Fingerprint: "f"}}
	h.calls.Store(1)
	type answer struct {
		res document.Result
		err error
	}
	retry := make(chan answer, 1)
	go func() {
		res, err := b.Write(ctx, w)
		retry <- answer{res, err}
	}()
	<-h.entered
	first, err := a.Write(ctx, w)
	close(h.release)
	if err != nil {
		t.Fatalf("first: %v", err)
	}
	r := <-retry
	if r.err != nil || !r.res.Replayed || r.res.Doc.ETag != first.Doc.ETag || string(r.res.Doc.Body) != string(first.Doc.Body) {
		t.Fatalf("retry on the other replica: %+v %v; want the first's answer %s", r.res, r.err, first.Doc.Body)
	}
	vs, _, err := st.History(ctx, "r", "d", 0, 10, 1<<20)
	if err != nil || len(vs) != 2 {
		t.Fatalf("%d versions (%v), want 2: applied once", len(vs), err)
	}
}
