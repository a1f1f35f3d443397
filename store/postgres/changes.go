package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/patchd/patchd/store"
)

// The collection change log is the versions of a collection's documents in
// (pos, id, seq) order (migration 0005 explains pos). A cursor is a
// position in that order: the cursor head, pos (8 bytes), seq (8) and the
// id.

// position is a place in a collection's change log.
type position struct {
	pos uint64
	id  string
	seq uint64
}

// A cursor that names its database has, after pos and seq, a zero byte
// (no id holds one) and the first dbTagLen bytes of the database's id
// (migration 0017), then the id.
const dbTagLen = 4

// cursor encodes p as a cursor of collection in the database of tag (nil:
// a cursor that names no database).
func (p position) cursor(collection string, tag []byte) store.Cursor {
	c := store.CursorHead(store.CursorPostgres, collection, 17+len(tag)+len(p.id))
	c = binary.BigEndian.AppendUint64(c, p.pos)
	c = binary.BigEndian.AppendUint64(c, p.seq)
	if tag != nil {
		c = append(append(c, 0), tag...)
	}
	return append(c, p.id...)
}

// parsePosition decodes a cursor of collection in the database of tag.
// One of another database wraps store.ErrCursorGone; one that names no
// database (made before cursors did) is taken as this one's.
func parsePosition(collection string, c store.Cursor, tag []byte) (position, error) {
	rest, err := store.CheckCursor(c, store.CursorPostgres, collection)
	if err != nil {
		return position{}, err
	}
	if len(rest) < 16 {
		return position{}, fmt.Errorf("%w: %d bytes", store.ErrInvalidCursor, len(c))
	}
	id := rest[16:]
	if len(id) > 0 && id[0] == 0 {
		if len(id) < 1+dbTagLen {
			return position{}, fmt.Errorf("%w: %d bytes", store.ErrInvalidCursor, len(c))
		}
		if tag != nil && !bytes.Equal(id[1:1+dbTagLen], tag) {
			return position{}, fmt.Errorf("%w: the cursor is of another database", store.ErrCursorGone)
		}
		id = id[1+dbTagLen:]
	}
	p := position{
		pos: binary.BigEndian.Uint64(rest),
		seq: binary.BigEndian.Uint64(rest[8:]),
		id:  string(id),
	}
	if p.pos > math.MaxInt64 || p.seq > math.MaxInt64 || (p.id != "" && !store.ValidName(p.id)) || (p.id == "") != (p.seq == 0) {
		return position{}, fmt.Errorf("%w: not a position", store.ErrInvalidCursor)
	}
	return p, nil
}

// posText is how positions travel to and from SQL: xid8 has no binary
// mapping in pgx, text does (xid8 -> text -> xid8).
func posText(pos uint64) string { return strconv.FormatUint(pos, 10) }

// Changes reads a collection's change log after a cursor (see
// store.Store).
//
// Positions are transaction ids, assigned before commit: a version at a
// smaller position may become visible after one at a greater. Changes
// returns only positions below its snapshot's xmin, which no transaction
// still running can take, so the prefix of the log it reads is final and
// a reader that resumes after it misses nothing. Committed versions past
// that prefix set Pending: they are returned once the transactions before
// them end.
func (s *Store) Changes(ctx context.Context, collection string, after store.Cursor, limit int) (store.ChangeLog, error) {
	if err := s.gate.Enter(ctx, "changes "+collection); err != nil {
		return store.ChangeLog{}, err
	}
	defer s.gate.Leave()
	var from position // the cursor's, read once: a cursor not this collection's is no database error
	if after != nil {
		var err error
		if from, err = parsePosition(collection, after, s.dbTag); err != nil {
			return store.ChangeLog{}, fmt.Errorf("store: changes %s: %w", collection, err)
		}
	}
	// A read: tried again after a connection the server ended (a fast
	// shutdown, a restart), and reported unavailable past the deadline, so
	// that a stream following the collection waits rather than ends.
	var out store.ChangeLog
	err := s.read(ctx, func(ctx context.Context) error {
		var err error
		out, err = s.changes(ctx, collection, after, from, limit)
		return err
	})
	if err != nil {
		return store.ChangeLog{}, fmt.Errorf("store: changes %s: %w", collection, err)
	}
	return out, nil
}

