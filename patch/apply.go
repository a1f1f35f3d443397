package patch

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Apply applies a validated JSON Patch to doc under RFC 6902 rules and
// returns the result with the normalized operations it performed (REBASE.md
// section 2): typed paths, concrete indices, move as remove then add, copy
// and test as reads, and what every write overwrote. doc is modified in
// place; on error it must be discarded. Operations apply all or nothing.
//
// Errors wrap ErrInvalidPatch (a "-" or index token that cannot be an array
// index where the document has an array), ErrPatchFailed (a failed test, a
// missing path, an index out of range) or ErrInvalidDocument (copies larger
// than lim.MaxDoc in total).
func Apply(doc any, ops []JSONPatchOp, lim Limits) (any, []Op, error) {
	a := applier{doc: doc, lim: lim, out: make([]Op, 0, len(ops)+1)}
	for i, op := range ops {
		if err := a.apply(i, op); err != nil {
			return nil, nil, err
		}
	}
	return a.doc, a.out, nil
}

type applier struct {
	doc    any
	lim    Limits
	copied int
	out    []Op
}

func (a *applier) emit(i int, sent string, o Op) {
	o.Client, o.Sent = i, sent
	a.out = append(a.out, o)
}

func (a *applier) apply(i int, op JSONPatchOp) error {
	switch op.Op {
	case "add":
		return a.add(i, op.Path, op.RawPath, Clone(op.Value), op.Value)
	case "remove":
		_, o, err := a.remove(i, op.Path, op.RawPath)
		if err != nil {
			return err
		}
		a.emit(i, op.RawPath, o)
		return nil
	case "replace":
		return a.replace(i, op)
	case "move":
		v, o, err := a.remove(i, op.From, op.RawFrom)
		if err != nil {
			return fromError(err)
		}
		rec := Clone(v) // v lives on in the document; records must not change
		o.Old, o.Moved = rec, true
		a.emit(i, op.RawFrom, o)
		return a.add(i, op.Path, op.RawPath, v, rec)
	case "copy":
		v, segs, err := a.get(i, op.From, op.RawFrom)
		if err != nil {
			return fromError(err)
		}
		a.copied += size(v)
		if a.lim.MaxDoc > 0 && a.copied > a.lim.MaxDoc {
			return errorf(ErrInvalidDocument, i, "copies in this patch exceed the document size limit of %d bytes", a.lim.MaxDoc)
		}
		a.emit(i, op.RawFrom, Op{Kind: OpChk, Path: segs})
		rec := Clone(v)
		return a.add(i, op.Path, op.RawPath, Clone(rec), rec)
	case "test":
		v, segs, err := a.get(i, op.Path, op.RawPath)
		if err != nil {
			return err
		}
		if !Equal(v, op.Value) {
			return errorf(ErrPatchFailed, i, "test %q failed: the value differs", op.RawPath)
		}
		a.emit(i, op.RawPath, Op{Kind: OpChk, Path: segs})
		return nil
	}
	return errorf(ErrInvalidPatch, i, "unknown op %q", op.Op)
}

// fromError says "from" where err, an error in resolving the from of a
// move or copy, says "path" (the resolving is the same for both members).
func fromError(err error) error {
	var e *Error
	if errors.As(err, &e) && strings.HasPrefix(e.Detail, "path ") {
		e.Detail = "from " + strings.TrimPrefix(e.Detail, "path ")
	}
	return err
}

// walk resolves every token of p and returns the nodes along the way
// (nodes[0] is the document, nodes[k] the value at p[:k]) and the typed path.
func (a *applier) walk(i int, p pointer, raw string) ([]any, Path, error) {
	nodes := make([]any, 1, len(p)+1)
	nodes[0] = a.doc
	segs := make(Path, 0, len(p)+1)
	cur := a.doc
	for _, tok := range p {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, nil, errorf(ErrPatchFailed, i, "path %q does not exist: no member %q", raw, tok)
			}
			segs = append(segs, Key(tok))
			cur = v
		case []any:
			idx, err := a.index(i, tok, raw, len(c), false)
			if err != nil {
				return nil, nil, err
			}
			segs = append(segs, Idx(idx))
			cur = c[idx]
		default:
			return nil, nil, errorf(ErrPatchFailed, i, "path %q does not exist: %s has no members", raw, kindName(cur))
		}
		nodes = append(nodes, cur)
	}
	return nodes, segs, nil
}

