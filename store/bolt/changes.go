package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/patchd/patchd/store"
)

// The collection change log (format "3"):
//
//	chlog/<collection>/<cseq (8, big endian)>   history key of the version: id 0x00 seq (8)
//	chidx/<collection>/<id>\x00<seq>            cseq (8, big endian); versions of format "2" only
//
// The group committer numbers every version it writes with the next
// sequence number of its collection's chlog bucket (bbolt's
// NextSequence), inside the transaction that writes the version, so the
// numbers are dense and in commit order. The version's history value
// records its number (see encodeVersion), so that pruning a version
// deletes its entry in the same transaction: an entry exists exactly as
// long as its version. A reader that finds a number missing after its
// cursor knows a change was pruned.
//
// Format "2" kept the numbers in chidx instead, a second index keyed by
// history key: one more page scattered over the file for every write.
// Versions written then keep their chidx entry until they are pruned.
// Versions written before the log existed (files of format "1") have no
// entry; they come before every cursor.
var (
	bucketChLog = []byte("chlog")
	bucketChIdx = []byte("chidx")
)

// putVersion writes the history value val of a collection's version at
// history key hk, in a write transaction, and appends the version to the
// collection's change log. val is as encodeVersion returns it; putVersion
// records the log entry's number in it, in place, so val must not change
// until the transaction ends, and only its bytes from logSeqEnd on may be
// read meanwhile.
func putVersion(tx *bbolt.Tx, hist *bbolt.Bucket, collection string, hk, val []byte) error {
	if len(val) < logSeqEnd || val[8] != versionLogged {
		return fmt.Errorf("store: %s: a history value without room for its change log entry", collection)
	}
	logb, err := tx.Bucket(bucketChLog).CreateBucketIfNotExists([]byte(collection))
	if err != nil {
		return err
	}
	cseq, err := logb.NextSequence()
	if err != nil {
		return err
	}
	binary.BigEndian.PutUint64(val[logSeqAt:logSeqEnd], cseq)
	if err := logb.Put(binary.BigEndian.AppendUint64(nil, cseq), hk); err != nil {
		return err
	}
	return hist.Put(hk, val)
}

// unlogChanges deletes the change log entries of pruned versions, in a
// write transaction: those numbered cseqs, and those of the versions at
// the history keys unindexed, written before format "3", found in chidx.
func unlogChanges(tx *bbolt.Tx, collection string, cseqs []uint64, unindexed [][]byte) error {
	logb := tx.Bucket(bucketChLog).Bucket([]byte(collection))
	if logb == nil {
		return nil
	}
	for _, cseq := range cseqs {
		if err := logb.Delete(binary.BigEndian.AppendUint64(nil, cseq)); err != nil {
			return err
		}
	}
	idx := tx.Bucket(bucketChIdx).Bucket([]byte(collection))
	if idx == nil {
		return nil
	}
	for _, hk := range unindexed {
		cseq := idx.Get(hk)
		if cseq == nil {
			continue // written before the log existed
		}
		if err := logb.Delete(bytes.Clone(cseq)); err != nil {
			return err
		}
		if err := idx.Delete(hk); err != nil {
			return err
		}
	}
	return nil
}

// logSeqOf returns the number of the change log entry of the version at
// history key hk, recorded in its value or, for a version written before
// format "3", in idx (chidx of its collection, nil if there is none); ok
// is false if the version has no entry.
func logSeqOf(hist, idx *bbolt.Bucket, hk []byte) (cseq uint64, ok bool) {
	if cseq, ok := versionLogSeq(hist.Get(hk)); ok {
		return cseq, true
	}
	if idx == nil {
		return 0, false
	}
	if v := idx.Get(hk); len(v) == 8 {
		return binary.BigEndian.Uint64(v), true
	}
	return 0, false
}

// cursorDBTagLen is how many bytes of the database's id a cursor carries.
const cursorDBTagLen = 4

// cursor returns the cursor after change cseq of a collection: the head,
// cseq, and the first bytes of the database's id, so that a cursor of
// another database (a new file in the old one's place, an import) is
// known for one rather than read as a position of this log.
func (b *Store) cursor(collection string, cseq uint64) store.Cursor {
	c := binary.BigEndian.AppendUint64(store.CursorHead(store.CursorBolt, collection, 8+len(b.dbTag)), cseq)
	return append(c, b.dbTag...)
}

// parseCursor returns the change number of a cursor of collection. One of
// another database wraps store.ErrCursorGone; one made before cursors
// named their database is taken as this one's.
func (b *Store) parseCursor(collection string, c store.Cursor) (uint64, error) {
	rest, err := store.CheckCursor(c, store.CursorBolt, collection)
	if err != nil {
		return 0, err
	}
	switch {
	case len(rest) == 8+cursorDBTagLen:
		if b.dbTag != nil && !bytes.Equal(rest[8:], b.dbTag) {
			return 0, fmt.Errorf("%w: the cursor is of another database", store.ErrCursorGone)
		}
	case len(rest) != 8:
		return 0, fmt.Errorf("%w: %d bytes", store.ErrInvalidCursor, len(c))
	}
	return binary.BigEndian.Uint64(rest), nil
}

