package bolt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/patchd/patchd/store"
)

// The bbolt layout, format "3":
//
//	meta/format                    "3"
//	meta/id                        16 random bytes: the database's id, which the write-ahead log's checkpoints name
//	docs/<collection>/<id>         seq (8, big endian) | unix nanos (8, big endian) | ETag (34) | body
//	hist/<collection>/<id>\x00<seq> version value (see encodeVersion)
//	idem/<key>                     expiry unix nanos (8, big endian) | value
//	idemexp/<expiry (8)><key>      the record's seq (8) and scope: idem records in expiry order
//	idemscope/<scope><expiry><key> empty: each scope's records in expiry order (see scopeKey)
//	idemcount/<scope>              the number of records in idemscope of the scope (8, big endian)
//	chlog/..., chidx/...           the collection change log (changes.go)
//
// Ids never contain 0x00, so each document's history keys are contiguous
// and ordered by seq. The collection store.SchemaCollection holds the
// collections' schemas as documents, like any other.
//
// Format "2" added the change log to format "1": a writable Open upgrades a
// format "1" file by creating its buckets (what was written before has no
// log entry, and comes before every cursor); a build that knows only
// format "1" refuses the file, since writes it made would be missing from
// the log.
//
// Format "3" records in each history value the number of its change log
// entry, which format "2" kept in a second index (chidx), so that a write
// touches one page less. A writable Open upgrades a file of format "1" or
// "2" by setting the format: versions written before keep their entries
// where they are. A build that knows only format "2" refuses the file,
// since it cannot read the new history values.
const (
	boltFormat   = "3"
	boltFormatV2 = "2"
	boltFormatV1 = "1"
)

var (
	bucketMeta = []byte("meta")
	bucketDocs = []byte("docs")
	bucketHist = []byte("hist")
	keyFormat  = []byte("format")
	// keyDBID holds the database's id: dbIDLen random bytes, written
	// once, with which a write-ahead log's checkpoints name the database
	// they belong to.
	keyDBID = []byte("id")
)

// dbIDLen is the length of a database's id.
const dbIDLen = 16

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
	dbTag     []byte // the first bytes of the database's id, for its cursors; nil without an id
	retention store.Retention
	now       func() time.Time
	log       *slog.Logger

	gate store.Gate        // calls in progress; Close waits for them
	feed store.Broadcaster // every commit, for Subscribe

	locksMu sync.Mutex
	locks   map[string]*docLock // by lockKey; only while in use

	committer *committer
	metrics   *collector
	etags     etagCache // what ETag read, until the next write

	// warnings are the problems Open found that the file can be served
	// with (a damaged meta page); Check reports them.
	warnings []error
	// damaged is set by the first write transaction that failed on
	// damaged data; writes are refused after it.
	damaged atomic.Pointer[error]
	// corruptReads counts reads refused because a stored body did not
	// match its ETag.
	corruptReads atomic.Int64
	timeout      time.Duration // bounds the wait for a document's lock
	idemPerScope int           // live idempotency records kept per scope; < 1: no bound
	maxHistory   int           // store.Options.MaxHistoryRead

	claimsMu sync.Mutex
	claims   map[string]struct{} // idempotency keys of queued writes (see claim)

	// The write-ahead log (wal.go, wal_store.go); wal is nil for a
	// read-only Store. wmu is held by every write transaction.
	wmu       sync.Mutex
	wal       *wal
	pin       *bbolt.Tx // a read transaction on the log's checkpoint
	file      *os.File  // bbolt's file, read for meta pages
	mmapLimit int64     // the file may grow to this size without bbolt remapping it
	// walKick asks the checkpointer goroutine for a checkpoint; closing
	// walQuit stops it, and it closes walDone when it has.
	walKick chan struct{}
	walQuit chan struct{}
	walDone chan struct{}
	walStop sync.Once
	// walReplayed is set once Open has replayed a log into the file.
	walReplayed bool

	// Test hooks, nil outside tests: walHook runs at each step of the log
	// (wal_store.go); commitFault makes a logged commit fail; syncFault a
	// sync of the file.
	walHook     func(step string)
	commitFault func() error
	syncFault   func() error // makes a sync of the database file fail
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

