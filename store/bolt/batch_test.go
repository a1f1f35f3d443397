package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
	"github.com/patchd/patchd/store/storetest"
)

// gate holds the committer before its first shared transaction until want
// writes are queued behind it, so that the tests below know exactly how the
// writes group. Later transactions pass.
type gate struct {
	once    sync.Once
	started chan struct{}
}

func holdFirstCommit(t *testing.T, s *bolt.Store, want int) *gate {
	t.Helper()
	g := &gate{started: make(chan struct{})}
	bolt.SetBeforeCommit(s, func(int) {
		g.once.Do(func() {
			close(g.started)
			deadline := time.Now().Add(10 * time.Second)
			for bolt.Queued(s) < want {
				if time.Now().After(deadline) {
					t.Errorf("only %d writes queued, want %d", bolt.Queued(s), want)
					return
				}
				time.Sleep(100 * time.Microsecond)
			}
		})
	})
	return g
}

// TestBolt_GroupCommitDocuments: 32 concurrent creates of distinct
// documents share commits, and every one of them is there afterwards.
func TestBolt_GroupCommitDocuments(t *testing.T) {
	const n = 32
	s := mustOpenBolt(t, filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	before := bolt.TxID(t, s)
	g := holdFirstCommit(t, s, n-1)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if i > 0 {
				<-g.started // the first write is in the committer
			}
			body := fmt.Appendf(nil, `{"i":%d}`, i)
			doc, err := s.Update(t.Context(), "c", fmt.Sprint("d", i), func(context.Context, *store.Document, store.History) (*store.Change, error) {
				return &store.Change{Body: body, Kind: store.KindPut}, nil
			})
			if err != nil {
				t.Error(err)
				return
			}
			if string(doc.Body) != string(body) || doc.Seq != 1 {
				t.Errorf("doc %d: %s seq %d", i, doc.Body, doc.Seq)
			}
		})
	}
	wg.Wait()
	if got := bolt.TxID(t, s) - before; got != 2 {
		t.Errorf("%d writes took %d commits, want 2 (one held, then the other %d together)", n, got, n-1)
	}
	for i := range n {
		doc, err := s.Get(t.Context(), "c", fmt.Sprint("d", i))
		if err != nil || string(doc.Body) != fmt.Sprintf(`{"i":%d}`, i) {
			t.Fatalf("d%d: %v %v", i, doc, err)
		}
	}
}

