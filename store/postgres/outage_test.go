package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
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

// waitUntil polls cond until it holds, failing t after 30s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockWaiters counts the sessions of the current database waiting for a
// lock.
func lockWaiters(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// keyed is an UpdateFunc that increments {"n":N} with an idempotency
// record under key.
func keyed(key string, calls *atomic.Int32) store.UpdateFunc {
	inc := counter(calls)
	return func(ctx context.Context, cur *store.Document, h store.History) (*store.Change, error) {
		ch, err := inc(ctx, cur, h)
		if err != nil {
			return nil, err
		}
		ch.Idempotency = &store.IdempotencyRecord{Key: key, Scope: "client", Value: []byte("answer"), Expires: time.Now().Add(time.Hour)}
		return ch, nil
	}
}

// TestIdempotencyClaimAcrossReplicas: the same keyed write reaches two
// replicas while a third session holds the document's row lock (a slow
// write, a client that timed out and retried elsewhere). When the lock is
// released, one commits; the other finds the key claimed and commits
// nothing, however its decision came out.
func TestIdempotencyClaimAcrossReplicas(t *testing.T) {
	dsn := pg.Database(t)
	a := open(t, dsn, postgres.Options{})
	b := open(t, dsn, postgres.Options{})
	storetest.Commit(t, a, "c", "d", &store.Change{Body: []byte(`{"n":0}`), Kind: store.KindPut})

	holder, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	watcher, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close(context.Background())
	tx, err := holder.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), `SELECT 1 FROM documents WHERE collection = 'c' AND id = 'd' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}

	var (
		wg    sync.WaitGroup
		calls atomic.Int32
		errs  = make([]error, 2)
	)
	for i, s := range []*postgres.Store{a, b} {
		wg.Go(func() { _, errs[i] = s.Update(context.Background(), "c", "d", keyed("k", &calls)) })
	}
	waitUntil(t, "both replicas wait for the row lock", func() bool { return lockWaiters(t, watcher) == 2 })
	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	committed, refused := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			committed++
		case errors.Is(err, store.ErrIdempotencyExists):
			refused++
		default:
			t.Fatalf("Update: %v", err)
		}
	}
	if committed != 1 || refused != 1 {
		t.Fatalf("%d committed, %d refused (%v); want 1 and 1", committed, refused, errs)
	}
	got, err := b.Get(context.Background(), "c", "d")
	if err != nil || string(got.Body) != `{"n":1}` || got.Seq != 2 {
		t.Fatalf("document %s at seq %d (%v), want {\"n\":1} at seq 2: applied twice", got.Body, got.Seq, err)
	}
}

// TestReadsRetryDeadConnections: the server ends every session of the
// store (as a restart or a connection killer would) while its pool holds
// them; the next reads are answered, on new connections.
func TestReadsRetryDeadConnections(t *testing.T) {
	dsn := pg.Database(t)
	s := open(t, dsn, postgres.Options{MaxConns: 4})
	first, err := s.Changes(context.Background(), "c", nil, 0) // the change log's cursor before the write
	if err != nil {
		t.Fatal(err)
	}
	start := first.Next
	storetest.Commit(t, s, "c", "d", &store.Change{Body: []byte(`{"n":0}`), Kind: store.KindPut,
		Idempotency: &store.IdempotencyRecord{Key: "k", Value: []byte("v"), Expires: time.Now().Add(time.Hour)}})
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	reads := []struct {
		name string
		read func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, "c", "d"); return err }},
		{"ETag", func() error { _, err := s.ETag(ctx, "c", "d"); return err }},
		{"List", func() error { _, _, err := s.List(ctx, "c", "", 10); return err }},
		{"History", func() error { _, _, err := s.History(ctx, "c", "d", 0, 10, 0); return err }},
		{"Idempotency", func() error { _, err := s.Idempotency(ctx, "k"); return err }},
		{"Changes", func() error { _, err := s.Changes(ctx, "c", start, 10); return err }},
		{"ListDocuments", func() error { _, _, err := s.ListDocuments(ctx, "c", "", 10, start); return err }},
	}
	for _, r := range reads {
		t.Run(r.name, func(t *testing.T) {
			// Fill the pool with idle connections, then end them all.
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() { _ = r.read() })
			}
			wg.Wait()
			tag, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'patchd'`)
			if err != nil || tag.RowsAffected() == 0 {
				t.Fatalf("terminate the store's sessions: %v (%d)", err, tag.RowsAffected())
			}
			for i := range 4 {
				if err := r.read(); err != nil {
					t.Fatalf("read %d after the sessions ended: %v", i, err)
				}
			}
		})
	}
}

