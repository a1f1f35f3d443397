package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
)

func testGetNotFound(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	e.wantNotFound(t, testC, testID)
	e.put(t, testC, "other", body(1))
	e.wantNotFound(t, testC, testID)
	e.wantNotFound(t, "other-collection", "other")
}

func testUpdateCreate(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	in := []byte(`{"a":[1,"x",{"b":null}],"n":12345678901234567890123}`)
	calls := 0
	doc, err := e.s.Update(t.Context(), testC, testID, func(_ context.Context, cur *store.Document, _ store.History) (*store.Change, error) {
		calls++
		if cur != nil {
			return nil, fmt.Errorf("cur = %+v, want nil", cur)
		}
		return &store.Change{Body: in, Kind: store.KindPut}, nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if calls == 0 {
		t.Fatal("Update did not call its UpdateFunc")
	}
	want := &store.Document{
		Collection: testC,
		ID:         testID,
		Body:       []byte(`{"a":[1,"x",{"b":null}],"n":12345678901234567890123}`),
		ETag:       store.ETagOf(in),
		Seq:        1,
		UpdatedAt:  e.clock.Now(),
	}
	wantDoc(t, "Update", doc, want)

	// The caller owns both the body it passed in and the one it got back.
	in[1] = 'X'
	doc.Body[1] = 'Y'
	got := e.get(t, testC, testID)
	wantDoc(t, "Get", got, want)
	got.Body[1] = 'Z'
	wantDoc(t, "Get again", e.get(t, testC, testID), want)

	wantVersions(t, "History", e.history(t, testC, testID), []store.Version{
		{Seq: 1, ETag: want.ETag, At: want.UpdatedAt, Kind: store.KindPut},
	})
}

func testUpdateReplace(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	first := e.put(t, testC, testID, body(1))
	e.clock.Advance(time.Second)

	var seen *store.Document
	doc, err := e.s.Update(t.Context(), testC, testID, func(_ context.Context, cur *store.Document, _ store.History) (*store.Change, error) {
		seen = cur
		return &store.Change{Body: []byte(body(2)), Kind: store.KindPut}, nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	wantDoc(t, "UpdateFunc's cur", seen, first)
	want := &store.Document{
		Collection: testC,
		ID:         testID,
		Body:       []byte(body(2)),
		ETag:       store.ETagOf([]byte(body(2))),
		Seq:        2,
		UpdatedAt:  e.clock.Now(),
	}
	wantDoc(t, "Update", doc, want)
	wantDoc(t, "Get", e.get(t, testC, testID), want)
	wantSeqs(t, "History", e.history(t, testC, testID), 1, 2)
}

func testUpdateSameBody(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	first := e.put(t, testC, testID, body(1))
	second := e.put(t, testC, testID, body(1))
	if got, want := second.Seq, uint64(2); got != want {
		t.Errorf("Seq = %d, want %d", got, want)
	}
	if second.ETag != first.ETag {
		t.Errorf("ETag = %s, want %s", second.ETag, first.ETag)
	}
	vs := e.history(t, testC, testID)
	wantSeqs(t, "History", vs, 1, 2)
	if vs[0].ETag != first.ETag || vs[1].ETag != first.ETag {
		t.Errorf("History ETags %s, %s; want %s twice", vs[0].ETag, vs[1].ETag, first.ETag)
	}
}

func testUpdateNilChange(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	noChange := func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return nil, nil
	}

	// A missing document stays missing, without history.
	doc, err := e.s.Update(t.Context(), testC, testID, noChange)
	if err != nil || doc != nil {
		t.Fatalf("Update(missing) = %+v, %v; want nil, nil", doc, err)
	}
	e.wantNotFound(t, testC, testID)
	if _, _, err := e.s.History(t.Context(), testC, testID, 0, 10, 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("History(missing) error = %v, want ErrNotFound", err)
	}

	// An existing one is returned as it is.
	first := e.put(t, testC, testID, body(1))
	e.clock.Advance(time.Second)
	doc, err = e.s.Update(t.Context(), testC, testID, noChange)
	if err != nil {
		t.Fatalf("Update(existing): %v", err)
	}
	wantDoc(t, "Update(existing)", doc, first)
	wantDoc(t, "Get", e.get(t, testC, testID), first)
	wantSeqs(t, "History", e.history(t, testC, testID), 1)
}

func testUpdateFuncError(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	errBoom := errors.New("boom")
	fail := func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return &store.Change{Body: []byte(body(9)), Kind: store.KindPut}, errBoom
	}
	for _, tc := range []struct {
		name     string
		existing bool
	}{
		{name: "missing", existing: false},
		{name: "existing", existing: true},
	} {
		id := "doc-" + tc.name
		var first *store.Document
		if tc.existing {
			first = e.put(t, testC, id, body(1))
		}
		doc, err := e.s.Update(t.Context(), testC, id, fail)
		if err != errBoom { // unchanged: not even wrapped
			t.Fatalf("Update(%s) error = %v, want the UpdateFunc's error unchanged", tc.name, err)
		}
		if doc != nil {
			t.Errorf("Update(%s) document = %+v, want nil", tc.name, doc)
		}
		if !tc.existing {
			e.wantNotFound(t, testC, id)
			if _, _, err := e.s.History(t.Context(), testC, id, 0, 10, 0); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("History(%s) error = %v, want ErrNotFound", tc.name, err)
			}
			continue
		}
		wantDoc(t, "Get("+tc.name+")", e.get(t, testC, id), first)
		wantSeqs(t, "History("+tc.name+")", e.history(t, testC, id), 1)
	}
}

func testUpdateDelete(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	first := e.put(t, testC, testID, body(1))
	e.clock.Advance(time.Second)
	ops := []byte(`[{"op":"remove","path":""}]`)
	if doc := e.write(t, testC, testID, &store.Change{Kind: store.KindDelete, Ops: ops}); doc != nil {
		t.Fatalf("Update(delete) = %+v, want nil", doc)
	}
	e.wantNotFound(t, testC, testID)
	wantVersions(t, "History", e.history(t, testC, testID), []store.Version{
		{Seq: 1, ETag: first.ETag, At: first.UpdatedAt, Kind: store.KindPut},
		{Seq: 2, ETag: "", At: e.clock.Now(), Kind: store.KindDelete, Ops: ops},
	})
}

func testUpdateDeleteMissing(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	del := func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return &store.Change{Kind: store.KindDelete}, nil
	}
	if doc, err := e.s.Update(t.Context(), testC, testID, del); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Update(delete missing) = %+v, %v; want ErrNotFound", doc, err)
	}
	if _, _, err := e.s.History(t.Context(), testC, testID, 0, 10, 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("History error = %v, want ErrNotFound", err)
	}

	// Deleting twice: the second delete finds nothing and records nothing.
	e.put(t, testC, testID, body(1))
	e.del(t, testC, testID)
	if doc, err := e.s.Update(t.Context(), testC, testID, del); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Update(delete deleted) = %+v, %v; want ErrNotFound", doc, err)
	}
	wantSeqs(t, "History", e.history(t, testC, testID), 1, 2)
}

