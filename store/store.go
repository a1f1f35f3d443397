// Package store is the persistence contract of patchd: the Store interface
// that every backend implements, the types it speaks in, the errors it
// returns, and what the backends share (options and their defaults, the
// retention rule, key validation, a commit broadcaster, the lifecycle gate
// and the copy between stores).
//
// A Store keeps, per collection and id, the current canonical JSON body of a
// document and an append-only history of the versions that produced it. The
// store knows nothing of patch semantics: the caller decides, inside Update,
// what the next version is, and the store commits it atomically together with
// its history entry. Bodies and ops are opaque bytes here; package patch
// gives them meaning, and package document makes the decisions.
//
// Each backend is a package of its own that registers itself with Register
// (store/bolt for an embedded bbolt file, store/postgres for several
// replicas over one PostgreSQL); Open picks one by the URL's scheme. Every
// backend must pass the conformance suite in package storetest.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Errors returned by Store implementations. Callers test for them with
// errors.Is.
var (
	// ErrNotFound means the document (or its history) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrBaseUnknown means none of the ETags asked for names a version still
	// in the document's retained history.
	ErrBaseUnknown = errors.New("base version not in history")
	// ErrHistoryTooLarge means the versions History.Since or SinceSeq would
	// return after the base hold more bytes than Options.MaxHistoryRead:
	// they are not decoded.
	ErrHistoryTooLarge = errors.New("the versions since the base are too large to read")
	// ErrClosed means the store has been closed.
	ErrClosed = errors.New("store closed")
	// ErrInvalidKey means a collection or id that no store keeps (see
	// ValidName).
	ErrInvalidKey = errors.New("invalid collection or id")
	// ErrInvalidIdempotency means a Change carried an IdempotencyRecord
	// with an empty or over-long key.
	ErrInvalidIdempotency = errors.New("invalid idempotency record")
	// ErrExists means Load was given a document that the store already
	// holds, or already holds history of.
	ErrExists = errors.New("document exists")
	// ErrLocked means another process, usually a running patchd server,
	// holds the store for itself (an embedded file allows one writer).
	ErrLocked = errors.New("in use by another process")
	// ErrUnknownFormat means the data was not written by this version of
	// the backend, or not by patchd at all; the store refuses to guess.
	ErrUnknownFormat = errors.New("unknown database format")
	// ErrReadOnly means a write to a store opened with Options.ReadOnly.
	ErrReadOnly = errors.New("store is read-only")
	// ErrCorrupt means stored data is damaged: a file that is not a
	// whole database, a page or record that does not decode, or a body
	// whose bytes do not match its ETag. The store never returns such
	// data as good.
	ErrCorrupt = errors.New("stored data is damaged")
	// ErrNoSpace means a write failed because the storage device is full.
	// Nothing was committed; the same write succeeds once space is freed.
	ErrNoSpace = errors.New("no space left on the store's device")
	// ErrUnavailable means the store cannot serve the call now: its
	// database cannot be reached, is restarting or failing over, or did
	// not answer within Options.Timeout. A write that fails with it
	// committed nothing, unless the error says that its outcome is unknown;
	// then its idempotency record, if it carried one, tells. A retry later
	// may succeed.
	ErrUnavailable = errors.New("store unavailable")
	// ErrCommitUnknown means a write's commit was sent but its outcome
	// could not be learned (the connection was lost with the answer, and
	// the database stayed out of reach until the deadline): the write may
	// or may not have committed. Errors wrapping it also wrap
	// ErrUnavailable; the write's idempotency record, if it carried one,
	// exists exactly when the write committed.
	ErrCommitUnknown = errors.New("commit outcome unknown")
	// ErrIdempotencyExists means a Change carried an IdempotencyRecord
	// whose key is taken: by a record that has not expired, or by another
	// write in progress with the same key. The write committed nothing.
	ErrIdempotencyExists = errors.New("idempotency key exists")
)

// Version kinds recorded in history.
const (
	KindPut        = "put"
	KindJSONPatch  = "json-patch"
	KindMergePatch = "merge-patch"
	KindDelete     = "delete"
	// KindRevert is a version that undid an earlier one (Version.Reverts).
	KindRevert = "revert"
)

// Document is the current state of one document.
type Document struct {
	Collection string
	ID         string
	// Body is the canonical JSON representation. It is owned by the caller.
	Body []byte
	// ETag is the strong entity tag of Body, quotes included (see ETagOf).
	ETag string
	// Seq is the sequence number of the version that produced Body.
	Seq uint64
	// UpdatedAt is when that version was committed.
	UpdatedAt time.Time
}

