package patch

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// rebaseCase is one case of testdata/rebase/cases.json (see its README.md).
type rebaseCase struct {
	name    string
	base    any
	theirs  []rbEditSpec
	mine    rbEditSpec
	ifMatch string
	outcome string
	doc     any // nil when absent
	hasDoc  bool
	want    []Conflict
}

type rbEditSpec struct {
	kind string
	body any
}

// edit returns the edit function s describes: a JSON Patch applied with
// Apply, a Merge Patch with MergePatch, or a PUT body diffed with Diff.
func (s rbEditSpec) edit() (func(base any) (any, []Op, error), error) {
	switch s.kind {
	case "json-patch":
		ops, err := ParseJSONPatch(Canonical(s.body), Limits{})
		if err != nil {
			return nil, err
		}
		return func(base any) (any, []Op, error) { return Apply(base, ops, Limits{}) }, nil
	case "merge-patch":
		return func(base any) (any, []Op, error) {
			res, ops := MergePatch(base, Clone(s.body))
			return res, ops, nil
		}, nil
	case "put":
		body, ok := s.body.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("a put body must be an object")
		}
		return func(base any) (any, []Op, error) {
			b, ok := base.(map[string]any)
			if !ok {
				return nil, nil, fmt.Errorf("the base is not an object")
			}
			return Clone(body), Diff(b, body), nil
		}, nil
	}
	return nil, fmt.Errorf("unknown edit kind %q", s.kind)
}

func loadRebaseCases(t *testing.T) []rebaseCase {
	t.Helper()
	data, err := os.ReadFile("../testdata/rebase/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	v, err := Parse(data, Limits{})
	if err != nil {
		t.Fatalf("cases.json: %v", err)
	}
	arr, ok := v.([]any)
	if !ok {
		t.Fatalf("cases.json: not an array")
	}
	spec := func(v any) rbEditSpec {
		m, _ := v.(map[string]any)
		k, _ := m["kind"].(string)
		return rbEditSpec{kind: k, body: m["body"]}
	}
	var cases []rebaseCase
	for i, e := range arr {
		m, ok := e.(map[string]any)
		if !ok {
			t.Fatalf("case %d: not an object", i)
		}
		c := rebaseCase{ifMatch: "base"}
		c.name, _ = m["name"].(string)
		c.base = m["base"]
		if _, ok := c.base.(map[string]any); !ok {
			t.Fatalf("case %q: base is not an object", c.name)
		}
		theirs, _ := m["theirs"].([]any)
		for _, th := range theirs {
			c.theirs = append(c.theirs, spec(th))
		}
		c.mine = spec(m["mine"])
		if s, ok := m["ifMatch"].(string); ok {
			c.ifMatch = s
		}
		want, _ := m["want"].(map[string]any)
		c.outcome, _ = want["outcome"].(string)
		c.doc, c.hasDoc = want["doc"]
		cs, _ := want["conflicts"].([]any)
		for _, e := range cs {
			cm, _ := e.(map[string]any)
			op, _ := strconv.Atoi(string(cm["clientOp"].(Number)))
			ver, _ := strconv.ParseUint(string(cm["concurrentVersion"].(Number)), 10, 64)
			c.want = append(c.want, Conflict{
				ClientOp:          op,
				ClientPath:        cm["clientPath"].(string),
				ConcurrentPath:    cm["concurrentPath"].(string),
				ConcurrentVersion: ver,
				Reason:            cm["reason"].(string),
			})
		}
		cases = append(cases, c)
	}
	return cases
}

// TestRebaseCases runs testdata/rebase/cases.json (the edge cases of
// REBASE.md section 9) through the whole pure flow: commit the base and
// theirs, resolve If-Match, then rebase mine with RebaseOnto or apply it
// directly.
func TestRebaseCases(t *testing.T) {
	cases := loadRebaseCases(t)
	if len(cases) < 36 {
		t.Fatalf("%d cases, want at least the 36 of REBASE.md section 9", len(cases))
	}
	seen := map[string]bool{}
	for _, c := range cases {
		seen[c.name[:2]] = true
	}
	for i := 1; i <= 36; i++ {
		if !seen[fmt.Sprintf("%02d", i)] {
			t.Errorf("no case for edge case %d of REBASE.md section 9", i)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runRebaseCase(t, c) })
	}
}

