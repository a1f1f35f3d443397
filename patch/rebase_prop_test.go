package patch

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"flag"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// Property tests of REBASE.md section 8. Each property runs rbRounds rounds
// of rapid's checks (100 each by default): 5,000 random cases per property.
// -rapid.checks, -rapid.seed, RAPID_CHECKS or -short make it one round.

const rbRounds = 50

func rbCheck(t *testing.T, prop func(*rapid.T)) {
	t.Helper()
	rounds := rbRounds
	if testing.Short() || os.Getenv("RAPID_CHECKS") != "" {
		rounds = 1
	}
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "rapid.checks" || f.Name == "rapid.seed" {
			rounds = 1
		}
	})
	for range rounds {
		rapid.Check(t, prop)
		if t.Failed() {
			return
		}
	}
}

// ---- Generators ----

// rbGen draws random documents and edits. Keys come from a small alphabet
// so that edits collide; array elements of "id arrays" carry unique ids.
type rbGen struct {
	t      *rapid.T
	nextID int
}

var rbKeys = []string{"a", "b", "c", "name", "qty", "items", "tags", "0", "1", "9", "10", "a/b", "~t"}

var rbScalars = []any{nil, true, false, "", "x", "y", "ada@example.com",
	Number("0"), Number("1"), Number("2"), Number("-1"), Number("1.0"), Number("1.5"),
	Number("1e3"), Number("-0"), Number("12345678901234567890123")}

func (g *rbGen) intn(lo, hi int, label string) int { return rapid.IntRange(lo, hi).Draw(g.t, label) }

func (g *rbGen) key() string { return rbKeys[g.intn(0, len(rbKeys)-1, "key")] }

func (g *rbGen) scalar() any { return rbScalars[g.intn(0, len(rbScalars)-1, "scalar")] }

func (g *rbGen) value(depth int) any {
	if depth <= 0 {
		return g.scalar()
	}
	switch g.intn(0, 9, "valueKind") {
	case 4, 5:
		return g.object(depth-1, 3)
	case 6, 7:
		return g.idArray()
	case 8:
		return g.plainArray()
	case 9:
		return []any{g.plainArray(), g.scalar()}
	}
	return g.scalar()
}

func (g *rbGen) object(depth, max int) map[string]any {
	m := map[string]any{}
	for range g.intn(0, max, "objectSize") {
		m[g.key()] = g.value(depth)
	}
	return m
}

// element returns a new element of an id array: {"id": unique, ...}.
func (g *rbGen) element() map[string]any {
	g.nextID++
	m := map[string]any{"id": Number(strconv.Itoa(g.nextID))}
	for range g.intn(0, 2, "elementSize") {
		switch g.intn(0, 2, "elementKey") {
		case 0:
			m["name"] = g.scalar()
		case 1:
			m["qty"] = g.scalar()
		default:
			m["tags"] = g.plainArray()
		}
	}
	return m
}

func (g *rbGen) idArray() []any {
	a := []any{}
	for range g.intn(0, 4, "idArraySize") {
		a = append(a, g.element())
	}
	return a
}

func (g *rbGen) plainArray() []any {
	a := []any{}
	for range g.intn(0, 3, "plainArraySize") {
		a = append(a, g.scalar())
	}
	return a
}

func (g *rbGen) doc() map[string]any {
	d := g.object(3, 5)
	if g.intn(0, 3, "withItems") > 0 {
		d["items"] = g.idArray()
	}
	return d
}

// rbNode is a node of a document and the pointer to it.
type rbNode struct {
	ptr pointer
	val any
}

func rbNodes(v any, ptr pointer, out []rbNode) []rbNode {
	out = append(out, rbNode{ptr: ptr, val: v})
	switch v := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(v) {
			out = rbNodes(v[k], append(slices.Clip(ptr), k), out)
		}
	case []any:
		for i, e := range v {
			out = rbNodes(e, append(slices.Clip(ptr), strconv.Itoa(i)), out)
		}
	}
	return out
}

func rbIsIDArray(v any) bool {
	a, ok := v.([]any)
	if !ok || len(a) == 0 {
		return ok
	}
	for _, e := range a {
		m, ok := e.(map[string]any)
		if !ok || m["id"] == nil {
			return false
		}
	}
	return true
}

func (g *rbGen) pick(nodes []rbNode, label string) rbNode {
	return nodes[g.intn(0, len(nodes)-1, label)]
}

