package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/patchd/patchd/store"
)

// ErrImportConflict means a document being imported already exists in the
// database in another state than the one being copied.
var ErrImportConflict = errors.New("document exists with another state")

// ErrVerify means a copied document does not read back as it was copied.
var ErrVerify = errors.New("copy verification failed")

// Snapshot is one document as copied between stores: its current state
// and its retained history.
type Snapshot struct {
	Collection string
	ID         string
	// Doc is the current document, nil when the document is deleted.
	Doc *store.Document
	// Versions is the retained history, oldest first; never empty.
	Versions []store.Version
}

// seq returns the seq of the snapshot's newest version.
func (s *Snapshot) seq() uint64 { return s.Versions[len(s.Versions)-1].Seq }

// check reports a snapshot that could not have come from a store.
func (s *Snapshot) check() error {
	switch {
	case len(s.Versions) == 0:
		return errors.New("no history")
	case s.Doc != nil && s.Doc.Seq != s.seq():
		return fmt.Errorf("document at seq %d, newest version %d", s.Doc.Seq, s.seq())
	case s.Doc != nil && store.ETagOf(s.Doc.Body) != s.Doc.ETag:
		return fmt.Errorf("ETag %s does not hash the body", s.Doc.ETag)
	case s.Doc == nil && s.Versions[len(s.Versions)-1].Kind != store.KindDelete:
		return errors.New("no document, and the newest version is not a delete")
	}
	for i, v := range s.Versions {
		if v.Seq > math.MaxInt64 {
			return fmt.Errorf("version seq %d out of range", v.Seq)
		}
		if i > 0 && v.Seq != s.Versions[i-1].Seq+1 {
			return fmt.Errorf("history jumps from seq %d to %d", s.Versions[i-1].Seq, v.Seq)
		}
		if _, ok := etagBytes(v.ETag); !ok && v.ETag != "" {
			return fmt.Errorf("version %d: malformed ETag %q", v.Seq, v.ETag)
		}
	}
	return nil
}

// existing is what the database holds of a document being imported.
type existing struct {
	seq     int64
	etag    []byte
	deleted bool
}