func runRebaseCase(t *testing.T, c rebaseCase) {
	// Commit the base and each of theirs, keeping every state and the
	// history as the store keeps it (encoded, without client data).
	states := []any{Clone(c.base)}
	var hist []Committed
	for i, th := range c.theirs {
		fn, err := th.edit()
		if err != nil {
			t.Fatalf("theirs[%d]: %v", i, err)
		}
		next, ops, err := fn(Clone(states[i]))
		if err != nil {
			t.Fatalf("theirs[%d] does not apply: %v", i, err)
		}
		if _, err := CheckDocument(next, Limits{}); err != nil {
			t.Fatalf("theirs[%d]: %v", i, err)
		}
		stored, err := DecodeOps(EncodeOps(ops))
		if err != nil {
			t.Fatal(err)
		}
		hist = append(hist, Committed{Seq: uint64(i + 1), Ops: stored})
		states = append(states, next)
	}
	current := states[len(states)-1]
	fn, err := c.mine.edit()
	if err != nil {
		t.Fatalf("mine: %v", err)
	}

	// Resolve If-Match: "*" and the current ETag apply directly; an older
	// ETag names the latest version with that content (ABA).
	direct := false
	var since []Committed
	switch c.ifMatch {
	case "*", "current":
		direct = true
	case "base":
		want := Canonical(c.base)
		latest := 0
		for i, s := range states {
			if bytes.Equal(Canonical(s), want) {
				latest = i
			}
		}
		direct = latest == len(states)-1
		since = hist[latest:]
	default:
		t.Fatalf("unknown ifMatch %q", c.ifMatch)
	}

	before := Canonical(current)
	var result any
	if direct {
		result, _, err = fn(Clone(current))
	} else {
		var ops []Op
		result, ops, err = RebaseOnto(Clone(current), since, fn, RebaseLimits{})
		if err == nil {
			// P′ is what history records: it must survive storage and
			// give the same result.
			stored, derr := DecodeOps(EncodeOps(ops))
			if derr != nil {
				t.Fatal(derr)
			}
			again, aerr := applyOps(Clone(current), stored)
			if aerr != nil || !identical(again, result) {
				t.Errorf("P′ after EncodeOps/DecodeOps gives %s (%v), want %s", Canonical(again), aerr, Canonical(result))
			}
		}
	}

	switch c.outcome {
	case "ok", "noop":
		if err != nil {
			t.Fatalf("error %v, want %s", err, c.outcome)
		}
		if _, err := CheckDocument(result, Limits{}); err != nil {
			t.Fatalf("result: %v", err)
		}
		got := Canonical(result)
		if c.outcome == "noop" && !bytes.Equal(got, before) {
			t.Errorf("noop: result\n%s\nwant the current document\n%s", got, before)
		}
		if c.outcome == "ok" && bytes.Equal(got, before) {
			t.Errorf("ok: the result equals the current document; want a new version")
		}
		if c.outcome == "ok" && !c.hasDoc {
			t.Fatalf("case has outcome ok but no doc")
		}
		if c.hasDoc {
			if want := Canonical(c.doc); !bytes.Equal(got, want) {
				t.Errorf("result\n%s\nwant\n%s", got, want)
			}
		}
	case "conflict":
		var ce *ConflictError
		if !errors.As(err, &ce) || !errors.Is(err, ErrRebaseConflict) {
			t.Fatalf("error %v, want a *ConflictError", err)
		}
		if !reflect.DeepEqual(ce.Conflicts, c.want) {
			t.Errorf("conflicts\n%s\nwant\n%s", rbFmtConflicts(ce.Conflicts), rbFmtConflicts(c.want))
		}
	case "patch-failed":
		if !errors.Is(err, ErrPatchFailed) {
			t.Fatalf("error %v, want ErrPatchFailed", err)
		}
	default:
		t.Fatalf("unknown outcome %q", c.outcome)
	}
	if c.outcome != "ok" && c.outcome != "noop" {
		if after := Canonical(current); !bytes.Equal(after, before) {
			t.Errorf("a refused edit changed the current document")
		}
	}
}

func rbFmtConflicts(cs []Conflict) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "  {%d %q %q %d %s}\n", c.ClientOp, c.ClientPath, c.ConcurrentPath, c.ConcurrentVersion, c.Reason)
	}
	return b.String()
}

// rbMustParse parses JSON test input.
func rbMustParse(t testing.TB, s string) any {
	t.Helper()
	v, err := Parse([]byte(s), Limits{})
	if err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	return v
}

// rbMustApply applies a JSON Patch to a copy of doc and returns the result and
// its normalized ops.
func rbMustApply(t testing.TB, doc any, patch string) (any, []Op) {
	t.Helper()
	ops, err := ParseJSONPatch([]byte(patch), Limits{})
	if err != nil {
		t.Fatalf("parse patch %s: %v", patch, err)
	}
	res, nops, err := Apply(Clone(doc), ops, Limits{})
	if err != nil {
		t.Fatalf("apply %s: %v", patch, err)
	}
	return res, nops
}

// rbStripReads returns ops without Chk ops.
func rbStripReads(ops []Op) []Op {
	var out []Op
	for _, o := range ops {
		if o.Kind != OpChk {
			out = append(out, o)
		}
	}
	return out
}

// rbSameOps reports whether a and b are the same ops, client data included.
func rbSameOps(a, b []Op) bool {
	if len(a) != len(b) {
		return false
	}
	if !bytes.Equal(EncodeOps(a), EncodeOps(b)) {
		return false
	}
	for i := range a {
		if a[i].Client != b[i].Client || a[i].Sent != b[i].Sent || a[i].Append != b[i].Append {
			return false
		}
	}
	return true
}