// kindOfFile names a file's kind for a message.
func kindOfFile(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file"
}

// Open opens or creates the bbolt database at path (mode 0600). A missing
// file is created (and the log says so); an existing one is never
// initialized afresh: an empty (0-byte) file is refused. With
// opts.ReadOnly it opens an existing file for reading only, and fails with
// an error wrapping os.ErrNotExist when there is none.
//
// Before it serves, Open checks the file: both meta pages, its length, its
// freelist and its root structure (see damage.go). A file damaged there is
// refused with an error wrapping store.ErrCorrupt, never a panic; a damaged
// meta page next to a valid one is logged as an error and reported by
// Check. It returns an error wrapping store.ErrUnknownFormat if the file
// holds a database of another format, and one wrapping store.ErrLocked if
// another process holds the file for longer than opts.LockTimeout.
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
		maxHistory:   opts.MaxHistoryRead,
		claims:       make(map[string]struct{}),
	}
	b.gate.ReadOnly = opts.ReadOnly
	created := false
	switch fi, err := os.Stat(path); {
	case err == nil && !fi.Mode().IsRegular():
		return nil, fmt.Errorf("store: open %s: it is %s, not a database file", path, kindOfFile(fi.Mode()))
	case errors.Is(err, fs.ErrNotExist) && !opts.ReadOnly:
		if err := create(path); err != nil {
			return nil, fmt.Errorf("store: create %s: %w", path, err)
		}
		created = true
	case err != nil:
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	warnings, noFreelist, undo, err := precheck(path, opts)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	opened := false
	defer func() {
		if !opened && undo != nil {
			if err := undo(); err != nil {
				b.log.Error("the meta pages of a file that failed to open were not put back", "path", path, "err", err)
			}
		}
	}()
	if noFreelist && !opts.ReadOnly {
		if err := walkTree(path, opts.LockTimeout); err != nil {
			return nil, fmt.Errorf("store: open %s: %w", path, err)
		}
	}
	var file *os.File // bbolt's, to release its lock if bbolt panics
	var db *bbolt.DB
	mapped := initialMmap(path, opts.ReadOnly)
	if within := mapWithin(mapped, addressLimit()); within < mapped {
		// Under ulimit -v the Go runtime, the heap and thread stacks need
		// room beside the map: an idle server reserves about 1.6 to
		// 1.8 GiB of address space besides it. Mapping all but that, a restart could run out of
		// address space in its first allocations.
		b.log.Warn("the address space is limited (see ulimit -v); mapping less", "path", path, "bytes", mapped, "then", within)
		mapped = within
	}
	db, file, err = openBolt(path, opts, mapped)
	for _, smaller := range mapFallbacks(mapped) {
		if !errors.Is(err, syscall.ENOMEM) {
			break
		}
		// The process may not have that much address space (ulimit -v):
		// map less. A batch that could grow the file past the map then
		// commits synced (wal_store.go), slower but as safe.
		b.log.Warn("cannot map the database's address space (see ulimit -v); mapping less", "path", path, "bytes", mapped, "then", smaller)
		mapped = smaller
		db, file, err = openBolt(path, opts, mapped)
	}
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("store: open %s: %w%s", path, store.ErrLocked, lockHolder(path))
	case errors.Is(err, store.ErrCorrupt):
		if file != nil {
			_ = file.Close()
		}
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		err = fmt.Errorf("%w: %w", store.ErrCorrupt, err)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	b.db = db
	b.file = file
	b.warnings = warnings
	for _, w := range warnings {
		b.log.Error("the database file is damaged", "path", path, "err", w)
	}
	err = b.checkRoot()
	if err == nil && !opts.ReadOnly {
		err = b.startWAL(mapped)
		if err == nil || b.walReplayed {
			undo = nil // the file moved on from the checkpoint
		}
	}
	if err == nil && opts.ReadOnly {
		err = b.view(func(tx *bbolt.Tx) error { return initLayout(tx, false) })
	}
	if err == nil {
		err = b.view(func(tx *bbolt.Tx) error {
			if meta := tx.Bucket(bucketMeta); meta != nil {
				if id := meta.Get(keyDBID); len(id) == dbIDLen {
					b.dbTag = bytes.Clone(id[:cursorDBTagLen]) // for its cursors
				}
			}
			return nil
		})
	}
	if err != nil {
		if b.wal != nil {
			b.stopCheckpointer()
			<-b.walDone
			// No batch went through it, and the file is synced at its
			// checkpoint: a log left here would be restored over whatever
			// writes the file next.
			if rerr := b.wal.remove(); rerr != nil {
				b.log.Warn("the write-ahead log of a file that failed to open was not removed", "path", b.wal.path, "err", rerr)
			}
			b.wal = nil
		}
		b.unpin()
		_ = guard("close", db.Close)
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	b.committer = newCommitter(b)
	b.metrics = newCollector(b)
	if created {
		b.log.Info("created a new database", "path", path)
	}
	b.log.Debug("opened", "path", path, "read_only", opts.ReadOnly,
		"history_versions", b.retention.Versions, "history_age", b.retention.Age)
	opened = true
	return b, nil
}

// openBolt opens the bbolt file at path as Open does, mapping mapped bytes
// of address space; file is bbolt's file, to release its lock if bbolt
// panics.
func openBolt(path string, opts store.Options, mapped int) (db *bbolt.DB, file *os.File, err error) {
	err = guard("open", func() (err error) {
		db, err = bbolt.Open(path, 0o600, &bbolt.Options{
			Timeout:      opts.LockTimeout,
			FreelistType: bbolt.FreelistMapType,
			// The freelist is written at Close only, not at each commit:
			// on a file with many free pages it was a third of the bytes
			// a write cost (BenchmarkUpdateSpread/Fragmented). After a
			// crash bbolt rebuilds it by walking the file's pages, which
			// walkTree has walked first under guard.
			NoFreelistSync: !opts.ReadOnly,
			ReadOnly:       opts.ReadOnly,
			// Address space only: a writer that needs more waits for
			// every reader, and the log's pin is one (wal_store.go).
			InitialMmapSize: mapped,
			OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
				f, err := os.OpenFile(name, flag, mode) // #nosec G304 -- the operator names the database
				file = f
				return f, err
			},
		})
		return err
	})
	return db, file, err
}

