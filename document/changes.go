package document

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/query"
	"github.com/patchd/patchd/store"
)

// Changes reads a collection's change log after a cursor (see
// store.Store).
func (s *Service) Changes(ctx context.Context, collection string, after store.Cursor, limit int) (store.ChangeLog, error) {
	return s.store.Changes(ctx, collection, after, limit)
}

// walkPage is how many versions WalkBack reads at a time.
const walkPage = 16

// ErrHistoryMoved means the versions WalkBack needed were pruned, or the
// document changed in a way it cannot follow, while it read them: the
// caller reads the change log again (a pruned version is also gone from
// it).
var ErrHistoryMoved = errors.New("history changed while it was read")

// WalkBack reconstructs a document's past states from its current one. It
// calls fn with the document as it was right after each version, from the
// newest down to version from, and then as it was just before version from
// (seq from-1): doc is the decoded tree, nil when the document did not
// exist. The tree is modified after fn returns: fn must neither keep nor
// change it. Versions are read walkPage at a time, from the newest, and
// undone with the undo information history keeps, so memory holds one
// tree and one page of versions. It returns ErrHistoryMoved (wrapped) when
// a version it needs is no longer retained.
func (s *Service) WalkBack(ctx context.Context, collection, id string, from uint64, fn func(seq uint64, doc any) error) error {
	if from == 0 {
		from = 1
	}
	var (
		cur  any
		last uint64
	)
	doc, err := s.store.Get(ctx, collection, id)
	switch {
	case err == nil:
		release, err := s.docs.Acquire(ctx, len(doc.Body))
		if err != nil {
			return err
		}
		defer release()
		if cur, err = patch.Parse(doc.Body, patch.Limits{}); err != nil {
			return fmt.Errorf("stored document %s/%s: %w", collection, id, err)
		}
		last = doc.Seq
	case errors.Is(err, store.ErrNotFound):
		// Deleted (or never written): its newest version is in history.
		if last, err = s.lastSeq(ctx, collection, id, from-1); err != nil {
			return err
		}
	default:
		return err
	}
	if last < from {
		return fmt.Errorf("%w: %s/%s is at seq %d, before %d", ErrHistoryMoved, collection, id, last, from)
	}
	if err := fn(last, cur); err != nil {
		return err
	}
	for hi := last; hi >= from; {
		lo := max(from-1, hi-min(hi, walkPage))
		vs, _, err := s.store.History(ctx, collection, id, lo, int(hi-lo), 0) // #nosec G115 -- at most walkPage
		if err != nil {
			return err
		}
		if uint64(len(vs)) != hi-lo || vs[0].Seq != lo+1 {
			return fmt.Errorf("%w: %s/%s versions %d to %d", ErrHistoryMoved, collection, id, lo+1, hi)
		}
		for i := len(vs) - 1; i >= 0; i-- {
			v := vs[i]
			if cur == nil && v.Kind != store.KindDelete {
				return fmt.Errorf("%w: %s/%s was written again while it was read", ErrHistoryMoved, collection, id)
			}
			ops, err := s.ops.decode(collection, id, v)
			if err != nil {
				return err
			}
			earlier, exists, err := patch.Revert(cur, ops)
			if err != nil {
				return fmt.Errorf("%w: %s/%s version %d does not undo: %v", ErrHistoryMoved, collection, id, v.Seq, err)
			}
			if !exists {
				earlier = nil
			}
			cur = earlier
			if err := fn(v.Seq-1, cur); err != nil {
				return err
			}
		}
		hi = lo
	}
	return nil
}

// lastSeq returns the seq of a document's newest version, reading its
// history after seq after.
func (s *Service) lastSeq(ctx context.Context, collection, id string, after uint64) (uint64, error) {
	last := after
	for {
		vs, more, err := s.store.History(ctx, collection, id, last, 100, 0)
		if err != nil {
			return 0, err
		}
		if len(vs) > 0 {
			last = vs[len(vs)-1].Seq
		}
		if !more || len(vs) == 0 {
			return last, nil
		}
	}
}

// Matches evaluates where on a document before and after one version of it
// (a change of its collection's log) when that version is the document's
// current one: the state after it is the stored body, read where the
// filter looks; when the version's ops touch none of the members the
// filter reads (nor an array on their way, whose indices they shift), the
// state before matches as the state after; otherwise it is the body with
// the version undone. ok is false when the version is not the current one
// (or the document is deleted): WalkBack decides then.
func (s *Service) Matches(ctx context.Context, collection string, ch store.CollectionChange, where *query.Where) (before, after, ok bool, err error) {
	st, err := s.state(ctx, collection, ch.ID, ch.Version)
	if err != nil || !st.current {
		return false, false, false, err
	}
	if after, err = s.matchAfter(ctx, collection, ch.ID, st, where); err != nil {
		return false, false, false, err
	}
	unrelated := true
	for _, o := range st.ops {
		if o.Kind == patch.OpRoot && !o.HadOld {
			return false, after, true, nil // a creation: nothing before
		}
		touched := o.Path
		if o.Kind == patch.OpIns || o.Kind == patch.OpRm {
			touched = touched[:len(touched)-1] // the whole array shifts
		}
		for _, p := range where.Pointers() {
			unrelated = unrelated && !related(touched, p)
		}
	}
	if unrelated {
		return after, after, true, nil
	}
	// The state before is the body with this version undone.
	earlier, existed, undone, err := s.beforeTree(ctx, collection, ch.ID, st)
	if err != nil || !undone {
		return false, false, false, err
	}
	return existed && where.Match(earlier), after, true, nil
}

// related reports whether a write at path can change the value at p: one
// is a prefix of the other.
func related(path patch.Path, p patch.Pointer) bool {
	for i := 0; i < len(path) && i < len(p); i++ {
		seg := path[i]
		if seg.IsIndex {
			if p[i] != strconv.Itoa(seg.Index) {
				return false // p names a member where there is an array: never there
			}
		} else if seg.Key != p[i] {
			return false
		}
	}
	return true
}
