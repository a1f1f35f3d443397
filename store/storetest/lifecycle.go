package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
)

func testRetentionVersions(t *testing.T, open opener) {
	// Age 1ns: only the count protects versions.
	e := newEnv(t, open, store.Retention{Versions: 3, Age: time.Nanosecond})
	etags := make([]string, 11)
	for i := 1; i <= 10; i++ {
		e.clock.Advance(time.Second)
		etags[i] = e.put(t, testC, testID, body(i)).ETag
	}
	wantSeqs(t, "History", e.history(t, testC, testID), 8, 9, 10)
	for _, i := range []int{1, 7} {
		if _, _, err := e.since(t, testC, testID, etags[i]); !errors.Is(err, store.ErrBaseUnknown) {
			t.Errorf("Since(pruned version %d): error %v, want ErrBaseUnknown", i, err)
		}
	}
	base, later, err := e.since(t, testC, testID, etags[8])
	if err != nil {
		t.Fatalf("Since(version 8): %v", err)
	}
	if base.Seq != 8 {
		t.Errorf("Since(version 8) base seq %d", base.Seq)
	}
	wantSeqs(t, "Since(version 8) later", later, 9, 10)
	if got, want := e.get(t, testC, testID).Seq, uint64(10); got != want {
		t.Errorf("Seq = %d, want %d", got, want)
	}
}

func testRetentionAge(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{Versions: 3, Age: time.Hour})
	etags := make([]string, 16)
	for i := 1; i <= 10; i++ {
		etags[i] = e.put(t, testC, testID, body(i)).ETag
	}
	// Younger than Age: all kept, beyond the count.
	wantSeqs(t, "History (all young)", e.history(t, testC, testID), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	if base, _, err := e.since(t, testC, testID, etags[1]); err != nil || base.Seq != 1 {
		t.Fatalf("Since(version 1) = seq %d, %v; want seq 1", base.Seq, err)
	}

	// Two hours on, one write prunes back to the count.
	e.clock.Advance(2 * time.Hour)
	etags[11] = e.put(t, testC, testID, body(11)).ETag
	wantSeqs(t, "History (after 2h)", e.history(t, testC, testID), 9, 10, 11)
	if _, _, err := e.since(t, testC, testID, etags[8]); !errors.Is(err, store.ErrBaseUnknown) {
		t.Errorf("Since(pruned version 8): error %v, want ErrBaseUnknown", err)
	}

	// Half an hour later, versions 9 and 10 are old but 11 is not: pruning
	// stops at 11 however many versions pile up behind it.
	e.clock.Advance(30 * time.Minute)
	for i := 12; i <= 15; i++ {
		e.put(t, testC, testID, body(i))
	}
	wantSeqs(t, "History (mixed ages)", e.history(t, testC, testID), 11, 12, 13, 14, 15)
}

func testRetentionSeqContinues(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{Versions: 2, Age: time.Nanosecond})
	for i := 1; i <= 4; i++ {
		e.clock.Advance(time.Second)
		e.put(t, testC, testID, body(i))
	}
	e.clock.Advance(time.Second)
	e.del(t, testC, testID)
	wantSeqs(t, "History after delete", e.history(t, testC, testID), 4, 5)
	e.clock.Advance(time.Second)
	doc := e.put(t, testC, testID, body(6))
	if got, want := doc.Seq, uint64(6); got != want {
		t.Errorf("Seq after recreate = %d, want %d", got, want)
	}
	wantSeqs(t, "History after recreate", e.history(t, testC, testID), 5, 6)
}

func testCloseErrClosed(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	e.put(t, testC, testID, body(1))
	if err := e.s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := t.Context()
	if _, err := e.s.Get(ctx, testC, testID); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Get after Close: error %v, want ErrClosed", err)
	}
	called := false
	_, err := e.s.Update(ctx, testC, testID, func(context.Context, *store.Document, store.History) (*store.Change, error) {
		called = true
		return &store.Change{Body: []byte(body(2)), Kind: store.KindPut}, nil
	})
	if !errors.Is(err, store.ErrClosed) {
		t.Errorf("Update after Close: error %v, want ErrClosed", err)
	}
	if called {
		t.Error("Update after Close called its UpdateFunc")
	}
	if _, _, err := e.s.List(ctx, testC, "", 10); !errors.Is(err, store.ErrClosed) {
		t.Errorf("List after Close: error %v, want ErrClosed", err)
	}
	if _, _, err := e.s.History(ctx, testC, testID, 0, 10, 0); !errors.Is(err, store.ErrClosed) {
		t.Errorf("History after Close: error %v, want ErrClosed", err)
	}
	if err := e.s.Close(); !errors.Is(err, store.ErrClosed) {
		t.Errorf("second Close: error %v, want ErrClosed", err)
	}
}

func testCloseWaitsForUpdate(t *testing.T, open opener) {
	e := newEnv(t, open, store.Retention{})
	e.put(t, testC, testID, body(1))

	var entered sync.Once
	in := make(chan struct{})
	releaseCh := make(chan struct{})
	release := sync.OnceFunc(func() { close(releaseCh) })
	defer release()
	type result struct {
		doc *store.Document
		err error
	}
	updated := make(chan result, 1)
	go func() {
		doc, err := e.s.Update(t.Context(), testC, testID, func(context.Context, *store.Document, store.History) (*store.Change, error) {
			entered.Do(func() { close(in) })
			<-releaseCh
			return &store.Change{Body: []byte(body(2)), Kind: store.KindPut}, nil
		})
		updated <- result{doc, err}
	}()
	<-in

	closed := make(chan error, 1)
	go func() { closed <- e.s.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while an Update was in progress", err)
	case <-time.After(100 * time.Millisecond):
	}
	release()

	select {
	case r := <-updated:
		if r.err != nil {
			t.Fatalf("Update in progress at Close: %v", r.err)
		}
		if r.doc == nil || r.doc.Seq != 2 {
			t.Errorf("Update in progress at Close = %+v, want seq 2", r.doc)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Update in progress at Close never returned")
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close never returned")
	}
	if _, err := e.s.Get(t.Context(), testC, testID); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Get after Close: error %v, want ErrClosed", err)
	}
}