// mapFallbacks returns the smaller maps to try, in order, when mapping
// mapped bytes fails for want of address space: 4 GiB, 2 GiB, then bbolt's
// own default (the file's size, rounded up). A batch that could come
// within mmapMargin of the map commits synced, without the log.
func mapFallbacks(mapped int) []int {
	var out []int
	for _, m := range []int64{4 << 30, 2 << 30} {
		if m < int64(mapped) {
			out = append(out, int(m))
		}
	}
	if mapped > 0 {
		out = append(out, 0)
	}
	return out
}

// create makes an empty database at path: bbolt initializes it under a
// temporary name in the same directory, and it is linked to path once it is
// whole and synced, so that a crash never leaves a 0-byte or half-written
// file at path (which Open would then refuse). If another process created
// path meanwhile, create leaves that one.
func create(path string) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".new*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name)
	if err := tmp.Close(); err != nil {
		return err
	}
	db, err := bbolt.Open(name, 0o600, &bbolt.Options{Timeout: time.Second}) // writes and syncs the first pages
	if err != nil {
		return err
	}
	if err := db.Close(); err != nil {
		return err
	}
	if err := os.Link(name, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if d, err := os.Open(dir); err == nil { // #nosec G304 -- the directory of the database the operator named
		err = d.Sync()
		_ = d.Close()
		return err
	}
	return nil
}

