package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/postgres"
	"github.com/patchd/patchd/store/storetest"
)

// TestManyNoDeadlock: UpdateManys over the same documents given in
// opposite orders, from two replicas, with a pause after each row lock
// that gives a cycle every chance to form: none deadlocks (PostgreSQL
// would detect it, abort one transaction with 40P01 and the store would
// retry), because every one locks in the same order.
func TestManyNoDeadlock(t *testing.T) {
	dsn := pg.Database(t)
	var deadlocks, retries atomic.Int32
	onRetry := func(err error) {
		retries.Add(1)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "40P01" {
			deadlocks.Add(1)
		}
	}
	pause := func(store.Key) { time.Sleep(2 * time.Millisecond) }
	stores := []*postgres.Store{open(t, dsn, postgres.Options{MaxConns: 4}), open(t, dsn, postgres.Options{MaxConns: 4})}
	for _, s := range stores {
		s.SetOnRetry(onRetry)
		s.SetAfterLock(pause)
	}
	names := []string{"a", "b", "c", "d"}
	const workers, rounds = 4, 15
	var calls atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			keys := make([]store.Key, len(names))
			for i := range names {
				id := names[i]
				if w%2 == 1 {
					id = names[len(names)-1-i]
				}
				keys[i] = store.Key{Collection: "c", ID: id}
			}
			for r := range rounds {
				_, err := stores[w%2].UpdateMany(ctx, keys, func(_ context.Context, docs []store.Locked) (*store.ManyChange, error) {
					calls.Add(1)
					mc := &store.ManyChange{}
					for i := range docs {
						mc.Changes = append(mc.Changes, store.DocChange{Doc: i,
							Change: &store.Change{Body: fmt.Appendf(nil, `{"w":%d,"r":%d}`, w, r), Kind: store.KindPut}})
					}
					return mc, nil
				})
				if err != nil {
					t.Errorf("worker %d round %d: %v", w, r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := deadlocks.Load(); n > 0 {
		t.Fatalf("%d deadlocks (%d retries)", n, retries.Load())
	}
	for _, id := range names {
		doc, err := stores[0].Get(ctx, "c", id)
		if err != nil || doc.Seq != workers*rounds {
			t.Fatalf("%s: %+v %v; want seq %d", id, doc, err, workers*rounds)
		}
	}
	t.Logf("%d batches, %d ManyFunc calls, %d retries", workers*rounds, calls.Load(), retries.Load())
}

// TestManyLostAcknowledgmentAppliesOnce: an UpdateMany whose COMMIT
// answer was lost is found by its token and not applied again.
func TestManyLostAcknowledgmentAppliesOnce(t *testing.T) {
	s := open(t, pg.Database(t), postgres.Options{})
	storetest.Commit(t, s, "c", "b", &store.Change{Body: []byte(`{"n":0}`), Kind: store.KindPut})
	var lost atomic.Int32
	s.SetAfterCommit(func() error {
		if lost.Add(1) == 1 {
			return errors.New("injected: connection reset while reading the COMMIT answer")
		}
		return nil
	})
	var calls atomic.Int32
	keys := []store.Key{{Collection: "c", ID: "b"}, {Collection: "c", ID: "a"}}
	docs, err := s.UpdateMany(context.Background(), keys, func(_ context.Context, locked []store.Locked) (*store.ManyChange, error) {
		calls.Add(1)
		return &store.ManyChange{Changes: []store.DocChange{
			{Doc: 1, Change: &store.Change{Body: []byte(`{"a":1}`), Kind: store.KindPut}},
			{Doc: 0, Change: &store.Change{Body: []byte(`{"n":1}`), Kind: store.KindPut}},
		}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 || len(docs) != 2 || docs[0].Seq != 1 || docs[1].Seq != 2 {
		t.Fatalf("%d calls, docs %+v", calls.Load(), docs)
	}
	for _, id := range []string{"a", "b"} {
		vs, _, err := s.History(context.Background(), "c", id, 0, 0, 0)
		if err != nil || int(vs[len(vs)-1].Seq) != len(vs) || (id == "a") != (len(vs) == 1) {
			t.Fatalf("History(%s): %d versions, %v", id, len(vs), err)
		}
	}
}