const rbFormDoc = `{"name":"Ada","email":"a@x","addr":{"city":"London"},
	"items":[{"id":1,"qty":1},{"id":2,"qty":2},{"id":3,"qty":3}],"tags":["a","b"]}`

func TestRebaseIdentity(t *testing.T) {
	b := rbMustParse(t, rbFormDoc)
	_, p := rbMustApply(t, b, `[
		{"op":"test","path":"/name","value":"Ada"},
		{"op":"add","path":"/items/-","value":{"id":4}},
		{"op":"move","from":"/items/0","path":"/items/2"},
		{"op":"copy","from":"/addr","path":"/addr2"},
		{"op":"remove","path":"/tags/0"},
		{"op":"replace","path":"","value":{"x":1}}]`)
	for _, since := range [][]Committed{nil, {}, {{Seq: 7}}, {{Seq: 7}, {Seq: 8, Ops: []Op{}}}} {
		got, err := rebase(p, since, RebaseLimits{})
		if err != nil {
			t.Fatal(err)
		}
		if want := rbStripReads(p); !rbSameOps(got, want) {
			t.Errorf("rebase over %v:\n%s\nwant\n%s", since, EncodeOps(got), EncodeOps(want))
		}
		for _, o := range got {
			if o.Kind == OpIns && !o.Append && o.Sent == "/items/-" {
				t.Errorf("append insert lost its Append flag")
			}
		}
	}
}

func TestRebaseAppend(t *testing.T) {
	b := rbMustParse(t, rbFormDoc)
	_, q := rbMustApply(t, b, `[{"op":"add","path":"/items/-","value":{"id":10}},{"op":"remove","path":"/items/0"},{"op":"add","path":"/items/0","value":{"id":11}},{"op":"add","path":"/items/-","value":{"id":12}}]`)
	_, p := rbMustApply(t, b, `[{"op":"add","path":"/items/-","value":{"id":20}},{"op":"add","path":"/items/-","value":{"id":21}}]`)
	got, err := rebase(p, []Committed{{Seq: 1, Ops: q}}, RebaseLimits{})
	if err != nil {
		t.Fatal(err)
	}
	// B has 3 items; Q makes 5; P's appends land at 5 and 6.
	for i, o := range got {
		if !o.Append || o.Path[len(o.Path)-1].Index != 5+i {
			t.Errorf("op %d: %s append=%v, want /items/%d append", i, o.Path, o.Append, 5+i)
		}
	}
	if got, want := Canonical(RFC6902(got)), `[{"op":"add","path":"/items/-","value":{"id":20}},{"op":"add","path":"/items/-","value":{"id":21}}]`; string(got) != want {
		t.Errorf("RFC6902 %s, want %s", got, want)
	}
	// transform's Q′ puts Q's appends before P's: they no longer append.
	_, q2, cs := transform(p, q, 1)
	if len(cs) != 0 {
		t.Fatalf("conflicts %v", cs)
	}
	bp, _ := applyOps(Clone(b), p)
	if _, err := applyOps(bp, q2); err != nil {
		t.Fatalf("Q′ does not apply after P: %v", err)
	}
}

