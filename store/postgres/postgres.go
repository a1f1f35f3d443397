// Package postgres is a store.Store kept in PostgreSQL, so that several
// stateless patchd replicas can serve the same documents.
//
// Bodies are stored as the exact canonical bytes the ETag hashes (bytea,
// never jsonb), so every replica computes the same ETags, and history
// versions keep the ops the handlers give, with their undo information,
// so rebase gives the same outcome on every replica.
//
// Every write is one READ COMMITTED transaction that locks the document's
// row (SELECT ... FOR UPDATE, or inserts a placeholder row to lock when the
// document has never existed), runs the UpdateFunc on the locked state,
// and writes the document, its new version and its idempotency record,
// whose key the insert claims: a key taken on any replica fails the write
// with store.ErrIdempotencyExists. Serialization failures, deadlocks, lost
// connections and a restarting server are retried with jitter until the
// store's deadline (store.Options.Timeout); a per-call token recorded with
// the version tells, after a commit whose outcome was lost with its
// connection, whether it happened, so that a write is never applied twice.
//
// Every call is bounded by that deadline, the wait for a pooled
// connection included, and the server gets it as its statement and lock
// timeouts; a database that cannot be reached or does not answer in time
// gives errors wrapping store.ErrUnavailable. Reads are retried like
// writes within the deadline.
//
// The schema is created and upgraded at Open by embedded SQL migrations
// under an advisory lock, so several replicas may start at once.
//
// After each commit a NOTIFY hint (collection, id, seq) is sent, outside
// the write transaction; Subscribe turns them, from every replica, into
// store.Events.
package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/patchd/patchd/store"
)

// Defaults applied by Open to zero Options fields of this backend.
const (
	defaultMaxConns     = 16
	defaultPollInterval = 15 * time.Second
	// maxAttempts bounds the tries of one write; the deadline usually
	// ends them first.
	maxAttempts = 100
	// cancelDelay is how long a statement whose context ended may take to
	// answer the cancel request before its connection is closed: a frozen
	// server answers nothing, and the caller must not wait for it.
	cancelDelay = time.Second
)

func init() {
	open := func(ctx context.Context, url string, opts store.Options) (store.Store, error) {
		return Open(ctx, url, Options{Options: opts})
	}
	store.Register("postgres", open)
	store.Register("postgresql", open)
}

// Options configures Open: the options every backend takes, and this
// backend's own. The zero value is usable.
type Options struct {
	store.Options
	// MaxConns is the size of the connection pool when the URL has no
	// pool_max_conns parameter. Zero means 16. Each replica also holds one
	// more connection for the change feed once Subscribe is called.
	MaxConns int32
	// PollInterval is how often the change feed sends a Resync event as a
	// safety net for lost notifications. Zero means 15s.
	PollInterval time.Duration
}

// Store is a store.Store in a PostgreSQL database. It is safe for
// concurrent use, by any number of processes over the same database.
type Store struct {
	pool      *pgxpool.Pool
	retention store.Retention
	now       func() time.Time
	log       *slog.Logger
	poll      time.Duration
	timeout   time.Duration // bounds every call (store.Options.Timeout)

	idemPerScope int         // live idempotency records kept per scope; < 1: no bound
	maxHistory   int         // store.Options.MaxHistoryRead
	evictTicks   scopeTicker // when to bound a scope's records

	gate store.Gate // calls in progress; Close waits for them

	dbTag []byte // the first bytes of the database's id, for its cursors; nil when read-only (no cursors made)

	origin       string        // names this Store in its hints
	hints        chan string   // commit hints waiting for sendHints
	hintsDropped atomic.Bool   // a hint was dropped: send a Resync hint
	hintsDone    chan struct{} // closed when sendHints has ended

	feed       store.Broadcaster
	listenOnce sync.Once
	stopListen context.CancelFunc // ends the listener; set by listenOnce
	listenDone chan struct{}      // closed when the listener has ended

	presenceFeed store.Broadcaster  // hints of changed presence sessions
	sweepOnce    sync.Once          // starts the sweeper of expired sessions
	stopSweep    context.CancelFunc // ends the sweeper; set by sweepOnce
	sweepDone    chan struct{}      // closed when the sweeper has ended

	metrics *collector
	hooks   hooks // fault injection for tests; zero in production
}

