package patch_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/patchd/patchd/patch"
)

// TestApplyErrorsNameTheMember: an error in resolving the from of move or
// copy names "from", not "path", so that a client knows which of the two
// pointers to fix.
func TestApplyErrorsNameTheMember(t *testing.T) {
	for _, tc := range []struct {
		ops, want string
		sentinel  error
	}{
		{`[{"op":"move","from":"/a/-","path":"/b/x"}]`, `from "/a/-": "-" may only end`, patch.ErrInvalidPatch},
		{`[{"op":"copy","from":"/a/-","path":"/b/x"}]`, `from "/a/-": "-" may only end`, patch.ErrInvalidPatch},
		{`[{"op":"move","from":"/a/5","path":"/b/x"}]`, `from "/a/5": index 5 is out of range`, patch.ErrPatchFailed},
		{`[{"op":"copy","from":"/zz/q","path":"/b/x"}]`, `from "/zz/q" does not exist: no member "zz"`, patch.ErrPatchFailed},
		{`[{"op":"move","from":"/b/nope","path":"/c"}]`, `from "/b/nope" does not exist`, patch.ErrPatchFailed},
		{`[{"op":"copy","from":"/a/0","path":"/zz/q"}]`, `path "/zz/q" does not exist`, patch.ErrPatchFailed},
		{`[{"op":"remove","path":"/a/-"}]`, `path "/a/-": "-" may only end`, patch.ErrInvalidPatch},
	} {
		doc, err := patch.Parse([]byte(`{"a":[1,2],"b":{}}`), patch.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		ops, err := patch.ParseJSONPatch([]byte(tc.ops), patch.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = patch.Apply(doc, ops, patch.Limits{})
		if !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %v saying %s", tc.ops, err, tc.sentinel, tc.want)
		}
	}
}