// Version is one committed write in a document's history.
type Version struct {
	// Seq numbers a document's versions from 1, without gaps, across deletes
	// and re-creation.
	Seq uint64
	// ETag is the ETag of the document after this version ("" after a delete).
	ETag string
	// At is the commit time.
	At time.Time
	// Kind is one of KindPut, KindJSONPatch, KindMergePatch or KindDelete.
	Kind string
	// Ops is the caller's encoding of the operations that turn the previous
	// version into this one. The store does not interpret it.
	Ops []byte
	// RebasedFrom is the ETag the write was rebased from, or "".
	RebasedFrom string
	// Actor names who made the write, or "" when nobody was named.
	Actor string
	// RequestID is the id of the request that made the write, or "".
	RequestID string
	// Reverts is the seq of the version a KindRevert version undid; 0
	// otherwise.
	Reverts uint64
}

// Change is what an UpdateFunc decides to commit.
type Change struct {
	// Body is the new canonical body; nil deletes the document.
	Body []byte
	// Kind is recorded in the new version (KindPut, KindJSONPatch, ...).
	Kind string
	// Ops is recorded, opaque, in the new version.
	Ops []byte
	// RebasedFrom is recorded in the new version; "" when not rebased.
	RebasedFrom string
	// Idempotency, when not nil, is stored in the same transaction as the
	// new version, so that the record exists exactly when the write does.
	// Its key is claimed by the write: if a record under it has not
	// expired, or another write with it is in progress, Update commits
	// nothing and returns an error wrapping ErrIdempotencyExists, on every
	// replica sharing the database.
	Idempotency *IdempotencyRecord
	// Actor, RequestID and Reverts are recorded in the new version.
	Actor     string
	RequestID string
	Reverts   uint64
	// DryRun asks Update to decide everything it would for a commit and
	// commit nothing: it returns the document as it would have been
	// committed (its seq, ETag and commit time; nil for a delete), and no
	// version, event or idempotency record is written. UpdateMany ignores
	// it (see ManyChange.DryRun).
	DryRun bool
}

// IdempotencyRecord remembers the answer to a write made with an
// idempotency key, so that a retry of the same request is answered from it
// instead of being applied again.
type IdempotencyRecord struct {
	// Key names the record. The store does not interpret it; it must not
	// be empty and is at most MaxIdempotencyKey bytes.
	Key string
	// Scope groups the records of one client, opaque to the store: a
	// scope keeps at most Options.IdempotencyPerScope live records, and
	// writing more deletes its oldest ones (see Options).
	Scope string
	// Value is the caller's encoding of the answer, opaque to the store.
	Value []byte
	// Expires is when the record stops being returned; the store deletes
	// expired records as it goes.
	Expires time.Time
	// Seq is the seq of the version committed with the record, which the
	// caller cannot know in advance: Update sets it (whatever the Change
	// carried), Idempotency and DumpIdempotency return it, and
	// LoadIdempotency keeps it as given.
	Seq uint64
}

// MaxIdempotencyKey is the longest IdempotencyRecord.Key a store accepts.
const MaxIdempotencyKey = 1024

// Check returns an error wrapping ErrInvalidIdempotency unless r is nil or
// has a key of 1 to MaxIdempotencyKey bytes.
func (r *IdempotencyRecord) Check() error {
	if r == nil || (r.Key != "" && len(r.Key) <= MaxIdempotencyKey) {
		return nil
	}
	return fmt.Errorf("%w: key of %d bytes, want 1 to %d", ErrInvalidIdempotency, len(r.Key), MaxIdempotencyKey)
}

// IdempotencyPruneBatch bounds the expired idempotency records one commit
// deletes, so that the cost of expiry is spread over the writes that create
// records. Every backend deletes expired records this way.
const IdempotencyPruneBatch = 32

// History gives an UpdateFunc read access to the history of the document
// being updated. It is valid only during the UpdateFunc call, and it sees the
// same state as the UpdateFunc's current document.
type History interface {
	// Since finds the newest retained version whose ETag is one of etags and
	// returns it together with every version committed after it, oldest
	// first. Returns ErrBaseUnknown if no retained version matches. An
	// empty ETag (that of a delete) matches nothing.
	Since(ctx context.Context, etags []string) (base Version, later []Version, err error)

	// SinceSeq returns the retained version seq together with every
	// version committed after it, oldest first. Returns ErrBaseUnknown if
	// version seq is not retained: pruned, or never committed.
	SinceSeq(ctx context.Context, seq uint64) (v Version, later []Version, err error)
}