func testUpdateRecreate(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	first := e.put(t, testC, testID, body(1))
	e.del(t, testC, testID)
	doc, err := e.s.Update(t.Context(), testC, testID, func(_ context.Context, cur *store.Document, _ store.History) (*store.Change, error) {
		if cur != nil {
			return nil, fmt.Errorf("cur = %+v after delete, want nil", cur)
		}
		return &store.Change{Body: []byte(body(3)), Kind: store.KindPut}, nil
	})
	if err != nil {
		t.Fatalf("Update(recreate): %v", err)
	}
	if got, want := doc.Seq, uint64(3); got != want {
		t.Errorf("Seq = %d, want %d", got, want)
	}
	wantDoc(t, "Get", e.get(t, testC, testID), doc)
	vs := e.history(t, testC, testID)
	wantSeqs(t, "History", vs, 1, 2, 3)
	for i, want := range []string{first.ETag, "", doc.ETag} {
		if vs[i].ETag != want {
			t.Errorf("History[%d].ETag = %q, want %q", i, vs[i].ETag, want)
		}
	}
}

func testUpdateCanceledContext(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	first := e.put(t, testC, testID, body(1))
	change := func(n int) *store.Change {
		return &store.Change{Body: []byte(body(n)), Kind: store.KindPut}
	}

	// Canceled before the call.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	doc, err := e.s.Update(ctx, testC, testID, func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return change(2), nil
	})
	if !errors.Is(err, context.Canceled) || doc != nil {
		t.Fatalf("Update(canceled) = %+v, %v; want context.Canceled", doc, err)
	}

	// Canceled while the UpdateFunc runs, on an existing and a missing document.
	for _, id := range []string{testID, "doc-new"} {
		ctx, cancel := context.WithCancel(t.Context())
		doc, err := e.s.Update(ctx, testC, id, func(context.Context, *store.Document, store.History) (*store.Change, error) {
			cancel()
			return change(3), nil
		})
		cancel()
		if !errors.Is(err, context.Canceled) || doc != nil {
			t.Fatalf("Update(%s, canceled in UpdateFunc) = %+v, %v; want context.Canceled", id, doc, err)
		}
	}

	wantDoc(t, "Get", e.get(t, testC, testID), first)
	wantSeqs(t, "History", e.history(t, testC, testID), 1)
	e.wantNotFound(t, testC, "doc-new")
	if _, _, err := e.s.History(t.Context(), testC, "doc-new", 0, 10, 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("History(doc-new) error = %v, want ErrNotFound", err)
	}
}

