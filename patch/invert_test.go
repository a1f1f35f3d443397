package patch

import (
	"bytes"
	"testing"

	"pgregory.net/rapid"
)

// TestPropInvert: for random versions as history stores them, the ops
// Invert returns take each version's result back to the document before
// it, byte for byte, and name their own indices and paths.
func TestPropInvert(t *testing.T) {
	rbCheck(t, func(t *rapid.T) {
		s := rbDrawScenario(t, 4)
		for i, c := range s.since {
			inv := Invert(c.Ops)
			for j, o := range inv {
				if o.Client != j || o.Sent != o.Path.String() {
					t.Fatalf("inverse op %d: Client %d, Sent %q", j, o.Client, o.Sent)
				}
			}
			got, err := ApplyOps(Clone(s.states[i+1]), inv)
			if err != nil {
				t.Fatalf("Q%d: inverse does not apply: %v", c.Seq, err)
			}
			if g, w := Canonical(got), Canonical(s.states[i]); !bytes.Equal(g, w) {
				t.Fatalf("Q%d undone: %s, want %s", c.Seq, g, w)
			}
		}
	})
}