// UpdateFunc decides the next version of a document. cur is nil when the
// document does not exist. It returns the change to commit, nil to commit
// nothing, or an error, which Update returns unchanged after committing
// nothing. A backend may call it more than once (to retry after a concurrent
// commit), so everything it decides must come from its arguments.
type UpdateFunc func(ctx context.Context, cur *Document, h History) (*Change, error)

// Key names one document.
type Key struct {
	Collection string
	ID         string
}

// Locked is one document of an UpdateMany as its ManyFunc sees it, under
// the document's lock.
type Locked struct {
	// Doc is the current document; nil when it does not exist.
	Doc *Document
	// Seq is the seq of the document's newest version (a delete's, when
	// it was deleted); 0 when it has no history.
	Seq uint64
	// History reads the document's history; it is valid only during the
	// ManyFunc call.
	History History
}

// DocChange is one change of an UpdateMany: Doc is the index, in the keys
// given to UpdateMany, of the document it changes.
type DocChange struct {
	Doc    int
	Change *Change
}

// ManyChange is what a ManyFunc decides to commit.
type ManyChange struct {
	// Changes are committed in order, each as a new version of its
	// document: several may change the same one, each building on the one
	// before.
	Changes []DocChange
	// DryRun asks UpdateMany to commit nothing, as Change.DryRun does for
	// Update: it returns the documents as they would have been committed.
	DryRun bool
}

// ManyFunc decides the next versions of several documents, given them in
// the order of UpdateMany's keys. It returns the changes to commit, nil to
// commit nothing, or an error, which UpdateMany returns unchanged after
// committing nothing. Like an UpdateFunc, it may be called more than once.
type ManyFunc func(ctx context.Context, docs []Locked) (*ManyChange, error)

// MaxManyKeys bounds the documents of one UpdateMany.
const MaxManyKeys = 10_000

// ListEntry is one row of a collection listing.
type ListEntry struct {
	ID   string
	ETag string
	// Seq is the seq of the document's current version.
	Seq uint64
}

