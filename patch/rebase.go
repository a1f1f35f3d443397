package patch

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Committed is one committed version as rebase sees it: its seq and its
// normalized ops in order.
type Committed struct {
	// Seq is the version's sequence number, reported in conflicts.
	Seq uint64
	// Ops are the normalized ops that turned the previous version into this
	// one, as recorded in history.
	Ops []Op
}

// Conflict reasons (REBASE.md section 7). Each conflicting pair gets the
// first that applies, checked in this order:
//
//   - ReasonTestInvalidated: the client op is a read (a test, or the source
//     of a copy) and the concurrent op wrote over what it read.
//   - ReasonElementRemoved: the concurrent op removed an array element (rm)
//     at or above the client op's path: the element the client touches, or
//     one containing it.
//   - ReasonArrayReplaced: one side inserts into an array (ins) that the
//     other replaced, removed, or wrote above: a structural clash.
//   - ReasonAncestorReplaced: the concurrent op replaced or deleted a strict
//     ancestor of the client op's path.
//   - ReasonOverlap: otherwise; both write the same path, or the client op
//     writes an ancestor of what the concurrent op wrote.
const (
	ReasonOverlap          = "overlap"
	ReasonAncestorReplaced = "ancestor-replaced"
	ReasonElementRemoved   = "element-removed"
	ReasonTestInvalidated  = "test-invalidated"
	ReasonArrayReplaced    = "array-replaced"
)

// Conflict names one conflicting pair (REBASE.md section 7): a client op and
// a concurrent op committed since the client's base.
type Conflict struct {
	// ClientOp is the index of the client operation (in the JSON Patch, or
	// in the normalized ops of a Merge Patch or PUT body).
	ClientOp int `json:"clientOp"`
	// ClientPath is the path of that operation as the client sent it.
	ClientPath string `json:"clientPath"`
	// ConcurrentPath is the path of the concurrent op as it was committed.
	ConcurrentPath string `json:"concurrentPath"`
	// ConcurrentVersion is the seq of the version holding the concurrent op.
	ConcurrentVersion uint64 `json:"concurrentVersion"`
	// Reason is one of the Reason constants.
	Reason string `json:"reason"`
}

// maxConflicts caps the number of conflicts a ConflictError lists.
const maxConflicts = 50

// ConflictError is returned by rebase when any client op conflicts with a
// concurrent one. It lists the conflicting pairs, sorted by client op, then
// concurrent version, then concurrent path, at most 50 of them.
// errors.Is(err, ErrRebaseConflict) holds.
type ConflictError struct {
	Conflicts []Conflict
	// Total is how many pairs conflict, when more than Conflicts lists.
	Total int
}

func (e *ConflictError) Error() string {
	var b strings.Builder
	if e.Total > len(e.Conflicts) {
		fmt.Fprintf(&b, "rebase conflict: %d conflicting pairs (the first %d listed)", e.Total, len(e.Conflicts))
	} else {
		fmt.Fprintf(&b, "rebase conflict: %d conflicting pair(s)", len(e.Conflicts))
	}
	for i, c := range e.Conflicts {
		if i == 3 {
			b.WriteString("; ...")
			break
		}
		sep := ": "
		if i > 0 {
			sep = "; "
		}
		fmt.Fprintf(&b, "%soperation %d (%q) vs %q in version %d (%s)", sep, c.ClientOp, c.ClientPath, c.ConcurrentPath, c.ConcurrentVersion, c.Reason)
	}
	return b.String()
}

// Unwrap returns ErrRebaseConflict.
func (e *ConflictError) Unwrap() error { return ErrRebaseConflict }

// RebaseLimits bounds the work of a rebase (REBASE.md section 5). A zero
// field means its default.
type RebaseLimits struct {
	// MaxOps is the most concurrent ops (in all versions since the base)
	// a rebase accepts; default 10,000.
	MaxOps int
	// MaxWork is the largest |P|·|Q| a rebase accepts; default 1,000,000.
	MaxWork int
}

// Default rebase limits.
const (
	DefaultRebaseMaxOps  = 10000
	DefaultRebaseMaxWork = 1000000
)

