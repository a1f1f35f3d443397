package bolt

import (
	"context"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/patchd/patchd/store"
)

// Dump calls fn for every document in collection then id order, from one
// read transaction, so that the records form a consistent snapshot. Without
// history it visits the current documents only; with history it also
// visits deleted documents whose history is retained, and fills every
// record's History. The Record passed to fn is valid only during the call.
// An error from fn stops Dump, which returns it.
func (b *Store) Dump(ctx context.Context, withHistory bool, fn func(*store.Record) error) error {
	if err := b.gate.Enter(ctx, "dump"); err != nil {
		return err
	}
	defer b.gate.Leave()
	return b.view(func(tx *bbolt.Tx) error {
		docsRoot := tx.Bucket(bucketDocs)
		if !withHistory {
			return docsRoot.ForEachBucket(func(coll []byte) error {
				c := docsRoot.Bucket(coll).Cursor()
				for k, v := c.First(); k != nil; k, v = c.Next() {
					if err := ctx.Err(); err != nil {
						return err
					}
					doc, err := decodeDoc(string(coll), string(k), v)
					if err != nil {
						return err
					}
					if err := fn(&store.Record{Collection: doc.Collection, ID: doc.ID, Doc: doc}); err != nil {
						return err
					}
				}
				return nil
			})
		}
		histRoot := tx.Bucket(bucketHist)
		return histRoot.ForEachBucket(func(coll []byte) error {
			docs := docsRoot.Bucket(coll)
			c := histRoot.Bucket(coll).Cursor()
			var rec *store.Record
			flush := func() error {
				if rec == nil {
					return nil
				}
				r := rec
				rec = nil
				if docs != nil {
					if v := docs.Get([]byte(r.ID)); v != nil {
						doc, err := decodeDoc(r.Collection, r.ID, v)
						if err != nil {
							return err
						}
						r.Doc = doc
					}
				}
				return fn(r)
			}
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if err := ctx.Err(); err != nil {
					return err
				}
				if len(k) < 1+seqLen || k[len(k)-seqLen-1] != 0 {
					return fmt.Errorf("history key %q of collection %s: %w", k, coll, errBadVersion)
				}
				id := string(k[:len(k)-seqLen-1])
				if rec != nil && rec.ID != id {
					if err := flush(); err != nil {
						return err
					}
				}
				if rec == nil {
					rec = &store.Record{Collection: string(coll), ID: id}
				}
				ver, err := decodeVersion(k[len(k)-seqLen:], v)
				if err != nil {
					return fmt.Errorf("%s/%s: history: %w", coll, id, err)
				}
				rec.History = append(rec.History, ver)
			}
			return flush()
		})
	})
}

// Load writes records as they are, with their versions' seqs, times and
// ETags, in one transaction synced to disk before it returns: it is how an
// import restores documents. Every record must have a History whose last
// version produced its Doc (same seq and ETag; no Doc after a delete), and
// Doc's ETag must be that of its Body.
//
// A record whose document or history the store already holds is not
// written: its entry in the returned slice wraps ErrExists. A record that
// breaks the rules above gets an error there too. The other records are
// written. The error result is for failures of the store itself, after
// which nothing was written.
func (b *Store) Load(ctx context.Context, recs []*store.Record) ([]error, error) {
	errs, err := b.gate.EnterLoad(ctx, recs)
	if err != nil {
		return nil, err
	}
	defer b.gate.Leave()
	err = b.update(func(tx *bbolt.Tx) error {
		for i, r := range recs {
			if errs[i] != nil {
				continue
			}
			docs, err := tx.Bucket(bucketDocs).CreateBucketIfNotExists([]byte(r.Collection))
			if err != nil {
				return err
			}
			hist, err := tx.Bucket(bucketHist).CreateBucketIfNotExists([]byte(r.Collection))
			if err != nil {
				return err
			}
			if docs.Get([]byte(r.ID)) != nil {
				errs[i] = fmt.Errorf("%s/%s: %w", r.Collection, r.ID, store.ErrExists)
				continue
			}
			if _, ok := lastSeq(hist.Cursor(), r.ID); ok {
				errs[i] = fmt.Errorf("%s/%s: %w (its history is retained)", r.Collection, r.ID, store.ErrExists)
				continue
			}
			for j := range r.History {
				v := &r.History[j]
				if err := putVersion(tx, hist, r.Collection, histKey(r.ID, v.Seq), encodeVersion(v)); err != nil {
					return err
				}
			}
			if r.Doc != nil {
				d := r.Doc
				if err := docs.Put([]byte(r.ID), encodeDoc(d.Seq, d.UpdatedAt, d.ETag, d.Body)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: load: %w", noSpace(err))
	}
	return errs, nil
}