// target draws an add, move or copy target inside a container of doc.
func (g *rbGen) target(nodes []rbNode, exclude pointer) (string, any, bool) {
	var cs []rbNode
	for _, n := range nodes {
		switch n.val.(type) {
		case map[string]any, []any:
			if exclude == nil || !(len(n.ptr) >= len(exclude) && slices.Equal(n.ptr[:len(exclude)], exclude)) {
				cs = append(cs, n)
			}
		}
	}
	if len(cs) == 0 {
		return "", nil, false
	}
	var arrays []rbNode
	for _, n := range cs {
		if _, ok := n.val.([]any); ok {
			arrays = append(arrays, n)
		}
	}
	if len(arrays) > 0 && g.intn(0, 1, "preferArray") == 1 {
		cs = arrays // arrays are where indices shift
	}
	c := g.pick(cs, "container")
	switch v := c.val.(type) {
	case map[string]any:
		return append(slices.Clip(c.ptr), g.key()).String(), g.value(1), true
	case []any:
		tok := "-"
		if g.intn(0, 2, "appendOrIndex") > 0 {
			tok = strconv.Itoa(g.intn(0, len(v), "index"))
		}
		var val any
		if rbIsIDArray(v) {
			val = g.element()
		} else {
			val = g.value(1)
		}
		return append(slices.Clip(c.ptr), tok).String(), val, true
	}
	return "", nil, false
}

// candidate draws one JSON Patch operation against doc; it may not apply.
func (g *rbGen) candidate(doc any) map[string]any {
	nodes := rbNodes(doc, pointer{}, nil)
	nonRoot := nodes[1:]
	switch k := g.intn(0, 9, "opKind"); {
	case k <= 2:
		path, val, ok := g.target(nodes, nil)
		if !ok {
			return nil
		}
		return map[string]any{"op": "add", "path": path, "value": val}
	case k == 3 && len(nonRoot) > 0:
		return map[string]any{"op": "remove", "path": g.pick(nonRoot, "node").ptr.String()}
	case k <= 5:
		n := g.pick(nodes, "node")
		if len(n.ptr) == 0 {
			if g.intn(0, 9, "rootReplace") > 0 {
				return nil
			}
			return map[string]any{"op": "replace", "path": "", "value": g.object(2, 4)}
		}
		var val any
		if m, ok := n.val.(map[string]any); ok && m["id"] != nil && g.intn(0, 1, "keepID") == 1 {
			e := g.element()
			e["id"] = m["id"]
			val = e
		} else if ok {
			val = g.element()
		} else {
			val = g.value(1)
		}
		return map[string]any{"op": "replace", "path": n.ptr.String(), "value": val}
	case k == 6 && len(nonRoot) > 0:
		from := g.pick(nonRoot, "from")
		path, _, ok := g.target(nodes, from.ptr)
		if !ok {
			return nil
		}
		return map[string]any{"op": "move", "from": from.ptr.String(), "path": path}
	case k == 7 && len(nonRoot) > 0:
		from := g.pick(nonRoot, "from")
		path, _, ok := g.target(nodes, nil)
		if !ok {
			return nil
		}
		return map[string]any{"op": "copy", "from": from.ptr.String(), "path": path}
	case k == 8:
		n := g.pick(nodes, "node")
		return map[string]any{"op": "test", "path": n.ptr.String(), "value": Clone(n.val)}
	case len(nonRoot) > 0:
		// Edit a leaf of an array element: the common form edit.
		var leaves []rbNode
		for _, n := range nonRoot {
			if len(n.ptr) >= 2 && parseIndex(n.ptr[len(n.ptr)-2], 1<<30) >= 0 {
				leaves = append(leaves, n)
			}
		}
		if len(leaves) == 0 {
			return nil
		}
		n := g.pick(leaves, "leaf")
		return map[string]any{"op": "replace", "path": n.ptr.String(), "value": g.scalar()}
	}
	return nil
}

// jsonPatch draws a JSON Patch of up to 4 operations that applies to doc.
func (g *rbGen) jsonPatch(doc any) []any {
	work := Clone(doc)
	patch := []any{}
	for range g.intn(1, 4, "patchLen") {
		for range 4 {
			op := g.candidate(work)
			if op == nil {
				continue
			}
			ops, err := ParseJSONPatch(Canonical([]any{op}), Limits{})
			if err != nil {
				continue
			}
			res, _, err := Apply(Clone(work), ops, Limits{})
			if err != nil {
				continue
			}
			if _, ok := res.(map[string]any); !ok {
				continue
			}
			work = res
			patch = append(patch, op)
			break
		}
	}
	return patch
}

// mergePatch draws an object Merge Patch against doc.
func (g *rbGen) mergePatch(doc any, depth int) map[string]any {
	obj, _ := doc.(map[string]any)
	m := map[string]any{}
	for range g.intn(1, 3, "mergeSize") {
		k := g.key()
		if g.intn(0, 1, "existingKey") == 1 && len(obj) > 0 {
			keys := sortedKeys(obj)
			k = keys[g.intn(0, len(keys)-1, "existing")]
		}
		switch g.intn(0, 4, "mergeKind") {
		case 0:
			m[k] = nil
		case 1:
			m[k] = g.scalar()
		case 2:
			if sub, ok := obj[k].(map[string]any); ok && depth > 0 {
				m[k] = g.mergePatch(sub, depth-1)
			} else {
				m[k] = g.value(2)
			}
		case 3:
			m[k] = g.idArray()
		default:
			m[k] = Clone(obj[k]) // re-sent unchanged (or null when absent)
		}
	}
	return m
}