// lookup returns the rows the database holds for the snapshots' documents,
// by collection and id.
func lookup(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, snaps []Snapshot) (map[[2]string]existing, error) {
	cs := make([]string, len(snaps))
	ids := make([]string, len(snaps))
	for i, s := range snaps {
		cs[i], ids[i] = s.Collection, s.ID
	}
	rows, err := q.Query(ctx,
		`SELECT d.collection, d.id, d.seq, d.etag, d.deleted
		 FROM documents d JOIN unnest($1::text[], $2::text[]) AS k(c, i)
		   ON d.collection = k.c COLLATE "C" AND d.id = k.i COLLATE "C"`, cs, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	have := make(map[[2]string]existing)
	for rows.Next() {
		var (
			c, id string
			e     existing
		)
		if err := rows.Scan(&c, &id, &e.seq, &e.etag, &e.deleted); err != nil {
			return nil, err
		}
		have[[2]string{c, id}] = e
	}
	return have, rows.Err()
}

// Import writes, in one transaction, the snapshots of documents the
// database does not hold yet, with their histories. A document it already
// holds at the same seq and ETag (from an earlier, interrupted copy) is
// skipped; one in any other state fails the whole batch with
// ErrImportConflict. It returns how many documents it wrote.
func (s *Store) Import(ctx context.Context, snaps []Snapshot) (int, error) {
	if err := s.enter(); err != nil {
		return 0, fmt.Errorf("postgres: import: %w", err)
	}
	defer s.active.Done()
	for i := range snaps {
		if !validKey(snaps[i].Collection, snaps[i].ID) {
			return 0, fmt.Errorf("postgres: import %q/%q: invalid collection or id", snaps[i].Collection, snaps[i].ID)
		}
		if err := snaps[i].check(); err != nil {
			return 0, fmt.Errorf("postgres: import %s/%s: %w", snaps[i].Collection, snaps[i].ID, err)
		}
	}
	written := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		written = 0
		have, err := lookup(ctx, tx, snaps)
		if err != nil {
			return err
		}
		var docs, versions [][]any
		for _, snap := range snaps {
			var etag []byte
			if snap.Doc != nil {
				etag, _ = etagBytes(snap.Doc.ETag)
			}
			if e, ok := have[[2]string{snap.Collection, snap.ID}]; ok {
				if uint64(e.seq) == snap.seq() && bytes.Equal(e.etag, etag) && e.deleted == (snap.Doc == nil) { // #nosec G115 -- a seq from the database is non-negative
					continue
				}
				return fmt.Errorf("%s/%s: the database has seq %d, the copy %d: %w",
					snap.Collection, snap.ID, e.seq, snap.seq(), ErrImportConflict)
			}
			last := snap.Versions[len(snap.Versions)-1]
			row := []any{snap.Collection, snap.ID, int64(snap.seq()), []byte{}, []byte{}, true, last.At.UnixNano()} // #nosec G115 -- check bounds every seq by MaxInt64
			if snap.Doc != nil {
				row = []any{snap.Collection, snap.ID, int64(snap.seq()), etag, snap.Doc.Body, false, snap.Doc.UpdatedAt.UnixNano()} // #nosec G115 -- as above
			}
			docs = append(docs, row)
			for _, v := range snap.Versions {
				vetag, _ := etagBytes(v.ETag)
				versions = append(versions, []any{snap.Collection, snap.ID, int64(v.Seq), nonNil(vetag), // #nosec G115 -- check bounds every seq by MaxInt64
					v.Kind, nonNil(v.Ops), v.RebasedFrom, []byte{}, v.At.UnixNano()})
			}
			written++
		}
		if len(docs) == 0 {
			return nil
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"documents"},
			[]string{"collection", "id", "seq", "etag", "body", "deleted", "updated_ns"},
			pgx.CopyFromRows(docs)); err != nil {
			return err
		}
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"document_versions"},
			[]string{"collection", "id", "seq", "etag", "kind", "ops", "rebased_from", "token", "at_ns"},
			pgx.CopyFromRows(versions))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: import: %w", err)
	}
	return written, nil
}

// Verify reads the snapshots' documents back and checks that each holds
// exactly what was copied: the body bytes hash to the ETag copied, the
// stored ETag and seq match, and the history has the same seqs and ETags.
// It returns an error wrapping ErrVerify naming the first document that
// differs.
func (s *Store) Verify(ctx context.Context, snaps []Snapshot) error {
	for i := range snaps {
		if err := s.verify(ctx, &snaps[i]); err != nil {
			return err
		}
	}
	return nil
}

// verify checks one snapshot.
func (s *Store) verify(ctx context.Context, snap *Snapshot) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("postgres: verify %s/%s: %s: %w", snap.Collection, snap.ID, fmt.Sprintf(format, args...), ErrVerify)
	}
	doc, err := s.Get(ctx, snap.Collection, snap.ID)
	switch {
	case snap.Doc == nil && errors.Is(err, store.ErrNotFound):
	case snap.Doc == nil && err == nil:
		return fail("deleted in the copy, present in the database")
	case err != nil:
		return fmt.Errorf("postgres: verify %s/%s: %w", snap.Collection, snap.ID, err)
	case store.ETagOf(doc.Body) != snap.Doc.ETag:
		return fail("body hashes to %s, want %s", store.ETagOf(doc.Body), snap.Doc.ETag)
	case doc.ETag != snap.Doc.ETag:
		return fail("stored ETag %s, want %s", doc.ETag, snap.Doc.ETag)
	case doc.Seq != snap.Doc.Seq:
		return fail("seq %d, want %d", doc.Seq, snap.Doc.Seq)
	}
	vs, _, err := s.History(ctx, snap.Collection, snap.ID, snap.Versions[0].Seq-1, 0)
	if err != nil {
		return fmt.Errorf("postgres: verify %s/%s: %w", snap.Collection, snap.ID, err)
	}
	key := func(v store.Version) [2]any { return [2]any{v.Seq, v.ETag} }
	got := make([][2]any, 0, len(vs))
	for _, v := range vs {
		got = append(got, key(v))
	}
	want := make([][2]any, 0, len(snap.Versions))
	for _, v := range snap.Versions {
		want = append(want, key(v))
	}
	if len(vs) < len(snap.Versions) || !slices.Equal(got[:len(want)], want) {
		return fail("history differs from the copy")
	}
	return nil
}

