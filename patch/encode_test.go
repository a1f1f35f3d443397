package patch

import (
	"bytes"
	"testing"

	"pgregory.net/rapid"
)

// TestEncodeWholeDocument: EncodeCreate and EncodeDelete give exactly the
// bytes EncodeOps gives for the same ops built from the decoded document.
func TestEncodeWholeDocument(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		doc := (&rbGen{t: rt}).doc()
		body := Canonical(doc)
		if got, want := EncodeCreate(body), EncodeOps([]Op{{Kind: OpRoot, Value: doc}}); !bytes.Equal(got, want) {
			rt.Fatalf("EncodeCreate %s, EncodeOps %s", got, want)
		}
		if got, want := EncodeDelete(body), EncodeOps([]Op{{Kind: OpDel, Old: doc}}); !bytes.Equal(got, want) {
			rt.Fatalf("EncodeDelete %s, EncodeOps %s", got, want)
		}
	})
}