// TestFrozenDatabaseBoundsCalls: a server that stops answering (SIGSTOP)
// does not hold calls past the store's deadline: reads, writes, and Ping
// fail with ErrUnavailable, and the store serves again once the server
// resumes.
func TestFrozenDatabaseBoundsCalls(t *testing.T) {
	c := pg.Own(t, pgtest.Options{})
	dsn, err := c.CreateDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, dsn, postgres.Options{Options: store.Options{Timeout: time.Second}})
	storetest.Commit(t, s, "c", "d", &store.Change{Body: []byte(`{"n":0}`), Kind: store.KindPut})
	if err := c.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Thaw() })
	ctx := context.Background()
	var calls atomic.Int32
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, "c", "d"); return err }},
		{"Update", func() error { _, err := s.Update(ctx, "c", "d", counter(&calls)); return err }},
		{"Ping", func() error { return s.Ping(ctx) }},
	} {
		done := make(chan error, 1)
		go func() { done <- tc.call() }()
		select {
		case err := <-done:
			if !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("%s on a frozen server: %v, want ErrUnavailable", tc.name, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s on a frozen server still waiting after 30s", tc.name)
		}
	}
	if err := c.Thaw(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the store serves again", func() bool { return s.Ping(ctx) == nil })
	if _, err := s.Update(ctx, "c", "d", counter(&calls)); err != nil {
		t.Fatalf("Update after the server resumed: %v", err)
	}
}

// TestCommitOutcomeUnknownKeepsRecord: the server freezes while a keyed
// write's COMMIT is on its way. The write gives up at the deadline with
// ErrCommitUnknown (and ErrUnavailable); once the server resumes, the
// version exists exactly when its idempotency record does, so a retry
// with the key learns the real outcome.
func TestCommitOutcomeUnknownKeepsRecord(t *testing.T) {
	c := pg.Own(t, pgtest.Options{})
	dsn, err := c.CreateDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, dsn, postgres.Options{Options: store.Options{Timeout: time.Second}})
	storetest.Commit(t, s, "c", "d", &store.Change{Body: []byte(`{"n":0}`), Kind: store.KindPut})
	var froze atomic.Bool
	s.SetBeforeCommit(func(context.Context, pgx.Tx) error {
		if froze.CompareAndSwap(false, true) {
			return c.Freeze()
		}
		return nil
	})
	t.Cleanup(func() { _ = c.Thaw() })
	var calls atomic.Int32
	done := make(chan error, 1)
	go func() {
		_, err := s.Update(context.Background(), "c", "d", keyed("lost", &calls))
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		_ = c.Thaw()
		t.Fatal("Update through a frozen COMMIT still waiting after 60s")
	}
	if !errors.Is(err, postgres.ErrCommitUnknown) || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Update through a frozen COMMIT: %v, want ErrCommitUnknown and ErrUnavailable", err)
	}
	if err := c.Thaw(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	waitUntil(t, "the store serves again", func() bool { return s.Ping(ctx) == nil })
	// The frozen session ends once it runs again; its lock goes with it.
	other := open(t, dsn, postgres.Options{})
	waitUntil(t, "the frozen write's session ends", func() bool {
		var n int
		_ = other.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`).Scan(&n)
		return n == 0
	})
	doc, err := other.Get(ctx, "c", "d")
	if err != nil {
		t.Fatal(err)
	}
	_, rerr := other.Idempotency(ctx, "lost")
	committed := doc.Seq == 2
	if recorded := rerr == nil; committed != recorded {
		t.Fatalf("after the server resumed: version 2 committed %v, record exists %v (%v)", committed, recorded, rerr)
	}
	// A retry with the key: a write that committed is not applied again.
	_, err = other.Update(ctx, "c", "d", keyed("lost", &calls))
	switch {
	case committed && !errors.Is(err, store.ErrIdempotencyExists):
		t.Fatalf("retry of a committed write: %v, want ErrIdempotencyExists", err)
	case !committed && err != nil:
		t.Fatalf("retry of a write that did not commit: %v", err)
	}
	if doc, err := other.Get(ctx, "c", "d"); err != nil || string(doc.Body) != `{"n":1}` {
		t.Fatalf("document %s (%v), want {\"n\":1}: applied once", doc.Body, err)
	}
	t.Logf("the frozen COMMIT had committed: %v", committed)
}

// TestOpenWhileDown: a store opened while the server is down fails with
// ErrUnavailable, and opens once the server is up; a running store answers
// ErrUnavailable while it is down and serves again after a restart.
func TestOpenWhileDown(t *testing.T) {
	c := pg.Own(t, pgtest.Options{})
	dsn, err := c.CreateDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, dsn, postgres.Options{Options: store.Options{Timeout: time.Second}})
	storetest.Commit(t, s, "c", "d", &store.Change{Body: []byte(`{"n":0}`), Kind: store.KindPut})
	if err := c.Down(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := postgres.Open(ctx, dsn, postgres.Options{Options: store.Options{Timeout: time.Second}}); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open while the server is down: %v, want ErrUnavailable", err)
	}
	var calls atomic.Int32
	if _, err := s.Update(ctx, "c", "d", counter(&calls)); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Update while the server is down: %v, want ErrUnavailable", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Ping while the server is down: %v, want ErrUnavailable", err)
	}
	if err := c.Up(ctx); err != nil {
		t.Fatal(err)
	}
	open(t, dsn, postgres.Options{})
	doc, err := s.Update(ctx, "c", "d", counter(&calls))
	if err != nil || string(doc.Body) != `{"n":1}` {
		t.Fatalf("Update after the restart: %v, %v", doc, err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after the restart: %v", err)
	}
}

// TestRefusedCredentialsAreUnavailable: a database that starts refusing
// the store's role (pg_hba.conf, a password or a role changed while the
// server runs) makes calls fail with ErrUnavailable, a 503 the operator's
// fix ends, not a 500; at Open the same refusal is not ErrUnavailable, so
// that a start with wrong credentials ends at once rather than wait.
func TestRefusedCredentialsAreUnavailable(t *testing.T) {
	dsn := pg.Database(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if err := open(t, dsn, postgres.Options{}).Close(); err != nil { // the schema
		t.Fatal(err)
	}
	role := fmt.Sprintf("refused_%d", time.Now().UnixNano())
	for _, q := range []string{
		`CREATE ROLE ` + role + ` LOGIN`,
		`GRANT ALL ON SCHEMA public TO ` + role,
		`GRANT ALL ON ALL TABLES IN SCHEMA public TO ` + role,
		`GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO ` + role,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '`+role+`'`)
		_, _ = admin.Exec(ctx, `DROP OWNED BY `+role)
		_, _ = admin.Exec(ctx, `DROP ROLE `+role)
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	s := open(t, u.String(), postgres.Options{Options: store.Options{Timeout: 2 * time.Second}})
	storetest.Commit(t, s, "c", "d", &store.Change{Body: []byte(`{"n":0}`), Kind: store.KindPut})

	if _, err := admin.Exec(ctx, `ALTER ROLE `+role+` NOLOGIN`); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '`+role+`'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "c", "d"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Get with the role refused: %v, want ErrUnavailable", err)
	}
	if _, err := postgres.Open(ctx, u.String(), postgres.Options{}); err == nil || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open with the role refused: %v, want an error that is not ErrUnavailable", err)
	}
	if _, err := admin.Exec(ctx, `ALTER ROLE `+role+` LOGIN`); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Get(ctx, "c", "d"); err != nil || string(d.Body) != `{"n":0}` {
		t.Fatalf("Get once the role is let in again: %v", err)
	}
}
