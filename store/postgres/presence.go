package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/patchd/patchd/store"
)

// presenceSweep is how often every replica deletes expired presence
// sessions and tells the documents' watchers, everywhere, that they ended.
const presenceSweep = 250 * time.Millisecond

// Presence returns the registry of presence sessions kept in the database's
// unlogged presence table, shared by every replica. Announcements and
// ends are hinted to every replica by NOTIFY, as commits are; each
// replica deletes the sessions that expire and hints them. The bounds are
// checked in the statement that inserts a session, without a lock, so
// announcements racing on several connections may pass a bound by a few.
func (s *Store) Presence(limits store.PresenceLimits) store.Presence {
	return &presence{s: s, limits: limits}
}

// presence is the Store's store.Presence.
type presence struct {
	s      *Store
	limits store.PresenceLimits
}

var _ store.PresenceStore = (*Store)(nil)

// bound returns a limit as the query takes it: no bound is the largest.
func bound(n int) int64 {
	if n <= 0 {
		return 1 << 62
	}
	return int64(n)
}

// PutPresence announces or renews a session (see store.Presence).
func (p *presence) PutPresence(ctx context.Context, ps store.PresenceSession, ttl time.Duration) (time.Time, error) {
	s := p.s
	if err := s.gate.Enter(ctx, "presence"); err != nil {
		return time.Time{}, err
	}
	defer s.gate.Leave()
	var actor *string
	if ps.Actor != "" {
		actor = &ps.Actor
	}
	var expires time.Time
	upsert := func(ctx context.Context) error {
		return s.pool.QueryRow(ctx,
			`INSERT INTO presence AS p (collection, id, session, client, actor, state, expires)
			 SELECT $1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7)
			 WHERE EXISTS (SELECT 1 FROM presence WHERE collection = $1 AND id = $2 AND session = $3 AND expires > now())
			    OR ((SELECT count(*) FROM presence WHERE collection = $1 AND id = $2 AND expires > now()) < $8
			    AND (SELECT count(*) FROM presence WHERE client = $4 AND expires > now()) < $9
			    AND (SELECT count(*) FROM presence WHERE expires > now()) < $10
			    AND (SELECT count(*) FROM presence WHERE collection = $1 AND id = $2 AND client = $4 AND expires > now()) < $11)
			 ON CONFLICT (collection, id, session) DO UPDATE
			 SET client = excluded.client, actor = excluded.actor, state = excluded.state, expires = excluded.expires
			 WHERE p.client = excluded.client OR p.expires <= now()
			 RETURNING expires`,
			ps.Collection, ps.ID, ps.Session, ps.Client, actor, string(ps.State), ttl.Seconds(),
			bound(p.limits.PerDocument), bound(p.limits.PerClient), bound(p.limits.Total), bound(p.limits.PerClientDocument)).Scan(&expires)
	}
	err := s.read(ctx, upsert)
	for attempt := 0; errors.Is(err, pgx.ErrNoRows); attempt++ {
		// Refused: another client's live session, or a bound.
		if owned, oerr := p.owned(ctx, ps.Collection, ps.ID, ps.Session, ps.Client); owned || oerr != nil {
			return time.Time{}, oerr
		}
		if attempt > 0 {
			return time.Time{}, p.full(ctx, ps)
		}
		// No other client's now: its session ended or expired since the
		// upsert, which may pass once more.
		err = s.read(ctx, upsert)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("store: presence %s/%s: %w", ps.Collection, ps.ID, err)
	}
	p.changed(ps.Collection, ps.ID)
	return expires.UTC(), nil
}

// owned reports, with an error wrapping store.ErrPresenceNotYours, whether
// the session is live and another client's.
func (p *presence) owned(ctx context.Context, collection, id, session, client string) (bool, error) {
	var other bool
	err := p.s.read(ctx, func(ctx context.Context) error {
		return p.s.pool.QueryRow(ctx,
			`SELECT EXISTS (SELECT 1 FROM presence WHERE collection = $1 AND id = $2 AND session = $3 AND expires > now() AND client <> $4)`,
			collection, id, session, client).Scan(&other)
	})
	if err != nil {
		return false, fmt.Errorf("store: presence %s/%s: %w", collection, id, err)
	}
	if other {
		return true, fmt.Errorf("presence %s/%s %s: %w", collection, id, session, store.ErrPresenceNotYours)
	}
	return false, nil
}