// TestBolt_GroupCommitHotDocument: 32 concurrent increments of one
// document are each computed on the one before (pending, not yet synced)
// and reach disk in two commits, in order, none lost.
func TestBolt_GroupCommitHotDocument(t *testing.T) {
	const n = 32
	s := mustOpenBolt(t, filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	storetest.Commit(t, s, "c", "hot", &store.Change{Body: []byte(`{"n":0}`), Kind: store.KindPut})
	before := bolt.TxID(t, s)
	g := holdFirstCommit(t, s, n-1)
	increment := func(_ context.Context, cur *store.Document, _ store.History) (*store.Change, error) {
		v, err := strconv.Atoi(string(cur.Body[len(`{"n":`) : len(cur.Body)-1]))
		if err != nil {
			return nil, err
		}
		return &store.Change{Body: fmt.Appendf(nil, `{"n":%d}`, v+1), Kind: store.KindPut}, nil
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[uint64]bool{}
	)
	for i := range n {
		wg.Go(func() {
			if i > 0 {
				<-g.started
			}
			doc, err := s.Update(t.Context(), "c", "hot", increment)
			if err != nil {
				t.Error(err)
				return
			}
			if want := fmt.Sprintf(`{"n":%d}`, doc.Seq-1); string(doc.Body) != want {
				t.Errorf("seq %d body %s, want %s", doc.Seq, doc.Body, want)
			}
			mu.Lock()
			seen[doc.Seq] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	if got := bolt.TxID(t, s) - before; got != 2 {
		t.Errorf("%d writes took %d commits, want 2", n, got)
	}
	if len(seen) != n {
		t.Errorf("%d distinct versions acknowledged, want %d", len(seen), n)
	}
	doc, err := s.Get(t.Context(), "c", "hot")
	if err != nil || string(doc.Body) != fmt.Sprintf(`{"n":%d}`, n) || doc.Seq != n+1 {
		t.Fatalf("final %+v %v", doc, err)
	}
	vs, _, err := s.History(t.Context(), "c", "hot", 0, 0, 0)
	if err != nil || len(vs) != n+1 {
		t.Fatalf("history: %d versions, %v", len(vs), err)
	}
	for i, v := range vs {
		if v.Seq != uint64(i+1) || v.ETag != store.ETagOf(fmt.Appendf(nil, `{"n":%d}`, i)) {
			t.Fatalf("version %d: seq %d etag %s", i, v.Seq, v.ETag)
		}
	}
}

// TestBolt_GroupCommitFailure: when a write fails, the writes built on it
// fail too, an Update that only looked at it reports the failure, writes to
// other documents in the same batch still commit, and the document goes on
// from its last committed version.
func TestBolt_GroupCommitFailure(t *testing.T) {
	s := mustOpenBolt(t, filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	storetest.Commit(t, s, "c", "hot", &store.Change{Body: []byte(`{"v":1}`), Kind: store.KindPut})
	storetest.Commit(t, s, "c", "other", &store.Change{Body: []byte(`{"v":1}`), Kind: store.KindPut})
	errDisk := errors.New("injected write failure")
	bolt.SetPutFault(s, func(c, id string, seq uint64) error {
		if id == "hot" && seq == 2 {
			return errDisk
		}
		return nil
	})
	g := holdFirstCommit(t, s, 3) // hot v2, hot v3, other v2 behind the gate write

	change := func(body string) store.UpdateFunc {
		return func(context.Context, *store.Document, store.History) (*store.Change, error) {
			return &store.Change{Body: []byte(body), Kind: store.KindPut}, nil
		}
	}
	type result struct {
		doc *store.Document
		err error
	}
	async := func(id string, fn store.UpdateFunc) chan result {
		ch := make(chan result, 1)
		go func() {
			doc, err := s.Update(context.Background(), "c", id, fn)
			ch <- result{doc, err}
		}()
		return ch
	}
	waitQueued := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); bolt.Queued(s) < n; time.Sleep(100 * time.Microsecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d queued, want %d", bolt.Queued(s), n)
			}
		}
	}
	gateW := async("gate", change(`{}`))
	<-g.started
	hot2 := async("hot", change(`{"v":2}`))
	waitQueued(1)
	hot3 := async("hot", func(_ context.Context, cur *store.Document, _ store.History) (*store.Change, error) {
		if string(cur.Body) != `{"v":2}` {
			return nil, fmt.Errorf("built on %s, want the pending v2", cur.Body)
		}
		return &store.Change{Body: []byte(`{"v":3}`), Kind: store.KindPut}, nil
	})
	waitQueued(2)
	other := async("other", change(`{"v":2}`))
	look := async("hot", func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return nil, nil // commits nothing, but saw pending v3
	})

	if r := <-gateW; r.err != nil {
		t.Fatalf("gate: %v", r.err)
	}
	if r := <-hot2; !errors.Is(r.err, errDisk) {
		t.Errorf("hot v2: %v, want the write failure", r.err)
	}
	if r := <-hot3; !errors.Is(r.err, bolt.ErrBaseFailed) {
		t.Errorf("hot v3: %v, want ErrBaseFailed", r.err)
	}
	if r := <-look; !errors.Is(r.err, bolt.ErrBaseFailed) {
		t.Errorf("look: %+v, %v; want ErrBaseFailed", r.doc, r.err)
	}
	if r := <-other; r.err != nil || r.doc.Seq != 2 {
		t.Errorf("other: %+v, %v", r.doc, r.err)
	}
	if doc, err := s.Get(t.Context(), "c", "hot"); err != nil || string(doc.Body) != `{"v":1}` || doc.Seq != 1 {
		t.Fatalf("hot after the failure: %+v %v", doc, err)
	}
	bolt.SetPutFault(s, nil)
	if doc := storetest.Commit(t, s, "c", "hot", &store.Change{Body: []byte(`{"v":4}`), Kind: store.KindPut}); doc.Seq != 2 {
		t.Fatalf("next write: seq %d, want 2", doc.Seq)
	}
}

// TestBolt_NoChangeWaitsForPending: an Update that commits nothing but saw
// a pending version answers only after that version is committed.
func TestBolt_NoChangeWaitsForPending(t *testing.T) {
	s := mustOpenBolt(t, filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	storetest.Commit(t, s, "c", "d", &store.Change{Body: []byte(`{"v":1}`), Kind: store.KindPut})
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	bolt.SetBeforeCommit(s, func(int) {
		once.Do(func() {
			close(entered)
			<-release
		})
	})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	v2 := make(chan error, 1)
	go func() {
		_, err := s.Update(context.Background(), "c", "d", func(context.Context, *store.Document, store.History) (*store.Change, error) {
			return &store.Change{Body: []byte(`{"v":2}`), Kind: store.KindPut}, nil
		})
		v2 <- err
	}()
	<-entered // v2 is in the committer, held
	type answer struct {
		doc       *store.Document
		committed uint64 // seq on disk when the Update returned
	}
	noop := make(chan answer, 1)
	go func() {
		doc, err := s.Update(context.Background(), "c", "d", func(context.Context, *store.Document, store.History) (*store.Change, error) {
			return nil, nil
		})
		if err != nil {
			t.Error(err)
		}
		var seq uint64
		if d, err := s.Get(context.Background(), "c", "d"); err == nil {
			seq = d.Seq
		}
		noop <- answer{doc, seq}
	}()
	// Give a wrong implementation time to answer before v2 is released;
	// a right one waits here in any case.
	select {
	case <-noop:
		t.Fatal("the no-op Update answered while the version it saw was not committed")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	a := <-noop
	if a.doc == nil || a.doc.Seq != 2 || a.committed != 2 {
		t.Fatalf("no-op Update returned %+v with seq %d on disk; want the pending v2, committed", a.doc, a.committed)
	}
	if err := <-v2; err != nil {
		t.Fatal(err)
	}
}
