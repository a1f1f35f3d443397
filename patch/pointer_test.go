package patch_test

import (
	"errors"
	"testing"

	"github.com/patchd/patchd/patch"
)

func TestPointerGet(t *testing.T) {
	doc, err := patch.Parse([]byte(`{"a":{"b":[10,{"c":null}]},"m~n":1,"x/y":2,"":3}`), patch.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, ptr string
		want      string // canonical JSON, or "" for none
	}{
		{name: "Root", ptr: "", want: `{"":3,"a":{"b":[10,{"c":null}]},"m~n":1,"x/y":2}`},
		{name: "Member", ptr: "/a/b/0", want: `10`},
		{name: "NullIsAValue", ptr: "/a/b/1/c", want: `null`},
		{name: "Escapes", ptr: "/m~0n", want: `1`},
		{name: "Slash", ptr: "/x~1y", want: `2`},
		{name: "EmptyName", ptr: "/", want: `3`},
		{name: "Missing", ptr: "/a/z"},
		{name: "OutOfRange", ptr: "/a/b/2"},
		{name: "Dash", ptr: "/a/b/-"},
		{name: "LeadingZero", ptr: "/a/b/01"},
		{name: "ThroughScalar", ptr: "/a/b/0/c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := patch.ParsePointer(tc.ptr)
			if err != nil {
				t.Fatal(err)
			}
			v, ok := p.Get(doc)
			if got := string(patch.Canonical(v)); ok != (tc.want != "") || (ok && got != tc.want) {
				t.Fatalf("Get(%q) = %s, %v; want %q", tc.ptr, got, ok, tc.want)
			}
			v, ok = p.Lookup(patch.Canonical(doc))
			if got := string(patch.Canonical(v)); ok != (tc.want != "") || (ok && got != tc.want) {
				t.Fatalf("Lookup(%q) = %s, %v; want %q", tc.ptr, got, ok, tc.want)
			}
		})
	}
	for _, bad := range []string{"a", "/~2", "/a~"} {
		if _, err := patch.ParsePointer(bad); !errors.Is(err, patch.ErrInvalidPatch) {
			t.Errorf("ParsePointer(%q) = %v, want ErrInvalidPatch", bad, err)
		}
	}
}

func TestCompareNumbers(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1", "1.0", 0},
		{"1", "10e-1", 0},
		{"-0", "0", 0},
		{"0.0", "0e10", 0},
		{"1", "2", -1},
		{"2", "10", -1},
		{"-2", "-10", 1},
		{"-1", "0", -1},
		{"0", "0.0001", -1},
		{"1e400", "1e399", 1},
		{"1e-400", "1e-399", -1},
		{"-1e400", "1", -1},
		{"12345678901234567890123", "12345678901234567890124", -1},
		{"1.25", "1.2", 1},
		{"123", "1.23e2", 0},
		{"99", "1e2", -1},
		{"1e999999999999999999", "1e999999999999999998", 1},
		{"0.5", "5e-1", 0},
	} {
		if got := patch.CompareNumbers(patch.Number(tc.a), patch.Number(tc.b)); got != tc.want {
			t.Errorf("CompareNumbers(%s, %s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := patch.CompareNumbers(patch.Number(tc.b), patch.Number(tc.a)); got != -tc.want {
			t.Errorf("CompareNumbers(%s, %s) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestUint64(t *testing.T) {
	const huge = 1 << 62 // a marker: ok with overflow
	for _, tc := range []struct {
		n    string
		want uint64 // 0: not a positive integer; huge: past math.MaxUint64
	}{
		{"2", 2},
		{"2.0", 2},
		{"20e-1", 2},
		{"0.2e1", 2},
		{"2E0", 2},
		{"1e2", 100},
		{"1.5e1", 15},
		{"18446744073709551615", 18446744073709551615},
		{"18446744073709551616", huge},
		{"1.8446744073709551616e19", huge},
		{"99999999999999999999999", huge},
		{"1e400", huge},
		{"1e999999999999999999", huge},
		{"0", 0},
		{"-0", 0},
		{"0.0", 0},
		{"-2", 0},
		{"2.5", 0},
		{"0.5", 0},
		{"1e-1", 0},
		{"1.0000000000000000000001e2", 0},
		{"1.5e-999999999999999999", 0},
		{"12345678901234567890123456789e-5", 0},
	} {
		v, ok, overflow := patch.Uint64(patch.Number(tc.n))
		switch {
		case tc.want == 0 && (ok || overflow || v != 0):
			t.Errorf("Uint64(%s) = %d, %v, %v; want not a positive integer", tc.n, v, ok, overflow)
		case tc.want == huge && (!ok || !overflow):
			t.Errorf("Uint64(%s) = %d, %v, %v; want past 64 bits", tc.n, v, ok, overflow)
		case tc.want != 0 && tc.want != huge && (v != tc.want || !ok || overflow):
			t.Errorf("Uint64(%s) = %d, %v, %v; want %d", tc.n, v, ok, overflow, tc.want)
		}
	}
}
