package patch_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/patchd/patchd/patch"
)

func TestCanonical(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{name: "SortedMembers", in: `{"b":1, "a":{"d":[1, 2], "c":null}}`, want: `{"a":{"c":null,"d":[1,2]},"b":1}`},
		{name: "BigInteger", in: `{"n":12345678901234567890123}`, want: `{"n":12345678901234567890123}`},
		{name: "HugeExponent", in: `{"n":1e400}`, want: `{"n":1e400}`},
		{name: "NegativeZero", in: `{"n":-0.0}`, want: `{"n":-0.0}`},
		{name: "LiteralsKept", in: `{"a":1.0,"b":1E+2,"c":0.10}`, want: `{"a":1.0,"b":1E+2,"c":0.10}`},
		{name: "MinimalEscapes", in: `{"s":"\u003c\/\u00e9\t\u0001"}`, want: "{\"s\":\"</\u00e9\\t\\u0001\"}"},
		{name: "UTF16Order", in: `{"\ufb33":1,"\ud83d\ude00":2,"\u20ac":3,"a":4}`, want: "{\"a\":4,\"\u20ac\":3,\"\U0001F600\":2,\"\ufb33\":1}"},
		{name: "Empty", in: ` { } `, want: `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := patch.Parse([]byte(tc.in), patch.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if got := string(patch.Canonical(v)); got != tc.want {
				t.Fatalf("Canonical=%s, want %s", got, tc.want)
			}
			if got, want := string(patch.Canonical(v)), jsontextCanonical(t, []byte(tc.in)); got != want {
				t.Fatalf("Canonical=%s, jsontext says %s", got, want)
			}
		})
	}
}

// jsontextCanonical is the reference: jsontext's canonicalization with
// number literals kept.
func jsontextCanonical(t testing.TB, in []byte) string {
	v := jsontext.Value(append([]byte(nil), in...))
	if err := v.Canonicalize(jsontext.CanonicalizeRawInts(false), jsontext.CanonicalizeRawFloats(false)); err != nil {
		t.Fatalf("jsontext: %v", err)
	}
	return string(v)
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want error
	}{
		{name: "DuplicateName", in: `{"a":1,"a":2}`, want: patch.ErrInvalidJSON},
		{name: "NestedDuplicateName", in: `{"x":{"a":1,"a":1}}`, want: patch.ErrInvalidJSON},
		{name: "InvalidUTF8", in: "{\"a\":\"\xff\"}", want: patch.ErrInvalidJSON},
		{name: "LoneSurrogate", in: `{"a":"\ud800"}`, want: patch.ErrInvalidJSON},
		{name: "TrailingData", in: `{} {}`, want: patch.ErrInvalidJSON},
		{name: "Truncated", in: `{"a":`, want: patch.ErrInvalidJSON},
		{name: "Empty", in: ``, want: patch.ErrInvalidJSON},
		{name: "LeadingZero", in: `{"a":01}`, want: patch.ErrInvalidJSON},
		{name: "TooDeep", in: strings.Repeat(`{"a":`, 65) + `1` + strings.Repeat(`}`, 65), want: patch.ErrInvalidDocument},
		{name: "TooDeepAndTruncated", in: strings.Repeat(`[`, 1_000_000), want: patch.ErrInvalidDocument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := patch.Parse([]byte(tc.in), patch.Limits{MaxDepth: 64})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err=%v, want %v", err, tc.want)
			}
		})
	}
	if _, err := patch.Parse([]byte(strings.Repeat(`{"a":`, 64)+`1`+strings.Repeat(`}`, 64)), patch.Limits{MaxDepth: 64}); err != nil {
		t.Fatalf("depth 64 refused: %v", err)
	}
}

func TestEqualNumbers(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"1", "1.0", true}, {"100", "1e2", true}, {"1", "10e-1", true}, {"0.1e1", "1", true},
		{"-0", "0", true}, {"0.0", "-0e5", true}, {"1e400", "10e399", true}, {"1E+2", "100.000", true},
		{"12345678901234567890123", "12345678901234567890124", false},
		{"1", "2", false}, {"-1", "1", false}, {"1e999999999999999999", "1e999999999999999998", false},
		{"1e999999999999999999", "10e999999999999999998", true}, {"0.001", "1e-3", true},
	} {
		a, b := patch.Number(tc.a), patch.Number(tc.b)
		if got := patch.Equal(a, b); got != tc.want {
			t.Errorf("Equal(%s, %s)=%v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
	if patch.Identical(patch.Number("1"), patch.Number("1.0")) {
		t.Error("Identical(1, 1.0) must be false: they are different literals")
	}
}

// TestLibraryGaps pins each gap of evanphx/json-patch v5.9.11 that
// ../shared/notes/jsonpatch_libs.md lists, against our engine.
func TestLibraryGaps(t *testing.T) {
	for _, tc := range []struct {
		name, doc, patch string
		want             string // result, or "" when wantErr is set
		wantErr          error
	}{
		{name: "NegativeIndex", doc: `{"a":[1,2]}`, patch: `[{"op":"add","path":"/a/-1","value":0}]`, wantErr: patch.ErrInvalidPatch},
		{name: "LeadingZeroIndex", doc: `{"a":[1,2]}`, patch: `[{"op":"replace","path":"/a/01","value":0}]`, wantErr: patch.ErrInvalidPatch},
		{name: "PlusIndex", doc: `{"a":[1,2]}`, patch: `[{"op":"remove","path":"/a/+1"}]`, wantErr: patch.ErrInvalidPatch},
		{name: "IndexPastInt64", doc: `{"a":[1,2]}`, patch: `[{"op":"remove","path":"/a/99999999999999999999"}]`, wantErr: patch.ErrPatchFailed},
		{name: "IndexPastInt64Add", doc: `{"a":[1,2]}`, patch: `[{"op":"add","path":"/a/9223372036854775808","value":0}]`, wantErr: patch.ErrPatchFailed},
		{name: "LeadingZeroKeyOnObject", doc: `{"a":{"01":1}}`, patch: `[{"op":"remove","path":"/a/01"}]`, want: `{"a":{}}`},
		{name: "TestWithoutValue", doc: `{"a":1}`, patch: `[{"op":"test","path":"/a"}]`, wantErr: patch.ErrInvalidPatch},
		{name: "TestNullOnMissing", doc: `{"a":1}`, patch: `[{"op":"test","path":"/b","value":null}]`, wantErr: patch.ErrPatchFailed},
		{name: "EmptyKeyRead", doc: `{"":1,"a":2}`, patch: `[{"op":"test","path":"/","value":1}]`, want: `{"":1,"a":2}`},
		{name: "EmptyKeyCopy", doc: `{"":1,"a":2}`, patch: `[{"op":"copy","from":"/","path":"/b"}]`, want: `{"":1,"a":2,"b":1}`},
		{name: "CopyFromRootSeesCurrentState", doc: `{"a":1}`, patch: `[{"op":"add","path":"/b","value":2},{"op":"copy","from":"","path":"/c"}]`, want: `{"a":1,"b":2,"c":{"a":1,"b":2}}`},
		{name: "TestNumbersByValue", doc: `{"a":1,"b":100}`, patch: `[{"op":"test","path":"/a","value":1.0},{"op":"test","path":"/b","value":1e2}]`, want: `{"a":1,"b":100}`},
		{name: "DuplicateKeysInPatch", doc: `{"a":1}`, patch: `[{"op":"add","path":"/b","value":{"x":1,"x":2}}]`, wantErr: patch.ErrInvalidJSON},
		{name: "BadEscape", doc: `{"a":1}`, patch: `[{"op":"remove","path":"/a~2"}]`, wantErr: patch.ErrInvalidPatch},
		{name: "PathWithoutSlash", doc: `{"a":1}`, patch: `[{"op":"remove","path":"a"}]`, wantErr: patch.ErrInvalidPatch},
		{name: "MoveIntoOwnChild", doc: `{"a":{"b":1}}`, patch: `[{"op":"move","from":"/a","path":"/a/c"}]`, wantErr: patch.ErrInvalidPatch},
		{name: "DashNotLast", doc: `{"a":[{"b":1}]}`, patch: `[{"op":"replace","path":"/a/-/b","value":2}]`, wantErr: patch.ErrInvalidPatch},
		{name: "DashOnRemove", doc: `{"a":[1]}`, patch: `[{"op":"remove","path":"/a/-"}]`, wantErr: patch.ErrInvalidPatch},
		{name: "HugeIndex", doc: `{"a":[1]}`, patch: `[{"op":"add","path":"/a/2000000000","value":1}]`, wantErr: patch.ErrPatchFailed},
		{name: "Atomic", doc: `{"a":1}`, patch: `[{"op":"add","path":"/b","value":2},{"op":"remove","path":"/zzz"}]`, wantErr: patch.ErrPatchFailed},
		{name: "BigNumbersKept", doc: `{"a":12345678901234567890123}`, patch: `[{"op":"add","path":"/b","value":1e400},{"op":"copy","from":"/a","path":"/c"}]`, want: `{"a":12345678901234567890123,"b":1e400,"c":12345678901234567890123}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := patch.Parse([]byte(tc.doc), patch.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := applyJSONPatch(doc, []byte(tc.patch))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err=%v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g := string(patch.Canonical(got)); g != tc.want {
				t.Fatalf("got %s, want %s", g, tc.want)
			}
		})
	}
}

func TestCopyAmplificationBounded(t *testing.T) {
	var ops []string
	for i := range 30 {
		ops = append(ops, `{"op":"copy","from":"/a","path":"/a/k`+string(rune('a'+i%26))+string(rune('a'+i/26))+`"}`)
	}
	body := "[" + strings.Join(ops, ",") + "]"
	doc, _ := patch.Parse([]byte(`{"a":{"x":"`+strings.Repeat("y", 100)+`"}}`), patch.Limits{})
	parsed, err := patch.ParseJSONPatch([]byte(body), patch.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = patch.Apply(doc, parsed, patch.Limits{MaxDoc: 1 << 20})
	if !errors.Is(err, patch.ErrInvalidDocument) {
		t.Fatalf("err=%v, want ErrInvalidDocument", err)
	}
}

func TestParseJSONPatchLimits(t *testing.T) {
	ops := strings.Repeat(`{"op":"test","path":"/a","value":1},`, 1001)
	_, err := patch.ParseJSONPatch([]byte("["+strings.TrimSuffix(ops, ",")+"]"), patch.Limits{MaxOps: 1000})
	if !errors.Is(err, patch.ErrInvalidPatch) {
		t.Fatalf("err=%v, want ErrInvalidPatch", err)
	}
	for _, tc := range []struct{ name, body string }{
		{"NotArray", `{"op":"add"}`},
		{"NotObject", `[1]`},
		{"UnknownOp", `[{"op":"frobnicate","path":"/a"}]`},
		{"OpNotString", `[{"op":1,"path":"/a"}]`},
		{"MissingPath", `[{"op":"remove"}]`},
		{"PathNotString", `[{"op":"remove","path":1}]`},
		{"MissingFrom", `[{"op":"move","path":"/a"}]`},
		{"MissingValue", `[{"op":"add","path":"/a"}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := patch.ParseJSONPatch([]byte(tc.body), patch.Limits{}); !errors.Is(err, patch.ErrInvalidPatch) {
				t.Fatalf("err=%v, want ErrInvalidPatch", err)
			}
		})
	}
}

func TestMergePatchOps(t *testing.T) {
	doc, _ := patch.Parse([]byte(`{"a":{"b":1,"c":2},"d":[1],"e":"x"}`), patch.Limits{})
	mp, _ := patch.Parse([]byte(`{"a":{"b":null,"z":null},"d":[1],"e":"y","n":null,"f":{"g":null,"h":[null]}}`), patch.Limits{})
	got, ops := patch.MergePatch(doc, mp)
	if g, w := string(patch.Canonical(got)), `{"a":{"c":2},"d":[1],"e":"y","f":{"h":[null]}}`; g != w {
		t.Fatalf("got %s, want %s", g, w)
	}
	if g, w := string(patch.Canonical(patch.RFC6902(ops))), `[{"op":"remove","path":"/a/b"},{"op":"replace","path":"/e","value":"y"},{"op":"add","path":"/f","value":{"h":[null]}}]`; g != w {
		t.Fatalf("ops %s, want %s", g, w)
	}
}

func BenchmarkParseDeep(b *testing.B) {
	body := []byte(strings.Repeat(`{"a":`, 10000) + `1` + strings.Repeat(`}`, 10000))
	for b.Loop() {
		if _, err := patch.Parse(body, patch.Limits{MaxDepth: 64}); !errors.Is(err, patch.ErrInvalidDocument) {
			b.Fatal(err)
		}
	}
}

// TestJSONPatchDepthNamesItsLimit: a JSON Patch's values may nest as deep
// as the limit, its own array and operation objects not counted; past it,
// the refusal names the limit that was set (it named the limit plus two).
func TestJSONPatchDepthNamesItsLimit(t *testing.T) {
	lim := patch.Limits{MaxDepth: 5}
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	if _, err := patch.ParseJSONPatch([]byte(`[{"op":"add","path":"/a","value":`+nest(5)+`}]`), lim); err != nil {
		t.Fatalf("a value nested 5 levels: %v", err)
	}
	_, err := patch.ParseJSONPatch([]byte(`[{"op":"add","path":"/a","value":`+nest(6)+`}]`), lim)
	if !errors.Is(err, patch.ErrInvalidDocument) || !strings.Contains(err.Error(), "limit of 5") {
		t.Fatalf("a value nested 6 levels: %v, want the limit of 5 named", err)
	}
}
