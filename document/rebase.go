package document

import (
	"context"
	"errors"
	"fmt"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// tooFar is the 412 of a stale write whose base lies behind more history
// than one rebase reads (store.Options.MaxHistoryRead).
func tooFar(current, base string) error {
	return &PreconditionError{
		Err:     fail(patch.ErrRebaseTooFar, "the versions committed since the base hold more bytes of changes than the server reads for one rebase; read the document again and resend the edit"),
		Current: current,
		Base:    base,
	}
}

// rebase decides a write whose If-Match names an older version: it finds
// that base in history, and rebases the edit over every version committed
// since (REBASE.md) with patch.RebaseOnto.
func (d *decision) rebase(ctx context.Context, cur *store.Document, h store.History) (*store.Change, error) {
	s := d.s
	client := d.w.Pre.client()
	base, later, err := h.Since(ctx, d.w.Pre.IfMatch.StrongTags())
	if errors.Is(err, store.ErrBaseUnknown) {
		return nil, &PreconditionError{
			Err:     fail(store.ErrBaseUnknown, "If-Match names no version in the retained history; read the document again and resend the edit"),
			Current: cur.ETag,
			Base:    client,
		}
	}
	if errors.Is(err, store.ErrHistoryTooLarge) {
		return nil, tooFar(cur.ETag, client)
	}
	if err != nil {
		return nil, err
	}
	since := make([]patch.Committed, len(later))
	for i, v := range later {
		ops, err := s.ops.decode(cur.Collection, cur.ID, v)
		if err != nil {
			return nil, fmt.Errorf("history %s/%s seq %d: %w", cur.Collection, cur.ID, v.Seq, err)
		}
		since[i] = patch.Committed{Seq: v.Seq, Ops: ops}
	}
	release, err := s.docs.Acquire(ctx, 2*len(cur.Body)) // the current version and the base
	if err != nil {
		return nil, err
	}
	defer release()
	doc, err := s.decode(cur)
	if err != nil {
		return nil, err
	}
	onBase := func(base any) (any, []patch.Op, error) {
		r, ops, err := d.edit.apply(base)
		d.baseResult = r
		return r, ops, err
	}
	result, ops, err := patch.RebaseOnto(doc, since, onBase, s.cfg.Rebase)
	if errors.Is(err, patch.ErrRebaseConflict) || errors.Is(err, patch.ErrRebaseTooFar) || errors.Is(err, patch.ErrRebaseApplyFailed) {
		if errors.Is(err, patch.ErrRebaseApplyFailed) {
			s.log.Warn("rebased patch did not apply", "collection", cur.Collection, "id", cur.ID, "err", err)
		}
		return nil, &PreconditionError{Err: err, Current: cur.ETag, Base: base.ETag}
	}
	if err != nil {
		return nil, err // the edit does not apply to its own base: 422 as is
	}
	d.rebasedFrom = base.ETag
	return s.commit(cur, result, ops, d.w.Kind, base.ETag)
}
