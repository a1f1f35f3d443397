package patch_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/patchd/patchd/patch"
)

// conformanceCase is one record of the community JSON Patch suite or of the
// merge patch fixtures (testdata/conformance/README.md). Members stay raw so
// that duplicate member names in a patch reach our parser as written.
type conformanceCase struct {
	Comment  string          `json:"comment"`
	Doc      json.RawMessage `json:"doc"`
	Patch    json.RawMessage `json:"patch"`
	Expected json.RawMessage `json:"expected"`
	Error    *string         `json:"error"`
	Disabled bool            `json:"disabled"`
}

func loadConformance(t *testing.T, name string) []conformanceCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "conformance", name))
	if err != nil {
		t.Fatal(err)
	}
	var cases []conformanceCase
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return cases
}

func mustParse(t *testing.T, data []byte) any {
	t.Helper()
	v, err := patch.Parse(data, patch.Limits{})
	if err != nil {
		t.Fatalf("parse %s: %v", data, err)
	}
	return v
}

// TestJSONPatchConformance runs the whole community suite, disabled records
// included, with no allowance for failures.
func TestJSONPatchConformance(t *testing.T) {
	for _, file := range []string{"tests.json", "spec_tests.json"} {
		cases := loadConformance(t, file)
		if len(cases) < 15 {
			t.Fatalf("%s: only %d cases", file, len(cases))
		}
		for i, tc := range cases {
			t.Run(file+"/"+tc.Comment, func(t *testing.T) {
				doc := mustParse(t, tc.Doc)
				got, err := applyJSONPatch(doc, tc.Patch)
				if tc.Error != nil {
					if err == nil {
						t.Fatalf("case %d: want an error (%s), got %s", i, *tc.Error, patch.Canonical(got))
					}
					if !errors.Is(err, patch.ErrInvalidPatch) && !errors.Is(err, patch.ErrPatchFailed) && !errors.Is(err, patch.ErrInvalidJSON) {
						t.Fatalf("case %d: error %v wraps no client error sentinel", i, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("case %d: %v", i, err)
				}
				want := doc
				if tc.Expected != nil {
					want = mustParse(t, tc.Expected)
				}
				if !patch.Equal(got, want) {
					t.Fatalf("case %d: got %s, want %s", i, patch.Canonical(got), patch.Canonical(want))
				}
			})
		}
	}
}

func applyJSONPatch(doc any, body []byte) (any, error) {
	ops, err := patch.ParseJSONPatch(body, patch.Limits{})
	if err != nil {
		return nil, err
	}
	// Apply works in place: give it a copy so the case's doc stays as read.
	got, _, err := patch.Apply(patch.Clone(doc), ops, patch.Limits{})
	return got, err
}

// TestMergePatchConformance runs the RFC 7396 appendix and the extra cases.
func TestMergePatchConformance(t *testing.T) {
	for _, file := range []string{"merge-patch-tests.json", "merge-patch-extra-tests.json"} {
		for i, tc := range loadConformance(t, file) {
			t.Run(file+"/"+tc.Comment, func(t *testing.T) {
				doc, mp, want := mustParse(t, tc.Doc), mustParse(t, tc.Patch), mustParse(t, tc.Expected)
				got, _ := patch.MergePatch(patch.Clone(doc), mp)
				if g, w := patch.Canonical(got), patch.Canonical(want); string(g) != string(w) {
					t.Fatalf("case %d: got %s, want %s", i, g, w)
				}
			})
		}
	}
}

// TestNormalizedOpsReplay checks, over the whole suite, that the normalized
// ops Apply returns replay to the same result and revert to the original.
func TestNormalizedOpsReplay(t *testing.T) {
	for _, file := range []string{"tests.json", "spec_tests.json"} {
		for i, tc := range loadConformance(t, file) {
			if tc.Error != nil {
				continue
			}
			doc := mustParse(t, tc.Doc)
			ops, err := patch.ParseJSONPatch(tc.Patch, patch.Limits{})
			if err != nil {
				t.Fatalf("%s case %d: %v", file, i, err)
			}
			got, norm, err := patch.Apply(patch.Clone(doc), ops, patch.Limits{})
			if err != nil {
				t.Fatalf("%s case %d: %v", file, i, err)
			}
			// Through storage and back, as history keeps them.
			stored, err := patch.DecodeOps(patch.EncodeOps(norm))
			if err != nil {
				t.Fatalf("%s case %d: %v", file, i, err)
			}
			replayed, err := patch.ApplyOps(patch.Clone(doc), stored)
			if err != nil {
				t.Fatalf("%s case %d: replay: %v", file, i, err)
			}
			if g, w := patch.Canonical(replayed), patch.Canonical(got); string(g) != string(w) {
				t.Fatalf("%s case %d: replay gave %s, want %s", file, i, g, w)
			}
			back, exists, err := patch.Revert(patch.Clone(got), stored)
			if err != nil || !exists {
				t.Fatalf("%s case %d: revert: %v (exists %v)", file, i, err, exists)
			}
			if g, w := patch.Canonical(back), patch.Canonical(doc); string(g) != string(w) {
				t.Fatalf("%s case %d: revert gave %s, want %s", file, i, g, w)
			}
		}
	}
}
