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