// index parses tok as an index into an array of length n. For an add
// target, "-" and n itself are allowed.
func (a *applier) index(i int, tok, raw string, n int, add bool) (int, error) {
	if tok == "-" {
		if add {
			return n, nil
		}
		return 0, errorf(ErrInvalidPatch, i, "path %q: \"-\" may only end the target of add, move or copy", raw)
	}
	idx := parseIndex(tok, n)
	if idx < 0 {
		return 0, errorf(ErrInvalidPatch, i, "path %q: %q is not an array index (0 or digits without a leading zero)", raw, tok)
	}
	if idx > n || (idx == n && !add) {
		return 0, errorf(ErrPatchFailed, i, "path %q: index %s is out of range for an array of %d elements", raw, tok, n)
	}
	return idx, nil
}

// setAt stores v as the value at the path of nodes[k].
func (a *applier) setAt(nodes []any, segs Path, k int, v any) {
	if k == 0 {
		a.doc = v
		return
	}
	switch p := nodes[k-1].(type) {
	case map[string]any:
		p[segs[k-1].Key] = v
	case []any:
		p[segs[k-1].Index] = v
	}
}

func (a *applier) get(i int, p pointer, raw string) (any, Path, error) {
	nodes, segs, err := a.walk(i, p, raw)
	if err != nil {
		return nil, nil, err
	}
	return nodes[len(nodes)-1], segs, nil
}

// add puts v at p; rec is the immutable copy recorded in the op.
func (a *applier) add(i int, p pointer, raw string, v, rec any) error {
	if len(p) == 0 {
		old := a.doc
		a.doc = v
		a.emit(i, raw, Op{Kind: OpRoot, Value: rec, Old: old, HadOld: true})
		return nil
	}
	nodes, segs, err := a.walk(i, p[:len(p)-1], raw)
	if err != nil {
		return err
	}
	tok := p[len(p)-1]
	switch parent := nodes[len(nodes)-1].(type) {
	case map[string]any:
		old, had := parent[tok]
		parent[tok] = v
		a.emit(i, raw, Op{Kind: OpPut, Path: segs.child(Key(tok)), Value: rec, Old: old, HadOld: had})
	case []any:
		idx, err := a.index(i, tok, raw, len(parent), true)
		if err != nil {
			return err
		}
		a.setAt(nodes, segs, len(nodes)-1, slices.Insert(parent, idx, v))
		a.emit(i, raw, Op{Kind: OpIns, Path: segs.child(Idx(idx)), Value: rec, Append: tok == "-"})
	default:
		return errorf(ErrPatchFailed, i, "path %q does not exist: its parent is %s", raw, kindName(parent))
	}
	return nil
}

// remove removes the value at p and returns it with the op that records it.
func (a *applier) remove(i int, p pointer, raw string) (any, Op, error) {
	if len(p) == 0 {
		return nil, Op{}, errorf(ErrPatchFailed, i, "cannot remove the whole document")
	}
	nodes, segs, err := a.walk(i, p[:len(p)-1], raw)
	if err != nil {
		return nil, Op{}, err
	}
	tok := p[len(p)-1]
	switch parent := nodes[len(nodes)-1].(type) {
	case map[string]any:
		old, ok := parent[tok]
		if !ok {
			return nil, Op{}, errorf(ErrPatchFailed, i, "path %q does not exist: no member %q", raw, tok)
		}
		delete(parent, tok)
		return old, Op{Kind: OpDel, Path: segs.child(Key(tok)), Old: old}, nil
	case []any:
		idx, err := a.index(i, tok, raw, len(parent), false)
		if err != nil {
			return nil, Op{}, err
		}
		old := parent[idx]
		a.setAt(nodes, segs, len(nodes)-1, slices.Delete(parent, idx, idx+1))
		return old, Op{Kind: OpRm, Path: segs.child(Idx(idx)), Old: old}, nil
	default:
		return nil, Op{}, errorf(ErrPatchFailed, i, "path %q does not exist: its parent is %s", raw, kindName(parent))
	}
}

func (a *applier) replace(i int, op JSONPatchOp) error {
	v := Clone(op.Value)
	if len(op.Path) == 0 {
		old := a.doc
		a.doc = v
		a.emit(i, op.RawPath, Op{Kind: OpRoot, Value: op.Value, Old: old, HadOld: true})
		return nil
	}
	nodes, segs, err := a.walk(i, op.Path[:len(op.Path)-1], op.RawPath)
	if err != nil {
		return err
	}
	tok := op.Path[len(op.Path)-1]
	switch parent := nodes[len(nodes)-1].(type) {
	case map[string]any:
		old, ok := parent[tok]
		if !ok {
			return errorf(ErrPatchFailed, i, "path %q does not exist: no member %q", op.RawPath, tok)
		}
		parent[tok] = v
		a.emit(i, op.RawPath, Op{Kind: OpPut, Path: segs.child(Key(tok)), Value: op.Value, Old: old, HadOld: true})
	case []any:
		idx, err := a.index(i, tok, op.RawPath, len(parent), false)
		if err != nil {
			return err
		}
		old := parent[idx]
		parent[idx] = v
		a.emit(i, op.RawPath, Op{Kind: OpSet, Path: segs.child(Idx(idx)), Value: op.Value, Old: old})
	default:
		return errorf(ErrPatchFailed, i, "path %q does not exist: its parent is %s", op.RawPath, kindName(parent))
	}
	return nil
}

