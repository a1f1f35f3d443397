package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrUnknownFormat means a database file was not written by this version of
// the bbolt backend, or not by patchd at all. OpenBolt refuses such a file
// rather than guess at its layout.
var ErrUnknownFormat = errors.New("unknown database format")

// Defaults applied by OpenBolt to zero BoltOptions fields.
const (
	defaultRetentionVersions = 1000
	defaultRetentionAge      = 24 * time.Hour
	defaultLockTimeout       = time.Second
)

// The bbolt layout, format "1":
//
//	meta/format                    "1"
//	docs/<collection>/<id>         seq (8, big endian) | unix nanos (8, big endian) | ETag (34) | body
//	hist/<collection>/<id>\x00<seq> version value (see encodeVersion)
//	idem/<key>                     expiry unix nanos (8, big endian) | value
//	idemexp/<expiry (8)><key>      empty: idem records in expiry order
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
	etagLen      = 34 // len(ETagOf(x))
	docHeaderLen = 8 + 8 + etagLen
	seqLen       = 8
)

// BoltOptions configures OpenBolt. The zero value is usable.
type BoltOptions struct {
	// Retention bounds each document's history. A zero Versions means 1000;
	// a zero Age means 24h.
	Retention Retention
	// Now returns the commit time of a version. Nil means time.Now.
	Now func() time.Time
	// Logger receives debug events. Nil discards them.
	Logger *slog.Logger
	// Timeout is how long OpenBolt waits for the file lock held by another
	// process. Zero means one second, so that a second server on the same
	// file fails instead of hanging.
	Timeout time.Duration
}

// Bolt is a Store kept in a single bbolt file. Every commit is synced to
// disk before Update returns. Only one process can open the file at a time.
//
// Updates of one document are serialized by an in-process lock, and the
// UpdateFunc runs outside any bbolt transaction, so that the work of
// updates to different documents runs concurrently; only the short writes
// run inside bbolt's single write transaction, and concurrent Updates share
// its commits (group commit, batch.go).
type Bolt struct {
	db        *bolt.DB
	path      string
	retention Retention
	now       func() time.Time
	log       *slog.Logger

	mu     sync.Mutex     // guards closed
	closed bool           // set once by Close
	active sync.WaitGroup // calls in progress; Close waits for them

	locksMu sync.Mutex
	locks   map[string]*docLock // by lockKey; only while in use

	gc *committer
}

var _ Store = (*Bolt)(nil)

// docLock serializes the Updates of one document. It is a channel rather
// than a sync.Mutex so that a waiting Update can give up when its context
// is done.
type docLock struct {
	ch   chan struct{} // holds a token while the document is locked
	refs int           // holders and waiters; guarded by Bolt.locksMu
}

// OpenBolt opens or creates the bbolt database at path (mode 0600) and
// returns it as a Store. It returns an error wrapping ErrUnknownFormat if
// the file holds a database of another format, and one wrapping bbolt's
// timeout error if another process holds the file for longer than
// opts.Timeout.
func OpenBolt(path string, opts BoltOptions) (*Bolt, error) {
	b := &Bolt{
		path:      path,
		retention: opts.Retention,
		now:       opts.Now,
		log:       opts.Logger,
		locks:     make(map[string]*docLock),
	}
	if b.retention.Versions <= 0 {
		b.retention.Versions = defaultRetentionVersions
	}
	if b.retention.Age == 0 {
		b.retention.Age = defaultRetentionAge
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	b.log = b.log.With("component", "store")
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = defaultLockTimeout
	}

	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      timeout,
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := db.Update(initLayout); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	b.db = db
	b.gc = newCommitter(b)
	b.log.Debug("opened", "path", path,
		"history_versions", b.retention.Versions, "history_age", b.retention.Age)
	return b, nil
}