// Store is implemented by every storage backend.
type Store interface {
	// Get returns the current document. Returns ErrNotFound if it does not
	// exist.
	Get(ctx context.Context, collection, id string) (*Document, error)

	// ETag returns the ETag of the current document without its body, so
	// that answers decided by the ETag alone (304, most 412s) cost no copy
	// of it. Returns ErrNotFound if the document does not exist.
	ETag(ctx context.Context, collection, id string) (string, error)

	// Update runs fn on the current state of one document and commits its
	// change atomically with a new history version, durably, before
	// returning. Updates of one document are serialized: no other write to
	// it commits between fn reading the current state and the commit.
	// It returns the document as committed (nil after a delete), or the
	// current document when fn returned a nil change (nil if it does not
	// exist). Errors returned by fn are returned unchanged. A delete of a
	// document that does not exist returns an error wrapping ErrNotFound;
	// a change whose idempotency record is invalid, one wrapping
	// ErrInvalidIdempotency; an invalid collection or id, ErrInvalidKey.
	Update(ctx context.Context, collection, id string, fn UpdateFunc) (*Document, error)

	// UpdateMany runs fn on the current state of several documents and
	// commits its changes atomically, all or none, in one transaction,
	// durably, before returning. It locks the documents in the byte order
	// of their collection and id, whatever the order of keys, so that two
	// UpdateManys never wait for each other in a cycle; no other write to
	// any of them commits between fn reading them and the commit. It
	// returns, for each change, the document as that change committed it
	// (nil after a delete); nil when fn committed nothing. Errors returned
	// by fn are returned unchanged. Keys must be distinct, valid, and at
	// most MaxManyKeys, else an error wrapping ErrInvalidKey; a change of a
	// key index out of range, an error too; a delete of a document that
	// does not exist (then), one wrapping ErrNotFound; an invalid
	// idempotency record, one wrapping ErrInvalidIdempotency.
	UpdateMany(ctx context.Context, keys []Key, fn ManyFunc) ([]*Document, error)

	// List returns up to limit documents of a collection whose id sorts
	// after the given one ("" for the start), in byte order of ids, and
	// whether more follow. A limit of zero or less means no limit. An
	// empty or unknown collection gives an empty list.
	List(ctx context.Context, collection, after string, limit int) (entries []ListEntry, more bool, err error)

	// ListDocuments is List with the documents themselves: up to limit
	// current documents of a collection whose id sorts after the given one
	// ("" for the start), in byte order of ids, with their bodies, and
	// whether more follow. It stops early, after at least one document,
	// once the bodies exceed MaxListBytes. When since is not nil, each
	// document says whether its current version comes after since in the
	// collection's change log (see Changes); since must be a cursor of that
	// collection (ErrInvalidCursor otherwise).
	ListDocuments(ctx context.Context, collection, after string, limit int, since Cursor) (docs []ListedDocument, more bool, err error)

	// Changes reads a collection's change log: every version committed to
	// any of its documents (creates, changes, deletes), each exactly once,
	// in an order that keeps each document's versions in seq order and
	// that every process sharing the store's database sees the same. It
	// returns up to limit changes after the cursor after, bounded by
	// MaxChangesBytes (at least one). A nil after is the present: no
	// changes, and Next is a cursor before every change committed after
	// the call; a backend whose log is not in commit order may place it
	// before changes committed shortly before the call too (at most those
	// committed since the oldest write transaction still running began).
	// A change stays in the log as long as its
	// version is retained in history: when one after the cursor was
	// pruned, Changes returns an error wrapping ErrCursorGone; malformed
	// bytes or a cursor of another collection, one wrapping
	// ErrInvalidCursor.
	Changes(ctx context.Context, collection string, after Cursor, limit int) (ChangeLog, error)

	// History returns up to limit retained versions of a document with seq
	// greater than after, oldest first, and whether more follow. A limit of
	// zero or less means no limit. A positive maxBytes bounds the page by
	// size too: it ends before the first version that would take the total
	// length of the page's Ops past maxBytes (and more is set), but it
	// always holds the first version, so that paging makes progress.
	// Returns ErrNotFound if the document has no history at all.
	History(ctx context.Context, collection, id string, after uint64, limit, maxBytes int) (versions []Version, more bool, err error)

	// Idempotency returns the record committed with a write under key.
	// Returns ErrNotFound if there is none or it has expired.
	Idempotency(ctx context.Context, key string) (*IdempotencyRecord, error)

	// Ping checks, with a cheap read, that the store can serve now: for
	// readiness probes. It returns nil, an error wrapping ErrUnavailable
	// when the database cannot be reached or does not answer in time, or
	// one wrapping ErrClosed.
	Ping(ctx context.Context) error

	// Subscribe returns a channel of Events for the commits after the call
	// (and possibly some before), those of other processes sharing the
	// store's database included. It is closed when ctx is done or the store
	// is closed. A consumer that starts watching a document subscribes
	// first, then reads its History, so that no commit falls between the
	// two.
	Subscribe(ctx context.Context) (<-chan Event, error)

	// Collector returns the backend's Prometheus metrics: at least
	// patchd_documents, patchd_history_versions and patchd_collections
	// where the backend can count them cheaply, and its own engine's.
	Collector() prometheus.Collector

	// Close releases the store. Writes in progress finish first. A second
	// Close returns an error wrapping ErrClosed.
	Close() error
}

// Optional capabilities. A backend implements them when it can; the
// command line asks for them with a type assertion in one place each.

// Backuper is implemented by stores that can write a consistent copy of
// themselves while they serve (an embedded file; a database server has its
// own tools for that).
type Backuper interface {
	// Backup writes a consistent snapshot of the whole store to w, in a
	// form the backend opens as it is. start, when not nil, is called with
	// its size in bytes before the first byte is written. It returns the
	// number of bytes written. A slow or stalled w must not hold up the
	// store's writes: whatever the snapshot pins is released at the pace
	// of the store's own storage, not of w.
	Backup(ctx context.Context, w io.Writer, start func(size int64)) (int64, error)
}

// Checker is implemented by stores that can verify their own storage.
type Checker interface {
	// Check reads the whole store's storage structure and returns nil, or
	// an error describing the problems found (several joined with
	// errors.Join), which wraps ErrCorrupt. It does not check documents
	// against their ETags and histories: patchd check does that through a
	// Dumper (CheckRecord, document.CheckHistory).
	Check(ctx context.Context) error
}