// rbEdit is a drawn edit with its result against the document it was drawn
// for.
type rbEdit struct {
	spec   rbEditSpec
	result any
	ops    []Op
}

func (g *rbGen) edit(doc any) rbEdit {
	var spec rbEditSpec
	switch g.intn(0, 9, "editKind") {
	case 0, 1, 2:
		spec = rbEditSpec{kind: "merge-patch", body: g.mergePatch(doc, 2)}
	case 3:
		body := Clone(doc)
		ops, err := ParseJSONPatch(Canonical(g.jsonPatch(doc)), Limits{})
		if err != nil {
			g.t.Fatalf("generated patch: %v", err)
		}
		body, _, err = Apply(body, ops, Limits{})
		if err != nil {
			g.t.Fatalf("generated patch: %v", err)
		}
		spec = rbEditSpec{kind: "put", body: body}
	default:
		spec = rbEditSpec{kind: "json-patch", body: g.jsonPatch(doc)}
	}
	fn, err := spec.edit()
	if err != nil {
		g.t.Fatalf("edit %s: %v", spec.kind, err)
	}
	res, ops, err := fn(Clone(doc))
	if err != nil {
		g.t.Fatalf("generated %s %s does not apply: %v", spec.kind, Canonical(spec.body), err)
	}
	return rbEdit{spec: spec, result: res, ops: ops}
}

// rbScenario is a base B, the versions committed since (as history stores
// them) and a client edit P made against B.
type rbScenario struct {
	b      any
	states []any // states[0] is B; states[i] is after since[i-1]
	since  []Committed
	p      rbEdit
}

func (s *rbScenario) current() any { return s.states[len(s.states)-1] }

func (s *rbScenario) q() []Op {
	var q []Op
	for _, c := range s.since {
		q = append(q, c.Ops...)
	}
	return q
}

// rbDrawScenario draws a document B, up to maxVersions versions committed
// after it (JSON Patches, Merge Patches and PUT bodies) and a client edit P
// against B.
func rbDrawScenario(t *rapid.T, maxVersions int) *rbScenario {
	g := &rbGen{t: t}
	b := g.doc()
	s := &rbScenario{b: b, states: []any{b}}
	for i := range g.intn(0, maxVersions, "versions") {
		e := g.edit(s.states[i])
		stored, err := DecodeOps(EncodeOps(e.ops))
		if err != nil {
			t.Fatal(err)
		}
		s.since = append(s.since, Committed{Seq: uint64(i + 1), Ops: stored})
		s.states = append(s.states, e.result)
	}
	s.p = g.edit(b)
	s.log(t)
	return s
}

// log logs the scenario; rapid shows it when a property fails.
func (s *rbScenario) log(t *rapid.T) {
	t.Logf("B = %s", Canonical(s.b))
	for _, c := range s.since {
		t.Logf("Q%d = %s", c.Seq, EncodeOps(c.Ops))
	}
	t.Logf("P (%s %s) = %s", s.p.spec.kind, Canonical(s.p.spec.body), EncodeOps(s.p.ops))
}

// ---- An independent model: documents whose array elements have identities ----

// rbShadow is a document node that remembers, for an array element, an
// identity (uid) given when it was created: "B/items/2" for what was in B,
// "P3" for what client op 3 inserted, "Q1.0/tags/0" for an element inside a
// value written by op 0 of version 1. Replacing an element keeps its slot's
// uid. Stable paths name array elements by uid instead of index, so that
// they mean the same node in every version.
type rbShadow struct {
	uid   string
	obj   map[string]*rbShadow
	arr   []*rbShadow
	val   any
	isObj bool
	isArr bool
}

func rbBuild(v any, origin string) *rbShadow {
	switch v := v.(type) {
	case map[string]any:
		s := &rbShadow{isObj: true, obj: map[string]*rbShadow{}}
		for k, c := range v {
			s.obj[k] = rbBuild(c, origin+"/"+escapeToken(k))
		}
		return s
	case []any:
		s := &rbShadow{isArr: true}
		for i, c := range v {
			e := rbBuild(c, origin+"/"+strconv.Itoa(i))
			e.uid = origin + "/" + strconv.Itoa(i)
			s.arr = append(s.arr, e)
		}
		return s
	}
	return &rbShadow{val: v}
}

func (s *rbShadow) value() any {
	switch {
	case s.isObj:
		m := make(map[string]any, len(s.obj))
		for k, c := range s.obj {
			m[k] = c.value()
		}
		return m
	case s.isArr:
		a := make([]any, len(s.arr))
		for i, c := range s.arr {
			a[i] = c.value()
		}
		return a
	}
	return s.val
}

type rbModel struct {
	root   *rbShadow
	exists bool
}

func newRBModel(doc any) *rbModel { return &rbModel{root: rbBuild(doc, "B"), exists: true} }

