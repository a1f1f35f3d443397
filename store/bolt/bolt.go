package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/patchd/patchd/store"
)

// The bbolt layout, format "1":
//
//	meta/format                    "1"
//	docs/<collection>/<id>         seq (8, big endian) | unix nanos (8, big endian) | ETag (34) | body
//	hist/<collection>/<id>\x00<seq> version value (see encodeVersion)
//	idem/<key>                     expiry unix nanos (8, big endian) | value
//	idemexp/<expiry (8)><key>      the record's seq (8) and scope: idem records in expiry order
//	idemscope/<scope><expiry><key> empty: each scope's records in expiry order (see scopeKey)
//	idemcount/<scope>              the number of records in idemscope of the scope (8, big endian)
//
// Ids never contain 0x00, so each document's history keys are contiguous
// and ordered by seq.
const boltFormat = "1"

var (
	bucketMeta = []byte("meta")
	bucketDocs = []byte("docs")
	bucketHist = []byte("hist")
	keyFormat  = []byte("format")
)

const (
	etagLen      = 34 // len(store.ETagOf(x))
	docHeaderLen = 8 + 8 + etagLen
	seqLen       = 8
)

func init() {
	store.Register(store.PathScheme, func(_ context.Context, location string, opts store.Options) (store.Store, error) {
		return Open(strings.TrimPrefix(location, "file://"), opts)
	})
}

// Store is a store.Store kept in a single bbolt file. Every commit is
// synced to disk before Update returns. Only one process can open the file
// at a time.
//
// Updates of one document are serialized by an in-process lock, and the
// UpdateFunc runs outside any bbolt transaction, so that the work of
// updates to different documents runs concurrently; only the short writes
// run inside bbolt's single write transaction, and concurrent Updates share
// its commits (the group committer, batch.go).
type Store struct {
	db        *bbolt.DB
	path      string
	retention store.Retention
	now       func() time.Time
	log       *slog.Logger

	gate store.Gate        // calls in progress; Close waits for them
	feed store.Broadcaster // every commit, for Subscribe

	locksMu sync.Mutex
	locks   map[string]*docLock // by lockKey; only while in use

	committer *committer
	metrics   *collector

	timeout      time.Duration // bounds the wait for a document's lock
	idemPerScope int           // live idempotency records kept per scope; < 1: no bound

	claimsMu sync.Mutex
	claims   map[string]struct{} // idempotency keys of queued writes (see claim)
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Backuper = (*Store)(nil)
	_ store.Checker  = (*Store)(nil)
	_ store.Dumper   = (*Store)(nil)
	_ store.Loader   = (*Store)(nil)
)

// docLock serializes the Updates of one document. It is a channel rather
// than a sync.Mutex so that a waiting Update can give up when its context
// is done.
type docLock struct {
	ch   chan struct{} // holds a token while the document is locked
	refs int           // holders and waiters; guarded by Store.locksMu
}

// Open opens or creates the bbolt database at path (mode 0600). With
// opts.ReadOnly it opens an existing file for reading only, and fails with
// an error wrapping os.ErrNotExist when there is none. It returns an error
// wrapping store.ErrUnknownFormat if the file holds a database of another
// format, and one wrapping store.ErrLocked if another process holds the
// file for longer than opts.LockTimeout.
func Open(path string, opts store.Options) (*Store, error) {
	opts = opts.WithDefaults()
	b := &Store{
		path:      path,
		retention: opts.Retention,
		now:       opts.Now,
		log:       opts.Logger.With("component", "store"),
		locks:     make(map[string]*docLock),

		timeout:      opts.Timeout,
		idemPerScope: opts.IdempotencyPerScope,
		claims:       make(map[string]struct{}),
	}
	b.gate.ReadOnly = opts.ReadOnly
	if opts.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("store: open %s: %w", path, err)
		}
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:      opts.LockTimeout,
		FreelistType: bbolt.FreelistMapType,
		ReadOnly:     opts.ReadOnly,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: open %s: %w%s", path, store.ErrLocked, lockHolder(path))
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	check := db.Update
	if opts.ReadOnly {
		check = db.View
	}
	if err := check(func(tx *bbolt.Tx) error { return initLayout(tx, !opts.ReadOnly) }); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	b.db = db
	b.committer = newCommitter(b)
	b.metrics = newCollector(b)
	b.log.Debug("opened", "path", path, "read_only", opts.ReadOnly,
		"history_versions", b.retention.Versions, "history_age", b.retention.Age)
	return b, nil
}

