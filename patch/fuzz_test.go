package patch_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/patchd/patchd/patch"
)

func FuzzParsePointer(f *testing.F) {
	for _, s := range []string{"", "/", "/a/b", "/a~1b/~0", "/~2", "a", "/0/-", "//"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := patch.ParsePointer(s)
		if err != nil {
			if !errors.Is(err, patch.ErrInvalidPatch) {
				t.Fatalf("error %v is not ErrInvalidPatch", err)
			}
			return
		}
		// Round trip: the canonical spelling parses to the same tokens.
		again, err := patch.ParsePointer(p.String())
		if err != nil || len(again) != len(p) {
			t.Fatalf("%q -> %q -> %v, %v", s, p.String(), again, err)
		}
		for i := range p {
			if p[i] != again[i] {
				t.Fatalf("%q: token %d %q != %q", s, i, p[i], again[i])
			}
		}
	})
}

func FuzzCanonical(f *testing.F) {
	for _, s := range []string{`{}`, `{"b":1,"a":[true,null,"x"]}`, `{"n":12345678901234567890123,"f":-0.0,"e":1e400}`,
		`{"\ufb33":1,"\ud83d\ude00":2}`, `"\u003c"`, `[1,{"a":{"b":{}}}]`, `{"a":1,"a":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := patch.Parse(data, patch.Limits{MaxDepth: 64})
		if err != nil {
			if !errors.Is(err, patch.ErrInvalidJSON) && !errors.Is(err, patch.ErrInvalidDocument) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		c := patch.Canonical(v)
		// Stable: canonicalizing the canonical form changes nothing.
		v2, err := patch.Parse(c, patch.Limits{})
		if err != nil {
			t.Fatalf("canonical form %s does not parse: %v", c, err)
		}
		if c2 := patch.Canonical(v2); !bytes.Equal(c, c2) {
			t.Fatalf("unstable: %s then %s", c, c2)
		}
		// The same bytes jsontext's canonicalization gives.
		if want := jsontextCanonical(t, data); string(c) != want {
			t.Fatalf("Canonical=%s, jsontext=%s", c, want)
		}
	})
}

// FuzzApply applies fuzzed patches to fuzzed documents. Whatever applies
// must give valid canonical JSON, its normalized ops must replay and revert,
// and where evanphx/json-patch also succeeds (outside the gaps the library
// is known to have) both must agree.
func FuzzApply(f *testing.F) {
	f.Add([]byte(`{"a":[1,2,{"b":3}],"c":"d"}`), []byte(`[{"op":"add","path":"/a/1","value":9},{"op":"move","from":"/c","path":"/a/0"}]`))
	f.Add([]byte(`{"a":{"b":1}}`), []byte(`[{"op":"copy","from":"/a","path":"/x"},{"op":"test","path":"/x/b","value":1.0}]`))
	f.Add([]byte(`{"a":[]}`), []byte(`[{"op":"add","path":"/a/-","value":[null]},{"op":"replace","path":"/a/0/0","value":{}}]`))
	f.Add([]byte(`{"x":1}`), []byte(`[{"op":"remove","path":"/x"},{"op":"add","path":"","value":{"y":2}}]`))
	f.Fuzz(func(t *testing.T, docBytes, patchBytes []byte) {
		lim := patch.Limits{MaxDepth: 32, MaxDoc: 1 << 16, MaxOps: 64}
		doc, err := patch.Parse(docBytes, lim)
		if err != nil {
			return
		}
		ops, err := patch.ParseJSONPatch(patchBytes, lim)
		if err != nil {
			return
		}
		orig := patch.Canonical(doc)
		got, norm, err := patch.Apply(patch.Clone(doc), ops, lim)
		if err != nil {
			if !errors.Is(err, patch.ErrPatchFailed) && !errors.Is(err, patch.ErrInvalidPatch) && !errors.Is(err, patch.ErrInvalidDocument) {
				t.Fatalf("error %v wraps no client sentinel", err)
			}
			return
		}
		out := patch.Canonical(got)
		if _, err := patch.Parse(out, patch.Limits{}); err != nil {
			t.Fatalf("result %s is not valid JSON: %v", out, err)
		}
		stored, err := patch.DecodeOps(patch.EncodeOps(norm))
		if err != nil {
			t.Fatal(err)
		}
		replayed, err := patch.ApplyOps(patch.Clone(doc), stored)
		if err != nil || !bytes.Equal(patch.Canonical(replayed), out) {
			t.Fatalf("replay: %v: %s != %s", err, patch.Canonical(replayed), out)
		}
		back, exists, err := patch.Revert(patch.Clone(got), stored)
		if err != nil || !exists || !bytes.Equal(patch.Canonical(back), orig) {
			t.Fatalf("revert: %v: %s != %s", err, patch.Canonical(back), orig)
		}
		if knownLibraryGap(ops) {
			return
		}
		lib, err := jsonpatch.DecodePatch(patchBytes)
		if err != nil {
			return
		}
		opts := jsonpatch.NewApplyOptions()
		opts.SupportNegativeIndices = false
		opts.AccumulatedCopySizeLimit = int64(lim.MaxDoc)
		theirs, err := lib.ApplyWithOptions(orig, opts)
		if err != nil {
			return
		}
		tv, err := patch.Parse(theirs, patch.Limits{})
		if err != nil {
			return
		}
		if !patch.Equal(tv, got) {
			t.Fatalf("evanphx gives %s, we give %s", patch.Canonical(tv), out)
		}
	})
}

// knownLibraryGap reports whether a patch touches one of the library's
// documented gaps, where disagreeing is our fix, not our bug.
func knownLibraryGap(ops []patch.JSONPatchOp) bool {
	for _, op := range ops {
		for _, p := range []patch.Pointer{op.Path, op.From} {
			for _, tok := range p {
				if tok == "" || strings.HasPrefix(tok, "0") && len(tok) > 1 || strings.HasPrefix(tok, "+") || strings.HasPrefix(tok, "-") {
					return true
				}
			}
		}
		// The library reads a root from or path of copy and move as the
		// member "" (found by FuzzApply: testdata/fuzz/FuzzApply).
		if (op.Op == "copy" || op.Op == "move") && (len(op.From) == 0 || len(op.Path) == 0) {
			return true
		}
	}
	return false
}