func TestRebaseDoesNotModifyInputs(t *testing.T) {
	b := rbMustParse(t, rbFormDoc)
	_, q := rbMustApply(t, b, `[{"op":"add","path":"/items/0","value":{"id":9}}]`)
	_, p := rbMustApply(t, b, `[{"op":"replace","path":"/items/2/qty","value":7},{"op":"add","path":"/items/1","value":{"id":8}}]`)
	pBefore, qBefore := EncodeOps(p), EncodeOps(q)
	got, err := rebase(p, []Committed{{Seq: 1, Ops: q}}, RebaseLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(EncodeOps(p), pBefore) || !bytes.Equal(EncodeOps(q), qBefore) {
		t.Errorf("rebase modified its inputs")
	}
	if got[0].Path.String() != "/items/3/qty" || got[1].Path.String() != "/items/2" {
		t.Errorf("P′ = %s, want /items/3/qty and /items/2", EncodeOps(got))
	}
}

func TestRebaseDeterministic(t *testing.T) {
	b := rbMustParse(t, rbFormDoc)
	_, q1 := rbMustApply(t, b, `[{"op":"replace","path":"/name","value":"B"},{"op":"remove","path":"/items/1"}]`)
	_, q2 := MergePatch(Clone(b), rbMustParse(t, `{"addr":{"city":"Paris","zip":"75"},"email":null}`))
	_, p := rbMustApply(t, b, `[{"op":"replace","path":"/items/1/qty","value":5},{"op":"replace","path":"/addr/city","value":"Rome"},{"op":"test","path":"/email","value":"a@x"},{"op":"replace","path":"/name","value":"C"}]`)
	since := []Committed{{Seq: 1, Ops: q1}, {Seq: 2, Ops: q2}}
	_, err1 := rebase(p, since, RebaseLimits{})
	for range 20 {
		_, err2 := rebase(p, since, RebaseLimits{})
		if !reflect.DeepEqual(err1, err2) {
			t.Fatalf("different results:\n%v\n%v", err1, err2)
		}
	}
	var ce *ConflictError
	if !errors.As(err1, &ce) {
		t.Fatalf("error %v, want a conflict", err1)
	}
	want := []Conflict{
		{0, "/items/1/qty", "/items/1", 1, ReasonElementRemoved},
		{1, "/addr/city", "/addr/city", 2, ReasonOverlap},
		{2, "/email", "/email", 2, ReasonTestInvalidated},
		{3, "/name", "/name", 1, ReasonOverlap},
	}
	if !reflect.DeepEqual(ce.Conflicts, want) {
		t.Errorf("conflicts\n%s\nwant\n%s", rbFmtConflicts(ce.Conflicts), rbFmtConflicts(want))
	}
}

func TestRebaseConflictOrderAndCap(t *testing.T) {
	// 30 client ops each conflict with 2 versions × 2 paths: 120 pairs.
	var p []Op
	var q1, q2 []Op
	for i := range 30 {
		k := fmt.Sprintf("k%02d", i)
		p = append(p, Op{Kind: OpDel, Path: Path{Key(k)}, Client: 29 - i, Sent: "/" + k})
		for _, v := range []*[]Op{&q2, &q1} { // q2 built first: order of input must not matter
			*v = append(*v, Op{Kind: OpPut, Path: Path{Key(k), Key("z")}, Value: Number("1")})
			*v = append(*v, Op{Kind: OpPut, Path: Path{Key(k), Key("a")}, Value: Number("1")})
		}
	}
	_, err := rebase(p, []Committed{{Seq: 5, Ops: q2}, {Seq: 3, Ops: q1}}, RebaseLimits{})
	var ce *ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, ErrRebaseConflict) {
		t.Fatalf("error %v, want a conflict", err)
	}
	if len(ce.Conflicts) != 50 {
		t.Fatalf("%d conflicts, want the cap of 50", len(ce.Conflicts))
	}
	if ce.Total != 120 {
		t.Errorf("total %d, want 120", ce.Total)
	}
	for i, c := range ce.Conflicts {
		// clientOp i/4; versions 3 then 5; paths /a before /z.
		wantOp := i / 4
		wantVer := uint64(3)
		if i%4 >= 2 {
			wantVer = 5
		}
		k := fmt.Sprintf("k%02d", 29-wantOp)
		wantPath := "/" + k + "/a"
		if i%2 == 1 {
			wantPath = "/" + k + "/z"
		}
		want := Conflict{wantOp, "/" + k, wantPath, wantVer, ReasonOverlap}
		if c != want {
			t.Fatalf("conflict %d = %+v, want %+v", i, c, want)
		}
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "rebase conflict: 120 conflicting pairs (the first 50 listed): operation 0") {
		t.Errorf("message %q", msg)
	}
}

func TestRebaseReportsEveryPair(t *testing.T) {
	b := rbMustParse(t, rbFormDoc)
	// One client op against several concurrent ops of several versions.
	_, q1 := rbMustApply(t, b, `[{"op":"replace","path":"/addr/city","value":"Paris"},{"op":"add","path":"/addr/zip","value":"75"}]`)
	_, q2 := rbMustApply(t, b, `[{"op":"remove","path":"/addr"}]`)
	_, p := rbMustApply(t, b, `[{"op":"replace","path":"/addr","value":{}},{"op":"add","path":"/addr/city","value":"Rome"}]`)
	_, err := rebase(p, []Committed{{Seq: 11, Ops: q1}, {Seq: 12, Ops: q2}}, RebaseLimits{})
	var ce *ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v, want a conflict", err)
	}
	want := []Conflict{
		{0, "/addr", "/addr/city", 11, ReasonOverlap},
		{0, "/addr", "/addr/zip", 11, ReasonOverlap},
		{0, "/addr", "/addr", 12, ReasonOverlap},
		{1, "/addr/city", "/addr/city", 11, ReasonOverlap},
		{1, "/addr/city", "/addr", 12, ReasonAncestorReplaced},
	}
	if !reflect.DeepEqual(ce.Conflicts, want) {
		t.Errorf("conflicts\n%s\nwant\n%s", rbFmtConflicts(ce.Conflicts), rbFmtConflicts(want))
	}
}

