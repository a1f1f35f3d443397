package document

import (
	"context"
	"errors"
	"fmt"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// revert decides a Revert of version k = d.w.Revert: the inverse of its
// ops, made against the document as version k left it, rebased over every
// version after k (REBASE.md), like a stale PATCH whose base is k. seq is
// the document's newest version (0: no history).
//
// Reverting the delete that is the document's newest version creates the
// document again with the body the delete removed. Reverting the version
// that created the document is refused (ErrCannotRevert): that is a
// DELETE.
func (d *decision) revert(ctx context.Context, cur *store.Document, seq uint64, h store.History) (*store.Change, error) {
	k := d.w.Revert
	current := ""
	if cur != nil {
		current = cur.ETag
	}
	unknown := func(detail string) error {
		return &PreconditionError{Err: fail(store.ErrBaseUnknown, detail), Current: current}
	}
	if seq == 0 {
		return nil, fail(store.ErrNotFound, "no such document")
	}
	if k > seq {
		return nil, unknown(fmt.Sprintf("the document has no version %d: its newest is %d", k, seq))
	}
	v, later, err := h.SinceSeq(ctx, k)
	if errors.Is(err, store.ErrBaseUnknown) {
		return nil, unknown(fmt.Sprintf("version %d is no longer in the retained history", k))
	}
	if errors.Is(err, store.ErrHistoryTooLarge) {
		return nil, tooFar(current, "")
	}
	if err != nil {
		return nil, err
	}
	coll, id := d.w.Collection, d.w.ID
	ops, err := d.s.ops.decode(coll, id, v)
	if err != nil {
		return nil, fmt.Errorf("history %s/%s seq %d: %w", coll, id, v.Seq, err)
	}
	if cur == nil && k != seq {
		return nil, fail(store.ErrNotFound, fmt.Sprintf("the document was deleted by version %d; revert that version first", seq))
	}
	if v.Kind == store.KindDelete {
		return d.undelete(cur, v, ops, later)
	}
	if cur == nil {
		return nil, fail(store.ErrNotFound, fmt.Sprintf("the document was deleted by version %d; revert that version first", seq))
	}
	for _, o := range ops {
		if o.Kind == patch.OpRoot && !o.HadOld {
			return nil, fail(ErrCannotRevert, fmt.Sprintf("version %d created the document; to undo it, DELETE the document", k))
		}
	}
	// The preconditions are a PATCH's: If-None-Match, 428, strict, and an
	// If-Match that names no retained version.
	if err := d.precondition(cur.ETag); err != nil {
		return nil, err
	}
	// A stale If-Match is a PATCH's: the revert is rebased over what the
	// client had not seen, and Rebased-From names the version it sent.
	var stale string
	if pre := d.w.Pre; pre.IfMatch.Present && !pre.IfMatch.MatchStrong(cur.ETag) {
		base, _, err := h.Since(ctx, pre.IfMatch.StrongTags())
		if errors.Is(err, store.ErrBaseUnknown) {
			return nil, &PreconditionError{
				Err:     fail(store.ErrBaseUnknown, "If-Match names no version in the retained history; read the document again and resend the revert"),
				Current: cur.ETag,
				Base:    pre.client(),
			}
		}
		if errors.Is(err, store.ErrHistoryTooLarge) {
			return nil, tooFar(cur.ETag, pre.client())
		}
		if err != nil {
			return nil, err
		}
		stale = base.ETag
	}
	since := make([]patch.Committed, len(later))
	for i, lv := range later {
		lops, err := d.s.ops.decode(coll, id, lv)
		if err != nil {
			return nil, fmt.Errorf("history %s/%s seq %d: %w", coll, id, lv.Seq, err)
		}
		since[i] = patch.Committed{Seq: lv.Seq, Ops: lops}
	}
	inverse := patch.Invert(ops)
	edit := func(base any) (any, []patch.Op, error) {
		res, err := patch.ApplyOps(base, inverse)
		d.baseResult = res
		return res, inverse, err
	}
	lim, done := d.rebaseLimits(since)
	release, err := d.s.docs.Acquire(ctx, 2*len(cur.Body))
	if err != nil {
		return nil, err
	}
	defer release()
	doc, err := d.s.decode(cur)
	if err != nil {
		return nil, err
	}
	result, rops, err := patch.RevertOnto(doc, since, edit, lim)
	err = done(len(inverse), err)
	if errors.Is(err, patch.ErrRebaseConflict) || errors.Is(err, patch.ErrRebaseTooFar) || errors.Is(err, patch.ErrRebaseApplyFailed) {
		if errors.Is(err, patch.ErrRebaseApplyFailed) {
			d.s.log.Warn("revert did not apply", "collection", coll, "id", id, "seq", k, "err", err)
		}
		return nil, &PreconditionError{Err: err, Current: cur.ETag, Base: v.ETag}
	}
	if err != nil {
		return nil, err
	}
	switch {
	case stale != "":
		d.rebasedFrom = stale
	case len(later) > 0:
		d.rebasedFrom = v.ETag
	}
	ch, err := d.s.commit(cur, result, rops, Revert, d.rebasedFrom)
	if err != nil || ch == nil {
		return ch, err // nil: undoing it changes nothing now
	}
	ch.Reverts = k
	return ch, nil
}

// undelete decides the revert of a delete: when it is the newest version,
// the document comes back with the body it removed; when the document was
// written again since, that write conflicts with it.
func (d *decision) undelete(cur *store.Document, v store.Version, ops []patch.Op, later []store.Version) (*store.Change, error) {
	if len(later) > 0 { // so cur != nil: revert found it deleted otherwise
		return nil, &PreconditionError{Err: &patch.ConflictError{Conflicts: []patch.Conflict{{
			ClientOp: 0, ClientPath: "", ConcurrentPath: "", ConcurrentVersion: later[0].Seq, Reason: patch.ReasonOverlap,
		}}}, Current: cur.ETag}
	}
	if len(ops) != 1 || ops[0].Kind != patch.OpDel || len(ops[0].Path) != 0 {
		return nil, fmt.Errorf("history %s/%s seq %d: a delete that is not one del op", d.w.Collection, d.w.ID, v.Seq)
	}
	if d.w.Pre.IfMatch.Present {
		return nil, &PreconditionError{Err: fail(ErrPreconditionFailed, "If-Match given but the document does not exist")}
	}
	body, err := patch.CheckDocument(ops[0].Old, d.s.cfg.Limits)
	if err != nil {
		return nil, err
	}
	d.created = true
	return &store.Change{Body: body, Kind: store.KindRevert, Ops: patch.EncodeCreate(body), Reverts: v.Seq}, nil
}
