package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/postgres"
	"github.com/patchd/patchd/store/postgres/pgtest"
	"github.com/patchd/patchd/store/storetest"
)

// pg is the PostgreSQL server shared by this package's tests.
var pg pgtest.Env

func TestMain(m *testing.M) { os.Exit(pg.Run(m)) }

// open opens a Store on dsn, closed at cleanup (which accepts a store
// closed already).
func open(tb testing.TB, dsn string, opts postgres.Options) *postgres.Store {
	tb.Helper()
	s, err := postgres.Open(context.Background(), dsn, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	pg.Cluster(t)
	storetest.RunConformance(t, func(t *testing.T, opts storetest.Options) store.Store {
		return open(t, pg.Database(t), postgres.Options{Options: store.Options{Retention: opts.Retention, Now: opts.Now,
			Timeout: opts.Timeout, IdempotencyPerScope: opts.IdempotencyPerScope, MaxHistoryRead: opts.MaxHistoryRead}})
	})
}

// counter is an UpdateFunc that increments {"n":N}, counting its calls.
func counter(calls *atomic.Int32) store.UpdateFunc {
	return func(_ context.Context, cur *store.Document, _ store.History) (*store.Change, error) {
		calls.Add(1)
		n := 0
		if cur != nil {
			var v struct{ N int }
			if err := json.Unmarshal(cur.Body, &v); err != nil {
				return nil, err
			}
			n = v.N
		}
		return &store.Change{Body: fmt.Appendf(nil, `{"n":%d}`, n+1), Kind: store.KindPut}, nil
	}
}

func TestOpenConcurrentlyMigratesOnce(t *testing.T) {
	dsn := pg.Database(t)
	const replicas = 6
	var wg sync.WaitGroup
	stores := make([]*postgres.Store, replicas)
	errs := make([]error, replicas)
	for i := range replicas {
		wg.Go(func() { stores[i], errs[i] = postgres.Open(context.Background(), dsn, postgres.Options{}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	var versions []int
	rows, err := stores[0].Pool().Query(context.Background(), `SELECT version FROM patchd_schema ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	versions, err = pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	if want := postgres.SchemaVersions(); !slices.Equal(versions, want) {
		t.Fatalf("patchd_schema versions %v, want %v once each", versions, want)
	}
	// Every replica works on the one schema.
	for i, s := range stores {
		storetest.Commit(t, s, "c", fmt.Sprint(i), &store.Change{Body: []byte(`{}`), Kind: store.KindPut})
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	dsn := pg.Database(t)
	s := open(t, dsn, postgres.Options{})
	if _, err := s.Pool().Exec(context.Background(), `INSERT INTO patchd_schema (version, name) VALUES (999, '0999_future.sql')`); err != nil {
		t.Fatal(err)
	}
	if s2, err := postgres.Open(context.Background(), dsn, postgres.Options{}); !errors.Is(err, postgres.ErrSchemaTooNew) {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("Open on a newer schema: %v, want ErrSchemaTooNew", err)
	}
}

func TestBodiesKeptByteForByte(t *testing.T) {
	s := open(t, pg.Database(t), postgres.Options{})
	// Everything jsonb would rewrite: key order by length, exponents,
	// negative zero, trailing zeros, huge numbers, escapes.
	body := []byte(`{"aa":1e400,"b":-0,"c":1.10,"d":1E+2,"e":"\u0000é\"","f":12345678901234567890123,"g":[{"b":1,"a":2}]}`)
	doc := storetest.Commit(t, s, "c", "x", &store.Change{Body: body, Kind: store.KindPut})
	got, err := s.Get(context.Background(), "c", "x")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Body) != string(body) || got.ETag != store.ETagOf(body) || doc.ETag != got.ETag {
		t.Fatalf("Get = %s %s, want %s %s", got.Body, got.ETag, body, store.ETagOf(body))
	}
}

// TestReplicasNoLostUpdate: writers on three stores over one database
// increment one counter; first writes of one new document race too.
func TestReplicasNoLostUpdate(t *testing.T) {
	dsn := pg.Database(t)
	stores := []*postgres.Store{
		open(t, dsn, postgres.Options{MaxConns: 4}),
		open(t, dsn, postgres.Options{MaxConns: 4}),
		open(t, dsn, postgres.Options{MaxConns: 4}),
	}
	const workers, rounds = 12, 25
	var (
		wg    sync.WaitGroup
		calls atomic.Int32
	)
	for w := range workers {
		wg.Go(func() {
			s := stores[w%len(stores)]
			for r := range rounds {
				if _, err := s.Update(context.Background(), "c", "counter", counter(&calls)); err != nil {
					t.Errorf("worker %d round %d: %v", w, r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	doc, err := stores[0].Get(context.Background(), "c", "counter")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`{"n":%d}`, workers*rounds); string(doc.Body) != want || doc.Seq != workers*rounds {
		t.Fatalf("counter = %s at seq %d, want %s at seq %d", doc.Body, doc.Seq, want, workers*rounds)
	}
	t.Logf("%d commits, %d UpdateFunc calls", workers*rounds, calls.Load())

	// Create-only writes of a new document: exactly one wins.
	errExists := errors.New("exists")
	var created atomic.Int32
	for w := range workers {
		wg.Go(func() {
			_, err := stores[w%len(stores)].Update(context.Background(), "c", "new", func(_ context.Context, cur *store.Document, _ store.History) (*store.Change, error) {
				if cur != nil {
					return nil, errExists
				}
				return &store.Change{Body: fmt.Appendf(nil, `{"w":%d}`, w), Kind: store.KindPut}, nil
			})
			switch {
			case err == nil:
				created.Add(1)
			case !errors.Is(err, errExists):
				t.Errorf("create %d: %v", w, err)
			}
		})
	}
	wg.Wait()
	if created.Load() != 1 {
		t.Fatalf("%d creates succeeded, want 1", created.Load())
	}
	vs, _, err := stores[1].History(context.Background(), "c", "new", 0, 0, 0)
	if err != nil || len(vs) != 1 {
		t.Fatalf("History(new) = %d versions, %v; want 1", len(vs), err)
	}
}

// TestLostAcknowledgmentAppliesOnce: the commit happened but its answer
// was lost; the retry finds the version by its token and does not apply
// the change again.
func TestLostAcknowledgmentAppliesOnce(t *testing.T) {
	s := open(t, pg.Database(t), postgres.Options{})
	storetest.Commit(t, s, "c", "d", &store.Change{Body: []byte(`{"n":0}`), Kind: store.KindPut})
	var lost atomic.Int32
	s.SetAfterCommit(func() error {
		if lost.Add(1) == 1 {
			return errors.New("injected: connection reset while reading the COMMIT answer")
		}
		return nil
	})
	var calls atomic.Int32
	doc, err := s.Update(context.Background(), "c", "d", counter(&calls))
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if string(doc.Body) != `{"n":1}` || doc.Seq != 2 {
		t.Fatalf("Update = %s at seq %d, want {\"n\":1} at seq 2", doc.Body, doc.Seq)
	}
	if calls.Load() != 1 {
		t.Errorf("UpdateFunc called %d times, want 1", calls.Load())
	}
	vs, _, err := s.History(context.Background(), "c", "d", 0, 0, 0)
	if err != nil || len(vs) != 2 {
		t.Fatalf("History = %d versions, %v; want 2", len(vs), err)
	}
	got, _ := s.Get(context.Background(), "c", "d")
	if string(got.Body) != `{"n":1}` {
		t.Fatalf("Get = %s, want {\"n\":1}", got.Body)
	}
}

// TestLostConnectionBeforeCommitRetries: the connection dies before
// COMMIT; nothing committed, so the retry runs the UpdateFunc again and
// commits once.
func TestLostConnectionBeforeCommitRetries(t *testing.T) {
	s := open(t, pg.Database(t), postgres.Options{})
	storetest.Commit(t, s, "c", "d", &store.Change{Body: []byte(`{"n":0}`), Kind: store.KindPut})
	var killed atomic.Int32
	s.SetBeforeCommit(func(ctx context.Context, tx pgx.Tx) error {
		if killed.Add(1) == 1 {
			// A real fault: the server ends this session.
			_, err := s.Pool().Exec(ctx, `SELECT pg_terminate_backend($1)`, tx.Conn().PgConn().PID())
			return err
		}
		return nil
	})
	var calls atomic.Int32
	doc, err := s.Update(context.Background(), "c", "d", counter(&calls))
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if string(doc.Body) != `{"n":1}` || doc.Seq != 2 {
		t.Fatalf("Update = %s at seq %d, want {\"n\":1} at seq 2", doc.Body, doc.Seq)
	}
	if calls.Load() != 2 {
		t.Errorf("UpdateFunc called %d times, want 2 (one per attempt)", calls.Load())
	}
	vs, _, err := s.History(context.Background(), "c", "d", 0, 0, 0)
	if err != nil || len(vs) != 2 {
		t.Fatalf("History = %d versions, %v; want 2", len(vs), err)
	}
}

// next waits for the next event on ch.
func next(t *testing.T, ch <-chan store.Event) store.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("feed closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return store.Event{}
}

// nextDoc waits for the next event that names a document.
func nextDoc(t *testing.T, ch <-chan store.Event) store.Event {
	t.Helper()
	for {
		if ev := next(t, ch); !ev.Resync {
			return ev
		}
	}
}

// TestFeedAcrossReplicas: a subscriber on replica A, consuming as the HTTP
// feed does (on each hint, read History after the last seq handled), sees
// every version written through B, C and A itself, in seq order.
func TestFeedAcrossReplicas(t *testing.T) {
	dsn := pg.Database(t)
	a := open(t, dsn, postgres.Options{})
	b := open(t, dsn, postgres.Options{})
	c := open(t, dsn, postgres.Options{})
	ch, err := a.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); !ev.Resync {
		t.Fatalf("first event %+v, want the Resync that follows LISTEN", ev)
	}
	const versions = 30
	go func() { // not t.Fatal: this is not the test's goroutine
		writers := []*postgres.Store{b, c, a}
		for i := 1; i <= versions; i++ {
			ch := &store.Change{Body: fmt.Appendf(nil, `{"v":%d}`, i), Kind: store.KindPut}
			if i == versions {
				ch = &store.Change{Kind: store.KindDelete}
			}
			if _, err := writers[i%3].Update(context.Background(), "notes", "shared", func(context.Context, *store.Document, store.History) (*store.Change, error) {
				return ch, nil
			}); err != nil {
				t.Errorf("write %d: %v", i, err)
				return
			}
		}
	}()
	var seen []uint64
	for len(seen) < versions {
		ev := next(t, ch)
		if !ev.Resync && (ev.Collection != "notes" || ev.ID != "shared" || ev.Seq == 0 || ev.Seq > versions) {
			t.Fatalf("event %+v, want notes/shared", ev)
		}
		after := uint64(len(seen))
		if !ev.Resync && ev.Seq <= after {
			continue // already read
		}
		vs, _, err := a.History(context.Background(), "notes", "shared", after, 0, 0)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		for _, v := range vs {
			seen = append(seen, v.Seq)
		}
	}
	for i, s := range seen {
		if s != uint64(i+1) {
			t.Fatalf("seqs seen %v, want 1..%d in order", seen, versions)
		}
	}
}

// TestFeedReconnects: when the listening session is killed, the feed
// reconnects, says Resync, and goes on.
func TestFeedReconnects(t *testing.T) {
	dsn := pg.Database(t)
	a := open(t, dsn, postgres.Options{})
	b := open(t, dsn, postgres.Options{})
	ch, err := a.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch) // listening
	tag, err := b.Pool().Exec(context.Background(),
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		 WHERE datname = current_database() AND query LIKE 'LISTEN%'`)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("terminate the listener: %v (%d rows)", err, tag.RowsAffected())
	}
	if ev := next(t, ch); !ev.Resync {
		t.Fatalf("event after reconnection %+v, want Resync", ev)
	}
	storetest.Commit(t, b, "c", "d", &store.Change{Body: []byte(`{}`), Kind: store.KindPut})
	if ev := nextDoc(t, ch); ev.ID != "d" || ev.Seq != 1 {
		t.Fatalf("event %+v, want c/d seq 1", ev)
	}
}

// TestFeedPollTick: with no notification, the safety net still sends
// Resync every PollInterval; a closed store closes the channel.
func TestFeedPollTick(t *testing.T) {
	s, err := postgres.Open(context.Background(), pg.Database(t), postgres.Options{PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if ev := next(t, ch); !ev.Resync {
			t.Fatalf("event %+v, want Resync", ev)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range ch { // drains, then ends: the channel is closed
	}
	if _, err := s.Subscribe(t.Context()); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Subscribe after Close: %v, want ErrClosed", err)
	}
}

// TestPresenceClientShare: over PostgreSQL too, one client's new sessions
// of a document past its share are refused, naming the share, while
// another client's are taken and renewals never refused.
func TestPresenceClientShare(t *testing.T) {
	s := open(t, pg.Database(t), postgres.Options{})
	p := s.Presence(store.PresenceLimits{PerDocument: 3, PerClientDocument: 2})
	ctx := context.Background()
	put := func(client, session string) error {
		_, err := p.PutPresence(ctx, store.PresenceSession{Collection: "c", ID: "1", Session: session, Client: client, State: []byte(`{}`)}, time.Minute)
		return err
	}
	for _, sess := range []string{"s1", "s2"} {
		if err := put("a", sess); err != nil {
			t.Fatal(err)
		}
	}
	var full *store.PresenceFullError
	if err := put("a", "s3"); !errors.As(err, &full) || full.Scope != store.PresenceShareScope || full.Limit != 2 {
		t.Fatalf("client a's third session: %v, want its share of the document (2) refused", err)
	}
	if err := put("a", "s1"); err != nil {
		t.Fatalf("renewal: %v", err)
	}
	if err := put("b", "s3"); err != nil {
		t.Fatalf("client b's first session: %v", err)
	}
	if err := put("b", "s4"); !errors.As(err, &full) || full.Scope != "document" {
		t.Fatalf("a fourth session of the document: %v, want the document's bound", err)
	}
}