func kindName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case Number:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// applyOps applies normalized ops to doc in place, in order, and returns the
// result. Paths must match the document's types exactly: a member name where
// there is an object, an index in range where there is an array. Errors wrap
// ErrRebaseApplyFailed.
func applyOps(doc any, ops []Op) (any, error) {
	doc, exists, err := Redo(doc, true, ops)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, fmt.Errorf("%w: the ops delete the document", ErrRebaseApplyFailed)
	}
	return doc, nil
}

// applyRebased is applyOps for P′, the ops of a rebase: each op's Old
// (and HadOld) is read again from doc just before it applies. rebase
// carries the ops from the client's base, where a concurrent version may
// have since changed what an op overwrites or removes (exemption E2: the
// client removes /a, another version removed /a/b): history must record
// what the op removed from the document it was applied to, or undoing it
// would not lead back to that document. ops is modified in place.
func applyRebased(doc any, ops []Op) (any, error) {
	exists := true
	var err error
	for i, o := range ops {
		ops[i] = reread(doc, o)
		if doc, exists, err = applyOp(doc, exists, ops[i]); err != nil {
			return nil, err
		}
	}
	if !exists {
		return nil, fmt.Errorf("%w: the ops delete the document", ErrRebaseApplyFailed)
	}
	return doc, nil
}

// reread returns o with what it would overwrite or remove in doc as its
// Old (and HadOld), or o unchanged where its path does not resolve (it
// then fails to apply). The value is doc's own, not a copy: the op
// detaches it from doc, and nothing writes into a detached value.
func reread(doc any, o Op) Op {
	switch o.Kind {
	case OpRoot:
		o.Old, o.HadOld = doc, true
		return o
	case OpPut, OpDel, OpRm, OpSet:
	default:
		return o
	}
	if len(o.Path) == 0 {
		if o.Kind == OpDel {
			o.Old = doc
		}
		return o
	}
	cur := doc
	for _, s := range o.Path[:len(o.Path)-1] {
		next, ok := child(cur, s)
		if !ok {
			return o
		}
		cur = next
	}
	old, ok := child(cur, o.Path[len(o.Path)-1])
	switch {
	case o.Kind == OpPut:
		if _, isMap := cur.(map[string]any); isMap {
			o.Old, o.HadOld = old, ok
		}
	case ok:
		o.Old = old
	}
	return o
}

// ApplyOps applies normalized ops (as history records them) to doc in
// place, in order, and returns the result, which must be a document (the
// ops may not delete it). Paths must match the document's types exactly.
// Errors wrap ErrRebaseApplyFailed.
func ApplyOps(doc any, ops []Op) (any, error) { return applyOps(doc, ops) }

// Invert returns the ops that undo ops: each one inverted, last first, so
// that applying them to the result of ops gives back what ops were applied
// to. Each inverted op's Client is its index in the result and Sent its
// path, so that conflicts found when rebasing them name them.
func Invert(ops []Op) []Op {
	out := make([]Op, 0, len(ops))
	for i := len(ops) - 1; i >= 0; i-- {
		if !ops[i].writes() {
			continue
		}
		o := ops[i].invert()
		o.Client, o.Sent = len(out), o.Path.String()
		out = append(out, o)
	}
	return out
}

// Redo applies ops, as history records them, to doc (nil, with exists
// false, for a document that did not exist) and returns the result; exists
// is false if the ops deleted it. Where Revert reads what each op
// overwrote, Redo reads what it wrote: together they check both halves of
// a version. doc is modified in place.
func Redo(doc any, exists bool, ops []Op) (later any, stillExists bool, err error) {
	for _, o := range ops {
		if doc, exists, err = applyOp(doc, exists, o); err != nil {
			return nil, false, err
		}
	}
	return doc, exists, nil
}

// Revert undoes ops, which turned some earlier document into doc, and
// returns that earlier document; exists is false if it did not exist (ops
// created it). doc is modified in place.
func Revert(doc any, ops []Op) (earlier any, exists bool, err error) {
	exists = true
	for i := len(ops) - 1; i >= 0; i-- {
		if doc, exists, err = applyOp(doc, exists, ops[i].invert()); err != nil {
			return nil, false, err
		}
	}
	return doc, exists, nil
}

