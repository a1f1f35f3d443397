package handlers

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// TestOpsCacheUnchanged rebases many stale edits (successful ones,
// conflicting ones, array shifts, tests, merge patches) over the same
// versions, so that the cached ops of each version serve many rebases, and
// checks that every cached decoding still encodes to exactly what history
// holds: rebasing never modifies the ops it reads.
func TestOpsCacheUnchanged(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "patchd.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := New(st, DefaultConfig())
	srv := httptest.NewServer(h.Echo())
	defer func() {
		srv.Close()
		st.Close()
	}()
	send := func(method, ct, ifMatch, body string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+"/docs/c/d", strings.NewReader(body))
		req.Header.Set("Content-Type", ct)
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode, res.Header.Get("ETag")
	}
	_, base := send("PUT", "application/json", "", `{"a":{"x":1},"list":[{"id":1},{"id":2},{"id":3}],"n":0}`)
	etags := []string{base}
	edits := []struct{ ct, body string }{
		{"application/json-patch+json", `[{"op":"add","path":"/list/0","value":{"id":0}}]`},
		{"application/merge-patch+json", `{"a":{"y":[1,2]}}`},
		{"application/json-patch+json", `[{"op":"remove","path":"/list/2"}]`},
		{"application/json-patch+json", `[{"op":"move","from":"/a/x","path":"/moved"}]`},
		{"application/merge-patch+json", `{"m":{"deep":{"er":null,"est":"v"}}}`},
		{"application/json-patch+json", `[{"op":"replace","path":"/list/1/id","value":22}]`},
	}
	cur := base
	for _, e := range edits {
		status, etag := send("PATCH", e.ct, cur, e.body)
		if status != http.StatusOK {
			t.Fatalf("%s: %d", e.body, status)
		}
		cur = etag
		etags = append(etags, etag)
	}
	// Stale edits from every base: some rebase, some conflict.
	stale := []struct{ ct, body string }{
		{"application/json-patch+json", `[{"op":"add","path":"/list/-","value":{"id":9}}]`},
		{"application/json-patch+json", `[{"op":"test","path":"/n","value":0},{"op":"replace","path":"/n","value":1}]`},
		{"application/json-patch+json", `[{"op":"replace","path":"/list/1/id","value":7}]`},
		{"application/merge-patch+json", `{"a":{"x":null},"z":true}`},
		{"application/json-patch+json", `[{"op":"copy","from":"/list/0","path":"/copied"}]`},
	}
	codes := map[int]int{}
	for range 3 {
		for _, base := range etags {
			for _, e := range stale {
				status, _ := send("PATCH", e.ct, base, e.body)
				codes[status]++
			}
		}
	}
	if codes[http.StatusOK] == 0 || codes[http.StatusPreconditionFailed] == 0 {
		t.Fatalf("outcomes %v: want both rebased and conflicting edits", codes)
	}
	vs, _, err := st.History(t.Context(), "c", "d", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, v := range vs {
		key := "c\x00d\x00" + fmt.Sprint(v.Seq) + v.ETag
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