// rbFP is an op's footprint (fpW, fpS or fpR) on stable paths, and the node
// it changes (nil for reads).
type rbFP struct {
	kind    int
	path    []string
	changed []string
	op      Op
}

// apply applies o to the model and returns its footprint. origin names what
// the op creates.
func (m *rbModel) apply(o Op, origin string) (rbFP, error) {
	fail := func(msg string) (rbFP, error) {
		return rbFP{}, errors.New(o.Kind.String() + " " + o.Path.String() + ": " + msg)
	}
	if o.Kind == OpRoot {
		m.root, m.exists = rbBuild(o.Value, origin), true
		return rbFP{kind: fpW, path: []string{}, changed: []string{}, op: o}, nil
	}
	if !m.exists {
		return fail("no document")
	}
	if len(o.Path) == 0 {
		switch o.Kind {
		case OpDel:
			m.exists = false
			return rbFP{kind: fpW, path: []string{}, changed: []string{}, op: o}, nil
		case OpChk:
			return rbFP{kind: fpR, path: []string{}, op: o}, nil
		}
		return fail("empty path")
	}
	cur := m.root
	stable := []string{}
	for _, s := range o.Path[:len(o.Path)-1] {
		switch {
		case cur.isObj && !s.IsIndex && cur.obj[s.Key] != nil:
			stable = append(stable, "k:"+s.Key)
			cur = cur.obj[s.Key]
		case cur.isArr && s.IsIndex && s.Index < len(cur.arr):
			stable = append(stable, "u:"+cur.arr[s.Index].uid)
			cur = cur.arr[s.Index]
		default:
			return fail("no such path")
		}
	}
	last := o.Path[len(o.Path)-1]
	parent := slices.Clip(stable)
	switch {
	case cur.isObj && !last.IsIndex:
		p := append(parent, "k:"+last.Key)
		switch o.Kind {
		case OpPut:
			cur.obj[last.Key] = rbBuild(o.Value, origin)
			return rbFP{kind: fpW, path: p, changed: p, op: o}, nil
		case OpDel:
			if cur.obj[last.Key] == nil {
				return fail("no member")
			}
			delete(cur.obj, last.Key)
			return rbFP{kind: fpW, path: p, changed: p, op: o}, nil
		case OpChk:
			if cur.obj[last.Key] == nil {
				return fail("no member")
			}
			return rbFP{kind: fpR, path: p, op: o}, nil
		}
	case cur.isArr && last.IsIndex:
		i, n := last.Index, len(cur.arr)
		if o.Kind == OpIns {
			if i > n {
				return fail("index out of range")
			}
			e := rbBuild(o.Value, origin)
			e.uid = origin
			cur.arr = slices.Insert(cur.arr, i, e)
			return rbFP{kind: fpS, path: parent, changed: append(slices.Clip(parent), "u:"+origin), op: o}, nil
		}
		if i >= n {
			return fail("index out of range")
		}
		p := append(parent, "u:"+cur.arr[i].uid)
		switch o.Kind {
		case OpRm:
			cur.arr = slices.Delete(cur.arr, i, i+1)
			return rbFP{kind: fpW, path: p, changed: p, op: o}, nil
		case OpSet:
			e := rbBuild(o.Value, origin)
			e.uid = cur.arr[i].uid
			cur.arr[i] = e
			return rbFP{kind: fpW, path: p, changed: p, op: o}, nil
		case OpChk:
			return rbFP{kind: fpR, path: p, op: o}, nil
		}
	}
	return fail("type mismatch")
}

// lookup returns the value at a stable path.
func (m *rbModel) lookup(path []string) (any, bool) {
	if !m.exists {
		return nil, false
	}
	cur := m.root
	for _, tok := range path {
		switch {
		case strings.HasPrefix(tok, "k:") && cur.isObj:
			c, ok := cur.obj[tok[2:]]
			if !ok {
				return nil, false
			}
			cur = c
		case strings.HasPrefix(tok, "u:") && cur.isArr:
			var next *rbShadow
			for _, e := range cur.arr {
				if e.uid == tok[2:] {
					next = e
					break
				}
			}
			if next == nil {
				return nil, false
			}
			cur = next
		default:
			return nil, false
		}
	}
	return cur.value(), true
}

func rbPrefix(x, y []string) bool { return len(x) <= len(y) && slices.Equal(x, y[:len(x)]) }

func rbOverlap(x, y []string) bool { return rbPrefix(x, y) || rbPrefix(y, x) }

// rbTable is the conflict table of REBASE.md section 3 on stable paths.
func rbTable(p, q rbFP) bool {
	switch {
	case q.kind == fpW && p.kind != fpS:
		return rbOverlap(p.path, q.path)
	case q.kind == fpW:
		return rbPrefix(q.path, p.path)
	case q.kind == fpS && p.kind != fpS:
		return rbPrefix(p.path, q.path)
	}
	return false
}

func rbPOrigin(o Op) string { return "P" + strconv.Itoa(o.Client) }