// TestRebaseReportsPairsPastALostOp: once a client op has removed or
// replaced what a concurrent op addresses through an array, the later client
// ops above it still conflict with that concurrent op and are named (they
// were left out), also past client ops that move elements of an array on
// the way; one below it, through the index of a removed element (which
// names the next one), or through an array the client replaced since, is
// not.
func TestRebaseReportsPairsPastALostOp(t *testing.T) {
	for _, c := range []struct {
		name, base, q, p string
		want             []Conflict
	}{{
		name: "insert, then its array replaced and its parent removed",
		base: `{"a":{"b":[1]}}`,
		q:    `[{"op":"add","path":"/a/b/0","value":0}]`,
		p:    `[{"op":"replace","path":"/a/b","value":[]},{"op":"add","path":"/a/b/-","value":5},{"op":"remove","path":"/a"}]`,
		want: []Conflict{
			{0, "/a/b", "/a/b/0", 2, ReasonArrayReplaced},
			{2, "/a", "/a/b/0", 2, ReasonArrayReplaced},
		},
	}, {
		name: "replace of an element the client removed, then its array tested and removed",
		base: `{"arr":[1,2,3,4]}`,
		q:    `[{"op":"replace","path":"/arr/2","value":9}]`,
		p:    `[{"op":"remove","path":"/arr/2"},{"op":"replace","path":"/arr/2","value":7},{"op":"test","path":"/arr","value":[1,2,7]},{"op":"remove","path":"/arr"}]`,
		want: []Conflict{
			{0, "/arr/2", "/arr/2", 2, ReasonOverlap},
			{2, "/arr", "/arr/2", 2, ReasonTestInvalidated},
			{3, "/arr", "/arr/2", 2, ReasonOverlap},
		},
	}, {
		name: "append into an element the client replaced, then its array replaced and an element removed",
		base: `{"l":[[1]]}`,
		q:    `[{"op":"add","path":"/l/0/-","value":2}]`,
		p:    `[{"op":"replace","path":"/l/0","value":null},{"op":"replace","path":"/l","value":[{"id":1}]},{"op":"remove","path":"/l/0"}]`,
		want: []Conflict{
			{0, "/l/0", "/l/0/-", 2, ReasonArrayReplaced},
			{1, "/l", "/l/0/-", 2, ReasonArrayReplaced},
		},
	}, {
		name: "element the client removed, then another removed before it, then the array removed",
		base: `{"list":[{"id":1,"n":1},{"id":2,"n":2},{"id":3,"n":3}]}`,
		q:    `[{"op":"replace","path":"/list/2/n","value":9}]`,
		p:    `[{"op":"remove","path":"/list/2"},{"op":"remove","path":"/list/0"},{"op":"remove","path":"/list"}]`,
		want: []Conflict{
			{0, "/list/2", "/list/2/n", 2, ReasonOverlap},
			{2, "/list", "/list/2/n", 2, ReasonOverlap},
		},
	}, {
		name: "element the client removed, then an append, then the array tested",
		base: `{"list":[{"id":1,"n":1},{"id":2,"n":2},{"id":3,"n":3}]}`,
		q:    `[{"op":"replace","path":"/list/2/n","value":9}]`,
		p:    `[{"op":"remove","path":"/list/2"},{"op":"add","path":"/list/-","value":{"id":4}},{"op":"test","path":"/list","value":[{"id":1,"n":1},{"id":2,"n":2},{"id":4}]}]`,
		want: []Conflict{
			{0, "/list/2", "/list/2/n", 2, ReasonOverlap},
			{2, "/list", "/list/2/n", 2, ReasonTestInvalidated},
		},
	}} {
		t.Run(c.name, func(t *testing.T) {
			b := rbMustParse(t, c.base)
			_, q := rbMustApply(t, b, c.q)
			_, p := rbMustApply(t, b, c.p)
			_, err := rebase(p, []Committed{{Seq: 2, Ops: q}}, RebaseLimits{})
			var ce *ConflictError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want a conflict", err)
			}
			if !reflect.DeepEqual(ce.Conflicts, c.want) {
				t.Errorf("conflicts\n%s\nwant\n%s", rbFmtConflicts(ce.Conflicts), rbFmtConflicts(c.want))
			}
		})
	}
}