// rebase transforms the client's normalized ops p, made against a base
// version B, over the versions committed since B (since, in commit order),
// following REBASE.md sections 3 to 6 with the OT grid of section 5.
//
// It returns P′, the ops to apply to the current version instead of p:
// no-ops (exemptions E1 and E2) and Chk ops (reads) are dropped, array
// indices are shifted past concurrent inserts and removals, and an insert
// the client addressed with "-" keeps Append set and stays at the end of its
// array. p and since are not modified; P′ may share paths and values with p.
//
// When any client op conflicts with a concurrent op, rebase returns a
// *ConflictError listing every conflicting pair (at most 50, sorted by
// client op, concurrent version, then concurrent path). When the concurrent
// ops exceed lim, it returns an error wrapping ErrRebaseTooFar. With no
// concurrent ops, P′ is p without its Chk ops.
func rebase(p []Op, since []Committed, lim RebaseLimits) ([]Op, error) {
	return rebaseGrid(newGrid(p), p, since, lim)
}

// rebaseGrid is rebase with the grid g, made of p.
func rebaseGrid(g *grid, p []Op, since []Committed, lim RebaseLimits) ([]Op, error) {
	if err := checkLimits(len(p), since, lim); err != nil {
		return nil, err
	}
	if err := checkOps(p); err != nil {
		return nil, err
	}
	for _, c := range since {
		if err := checkOps(c.Ops); err != nil {
			return nil, err
		}
	}
	for _, c := range since {
		for _, q := range c.Ops {
			g.pass(q, c.Seq)
		}
	}
	if len(g.conflicts) > 0 {
		cs := sortConflicts(g.conflicts, g.concurrent)
		total := len(cs)
		if len(cs) > maxConflicts {
			cs = cs[:maxConflicts:maxConflicts]
		}
		return nil, &ConflictError{Conflicts: cs, Total: total}
	}
	return g.result(false), nil
}

// RebaseOnto is the whole pure rebase of an edit made against an older
// version. current is the current document; since are the versions
// committed after the client's base, in commit order; edit applies the
// client's change to a document and returns the result with its normalized
// ops (Apply, MergePatch, or Diff for a PUT body).
//
// RebaseOnto rebuilds the base B by undoing since on a copy of current,
// runs edit on B (an error from edit is returned unchanged: the edit does
// not apply to its own base), rebases the edit's ops with rebase, and applies
// the result P′ to current, which it modifies in place. It returns the new
// document and P′, which is what history should record: what each of its
// ops overwrote or removed is read from current as it applies (undoing P′
// gives current back), not from B.
//
// Errors: those of edit; a *ConflictError (ErrRebaseConflict) or ErrRebaseTooFar
// from rebase, in which case current is untouched; an error wrapping
// ErrRebaseApplyFailed when the base cannot be rebuilt from history or P′
// does not apply to current, in which case current must be discarded.
func RebaseOnto(current any, since []Committed, edit func(base any) (any, []Op, error), lim RebaseLimits) (result any, ops []Op, err error) {
	return rebaseOnto(current, since, edit, lim, false)
}

// RevertOnto is RebaseOnto for the undo of a version: edit applies its
// inverse. It differs in one rule. An op of the undo that a later version
// already did (exemptions E1 and E2: the same value written, or the same
// thing deleted) leaves P′ as in RebaseOnto, but it still conflicts with
// every version after that one that touches its path: an undo that a later
// version did and another then overwrote (a redo included) would otherwise
// answer success with the undone write back in the document. An undo that
// later versions did and nothing touched since changes nothing, as in
// RebaseOnto. An array element's removal is the exception: once another
// version removed the element, nothing names it any more (a later insert
// is a new element), so it takes no further part, as in RebaseOnto.
func RevertOnto(current any, since []Committed, edit func(base any) (any, []Op, error), lim RebaseLimits) (result any, ops []Op, err error) {
	return rebaseOnto(current, since, edit, lim, true)
}