// Record is one document as exports and copies carry it: its current state
// and, when asked for, its retained history.
type Record struct {
	Collection string
	ID         string
	// Doc is the current document; nil when it was deleted and the record
	// carries only its history.
	Doc *Document
	// History is the retained versions, oldest first, each owning its
	// bytes. Dump fills it only when asked for history; Load needs at
	// least one version, the last of which produced Doc.
	History []Version
}

// Dumper is implemented by stores that can list every document at once,
// deleted ones included: exports and copies read through it.
type Dumper interface {
	// Dump calls fn for every document in collection then id byte order,
	// from one consistent snapshot of the store. Without history it visits
	// the current documents only; with history it also visits deleted
	// documents whose history is retained, and fills every record's
	// History. The Record passed to fn is valid only during the call. An
	// error from fn stops Dump, which returns it.
	Dump(ctx context.Context, withHistory bool, fn func(*Record) error) error
}

// Loader is implemented by stores that can restore documents as they were:
// imports and copies write through it.
type Loader interface {
	// Load writes records as they are, with their versions' seqs, times
	// and ETags, in one transaction that is durable before it returns.
	// Every record must pass CheckRecord. A record whose document or
	// history the store already holds is not written: its entry in the
	// returned slice wraps ErrExists; a record that fails CheckRecord gets
	// that error there. The other records are written. The error result is
	// for failures of the store itself, after which nothing was written.
	Load(ctx context.Context, recs []*Record) ([]error, error)
}

// IdempotencyCopier is implemented by stores whose idempotency records a
// copy carries along with the documents, so that a retry after a
// migration is still answered from its record.
type IdempotencyCopier interface {
	// DumpIdempotency calls fn for every record that has not expired, in
	// key order. The record passed to fn is valid only during the call; an
	// error from fn stops DumpIdempotency, which returns it.
	DumpIdempotency(ctx context.Context, fn func(*IdempotencyRecord) error) error
	// LoadIdempotency writes records as they are, in one transaction that
	// is durable before it returns, and returns how many it wrote: a
	// record whose key the store holds already (and has not expired) is
	// kept as it is. A record with an invalid key fails the whole load
	// with an error wrapping ErrInvalidIdempotency.
	LoadIdempotency(ctx context.Context, recs []*IdempotencyRecord) (int, error)
}

// Retention bounds the history kept per document. A version is pruned only
// when it is both beyond the newest Versions and older than Age; the newest
// version is always kept.
type Retention struct {
	Versions int
	Age      time.Duration
}

// Prunable reports whether a version committed at at may be pruned at now
// when newer versions of its document number newer (the versions after it,
// the newest one included). Every backend prunes from the oldest version
// and stops at the first one this keeps.
func (r Retention) Prunable(newer int, at, now time.Time) bool {
	return newer >= r.Versions && now.Sub(at) > r.Age
}

// ETagOf returns the strong ETag of a canonical body: a double-quoted string
// of the first 32 lowercase hex digits of its SHA-256.
func ETagOf(body []byte) string {
	sum := sha256.Sum256(body)
	var b [34]byte
	b[0], b[33] = '"', '"'
	hex.Encode(b[1:33], sum[:16])
	return string(b[:])
}

// SchemaCollection is the collection in which patchd keeps the JSON
// Schemas of the other collections: one document per collection, with the
// collection's name as its id. Its name is outside ValidName, so that no
// client request reaches it as a collection of documents; stores keep it
// like any other collection (see ValidCollection), so that it is versioned,
// exported, copied and seen by every replica as documents are.
const SchemaCollection = "$schemas"

// ValidCollection reports whether s is a collection a store keeps: a
// ValidName, or SchemaCollection.
func ValidCollection(s string) bool {
	return s == SchemaCollection || ValidName(s)
}

// VerifyBody returns nil if body's ETag is etag, else an error wrapping
// ErrCorrupt that names both: the stored bytes are not those the ETag was
// made from.
func VerifyBody(body []byte, etag string) error {
	if got := ETagOf(body); got != etag {
		return fmt.Errorf("%w: the body's bytes hash to %s, not to its ETag %s", ErrCorrupt, got, etag)
	}
	return nil
}

// ValidName reports whether s is a collection or id that patchd accepts:
// 1 to 128 characters of [A-Za-z0-9._~-], and not one of the dot-segments
// "." and "..". Every backend keeps such names and refuses others with
// ErrInvalidKey.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 128 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '~', c == '-':
		default:
			return false
		}
	}
	return true
}