// precheck locks the file as bbolt will, brings a file with a write-ahead
// log back to the log's checkpoint (or, read-only, refuses one whose log
// holds writes to replay), reads it with checkFile and unlocks it: fatal
// problems are returned as one error, warnings as a list. noFreelist reports a file whose freelist was not written (one
// that was not closed by Close).
func precheck(path string, opts store.Options) (warnings []error, noFreelist bool, undo func() error, err error) {
	flag := os.O_RDWR
	if opts.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0) // #nosec G304 -- the operator names the database
	if err != nil {
		return nil, false, nil, err
	}
	defer f.Close()
	if err := lockFile(f, !opts.ReadOnly, opts.LockTimeout); err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, false, nil, fmt.Errorf("%w%s", store.ErrLocked, lockHolder(path))
		}
		return nil, false, nil, err
	}
	if opts.ReadOnly {
		err = pendingWAL(path)
	} else {
		undo, err = prepareWAL(path, f)
	}
	if err != nil {
		return nil, false, nil, err
	}
	r := checkFile(f)
	if err := r.err(); err != nil {
		if undo != nil {
			_ = f.Close() // its lock too: undo takes the file's lock itself
			err = errors.Join(err, undo())
		}
		return nil, false, nil, err
	}
	return r.warnings, r.noFreelist, undo, nil
}

// walkTree reads every branch and leaf page of the bbolt file at path, in
// a read-only open, under guard. bbolt rebuilds the freelist of a file
// that has none by walking the same pages in a goroutine of its own, where
// a damaged page is a panic that nothing can recover: after walkTree, a
// damaged page is an error wrapping store.ErrCorrupt instead.
func walkTree(path string, timeout time.Duration) error {
	var db *bbolt.DB
	err := guard("open", func() (err error) {
		db, err = bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: timeout})
		return err
	})
	if err != nil {
		return err
	}
	err = guard("read", func() error {
		return db.View(func(tx *bbolt.Tx) error { return walkBucket(tx.Cursor()) })
	})
	return errors.Join(err, db.Close())
}

// walkBucket visits every key of a bucket and of the buckets in it.
func walkBucket(c *bbolt.Cursor) error {
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil {
			continue
		}
		if nb := c.Bucket().Bucket(k); nb != nil {
			if err := walkBucket(nb.Cursor()); err != nil {
				return err
			}
		}
	}
	return nil
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
	switch v := meta.Get(keyFormat); string(v) {
	case boltFormat:
	case boltFormatV1, boltFormatV2:
		if create {
			if err := meta.Put(keyFormat, []byte(boltFormat)); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%w: format %q, want %q", store.ErrUnknownFormat, v, boltFormat)
	}
	if create && len(meta.Get(keyDBID)) != dbIDLen {
		id := make([]byte, dbIDLen)
		if _, err := rand.Read(id); err != nil {
			return err
		}
		if err := meta.Put(keyDBID, id); err != nil {
			return err
		}
	}
	for _, name := range [][]byte{bucketDocs, bucketHist, bucketIdem, bucketIdemExp, bucketIdemScope, bucketIdemCount, bucketChLog, bucketChIdx} {
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
	if !b.db.IsReadOnly() && b.closeWAL() {
		// Write the freelist, so that the next Open reads it rather than
		// walking the whole file to rebuild it.
		b.db.NoFreelistSync = false
		if err := b.update(func(*bbolt.Tx) error { return nil }); err != nil {
			b.log.Warn("the freelist was not written; the next open rebuilds it", "path", b.path, "err", err)
		}
	}
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", b.path, err)
	}
	b.log.Debug("closed", "path", b.path)
	return nil
}

// maxCheckProblems bounds the problems Check reports: a badly damaged
// file has one per page.
const maxCheckProblems = 100