// initLayout creates the top-level buckets of a fresh file, or checks the
// format of an existing one.
func initLayout(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error {
			empty = false
			return nil
		})
		if !empty {
			return fmt.Errorf("%w: no %q bucket", ErrUnknownFormat, bucketMeta)
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
		return fmt.Errorf("%w: format %q, want %q", ErrUnknownFormat, v, boltFormat)
	}
	for _, name := range [][]byte{bucketDocs, bucketHist, bucketIdem, bucketIdemExp} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// Close waits for calls in progress, then closes the database file. Later
// calls of any method, Close included, return ErrClosed.
func (b *Bolt) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("store: close: %w", ErrClosed)
	}
	b.closed = true
	b.mu.Unlock()

	b.active.Wait()
	b.gc.stop()
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", b.path, err)
	}
	b.log.Debug("closed", "path", b.path)
	return nil
}

// enter registers a call in progress, or returns ErrClosed. A successful
// enter must be paired with b.active.Done().
func (b *Bolt) enter() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	b.active.Add(1)
	return nil
}

// Check runs bbolt's consistency check over the whole file and returns the
// first problem it finds, or nil.
func (b *Bolt) Check() error {
	if err := b.enter(); err != nil {
		return fmt.Errorf("store: check: %w", err)
	}
	defer b.active.Done()
	err := b.db.View(func(tx *bolt.Tx) error {
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

// Get returns the current document. Returns ErrNotFound if it does not
// exist.
func (b *Bolt) Get(ctx context.Context, collection, id string) (*Document, error) {
	if err := b.enter(); err != nil {
		return nil, fmt.Errorf("store: get %s/%s: %w", collection, id, err)
	}
	defer b.active.Done()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: get %s/%s: %w", collection, id, err)
	}
	doc, err := b.load(collection, id)
	if err == nil && doc == nil {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: get %s/%s: %w", collection, id, err)
	}
	return doc, nil
}

// load reads the current document in its own read transaction. It returns
// nil, nil if the document does not exist.
func (b *Bolt) load(collection, id string) (*Document, error) {
	if !validKey(collection, id) {
		return nil, nil
	}
	var doc *Document
	err := b.db.View(func(tx *bolt.Tx) error {
		docs := tx.Bucket(bucketDocs).Bucket([]byte(collection))
		if docs == nil {
			return nil
		}
		v := docs.Get([]byte(id))
		if v == nil {
			return nil
		}
		var err error
		doc, err = decodeDoc(collection, id, v)
		return err
	})
	return doc, err
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
// is queued, it is committed.
func (b *Bolt) Update(ctx context.Context, collection, id string, fn UpdateFunc) (*Document, error) {
	if err := b.enter(); err != nil {
		return nil, fmt.Errorf("store: update %s/%s: %w", collection, id, err)
	}
	defer b.active.Done()
	if !validKey(collection, id) {
		return nil, fmt.Errorf("store: update %q/%q: invalid collection or id", collection, id)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: update %s/%s: %w", collection, id, err)
	}

	unlock, err := b.lockDoc(ctx, collection, id)
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
		return nil, fmt.Errorf("store: delete %s/%s: %w", collection, id, ErrNotFound)
	}
	if err := checkIdempotency(change.Idempotency); err != nil {
		return nil, fmt.Errorf("store: update %s/%s: %w", collection, id, err)
	}
	if err := ctx.Err(); err != nil {
		if serr := settled(); serr != nil {
			return nil, serr
		}
		return nil, fmt.Errorf("store: update %s/%s: %w", collection, id, err)
	}
	// From here the write goes to disk whatever happens to ctx: later
	// writes of the document may build on it as soon as it is queued.
	r := b.prepare(collection, id, last+1, change, base)
	b.gc.enqueue(r)
	unlock()
	locked = false
	<-r.done
	if r.err != nil {
		return nil, fmt.Errorf("store: update %s/%s: %w", collection, id, r.err)
	}
	if r.pruned > 0 {
		b.log.Debug("pruned history", "collection", collection, "id", id, "versions", r.pruned, "seq", r.version.Seq)
	}
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
func (b *Bolt) current(collection, id string) (*Document, uint64, *commitReq, error) {
	if r := b.gc.latest(lockKey(collection, id)); r != nil {
		if r.doc == nil {
			return nil, r.version.Seq, r, nil
		}
		doc := *r.doc
		doc.Body = bytes.Clone(r.doc.Body)
		return &doc, r.version.Seq, r, nil
	}
	var (
		doc  *Document
		last uint64
	)
	err := b.db.View(func(tx *bolt.Tx) error {
		if hist := tx.Bucket(bucketHist).Bucket([]byte(collection)); hist != nil {
			last, _ = lastSeq(hist.Cursor(), id)
		}
		docs := tx.Bucket(bucketDocs).Bucket([]byte(collection))
		if docs == nil {
			return nil
		}
		v := docs.Get([]byte(id))
		if v == nil {
			return nil
		}
		var err error
		doc, err = decodeDoc(collection, id, v)
		return err
	})
	return doc, last, nil, err
}

// prepare encodes change as version seq of a document, outside any
// transaction, for the committer.
func (b *Bolt) prepare(collection, id string, seq uint64, change *Change, prev *commitReq) *commitReq {
	at := time.Unix(0, b.now().UnixNano()).UTC()
	r := &commitReq{
		key:        lockKey(collection, id),
		collection: collection,
		id:         id,
		version: Version{
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
		r.version.ETag = ETagOf(change.Body)
		r.docVal = encodeDoc(seq, at, r.version.ETag, change.Body)
		r.doc = &Document{
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
func (b *Bolt) prune(hist *bolt.Bucket, id string, last uint64, now time.Time) (int, error) {
	prefix := histPrefix(id)
	cutoff := now.UnixNano() - b.retention.Age.Nanoseconds()
	c := hist.Cursor()
	k, v := c.Seek(prefix)
	if k == nil || !isHistKey(k, prefix) {
		return 0, nil
	}
	count := last - binary.BigEndian.Uint64(k[len(prefix):]) + 1
	var dead [][]byte
	for ; k != nil && isHistKey(k, prefix) && count > uint64(b.retention.Versions); k, v = c.Next() { // #nosec G115 -- OpenBolt makes Versions positive
		if binary.BigEndian.Uint64(k[len(prefix):]) >= last {
			break
		}
		at, err := versionAt(v)
		if err != nil {
			return 0, err
		}
		if at >= cutoff {
			break
		}
		dead = append(dead, bytes.Clone(k))
		count--
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
func (b *Bolt) lockDoc(ctx context.Context, collection, id string) (unlock func(), err error) {
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
func (b *Bolt) releaseLock(key string, l *docLock) {
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
func (b *Bolt) List(ctx context.Context, collection, after string, limit int) ([]ListEntry, bool, error) {
	if err := b.enter(); err != nil {
		return nil, false, fmt.Errorf("store: list %s: %w", collection, err)
	}
	defer b.active.Done()
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("store: list %s: %w", collection, err)
	}
	if collection == "" {
		return nil, false, nil
	}
	var (
		entries []ListEntry
		more    bool
	)
	err := b.db.View(func(tx *bolt.Tx) error {
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
			entries = append(entries, ListEntry{
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
func (b *Bolt) History(ctx context.Context, collection, id string, after uint64, limit int) ([]Version, bool, error) {
	if err := b.enter(); err != nil {
		return nil, false, fmt.Errorf("store: history %s/%s: %w", collection, id, err)
	}
	defer b.active.Done()
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("store: history %s/%s: %w", collection, id, err)
	}
	if !validKey(collection, id) {
		return nil, false, fmt.Errorf("store: history %s/%s: %w", collection, id, ErrNotFound)
	}
	var (
		versions []Version
		more     bool
	)
	err := b.db.View(func(tx *bolt.Tx) error {
		hist := tx.Bucket(bucketHist).Bucket([]byte(collection))
		if hist == nil {
			return ErrNotFound
		}
		prefix := histPrefix(id)
		c := hist.Cursor()
		if k, _ := c.Seek(prefix); k == nil || !isHistKey(k, prefix) {
			return ErrNotFound
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
func (b *Bolt) since(collection, id string, etags []string) (Version, []Version, error) {
	want := make(map[string]bool, len(etags))
	for _, e := range etags {
		if e != "" { // a delete's empty ETag names no version
			want[e] = true
		}
	}
	// Versions still on their way to disk come after every committed one;
	// the snapshot is taken first, so that a version committed meanwhile is
	// seen at least once (and deduplicated by seq below).
	pending := b.gc.pendingVersions(lockKey(collection, id))
	for i := len(pending) - 1; i >= 0; i-- {
		if want[pending[i].ETag] {
			later := make([]Version, 0, len(pending)-i-1)
			for _, v := range pending[i+1:] {
				later = append(later, cloneVersion(v))
			}
			return cloneVersion(pending[i]), later, nil
		}
	}
	var (
		base  Version
		later []Version
	)
	err := b.db.View(func(tx *bolt.Tx) error {
		hist := tx.Bucket(bucketHist).Bucket([]byte(collection))
		if hist == nil || len(want) == 0 {
			return ErrBaseUnknown
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
			return ErrBaseUnknown
		}
		var err error
		if base, err = decodeVersion(k[len(prefix):], v); err != nil {
			return err
		}
		later = make([]Version, 0, n)
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
		return Version{}, nil, fmt.Errorf("store: since %s/%s: %w", collection, id, err)
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
func cloneVersion(v Version) Version {
	v.Ops = bytes.Clone(v.Ops)
	return v
}

// boltHistory is the History passed to an UpdateFunc. The per-document lock
// held by Update keeps its reads consistent with the UpdateFunc's document.
type boltHistory struct {
	b          *Bolt
	collection string
	id         string
	done       atomic.Bool // set when the UpdateFunc returns
}

// Since finds the newest retained version whose ETag is one of etags and
// returns it with every later version, oldest first. Returns
// ErrBaseUnknown if no retained version matches. An empty ETag (that of a
// delete) matches nothing.
func (h *boltHistory) Since(ctx context.Context, etags []string) (Version, []Version, error) {
	if h.done.Load() {
		return Version{}, nil, fmt.Errorf("store: since %s/%s: history used after its UpdateFunc returned", h.collection, h.id)
	}
	if err := ctx.Err(); err != nil {
		return Version{}, nil, fmt.Errorf("store: since %s/%s: %w", h.collection, h.id, err)
	}
	return h.b.since(h.collection, h.id, etags)
}

// validKey reports whether a collection and id can be stored: both
// non-empty, and the id free of the 0x00 separator of history keys.
func validKey(collection, id string) bool {
	return collection != "" && id != "" &&
		!strings.ContainsRune(collection, 0) && !strings.ContainsRune(id, 0)
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
func seekLast(c *bolt.Cursor, prefix []byte) ([]byte, []byte) {
	end := bytes.Clone(prefix)
	end[len(end)-1]++ // id + 0x01: just past every key of the document
	if k, _ := c.Seek(end); k == nil {
		return c.Last()
	}
	return c.Prev()
}

// lastSeq returns the newest seq in a document's history, if any.
func lastSeq(c *bolt.Cursor, id string) (uint64, bool) {
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
func decodeDoc(collection, id string, v []byte) (*Document, error) {
	if len(v) < docHeaderLen {
		return nil, fmt.Errorf("document %s/%s: %d-byte record", collection, id, len(v))
	}
	return &Document{
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
func encodeVersion(v *Version) []byte {
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
func decodeVersion(seqBytes, v []byte) (Version, error) {
	at, err := versionAt(v)
	if err != nil {
		return Version{}, err
	}
	rest := v[8:]
	var fields [3][]byte
	for i := range fields {
		if fields[i], rest, err = versionField(rest); err != nil {
			return Version{}, err
		}
	}
	var ops []byte
	if len(rest) > 0 {
		ops = bytes.Clone(rest)
	}
	return Version{
		Seq:         binary.BigEndian.Uint64(seqBytes),
		ETag:        string(fields[0]),
		At:          time.Unix(0, at).UTC(),
		Kind:        string(fields[1]),
		Ops:         ops,
		RebasedFrom: string(fields[2]),
	}, nil
}
