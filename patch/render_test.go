package patch

import (
	"bytes"
	"testing"

	"pgregory.net/rapid"
)

// TestAppendRFC6902 renders the ops of random edits (JSON Patch, Merge
// Patch, whole documents, moves and removals included) from their stored
// form both ways: the scan must take every one of them, and give the bytes
// the tree gives.
func TestAppendRFC6902(t *testing.T) {
	rbCheck(t, func(rt *rapid.T) {
		g := &rbGen{t: rt}
		doc := any(g.doc())
		for range g.intn(1, 4, "edits") {
			e := g.edit(doc)
			stored := EncodeOps(e.ops)
			checkRender(rt, stored)
			doc = e.result
		}
		checkRender(rt, EncodeCreate(Canonical(doc)))
		checkRender(rt, EncodeDelete(Canonical(doc)))
	})
}

func checkRender(t interface{ Fatalf(string, ...any) }, stored []byte) {
	ops, err := DecodeOps(stored)
	if err != nil {
		t.Fatalf("DecodeOps(%s): %v", stored, err)
	}
	want := Canonical(RFC6902(ops))
	got, err := appendRFC6902Scan([]byte("prefix"), stored)
	if err != nil {
		t.Fatalf("the scan refused %s: %v", stored, err)
	}
	if !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Fatalf("stored %s\nscan: %s\ntree: %s", stored, got[len("prefix"):], want)
	}
}

// TestAppendRFC6902Fallback: ops the scan does not expect are rendered by
// the tree, and what neither can read is an error.
func TestAppendRFC6902Fallback(t *testing.T) {
	for _, tc := range []struct {
		name, stored, want string
		wantErr            bool
	}{
		{name: "empty", stored: ``, want: `[]`},
		{name: "out of order", stored: `[{"v":1,"k":"put","p":["a"]}]`, want: `[{"op":"add","path":"/a","value":1}]`},
		{name: "no value", stored: `[{"k":"put","p":["a"]}]`, want: `[{"op":"add","path":"/a","value":null}]`},
		{name: "no path", stored: `[{"k":"del","o":1}]`, want: `[{"op":"remove","path":""}]`},
		{name: "escapes", stored: `[{"a":true,"k":"ins","p":["a/b","~",3],"v":"\\u0041"}]`, want: `[{"op":"add","path":"/a~1b/~0/-","value":"\\u0041"}]`},
		{name: "unknown kind", stored: `[{"k":"chk","p":[]}]`, wantErr: true},
		{name: "not JSON", stored: `[{"k":"put"`, wantErr: true},
		{name: "trailing data", stored: `[] []`, wantErr: true},
	} {
		got, err := AppendRFC6902(nil, []byte(tc.stored))
		if (err != nil) != tc.wantErr || (!tc.wantErr && string(got) != tc.want) {
			t.Errorf("%s: AppendRFC6902(%s) = %s, %v; want %s (error %v)", tc.name, tc.stored, got, err, tc.want, tc.wantErr)
		}
	}
}