func testUpdateContextDoneWhileWaiting(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	e.put(t, testC, testID, body(1))

	// A first Update holds the document until released.
	var entered sync.Once
	in := make(chan struct{})
	releaseCh := make(chan struct{})
	release := sync.OnceFunc(func() { close(releaseCh) })
	defer release()
	done := make(chan error, 1)
	go func() {
		_, err := e.s.Update(t.Context(), testC, testID, func(context.Context, *store.Document, store.History) (*store.Change, error) {
			entered.Do(func() { close(in) })
			<-releaseCh
			return &store.Change{Body: []byte(body(2)), Kind: store.KindPut}, nil
		})
		done <- err
	}()
	<-in

	// A second one gives up waiting when its context is done.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := e.s.Update(ctx, testC, testID, func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return &store.Change{Body: []byte(body(3)), Kind: store.KindPut}, nil
	})
	release()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting Update error = %v, want context.DeadlineExceeded", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("holding Update: %v", err)
	}
	doc := e.get(t, testC, testID)
	if got, want := string(doc.Body), body(2); got != want {
		t.Errorf("Body = %s, want %s", got, want)
	}
	wantSeqs(t, "History", e.history(t, testC, testID), 1, 2)
}

// testUpdateLockWaitTimeout: a write that waits for a document's lock
// longer than the store's Timeout gives up with ErrUnavailable, having
// committed nothing.
func testUpdateLockWaitTimeout(t *testing.T, open opener) {
	e := newEnvWith(t, open, Options{Timeout: 300 * time.Millisecond})
	e.put(t, testC, testID, body(1))

	// A first Update holds the document until the second has given up.
	in := make(chan struct{})
	releaseCh := make(chan struct{})
	release := sync.OnceFunc(func() { close(releaseCh) })
	defer release()
	done := make(chan error, 1)
	go func() {
		var entered sync.Once
		_, err := e.s.Update(t.Context(), testC, testID, func(context.Context, *store.Document, store.History) (*store.Change, error) {
			entered.Do(func() { close(in) })
			<-releaseCh
			return &store.Change{Body: []byte(body(2)), Kind: store.KindPut}, nil
		})
		done <- err
	}()
	<-in
	called := false
	// The context only guards the test: the store's Timeout ends the wait.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := e.s.Update(ctx, testC, testID, func(context.Context, *store.Document, store.History) (*store.Change, error) {
		called = true
		return &store.Change{Body: []byte(body(3)), Kind: store.KindPut}, nil
	})
	release()
	if !errors.Is(err, store.ErrUnavailable) || called {
		t.Fatalf("waiting Update: %v (func called: %v), want ErrUnavailable before the func", err, called)
	}
	// The holder outlived the deadline too: a backend may refuse it
	// (its transaction's deadline passed) or commit it.
	first := <-done
	if first != nil && !errors.Is(first, store.ErrUnavailable) {
		t.Fatalf("holding Update: %v", first)
	}
	want := body(2)
	if first != nil {
		want = body(1)
	}
	if got := string(e.get(t, testC, testID).Body); got != want {
		t.Fatalf("Body = %s, want %s", got, want)
	}
}