// hooks let tests inject faults around a commit.
type hooks struct {
	// beforeLock runs at the start of a write's transaction, before it
	// locks the document's row.
	beforeLock func(ctx context.Context, tx pgx.Tx, collection, id string) error
	// beforeCommit runs after the write statements, before COMMIT.
	beforeCommit func(ctx context.Context, tx pgx.Tx) error
	// afterCommit runs after a successful COMMIT; an error it returns is
	// treated as a commit whose outcome is unknown.
	afterCommit func() error
	// afterLock runs after each document's row is locked.
	afterLock func(k store.Key)
	// onRetry runs with the error of each failed try before retry is
	// decided.
	onRetry func(err error)
	// listenHealthy is how long a change feed connection must stay up for
	// its reconnection backoff to start afresh; zero means listenHealthy.
	listenHealthy time.Duration
}

var (
	_ store.Store             = (*Store)(nil)
	_ store.Dumper            = (*Store)(nil)
	_ store.Loader            = (*Store)(nil)
	_ store.IdempotencyCopier = (*Store)(nil)
)

// Open connects to the database at url (a postgres:// URL; pgx's
// parameters such as pool_max_conns and sslmode apply), applies the
// schema migrations it lacks, and returns the Store. When the database
// cannot be reached, the error wraps store.ErrUnavailable, and a later
// Open may succeed.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	so := opts.WithDefaults()
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = opts.MaxConns
		if cfg.MaxConns <= 0 {
			cfg.MaxConns = defaultMaxConns
		}
	}
	rp := cfg.ConnConfig.RuntimeParams
	if rp["application_name"] == "" {
		rp["application_name"] = "patchd"
	}
	// A session stuck in a transaction must not hold a document's lock
	// for long; UpdateFuncs are bounded far below this.
	if rp["idle_in_transaction_session_timeout"] == "" {
		rp["idle_in_transaction_session_timeout"] = "60000"
	}
	// No statement and no lock wait outlives a call's deadline on the
	// server either; migrations, dumps and loads lift them (noTimeouts).
	ms := strconv.FormatInt(so.Timeout.Milliseconds(), 10)
	for _, p := range []string{"statement_timeout", "lock_timeout"} {
		if rp[p] == "" {
			rp[p] = ms
		}
	}
	// Connecting (a server forking a backend, TLS, authentication) may
	// take longer than one statement should on a loaded host; a call's own
	// deadline still bounds a connect made for it.
	if !strings.Contains(url, "connect_timeout") {
		cfg.ConnConfig.ConnectTimeout = max(so.Timeout, minConnectTimeout)
	}
	// A canceled context cancels the statement on the server (a waiter for
	// a row lock stops waiting), and the connection stays usable; a server
	// that does not answer the cancel in time loses the connection.
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: cancelDelay}
	}

	s := &Store{
		retention:    so.Retention,
		now:          so.Now,
		log:          so.Logger.With("component", "store"),
		poll:         opts.PollInterval,
		timeout:      so.Timeout,
		idemPerScope: so.IdempotencyPerScope,
		maxHistory:   so.MaxHistoryRead,
		evictTicks:   scopeTicker{every: max(1, so.IdempotencyPerScope/8)},
	}
	s.gate.ReadOnly = so.ReadOnly
	if s.poll <= 0 {
		s.poll = defaultPollInterval
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if !so.ReadOnly {
		err := migrate(ctx, pool, s.log)
		if err == nil {
			s.dbTag, err = readDBTag(ctx, pool)
		}
		if err != nil {
			pool.Close()
			if cerr := ctx.Err(); cerr != nil {
				err = cerr
			}
			return nil, fmt.Errorf("postgres: %w", wrapUnavailable(err))
		}
	}
	s.pool = pool
	s.metrics = newCollector(s)
	s.hints, s.hintsDone = make(chan string, hintQueue), make(chan struct{})
	var origin [8]byte
	_, _ = rand.Read(origin[:]) // crypto/rand.Read never fails
	s.origin = hex.EncodeToString(origin[:])
	go s.sendHints() // #nosec G118 -- outlives Open, whose ctx may end when Open returns; Close stops it, and each batch has its own timeout
	s.log.Debug("opened", "host", cfg.ConnConfig.Host, "database", cfg.ConnConfig.Database,
		"max_conns", cfg.MaxConns, "timeout", s.timeout, "history_versions", s.retention.Versions, "history_age", s.retention.Age)
	return s, nil
}

