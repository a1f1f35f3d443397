package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/patchd/patchd/store"
)

// ErrCommitUnknown is store.ErrCommitUnknown: a commit's acknowledgment
// was lost with its connection, and whether the write happened could not
// be told before the store's deadline (the database stayed unreachable),
// or the version it would have written was pruned before it could be
// checked. Errors that wrap it also wrap store.ErrUnavailable: the
// write's idempotency record, if it carried one, tells a retry what
// happened.
var ErrCommitUnknown = store.ErrCommitUnknown

// minCommitWait is the least time COMMIT gets, even when the call's
// deadline is nearer: once sent, its outcome should be known.
const minCommitWait = time.Second

// Update runs fn on the current state of one document and commits its
// change together with a new history version, durably, before it returns.
//
// fn runs inside a READ COMMITTED transaction that holds the document's
// row lock, so no other write to the document, from any replica, commits
// between fn reading the document and the commit; the History passed to
// fn reads in the same transaction. fn may be called more than once, when
// a transaction is retried after a serialization failure, a deadlock or a
// lost connection.
//
// Errors returned by fn are returned unchanged, with nothing committed. A
// change with a nil Body deletes the document; it returns an error
// wrapping ErrNotFound if the document does not exist. A change whose
// idempotency key is taken (see store.Change) commits nothing and returns
// an error wrapping store.ErrIdempotencyExists. If ctx is done before the
// commit, Update commits nothing and returns an error wrapping ctx.Err().
// When the database fails past the store's deadline, the error wraps
// store.ErrUnavailable, and also ErrCommitUnknown if a commit was sent
// whose outcome could not be checked. A change with DryRun is rolled back:
// Update returns the document as it would have been committed.
func (s *Store) Update(ctx context.Context, collection, id string, fn store.UpdateFunc) (*store.Document, error) {
	if err := s.gate.EnterWrite(ctx, collection, id); err != nil {
		return nil, err
	}
	defer s.gate.Leave()
	var cur *store.Document // as the last call of fn saw it
	one := func(ctx context.Context, docs []store.Locked) (*store.ManyChange, error) {
		cur = docs[0].Doc
		ch, err := fn(ctx, cur, docs[0].History)
		if err != nil || ch == nil {
			return nil, err
		}
		return &store.ManyChange{Changes: []store.DocChange{{Doc: 0, Change: ch}}, DryRun: ch.DryRun}, nil
	}
	res, err := s.run(ctx, []store.Key{{Collection: collection, ID: id}}, []int{0}, one)
	if err != nil {
		return nil, err
	}
	if len(res.docs) == 0 {
		return cur, nil
	}
	return res.docs[0], nil
}

// UpdateMany runs fn on the current state of several documents and
// commits its changes, all or none, in one READ COMMITTED transaction that
// locks their rows in the byte order of collection and id: two
// UpdateManys, from any replicas, lock in the same order, so they never
// deadlock. Otherwise it behaves as Update (see store.Store).
func (s *Store) UpdateMany(ctx context.Context, keys []store.Key, fn store.ManyFunc) ([]*store.Document, error) {
	order, err := s.gate.EnterWriteMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	defer s.gate.Leave()
	res, err := s.run(ctx, keys, order, fn)
	if err != nil {
		return nil, err
	}
	return res.docs, nil
}

