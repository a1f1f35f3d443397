package document

import (
	"bytes"
	"testing"

	"github.com/patchd/patchd/patch"
)

// TestOpsCacheUnchanged rebases many stale edits (successful ones,
// conflicting ones, array shifts, tests, merge patches) over the same
// versions, so that the cached ops of each version serve many rebases, and
// checks that every cached decoding still encodes to exactly what history
// holds: rebasing never modifies the ops it reads.
func TestOpsCacheUnchanged(t *testing.T) {
	h, st := newService(t)
	send := func(kind, ifMatch, body string) (string, string) {
		code, etag, _ := outcome(t, h, kind, ifMatch, body)
		return code, etag
	}
	_, base := send("PUT", "", `{"a":{"x":1},"list":[{"id":1},{"id":2},{"id":3}],"n":0}`)
	etags := []string{base}
	edits := []struct{ kind, body string }{
		{"PATCH json", `[{"op":"add","path":"/list/0","value":{"id":0}}]`},
		{"PATCH merge", `{"a":{"y":[1,2]}}`},
		{"PATCH json", `[{"op":"remove","path":"/list/2"}]`},
		{"PATCH json", `[{"op":"move","from":"/a/x","path":"/moved"}]`},
		{"PATCH merge", `{"m":{"deep":{"er":null,"est":"v"}}}`},
		{"PATCH json", `[{"op":"replace","path":"/list/1/id","value":22}]`},
	}
	cur := base
	for _, e := range edits {
		status, etag := send(e.kind, cur, e.body)
		if status != "200" {
			t.Fatalf("%s: %s", e.body, status)
		}
		cur = etag
		etags = append(etags, etag)
	}
	// Stale edits from every base: some rebase, some conflict.
	stale := []struct{ kind, body string }{
		{"PATCH json", `[{"op":"add","path":"/list/-","value":{"id":9}}]`},
		{"PATCH json", `[{"op":"test","path":"/n","value":0},{"op":"replace","path":"/n","value":1}]`},
		{"PATCH json", `[{"op":"replace","path":"/list/1/id","value":7}]`},
		{"PATCH merge", `{"a":{"x":null},"z":true}`},
		{"PATCH json", `[{"op":"copy","from":"/list/0","path":"/copied"}]`},
	}
	codes := map[string]int{}
	for range 3 {
		for _, base := range etags {
			for _, e := range stale {
				status, _ := send(e.kind, base, e.body)
				codes[status]++
			}
		}
	}
	if codes["200"] == 0 || codes["412"] == 0 {
		t.Fatalf("outcomes %v: want both rebased and conflicting edits", codes)
	}
	vs, _, err := st.History(t.Context(), "c", "d", 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, v := range vs {
		key := h.ops.key("c", "d", v)
		h.ops.mu.Lock()
		e, ok := h.ops.m[key]
		h.ops.mu.Unlock()
		if !ok {
			continue
		}
		checked++
		if got := patch.EncodeOps(e.ops); !bytes.Equal(got, v.Ops) {
			t.Errorf("version %d: cached ops now encode to\n%s\nhistory holds\n%s", v.Seq, got, v.Ops)
		}
	}
	if checked < len(edits) {
		t.Fatalf("only %d versions in the cache", checked)
	}
}
