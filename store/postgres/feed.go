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

// listenHealthy is how long a change feed connection must stay up for its
// reconnection backoff to start afresh: a connection lost now and then
// (a failover a day) reconnects at once each time, one lost again and
// again backs off.
const listenHealthy = 30 * time.Second

// Reconnection backoff of the change feed: the n-th reconnection in a row
// waits between half and all of min(listenMaxWait, listenBaseWait * 2^n).
const (
	listenBaseWait = 50 * time.Millisecond
	listenMaxWait  = 5 * time.Second
)

// listenBackoff is the change feed's reconnection policy.
type listenBackoff struct {
	healthy  time.Duration // uptime that forgets earlier failures
	failures int           // connections lost in a row
}

// lost records a connection that was up for up (zero if it never
// listened) and returns the longest wait before the next one.
func (b *listenBackoff) lost(up time.Duration) time.Duration {
	if up >= b.healthy {
		b.failures = 0
	}
	b.failures++
	return min(listenMaxWait, listenBaseWait<<min(b.failures, 7))
}

// listen keeps a LISTEN connection open until ctx is done, reconnecting
// with backoff, and publishes other replicas' hints.
func (s *Store) listen(ctx context.Context) {
	defer close(s.listenDone)
	b := listenBackoff{healthy: s.hooks.listenHealthy}
	if b.healthy <= 0 {
		b.healthy = listenHealthy
	}
	for ctx.Err() == nil {
		up, err := s.listenOnceConn(ctx)
		s.metrics.listenUp.Store(false)
		if ctx.Err() != nil {
			return
		}
		s.metrics.listenReconnects.Add(1)
		wait := b.lost(up)
		s.log.Warn("change feed connection lost; reconnecting", "err", err, "up", up, "in", wait)
		if !pause(ctx, wait/2+mrand.N(wait/2)) { // #nosec G404 -- reconnect jitter, not a secret
			return
		}
	}
}

// listenOnceConn runs one listening connection until it fails or ctx is
// done, and returns how long it listened.
func (s *Store) listenOnceConn(ctx context.Context) (up time.Duration, err error) {
	cfg := s.pool.Config().ConnConfig.Copy()
	// A poll tick ends the wait by a read deadline, which leaves the
	// connection usable; a cancel request would have nothing to cancel.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, err
	}
	var since time.Time
	defer func() {
		if !since.IsZero() {
			up = time.Since(since)
		}
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	lctx, cancel := context.WithTimeout(ctx, s.timeout)
	_, err = conn.Exec(lctx, "LISTEN "+pgx.Identifier{channel}.Sanitize())
	cancel()
	if err != nil {
		return 0, err
	}
	since = time.Now()
	s.metrics.listenUp.Store(true)
	// Listening now: whatever was committed before is in History.
	s.resync()
	for {
		wctx, cancel := context.WithTimeout(ctx, s.poll)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return 0, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			s.resync() // the safety-net tick
			continue
		case err != nil:
			return 0, err
		}
		var h hint
		if err := json.Unmarshal([]byte(n.Payload), &h); err != nil {
			s.log.Warn("change feed: bad hint", "payload", n.Payload, "err", err)
			s.resync()
			continue
		}
		switch {
		case h.Collection == "" || h.ID == "":
			s.resync()
		case h.Origin == s.origin:
			// This store's own commit: its subscribers heard of it then.
		case h.Presence:
			s.presenceFeed.Publish(store.Event{Collection: h.Collection, ID: h.ID})
		default:
			s.feed.Publish(store.Event{Collection: h.Collection, ID: h.ID, Seq: h.Seq})
		}
	}
}

// resync tells every subscriber, of commits and of presence, that hints
// may have been missed.
func (s *Store) resync() {
	s.feed.Publish(store.Event{Resync: true})
	s.presenceFeed.Publish(store.Event{Resync: true})
}