// rbRun applies ops to a model of doc and returns their footprints.
func rbRun(t *rapid.T, m *rbModel, ops []Op, origin func(i int, o Op) string) []rbFP {
	fps := make([]rbFP, len(ops))
	for i, o := range ops {
		fp, err := m.apply(o, origin(i, o))
		if err != nil {
			t.Fatalf("model: %v", err)
		}
		fps[i] = fp
	}
	return fps
}

// qFootprints runs the versions of s through a model of B.
func (s *rbScenario) qFootprints(t *rapid.T) (*rbModel, map[uint64][]rbFP) {
	m := newRBModel(s.b)
	out := map[uint64][]rbFP{}
	for _, c := range s.since {
		out[c.Seq] = rbRun(t, m, c.Ops, func(i int, _ Op) string {
			return "Q" + strconv.FormatUint(c.Seq, 10) + "." + strconv.Itoa(i)
		})
	}
	return m, out
}

// ---- Properties ----

// TestPropIdentity: with nothing committed since B, P′ is P (less reads).
func TestPropIdentity(t *testing.T) {
	rbCheck(t, func(t *rapid.T) {
		s := rbDrawScenario(t, 0)
		for _, since := range [][]Committed{nil, {{Seq: 1}}, {{Seq: 1, Ops: []Op{}}, {Seq: 2}}} {
			got, err := rebase(s.p.ops, since, RebaseLimits{})
			if err != nil {
				t.Fatalf("rebase: %v", err)
			}
			if want := rbStripReads(s.p.ops); !rbSameOps(got, want) {
				t.Fatalf("P′ = %s, want %s", EncodeOps(got), EncodeOps(want))
			}
		}
	})
}

// rbCheckScenario checks TP1 and non-interference for a scenario without
// conflicts, and conflict soundness for one with; it returns whether there
// was a conflict.
func rbCheckScenario(t *rapid.T, s *rbScenario) bool {
	p := s.p.ops
	q := s.q()
	p2, q2, cs := transform(p, q, 0)
	rebased, err := rebase(p, s.since, RebaseLimits{})
	cur := Clone(s.current())
	res, ontoOps, ontoErr := RebaseOnto(cur, s.since, func(base any) (any, []Op, error) {
		if !identical(base, s.b) {
			t.Fatalf("RebaseOnto rebuilt B as %s, want %s", Canonical(base), Canonical(s.b))
		}
		fn, err := s.p.spec.edit()
		if err != nil {
			t.Fatal(err)
		}
		return fn(base)
	}, RebaseLimits{})

	if len(cs) > 0 {
		var ce *ConflictError
		if !errors.As(err, &ce) || !errors.Is(err, ErrRebaseConflict) {
			t.Fatalf("transform found conflicts %v but rebase returned %v", cs, err)
		}
		if !errors.Is(ontoErr, ErrRebaseConflict) {
			t.Fatalf("RebaseOnto returned %v, want a conflict", ontoErr)
		}
		if !identical(cur, s.current()) {
			t.Fatalf("a conflict changed the current document")
		}
		rbCheckSoundness(t, s, ce.Conflicts)
		return true
	}
	if err != nil {
		t.Fatalf("rebase: %v", err)
	}
	if !rbSameOps(rebased, rbStripReads(p2)) {
		t.Fatalf("rebase P′ = %s, transform P′ = %s", EncodeOps(rebased), EncodeOps(p2))
	}

	// Convergence (TP1): apply(apply(B,Q),P′) == apply(apply(B,P),Q′).
	// P′ keeps its reads here: they must still resolve.
	left, err := applyOps(Clone(s.current()), p2)
	if err != nil {
		t.Fatalf("P′ %s does not apply after Q: %v", EncodeOps(p2), err)
	}
	right, err := applyOps(Clone(s.p.result), q2)
	if err != nil {
		t.Fatalf("Q′ %s does not apply after P: %v", EncodeOps(q2), err)
	}
	if l, r := Canonical(left), Canonical(right); !bytes.Equal(l, r) {
		t.Fatalf("no convergence:\nB·Q·P′ = %s\nB·P·Q′ = %s\nP′ = %s\nQ′ = %s", l, r, EncodeOps(p2), EncodeOps(q2))
	}
	if ontoErr != nil {
		t.Fatalf("RebaseOnto: %v", ontoErr)
	}
	if !bytes.Equal(Canonical(res), Canonical(left)) {
		t.Fatalf("RebaseOnto gives %s, want %s", Canonical(res), Canonical(left))
	}
	// History leads to the document: P′, as stored, undone on the result
	// gives the current version back (what each op overwrote is read from
	// the current version, not from B: a concurrent version may have
	// changed inside what the client removes, E2).
	back, exists, err := Revert(Clone(res), ontoOps)
	if err != nil || !exists || !bytes.Equal(Canonical(back), Canonical(s.current())) {
		t.Fatalf("undoing P′ %s on the result gives %s (exists %v, %v), want the current version %s",
			EncodeOps(ontoOps), Canonical(back), exists, err, Canonical(s.current()))
	}
	for _, o := range rebased {
		if o.Kind == OpChk {
			t.Fatalf("P′ holds a read")
		}
	}
	rbCheckNonInterference(t, s, rebased, left)
	return false
}

