package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/postgres"
	"github.com/patchd/patchd/store/storetest"
)

// gate holds a replica's write open at one of its hooks until released.
type gate struct {
	entered chan struct{} // closed when the write reaches the hook
	release chan struct{} // closed to let it go on
	once    sync.Once
	opened  sync.Once
}

// newGate returns a gate that a test's cleanup opens, so that a failing
// test does not leave a write (and the store's Close) waiting.
func newGate(t *testing.T) *gate {
	g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

// open lets the held write go on.
func (g *gate) open() { g.opened.Do(func() { close(g.release) }) }

// hold blocks the first write that reaches the hook.
func (g *gate) hold(ctx context.Context) error {
	first := false
	g.once.Do(func() { first = true; close(g.entered) })
	if !first {
		return nil
	}
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitFor waits for ch with a deadline.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// put writes {"v":n} to a document of s in the background; the returned
// channel gets the error once the write returns.
func putAsync(s *postgres.Store, c, id string, n int) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := s.Update(context.Background(), c, id, func(context.Context, *store.Document, store.History) (*store.Change, error) {
			return &store.Change{Body: fmt.Appendf(nil, `{"v":%d}`, n), Kind: store.KindPut}, nil
		})
		done <- err
	}()
	return done
}

func wantNil(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: timed out", what)
	}
}

// follower reads a collection's change log as a stream would, remembering
// what it got.
type follower struct {
	s   *postgres.Store
	c   string
	cur store.Cursor
	got []string // "id/seq"
}

// read reads what can be read now.
func (f *follower) read(t *testing.T) []string {
	t.Helper()
	var out []string
	for {
		log, err := f.s.Changes(context.Background(), f.c, f.cur, 100)
		if err != nil {
			t.Fatalf("Changes: %v", err)
		}
		for _, ch := range log.Changes {
			out = append(out, fmt.Sprintf("%s/%d", ch.ID, ch.Version.Seq))
		}
		f.cur = log.Next
		if !log.More {
			f.got = append(f.got, out...)
			return out
		}
	}
}

// drain reads until n changes in all have been read.
func (f *follower) drain(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(f.got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("read %v, want %d changes", f.got, n)
		}
		f.read(t)
		time.Sleep(time.Millisecond)
	}
	if len(f.got) != n {
		t.Fatalf("read %v, want %d changes", f.got, n)
	}
}

