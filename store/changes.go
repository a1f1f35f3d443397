package store

import (
	"crypto/sha256"
	"errors"
	"fmt"
)

// Errors of the collection change log (Store.Changes).
var (
	// ErrCursorGone means a change after the cursor is no longer retained
	// (its version was pruned from history), or the cursor comes from
	// another store: the consumer must read the collection again and go on
	// from the present.
	ErrCursorGone = errors.New("cursor older than the retained changes")
	// ErrInvalidCursor means bytes that no store made as a cursor, or a
	// cursor of another collection.
	ErrInvalidCursor = errors.New("invalid cursor")
)

// Cursor is a position in a collection's change log: opaque bytes that only
// the backend that made them interprets. A cursor survives a restart of
// the store and is valid on every process that shares its database.
type Cursor []byte

// CollectionChange is one entry of a collection's change log: a version
// committed to one of its documents.
type CollectionChange struct {
	// ID names the document; Version is its history entry.
	ID      string
	Version Version
	// Cursor is the position just after this change: reading the log
	// after it gives the changes that follow.
	Cursor Cursor
}

// ChangeLog is one read of a collection's change log.
type ChangeLog struct {
	// Changes are in log order. Versions of one document come in seq
	// order.
	Changes []CollectionChange
	// Next is the cursor after the last change returned, or the cursor
	// read after when there is none.
	Next Cursor
	// More is true when more changes can be read after Next now.
	More bool
	// Pending is true when changes were committed that cannot be read yet
	// because changes that come before them in the log may still commit:
	// read again shortly. Backends that order the log in commit order never
	// set it.
	Pending bool
}

// MaxChangesBytes bounds the ops bytes one read of the change log returns,
// beyond the first change: a page stops early and sets More.
const MaxChangesBytes = 4 << 20

// ListedDocument is one document of ListDocuments.
type ListedDocument struct {
	Document
	// ChangedSince is true when the document's current version comes after
	// the cursor given as since in its collection's change log.
	ChangedSince bool
}

// MaxListBytes bounds the body bytes one ListDocuments call returns,
// beyond the first document: a page stops early and reports more.
const MaxListBytes = 4 << 20

// CollectionTag returns the four bytes that backends put in a collection's
// cursors, so that a cursor given for another collection is refused.
func CollectionTag(collection string) [4]byte {
	sum := sha256.Sum256([]byte(collection))
	return [4]byte(sum[:4])
}

// CheckCursor checks the common head of a backend's cursor: its backend
// tag byte and the collection tag. It returns the rest. A cursor of
// another backend wraps ErrCursorGone (a database moved to another
// backend); other mistakes wrap ErrInvalidCursor.
func CheckCursor(c Cursor, backend byte, collection string) ([]byte, error) {
	if len(c) < 5 {
		return nil, fmt.Errorf("%w: too short", ErrInvalidCursor)
	}
	if c[0] != backend {
		for i := 0; i < len(cursorKinds); i++ {
			if c[0] == cursorKinds[i] {
				return nil, fmt.Errorf("%w: the cursor is of another kind of store", ErrCursorGone)
			}
		}
		return nil, fmt.Errorf("%w: unknown kind", ErrInvalidCursor)
	}
	if tag := CollectionTag(collection); [4]byte(c[1:5]) != tag {
		return nil, fmt.Errorf("%w: the cursor is of another collection than %q", ErrInvalidCursor, collection)
	}
	return c[5:], nil
}

// CursorHead returns the head of a backend's cursor for a collection (see
// CheckCursor), to which the backend appends its position.
func CursorHead(backend byte, collection string, extra int) Cursor {
	tag := CollectionTag(collection)
	c := make(Cursor, 0, 5+extra)
	c = append(c, backend)
	return append(c, tag[:]...)
}

// Backend tags, the first byte of a cursor: each backend uses its own.
const (
	CursorBolt     = 'b'
	CursorPostgres = 'p'
	cursorKinds    = "bp" // every tag above
)

// CheckCursorOf checks, without asking a backend, that c can be a cursor of
// collection: it has a known backend tag and the collection's tag. It
// returns an error wrapping ErrInvalidCursor when it cannot. The backend
// still checks the rest when it reads after c.
func CheckCursorOf(c Cursor, collection string) error {
	if len(c) < 5 {
		return fmt.Errorf("%w: too short", ErrInvalidCursor)
	}
	for i := 0; i < len(cursorKinds); i++ {
		if c[0] == cursorKinds[i] {
			_, err := CheckCursor(c, c[0], collection)
			return err
		}
	}
	return fmt.Errorf("%w: unknown kind", ErrInvalidCursor)
}