// run runs the transaction of an Update or UpdateMany until it commits,
// fails for good, or the store's deadline passes, and then publishes what
// it committed.
func (s *Store) run(ctx context.Context, keys []store.Key, order []int, fn store.ManyFunc) (attempt, error) {
	what := keys[0].Collection + "/" + keys[0].ID
	if len(keys) > 1 {
		what = fmt.Sprintf("%s and %d more", what, len(keys)-1)
	}
	dctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	// The token identifies this call's versions across its attempts.
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	var pending *attempt // the last attempt, when its commit outcome is unknown
	for n := 1; ; n++ {
		res, err := s.try(dctx, keys, order, fn, token, pending)
		if err == nil {
			if pending != nil {
				outcome := lostNotCommitted
				if res.recovered {
					outcome = lostCommitted
				}
				s.metrics.lostCommits[outcome].Add(1)
			}
			for _, ev := range res.events {
				// This process's own subscribers hear of it at once; the
				// other replicas through the hint.
				s.feed.Publish(ev)
				s.queueHint(ev.Collection, ev.ID, ev.Seq)
			}
			for _, scope := range res.scopes {
				s.boundScope(ctx, scope)
			}
			return res, nil
		}
		var final *finalError
		if errors.As(err, &final) {
			return attempt{}, final.err
		}
		if cerr := ctx.Err(); cerr != nil {
			return attempt{}, fmt.Errorf("store: update %s: %w", what, cerr)
		}
		s.metrics.dbError(err)
		var amb *ambiguousError
		if errors.As(err, &amb) {
			pending = amb.attempt
			s.log.Warn("commit outcome unknown; checking before retrying",
				"collection", keys[amb.attempt.check.doc].Collection, "id", keys[amb.attempt.check.doc].ID,
				"seq", amb.attempt.check.seq, "err", amb.err)
		}
		if s.hooks.onRetry != nil {
			s.hooks.onRetry(err)
		}
		if !retryable(err) || dctx.Err() != nil || n >= maxAttempts {
			return attempt{}, s.giveUp(ctx, what, n, err, pending)
		}
		s.metrics.retries[retryWrite].Add(1)
		s.log.Debug("retrying update", "documents", what, "attempt", n, "err", err)
		if !pause(dctx, backoff(n)) {
			if cerr := ctx.Err(); cerr != nil {
				return attempt{}, fmt.Errorf("store: update %s: %w", what, cerr)
			}
			return attempt{}, s.giveUp(ctx, what, n, err, pending) // the deadline passed meanwhile
		}
	}
}