// Close waits for calls in progress, stops the change feed and closes the
// connection pool. Later calls of any method, Close included, return an
// error wrapping store.ErrClosed.
func (s *Store) Close() error {
	if err := s.gate.Shut(); err != nil {
		return fmt.Errorf("postgres: close: %w", err)
	}
	if s.stopSweep != nil {
		s.stopSweep()
		<-s.sweepDone
	}
	close(s.hints) // no Update is in progress; send what is queued
	<-s.hintsDone
	if s.stopListen != nil {
		s.stopListen()
		<-s.listenDone
	}
	s.feed.Close()
	s.presenceFeed.Close()
	s.pool.Close()
	s.log.Debug("closed")
	return nil
}

// Get returns the current document. Returns ErrNotFound if it does not
// exist.
func (s *Store) Get(ctx context.Context, collection, id string) (*store.Document, error) {
	if err := s.gate.EnterRead(ctx, "get", collection, id); err != nil {
		return nil, err
	}
	defer s.gate.Leave()
	doc := &store.Document{Collection: collection, ID: id}
	var (
		seq, ns int64
		etag    []byte
	)
	err := s.read(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx,
			`SELECT seq, etag, body, updated_ns FROM documents
			 WHERE collection = $1 AND id = $2 AND NOT deleted`,
			collection, id).Scan(&seq, &etag, &doc.Body, &ns)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: get %s/%s: %w", collection, id, err)
	}
	doc.Seq, doc.ETag, doc.UpdatedAt = uint64(seq), etagString(etag), time.Unix(0, ns).UTC() // #nosec G115 -- a seq from the database is non-negative
	return doc, nil
}

// ETag returns the ETag of the current document without its body.
// Returns an error wrapping store.ErrNotFound if it does not exist.
func (s *Store) ETag(ctx context.Context, collection, id string) (string, error) {
	if err := s.gate.EnterRead(ctx, "etag", collection, id); err != nil {
		return "", err
	}
	defer s.gate.Leave()
	var etag []byte
	err := s.read(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx,
			`SELECT etag FROM documents WHERE collection = $1 AND id = $2 AND NOT deleted`,
			collection, id).Scan(&etag)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("store: etag %s/%s: %w", collection, id, err)
	}
	return etagString(etag), nil
}

