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
	var np int // the edit's ops on its base
	onBase := func(base any) (any, []patch.Op, error) {
		r, ops, err := d.edit.apply(base)
		d.baseResult, np = r, len(ops)
		return r, ops, err
	}
	lim, done := d.rebaseLimits(since)
	result, ops, err := patch.RebaseOnto(doc, since, onBase, lim)
	err = done(np, err)
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

// maxBatchRebaseWork is how many times --max-rebase-work the rebases of
// one batch's writes may take together (each within it), so that a batch
// of many stale writes is answered in time: about 0.1 s of CPU per
// 1,000,000.
const maxBatchRebaseWork = 4

// batchRebaseWork is the rebase work the writes of one batch may take.
func (s *Service) batchRebaseWork() int {
	w := s.cfg.Rebase.MaxWork
	if w <= 0 {
		w = patch.DefaultRebaseMaxWork
	}
	return maxBatchRebaseWork * w
}

// rebaseLimits returns the limits of a rebase over since: the
// configuration's, within what is left of the batch's rebase work. done,
// given the number of the edit's ops and the rebase's error, takes the
// work from the batch and returns the error, saying so when the batch's
// bound refused a rebase its own bound allows.
func (d *decision) rebaseLimits(since []patch.Committed) (patch.RebaseLimits, func(np int, err error) error) {
	lim := d.s.cfg.Rebase
	if lim.MaxWork <= 0 {
		lim.MaxWork = patch.DefaultRebaseMaxWork
	}
	if lim.MaxOps <= 0 {
		lim.MaxOps = patch.DefaultRebaseMaxOps
	}
	if d.rebaseWork == nil {
		return lim, func(_ int, err error) error { return err }
	}
	own := lim.MaxWork
	lim.MaxWork = max(min(own, *d.rebaseWork), 1) // 0 would be the default
	nq := 0
	for _, c := range since {
		nq += len(c.Ops)
	}
	return lim, func(np int, err error) error {
		work := np * nq
		if errors.Is(err, patch.ErrRebaseTooFar) && work <= own && nq <= lim.MaxOps {
			return fail(patch.ErrRebaseTooFar, fmt.Sprintf("the rebases of this batch's writes together exceed %d pairs of operations (%d times --max-rebase-work); send fewer stale writes in one batch, or read the documents again", maxBatchRebaseWork*own, maxBatchRebaseWork))
		}
		if err == nil {
			*d.rebaseWork -= min(work, *d.rebaseWork)
		}
		return err
	}
}