func TestRebaseTooFar(t *testing.T) {
	put := Op{Kind: OpPut, Path: Path{Key("a")}, Value: Number("1")}
	mk := func(n int) []Op {
		ops := make([]Op, n)
		for i := range ops {
			ops[i] = put
		}
		return ops
	}
	p := []Op{{Kind: OpPut, Path: Path{Key("b")}, Value: Number("2"), Client: 0, Sent: "/b"}}
	tests := []struct {
		name   string
		np, nq int
		lim    RebaseLimits
		tooFar bool
	}{
		{name: "MaxOpsDefaultOK", np: 1, nq: 10000},
		{name: "MaxOpsDefault", np: 1, nq: 10001, tooFar: true},
		{name: "MaxWorkDefaultOK", np: 100, nq: 10000},
		{name: "MaxWorkDefault", np: 101, nq: 10000, tooFar: true},
		{name: "MaxOps", np: 1, nq: 11, lim: RebaseLimits{MaxOps: 10}, tooFar: true},
		{name: "MaxWork", np: 4, nq: 3, lim: RebaseLimits{MaxWork: 11}, tooFar: true},
		{name: "MaxWorkOK", np: 4, nq: 3, lim: RebaseLimits{MaxWork: 12}},
		{name: "EmptyQ", np: 1000, nq: 0, lim: RebaseLimits{MaxWork: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pp := make([]Op, tc.np)
			for i := range pp {
				pp[i] = p[0]
			}
			// Spread Q over versions: the bound counts all of them.
			q := mk(tc.nq)
			since := []Committed{{Seq: 1, Ops: q[:tc.nq/2]}, {Seq: 2, Ops: q[tc.nq/2:]}}
			_, err := rebase(pp, since, tc.lim)
			if got := errors.Is(err, ErrRebaseTooFar); got != tc.tooFar {
				t.Fatalf("error %v, want too far %v", err, tc.tooFar)
			}
			if !tc.tooFar && err != nil {
				t.Fatalf("error %v", err)
			}
		})
	}
	t.Run("RebaseOnto", func(t *testing.T) {
		cur := rbMustParse(t, `{"a":1}`)
		called := false
		_, _, err := RebaseOnto(cur, []Committed{{Seq: 1, Ops: mk(3)}}, func(any) (any, []Op, error) {
			called = true
			return nil, nil, nil
		}, RebaseLimits{MaxOps: 2})
		if !errors.Is(err, ErrRebaseTooFar) || called {
			t.Fatalf("error %v (edit called %v), want ErrRebaseTooFar before any work", err, called)
		}
	})
}

func TestRebaseMalformedOps(t *testing.T) {
	good := Op{Kind: OpPut, Path: Path{Key("a")}, Value: Number("1")}
	for _, bad := range []Op{
		{Kind: OpIns, Value: Number("1")},
		{Kind: OpRm, Path: Path{Key("a")}},
		{Kind: OpSet, Path: Path{}},
		{Kind: OpPut, Path: Path{Idx(0)}},
		{Kind: OpPut},
		{Kind: OpDel, Path: Path{Idx(1)}},
		{Kind: 0, Path: Path{Key("a")}},
		{Kind: 99, Path: Path{Key("a")}},
	} {
		if _, err := rebase([]Op{good}, []Committed{{Seq: 1, Ops: []Op{bad}}}, RebaseLimits{}); !errors.Is(err, ErrRebaseApplyFailed) {
			t.Errorf("history op %+v: error %v, want ErrRebaseApplyFailed", bad, err)
		}
		if _, err := rebase([]Op{bad}, []Committed{{Seq: 1, Ops: []Op{good}}}, RebaseLimits{}); !errors.Is(err, ErrRebaseApplyFailed) {
			t.Errorf("client op %+v: error %v, want ErrRebaseApplyFailed", bad, err)
		}
	}
}