// giveUp returns the error of a write that stops after n tries, the last
// of which failed with err; pending is the attempt whose commit outcome is
// unknown, if any.
func (s *Store) giveUp(ctx context.Context, what string, n int, err error, pending *attempt) error {
	if pending != nil {
		s.metrics.lostCommits[lostUnknown].Add(1)
		return fmt.Errorf("store: update %s: version %d: %w: %w (after %d tries; last: %w)",
			what, pending.check.seq, ErrCommitUnknown, store.ErrUnavailable, n, err)
	}
	var hist *historyError
	if errors.As(err, &hist) && !retryable(err) {
		return hist.fnErr
	}
	if retryable(err) {
		// Still failing at the deadline, or after maxAttempts: the
		// database is unavailable, whatever this try's error was.
		err = fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return fmt.Errorf("store: update %s (attempt %d): %w", what, n, s.fail(ctx, err))
}

// attempt is what one try would commit.
type attempt struct {
	docs   []*store.Document // per change, the document it commits (nil after a delete)
	events []store.Event     // per change, its version; none for a dry run
	check  versionCheck      // a version the attempt writes, with the call's token
	scopes []string          // the scopes of the idempotency records written
	// recovered marks the attempt a lost commit turned out to have made.
	recovered bool
}

// versionCheck names a version by the index of its document and its seq.
type versionCheck struct {
	doc int
	seq uint64
}

// finalError carries an error that Update returns as it is, without retry:
// the UpdateFunc's own errors, and the store's verdicts such as deleting a
// missing document.
type finalError struct{ err error }

func (e *finalError) Error() string { return e.err.Error() }

// ambiguousError is a COMMIT whose outcome is unknown: the connection was
// lost before its answer arrived.
type ambiguousError struct {
	attempt *attempt
	err     error
}

func (e *ambiguousError) Error() string { return "commit outcome unknown: " + e.err.Error() }
func (e *ambiguousError) Unwrap() error { return e.err }

// historyError is an UpdateFunc error that followed a database error in
// its History: the transaction is aborted, and the database error decides
// whether to retry. If not, Update returns fnErr unchanged.
type historyError struct {
	fnErr, dbErr error
}

func (e *historyError) Error() string { return e.fnErr.Error() }
func (e *historyError) Unwrap() error { return e.dbErr }

// connError is an error that left the connection closed: the transaction
// did not commit, and another connection may succeed.
type connError struct{ err error }

func (e *connError) Error() string { return "connection lost: " + e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

// retryable reports whether a failed try may succeed if run again: a
// serialization failure, a deadlock, a concurrent first write of the
// document, a lost connection, a server restarting or failing over, a
// statement or lock timeout.
func retryable(err error) bool {
	switch errorKind(err) {
	case errConnection, errTimeout, errSerialization, errConflict:
		return true
	}
	return false
}

// docRow is a document's row as locked by a try.
type docRow struct {
	seq       int64
	etag      []byte
	body      []byte
	deleted   bool
	updatedNs int64
}

// document returns the row as a store.Document, or nil for a tombstone or
// a placeholder.
func (r *docRow) document(collection, id string) *store.Document {
	if r.deleted {
		return nil
	}
	return &store.Document{
		Collection: collection,
		ID:         id,
		Body:       r.body,
		ETag:       etagString(r.etag),
		Seq:        uint64(r.seq), // #nosec G115 -- a seq from the database: written by us, non-negative and below 2^63
		UpdatedAt:  time.Unix(0, r.updatedNs).UTC(),
	}
}

const lockDocument = `SELECT seq, etag, body, deleted, updated_ns FROM documents
	WHERE collection = $1 AND id = $2 FOR UPDATE`

// lockRow locks a document's row and returns it. A document that never
// existed has no row for FOR UPDATE to lock, so a placeholder (a tombstone
// at seq 0) is inserted first; a concurrent first write waits on it, and
// it vanishes with a rollback.
func lockRow(ctx context.Context, tx pgx.Tx, collection, id string) (docRow, error) {
	var r docRow
	scan := func() error {
		return tx.QueryRow(ctx, lockDocument, collection, id).Scan(&r.seq, &r.etag, &r.body, &r.deleted, &r.updatedNs)
	}
	err := scan()
	if !errors.Is(err, pgx.ErrNoRows) {
		return r, err
	}
	if _, err := tx.Exec(ctx,
		`INSERT INTO documents (collection, id, seq, etag, body, deleted, updated_ns)
		 VALUES ($1, $2, 0, '', '', true, 0) ON CONFLICT DO NOTHING`,
		collection, id); err != nil {
		return r, err
	}
	return r, scan()
}

// try runs one transaction of Update or UpdateMany. pending is the
// previous attempt when its commit outcome is unknown.
func (s *Store) try(ctx context.Context, keys []store.Key, order []int, fn store.ManyFunc, token []byte, pending *attempt) (_ attempt, err error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) && ctx.Err() == nil {
			err = &connError{err}
		}
		return attempt{}, err
	}
	ended := false // Commit was called: the connection is back in the pool
	defer func() {
		if err != nil && !ended && !isFinal(err) && tx.Conn().IsClosed() {
			err = &connError{err}
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tx.Rollback(rctx) // a no-op after Commit
	}()

	rows := make([]docRow, len(keys))
	for _, i := range order {
		if s.hooks.beforeLock != nil {
			if err := s.hooks.beforeLock(ctx, tx, keys[i].Collection, keys[i].ID); err != nil {
				return attempt{}, err
			}
		}
		if rows[i], err = lockRow(ctx, tx, keys[i].Collection, keys[i].ID); err != nil {
			return attempt{}, err
		}
		if s.hooks.afterLock != nil {
			s.hooks.afterLock(keys[i])
		}
	}
	if pending != nil {
		k, seq := keys[pending.check.doc], pending.check.seq
		if uint64(rows[pending.check.doc].seq) >= seq { // #nosec G115 -- a seq from the database is non-negative
			// The lock waits out the lost session, so the version is there
			// now if that commit happened.
			var got []byte
			err := tx.QueryRow(ctx,
				`SELECT token FROM document_versions WHERE collection = $1 AND id = $2 AND seq = $3`,
				k.Collection, k.ID, int64(seq)).Scan(&got) // #nosec G115 -- seq came from an int64 seq + n (below 2^63)
			switch {
			case err == nil && bytes.Equal(got, token):
				s.log.Info("lost commit acknowledgment: the write had committed",
					"collection", k.Collection, "id", k.ID, "seq", seq)
				res := *pending
				res.recovered = true
				return res, nil
			case err == nil:
				// Another write took that seq: ours did not commit.
			case errors.Is(err, pgx.ErrNoRows):
				s.metrics.lostCommits[lostUnknown].Add(1)
				return attempt{}, &finalError{fmt.Errorf("store: update %s/%s: version %d pruned before it could be checked: %w: %w",
					k.Collection, k.ID, seq, ErrCommitUnknown, store.ErrUnavailable)}
			default:
				return attempt{}, err
			}
		}
	}

	docs := make([]store.Locked, len(keys))
	hists := make([]*txHistory, len(keys))
	for i, k := range keys {
		hists[i] = &txHistory{tx: tx, collection: k.Collection, id: k.ID, max: s.maxHistory}
		docs[i] = store.Locked{Doc: rows[i].document(k.Collection, k.ID), Seq: uint64(rows[i].seq), History: hists[i]} // #nosec G115 -- a seq from the database is non-negative
	}
	mc, err := fn(ctx, docs)
	for _, h := range hists {
		h.done.Store(true)
	}
	if err != nil {
		for _, h := range hists {
			if h.err != nil {
				return attempt{}, &historyError{fnErr: err, dbErr: h.err}
			}
		}
		return attempt{}, &finalError{err}
	}
	if mc == nil || len(mc.Changes) == 0 {
		return attempt{}, nil // the deferred rollback drops any placeholder
	}
	if err := store.CheckMany(keys, docs, mc); err != nil {
		return attempt{}, &finalError{err}
	}
	if err := ctx.Err(); err != nil && !mc.DryRun {
		return attempt{}, err
	}

	at := time.Unix(0, s.now().UnixNano()).UTC() // as stored: no monotonic reading
	res := attempt{docs: make([]*store.Document, len(mc.Changes))}
	seqs := make([]int64, len(keys))
	for i := range rows {
		seqs[i] = rows[i].seq
	}
	// Everything the call commits goes in this one batch, in this
	// transaction, the idempotency records included.
	b := &pgx.Batch{}
	touched := make([]bool, len(keys))
	idem := false
	claims := map[int]store.Key{} // the batch index of each idempotency claim
	for j, dc := range mc.Changes {
		k, change := keys[dc.Doc], dc.Change
		seqs[dc.Doc]++
		seq := seqs[dc.Doc]
		touched[dc.Doc] = true
		var etag []byte
		if change.Body != nil {
			res.docs[j] = &store.Document{
				Collection: k.Collection,
				ID:         k.ID,
				Body:       bytes.Clone(change.Body),
				ETag:       store.ETagOf(change.Body),
				Seq:        uint64(seq), // #nosec G115 -- the database's non-negative seq + n
				UpdatedAt:  at,
			}
			etag, _ = etagBytes(res.docs[j].ETag)
		}
		res.events = append(res.events, store.Event{Collection: k.Collection, ID: k.ID, Seq: uint64(seq)}) // #nosec G115 -- as above
		if j == 0 {
			res.check = versionCheck{doc: dc.Doc, seq: uint64(seq)} // #nosec G115 -- as above
		}
		// The version's position in the collection's change log (migration
		// 0005): this transaction's id, or the previous version's position
		// if that is greater, so that the document's versions stay in seq
		// order.
		b.Queue(`UPDATE documents SET seq = $3, etag = $4, body = $5, deleted = $6, updated_ns = $7,
				pos = GREATEST(pg_current_xact_id(), pos)
			WHERE collection = $1 AND id = $2`,
			k.Collection, k.ID, seq, nonNil(etag), nonNil(change.Body), change.Body == nil, at.UnixNano())
		b.Queue(`INSERT INTO document_versions
			(collection, id, seq, etag, kind, ops, rebased_from, token, at_ns, actor, request_id, reverts, pos)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
				(SELECT pos FROM documents WHERE collection = $1 AND id = $2))`,
			k.Collection, k.ID, seq, nonNil(etag), change.Kind, nonNil(change.Ops), change.RebasedFrom, token, at.UnixNano(),
			change.Actor, change.RequestID, int64(change.Reverts)) // #nosec G115 -- a seq the caller read from history
		if r := change.Idempotency; r != nil {
			// The claim: a live record under the key, committed by any
			// replica, refuses the write; an uncommitted one is waited for,
			// then decides the same way. An expired one is replaced.
			idem = true
			claims[b.Len()] = k
			b.Queue(`INSERT INTO idempotency_keys (key, scope, seq, value, expires_ns) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (key) DO UPDATE SET scope = EXCLUDED.scope, seq = EXCLUDED.seq, value = EXCLUDED.value, expires_ns = EXCLUDED.expires_ns
				WHERE idempotency_keys.expires_ns <= $6`,
				[]byte(r.Key), []byte(r.Scope), seq, nonNil(r.Value), r.Expires.UnixNano(), at.UnixNano())
			res.scopes = append(res.scopes, r.Scope)
		}
	}
	if mc.DryRun {
		res.events = nil
		return res, nil // the deferred rollback drops any placeholder
	}
	for i, k := range keys {
		if keep := int64(s.retention.Versions); touched[i] && seqs[i] > keep {
			// Prune from the oldest while store.Retention.Prunable says so:
			// never the newest Versions, and stop at the first version
			// younger than Age.
			// The document remembers the position of the newest version
			// pruned, so that a change log reader learns that a change it
			// has not read is gone.
			b.Queue(`WITH gone AS (
					DELETE FROM document_versions
					WHERE collection = $1 AND id = $2 AND seq < LEAST($3::bigint, COALESCE(
						(SELECT seq FROM document_versions
						 WHERE collection = $1 AND id = $2 AND seq < $3::bigint AND at_ns >= $4
						 ORDER BY seq LIMIT 1), $3::bigint))
					RETURNING pos, seq)
				UPDATE documents d SET pruned_pos = g.pos, pruned_seq = g.seq
				FROM (SELECT pos, seq FROM gone ORDER BY seq DESC LIMIT 1) g
				WHERE d.collection = $1 AND d.id = $2`,
				k.Collection, k.ID, seqs[i]-keep+1, at.UnixNano()-s.retention.Age.Nanoseconds())
		}
	}
	if idem {
		// Expired records go a few at a time, as the writes that make
		// records come, like the bbolt store's; rows another write holds
		// are left for later.
		b.Queue(`DELETE FROM idempotency_keys WHERE expires_ns <= $1 AND key IN
			(SELECT key FROM idempotency_keys WHERE expires_ns <= $1 ORDER BY expires_ns LIMIT $2 FOR UPDATE SKIP LOCKED)`,
			at.UnixNano(), store.IdempotencyPruneBatch)
	}
	br := tx.SendBatch(ctx, b)
	for i := range b.Len() {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return attempt{}, err
		}
		if k, ok := claims[i]; ok && tag.RowsAffected() == 0 {
			_ = br.Close()
			return attempt{}, &finalError{fmt.Errorf("store: update %s/%s: %w", k.Collection, k.ID, store.ErrIdempotencyExists)}
		}
	}
	if err := br.Close(); err != nil {
		return attempt{}, err
	}
	if s.hooks.beforeCommit != nil {
		if err := s.hooks.beforeCommit(ctx, tx); err != nil {
			return attempt{}, err
		}
	}

	// COMMIT runs even if ctx ends meanwhile, until the call's deadline
	// (at least minCommitWait).
	deadline := time.Now().Add(minCommitWait)
	if d, ok := ctx.Deadline(); ok && d.After(deadline) {
		deadline = d
	}
	cctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	ended = true
	if err := tx.Commit(cctx); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return attempt{}, err // the server refused: nothing committed
		}
		return attempt{}, &ambiguousError{attempt: &res, err: err}
	}
	if s.hooks.afterCommit != nil {
		if err := s.hooks.afterCommit(); err != nil {
			return attempt{}, &ambiguousError{attempt: &res, err: err}
		}
	}
	return res, nil
}