// rebaseOnto is RebaseOnto, or RevertOnto when undo is set.
func rebaseOnto(current any, since []Committed, edit func(base any) (any, []Op, error), lim RebaseLimits, undo bool) (result any, ops []Op, err error) {
	if err := checkLimits(0, since, lim); err != nil {
		return nil, nil, err
	}
	var q []Op
	for _, c := range since {
		q = append(q, c.Ops...)
	}
	base, exists, err := Revert(Clone(current), q)
	if err != nil {
		return nil, nil, fmt.Errorf("rebuild the base version: %w", err)
	}
	if !exists {
		return nil, nil, fmt.Errorf("%w: the base version has no document", ErrRebaseApplyFailed)
	}
	_, p, err := edit(base)
	if err != nil {
		return nil, nil, err
	}
	g := newGrid(p)
	g.keepDone = undo
	ops, err = rebaseGrid(g, p, since, lim)
	if err != nil {
		return nil, nil, err
	}
	ops = slices.Clone(ops) // P′ may share its ops' backing array with p
	result, err = applyRebased(current, ops)
	if err != nil {
		return nil, nil, err
	}
	return result, ops, nil
}

func checkLimits(np int, since []Committed, lim RebaseLimits) error {
	maxOps, maxWork := lim.MaxOps, lim.MaxWork
	if maxOps <= 0 {
		maxOps = DefaultRebaseMaxOps
	}
	if maxWork <= 0 {
		maxWork = DefaultRebaseMaxWork
	}
	nq := 0
	for _, c := range since {
		nq += len(c.Ops)
		if nq > maxOps {
			return errorf(ErrRebaseTooFar, -1, "more than %d operations were committed since the base version", maxOps)
		}
	}
	if nq > 0 && np > maxWork/nq {
		return errorf(ErrRebaseTooFar, -1, "rebasing %d operations over %d concurrent ones exceeds the limit of %d", np, nq, maxWork)
	}
	return nil
}

// checkOps checks that every op has the shape its kind needs, so that the
// grid can rely on it: ins, rm and set end in an index, put in a member name,
// del in a member name or nothing (the whole document).
func checkOps(ops []Op) error {
	for _, o := range ops {
		n := len(o.Path)
		ok := true
		switch o.Kind {
		case OpIns, OpRm, OpSet:
			ok = n > 0 && o.Path[n-1].IsIndex
		case OpPut:
			ok = n > 0 && !o.Path[n-1].IsIndex
		case OpDel:
			ok = n == 0 || !o.Path[n-1].IsIndex
		case OpRoot, OpChk:
		default:
			ok = false
		}
		if !ok {
			return fmt.Errorf("%w: malformed %s op at %q", ErrRebaseApplyFailed, o.Kind, o.Path)
		}
	}
	return nil
}