// Progress is a copy's advance, reported after each batch.
type Progress struct {
	// Phase is "copy", then "verify".
	Phase string
	// Done of Total documents are through the phase.
	Done, Total int
}

// CopyStats sums up a copy.
type CopyStats struct {
	// Documents is how many documents the source holds, deleted ones
	// included; Copied how many this run wrote (the rest were there from
	// an earlier run); Versions how many history versions were read.
	Documents, Copied, Versions int
}

// Limits of one Import batch.
const (
	copyBatchDocs  = 256
	copyBatchBytes = 8 << 20
)

// CopyFromBolt copies every document of src, deleted ones included, with
// its retained history, into dst; then it reads every document back and
// checks it (see Verify). Each batch of documents commits atomically, and
// documents already copied are skipped, so an interrupted copy is resumed
// by running it again. progress, if not nil, is called after each batch.
//
// The source must not change meanwhile: stop the server that uses it.
func CopyFromBolt(ctx context.Context, src *store.Bolt, dst *Store, progress func(Progress)) (CopyStats, error) {
	var st CopyStats
	report := func(p Progress) {
		if progress != nil {
			progress(p)
		}
	}
	if err := src.Walk(ctx, func(string, string) error { st.Documents++; return nil }); err != nil {
		return st, err
	}
	report(Progress{Phase: "copy", Total: st.Documents})

	var (
		batch []Snapshot
		size  int
		done  int
	)
	flush := func() error {
		n, err := dst.Import(ctx, batch)
		if err != nil {
			return err
		}
		st.Copied += n
		done += len(batch)
		batch, size = batch[:0], 0
		report(Progress{Phase: "copy", Done: done, Total: st.Documents})
		return nil
	}
	err := src.Walk(ctx, func(c, id string) error {
		snap, n, err := snapshot(ctx, src, c, id)
		if err != nil {
			return err
		}
		st.Versions += len(snap.Versions)
		batch, size = append(batch, snap), size+n
		if len(batch) >= copyBatchDocs || size >= copyBatchBytes {
			return flush()
		}
		return nil
	})
	if err == nil && len(batch) > 0 {
		err = flush()
	}
	if err != nil {
		return st, err
	}

	done = 0
	report(Progress{Phase: "verify", Total: st.Documents})
	err = src.Walk(ctx, func(c, id string) error {
		snap, _, err := snapshot(ctx, src, c, id)
		if err != nil {
			return err
		}
		if err := dst.verify(ctx, &snap); err != nil {
			return err
		}
		if done++; done%copyBatchDocs == 0 || done == st.Documents {
			report(Progress{Phase: "verify", Done: done, Total: st.Documents})
		}
		return nil
	})
	return st, err
}

// snapshot reads one document of src and its whole retained history, and
// returns it with its size in bytes.
func snapshot(ctx context.Context, src store.Store, c, id string) (Snapshot, int, error) {
	snap := Snapshot{Collection: c, ID: id}
	doc, err := src.Get(ctx, c, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return snap, 0, err
	default:
		snap.Doc = doc
	}
	if snap.Versions, _, err = src.History(ctx, c, id, 0, 0); err != nil {
		return snap, 0, err
	}
	n := 0
	if doc != nil {
		n += len(doc.Body)
	}
	for _, v := range snap.Versions {
		n += len(v.Ops) + 100
	}
	return snap, n, nil
}
