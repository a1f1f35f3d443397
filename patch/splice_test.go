package patch

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"

	"pgregory.net/rapid"
)

// spliceAgrees checks ApplyCanonical against Apply + CheckDocument on one
// document and patch: when the fast path answers, its bytes and its
// normalized ops must be exactly those of the slow path. It reports
// whether the fast path answered.
func spliceAgrees(t interface {
	Helper()
	Fatalf(string, ...any)
}, doc any, patchJSON []byte, lim Limits) bool {
	t.Helper()
	ops, err := ParseJSONPatch(patchJSON, lim)
	if err != nil {
		return false
	}
	stored := Canonical(doc)
	keep := bytes.Clone(stored)
	out, fops, ok := ApplyCanonical(stored, ops, lim)
	if !bytes.Equal(stored, keep) {
		t.Fatalf("ApplyCanonical modified its input: %s", stored)
	}
	res, nops, err := Apply(Clone(doc), ops, lim)
	var body []byte
	if err == nil {
		body, err = CheckDocument(res, lim)
	}
	if !ok {
		return false
	}
	if err != nil {
		t.Fatalf("doc %s patch %s: fast path gave %s, Apply: %v", stored, patchJSON, out, err)
	}
	if !bytes.Equal(out, body) {
		t.Fatalf("doc %s patch %s:\nfast %s\nslow %s", stored, patchJSON, out, body)
	}
	if !reflect.DeepEqual(fops, nops) {
		t.Fatalf("doc %s patch %s:\nfast ops %#v\nslow ops %#v", stored, patchJSON, fops, nops)
	}
	if !bytes.Equal(EncodeOps(fops), EncodeOps(nops)) {
		t.Fatalf("encoded ops differ: %s vs %s", EncodeOps(fops), EncodeOps(nops))
	}
	return true
}

