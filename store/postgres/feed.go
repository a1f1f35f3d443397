package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/patchd/patchd/store"
)

// Subscribe returns a channel of Events for the commits of every replica
// over the database, closed when ctx is done or the store is closed.
//
// Commits arrive, this process's own included, as NOTIFY hints sent just
// after each commit, on one dedicated connection per Store opened by the
// first Subscribe. Hints from one replica arrive in its commit order;
// hints from different replicas may interleave otherwise, so a consumer
// reads History after the last seq it has seen (see store.Event). After each (re)connection the listener
// sends LISTEN first and then a Resync event, so that a consumer catching
// up from History misses nothing; it also sends a Resync every
// PollInterval as a safety net.
func (s *Store) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	if err := s.gate.Enter(ctx, "subscribe"); err != nil {
		return nil, err
	}
	defer s.gate.Leave()
	s.listenOnce.Do(func() {
		lctx, cancel := context.WithCancel(context.Background())
		s.stopListen = cancel
		s.listenDone = make(chan struct{})
		go s.listen(lctx)
	})
	ch, err := s.feed.Subscribe(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: subscribe: %w", err)
	}
	return ch, nil
}

// listen keeps a LISTEN connection open until ctx is done, reconnecting
// with backoff, and publishes other replicas' hints.
func (s *Store) listen(ctx context.Context) {
	defer close(s.listenDone)
	failures := 0
	for ctx.Err() == nil {
		err := s.listenOnceConn(ctx)
		if ctx.Err() != nil {
			return
		}
		failures++
		wait := min(5*time.Second, 50*time.Millisecond<<min(failures, 7))
		s.log.Warn("change feed connection lost; reconnecting", "err", err, "in", wait)
		select {
		case <-time.After(wait/2 + mrand.N(wait/2)): // #nosec G404 -- reconnect jitter, not a secret
		case <-ctx.Done():
			return
		}
	}
}

// listenOnceConn runs one listening connection until it fails or ctx is
// done.
func (s *Store) listenOnceConn(ctx context.Context) error {
	cfg := s.pool.Config().ConnConfig.Copy()
	// A poll tick ends the wait by a read deadline, which leaves the
	// connection usable; a cancel request would have nothing to cancel.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return err
	}
	// Listening now: whatever was committed before is in History.
	s.feed.Publish(store.Event{Resync: true})
	for {
		wctx, cancel := context.WithTimeout(ctx, s.poll)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			s.feed.Publish(store.Event{Resync: true}) // the safety-net tick
			continue
		case err != nil:
			return err
		}
		var h hint
		if err := json.Unmarshal([]byte(n.Payload), &h); err != nil {
			s.log.Warn("change feed: bad hint", "payload", n.Payload, "err", err)
			s.feed.Publish(store.Event{Resync: true})
			continue
		}
		switch {
		case h.Collection == "" || h.ID == "":
			s.feed.Publish(store.Event{Resync: true})
		default:
			s.feed.Publish(store.Event{Collection: h.Collection, ID: h.ID, Seq: h.Seq})
		}
	}
}