// changes is one try of Changes.
func (s *Store) changes(ctx context.Context, collection string, after store.Cursor, from position, limit int) (store.ChangeLog, error) {
	fail := func(err error) (store.ChangeLog, error) { return store.ChangeLog{}, err }
	if after == nil {
		var xmin string
		if err := s.pool.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text`).Scan(&xmin); err != nil {
			return fail(err)
		}
		pos, err := strconv.ParseUint(xmin, 10, 64)
		if err != nil {
			return fail(err)
		}
		return store.ChangeLog{Next: position{pos: pos}.cursor(collection, s.dbTag)}, nil
	}
	n := int64(math.MaxInt64)
	if limit > 0 {
		n = int64(limit)
	}
	// One statement, one snapshot: the page below xmin; whether a
	// document's pruned versions reach into the range the page covers
	// (then a change after the cursor is gone); whether committed versions
	// wait past xmin. The first row carries the flags; without a page it
	// is the only row.
	rows, err := s.pool.Query(ctx, `
		WITH snap AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),
		page AS MATERIALIZED (
			SELECT v.pos, v.id, v.seq, v.etag, v.at_ns, v.kind, v.ops, v.rebased_from, v.actor, v.request_id, v.reverts
			FROM document_versions v
			WHERE v.collection = $1 AND (v.pos, v.id, v.seq) > ($2::text::xid8, $3::text, $4::bigint)
			  AND v.pos < (SELECT xmin FROM snap)
			ORDER BY v.pos, v.id, v.seq LIMIT $5),
		last AS (SELECT pos, id, seq FROM page ORDER BY pos DESC, id DESC, seq DESC LIMIT 1),
		flags AS (SELECT
			EXISTS (SELECT 1 FROM documents d, last WHERE d.collection = $1
				AND (d.pruned_pos, d.id, d.pruned_seq) > ($2::text::xid8, $3::text, $4::bigint)
				AND (d.pruned_pos, d.id, d.pruned_seq) <= (last.pos, last.id, last.seq)) AS gone,
			EXISTS (SELECT 1 FROM document_versions v WHERE v.collection = $1
				AND v.pos >= (SELECT xmin FROM snap)) AS pending)
		SELECT f.gone, f.pending, p.pos::text, p.id, p.seq, p.etag, p.at_ns, p.kind, p.ops, p.rebased_from, p.actor, p.request_id, p.reverts
		FROM flags f LEFT JOIN page p ON true
		ORDER BY p.pos, p.id, p.seq`,
		collection, posText(from.pos), from.id, int64(from.seq), n) // #nosec G115 -- parsePosition bounds seq by MaxInt64
	if err != nil {
		return fail(err)
	}
	defer rows.Close()
	out := store.ChangeLog{Next: after}
	size := 0
	for rows.Next() {
		var (
			gone, pending bool
			pos, id       *string
			seq, ns       *int64
			etag, ops     []byte
			kind, rebased *string
			actor, reqID  *string
			reverts       *int64
		)
		if err := rows.Scan(&gone, &pending, &pos, &id, &seq, &etag, &ns, &kind, &ops, &rebased, &actor, &reqID, &reverts); err != nil {
			return fail(err)
		}
		if gone {
			return fail(fmt.Errorf("%w: a version after the cursor was pruned", store.ErrCursorGone))
		}
		out.Pending = pending
		if pos == nil {
			break // no page
		}
		if len(out.Changes) > 0 && size >= store.MaxChangesBytes {
			out.More = true
			break
		}
		p, err := strconv.ParseUint(*pos, 10, 64)
		if err != nil {
			return fail(err)
		}
		v := store.Version{
			Seq:         uint64(*seq), // #nosec G115 -- a seq from the database is non-negative
			ETag:        etagString(etag),
			At:          time.Unix(0, *ns).UTC(),
			Kind:        *kind,
			Ops:         ops,
			RebasedFrom: *rebased,
			Actor:       *actor,
			RequestID:   *reqID,
			Reverts:     uint64(*reverts), // #nosec G115 -- as seq
		}
		if len(v.Ops) == 0 {
			v.Ops = nil
		}
		out.Changes = append(out.Changes, store.CollectionChange{
			ID:      *id,
			Version: v,
			Cursor:  position{pos: p, id: *id, seq: v.Seq}.cursor(collection, s.dbTag),
		})
		size += len(ops)
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	if limit > 0 && len(out.Changes) == limit {
		out.More = true
	}
	if k := len(out.Changes); k > 0 {
		out.Next = out.Changes[k-1].Cursor
	}
	return out, nil
}

// ListDocuments returns up to limit current documents of a collection
// after an id, with their bodies (see store.Store).
func (s *Store) ListDocuments(ctx context.Context, collection, after string, limit int, since store.Cursor) ([]store.ListedDocument, bool, error) {
	if err := s.gate.Enter(ctx, "list "+collection); err != nil {
		return nil, false, err
	}
	defer s.gate.Leave()
	var from position
	if since != nil {
		var err error
		if from, err = parsePosition(collection, since, s.dbTag); err != nil {
			return nil, false, fmt.Errorf("store: list %s: %w", collection, err)
		}
	}
	if !store.ValidName(collection) || (after != "" && !store.ValidName(after)) {
		return nil, false, nil
	}
	var (
		docs []store.ListedDocument
		more bool
	)
	err := s.read(ctx, func(ctx context.Context) error { // tried again as Changes is
		var err error
		docs, more, err = s.listDocuments(ctx, collection, after, limit, since != nil, from)
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("store: list %s: %w", collection, err)
	}
	return docs, more, nil
}

// listDocuments is one try of ListDocuments.
func (s *Store) listDocuments(ctx context.Context, collection, after string, limit int, withSince bool, from position) ([]store.ListedDocument, bool, error) {
	n := int64(math.MaxInt64)
	if limit > 0 {
		n = int64(limit) + 1
	}
	rows, err := s.pool.Query(ctx,
		`SELECT id, seq, etag, body, updated_ns,
			$4::boolean AND (pos, id, seq) > ($5::text::xid8, $6::text, $7::bigint)
		 FROM documents
		 WHERE collection = $1 AND id > $2 AND NOT deleted
		 ORDER BY id LIMIT $3`,
		collection, after, n, withSince, posText(from.pos), from.id, int64(from.seq)) // #nosec G115 -- parsePosition bounds seq by MaxInt64
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	var (
		docs []store.ListedDocument
		more bool
		size int
	)
	for rows.Next() {
		if len(docs) > 0 && ((limit > 0 && len(docs) >= limit) || size >= store.MaxListBytes) {
			more = true
			break
		}
		d := store.ListedDocument{Document: store.Document{Collection: collection}}
		var (
			seq, ns int64
			etag    []byte
		)
		if err := rows.Scan(&d.ID, &seq, &etag, &d.Body, &ns, &d.ChangedSince); err != nil {
			return nil, false, err
		}
		d.Seq, d.ETag, d.UpdatedAt = uint64(seq), etagString(etag), time.Unix(0, ns).UTC() // #nosec G115 -- a seq from the database is non-negative
		docs = append(docs, d)
		size += len(d.Body)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	return docs, more, nil
}