func TestApplyCanonicalCases(t *testing.T) {
	lim := Limits{MaxDepth: 8, MaxDoc: 200, MaxOps: 100}
	for _, tc := range []struct {
		name, doc, patch string
		fast             bool // the fast path is expected to answer
	}{
		{name: "ReplaceMember", doc: `{"a":1,"b":{"c":[1,2]},"n":0}`, patch: `[{"op":"replace","path":"/n","value":5}]`, fast: true},
		{name: "ReplaceNested", doc: `{"a":1,"b":{"c":[1,2]},"n":0}`, patch: `[{"op":"replace","path":"/b/c/1","value":{"z":null,"y":[]}}]`, fast: true},
		{name: "AddNewFirst", doc: `{"b":1,"c":2}`, patch: `[{"op":"add","path":"/a","value":0}]`, fast: true},
		{name: "AddNewMiddle", doc: `{"a":1,"c":2}`, patch: `[{"op":"add","path":"/b","value":"x"}]`, fast: true},
		{name: "AddNewLast", doc: `{"a":1,"c":2}`, patch: `[{"op":"add","path":"/d","value":true}]`, fast: true},
		{name: "AddToEmpty", doc: `{"o":{}}`, patch: `[{"op":"add","path":"/o/k","value":1}]`, fast: true},
		{name: "AddExisting", doc: `{"a":1}`, patch: `[{"op":"add","path":"/a","value":1.0}]`, fast: true},
		{name: "RemoveOnly", doc: `{"o":{"k":1}}`, patch: `[{"op":"remove","path":"/o/k"}]`, fast: true},
		{name: "RemoveFirst", doc: `{"a":1,"b":2,"c":3}`, patch: `[{"op":"remove","path":"/a"}]`, fast: true},
		{name: "RemoveMiddle", doc: `{"a":1,"b":2,"c":3}`, patch: `[{"op":"remove","path":"/b"}]`, fast: true},
		{name: "RemoveLast", doc: `{"a":1,"b":2,"c":3}`, patch: `[{"op":"remove","path":"/c"}]`, fast: true},
		{name: "ArrayInsertFront", doc: `{"a":[1,2]}`, patch: `[{"op":"add","path":"/a/0","value":0}]`, fast: true},
		{name: "ArrayInsertAtLength", doc: `{"a":[1,2]}`, patch: `[{"op":"add","path":"/a/2","value":3}]`, fast: true},
		{name: "ArrayAppend", doc: `{"a":[1,2]}`, patch: `[{"op":"add","path":"/a/-","value":[3]}]`, fast: true},
		{name: "ArrayAppendEmpty", doc: `{"a":[]}`, patch: `[{"op":"add","path":"/a/-","value":"s"}]`, fast: true},
		{name: "ArrayInsertEmpty", doc: `{"a":[]}`, patch: `[{"op":"add","path":"/a/0","value":"s"}]`, fast: true},
		{name: "ArrayRemove", doc: `{"a":[1,2,3]}`, patch: `[{"op":"remove","path":"/a/1"},{"op":"remove","path":"/a/1"},{"op":"remove","path":"/a/0"}]`, fast: true},
		{name: "ArraySet", doc: `{"a":[1,{"b":"]"},3]}`, patch: `[{"op":"replace","path":"/a/1/b","value":"}"}]`, fast: true},
		{name: "Test", doc: `{"a":{"b":1}}`, patch: `[{"op":"test","path":"/a/b","value":1.0},{"op":"test","path":"/a","value":{"b":10e-1}}]`, fast: true},
		{name: "EscapedNames", doc: `{"a\"b":1,"a\\b":2,"é":3,"😀":4,"דּ":5}`, patch: `[{"op":"replace","path":"/a\"b","value":0},{"op":"add","path":"/€","value":0},{"op":"add","path":"/\ud83d\ude01","value":0},{"op":"remove","path":"/דּ"}]`, fast: true},
		{name: "PointerEscapes", doc: `{"a/b":{"~":1}}`, patch: `[{"op":"replace","path":"/a~1b/~0","value":2}]`, fast: true},
		{name: "StringsWithBrackets", doc: `{"a":"{[\"","b":["]}",{"c":"\\"}],"d":1}`, patch: `[{"op":"replace","path":"/d","value":2}]`, fast: true},
		{name: "SeveralOps", doc: `{"a":1}`, patch: `[{"op":"add","path":"/b","value":{}},{"op":"add","path":"/b/c","value":[]},{"op":"add","path":"/b/c/-","value":1},{"op":"replace","path":"/a","value":null}]`, fast: true},

		{name: "MissingMember", doc: `{"a":1}`, patch: `[{"op":"replace","path":"/b","value":1}]`},
		{name: "MissingParent", doc: `{"a":1}`, patch: `[{"op":"add","path":"/b/c","value":1}]`},
		{name: "FailedTest", doc: `{"a":1}`, patch: `[{"op":"test","path":"/a","value":2}]`},
		{name: "IndexOutOfRange", doc: `{"a":[1]}`, patch: `[{"op":"add","path":"/a/3","value":1}]`},
		{name: "DashNotLast", doc: `{"a":[[1]]}`, patch: `[{"op":"add","path":"/a/-/0","value":1}]`},
		{name: "LeadingZero", doc: `{"a":[1,2]}`, patch: `[{"op":"replace","path":"/a/01","value":1}]`},
		{name: "Scalar", doc: `{"a":1}`, patch: `[{"op":"add","path":"/a/b","value":1}]`},
		{name: "Move", doc: `{"a":1}`, patch: `[{"op":"move","from":"/a","path":"/b"}]`},
		{name: "Copy", doc: `{"a":1}`, patch: `[{"op":"copy","from":"/a","path":"/b"}]`},
		{name: "Root", doc: `{"a":1}`, patch: `[{"op":"replace","path":"","value":{}}]`},
		{name: "TooDeep", doc: `{"a":{}}`, patch: `[{"op":"add","path":"/a/b","value":[[[[[[[1]]]]]]]}]`},
		{name: "TooLarge", doc: `{"a":1}`, patch: fmt.Sprintf(`[{"op":"add","path":"/b","value":"%0200d"}]`, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := Parse([]byte(tc.doc), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if got := spliceAgrees(t, doc, []byte(tc.patch), lim); got != tc.fast {
				t.Fatalf("fast path answered: %v, want %v", got, tc.fast)
			}
		})
	}
}

// TestApplyCanonicalDeepStored: a document stored under a larger depth
// limit is left to Apply, which refuses it.
func TestApplyCanonicalDeepStored(t *testing.T) {
	doc, _ := Parse([]byte(`{"a":{"b":{"c":{}}},"n":0}`), Limits{})
	if spliceAgrees(t, doc, []byte(`[{"op":"replace","path":"/n","value":1}]`), Limits{MaxDepth: 2}) {
		t.Fatal("the fast path answered for a document deeper than the limit")
	}
}

// TestPropApplyCanonical draws documents and patches (those of the rebase
// properties, which mix every op, arrays and awkward names) and checks
// that whenever the fast path answers, it answers exactly as Apply.
func TestPropApplyCanonical(t *testing.T) {
	answered, total := 0, 0
	rbCheck(t, func(rt *rapid.T) {
		g := &rbGen{t: rt}
		doc := g.doc()
		if rapid.Bool().Draw(rt, "oddNames") {
			doc["é"], doc["😀"], doc["a\"b"] = Number("1"), []any{}, map[string]any{"\\": nil}
		}
		p := g.jsonPatch(doc)
		if rapid.IntRange(0, 3).Draw(rt, "broken") == 0 {
			if op := g.candidate(doc); op != nil { // may not apply
				p = append(p, op)
			}
		}
		total++
		if spliceAgrees(rt, doc, Canonical(p), Limits{MaxDepth: 6, MaxDoc: 4096, MaxOps: 100}) {
			answered++
		}
	})
	t.Logf("fast path answered %d of %d", answered, total)
	if total > 50 && answered < total/4 {
		t.Fatalf("fast path answered only %d of %d: the property checks too little", answered, total)
	}
}

// FuzzApplyCanonical: for any document and patch, the fast path either
// declines or agrees with Apply exactly.
func FuzzApplyCanonical(f *testing.F) {
	f.Add([]byte(`{"a":[1,2,{"b":3}],"c":"d"}`), []byte(`[{"op":"add","path":"/a/1","value":9},{"op":"remove","path":"/c"}]`))
	f.Add([]byte(`{"a":{"b":1},"é":2}`), []byte(`[{"op":"test","path":"/a/b","value":1.0},{"op":"add","path":"/a/a","value":[]}]`))
	f.Add([]byte(`{"a":[]}`), []byte(`[{"op":"add","path":"/a/-","value":[null]},{"op":"replace","path":"/a/0/0","value":{}}]`))
	f.Fuzz(func(t *testing.T, docBytes, patchBytes []byte) {
		lim := Limits{MaxDepth: 16, MaxDoc: 1 << 14, MaxOps: 64}
		doc, err := Parse(docBytes, lim)
		if err != nil {
			return
		}
		if _, ok := doc.(map[string]any); !ok {
			return
		}
		spliceAgrees(t, doc, patchBytes, lim)
	})
}
