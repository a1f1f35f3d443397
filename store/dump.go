package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrExists means Load was given a document that the store already holds,
// or already holds history of.
var ErrExists = errors.New("document exists")

// Record is one document as an export carries it: its current state and,
// when asked for, its retained history.
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

// OpenBoltReadOnly opens an existing patchd database file for reading,
// waiting at most timeout for a process that writes it. It never creates
// or changes the file; Update returns an error. It returns an error
// wrapping ErrLocked when a running server holds the file, one wrapping
// os.ErrNotExist when there is no file, and one wrapping ErrUnknownFormat
// when the file is not a patchd database.
func OpenBoltReadOnly(path string, timeout time.Duration) (*Bolt, error) {
	db, err := openReadOnly(path, timeout)
	if err != nil {
		return nil, fmt.Errorf("store: open %s read-only: %w", path, err)
	}
	b := &Bolt{
		db:        db,
		path:      path,
		retention: Retention{Versions: defaultRetentionVersions, Age: defaultRetentionAge},
		now:       time.Now,
		log:       slog.New(slog.DiscardHandler),
		locks:     make(map[string]*docLock),
	}
	b.gc = newCommitter(b) // its transactions fail: the file is open read-only
	return b, nil
}

// Dump calls fn for every document in collection then id order, from one
// read transaction, so that the records form a consistent snapshot. Without
// history it visits the current documents only; with history it also
// visits deleted documents whose history is retained, and fills every
// record's History. The Record passed to fn is valid only during the call.
// An error from fn stops Dump, which returns it.
func (b *Bolt) Dump(ctx context.Context, withHistory bool, fn func(*Record) error) error {
	if err := b.enter(); err != nil {
		return fmt.Errorf("store: dump: %w", err)
	}
	defer b.active.Done()
	return b.db.View(func(tx *bolt.Tx) error {
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
					if err := fn(&Record{Collection: doc.Collection, ID: doc.ID, Doc: doc}); err != nil {
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
			var rec *Record
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
					rec = &Record{Collection: string(coll), ID: id}
				}
				ver, err := decodeVersion(k[len(k)-seqLen:], v)
				if err != nil {
					return err
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
func (b *Bolt) Load(ctx context.Context, recs []*Record) ([]error, error) {
	if err := b.enter(); err != nil {
		return nil, fmt.Errorf("store: load: %w", err)
	}
	defer b.active.Done()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: load: %w", err)
	}
	errs := make([]error, len(recs))
	for i, r := range recs {
		errs[i] = checkRecord(r)
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
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
				errs[i] = fmt.Errorf("%s/%s: %w", r.Collection, r.ID, ErrExists)
				continue
			}
			if _, ok := lastSeq(hist.Cursor(), r.ID); ok {
				errs[i] = fmt.Errorf("%s/%s: %w (its history is retained)", r.Collection, r.ID, ErrExists)
				continue
			}
			for j := range r.History {
				v := &r.History[j]
				if err := hist.Put(histKey(r.ID, v.Seq), encodeVersion(v)); err != nil {
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
		return nil, fmt.Errorf("store: load: %w", err)
	}
	return errs, nil
}

// checkRecord checks the rules Load states.
func checkRecord(r *Record) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s/%s: %s", r.Collection, r.ID, fmt.Sprintf(format, args...))
	}
	if !validKey(r.Collection, r.ID) {
		return bad("invalid collection or id")
	}
	if len(r.History) == 0 {
		return bad("no history")
	}
	for i := 1; i < len(r.History); i++ {
		if r.History[i].Seq != r.History[i-1].Seq+1 {
			return bad("history seq %d follows %d", r.History[i].Seq, r.History[i-1].Seq)
		}
	}
	last := r.History[len(r.History)-1]
	if last.Seq == 0 {
		return bad("history seq 0")
	}
	if r.Doc == nil {
		if last.ETag != "" {
			return bad("no document, but the last version has ETag %s", last.ETag)
		}
		return nil
	}
	d := r.Doc
	switch {
	case d.ETag != ETagOf(d.Body):
		return bad("ETag %s is not that of the body (%s)", d.ETag, ETagOf(d.Body))
	case d.Seq != last.Seq:
		return bad("document seq %d, last version %d", d.Seq, last.Seq)
	case d.ETag != last.ETag:
		return bad("document ETag %s, last version %s", d.ETag, last.ETag)
	case !d.UpdatedAt.Equal(last.At):
		return bad("document updated at %s, last version at %s", d.UpdatedAt, last.At)
	case d.Collection != r.Collection || d.ID != r.ID:
		return bad("document is %s/%s", d.Collection, d.ID)
	}
	return nil
}