// isFinal reports whether err is returned by Update without retry.
func isFinal(err error) bool {
	var (
		f *finalError
		a *ambiguousError
	)
	return errors.As(err, &f) || errors.As(err, &a)
}

// nonNil returns b, or an empty slice for nil: the columns are NOT NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// txHistory is the History passed to an UpdateFunc: it reads in the
// transaction that holds the document's row lock, so it sees the same
// state as the UpdateFunc's document.
type txHistory struct {
	tx         pgx.Tx
	collection string
	id         string
	done       atomic.Bool // set when the UpdateFunc returns
	err        error       // the first database error, which aborted tx
	max        int         // store.Options.MaxHistoryRead
}

// sinceQuery returns the query of the versions of document ($1, $2) from
// seq base on (an SQL expression), oldest first, that collectSince needs
// to tell whether the later ones pass $3 bytes of ops: the versions whose
// predecessors after base stay within $3. The rest are not sent.
// octet_length does not decompress or fetch a stored value.
func sinceQuery(base string) string {
	return `SELECT ` + versionColumns + ` FROM (
		  SELECT ` + versionColumns + `,
		    coalesce(sum(coalesce(octet_length(ops), 0)) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
		    - first_value(coalesce(octet_length(ops), 0)) OVER (ORDER BY seq) AS before
		  FROM document_versions
		  WHERE collection = $1 AND id = $2 AND seq >= ` + base + `) v
		WHERE before <= $3 ORDER BY seq`
}