// Check runs bbolt's consistency check over the whole file and returns
// every problem it finds (at most maxCheckProblems, joined), together with
// those Open found (a damaged meta page), each wrapping store.ErrCorrupt;
// nil when there are none.
func (b *Store) Check(ctx context.Context) error {
	if err := b.gate.Enter(ctx, "check"); err != nil {
		return err
	}
	defer b.gate.Leave()
	problems := append([]error(nil), b.warnings...)
	err := b.view(func(tx *bbolt.Tx) error {
		n := 0
		for err := range tx.Check() { // drain, so the checker goroutine ends
			if n++; n <= maxCheckProblems {
				problems = append(problems, fmt.Errorf("%w: %w", store.ErrCorrupt, err))
			}
		}
		if n > maxCheckProblems {
			problems = append(problems, fmt.Errorf("%w: %d more problems", store.ErrCorrupt, n-maxCheckProblems))
		}
		return nil
	})
	if err != nil {
		problems = append(problems, err)
	}
	if err := errors.Join(problems...); err != nil {
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
// exist, and an error wrapping store.ErrCorrupt if its stored bytes do not
// match its ETag (checkBody).
func (b *Store) Get(ctx context.Context, collection, id string) (*store.Document, error) {
	if err := b.gate.EnterRead(ctx, "get", collection, id); err != nil {
		return nil, err
	}
	defer b.gate.Leave()
	doc, err := b.load(collection, id)
	switch {
	case err == nil && doc == nil:
		err = store.ErrNotFound
	case err == nil:
		err = b.checkBody(doc)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get %s/%s: %w", collection, id, err)
	}
	return doc, nil
}

// checkBody verifies a document read from the file: its body must hash to
// its ETag. A mismatch (a damaged page, a flipped bit) is logged with the
// document's name, counted in patchd_store_corrupt_reads_total, and
// returned as an error wrapping store.ErrCorrupt, so that damaged bytes are
// never served, nor patched into a new version, as good data. It costs one
// SHA-256 of the body, which every read already copies
// (BenchmarkGetVerify). Versions still pending in the group committer are
// not checked again: their ETag was computed from those very bytes, which
// nothing modifies.
func (b *Store) checkBody(doc *store.Document) error {
	err := store.VerifyBody(doc.Body, doc.ETag)
	if err != nil {
		b.corruptReads.Add(1)
		b.log.Error("stored document is damaged: its bytes do not match its ETag; refused",
			"collection", doc.Collection, "id", doc.ID, "seq", doc.Seq, "etag", doc.ETag, "err", err)
	}
	return err
}

// load reads the current document in its own read transaction. It returns
// nil, nil if the document does not exist.
func (b *Store) load(collection, id string) (*store.Document, error) {
	var doc *store.Document
	err := b.view(func(tx *bbolt.Tx) (err error) {
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
			return fmt.Errorf("store: update %s/%s: %w: %w", collection, id, errBaseFailed, noSpace(base.err))
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
	r := b.prepare(collection, id, last+1, change, base)
	if change.DryRun {
		if err := settled(); err != nil {
			return nil, err
		}
		return r.cloneDoc(), nil
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
	b.committer.enqueue(r)
	unlock()
	locked = false
	<-r.done
	if r.err != nil {
		return nil, fmt.Errorf("store: update %s/%s: %w", collection, id, noSpace(r.err))
	}
	if r.pruned > 0 {
		b.log.Debug("pruned history", "collection", collection, "id", id, "versions", r.pruned, "seq", r.version.Seq)
	}
	b.feed.Publish(store.Event{Collection: collection, ID: id, Seq: r.version.Seq})
	return r.cloneDoc(), nil
}

// cloneDoc returns a copy of the document r writes, owning its body; nil
// for a delete.
func (r *commitReq) cloneDoc() *store.Document {
	if r.doc == nil {
		return nil
	}
	doc := *r.doc
	doc.Body = bytes.Clone(r.doc.Body)
	return &doc
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
	err := b.view(func(tx *bbolt.Tx) (err error) {
		if hist := tx.Bucket(bucketHist).Bucket([]byte(collection)); hist != nil {
			last, _ = lastSeq(hist.Cursor(), id)
		}
		doc, err = getDoc(tx, collection, id)
		return err
	})
	if err == nil && doc != nil {
		err = b.checkBody(doc)
	}
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
			Actor:       change.Actor,
			RequestID:   change.RequestID,
			Reverts:     change.Reverts,
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
	// modifies (the committer writes only the change log entry's number,
	// in the header): no copy of the caller's bytes is kept.
	r.version.Ops = r.histVal[len(r.histVal)-len(change.Ops):]
	return r
}

// prune deletes the oldest versions of a document while there are more
// than Retention.Versions of them and the oldest is older than
// Retention.Age. The newest version, last, is never deleted. Seqs are
// contiguous because versions are only ever pruned from the front.
func (b *Store) prune(tx *bbolt.Tx, collection string, hist *bbolt.Bucket, id string, last uint64, now time.Time) (int, error) {
	prefix := histPrefix(id)
	c := hist.Cursor()
	var (
		dead     [][]byte
		logged   []uint64 // their change log entries
		unlogged [][]byte // those of the dead written before format "3"
	)
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
		if cseq, ok := versionLogSeq(v); ok {
			logged = append(logged, cseq)
		} else {
			unlogged = append(unlogged, dead[len(dead)-1])
		}
	}
	// Delete after iterating: deleting under a bbolt cursor can skip keys.
	for _, k := range dead {
		if err := hist.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(dead), unlogChanges(tx, collection, logged, unlogged)
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
	if !store.ValidCollection(collection) {
		return nil, false, nil
	}
	var (
		entries []store.ListEntry
		more    bool
	)
	err := b.view(func(tx *bbolt.Tx) error {
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
				return fmt.Errorf("document %s: %w: %d-byte record", k, store.ErrCorrupt, len(v))
			}
			entries = append(entries, store.ListEntry{
				ID:   string(k),
				ETag: string(v[16:docHeaderLen]),
				Seq:  binary.BigEndian.Uint64(v[0:8]),
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
// zero or less means no limit; a positive maxBytes ends the page before the
// first version that would take the total length of its Ops past maxBytes
// (the first version is always returned). Returns ErrNotFound if the
// document has no history at all. The versions own their bytes.
func (b *Store) History(ctx context.Context, collection, id string, after uint64, limit, maxBytes int) ([]store.Version, bool, error) {
	if err := b.gate.EnterRead(ctx, "history", collection, id); err != nil {
		return nil, false, err
	}
	defer b.gate.Leave()
	var (
		versions []store.Version
		more     bool
	)
	err := b.view(func(tx *bbolt.Tx) error {
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
		size := 0
		for k, v := c.Seek(histKey(id, after+1)); k != nil && isHistKey(k, prefix); k, v = c.Next() {
			if limit > 0 && len(versions) == limit {
				more = true
				break
			}
			if maxBytes > 0 && len(versions) > 0 {
				n, err := versionOpsLen(v)
				if err != nil {
					return err
				}
				if size+n > maxBytes {
					more = true
					break
				}
			}
			ver, err := decodeVersion(k[len(prefix):], v)
			if err != nil {
				return err
			}
			size += len(ver.Ops)
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
			if err := b.historyFits(collection, id, pending[i+1:]); err != nil {
				return store.Version{}, nil, err
			}
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
		size  = opsBytes(pending) // an upper bound of the pending versions after the base
	)
	err := b.view(func(tx *bbolt.Tx) error {
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
			size += len(v) // the stored version: its ops and a few dozen bytes more
		}
		if k == nil || !isHistKey(k, prefix) {
			return store.ErrBaseUnknown // also when the versions after it are many
		}
		if size > b.maxHistory {
			return store.ErrHistoryTooLarge // decode nothing
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

// SinceSeq returns the retained version seq with every later version,
// oldest first. Returns ErrBaseUnknown if version seq is not retained.
func (h *boltHistory) SinceSeq(ctx context.Context, seq uint64) (store.Version, []store.Version, error) {
	if h.done.Load() {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s: history used after its store.UpdateFunc returned", h.collection, h.id)
	}
	if err := ctx.Err(); err != nil {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s: %w", h.collection, h.id, err)
	}
	return h.b.sinceSeq(h.collection, h.id, seq)
}

// sinceSeq implements History.SinceSeq for one document.
func (b *Store) sinceSeq(collection, id string, seq uint64) (store.Version, []store.Version, error) {
	unknown := func() (store.Version, []store.Version, error) {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s seq %d: %w", collection, id, seq, store.ErrBaseUnknown)
	}
	// As in since: the pending versions are read first, and deduplicated
	// by seq against what was committed meanwhile.
	pending := b.committer.pendingVersions(lockKey(collection, id))
	if len(pending) > 0 && seq >= pending[0].Seq {
		i := int(seq - pending[0].Seq) // #nosec G115 -- pending seqs are contiguous and few
		if seq > pending[len(pending)-1].Seq {
			return unknown()
		}
		if err := b.historyFits(collection, id, pending[i+1:]); err != nil {
			return store.Version{}, nil, err
		}
		later := make([]store.Version, 0, len(pending)-i-1)
		for _, v := range pending[i+1:] {
			later = append(later, cloneVersion(v))
		}
		return cloneVersion(pending[i]), later, nil
	}
	var versions []store.Version
	err := b.view(func(tx *bbolt.Tx) error {
		hist := tx.Bucket(bucketHist).Bucket([]byte(collection))
		if hist == nil || seq == 0 {
			return store.ErrBaseUnknown
		}
		prefix := histPrefix(id)
		c := hist.Cursor()
		k, v := c.Seek(histKey(id, seq))
		if k == nil || !isHistKey(k, prefix) || binary.BigEndian.Uint64(k[len(prefix):]) != seq {
			return store.ErrBaseUnknown
		}
		size := opsBytes(pending) // an upper bound of the pending versions after seq
		for ; k != nil && isHistKey(k, prefix); k, v = c.Next() {
			if len(versions) > 0 { // a version after seq
				if size += len(v); size > b.maxHistory {
					return store.ErrHistoryTooLarge // read no further, and decode nothing
				}
			}
			ver, err := decodeVersion(k[len(prefix):], v)
			if err != nil {
				return err
			}
			versions = append(versions, ver)
		}
		return nil
	})
	if errors.Is(err, store.ErrBaseUnknown) {
		return unknown()
	}
	if err != nil {
		return store.Version{}, nil, fmt.Errorf("store: since %s/%s: %w", collection, id, err)
	}
	seen := versions[len(versions)-1].Seq
	for _, v := range pending {
		if v.Seq > seen {
			versions = append(versions, cloneVersion(v))
		}
	}
	return versions[0], versions[1:], nil
}

// opsBytes returns the bytes of the ops of vs.
func opsBytes(vs []store.Version) int {
	n := 0
	for _, v := range vs {
		n += len(v.Ops)
	}
	return n
}

// historyFits returns an error wrapping store.ErrHistoryTooLarge if the
// versions vs after a base hold more bytes of ops than a Since may read.
func (b *Store) historyFits(collection, id string, vs []store.Version) error {
	if opsBytes(vs) > b.maxHistory {
		return fmt.Errorf("store: since %s/%s: %w", collection, id, store.ErrHistoryTooLarge)
	}
	return nil
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
		return nil, fmt.Errorf("document %s/%s: %w: %d-byte record", collection, id, store.ErrCorrupt, len(v))
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
// the byte versionLogged and the number of the version's change log entry
// (8, big endian; zero here, set by putVersion when the entry is made),
// then ETag, Kind, RebasedFrom, Actor and RequestID each as a uvarint
// length and bytes, Reverts as a uvarint, then Ops to the end. Seq lives in
// the key. The header comes first so that At, the entry and ETag can be
// read without touching Ops.
//
// Earlier forms still read back. Before format "3", a version with an
// Actor, a RequestID or Reverts had, after At, the byte versionExt and the
// fields as above without the entry (whose number chidx held, if any);
// any other had only ETag, Kind and RebasedFrom, then Ops. In those the
// byte after At is versionExt or the uvarint length of an ETag, 0 or 34,
// never versionLogged.
func encodeVersion(v *store.Version) []byte {
	n := logSeqEnd + 6*binary.MaxVarintLen64 + len(v.ETag) + len(v.Kind) + len(v.RebasedFrom) + len(v.Actor) + len(v.RequestID) + len(v.Ops)
	buf := make([]byte, 0, n)
	buf = binary.BigEndian.AppendUint64(buf, uint64(v.At.UnixNano()))
	buf = append(buf, versionLogged)
	buf = binary.BigEndian.AppendUint64(buf, 0)
	for _, s := range []string{v.ETag, v.Kind, v.RebasedFrom, v.Actor, v.RequestID} {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	buf = binary.AppendUvarint(buf, v.Reverts)
	return append(buf, v.Ops...)
}

// versionLogged marks a history value that records the number of its
// change log entry (format "3", see encodeVersion).
const versionLogged = 0xfe

// The number of a version's change log entry sits at v[logSeqAt:logSeqEnd]
// of a value marked versionLogged.
const (
	logSeqAt  = 8 + 1
	logSeqEnd = logSeqAt + 8
)

// versionLogSeq returns the number of the change log entry that a history
// value records; ok is false for a value written before format "3", whose
// entry chidx finds.
func versionLogSeq(v []byte) (cseq uint64, ok bool) {
	if len(v) < logSeqEnd || v[8] != versionLogged {
		return 0, false
	}
	return binary.BigEndian.Uint64(v[logSeqAt:logSeqEnd]), true
}

// versionFields returns what follows At (and the change log entry) in a
// history value, and whether it has Actor, RequestID and Reverts.
func versionFields(v []byte) (rest []byte, ext bool, err error) {
	if len(v) < 9 {
		return nil, false, errBadVersion
	}
	switch v[8] {
	case versionLogged:
		if len(v) < logSeqEnd {
			return nil, false, errBadVersion
		}
		return v[logSeqEnd:], true, nil
	case versionExt:
		return v[9:], true, nil
	}
	return v[8:], false, nil
}

// versionExt marks a history value written before format "3" with the
// fields added after format "1" was first released (see encodeVersion).
const versionExt = 0xff

// errBadVersion reports a history value that does not decode.
var errBadVersion = fmt.Errorf("%w: a history value does not decode", store.ErrCorrupt)

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
	rest, _, err := versionFields(v)
	if err != nil {
		return nil, err
	}
	etag, _, err := versionField(rest)
	return etag, err
}

// versionOpsLen returns the length of the ops of a history value without
// copying them.
func versionOpsLen(v []byte) (int, error) {
	_, _, ops, err := splitVersion(v)
	return len(ops), err
}

// splitVersion splits a history value after its time into its fields
// (ETag, Kind, RebasedFrom, and Actor and RequestID when it has them), the
// seq it reverts, and its ops, aliasing v.
func splitVersion(v []byte) (fields [5][]byte, reverts uint64, ops []byte, err error) {
	if len(v) < 8 {
		return fields, 0, nil, errBadVersion
	}
	rest, ext := v[8:], false
	if len(rest) > 0 {
		if rest, ext, err = versionFields(v); err != nil {
			return fields, 0, nil, err
		}
	}
	nfields := 3
	if ext {
		nfields = 5
	}
	for i := range nfields {
		if fields[i], rest, err = versionField(rest); err != nil {
			return fields, 0, nil, err
		}
	}
	if ext {
		n, w := binary.Uvarint(rest)
		if w <= 0 {
			return fields, 0, nil, errBadVersion
		}
		reverts, rest = n, rest[w:]
	}
	return fields, reverts, rest, nil
}

// decodeVersion decodes a history value whose key ends in seqBytes into a
// Version that owns its bytes.
func decodeVersion(seqBytes, v []byte) (store.Version, error) {
	at, err := versionAt(v)
	if err != nil {
		return store.Version{}, err
	}
	fields, reverts, rest, err := splitVersion(v)
	if err != nil {
		return store.Version{}, err
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
		Actor:       string(fields[3]),
		RequestID:   string(fields[4]),
		Reverts:     reverts,
	}, nil
}