// initLayout checks the format of a file and, when create is set, creates
// what a fresh (or older) file lacks. Without create it changes nothing: a
// read-only file must hold the meta, docs and hist buckets already.
func initLayout(tx *bbolt.Tx, create bool) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		_ = tx.ForEach(func([]byte, *bbolt.Bucket) error {
			empty = false
			return nil
		})
		if !empty || !create {
			return fmt.Errorf("%w: no %q bucket", store.ErrUnknownFormat, bucketMeta)
		}
		var err error
		if meta, err = tx.CreateBucket(bucketMeta); err != nil {
			return err
		}
		if err := meta.Put(keyFormat, []byte(boltFormat)); err != nil {
			return err
		}
	}
	if v := meta.Get(keyFormat); string(v) != boltFormat {
		return fmt.Errorf("%w: format %q, want %q", store.ErrUnknownFormat, v, boltFormat)
	}
	for _, name := range [][]byte{bucketDocs, bucketHist, bucketIdem, bucketIdemExp, bucketIdemScope, bucketIdemCount} {
		if !create {
			if tx.Bucket(name) == nil && (bytes.Equal(name, bucketDocs) || bytes.Equal(name, bucketHist)) {
				return fmt.Errorf("%w: no %q bucket", store.ErrUnknownFormat, name)
			}
			continue
		}
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// Close waits for calls in progress, then closes the database file. Later
// calls of any method, Close included, return an error wrapping
// store.ErrClosed.
func (b *Store) Close() error {
	if err := b.gate.Shut(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	b.committer.stop()
	b.feed.Close()
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", b.path, err)
	}
	b.log.Debug("closed", "path", b.path)
	return nil
}

// Check runs bbolt's consistency check over the whole file and returns the
// first problem it finds, or nil.
func (b *Store) Check(ctx context.Context) error {
	if err := b.gate.Enter(ctx, "check"); err != nil {
		return err
	}
	defer b.gate.Leave()
	err := b.db.View(func(tx *bbolt.Tx) error {
		var first error
		for err := range tx.Check() { // drain, so the checker goroutine ends
			if first == nil {
				first = err
			}
		}
		return first
	})
	if err != nil {
		return fmt.Errorf("store: check %s: %w", b.path, err)
	}
	return nil
}

// Ping checks that the file can be read (see store.Store); an open bbolt
// file is always available.
func (b *Store) Ping(ctx context.Context) error {
	if err := b.gate.Enter(ctx, "ping"); err != nil {
		return err
	}
	defer b.gate.Leave()
	if err := b.db.View(func(*bbolt.Tx) error { return nil }); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Subscribe returns a channel of the store's commits (see store.Store).
func (b *Store) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	return b.feed.Subscribe(ctx)
}

// Get returns the current document. Returns ErrNotFound if it does not
// exist.
func (b *Store) Get(ctx context.Context, collection, id string) (*store.Document, error) {
	if err := b.gate.EnterRead(ctx, "get", collection, id); err != nil {
		return nil, err
	}
	defer b.gate.Leave()
	doc, err := b.load(collection, id)
	if err == nil && doc == nil {
		err = store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: get %s/%s: %w", collection, id, err)
	}
	return doc, nil
}

// load reads the current document in its own read transaction. It returns
// nil, nil if the document does not exist.
func (b *Store) load(collection, id string) (*store.Document, error) {
	var doc *store.Document
	err := b.db.View(func(tx *bbolt.Tx) (err error) {
		doc, err = getDoc(tx, collection, id)
		return err
	})
	return doc, err
}

// getDoc reads a document in tx; nil when it does not exist.
func getDoc(tx *bbolt.Tx, collection, id string) (*store.Document, error) {
	docs := tx.Bucket(bucketDocs).Bucket([]byte(collection))
	if docs == nil {
		return nil, nil
	}
	v := docs.Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	return decodeDoc(collection, id, v)
}

// Update runs fn on the current state of one document and commits its
// change together with a new history version, synced to disk before it
// returns.
//
// fn runs outside any bbolt transaction while a per-document lock is held,
// so it must not call Update on the same document: that would wait for
// itself until ctx is done. The History passed to fn reads in its own
// transaction and is valid only until fn returns.
//
// Concurrent Updates share commits (batch.go): the lock is released as
// soon as the write is queued, so the next Update of the document may build
// on it while it syncs; Update itself returns only once its write is
// synced.
//
// Errors returned by fn are returned unchanged. A change with a nil Body
// deletes the document; it returns an error wrapping ErrNotFound if the
// document does not exist. If ctx is done before the write is queued,
// Update commits nothing and returns an error wrapping ctx.Err(); once it
// is queued, it is committed. A wait for the document's lock longer than
// Options.Timeout fails with an error wrapping store.ErrUnavailable; a
// change whose idempotency key is taken, with one wrapping
// store.ErrIdempotencyExists.
func (b *Store) Update(ctx context.Context, collection, id string, fn store.UpdateFunc) (*store.Document, error) {
	if err := b.gate.EnterWrite(ctx, collection, id); err != nil {
		return nil, err
	}
	defer b.gate.Leave()

	lctx, cancel := context.WithTimeout(ctx, b.timeout)
	unlock, err := b.lockDoc(lctx, collection, id)
	cancel()
	if err != nil && ctx.Err() == nil {
		err = fmt.Errorf("%w: the document stayed locked for %v", store.ErrUnavailable, b.timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("store: update %s/%s: %w", collection, id, err)
	}
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()

	cur, last, base, err := b.current(collection, id)
	if err != nil {
		return nil, fmt.Errorf("store: update %s/%s: %w", collection, id, err)
	}
	// settled waits, once the document is unlocked, until the pending
	// version fn saw (if any) is synced, so that nothing about it leaves the
	// store before it is durable.
	settled := func() error {
		unlock()
		locked = false
		if base == nil {
			return nil
		}
		<-base.done
		if base.err != nil {
			return fmt.Errorf("store: update %s/%s: %w: %w", collection, id, errBaseFailed, base.err)
		}
		return nil
	}
	h := &boltHistory{b: b, collection: collection, id: id}
	change, err := fn(ctx, cur, h)
	h.done.Store(true)
	if err != nil {
		if serr := settled(); serr != nil {
			return nil, serr
		}
		return nil, err
	}
	if change == nil {
		if err := settled(); err != nil {
			return nil, err
		}
		return cur, nil
	}
	if change.Body == nil && cur == nil {
		if err := settled(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("store: delete %s/%s: %w", collection, id, store.ErrNotFound)
	}
	if err := change.Idempotency.Check(); err != nil {
		return nil, fmt.Errorf("store: update %s/%s: %w", collection, id, err)
	}
	if err := ctx.Err(); err != nil {
		if serr := settled(); serr != nil {
			return nil, serr
		}
		return nil, fmt.Errorf("store: update %s/%s: %w", collection, id, err)
	}
	if rec := change.Idempotency; rec != nil {
		if err := b.claim(rec.Key); err != nil {
			if serr := settled(); serr != nil {
				return nil, serr
			}
			return nil, fmt.Errorf("store: update %s/%s: %w", collection, id, err)
		}
	}
	// From here the write goes to disk whatever happens to ctx: later
	// writes of the document may build on it as soon as it is queued.
	r := b.prepare(collection, id, last+1, change, base)
	b.committer.enqueue(r)
	unlock()
	locked = false
	<-r.done
	if r.err != nil {
		return nil, fmt.Errorf("store: update %s/%s: %w", collection, id, r.err)
	}
	if r.pruned > 0 {
		b.log.Debug("pruned history", "collection", collection, "id", id, "versions", r.pruned, "seq", r.version.Seq)
	}
	b.feed.Publish(store.Event{Collection: collection, ID: id, Seq: r.version.Seq})
	if r.doc == nil {
		return nil, nil
	}
	doc := *r.doc
	doc.Body = bytes.Clone(r.doc.Body)
	return &doc, nil
}

// current returns the state an Update of a document starts from: the
// document (nil if it does not exist), the seq of its newest version (0 if
// none), and the pending write that produced that state, if it is not
// committed yet. The caller holds the document's lock.
func (b *Store) current(collection, id string) (*store.Document, uint64, *commitReq, error) {
	if r := b.committer.latest(lockKey(collection, id)); r != nil {
		if r.doc == nil {
			return nil, r.version.Seq, r, nil
		}
		doc := *r.doc
		doc.Body = bytes.Clone(r.doc.Body)
		return &doc, r.version.Seq, r, nil
	}
	var (
		doc  *store.Document
		last uint64
	)
	err := b.db.View(func(tx *bbolt.Tx) (err error) {
		if hist := tx.Bucket(bucketHist).Bucket([]byte(collection)); hist != nil {
			last, _ = lastSeq(hist.Cursor(), id)
		}
		doc, err = getDoc(tx, collection, id)
		return err
	})
	return doc, last, nil, err
}

// prepare encodes change as version seq of a document, outside any
// transaction, for the committer.
func (b *Store) prepare(collection, id string, seq uint64, change *store.Change, prev *commitReq) *commitReq {
	at := time.Unix(0, b.now().UnixNano()).UTC()
	r := &commitReq{
		key:        lockKey(collection, id),
		collection: collection,
		id:         id,
		version: store.Version{
			Seq:         seq,
			At:          at,
			Kind:        change.Kind,
			Ops:         change.Ops, // until encoded below
			RebasedFrom: change.RebasedFrom,
		},
		idem: change.Idempotency,
		prev: prev,
		done: make(chan struct{}),
	}
	if change.Body != nil {
		r.version.ETag = store.ETagOf(change.Body)
		r.docVal = encodeDoc(seq, at, r.version.ETag, change.Body)
		r.doc = &store.Document{
			Collection: collection,
			ID:         id,
			Body:       r.docVal[docHeaderLen:], // never modified: callers get copies
			ETag:       r.version.ETag,
			Seq:        seq,
			UpdatedAt:  at,
		}
	}
	r.histVal = encodeVersion(&r.version)
	// The pending version's ops are the tail of its record, which nothing
	// modifies: no copy of the caller's bytes is kept.
	r.version.Ops = r.histVal[len(r.histVal)-len(change.Ops):]
	return r
}

// prune deletes the oldest versions of a document while there are more
// than Retention.Versions of them and the oldest is older than
// Retention.Age. The newest version, last, is never deleted. Seqs are
// contiguous because versions are only ever pruned from the front.
func (b *Store) prune(hist *bbolt.Bucket, id string, last uint64, now time.Time) (int, error) {
	prefix := histPrefix(id)
	c := hist.Cursor()
	var dead [][]byte
	for k, v := c.Seek(prefix); k != nil && isHistKey(k, prefix); k, v = c.Next() {
		seq := binary.BigEndian.Uint64(k[len(prefix):])
		if seq >= last || last-seq > math.MaxInt32 {
			break // the newest version stays; so do versions far beyond any bound
		}
		at, err := versionAt(v)
		if err != nil {
			return 0, err
		}
		if !b.retention.Prunable(int(last-seq), time.Unix(0, at), now) { // #nosec G115 -- bounded above
			break
		}
		dead = append(dead, bytes.Clone(k))
	}
	// Delete after iterating: deleting under a bbolt cursor can skip keys.
	for _, k := range dead {
		if err := hist.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(dead), nil
}

// lockDoc takes the per-document lock, waiting until it is free or ctx is
// done. The returned function releases it.
func (b *Store) lockDoc(ctx context.Context, collection, id string) (unlock func(), err error) {
	key := lockKey(collection, id)
	b.locksMu.Lock()
	l := b.locks[key]
	if l == nil {
		l = &docLock{ch: make(chan struct{}, 1)}
		b.locks[key] = l
	}
	l.refs++
	b.locksMu.Unlock()

	select {
	case l.ch <- struct{}{}:
		return func() {
			<-l.ch
			b.releaseLock(key, l)
		}, nil
	case <-ctx.Done():
		b.releaseLock(key, l)
		return nil, ctx.Err()
	}
}

// lockKey names a document in the lock table and the pending overlay.
func lockKey(collection, id string) string { return collection + "\x00" + id }

// releaseLock drops one reference to l and forgets it when unused, so that
// the lock table holds only documents being updated.
func (b *Store) releaseLock(key string, l *docLock) {
	b.locksMu.Lock()
	defer b.locksMu.Unlock()
	l.refs--
	if l.refs == 0 {
		delete(b.locks, key)
	}
}

// List returns up to limit documents of a collection whose id sorts after
// the given one ("" for the start), in byte order of ids, and whether more
// follow. A limit of zero or less means no limit. An empty or unknown
// collection gives an empty list.
func (b *Store) List(ctx context.Context, collection, after string, limit int) ([]store.ListEntry, bool, error) {
	if err := b.gate.Enter(ctx, "list "+collection); err != nil {
		return nil, false, err
	}
	defer b.gate.Leave()
	if !store.ValidName(collection) {
		return nil, false, nil
	}
	var (
		entries []store.ListEntry
		more    bool
	)
	err := b.db.View(func(tx *bbolt.Tx) error {
		docs := tx.Bucket(bucketDocs).Bucket([]byte(collection))
		if docs == nil {
			return nil
		}
		c := docs.Cursor()
		k, v := c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
		for ; k != nil; k, v = c.Next() {
			if limit > 0 && len(entries) == limit {
				more = true
				break
			}
			if len(v) < docHeaderLen {
				return fmt.Errorf("document %s: %d-byte record", k, len(v))
			}
			entries = append(entries, store.ListEntry{
				ID:   string(k),
				ETag: string(v[16:docHeaderLen]),
			})
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("store: list %s: %w", collection, err)
	}
	return entries, more, nil
}

// History returns up to limit retained versions of a document with seq
// greater than after, oldest first, and whether more follow. A limit of
// zero or less means no limit. Returns ErrNotFound if the document has no
// history at all. The versions own their bytes.
func (b *Store) History(ctx context.Context, collection, id string, after uint64, limit int) ([]store.Version, bool, error) {
	if err := b.gate.EnterRead(ctx, "history", collection, id); err != nil {
		return nil, false, err
	}
	defer b.gate.Leave()
	var (
		versions []store.Version
		more     bool
	)
	err := b.db.View(func(tx *bbolt.Tx) error {
		hist := tx.Bucket(bucketHist).Bucket([]byte(collection))
		if hist == nil {
			return store.ErrNotFound
		}
		prefix := histPrefix(id)
		c := hist.Cursor()
		if k, _ := c.Seek(prefix); k == nil || !isHistKey(k, prefix) {
			return store.ErrNotFound
		}
		if after == math.MaxUint64 {
			return nil
		}
		for k, v := c.Seek(histKey(id, after+1)); k != nil && isHistKey(k, prefix); k, v = c.Next() {
			if limit > 0 && len(versions) == limit {
				more = true
				break
			}
			ver, err := decodeVersion(k[len(prefix):], v)
			if err != nil {
				return err
			}
			versions = append(versions, ver)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("store: history %s/%s: %w", collection, id, err)
	}
	return versions, more, nil
}

// since implements History.Since for one document.
func (b *Store) since(collection, id string, etags []string) (store.Version, []store.Version, error) {
	want := make(map[string]bool, len(etags))
	for _, e := range etags {
		if e != "" { // a delete's empty ETag names no version
			want[e] = true
		}
	}
	// Versions still on their way to disk come after every committed one;
	// the snapshot is taken first, so that a version committed meanwhile is
	// seen at least once (and deduplicated by seq below).
	pending := b.committer.pendingVersions(lockKey(collection, id))
	for i := len(pending) - 1; i >= 0; i-- {
		if want[pending[i].ETag] {
			later := make([]store.Version, 0, len(pending)-i-1)
			for _, v := range pending[i+1:] {
				later = append(later, cloneVersion(v))
			}
			return cloneVersion(pending[i]), later, nil
		}
	}
	var (
		base  store.Version
		later []store.Version
	)
	err := b.db.View(func(tx *bbolt.Tx) error {
		hist := tx.Bucket(bucketHist).Bucket([]byte(collection))
		if hist == nil || len(want) == 0 {
			return store.ErrBaseUnknown
		}
		prefix := histPrefix(id)
		c := hist.Cursor()
		k, v := seekLast(c, prefix)
		n := 0 // versions after the one under the cursor
		for ; k != nil && isHistKey(k, prefix); k, v = c.Prev() {
			etag, err := versionETag(v)
			if err != nil {
				return err
			}
			if want[string(etag)] {
				break
			}
			n++
		}
		if k == nil || !isHistKey(k, prefix) {
			return store.ErrBaseUnknown
		}
		var err error
		if base, err = decodeVersion(k[len(prefix):], v); err != nil {
			return err
		}
		later = make([]store.Version, 0, n)
		for range n {
			k, v = c.Next()
			ver, err := decodeVersion(k[len(prefix):], v)
			if err != nil {
				return err
			}
			later = append(later, ver)
		}
		return nil
	})
	if err != nil {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s: %w", collection, id, err)
	}
	seen := base.Seq
	if len(later) > 0 {
		seen = later[len(later)-1].Seq
	}
	for _, v := range pending {
		if v.Seq > seen {
			later = append(later, cloneVersion(v))
		}
	}
	return base, later, nil
}

// cloneVersion returns a copy of v that owns its bytes.
func cloneVersion(v store.Version) store.Version {
	v.Ops = bytes.Clone(v.Ops)
	return v
}

// boltHistory is the History passed to an UpdateFunc. The per-document lock
// held by Update keeps its reads consistent with the UpdateFunc's document.
type boltHistory struct {
	b          *Store
	collection string
	id         string
	done       atomic.Bool // set when the store.UpdateFunc returns
}

// Since finds the newest retained version whose ETag is one of etags and
// returns it with every later version, oldest first. Returns
// ErrBaseUnknown if no retained version matches. An empty ETag (that of a
// delete) matches nothing.
func (h *boltHistory) Since(ctx context.Context, etags []string) (store.Version, []store.Version, error) {
	if h.done.Load() {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s: history used after its store.UpdateFunc returned", h.collection, h.id)
	}
	if err := ctx.Err(); err != nil {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s: %w", h.collection, h.id, err)
	}
	return h.b.since(h.collection, h.id, etags)
}

// histPrefix returns the prefix of every history key of a document.
func histPrefix(id string) []byte {
	k := make([]byte, 0, len(id)+1+seqLen)
	k = append(k, id...)
	return append(k, 0)
}

// histKey returns the history key of version seq of a document.
func histKey(id string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(histPrefix(id), seq)
}

// isHistKey reports whether k is a history key with the given prefix.
func isHistKey(k, prefix []byte) bool {
	return len(k) == len(prefix)+seqLen && bytes.HasPrefix(k, prefix)
}

// seekLast positions c on the last key with prefix, or on the key before
// where it would be, or returns nil if the bucket sorts nothing there.
// Callers check the prefix.
func seekLast(c *bbolt.Cursor, prefix []byte) ([]byte, []byte) {
	end := bytes.Clone(prefix)
	end[len(end)-1]++ // id + 0x01: just past every key of the document
	if k, _ := c.Seek(end); k == nil {
		return c.Last()
	}
	return c.Prev()
}

// lastSeq returns the newest seq in a document's history, if any.
func lastSeq(c *bbolt.Cursor, id string) (uint64, bool) {
	prefix := histPrefix(id)
	k, _ := seekLast(c, prefix)
	if k == nil || !isHistKey(k, prefix) {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[len(prefix):]), true
}

// encodeDoc returns a document record.
func encodeDoc(seq uint64, at time.Time, etag string, body []byte) []byte {
	buf := make([]byte, 0, docHeaderLen+len(body))
	buf = binary.BigEndian.AppendUint64(buf, seq)
	buf = binary.BigEndian.AppendUint64(buf, uint64(at.UnixNano()))
	buf = append(buf, etag...)
	return append(buf, body...)
}

// decodeDoc decodes a document record into a Document that owns its bytes.
func decodeDoc(collection, id string, v []byte) (*store.Document, error) {
	if len(v) < docHeaderLen {
		return nil, fmt.Errorf("document %s/%s: %d-byte record", collection, id, len(v))
	}
	return &store.Document{
		Collection: collection,
		ID:         id,
		Seq:        binary.BigEndian.Uint64(v[0:8]),
		UpdatedAt:  time.Unix(0, int64(binary.BigEndian.Uint64(v[8:16]))).UTC(), // #nosec G115 -- written from an int64 by encodeDoc
		ETag:       string(v[16:docHeaderLen]),
		Body:       bytes.Clone(v[docHeaderLen:]),
	}, nil
}

// encodeVersion returns a history value: At as big-endian unix nanos, then
// ETag, Kind and RebasedFrom each as a uvarint length and bytes, then Ops
// to the end. Seq lives in the key. The header comes first so that At and
// ETag can be read without touching Ops.
func encodeVersion(v *store.Version) []byte {
	n := 8 + 3*binary.MaxVarintLen64 + len(v.ETag) + len(v.Kind) + len(v.RebasedFrom) + len(v.Ops)
	buf := make([]byte, 0, n)
	buf = binary.BigEndian.AppendUint64(buf, uint64(v.At.UnixNano()))
	for _, s := range []string{v.ETag, v.Kind, v.RebasedFrom} {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	return append(buf, v.Ops...)
}

// errBadVersion reports a history value that does not decode.
var errBadVersion = errors.New("corrupt history value")

// versionAt returns the commit time of a history value in unix nanos.
func versionAt(v []byte) (int64, error) {
	if len(v) < 8 {
		return 0, errBadVersion
	}
	return int64(binary.BigEndian.Uint64(v)), nil // #nosec G115 -- written from an int64 by encodeVersion
}

// versionField splits the length-prefixed field at the start of v.
func versionField(v []byte) (field, rest []byte, err error) {
	n, w := binary.Uvarint(v)
	if w <= 0 || n > uint64(len(v)-w) { // #nosec G115 -- w <= len(v), so the difference is not negative
		return nil, nil, errBadVersion
	}
	return v[w : w+int(n)], v[w+int(n):], nil // #nosec G115 -- n <= len(v) was checked above
}

// versionETag returns the ETag of a history value, aliasing v.
func versionETag(v []byte) ([]byte, error) {
	if len(v) < 8 {
		return nil, errBadVersion
	}
	etag, _, err := versionField(v[8:])
	return etag, err
}

// decodeVersion decodes a history value whose key ends in seqBytes into a
// Version that owns its bytes.
func decodeVersion(seqBytes, v []byte) (store.Version, error) {
	at, err := versionAt(v)
	if err != nil {
		return store.Version{}, err
	}
	rest := v[8:]
	var fields [3][]byte
	for i := range fields {
		if fields[i], rest, err = versionField(rest); err != nil {
			return store.Version{}, err
		}
	}
	var ops []byte
	if len(rest) > 0 {
		ops = bytes.Clone(rest)
	}
	return store.Version{
		Seq:         binary.BigEndian.Uint64(seqBytes),
		ETag:        string(fields[0]),
		At:          time.Unix(0, at).UTC(),
		Kind:        string(fields[1]),
		Ops:         ops,
		RebasedFrom: string(fields[2]),
	}, nil
}
