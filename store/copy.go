package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrCopyConflict means a document being copied already exists in the
// destination in another state than the one being copied.
var ErrCopyConflict = errors.New("document exists with another state")

// ErrVerify means a copied document does not read back as it was copied.
var ErrVerify = errors.New("copy verification failed")

// CheckRecord reports a record that could not have come from a store: a
// name outside ValidCollection and ValidName, no history, seqs that jump, a body whose ETag is
// not its own, or a document that is not what its last version produced.
func CheckRecord(r *Record) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s/%s: %s", r.Collection, r.ID, fmt.Sprintf(format, args...))
	}
	if !ValidCollection(r.Collection) || !ValidName(r.ID) {
		return fmt.Errorf("%q/%q: %w", r.Collection, r.ID, ErrInvalidKey)
	}
	if len(r.History) == 0 {
		return bad("no history")
	}
	for i, v := range r.History {
		if v.Seq == 0 || v.Seq > math.MaxInt64 {
			return bad("history seq %d out of range", v.Seq)
		}
		if i > 0 && v.Seq != r.History[i-1].Seq+1 {
			return bad("history seq %d follows %d", v.Seq, r.History[i-1].Seq)
		}
		if v.ETag != "" && !wellFormedETag(v.ETag) {
			return bad("version %d: malformed ETag %q", v.Seq, v.ETag)
		}
	}
	last := r.History[len(r.History)-1]
	if r.Doc == nil {
		if last.ETag != "" || last.Kind != KindDelete {
			return bad("no document, but the last version (%s, ETag %q) is not a delete", last.Kind, last.ETag)
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

// wellFormedETag reports whether etag is one ETagOf could have made.
func wellFormedETag(etag string) bool {
	if len(etag) != 34 || etag[0] != '"' || etag[33] != '"' {
		return false
	}
	for i := 1; i < 33; i++ {
		if c := etag[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// CopyProgress is a copy's advance, reported after each batch.
type CopyProgress struct {
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
	// Keys is how many live idempotency records the source holds, and
	// KeysCopied how many of them this run wrote.
	Keys, KeysCopied int
}

// Destination is a store a copy can write into and read back from.
type Destination interface {
	Store
	Loader
}

// Limits of one Load batch of a copy.
const (
	copyBatchDocs  = 256
	copyBatchBytes = 8 << 20
	copyBatchKeys  = 1024
)

// Copy copies every document of src, deleted ones included, with its
// retained history, into dst; then it reads every document back and checks
// it: the body hashes to the ETag copied, the seq matches, and the history
// has the same seqs and ETags. Each batch of documents is loaded in one
// transaction, and documents dst already holds in the same state (from an
// earlier, interrupted copy) are skipped, so an interrupted copy is resumed
// by running it again. A document dst holds in another state fails the copy
// with an error wrapping ErrCopyConflict. When both stores are
// IdempotencyCopiers, the idempotency records that have not expired are
// copied too (those dst holds already are kept), so that a retry of a
// write made before the copy is still answered from its record. progress,
// if not nil, is called after each batch.
//
// The source must not change meanwhile: stop the server that uses it.
func Copy(ctx context.Context, src Dumper, dst Destination, progress func(CopyProgress)) (CopyStats, error) {
	var st CopyStats
	report := func(p CopyProgress) {
		if progress != nil {
			progress(p)
		}
	}
	if err := src.Dump(ctx, true, func(*Record) error { st.Documents++; return nil }); err != nil {
		return st, fmt.Errorf("copy: %w", err)
	}
	report(CopyProgress{Phase: "copy", Total: st.Documents})

	var (
		batch []*Record
		size  int
		done  int
	)
	flush := func() error {
		errs, err := dst.Load(ctx, batch)
		if err != nil {
			return err
		}
		for i, lerr := range errs {
			switch {
			case lerr == nil:
				st.Copied++
			case errors.Is(lerr, ErrExists):
				if err := sameState(ctx, dst, batch[i]); err != nil {
					return err
				}
			default:
				return lerr
			}
		}
		done += len(batch)
		batch, size = batch[:0], 0
		report(CopyProgress{Phase: "copy", Done: done, Total: st.Documents})
		return nil
	}
	err := src.Dump(ctx, true, func(r *Record) error {
		st.Versions += len(r.History)
		batch, size = append(batch, cloneRecord(r)), size+recordSize(r)
		if len(batch) >= copyBatchDocs || size >= copyBatchBytes {
			return flush()
		}
		return nil
	})
	if err == nil && len(batch) > 0 {
		err = flush()
	}
	if err != nil {
		return st, fmt.Errorf("copy: %w", err)
	}
	if err := copyIdempotency(ctx, src, dst, &st); err != nil {
		return st, fmt.Errorf("copy: idempotency records: %w", err)
	}

	done = 0
	report(CopyProgress{Phase: "verify", Total: st.Documents})
	err = src.Dump(ctx, true, func(r *Record) error {
		if err := verify(ctx, dst, r); err != nil {
			return err
		}
		if done++; done%copyBatchDocs == 0 || done == st.Documents {
			report(CopyProgress{Phase: "verify", Done: done, Total: st.Documents})
		}
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("copy: %w", err)
	}
	return st, nil
}

// copyIdempotency copies the live idempotency records of src into dst, when
// both can.
func copyIdempotency(ctx context.Context, src Dumper, dst Destination, st *CopyStats) error {
	from, ok := src.(IdempotencyCopier)
	if !ok {
		return nil
	}
	to, ok := dst.(IdempotencyCopier)
	if !ok {
		return nil
	}
	var batch []*IdempotencyRecord
	flush := func() error {
		n, err := to.LoadIdempotency(ctx, batch)
		st.KeysCopied += n
		batch = batch[:0]
		return err
	}
	err := from.DumpIdempotency(ctx, func(r *IdempotencyRecord) error {
		st.Keys++
		c := *r
		c.Value = slices.Clone(r.Value)
		if batch = append(batch, &c); len(batch) >= copyBatchKeys {
			return flush()
		}
		return nil
	})
	if err == nil && len(batch) > 0 {
		err = flush()
	}
	return err
}

// sameState checks that dst holds r's document at the same seq and ETag
// (deleted when r is), as an earlier run of the copy left it.
func sameState(ctx context.Context, dst Store, r *Record) error {
	last := r.History[len(r.History)-1]
	doc, err := dst.Get(ctx, r.Collection, r.ID)
	switch {
	case errors.Is(err, ErrNotFound) && r.Doc == nil:
		vs, _, herr := dst.History(ctx, r.Collection, r.ID, last.Seq-1, 1, 0)
		if herr == nil && len(vs) == 1 && vs[0].Seq == last.Seq && vs[0].ETag == "" {
			return nil
		}
	case err != nil && !errors.Is(err, ErrNotFound):
		return err
	case err == nil && r.Doc != nil && doc.Seq == r.Doc.Seq && doc.ETag == r.Doc.ETag:
		return nil
	}
	return fmt.Errorf("%s/%s: the destination holds another state than the copy's seq %d: %w",
		r.Collection, r.ID, last.Seq, ErrCopyConflict)
}

// verify checks that dst holds exactly what r carries.
func verify(ctx context.Context, dst Store, r *Record) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("verify %s/%s: %s: %w", r.Collection, r.ID, fmt.Sprintf(format, args...), ErrVerify)
	}
	doc, err := dst.Get(ctx, r.Collection, r.ID)
	switch {
	case r.Doc == nil && errors.Is(err, ErrNotFound):
	case r.Doc == nil && err == nil:
		return fail("deleted in the copy, present in the destination")
	case err != nil:
		return fmt.Errorf("verify %s/%s: %w", r.Collection, r.ID, err)
	case ETagOf(doc.Body) != r.Doc.ETag:
		return fail("body hashes to %s, want %s", ETagOf(doc.Body), r.Doc.ETag)
	case doc.ETag != r.Doc.ETag:
		return fail("stored ETag %s, want %s", doc.ETag, r.Doc.ETag)
	case doc.Seq != r.Doc.Seq:
		return fail("seq %d, want %d", doc.Seq, r.Doc.Seq)
	}
	vs, _, err := dst.History(ctx, r.Collection, r.ID, r.History[0].Seq-1, len(r.History), 0)
	if err != nil {
		return fmt.Errorf("verify %s/%s: %w", r.Collection, r.ID, err)
	}
	key := func(v Version) [2]any { return [2]any{v.Seq, v.ETag} }
	got := make([][2]any, 0, len(vs))
	for _, v := range vs {
		got = append(got, key(v))
	}
	want := make([][2]any, 0, len(r.History))
	for _, v := range r.History {
		want = append(want, key(v))
	}
	if !slices.Equal(got, want) {
		return fail("history differs from the copy")
	}
	return nil
}

// cloneRecord returns a copy of r that owns its bytes, for a record kept
// past its Dump callback.
func cloneRecord(r *Record) *Record {
	c := &Record{Collection: r.Collection, ID: r.ID, History: make([]Version, len(r.History))}
	if r.Doc != nil {
		d := *r.Doc
		d.Body = slices.Clone(d.Body)
		c.Doc = &d
	}
	for i, v := range r.History {
		v.Ops = slices.Clone(v.Ops)
		c.History[i] = v
	}
	return c
}

// recordSize estimates the bytes a record holds.
func recordSize(r *Record) int {
	n := 0
	if r.Doc != nil {
		n += len(r.Doc.Body)
	}
	for _, v := range r.History {
		n += len(v.Ops) + 100
	}
	return n
}