func TestRebaseOnto(t *testing.T) {
	b := rbMustParse(t, rbFormDoc)
	c, q := rbMustApply(t, b, `[{"op":"add","path":"/items/0","value":{"id":0}},{"op":"replace","path":"/name","value":"Bea"}]`)
	since := []Committed{{Seq: 2, Ops: q}}
	jp := func(patch string) func(any) (any, []Op, error) {
		ops, err := ParseJSONPatch([]byte(patch), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		return func(base any) (any, []Op, error) {
			if !identical(base, b) {
				t.Errorf("edit got base %s, want %s", Canonical(base), Canonical(b))
			}
			return Apply(base, ops, Limits{})
		}
	}
	t.Run("OK", func(t *testing.T) {
		cur := Clone(c)
		res, ops, err := RebaseOnto(cur, since, jp(`[{"op":"replace","path":"/items/1/qty","value":9}]`), RebaseLimits{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(Canonical(res)), `{"addr":{"city":"London"},"email":"a@x","items":[{"id":0},{"id":1,"qty":1},{"id":2,"qty":9},{"id":3,"qty":3}],"name":"Bea","tags":["a","b"]}`; got != want {
			t.Errorf("result %s, want %s", got, want)
		}
		if len(ops) != 1 || ops[0].Path.String() != "/items/2/qty" || ops[0].Sent != "/items/1/qty" || ops[0].Client != 0 {
			t.Errorf("P′ %s", EncodeOps(ops))
		}
	})
	t.Run("Conflict", func(t *testing.T) {
		cur := Clone(c)
		_, _, err := RebaseOnto(cur, since, jp(`[{"op":"replace","path":"/name","value":"Cy"}]`), RebaseLimits{})
		if !errors.Is(err, ErrRebaseConflict) {
			t.Fatalf("error %v, want ErrRebaseConflict", err)
		}
		if !identical(cur, c) {
			t.Errorf("a conflict changed the current document")
		}
	})
	t.Run("PatchFailed", func(t *testing.T) {
		_, _, err := RebaseOnto(Clone(c), since, jp(`[{"op":"test","path":"/name","value":"Bea"}]`), RebaseLimits{})
		if !errors.Is(err, ErrPatchFailed) {
			t.Fatalf("error %v, want ErrPatchFailed", err)
		}
	})
	t.Run("EditErrorUnchanged", func(t *testing.T) {
		sentinel := errors.New("boom")
		_, _, err := RebaseOnto(Clone(c), since, func(any) (any, []Op, error) { return nil, nil, sentinel }, RebaseLimits{})
		if err != sentinel {
			t.Fatalf("error %v, want the edit's own error", err)
		}
	})
	t.Run("BrokenHistory", func(t *testing.T) {
		bad := []Committed{{Seq: 2, Ops: []Op{{Kind: OpIns, Path: Path{Key("nope"), Idx(0)}, Value: Number("1")}}}}
		_, _, err := RebaseOnto(Clone(c), bad, jp(`[]`), RebaseLimits{})
		if !errors.Is(err, ErrRebaseApplyFailed) {
			t.Fatalf("error %v, want ErrRebaseApplyFailed", err)
		}
	})
	t.Run("BaseDidNotExist", func(t *testing.T) {
		created := []Committed{{Seq: 1, Ops: []Op{{Kind: OpRoot, Value: Clone(c)}}}}
		_, _, err := RebaseOnto(Clone(c), created, jp(`[]`), RebaseLimits{})
		if !errors.Is(err, ErrRebaseApplyFailed) {
			t.Fatalf("error %v, want ErrRebaseApplyFailed", err)
		}
	})
	t.Run("OldFromCurrent", func(t *testing.T) {
		// E2: since B, line item 0 lost its qty; the client removes the
		// whole item. P′ records the item as it is, not as in B: undoing
		// P′ gives the current version back.
		b := rbMustParse(t, rbFormDoc)
		c, q := rbMustApply(t, b, `[{"op":"remove","path":"/items/0/qty"}]`)
		edit := func(base any) (any, []Op, error) {
			ops, err := ParseJSONPatch([]byte(`[{"op":"remove","path":"/items/0"}]`), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			return Apply(base, ops, Limits{})
		}
		res, ops, err := RebaseOnto(Clone(c), []Committed{{Seq: 2, Ops: q}}, edit, RebaseLimits{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ops) != 1 || string(Canonical(ops[0].Old)) != `{"id":1}` {
			t.Fatalf("P′ %s, want the removal of {\"id\":1}", EncodeOps(ops))
		}
		back, _, err := Revert(Clone(res), ops)
		if err != nil || !identical(back, c) {
			t.Fatalf("undoing P′ gives %s (%v), want %s", Canonical(back), err, Canonical(c))
		}
	})
	t.Run("ApplyFailed", func(t *testing.T) {
		// History that does not describe current: P′ cannot apply.
		lie := []Committed{{Seq: 2, Ops: []Op{{Kind: OpPut, Path: Path{Key("x")}, Value: Number("1")}}}}
		cur := rbMustParse(t, `{"x":1,"items":[]}`)
		_, _, err := RebaseOnto(cur, lie, func(base any) (any, []Op, error) {
			return base, []Op{{Kind: OpSet, Path: Path{Key("items"), Idx(0)}, Value: Number("1"), Client: 0, Sent: "/items/0"}}, nil
		}, RebaseLimits{})
		if !errors.Is(err, ErrRebaseApplyFailed) {
			t.Fatalf("error %v, want ErrRebaseApplyFailed", err)
		}
	})
}

func TestConflictErrorIs(t *testing.T) {
	var err error = &ConflictError{Conflicts: []Conflict{{ClientOp: 1, ClientPath: "/a", ConcurrentPath: "/a/b", ConcurrentVersion: 3, Reason: ReasonOverlap}}}
	if !errors.Is(err, ErrRebaseConflict) {
		t.Errorf("errors.Is(ErrRebaseConflict) = false")
	}
	if errors.Is(fmt.Errorf("wrapped: %w", err), ErrRebaseTooFar) {
		t.Errorf("errors.Is(ErrRebaseTooFar) = true")
	}
	if got, want := err.Error(), `rebase conflict: 1 conflicting pair(s): operation 1 ("/a") vs "/a/b" in version 3 (overlap)`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestRevertOnto: the undo of a version that a later version already did
// still conflicts with every version after that one that touches its path
// (RevertOnto), where a rebased edit would become a no-op (RebaseOnto).
func TestRevertOnto(t *testing.T) {
	// history builds the versions after k from the document k left: each
	// patch is one version, numbered from k+1. It returns the current
	// document, the versions, and the undo of k as an edit.
	history := func(t *testing.T, before, k string, later ...string) (any, []Committed, func(any) (any, []Op, error)) {
		t.Helper()
		doc, kOps := rbMustApply(t, rbMustParse(t, before), k)
		var since []Committed
		for i, p := range later {
			var ops []Op
			doc, ops = rbMustApply(t, doc, p)
			since = append(since, Committed{Seq: uint64(3 + i), Ops: ops})
		}
		inverse := Invert(kOps)
		return doc, since, func(base any) (any, []Op, error) {
			res, err := ApplyOps(base, inverse)
			return res, inverse, err
		}
	}
	conflictsWith := func(t *testing.T, err error, seq uint64, path string) {
		t.Helper()
		var ce *ConflictError
		if !errors.As(err, &ce) {
			t.Fatalf("error %v, want a conflict with version %d at %s", err, seq, path)
		}
		if len(ce.Conflicts) != 1 || ce.Conflicts[0].ConcurrentVersion != seq || ce.Conflicts[0].ConcurrentPath != path {
			t.Fatalf("conflicts %+v, want one with version %d at %s", ce.Conflicts, seq, path)
		}
	}
	set := func(path string, v string) string {
		return `[{"op":"replace","path":"` + path + `","value":` + v + `}]`
	}

	t.Run("RedoneThenChanged", func(t *testing.T) {
		// Version 3 wrote what the undo writes (a back to 1), version 4 a = 5.
		cur, since, undo := history(t, `{"a":1}`, set("/a", "2"), set("/a", "1"), set("/a", "5"))
		_, _, err := RevertOnto(Clone(cur), since, undo, RebaseLimits{})
		conflictsWith(t, err, 4, "/a")
		// A rebased edit follows REBASE.md's grid: made a no-op by version 3.
		if _, ops, err := RebaseOnto(Clone(cur), since, undo, RebaseLimits{}); err != nil || len(ops) != 0 {
			t.Fatalf("RebaseOnto: P′ %s, error %v; want no ops", EncodeOps(ops), err)
		}
	})
	t.Run("UndoneThenRedone", func(t *testing.T) {
		// Version 3 undid version 2, version 4 did it again.
		cur, since, undo := history(t, `{"a":1}`, set("/a", "2"), set("/a", "1"), set("/a", "2"))
		_, _, err := RevertOnto(Clone(cur), since, undo, RebaseLimits{})
		conflictsWith(t, err, 4, "/a")
	})
	t.Run("AlreadyUndone", func(t *testing.T) {
		cur, since, undo := history(t, `{"a":1,"b":1}`, set("/a", "2"), set("/a", "1"), set("/b", "3"))
		res, ops, err := RevertOnto(Clone(cur), since, undo, RebaseLimits{})
		if err != nil || len(ops) != 0 || string(Canonical(res)) != `{"a":1,"b":3}` {
			t.Fatalf("result %s, P′ %s, error %v; want the document unchanged, no ops", Canonical(res), EncodeOps(ops), err)
		}
	})
	t.Run("DeletedThenWritten", func(t *testing.T) {
		// Version 2 added b; version 3 removed it (what the undo does);
		// version 4 added it again.
		cur, since, undo := history(t, `{"a":1}`, `[{"op":"add","path":"/b","value":1}]`,
			`[{"op":"remove","path":"/b"}]`, `[{"op":"add","path":"/b","value":7}]`)
		_, _, err := RevertOnto(Clone(cur), since, undo, RebaseLimits{})
		conflictsWith(t, err, 4, "/b")
	})
	t.Run("ElementRemovedThenNextWritten", func(t *testing.T) {
		// Version 2 inserted y at /a/1; version 3 removed it (the undo);
		// version 4 wrote z, now at /a/1: another element.
		cur, since, undo := history(t, `{"a":["x","z"]}`, `[{"op":"add","path":"/a/1","value":"y"}]`,
			`[{"op":"remove","path":"/a/1"}]`, `[{"op":"replace","path":"/a/1","value":"z2"}]`)
		res, ops, err := RevertOnto(Clone(cur), since, undo, RebaseLimits{})
		if err != nil || len(ops) != 0 || !identical(res, cur) {
			t.Fatalf("result %s, P′ %s, error %v; want the document unchanged, no ops", Canonical(res), EncodeOps(ops), err)
		}
	})
	t.Run("DoneOpFollowsShifts", func(t *testing.T) {
		// The undo writes items/1/x; version 3 did it; version 4 inserted
		// an element before it, so that it is items/2 now; version 5
		// wrote items/1/x, another element: no conflict. Version 6 wrote
		// items/2/x, the undone element: a conflict.
		before := `{"items":[{"x":0},{"x":0}]}`
		later := []string{set("/items/1/x", "0"), `[{"op":"add","path":"/items/0","value":{"x":9}}]`, set("/items/1/x", "5")}
		cur, since, undo := history(t, before, set("/items/1/x", "1"), later...)
		res, ops, err := RevertOnto(Clone(cur), since, undo, RebaseLimits{})
		if err != nil || len(ops) != 0 || !identical(res, cur) {
			t.Fatalf("result %s, P′ %s, error %v; want the document unchanged, no ops", Canonical(res), EncodeOps(ops), err)
		}
		cur, since, undo = history(t, before, set("/items/1/x", "1"), append(later, set("/items/2/x", "7"))...)
		_, _, err = RevertOnto(Clone(cur), since, undo, RebaseLimits{})
		conflictsWith(t, err, 6, "/items/2/x")
	})
}