// TestChangesOutOfOrderCommits: transaction ids are assigned before
// commit, so a version written later can become visible while earlier ones
// are still being committed. Replicas hold their writes open before COMMIT
// and let them go in different orders, while a follower on another replica
// reads the log: it never reads past a write still open, and in the end has
// every change exactly once, in log order, whichever replica it asks.
func TestChangesOutOfOrderCommits(t *testing.T) {
	dsn := pg.Database(t)
	reader := open(t, dsn, postgres.Options{})
	free := open(t, dsn, postgres.Options{})
	for _, order := range [][]int{{0, 1}, {1, 0}} {
		t.Run(fmt.Sprintf("release%v", order), func(t *testing.T) {
			c := fmt.Sprintf("c%d%d", order[0], order[1])
			held := []*postgres.Store{open(t, dsn, postgres.Options{}), open(t, dsn, postgres.Options{})}
			gates := []*gate{newGate(t), newGate(t)}
			for i, s := range held {
				g := gates[i]
				s.SetBeforeCommit(func(ctx context.Context, _ pgx.Tx) error { return g.hold(ctx) })
			}
			f := &follower{s: reader, c: c}
			log, err := reader.Changes(context.Background(), c, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.cur = log.Next
			start := f.cur

			// h0 takes its transaction id first, h1 second, f2 third; f2
			// commits at once.
			done := make([]<-chan error, 2)
			for i := range held {
				done[i] = putAsync(held[i], c, fmt.Sprintf("h%d", i), i)
				waitFor(t, gates[i].entered, fmt.Sprintf("write h%d to reach COMMIT", i))
			}
			storetest.Commit(t, free, c, "f2", &store.Change{Body: []byte(`{"v":2}`), Kind: store.KindPut})

			// The hazard is real: f2 is visible, h0 and h1 are not.
			var visible []string
			rows, err := reader.Pool().Query(context.Background(), `SELECT id FROM document_versions WHERE collection = $1 ORDER BY id`, c)
			if err != nil {
				t.Fatal(err)
			}
			if visible, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(visible, []string{"f2"}) {
				t.Fatalf("visible versions %v, want only f2", visible)
			}
			if got := f.read(t); len(got) != 0 {
				t.Fatalf("read %v while h0 and h1 are still committing", got)
			}

			for k, i := range order {
				gates[i].open()
				wantNil(t, done[i], fmt.Sprintf("write h%d", i))
				got := f.read(t)
				if slices.Contains(got, "f2/1") && k == 0 {
					t.Fatalf("read f2 while h%d is still committing: %v", order[1], got)
				}
				if order[0] == 1 && k == 0 && len(got) != 0 {
					t.Fatalf("read %v while h0, which came first, is still committing", got)
				}
			}
			f.drain(t, 3)
			if want := []string{"h0/1", "h1/1", "f2/1"}; !slices.Equal(f.got, want) {
				t.Fatalf("read %v, want %v", f.got, want)
			}
			// Any replica reads the same log from the same cursor.
			for i, s := range append(held, free) {
				other := &follower{s: s, c: c, cur: start}
				other.drain(t, 3)
				if !slices.Equal(other.got, f.got) {
					t.Fatalf("replica %d read %v, want %v", i, other.got, f.got)
				}
			}
		})
	}
}

// TestChangesKeepDocumentOrder: a write that took its transaction id before
// another write of the same document, but locked the document after it,
// still comes after it in the log: a document's versions stay in seq order
// and a follower that has read the first never misses the second.
func TestChangesKeepDocumentOrder(t *testing.T) {
	dsn := pg.Database(t)
	early := open(t, dsn, postgres.Options{})
	late := open(t, dsn, postgres.Options{})
	g := newGate(t)
	early.SetBeforeLock(func(ctx context.Context, tx pgx.Tx, _, id string) error {
		if id != "k" {
			return nil
		}
		if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil { // takes its id now
			return err
		}
		return g.hold(ctx)
	})
	const c = "order"
	storetest.Commit(t, late, c, "k", &store.Change{Body: []byte(`{"v":0}`), Kind: store.KindPut})
	start, err := late.Changes(context.Background(), c, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := putAsync(early, c, "k", 2) // older transaction id ...
	waitFor(t, g.entered, "the early write to take its transaction id")
	storetest.Commit(t, late, c, "k", &store.Change{Body: []byte(`{"v":1}`), Kind: store.KindPut}) // ... locks after this one: seq 2
	g.open()
	wantNil(t, done, "early write") // seq 3
	f := &follower{s: late, c: c, cur: start.Next}
	f.drain(t, 2)
	if want := []string{"k/2", "k/3"}; !slices.Equal(f.got, want) {
		t.Fatalf("read %v, want %v", f.got, want)
	}
}

// TestCursorOfAnotherDatabase: a cursor names its database. One of another
// database (a restore, or an import into a new database at the same URL)
// is gone, not read as a position of this log, where its transaction id
// could skip every change or repeat them; a cursor made before cursors
// named their database still resumes.
func TestCursorOfAnotherDatabase(t *testing.T) {
	ctx := context.Background()
	a := open(t, pg.Database(t), postgres.Options{})
	storetest.Commit(t, a, "c", "a1", &store.Change{Body: []byte(`{}`), Kind: store.KindPut})
	log, err := a.Changes(ctx, "c", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	cur := log.Next
	b := open(t, pg.Database(t), postgres.Options{})
	storetest.Commit(t, b, "c", "b1", &store.Change{Body: []byte(`{}`), Kind: store.KindPut})
	if _, err := b.Changes(ctx, "c", cur, 0); !errors.Is(err, store.ErrCursorGone) {
		t.Fatalf("a cursor of another database: %v, want ErrCursorGone", err)
	}
	if _, _, err := b.ListDocuments(ctx, "c", "", 10, cur); !errors.Is(err, store.ErrCursorGone) {
		t.Fatalf("a listing since a cursor of another database: %v, want ErrCursorGone", err)
	}
	// Its own database reads it, and one that names no database (the
	// format before: head, pos, seq, id) is read as before.
	storetest.Commit(t, a, "c", "a2", &store.Change{Body: []byte(`{}`), Kind: store.KindPut})
	got, err := a.Changes(ctx, "c", cur, 0)
	if err != nil || len(got.Changes) != 1 || got.Changes[0].ID != "a2" {
		t.Fatalf("its own database after it: %+v %v", got, err)
	}
	untagged := append(store.Cursor(nil), cur[:len(cur)-5]...)
	if got, err := a.Changes(ctx, "c", untagged, 0); err != nil || len(got.Changes) != 1 {
		t.Fatalf("an untagged cursor: %+v %v", got, err)
	}
}
