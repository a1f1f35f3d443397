package postgres

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/patchd/patchd/store"
)

// Idempotency records are bounded per scope (store.Options.
// IdempotencyPerScope). Counting a scope's records at every write would
// either scan them or serialize every write of the scope on one counter
// row; instead each Store counts the records it writes per scope, and
// after every IdempotencyPerScope/8 of them deletes the scope's records
// beyond the newest IdempotencyPerScope, in a statement of its own after
// the write's commit. Between two checks a scope can hold up to that many
// more records per replica.

// maxTickedScopes bounds the scopes a scopeTicker counts; past it the
// counts start afresh (a scope then waits longer for its next check).
const maxTickedScopes = 4096

// boundTimeout bounds one deletion of a scope's oldest records.
const boundTimeout = 10 * time.Second

// scopeTicker counts the idempotency records a Store writes per scope.
type scopeTicker struct {
	every int // a scope is checked after this many records

	mu sync.Mutex
	n  map[string]int
}

// tick counts one record of scope and reports whether the scope is due for
// a check.
func (t *scopeTicker) tick(scope string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil || len(t.n) >= maxTickedScopes {
		t.n = make(map[string]int)
	}
	t.n[scope]++
	if t.n[scope] < t.every {
		return false
	}
	delete(t.n, scope)
	return true
}

// boundScope counts a record written for scope and, when the scope is due,
// deletes its records beyond the newest idemPerScope. The write has
// committed: a failure here is only logged, and the next check retries.
func (s *Store) boundScope(ctx context.Context, scope string) {
	if s.idemPerScope < 1 || !s.evictTicks.tick(scope) {
		return
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), boundTimeout)
	defer cancel()
	// The newest idemPerScope records stay; the row past them, if any,
	// and every older one go (records of one scope ordered by expiry,
	// then key, as the bbolt store orders them).
	tag, err := s.pool.Exec(bctx, `DELETE FROM idempotency_keys
		WHERE scope = $1 AND (expires_ns, key) <= (
			SELECT expires_ns, key FROM idempotency_keys WHERE scope = $1
			ORDER BY expires_ns DESC, key DESC OFFSET $2 LIMIT 1)`,
		[]byte(scope), s.idemPerScope)
	if err != nil {
		s.metrics.dbError(err)
		s.log.Warn("could not bound the idempotency records of a client; the next check retries", "err", err)
		return
	}
	if n := tag.RowsAffected(); n > 0 {
		s.metrics.evicted.Add(n)
		s.log.Debug("deleted the oldest idempotency records of a client", "records", n, "kept", s.idemPerScope)
	}
}

// DumpIdempotency calls fn for every record that has not expired, in key
// order, from one REPEATABLE READ transaction (see store.IdempotencyCopier).
func (s *Store) DumpIdempotency(ctx context.Context, fn func(*store.IdempotencyRecord) error) error {
	if err := s.gate.Enter(ctx, "dump idempotency"); err != nil {
		return err
	}
	defer s.gate.Leave()
	now := s.now().UnixNano()
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := noTimeouts(ctx, tx); err != nil {
			return err
		}
		after := []byte{}
		for {
			rows, err := tx.Query(ctx, `SELECT key, scope, seq, value, expires_ns FROM idempotency_keys
				WHERE key > $1 AND expires_ns > $2 ORDER BY key LIMIT $3`, after, now, dumpBatch)
			if err != nil {
				return err
			}
			var recs []*store.IdempotencyRecord
			for rows.Next() {
				var (
					key, scope []byte
					r          store.IdempotencyRecord
					ns, seq    int64
				)
				if err := rows.Scan(&key, &scope, &seq, &r.Value, &ns); err != nil {
					rows.Close()
					return err
				}
				r.Key, r.Scope, r.Seq, r.Expires = string(key), string(scope), uint64(seq), time.Unix(0, ns).UTC() // #nosec G115 -- a seq from the database is non-negative
				recs = append(recs, &r)
				after = key
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for _, r := range recs {
				if err := fn(r); err != nil {
					return err
				}
			}
			if len(recs) < dumpBatch {
				return nil
			}
		}
	})
	if err != nil {
		return fmt.Errorf("store: dump idempotency: %w", s.fail(ctx, err))
	}
	return nil
}

// LoadIdempotency writes records as they are in one transaction, keeping
// the live records the database holds already (see
// store.IdempotencyCopier). It returns how many it wrote.
func (s *Store) LoadIdempotency(ctx context.Context, recs []*store.IdempotencyRecord) (int, error) {
	if s.gate.ReadOnly {
		return 0, fmt.Errorf("store: load idempotency: %w", store.ErrReadOnly)
	}
	if err := s.gate.Enter(ctx, "load idempotency"); err != nil {
		return 0, err
	}
	defer s.gate.Leave()
	for _, r := range recs {
		if r == nil {
			return 0, fmt.Errorf("store: load idempotency: %w: nil record", store.ErrInvalidIdempotency)
		}
		if err := r.Check(); err != nil {
			return 0, fmt.Errorf("store: load idempotency: %w", err)
		}
	}
	now := s.now().UnixNano()
	written := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		written = 0
		if err := noTimeouts(ctx, tx); err != nil {
			return err
		}
		b := &pgx.Batch{}
		for _, r := range recs {
			b.Queue(`INSERT INTO idempotency_keys (key, scope, seq, value, expires_ns) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (key) DO UPDATE SET scope = EXCLUDED.scope, seq = EXCLUDED.seq, value = EXCLUDED.value, expires_ns = EXCLUDED.expires_ns
				WHERE idempotency_keys.expires_ns <= $6`,
				[]byte(r.Key), []byte(r.Scope), int64(min(r.Seq, math.MaxInt64)), nonNil(r.Value), r.Expires.UnixNano(), now) // #nosec G115 -- bounded by MaxInt64
		}
		br := tx.SendBatch(ctx, b)
		for range recs {
			tag, err := br.Exec()
			if err != nil {
				_ = br.Close()
				return err
			}
			written += int(tag.RowsAffected())
		}
		return br.Close()
	})
	if err != nil {
		return 0, fmt.Errorf("store: load idempotency: %w", s.fail(ctx, err))
	}
	return written, nil
}

// noTimeouts lifts the statement and lock timeouts for the rest of tx:
// for migrations, dumps and loads, whose statements may rightly take
// longer than any request.
func noTimeouts(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0`)
	if err != nil {
		return fmt.Errorf("lift timeouts: %w", err)
	}
	return nil
}
