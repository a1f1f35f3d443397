// Package store persists patchd's documents and their version history.
//
// A Store keeps, per collection and id, the current canonical JSON body of a
// document and an append-only history of the versions that produced it. The
// store knows nothing of patch semantics: a caller decides, inside Update, what
// the next version is, and the store commits it atomically together with its
// history entry. Bodies and ops are opaque bytes here; package patch gives
// them meaning.
//
// Backends (bbolt in this package, others later) must pass the conformance
// suite in package storetest.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// Errors returned by Store implementations. Callers test for them with
// errors.Is.
var (
	// ErrNotFound means the document (or its history) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrBaseUnknown means none of the ETags asked for names a version still
	// in the document's retained history.
	ErrBaseUnknown = errors.New("base version not in history")
	// ErrClosed means the store has been closed.
	ErrClosed = errors.New("store closed")
)

// Version kinds recorded in history.
const (
	KindPut        = "put"
	KindJSONPatch  = "json-patch"
	KindMergePatch = "merge-patch"
	KindDelete     = "delete"
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
	Idempotency *IdempotencyRecord
}

// IdempotencyRecord remembers the answer to a write made with an
// idempotency key, so that a retry of the same request is answered from it
// instead of being applied again.
type IdempotencyRecord struct {
	// Key names the record. The store does not interpret it; it must not
	// be empty and is at most MaxIdempotencyKey bytes.
	Key string
	// Value is the caller's encoding of the answer, opaque to the store.
	Value []byte
	// Expires is when the record stops being returned; the store deletes
	// expired records as it goes.
	Expires time.Time
}

// MaxIdempotencyKey is the longest IdempotencyRecord.Key a store accepts.
const MaxIdempotencyKey = 1024

// History gives an UpdateFunc read access to the history of the document
// being updated. It is valid only during the UpdateFunc call, and it sees the
// same state as the UpdateFunc's current document.
type History interface {
	// Since finds the newest retained version whose ETag is one of etags and
	// returns it together with every version committed after it, oldest
	// first. Returns ErrBaseUnknown if no retained version matches.
	Since(ctx context.Context, etags []string) (base Version, later []Version, err error)
}

// UpdateFunc decides the next version of a document. cur is nil when the
// document does not exist. It returns the change to commit, nil to commit
// nothing, or an error, which Update returns unchanged after committing
// nothing. A backend may call it more than once (to retry after a concurrent
// commit), so it must have no side effects.
type UpdateFunc func(ctx context.Context, cur *Document, h History) (*Change, error)

// ListEntry is one row of a collection listing.
type ListEntry struct {
	ID   string
	ETag string
}

// Store is implemented by every storage backend.
type Store interface {
	// Get returns the current document. Returns ErrNotFound if it does not
	// exist.
	Get(ctx context.Context, collection, id string) (*Document, error)

	// Update runs fn on the current state of one document and commits its
	// change atomically with a new history version, durably, before
	// returning. Updates of one document are serialized: no other write to
	// it commits between fn reading the current state and the commit.
	// It returns the document as committed (nil after a delete), or the
	// current document when fn returned a nil change (nil if it does not
	// exist). Errors returned by fn are returned unchanged.
	Update(ctx context.Context, collection, id string, fn UpdateFunc) (*Document, error)

	// List returns up to limit documents of a collection whose id sorts
	// after the given one ("" for the start), in id order, and whether more
	// follow. An empty or unknown collection gives an empty list.
	List(ctx context.Context, collection, after string, limit int) (entries []ListEntry, more bool, err error)

	// History returns up to limit retained versions of a document with seq
	// greater than after, oldest first, and whether more follow. Returns
	// ErrNotFound if the document has no history at all.
	History(ctx context.Context, collection, id string, after uint64, limit int) (versions []Version, more bool, err error)

	// Idempotency returns the record committed with a write under key.
	// Returns ErrNotFound if there is none or it has expired.
	Idempotency(ctx context.Context, key string) (*IdempotencyRecord, error)

	// Close releases the store. Writes in progress finish first.
	Close() error
}

// Retention bounds the history kept per document. A version is pruned only
// when it is both beyond the newest Versions and older than Age; the newest
// version is always kept.
type Retention struct {
	Versions int
	Age      time.Duration
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