// List returns up to limit documents of a collection whose id sorts after
// the given one ("" for the start), in byte order of ids, and whether more
// follow. A limit of zero or less means no limit.
func (s *Store) List(ctx context.Context, collection, after string, limit int) ([]store.ListEntry, bool, error) {
	if err := s.gate.Enter(ctx, "list "+collection); err != nil {
		return nil, false, err
	}
	defer s.gate.Leave()
	if !store.ValidCollection(collection) || (after != "" && !store.ValidName(after)) {
		return nil, false, nil
	}
	n := int64(math.MaxInt64)
	if limit > 0 {
		n = int64(limit) + 1
	}
	var entries []store.ListEntry
	err := s.read(ctx, func(ctx context.Context) error {
		entries = entries[:0]
		rows, err := s.pool.Query(ctx,
			`SELECT id, etag, seq FROM documents
			 WHERE collection = $1 AND id > $2 AND NOT deleted
			 ORDER BY id LIMIT $3`,
			collection, after, n)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				e    store.ListEntry
				etag []byte
				seq  int64
			)
			if err := rows.Scan(&e.ID, &etag, &seq); err != nil {
				return err
			}
			e.ETag, e.Seq = etagString(etag), uint64(seq) // #nosec G115 -- a seq from the database is non-negative
			entries = append(entries, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, false, fmt.Errorf("store: list %s: %w", collection, err)
	}
	more := false
	if limit > 0 && len(entries) > limit {
		entries, more = entries[:limit], true
	}
	return entries, more, nil
}

// versionColumns are the columns scanVersion reads, in order.
const versionColumns = `seq, etag, at_ns, kind, ops, rebased_from, actor, request_id, reverts`

// minConnectTimeout is the least time a connection attempt is given.
const minConnectTimeout = 5 * time.Second

// scanVersion reads one row of versionColumns.
func scanVersion(row pgx.Row) (store.Version, error) {
	var (
		v                store.Version
		seq, ns, reverts int64
		etag             []byte
	)
	if err := row.Scan(&seq, &etag, &ns, &v.Kind, &v.Ops, &v.RebasedFrom, &v.Actor, &v.RequestID, &reverts); err != nil {
		return store.Version{}, err
	}
	v.Seq, v.ETag, v.At = uint64(seq), etagString(etag), time.Unix(0, ns).UTC() // #nosec G115 -- a seq from the database is non-negative
	v.Reverts = uint64(reverts)                                                 // #nosec G115 -- as seq
	if len(v.Ops) == 0 {
		v.Ops = nil
	}
	return v, nil
}

// collectSince reads the rows of a base version and the versions after
// it, and fails with store.ErrHistoryTooLarge, decoding no further, once
// the later versions' ops pass max bytes (sinceQuery sends no row past
// the one that passes them). With base not 0, a first row of another seq is
// store.ErrBaseUnknown (base was pruned).
func collectSince(rows pgx.Rows, base uint64, max int) ([]store.Version, error) {
	defer rows.Close()
	var (
		vs   []store.Version
		size int
	)
	for rows.Next() {
		v, err := scanVersion(rows)
		if err != nil {
			return nil, err
		}
		if len(vs) == 0 && base != 0 && v.Seq != base {
			return nil, store.ErrBaseUnknown
		}
		if len(vs) > 0 {
			if size += len(v.Ops); size > max {
				return nil, store.ErrHistoryTooLarge
			}
		}
		vs = append(vs, v)
	}
	return vs, rows.Err()
}

// Idempotency returns the record committed with a write under key.
// Returns ErrNotFound if there is none or it has expired.
func (s *Store) Idempotency(ctx context.Context, key string) (*store.IdempotencyRecord, error) {
	if err := s.gate.Enter(ctx, "idempotency"); err != nil {
		return nil, err
	}
	defer s.gate.Leave()
	rec := &store.IdempotencyRecord{Key: key}
	var (
		ns, seq int64
		scope   []byte
	)
	err := s.read(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx,
			`SELECT scope, seq, value, expires_ns FROM idempotency_keys WHERE key = $1 AND expires_ns > $2`,
			[]byte(key), s.now().UnixNano()).Scan(&scope, &seq, &rec.Value, &ns)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: idempotency: %w", err)
	}
	rec.Scope, rec.Seq, rec.Expires = string(scope), uint64(seq), time.Unix(0, ns).UTC() // #nosec G115 -- a seq from the database is non-negative
	return rec, nil
}

// Ping checks that the database answers a trivial query within the store's
// deadline (see store.Store).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.gate.Enter(ctx, "ping"); err != nil {
		return err
	}
	defer s.gate.Leave()
	dctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.pool.Ping(dctx); err != nil {
		s.metrics.dbError(err)
		return fmt.Errorf("store: ping: %w", s.fail(ctx, err))
	}
	return nil
}

