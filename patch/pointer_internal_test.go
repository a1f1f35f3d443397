package patch

import (
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// TestPointerLookupAgreesWithGet: on every pointer into a random document,
// present or not, looking it up in the canonical bytes finds what Get finds
// in the tree.
func TestPointerLookupAgreesWithGet(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		g := &rbGen{t: rt}
		doc := g.doc()
		body := Canonical(doc)
		var toks []string
		for range g.intn(0, 4, "depth") {
			switch g.intn(0, 3, "tokKind") {
			case 0:
				toks = append(toks, g.key())
			case 1:
				toks = append(toks, []string{"0", "1", "2", "3", "-", "01", "x"}[g.intn(0, 6, "idx")])
			default:
				toks = append(toks, "items")
			}
		}
		var raw strings.Builder
		for _, tok := range toks {
			raw.WriteString("/" + escapeToken(tok))
		}
		p, err := ParsePointer(raw.String())
		if err != nil {
			rt.Fatalf("ParsePointer(%q): %v", raw.String(), err)
		}
		want, wantOK := p.Get(doc)
		got, gotOK := p.Lookup(body)
		if gotOK != wantOK || (wantOK && !identical(got, want)) {
			rt.Fatalf("%q in %s: Lookup = %v, %v; Get = %v, %v", raw.String(), body, got, gotOK, want, wantOK)
		}
	})
}