// rbCheckSoundness checks that every reported pair names a client op and a
// concurrent op whose footprints, on stable paths, satisfy the table of
// REBASE.md section 3, with a reason that fits the pair.
func rbCheckSoundness(t *rapid.T, s *rbScenario, cs []Conflict) {
	if len(cs) == 0 || len(cs) > maxConflicts {
		t.Fatalf("%d conflicts", len(cs))
	}
	if !slices.IsSortedFunc(cs, func(a, b Conflict) int {
		if a.ClientOp != b.ClientOp {
			return a.ClientOp - b.ClientOp
		}
		if a.ConcurrentVersion != b.ConcurrentVersion {
			return int(a.ConcurrentVersion) - int(b.ConcurrentVersion)
		}
		return strings.Compare(a.ConcurrentPath, b.ConcurrentPath)
	}) {
		t.Fatalf("conflicts not sorted: %v", cs)
	}
	pfp := rbRun(t, newRBModel(s.b), s.p.ops, func(_ int, o Op) string { return rbPOrigin(o) })
	_, qfp := s.qFootprints(t)
	for _, c := range cs {
		found := false
		for _, pf := range pfp {
			if pf.op.Client != c.ClientOp || pf.op.Sent != c.ClientPath {
				continue
			}
			for _, qf := range qfp[c.ConcurrentVersion] {
				if qf.op.Pointer() != c.ConcurrentPath || !rbTable(pf, qf) {
					continue
				}
				switch c.Reason {
				case ReasonTestInvalidated:
					found = found || pf.kind == fpR
				case ReasonElementRemoved:
					found = found || qf.op.Kind == OpRm
				case ReasonArrayReplaced:
					found = found || pf.kind == fpS || qf.kind == fpS
				case ReasonAncestorReplaced:
					found = found || (len(qf.path) < len(pf.path) && rbPrefix(qf.path, pf.path))
				case ReasonOverlap:
					found = true
				}
			}
		}
		if !found {
			t.Fatalf("conflict %+v: no such pair of ops satisfies REBASE.md section 3", c)
		}
	}
}

// rbCheckNonInterference checks, on stable paths, that every node Q changed
// and P did not keeps its value from B·Q in the result, and every node P
// changed and Q did not keeps its value from B·P.
func rbCheckNonInterference(t *rapid.T, s *rbScenario, rebased []Op, result any) {
	bq, qfp := s.qFootprints(t)
	bp := newRBModel(s.b)
	pfp := rbRun(t, bp, s.p.ops, func(_ int, o Op) string { return rbPOrigin(o) })
	r, _ := s.qFootprints(t) // a fresh B·Q model, to apply P′ to
	rbRun(t, r, rebased, func(_ int, o Op) string { return rbPOrigin(o) })
	if got := Canonical(r.root.value()); !bytes.Equal(got, Canonical(result)) {
		t.Fatalf("model of the result %s differs from applyOps %s", got, Canonical(result))
	}
	var qChanged, pChanged [][]string
	for _, c := range s.since {
		for _, f := range qfp[c.Seq] {
			if f.changed != nil {
				qChanged = append(qChanged, f.changed)
			}
		}
	}
	for _, f := range pfp {
		if f.changed != nil {
			pChanged = append(pChanged, f.changed)
		}
	}
	check := func(side string, mine, theirs [][]string, want *rbModel) {
	nodes:
		for _, n := range mine {
			for _, o := range theirs {
				if rbOverlap(n, o) {
					continue nodes
				}
			}
			wv, wok := want.lookup(n)
			gv, gok := r.lookup(n)
			if wok != gok || (wok && !identical(wv, gv)) {
				t.Fatalf("node %v that only %s changed is %s (%v) in the result, want %s (%v)", n, side, Canonical(gv), gok, Canonical(wv), wok)
			}
		}
	}
	check("Q", qChanged, pChanged, bq)
	check("P", pChanged, qChanged, bp)
}

// TestPropConvergence: no conflict ⇒ TP1 and non-interference hold;
// conflict ⇒ every pair is sound and nothing changed.
func TestPropConvergence(t *testing.T) {
	rbCheck(t, func(t *rapid.T) {
		rbCheckScenario(t, rbDrawScenario(t, 3))
	})
}

// TestPropDisjointRegions draws Q and P that edit fields of array elements,
// insert, remove and move elements, and append to another array: conflicts
// are rarer, so convergence and non-interference are exercised over many
// index shifts.
func TestPropDisjointRegions(t *testing.T) {
	rbCheck(t, func(t *rapid.T) {
		rbCheckScenario(t, rbDrawRowEdits(t))
	})
}