// History returns up to limit retained versions of a document with seq
// greater than after, oldest first, and whether more follow. A limit of
// zero or less means no limit; a positive maxBytes ends the page before the
// first version that would take the total length of its ops past maxBytes
// (the first version is always returned). Returns ErrNotFound if the
// document has no history at all.
func (s *Store) History(ctx context.Context, collection, id string, after uint64, limit, maxBytes int) ([]store.Version, bool, error) {
	if err := s.gate.EnterRead(ctx, "history", collection, id); err != nil {
		return nil, false, err
	}
	defer s.gate.Leave()
	if after > math.MaxInt64 {
		after = math.MaxInt64
	}
	n := int64(math.MaxInt64)
	if limit > 0 {
		n = int64(limit) + 1
	}
	budget := int64(math.MaxInt64)
	if maxBytes > 0 {
		budget = int64(maxBytes)
	}
	// One statement, so that "no versions after" and "no history" are
	// told apart in the same snapshot: the first row (k = 0) is the newest
	// version's seq, a sentinel never returned, when any version exists.
	// The running total of the ops' lengths (octet_length reads no
	// TOASTed value) marks the rows past maxBytes: they come without their
	// ops, and only tell that more follow.
	var (
		vs    []store.Version
		found bool
		more  bool
	)
	err := s.read(ctx, func(ctx context.Context) error {
		vs, found, more = nil, false, false
		rows, err := s.pool.Query(ctx,
			`SELECT k, `+versionColumns+` FROM (
			   (SELECT 0 AS k, seq, etag, at_ns, kind, NULL::bytea AS ops, rebased_from, actor, request_id, reverts FROM document_versions
			     WHERE collection = $1 AND id = $2 ORDER BY seq DESC LIMIT 1)
			   UNION ALL
			   (SELECT CASE WHEN fits THEN 1 ELSE 2 END, seq, etag, at_ns, kind, CASE WHEN fits THEN ops END, rebased_from, actor, request_id, reverts FROM (
			      SELECT seq, etag, at_ns, kind, ops, rebased_from, actor, request_id, reverts,
			             row_number() OVER w = 1 OR sum(octet_length(ops)) OVER w <= $5 AS fits
			        FROM document_versions
			       WHERE collection = $1 AND id = $2 AND seq > $3
			      WINDOW w AS (ORDER BY seq) ORDER BY seq LIMIT $4) page)
			 ) versions ORDER BY k, seq`,
			collection, id, int64(after), n, budget) // #nosec G115 -- after is capped at MaxInt64 above
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				k                int
				v                store.Version
				seq, ns, reverts int64
				etag             []byte
			)
			if err := rows.Scan(&k, &seq, &etag, &ns, &v.Kind, &v.Ops, &v.RebasedFrom, &v.Actor, &v.RequestID, &reverts); err != nil {
				return err
			}
			switch {
			case k == 0:
				found = true
				continue
			case k == 2 || (limit > 0 && len(vs) == limit):
				more = true
				continue
			}
			v.Seq, v.ETag, v.At = uint64(seq), etagString(etag), time.Unix(0, ns).UTC() // #nosec G115 -- a seq from the database is non-negative
			v.Reverts = uint64(reverts)                                                 // #nosec G115 -- as seq
			if len(v.Ops) == 0 {
				v.Ops = nil
			}
			vs = append(vs, v)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, false, fmt.Errorf("store: history %s/%s: %w", collection, id, err)
	}
	if !found {
		return nil, false, fmt.Errorf("store: history %s/%s: %w", collection, id, store.ErrNotFound)
	}
	return vs, more, nil
}

// etagBytes returns the 16 bytes an ETag spells, or false if it is not
// one that store.ETagOf could have made.
func etagBytes(etag string) ([]byte, bool) {
	if len(etag) != 34 || etag[0] != '"' || etag[33] != '"' {
		return nil, false
	}
	for i := 1; i < 33; i++ {
		if c := etag[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return nil, false
		}
	}
	b, err := hex.DecodeString(etag[1:33])
	return b, err == nil
}

// etagString is the inverse of etagBytes; empty bytes give "".
func etagString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return `"` + hex.EncodeToString(b) + `"`
}

// ctxErr returns ctx's error in place of err when ctx is done: a canceled
// statement reports itself in many ways, and callers test for the context's
// error.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && err != nil {
		return cerr
	}
	return err
}