// sortConflicts sorts conflicts by client op, concurrent version and
// concurrent path (then the concurrent op and the rest, for a total order)
// and drops a pair found twice (a move's two halves). concurrent[i]
// numbers the concurrent op of cs[i] among all those rebased over: two ops
// of one version can read the same (two appends), and each is its own
// pair.
func sortConflicts(cs []Conflict, concurrent []int) []Conflict {
	idx := make([]int, len(cs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(i, j int) int {
		a, b := cs[i], cs[j]
		return cmp.Or(
			cmp.Compare(a.ClientOp, b.ClientOp),
			cmp.Compare(a.ConcurrentVersion, b.ConcurrentVersion),
			strings.Compare(a.ConcurrentPath, b.ConcurrentPath),
			cmp.Compare(concurrent[i], concurrent[j]),
			strings.Compare(a.ClientPath, b.ClientPath),
			strings.Compare(a.Reason, b.Reason),
		)
	})
	out := make([]Conflict, 0, len(cs))
	for k, i := range idx {
		if k > 0 && cs[idx[k-1]] == cs[i] && concurrent[idx[k-1]] == concurrent[i] {
			continue
		}
		out = append(out, cs[i])
	}
	return out
}

// gridOp is one client op as the grid carries it.
// A client op that conflicted stays in the grid, so that its conflicts with
// later concurrent ops are found too.
type gridOp struct {
	op Op
	// orphan: a conflicting concurrent op removed or replaced what the op's
	// path runs through, so its indices no longer mean anything; it takes
	// no further part.
	orphan bool
	// done: a concurrent op did what the op does (E1, E2), and the grid
	// keeps it (grid.keepDone): it is no part of P′ and transforms no
	// concurrent op, but a later concurrent op that touches its path
	// conflicts with it.
	done bool
}

// grid runs the OT grid of REBASE.md section 5: each concurrent op, in
// commit order, is carried past every client op in client order; both are
// transformed at each step, so that each client op meets the concurrent op
// in its own coordinates (after the client ops before it).
type grid struct {
	p          []gridOp
	conflicts  []Conflict
	concurrent []int // for each conflict, its concurrent op's number (passes)
	passes     int   // concurrent ops carried so far
	keepDone   bool  // keep the ops made no-ops by an exemption, as done (RevertOnto)
}

func newGrid(p []Op) *grid {
	g := &grid{p: make([]gridOp, len(p))}
	for i, o := range p {
		g.p[i] = gridOp{op: o}
	}
	return g
}

// pass carries q (committed in version seq) past every client op, records
// its conflicts, transforms the client ops past it, and returns q′, q in
// coordinates after all the client ops; ok is false when q′ is a no-op (or
// lost its meaning past a conflicting client op).
func (g *grid) pass(q Op, seq uint64) (qOut Op, ok bool) {
	if q.Kind == OpChk || q.Kind == 0 {
		return Op{}, false // history records no reads
	}
	g.passes++
	cur := q
	alive := true
	// A client op that removed or replaced what cur addresses (lost) leaves
	// cur no place in the later ops' coordinates; the later ops whose path
	// still names what that op wrote, or something above it, still
	// conflict with cur and are recorded, so that every conflicting pair is
	// named. A later client op that moves elements on that path, or
	// replaces an array on it, narrows what it names (ghost). Nothing is
	// carried past them.
	var ghost *ghostPath
	keep := g.p[:0]
	for _, e := range g.p {
		if !alive || e.orphan {
			keep = append(keep, e)
			continue
		}
		p := e.op
		if ghost != nil {
			if ghost.names(p) && conflicts(p, cur) && !exempt(p, cur) {
				g.record(p, q, cur, seq)
			}
			ghost.narrow(p)
			keep = append(keep, e)
			continue
		}
		switch {
		case !conflicts(p, cur) && e.done:
			e.op, _ = xf(p, cur) // it moves with cur's shifts; cur does not move past it
		case !conflicts(p, cur):
			e.op, cur = xf(p, cur)
		case exempt(p, cur) && e.done:
			// The concurrent op did it once more; it stays done.
		case exempt(p, cur):
			pNoop, cNoop := exemption(p, cur)
			if cNoop {
				alive = false
			}
			// An array removal done by another takes no further part:
			// its index would name the element after the removed one.
			if pNoop && (!g.keepDone || p.Kind == OpRm) {
				continue // dropped from P
			}
			e.done = pNoop
		default:
			g.record(p, q, cur, seq)
			// Carry on as if both happened, so that later pairs are judged
			// in the right coordinates; an op whose anchor the other
			// removed or replaced drops out.
			pLost, cLost := lost(p, cur), lost(cur, p)
			p2, c2 := xf(p, cur)
			if pLost {
				e.orphan = true
			} else {
				e.op = p2
			}
			switch {
			case e.done: // cur does not move past an op that is no part of P′
			case cLost:
				_, y := footprint(p)
				ghost = &ghostPath{path: y, exact: p.Kind != OpRm}
			default:
				cur = c2
			}
		}
		keep = append(keep, e)
	}
	clear(g.p[len(keep):])
	g.p = keep
	return cur, alive && ghost == nil
}

// record notes the conflict of client op p with cur, concurrent op q (as
// committed in version seq) in p's coordinates.
func (g *grid) record(p, q, cur Op, seq uint64) {
	g.conflicts = append(g.conflicts, Conflict{
		ClientOp:          p.Client,
		ClientPath:        p.Sent,
		ConcurrentPath:    q.Pointer(),
		ConcurrentVersion: seq,
		Reason:            reason(p, cur),
	})
	g.concurrent = append(g.concurrent, g.passes)
}

// ghostPath is what the client ops after the one that lost a concurrent
// op still name of what that op wrote: path and its ancestors, path itself
// only if exact (a path through an element the client removed names the
// next one).
type ghostPath struct {
	path  Path
	exact bool
}

// names reports whether client op p addresses the ghost's path or above.
func (g *ghostPath) names(p Op) bool {
	_, x := footprint(p)
	return g.path.HasPrefix(x) && (len(x) < len(g.path) || g.exact)
}

// narrow cuts the ghost's path back to what still names the same thing
// after client op p: to an array p inserts into or removes from on the
// way, and to what p replaced when the path crosses an array below it
// (its elements are the client's now).
func (g *ghostPath) narrow(p Op) {
	switch p.Kind {
	case OpChk:
		return
	case OpIns, OpRm:
		if arr := p.Path[:len(p.Path)-1]; len(arr) < len(g.path) && g.path.HasPrefix(arr) {
			g.path, g.exact = arr, true
		}
		return
	}
	_, x := footprint(p)
	if !g.path.HasPrefix(x) {
		return
	}
	for _, s := range g.path[len(x):] {
		if s.IsIndex {
			g.path, g.exact = x, true
			return
		}
	}
}

// result returns P′: the client ops still in the grid, without no-ops and,
// unless withReads, without Chk ops.
func (g *grid) result(withReads bool) []Op {
	out := make([]Op, 0, len(g.p))
	for _, e := range g.p {
		if e.done || e.op.Kind == OpChk && !withReads {
			continue
		}
		out = append(out, e.op)
	}
	return out
}

// transform runs the grid of client ops p against the concurrent ops q (all
// committed in version seq) and returns P′ (Chk ops kept), Q′ (q transformed
// past all of p, no-ops dropped) and the conflicts, unsorted. Without
// conflicts, applying q then P′ to the base equals applying p then Q′.
func transform(p []Op, q []Op, seq uint64) (p2, q2 []Op, conflicts []Conflict) {
	g := newGrid(p)
	for _, o := range q {
		if c, ok := g.pass(o, seq); ok {
			q2 = append(q2, c)
		}
	}
	return g.result(true), q2, g.conflicts
}

// Footprints (REBASE.md section 3): put, del, set, rm and root write their
// path, W(path); ins changes the structure of its array, S(array); chk reads
// its path, R(path).
const (
	fpW = iota
	fpS
	fpR
)

func footprint(o Op) (int, Path) {
	switch o.Kind {
	case OpIns:
		return fpS, o.Path[:len(o.Path)-1]
	case OpChk:
		return fpR, o.Path
	case OpRoot:
		return fpW, nil
	}
	return fpW, o.Path
}

func overlap(x, y Path) bool { return x.HasPrefix(y) || y.HasPrefix(x) }

// conflicts applies the table of REBASE.md section 3 to client op p and
// concurrent op q, both in the same coordinates.
func conflicts(p, q Op) bool {
	pk, x := footprint(p)
	qk, y := footprint(q)
	switch {
	case qk == fpW && pk != fpS: // W or R against W: overlap
		return overlap(x, y)
	case qk == fpW: // S(a) against W(y): y ⊑ a
		return x.HasPrefix(y)
	case qk == fpS && pk != fpS: // W or R against S(b): x ⊑ b
		return y.HasPrefix(x)
	}
	return false // two inserts never conflict
}

// exempt reports whether a conflicting pair falls under exemption E1 (same
// path, both put/set/root, identical values) or E2 (both deletions, one path
// at or above the other). The remove half of a move is no deletion: the
// value lives on elsewhere, so composing it with a delete would either
// bring back what the other side deleted or drop a delete silently.
func exempt(p, q Op) bool {
	switch {
	case isPut(p) && isPut(q):
		return pathEqual(p.Path, q.Path) && identical(p.Value, q.Value)
	case isDelete(p) && isDelete(q) && !p.Moved && !q.Moved:
		return overlap(p.Path, q.Path)
	}
	return false
}

// exemption returns the outcome of an exempt pair: which side becomes a
// no-op.
func exemption(p, q Op) (pNoop, qNoop bool) {
	if isPut(p) {
		return true, true // E1
	}
	switch {
	case len(p.Path) == len(q.Path):
		return true, true // E2, equal paths
	case len(q.Path) < len(p.Path):
		return true, false // E2, q deletes above p
	}
	return false, true // E2, p deletes above q
}

func isPut(o Op) bool { return o.Kind == OpPut || o.Kind == OpSet || o.Kind == OpRoot }

func isDelete(o Op) bool { return o.Kind == OpDel || o.Kind == OpRm }

func pathEqual(a, b Path) bool { return len(a) == len(b) && a.HasPrefix(b) }

// reason names a conflicting pair; see the Reason constants.
func reason(p, q Op) string {
	if p.Kind == OpChk {
		return ReasonTestInvalidated
	}
	_, x := footprint(p)
	_, y := footprint(q)
	switch {
	case q.Kind == OpRm && x.HasPrefix(y):
		return ReasonElementRemoved
	case p.Kind == OpIns || q.Kind == OpIns:
		return ReasonArrayReplaced
	case len(y) < len(x) && x.HasPrefix(y):
		return ReasonAncestorReplaced
	}
	return ReasonOverlap
}

// lost reports whether a, after the conflicting op b, no longer addresses
// what it did: b removed an array element a's path runs through, or b
// replaced a subtree in which a's path crosses an array. Object members keep
// their names, so a path through replaced objects keeps its meaning.
func lost(a, b Op) bool {
	if b.Kind == OpChk || b.Kind == OpIns {
		return false
	}
	_, y := footprint(b)
	if !a.Path.HasPrefix(y) {
		return false
	}
	if b.Kind == OpRm {
		return true
	}
	for _, s := range a.Path[len(y):] {
		if s.IsIndex {
			return true
		}
	}
	return false
}

// xf transforms a pair that does not conflict (REBASE.md section 4): p′ is
// p in coordinates after q, q′ is q in coordinates after p. Only array
// inserts and removals move indices; object members never shift.
func xf(p, q Op) (p2, q2 Op) {
	p2, q2 = p, q
	switch q.Kind {
	case OpIns:
		a, k := arrayOf(q)
		if j, ok := indexIn(p.Path, a); ok && k <= j {
			p2 = withIndex(p, len(a), j+1)
		}
	case OpRm:
		a, k := arrayOf(q)
		if j, ok := indexIn(p.Path, a); ok && k < j {
			p2 = withIndex(p, len(a), j-1)
		}
	}
	switch p.Kind {
	case OpIns:
		a, j := arrayOf(p)
		if k, ok := indexIn(q.Path, a); ok {
			insAt := q.Kind == OpIns && len(q.Path) == len(a)+1
			switch {
			case insAt && k > j, !insAt && j <= k:
				q2 = withIndex(q, len(a), k+1)
			case insAt && k == j:
				// q goes first (commit order); p's element lands after
				// it, so q is no longer at the end of its array.
				q2.Append = false
			}
		}
	case OpRm:
		a, j := arrayOf(p)
		if k, ok := indexIn(q.Path, a); ok && j < k {
			q2 = withIndex(q, len(a), k-1)
		}
	}
	return p2, q2
}

// arrayOf returns the array path and index of an ins or rm.
func arrayOf(o Op) (Path, int) {
	n := len(o.Path) - 1
	return o.Path[:n], o.Path[n].Index
}

// indexIn returns the index at which path crosses the array at a, if it
// does: path runs through a and its next segment is an index.
func indexIn(path, a Path) (int, bool) {
	if len(path) <= len(a) || !path.HasPrefix(a) || !path[len(a)].IsIndex {
		return 0, false
	}
	return path[len(a)].Index, true
}

// withIndex returns o with the segment at depth i of its path set to index
// j, on a fresh copy of the path.
func withIndex(o Op, i, j int) Op {
	o.Path = o.Path.Clone()
	o.Path[i] = Idx(j)
	return o
}