// Since finds the newest retained version whose ETag is one of etags and
// returns it with every later version, oldest first. Returns
// ErrBaseUnknown if no retained version matches. An empty ETag (that of a
// delete) matches nothing.
func (h *txHistory) Since(ctx context.Context, etags []string) (store.Version, []store.Version, error) {
	if h.done.Load() {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s: history used after its UpdateFunc returned", h.collection, h.id)
	}
	if err := ctx.Err(); err != nil {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s: %w", h.collection, h.id, err)
	}
	if h.err != nil {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s: %w", h.collection, h.id, h.err)
	}
	keys := make([][]byte, 0, len(etags))
	for _, e := range etags {
		if b, ok := etagBytes(e); ok {
			keys = append(keys, b)
		}
	}
	if len(keys) == 0 {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s: %w", h.collection, h.id, store.ErrBaseUnknown)
	}
	rows, err := h.tx.Query(ctx, sinceQuery(`(
		   SELECT seq FROM document_versions
		   WHERE collection = $1 AND id = $2 AND etag = ANY($4)
		   ORDER BY seq DESC LIMIT 1)`),
		h.collection, h.id, h.max, keys)
	var vs []store.Version
	if err == nil {
		vs, err = collectSince(rows, 0, h.max)
	}
	if errors.Is(err, store.ErrHistoryTooLarge) || errors.Is(err, store.ErrBaseUnknown) {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s: %w", h.collection, h.id, err)
	}
	if err != nil {
		h.err = err
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s: %w", h.collection, h.id, ctxErr(ctx, err))
	}
	if len(vs) == 0 {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s: %w", h.collection, h.id, store.ErrBaseUnknown)
	}
	return vs[0], vs[1:], nil
}