// Changes reads a collection's change log after a cursor (see
// store.Store). Changes are numbered in commit order, so Pending is never
// set.
func (b *Store) Changes(ctx context.Context, collection string, after store.Cursor, limit int) (store.ChangeLog, error) {
	if err := b.gate.Enter(ctx, "changes "+collection); err != nil {
		return store.ChangeLog{}, err
	}
	defer b.gate.Leave()
	var (
		from    uint64
		present = after == nil
	)
	if !present {
		var err error
		if from, err = b.parseCursor(collection, after); err != nil {
			return store.ChangeLog{}, fmt.Errorf("store: changes %s: %w", collection, err)
		}
	}
	out := store.ChangeLog{Next: after}
	err := b.db.View(func(tx *bbolt.Tx) error {
		var logb *bbolt.Bucket
		if root := tx.Bucket(bucketChLog); root != nil && store.ValidName(collection) {
			logb = root.Bucket([]byte(collection))
		}
		var last uint64
		if logb != nil {
			last = logb.Sequence()
		}
		if present {
			out.Next = b.cursor(collection, last)
			return nil
		}
		if from > last {
			return fmt.Errorf("%w: the cursor is ahead of the log (another database, or one restored from an older copy)", store.ErrCursorGone)
		}
		if from == last {
			return nil
		}
		hist := tx.Bucket(bucketHist).Bucket([]byte(collection))
		if hist == nil {
			return fmt.Errorf("collection without history")
		}
		c := logb.Cursor()
		want, size := from+1, 0
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], want)
		for key, hk := c.Seek(k[:]); key != nil; key, hk = c.Next() {
			if len(out.Changes) > 0 && ((limit > 0 && len(out.Changes) >= limit) || size >= store.MaxChangesBytes) {
				out.More = true
				break
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			cseq := binary.BigEndian.Uint64(key)
			if cseq != want {
				return fmt.Errorf("%w: change %d was pruned", store.ErrCursorGone, want)
			}
			v := hist.Get(hk)
			if v == nil || len(hk) < 1+seqLen {
				return fmt.Errorf("%w: change %d was pruned", store.ErrCursorGone, want)
			}
			ver, err := decodeVersion(hk[len(hk)-seqLen:], v)
			if err != nil {
				return err
			}
			out.Changes = append(out.Changes, store.CollectionChange{
				ID:      string(hk[:len(hk)-seqLen-1]),
				Version: ver,
				Cursor:  b.cursor(collection, cseq),
			})
			size += len(ver.Ops)
			want++
		}
		if !out.More && want-1 != last {
			return fmt.Errorf("%w: changes %d to %d were pruned", store.ErrCursorGone, want, last)
		}
		if n := len(out.Changes); n > 0 {
			out.Next = out.Changes[n-1].Cursor
		}
		return nil
	})
	if err != nil {
		return store.ChangeLog{}, fmt.Errorf("store: changes %s: %w", collection, err)
	}
	return out, nil
}

// ListDocuments returns up to limit current documents of a collection
// after an id, with their bodies (see store.Store).
func (b *Store) ListDocuments(ctx context.Context, collection, after string, limit int, since store.Cursor) ([]store.ListedDocument, bool, error) {
	if err := b.gate.Enter(ctx, "list "+collection); err != nil {
		return nil, false, err
	}
	defer b.gate.Leave()
	var sinceSeq uint64
	if since != nil {
		var err error
		if sinceSeq, err = b.parseCursor(collection, since); err != nil {
			return nil, false, fmt.Errorf("store: list %s: %w", collection, err)
		}
	}
	if !store.ValidName(collection) {
		return nil, false, nil
	}
	var (
		docs []store.ListedDocument
		more bool
	)
	err := b.db.View(func(tx *bbolt.Tx) error {
		bucket := tx.Bucket(bucketDocs).Bucket([]byte(collection))
		if bucket == nil {
			return nil
		}
		hist := tx.Bucket(bucketHist).Bucket([]byte(collection))
		var idx *bbolt.Bucket
		if root := tx.Bucket(bucketChIdx); root != nil {
			idx = root.Bucket([]byte(collection))
		}
		c := bucket.Cursor()
		k, v := c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
		size := 0
		for ; k != nil; k, v = c.Next() {
			if len(docs) > 0 && ((limit > 0 && len(docs) >= limit) || size >= store.MaxListBytes) {
				more = true
				break
			}
			doc, err := decodeDoc(collection, string(k), v)
			if err != nil {
				return err
			}
			d := store.ListedDocument{Document: *doc}
			if since != nil && hist != nil {
				if cseq, ok := logSeqOf(hist, idx, histKey(doc.ID, doc.Seq)); ok {
					d.ChangedSince = cseq > sinceSeq
				}
			}
			docs = append(docs, d)
			size += len(doc.Body)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("store: list %s: %w", collection, err)
	}
	return docs, more, nil
}