func testUpdateHistoryInFunc(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	v1 := e.put(t, testC, testID, body(1))
	e.put(t, testC, testID, body(2))
	e.put(t, testC, testID, body(3))

	_, err := e.s.Update(t.Context(), testC, testID, func(ctx context.Context, cur *store.Document, h store.History) (*store.Change, error) {
		base, later, err := h.Since(ctx, []string{cur.ETag})
		if err != nil {
			return nil, fmt.Errorf("Since(current): %w", err)
		}
		if base.Seq != cur.Seq || base.ETag != cur.ETag || len(later) != 0 {
			t.Errorf("Since(current) = seq %d %s + %v; want seq %d %s + []", base.Seq, base.ETag, seqs(later), cur.Seq, cur.ETag)
		}
		base, later, err = h.Since(ctx, []string{v1.ETag})
		if err != nil {
			return nil, fmt.Errorf("Since(first): %w", err)
		}
		if base.Seq != 1 || len(later) != 2 || later[1].Seq != cur.Seq || later[1].ETag != cur.ETag {
			t.Errorf("Since(first) = seq %d + %v; want seq 1 + [2 %d]", base.Seq, seqs(later), cur.Seq)
		}
		return nil, nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func testUpdateCounter(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{Versions: 100000, Age: 24 * time.Hour})
	e.put(t, testC, testID, `{"n":0}`)

	const workers, rounds = 16, 50
	increment := func(_ context.Context, cur *store.Document, _ store.History) (*store.Change, error) {
		if cur == nil {
			return nil, errors.New("counter document missing")
		}
		var v struct {
			N int `json:"n"`
		}
		if err := json.Unmarshal(cur.Body, &v); err != nil {
			return nil, err
		}
		return &store.Change{
			Body: fmt.Appendf(nil, `{"n":%d}`, v.N+1),
			Kind: store.KindJSONPatch,
			Ops:  fmt.Appendf(nil, `[{"op":"replace","path":"/n","value":%d}]`, v.N+1),
		}, nil
	}
	var (
		wg     sync.WaitGroup
		failed atomic.Int32
	)
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				if _, err := e.s.Update(t.Context(), testC, testID, increment); err != nil {
					t.Errorf("worker %d, round %d: %v", w, r, err)
					failed.Add(1)
					return
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.FailNow()
	}

	doc := e.get(t, testC, testID)
	var v struct {
		N int `json:"n"`
	}
	if err := json.Unmarshal(doc.Body, &v); err != nil {
		t.Fatalf("final body %s: %v", doc.Body, err)
	}
	if got, want := v.N, workers*rounds; got != want {
		t.Errorf("n = %d, want %d (lost updates)", got, want)
	}
	if got, want := doc.Seq, uint64(workers*rounds+1); got != want {
		t.Errorf("Seq = %d, want %d", got, want)
	}
	vs := e.history(t, testC, testID)
	if got, want := len(vs), workers*rounds+1; got != want {
		t.Fatalf("History has %d versions, want %d", got, want)
	}
	for i, ver := range vs {
		if ver.Seq != uint64(i+1) {
			t.Fatalf("History[%d].Seq = %d, want %d", i, ver.Seq, i+1)
		}
		if want := fmt.Sprintf(`{"n":%d}`, i); ver.ETag != store.ETagOf([]byte(want)) {
			t.Fatalf("History[%d].ETag = %s, want ETag of %s", i, ver.ETag, want)
		}
	}
}

func testUpdateConcurrentDocuments(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	// Each UpdateFunc waits for the other document's to start: this passes
	// only if updates of different documents run concurrently.
	aIn, bIn := make(chan struct{}), make(chan struct{})
	var aOnce, bOnce sync.Once
	update := func(id string, mine, other chan struct{}, once *sync.Once) error {
		_, err := e.s.Update(t.Context(), testC, id, func(context.Context, *store.Document, store.History) (*store.Change, error) {
			once.Do(func() { close(mine) })
			select {
			case <-other:
				return &store.Change{Body: []byte(body(1)), Kind: store.KindPut}, nil
			case <-time.After(10 * time.Second):
				return nil, errors.New("the other document's UpdateFunc never ran concurrently")
			}
		})
		return err
	}
	var (
		wg         sync.WaitGroup
		errA, errB error
	)
	wg.Go(func() { errA = update("a", aIn, bIn, &aOnce) })
	wg.Go(func() { errB = update("b", bIn, aIn, &bOnce) })
	wg.Wait()
	if errA != nil || errB != nil {
		t.Fatalf("Update(a) = %v, Update(b) = %v", errA, errB)
	}
	e.get(t, testC, "a")
	e.get(t, testC, "b")
}