// SinceSeq returns the retained version seq with every later version,
// oldest first. Returns ErrBaseUnknown if version seq is not retained.
func (h *txHistory) SinceSeq(ctx context.Context, seq uint64) (store.Version, []store.Version, error) {
	if h.done.Load() {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s: history used after its UpdateFunc returned", h.collection, h.id)
	}
	if err := ctx.Err(); err != nil {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s: %w", h.collection, h.id, err)
	}
	if h.err != nil {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s: %w", h.collection, h.id, h.err)
	}
	if seq == 0 || seq > math.MaxInt64 {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s seq %d: %w", h.collection, h.id, seq, store.ErrBaseUnknown)
	}
	rows, err := h.tx.Query(ctx, sinceQuery(`$4`), h.collection, h.id, h.max, int64(seq))
	var vs []store.Version
	if err == nil {
		vs, err = collectSince(rows, seq, h.max)
	}
	if errors.Is(err, store.ErrHistoryTooLarge) || errors.Is(err, store.ErrBaseUnknown) {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s: %w", h.collection, h.id, err)
	}
	if err != nil {
		h.err = err
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s: %w", h.collection, h.id, ctxErr(ctx, err))
	}
	if len(vs) == 0 || vs[0].Seq != seq {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s seq %d: %w", h.collection, h.id, seq, store.ErrBaseUnknown)
	}
	return vs[0], vs[1:], nil
}