// rbDrawRowEdits draws a scenario of row edits (see TestPropDisjointRegions).
func rbDrawRowEdits(t *rapid.T) *rbScenario {
	g := &rbGen{t: t}
	b := map[string]any{"items": g.idArray(), "tags": g.plainArray(), "addr": g.object(1, 3)}
	s := &rbScenario{b: b, states: []any{b}}
	leafEdit := func(doc any, label string) []any {
		// Edits of a field of one element, inserts and removals in
		// items, with tags and addr edits mixed in.
		var ops []any
		work := Clone(doc)
		for range g.intn(1, 4, label+"Len") {
			items := work.(map[string]any)["items"].([]any)
			var op map[string]any
			switch k := g.intn(0, 5, label+"Op"); {
			case k == 0 || len(items) == 0:
				op = map[string]any{"op": "add", "path": "/items/" + strconv.Itoa(g.intn(0, len(items), "i")), "value": g.element()}
			case k == 1:
				op = map[string]any{"op": "remove", "path": "/items/" + strconv.Itoa(g.intn(0, len(items)-1, "i"))}
			case k == 2:
				op = map[string]any{"op": "add", "path": "/items/" + strconv.Itoa(g.intn(0, len(items)-1, "i")) + "/" + []string{"name", "qty"}[g.intn(0, 1, "f")], "value": g.scalar()}
			case k == 3:
				op = map[string]any{"op": "add", "path": "/tags/-", "value": g.scalar()}
			case k == 4:
				op = map[string]any{"op": "add", "path": "/addr/" + escapeToken(g.key()), "value": g.scalar()}
			default:
				op = map[string]any{"op": "move", "from": "/items/" + strconv.Itoa(g.intn(0, len(items)-1, "i")), "path": "/items/" + strconv.Itoa(g.intn(0, len(items)-1, "j"))}
			}
			parsed, err := ParseJSONPatch(Canonical([]any{op}), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			res, _, err := Apply(Clone(work), parsed, Limits{})
			if err != nil {
				t.Fatalf("%s: %v", Canonical(op), err)
			}
			work = res
			ops = append(ops, op)
		}
		return ops
	}
	for i := range g.intn(1, 3, "versions") {
		spec := rbEditSpec{kind: "json-patch", body: leafEdit(s.states[i], "q")}
		fn, _ := spec.edit()
		res, ops, err := fn(Clone(s.states[i]))
		if err != nil {
			t.Fatal(err)
		}
		stored, _ := DecodeOps(EncodeOps(ops))
		s.since = append(s.since, Committed{Seq: uint64(i + 1), Ops: stored})
		s.states = append(s.states, res)
	}
	spec := rbEditSpec{kind: "json-patch", body: leafEdit(b, "p")}
	fn, _ := spec.edit()
	res, ops, err := fn(Clone(b))
	if err != nil {
		t.Fatal(err)
	}
	s.p = rbEdit{spec: spec, result: res, ops: ops}
	s.log(t)
	return s
}

// TestPropDeterminism: the same inputs give byte-identical P′ and the same
// conflict list, whatever the maps' iteration order.
func TestPropDeterminism(t *testing.T) {
	rbCheck(t, func(t *rapid.T) {
		s := rbDrawScenario(t, 3)
		cloneOps := func(ops []Op) []Op {
			out := make([]Op, len(ops))
			for i, o := range ops {
				o.Path = o.Path.Clone()
				o.Value, o.Old = Clone(o.Value), Clone(o.Old)
				out[i] = o
			}
			return out
		}
		since2 := make([]Committed, len(s.since))
		for i, c := range s.since {
			since2[i] = Committed{Seq: c.Seq, Ops: cloneOps(c.Ops)}
		}
		p1, err1 := rebase(s.p.ops, s.since, RebaseLimits{})
		p2, err2 := rebase(cloneOps(s.p.ops), since2, RebaseLimits{})
		if !bytes.Equal(EncodeOps(p1), EncodeOps(p2)) || !rbSameOps(p1, p2) {
			t.Fatalf("P′ differs: %s vs %s", EncodeOps(p1), EncodeOps(p2))
		}
		if !reflect.DeepEqual(err1, err2) {
			t.Fatalf("errors differ: %v vs %v", err1, err2)
		}
	})
}

// TestPropComposition: rebasing over Q1·Q2 equals rebasing over Q1, then
// the result (reads kept) over Q2.
func TestPropComposition(t *testing.T) {
	rbCheck(t, func(t *rapid.T) {
		s := rbDrawScenario(t, 4)
		split := rapid.IntRange(0, len(s.since)).Draw(t, "split")
		whole := newGrid(s.p.ops)
		for _, c := range s.since {
			for _, q := range c.Ops {
				whole.pass(q, c.Seq)
			}
		}
		first := newGrid(s.p.ops)
		for _, c := range s.since[:split] {
			for _, q := range c.Ops {
				first.pass(q, c.Seq)
			}
		}
		all := rbSortAll(whole)
		if len(first.conflicts) > 0 {
			for _, c := range rbSortAll(first) {
				if !slices.Contains(all, c) {
					t.Fatalf("conflict %+v over Q1 is missing over Q1·Q2", c)
				}
			}
			return
		}
		second := newGrid(first.result(true))
		for _, c := range s.since[split:] {
			for _, q := range c.Ops {
				second.pass(q, c.Seq)
			}
		}
		if got := rbSortAll(second); !reflect.DeepEqual(got, all) {
			t.Fatalf("conflicts over Q1 then Q2 %v, over Q1·Q2 %v", got, all)
		}
		if a, b := whole.result(true), second.result(true); !rbSameOps(a, b) {
			t.Fatalf("P′ over Q1·Q2 %s, over Q1 then Q2 %s", EncodeOps(a), EncodeOps(b))
		}
		r1, err1 := rebase(s.p.ops, s.since, RebaseLimits{})
		mid, err := rebase(s.p.ops, s.since[:split], RebaseLimits{})
		if err != nil {
			t.Fatal(err)
		}
		if len(all) == 0 && !rbHasReads(s.p.ops) {
			r2, err2 := rebase(mid, s.since[split:], RebaseLimits{})
			if err1 != nil || err2 != nil || !rbSameOps(r1, r2) {
				t.Fatalf("rebase over Q1·Q2 %s (%v), over Q1 then Q2 %s (%v)", EncodeOps(r1), err1, EncodeOps(r2), err2)
			}
		}
	})
}

func rbHasReads(ops []Op) bool {
	return slices.ContainsFunc(ops, func(o Op) bool { return o.Kind == OpChk })
}

// rbSortAll sorts a grid's conflicts like rebase, without the cap.
func rbSortAll(g *grid) []Conflict {
	if len(g.conflicts) == 0 {
		return nil
	}
	return sortConflicts(g.conflicts, g.concurrent)
}

// TestPropMergePatch: with nothing committed since, a rebased Merge Patch
// gives MergePatch(C, M).
func TestPropMergePatch(t *testing.T) {
	rbCheck(t, func(t *rapid.T) {
		g := &rbGen{t: t}
		c := g.doc()
		m := g.mergePatch(c, 2)
		want, _ := MergePatch(Clone(c), Clone(m))
		spec := rbEditSpec{kind: "merge-patch", body: m}
		fn, _ := spec.edit()
		got, _, err := RebaseOnto(Clone(c), nil, fn, RebaseLimits{})
		if err != nil {
			t.Fatalf("RebaseOnto: %v", err)
		}
		if !bytes.Equal(Canonical(got), Canonical(want)) {
			t.Fatalf("RebaseOnto gives %s, MergePatch gives %s", Canonical(got), Canonical(want))
		}
	})
}

// TestPropRevert: B rebuilt from C by undoing the stored history equals B as
// it was committed, byte for byte, for every version.
func TestPropRevert(t *testing.T) {
	rbCheck(t, func(t *rapid.T) {
		s := rbDrawScenario(t, 4)
		for i := range s.states {
			var q []Op
			for _, c := range s.since[i:] {
				q = append(q, c.Ops...)
			}
			got, exists, err := Revert(Clone(s.current()), q)
			if err != nil || !exists {
				t.Fatalf("Revert to version %d: %v (exists %v)", i, err, exists)
			}
			if g, w := Canonical(got), Canonical(s.states[i]); !bytes.Equal(g, w) {
				t.Fatalf("Revert to version %d gives %s, want %s", i, g, w)
			}
		}
	})
}

// FuzzRebase derives B, Q and P from the fuzz input and checks that rebase
// never panics and either reports sound conflicts or converges without
// interference. The input drives rapid's draws directly; since a scenario
// needs more draws than a short input holds, it is extended with a stream
// seeded by its hash, so that every input is a valid scenario.
func FuzzRebase(f *testing.F) {
	for _, seed := range [][]byte{
		{},
		{0, 1, 2, 3, 4, 5, 6, 7},
		bytes.Repeat([]byte{0xff, 0x10, 0x03, 0x80}, 16),
		bytes.Repeat([]byte{0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02}, 24),
		[]byte("rebase: stale If-Match over concurrent versions"),
	} {
		f.Add(seed)
	}
	prop := rapid.MakeFuzz(func(t *rapid.T) {
		if rapid.Bool().Draw(t, "rowEdits") {
			rbCheckScenario(t, rbDrawRowEdits(t))
		} else {
			rbCheckScenario(t, rbDrawScenario(t, 3))
		}
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		prop(t, rbExpand(data))
	})
}

// rbExpand returns data followed by 16 KiB drawn from a ChaCha8 stream
// seeded with data's SHA-256.
func rbExpand(data []byte) []byte {
	stream := rand.NewChaCha8(sha256.Sum256(data))
	out := make([]byte, len(data)+16<<10)
	copy(out, data)
	_, _ = stream.Read(out[len(data):])
	return out
}