func applyOp(doc any, exists bool, o Op) (any, bool, error) {
	fail := func(format string, args ...any) (any, bool, error) {
		return nil, false, fmt.Errorf("%w: %s %s: %s", ErrRebaseApplyFailed, o.Kind, o.Path, fmt.Sprintf(format, args...))
	}
	if o.Kind == OpRoot {
		return Clone(o.Value), true, nil
	}
	if !exists {
		return fail("the document does not exist")
	}
	if len(o.Path) == 0 {
		switch o.Kind {
		case OpDel:
			return nil, false, nil
		case OpChk:
			return doc, true, nil
		}
		return fail("needs a path")
	}
	// Walk to the parent, keeping the nodes so that a resized array can be
	// stored back into its own parent.
	nodes := make([]any, 1, len(o.Path))
	nodes[0] = doc
	cur := doc
	for _, s := range o.Path[:len(o.Path)-1] {
		next, ok := child(cur, s)
		if !ok {
			return fail("no %s at %s", s, Path(o.Path[:len(nodes)]))
		}
		cur = next
		nodes = append(nodes, cur)
	}
	last := o.Path[len(o.Path)-1]
	store := func(v any) any { // stores a new parent slice; returns doc
		k := len(nodes) - 1
		if k == 0 {
			return v
		}
		switch p := nodes[k-1].(type) {
		case map[string]any:
			p[o.Path[k-1].Key] = v
		case []any:
			p[o.Path[k-1].Index] = v
		}
		return doc
	}
	switch o.Kind {
	case OpChk:
		if _, ok := child(cur, last); !ok {
			return fail("nothing to read")
		}
		return doc, true, nil
	case OpPut, OpDel:
		m, ok := cur.(map[string]any)
		if !ok || last.IsIndex {
			return fail("parent is %s", kindName(cur))
		}
		if o.Kind == OpPut {
			m[last.Key] = Clone(o.Value)
			return doc, true, nil
		}
		if _, ok := m[last.Key]; !ok {
			return fail("no member to delete")
		}
		delete(m, last.Key)
		return doc, true, nil
	case OpIns, OpRm, OpSet:
		arr, ok := cur.([]any)
		if !ok || !last.IsIndex {
			return fail("parent is %s", kindName(cur))
		}
		switch {
		case o.Kind == OpIns && (last.Index < 0 || last.Index > len(arr)):
			return fail("index out of range for %d elements", len(arr))
		case o.Kind == OpIns && o.Append && last.Index != len(arr):
			return fail("append at %d into %d elements", last.Index, len(arr))
		case o.Kind != OpIns && (last.Index < 0 || last.Index >= len(arr)):
			return fail("index out of range for %d elements", len(arr))
		}
		switch o.Kind {
		case OpIns:
			return store(slices.Insert(arr, last.Index, Clone(o.Value))), true, nil
		case OpRm:
			return store(slices.Delete(arr, last.Index, last.Index+1)), true, nil
		default:
			arr[last.Index] = Clone(o.Value)
			return doc, true, nil
		}
	}
	return fail("unknown op")
}

// child returns the member or element s of v.
func child(v any, s Seg) (any, bool) {
	switch c := v.(type) {
	case map[string]any:
		if s.IsIndex {
			return nil, false
		}
		e, ok := c[s.Key]
		return e, ok
	case []any:
		if !s.IsIndex || s.Index < 0 || s.Index >= len(c) {
			return nil, false
		}
		return c[s.Index], true
	}
	return nil, false
}

// CheckDocument checks that doc can be stored: a JSON object, nested no
// deeper than lim.MaxDepth, whose canonical form is no larger than
// lim.MaxDoc. It returns the canonical form. Errors wrap ErrInvalidDocument.
func CheckDocument(doc any, lim Limits) ([]byte, error) {
	if _, ok := doc.(map[string]any); !ok {
		return nil, errorf(ErrInvalidDocument, -1, "a document must be a JSON object, not %s", kindName(doc))
	}
	if lim.MaxDepth > 0 && depth(doc, lim.MaxDepth) > lim.MaxDepth {
		return nil, errorf(ErrInvalidDocument, -1, "the document nests deeper than the limit of %d", lim.MaxDepth)
	}
	b := Canonical(doc)
	if lim.MaxDoc > 0 && len(b) > lim.MaxDoc {
		return nil, errorf(ErrInvalidDocument, -1, "the document is %d bytes; the limit is %d", len(b), lim.MaxDoc)
	}
	return b, nil
}
