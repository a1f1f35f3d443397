package bolt_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
	"github.com/patchd/patchd/store/storetest"
)

// TestBolt_ManyAllOrNothing: when one write of an UpdateMany fails on
// disk, none of its writes is committed, and a write of another document
// sharing the transaction still is.
func TestBolt_ManyAllOrNothing(t *testing.T) {
	s := mustOpenBolt(t, filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	storetest.Commit(t, s, "c", "a", &store.Change{Body: []byte(`{"v":1}`), Kind: store.KindPut})
	errDisk := errors.New("injected write failure")
	bolt.SetPutFault(s, func(c, id string, seq uint64) error {
		if id == "b" {
			return errDisk
		}
		return nil
	})
	g := holdFirstCommit(t, s, 3) // the group of two, and "other"
	gateDone := make(chan error, 1)
	go func() {
		_, err := s.Update(context.Background(), "c", "gate", func(context.Context, *store.Document, store.History) (*store.Change, error) {
			return &store.Change{Body: []byte(`{}`), Kind: store.KindPut}, nil
		})
		gateDone <- err
	}()
	<-g.started
	manyDone := make(chan error, 1)
	go func() {
		keys := []store.Key{{Collection: "c", ID: "a"}, {Collection: "c", ID: "b"}}
		_, err := s.UpdateMany(context.Background(), keys, func(context.Context, []store.Locked) (*store.ManyChange, error) {
			return &store.ManyChange{Changes: []store.DocChange{
				{Doc: 0, Change: &store.Change{Body: []byte(`{"v":2}`), Kind: store.KindPut}},
				{Doc: 1, Change: &store.Change{Body: []byte(`{"v":2}`), Kind: store.KindPut}},
			}}, nil
		})
		manyDone <- err
	}()
	waitQueued(t, s, 2)
	other := storetestAsync(s, "other")
	if err := <-gateDone; err != nil {
		t.Fatal(err)
	}
	if err := <-manyDone; !errors.Is(err, errDisk) {
		t.Fatalf("UpdateMany: %v, want the write failure", err)
	}
	if err := <-other; err != nil {
		t.Fatalf("the other write: %v", err)
	}
	if doc, err := s.Get(t.Context(), "c", "a"); err != nil || string(doc.Body) != `{"v":1}` || doc.Seq != 1 {
		t.Fatalf("a after the failed group: %+v %v", doc, err)
	}
	if _, _, err := s.History(t.Context(), "c", "b", 0, 0, 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("b has history after the failed group: %v", err)
	}
	bolt.SetPutFault(s, nil)
	if doc := storetest.Commit(t, s, "c", "a", &store.Change{Body: []byte(`{"v":3}`), Kind: store.KindPut}); doc.Seq != 2 {
		t.Fatalf("next write of a: seq %d, want 2", doc.Seq)
	}
}

// storetestAsync creates a document in the background.
func storetestAsync(s *bolt.Store, id string) chan error {
	ch := make(chan error, 1)
	go func() {
		_, err := s.Update(context.Background(), "c", id, func(context.Context, *store.Document, store.History) (*store.Change, error) {
			return &store.Change{Body: []byte(`{}`), Kind: store.KindPut}, nil
		})
		ch <- err
	}()
	return ch
}

// waitQueued waits until n writes wait for the committer.
func waitQueued(t *testing.T, s *bolt.Store, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); bolt.Queued(s) < n; time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d queued, want %d", bolt.Queued(s), n)
		}
	}
}