// full returns the bound that refused a new session.
func (p *presence) full(ctx context.Context, ps store.PresenceSession) error {
	var doc, share, client, total int64
	err := p.s.read(ctx, func(ctx context.Context) error {
		return p.s.pool.QueryRow(ctx,
			`SELECT count(*) FILTER (WHERE collection = $1 AND id = $2),
			        count(*) FILTER (WHERE collection = $1 AND id = $2 AND client = $3),
			        count(*) FILTER (WHERE client = $3), count(*)
			 FROM presence WHERE expires > now()`,
			ps.Collection, ps.ID, ps.Client).Scan(&doc, &share, &client, &total)
	})
	if err != nil {
		return fmt.Errorf("store: presence %s/%s: %w", ps.Collection, ps.ID, err)
	}
	switch l := p.limits; {
	case doc >= bound(l.PerDocument):
		return &store.PresenceFullError{Scope: "document", Limit: l.PerDocument}
	case share >= bound(l.PerClientDocument):
		return &store.PresenceFullError{Scope: store.PresenceShareScope, Limit: l.PerClientDocument}
	case client >= bound(l.PerClient):
		return &store.PresenceFullError{Scope: "client", Limit: l.PerClient}
	default:
		return &store.PresenceFullError{Scope: "total", Limit: l.Total}
	}
}

// changed tells this replica's watchers, and by a hint the others', that
// a document's sessions changed.
func (p *presence) changed(collection, id string) {
	p.s.presenceFeed.Publish(store.Event{Collection: collection, ID: id})
	p.s.queueHintOf(hint{Collection: collection, ID: id, Presence: true, Origin: p.s.origin})
}

// EndPresence ends a session (see store.Presence).
func (p *presence) EndPresence(ctx context.Context, collection, id, session, client string) error {
	s := p.s
	if err := s.gate.Enter(ctx, "presence"); err != nil {
		return err
	}
	defer s.gate.Leave()
	var live bool
	err := s.read(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx,
			`DELETE FROM presence WHERE collection = $1 AND id = $2 AND session = $3 AND (client = $4 OR expires <= now())
			 RETURNING expires > now()`,
			collection, id, session, client).Scan(&live)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		if owned, err := p.owned(ctx, collection, id, session, client); owned || err != nil {
			return err
		}
	}
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !live) {
		return fmt.Errorf("presence %s/%s %s: %w", collection, id, session, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("store: presence %s/%s: %w", collection, id, err)
	}
	p.changed(collection, id)
	return nil
}

// ListPresence returns a document's live sessions (see store.Presence).
func (p *presence) ListPresence(ctx context.Context, collection, id string) ([]store.PresenceSession, error) {
	s := p.s
	if err := s.gate.EnterRead(ctx, "presence", collection, id); err != nil {
		return nil, err
	}
	defer s.gate.Leave()
	var out []store.PresenceSession
	err := s.read(ctx, func(ctx context.Context) error {
		out = out[:0]
		rows, err := s.pool.Query(ctx,
			`SELECT session, client, actor, state, expires FROM presence
			 WHERE collection = $1 AND id = $2 AND expires > now() ORDER BY session COLLATE "C"`,
			collection, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			ps := store.PresenceSession{Collection: collection, ID: id}
			var actor *string
			var state string
			if err := rows.Scan(&ps.Session, &ps.Client, &actor, &state, &ps.Expires); err != nil {
				return err
			}
			if actor != nil {
				ps.Actor = *actor
			}
			ps.State, ps.Expires = []byte(state), ps.Expires.UTC()
			out = append(out, ps)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("store: presence %s/%s: %w", collection, id, err)
	}
	return out, nil
}

// WatchPresence returns hints of changed sessions, every replica's (see
// store.Presence). The first call starts this replica's sweeper of
// expired sessions and the change feed's listener, which hears the hints.
func (p *presence) WatchPresence(ctx context.Context) (<-chan store.Event, error) {
	s := p.s
	if _, err := s.Subscribe(ctx); err != nil { // starts the listener
		return nil, err
	}
	s.sweepOnce.Do(func() {
		sctx, cancel := context.WithCancel(context.Background())
		s.stopSweep = cancel
		s.sweepDone = make(chan struct{})
		go p.sweeper(sctx)
	})
	ch, err := s.presenceFeed.Subscribe(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: watch presence: %w", err)
	}
	return ch, nil
}

// sweeper deletes expired sessions every presenceSweep until ctx is done.
func (p *presence) sweeper(ctx context.Context) {
	defer close(p.s.sweepDone)
	t := time.NewTicker(presenceSweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := p.sweep(ctx); err != nil && ctx.Err() == nil {
			p.s.log.Debug("presence: sweep failed", "err", err)
		}
	}
}

// sweep deletes the expired sessions and tells of the documents they had.
func (p *presence) sweep(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.s.timeout)
	defer cancel()
	rows, err := p.s.pool.Query(ctx,
		`DELETE FROM presence WHERE expires <= now() RETURNING collection, id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	seen := map[[2]string]bool{}
	for rows.Next() {
		var k [2]string
		if err := rows.Scan(&k[0], &k[1]); err != nil {
			return err
		}
		seen[k] = true
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for k := range seen {
		p.changed(k[0], k[1])
	}
	return nil
}
