package document_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
	"pgregory.net/rapid"
)

// Property tests of revert on a real store: random histories of JSON
// Patches, Merge Patches and PUTs, then reverts.

// openService returns a document service over a fresh bbolt file.
func openService(t *testing.T) (*document.Service, store.Store) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return document.New(st, document.DefaultConfig()), st
}

// revKeys are the members of the random documents: few, so that edits
// meet, and top-level, so that what a version touched is easy to name.
var revKeys = []string{"a", "b", "c", "d", "e", "f"}

// genValue draws a member's value: a scalar, a small object or an array.
func genValue(t *rapid.T, label string) any {
	scalar := func(l string) any {
		return rapid.SampledFrom([]any{nil, true, "x", "y", json.Number("1"), json.Number("2.50"), json.Number("12345678901234567890123")}).Draw(t, l)
	}
	switch rapid.IntRange(0, 3).Draw(t, label+"Kind") {
	case 0:
		m := map[string]any{}
		for _, k := range []string{"x", "y", "z"} {
			if rapid.Bool().Draw(t, label+"Has"+k) {
				m[k] = scalar(label + k)
			}
		}
		return m
	case 1:
		a := []any{}
		for i := range rapid.IntRange(0, 3).Draw(t, label+"Len") {
			a = append(a, scalar(label+strconv.Itoa(i)))
		}
		return a
	}
	return scalar(label)
}

// genEdit draws a write against doc (decoded with json.Number): its kind
// and body. Most edits stay inside one top-level member.
func genEdit(t *rapid.T, doc map[string]any) (document.Kind, string) {
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	k := rapid.SampledFrom(revKeys).Draw(t, "key")
	switch rapid.IntRange(0, 9).Draw(t, "editKind") {
	case 0: // a whole new body
		body := map[string]any{}
		for _, key := range revKeys {
			if rapid.IntRange(0, 2).Draw(t, "putHas"+key) == 0 {
				body[key] = genValue(t, "put"+key)
			}
		}
		return document.Put, enc(body)
	case 1, 2: // merge patch of one member, or its removal
		if _, ok := doc[k]; ok && rapid.Bool().Draw(t, "mergeRemove") {
			return document.MergePatch, enc(map[string]any{k: nil})
		}
		v := genValue(t, "merge")
		if v == nil {
			v = "null-free"
		}
		return document.MergePatch, enc(map[string]any{k: v})
	}
	var op map[string]any
	switch cur := doc[k].(type) {
	case nil:
		op = map[string]any{"op": "add", "path": "/" + k, "value": genValue(t, "add")}
	case []any:
		switch i := rapid.IntRange(0, len(cur)+1).Draw(t, "index"); {
		case i < len(cur) && rapid.Bool().Draw(t, "rm"):
			op = map[string]any{"op": "remove", "path": fmt.Sprintf("/%s/%d", k, i)}
		case i < len(cur):
			op = map[string]any{"op": "replace", "path": fmt.Sprintf("/%s/%d", k, i), "value": genValue(t, "set")}
		case i == len(cur):
			op = map[string]any{"op": "add", "path": fmt.Sprintf("/%s/%d", k, i), "value": genValue(t, "ins")}
		default:
			op = map[string]any{"op": "add", "path": "/" + k + "/-", "value": genValue(t, "append")}
		}
	case map[string]any:
		sub := rapid.SampledFrom([]string{"x", "y", "z"}).Draw(t, "sub")
		if _, ok := cur[sub]; ok && rapid.Bool().Draw(t, "subRemove") {
			op = map[string]any{"op": "remove", "path": "/" + k + "/" + sub}
		} else {
			op = map[string]any{"op": "add", "path": "/" + k + "/" + sub, "value": genValue(t, "subAdd")}
		}
	default:
		if rapid.Bool().Draw(t, "remove") {
			op = map[string]any{"op": "remove", "path": "/" + k}
		} else {
			op = map[string]any{"op": "replace", "path": "/" + k, "value": genValue(t, "replace")}
		}
	}
	return document.JSONPatch, enc([]any{op})
}

// decode decodes a canonical body with json.Number.
func decode(t *rapid.T, body []byte) map[string]any {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// history writes a document and draws up to maxEdits edits of it, written
// through the service; it returns its body after each seq.
func history(t *rapid.T, ctx context.Context, svc *document.Service, id string, maxEdits int) map[uint64][]byte {
	bodies := map[uint64][]byte{}
	res, err := svc.Write(ctx, document.Write{Kind: document.Put, Collection: "p", ID: id, Body: []byte(`{"a":1,"c":[1],"e":{"x":1}}`)})
	if err != nil {
		t.Fatal(err)
	}
	bodies[res.Doc.Seq] = res.Doc.Body
	cur := res.Doc
	for range rapid.IntRange(1, maxEdits).Draw(t, "edits") {
		kind, body := genEdit(t, decode(t, cur.Body))
		pre := document.Preconditions{IfMatch: document.ETagList{Present: true, Tags: []document.EntityTag{{Opaque: cur.ETag}}}}
		res, err := svc.Write(ctx, document.Write{Kind: kind, Collection: "p", ID: id, Body: []byte(body), Pre: pre})
		if err != nil {
			t.Logf("edit %s %s refused: %v", kind, body, err)
			continue
		}
		if res.Doc.Seq == cur.Seq {
			continue // changed nothing
		}
		t.Logf("seq %d: %s %s", res.Doc.Seq, kind, body)
		bodies[res.Doc.Seq] = res.Doc.Body
		cur = res.Doc
	}
	return bodies
}

// touched returns the top-level members a version's ops wrote, and whether
// one of them wrote the whole document.
func touched(t *rapid.T, v store.Version) (map[string]bool, bool) {
	ops, err := patch.DecodeOps(v.Ops)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, o := range ops {
		if len(o.Path) == 0 {
			return out, true
		}
		out[o.Path[0].Key] = true
	}
	return out, false
}

// revertOf is the revert of version k made with If-Match etag.
func revertOf(k uint64, etag string) document.Write {
	return document.Write{Kind: document.Revert, Revert: k,
		Pre: document.Preconditions{IfMatch: document.ETagList{Present: true, Tags: []document.EntityTag{{Opaque: etag}}}}}
}

// TestPropRevertNewest: reverting the newest version restores the body
// before it, byte for byte.
func TestPropRevertNewest(t *testing.T) {
	svc, _ := openService(t)
	n := 0
	rapid.Check(t, func(t *rapid.T) {
		ctx := context.Background()
		n++
		id := "d" + strconv.Itoa(n)
		bodies := history(t, ctx, svc, id, 6)
		newest := uint64(len(bodies))
		if newest < 2 {
			return
		}
		w := revertOf(newest, store.ETagOf(bodies[newest]))
		w.Collection, w.ID = "p", id
		res, err := svc.Write(ctx, w)
		if err != nil {
			t.Fatalf("revert %d: %v", newest, err)
		}
		if !bytes.Equal(res.Doc.Body, bodies[newest-1]) || res.Doc.Seq != newest+1 || res.RebasedFrom != "" {
			t.Fatalf("revert %d: seq %d %s, want %s", newest, res.Doc.Seq, res.Doc.Body, bodies[newest-1])
		}
	})
}

// TestPropRevertUntouched: reverting an older version whose members no
// later version wrote gives what its inverse gives applied to the current
// body; and a revert never fails but by a conflict.
func TestPropRevertUntouched(t *testing.T) {
	svc, st := openService(t)
	n, disjoint := 0, 0
	rapid.Check(t, func(t *rapid.T) {
		ctx := context.Background()
		n++
		id := "d" + strconv.Itoa(n)
		bodies := history(t, ctx, svc, id, 8)
		newest := uint64(len(bodies))
		if newest < 3 {
			return
		}
		k := rapid.Uint64Range(2, newest-1).Draw(t, "k")
		vs, _, err := st.History(ctx, "p", id, 0, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		mine, whole := touched(t, vs[k-1])
		clean := !whole
		for _, v := range vs[k:] {
			theirs, all := touched(t, v)
			for m := range theirs {
				clean = clean && !mine[m]
			}
			clean = clean && !all
		}
		w := revertOf(k, store.ETagOf(bodies[newest]))
		w.Collection, w.ID = "p", id
		res, err := svc.Write(ctx, w)
		if !clean {
			var pe *document.PreconditionError
			if err != nil && !errors.As(err, &pe) {
				t.Fatalf("revert %d: %v, want a result or a 412", k, err)
			}
			return
		}
		disjoint++
		if err != nil {
			t.Fatalf("revert %d, whose members nothing later wrote: %v", k, err)
		}
		ops, err := patch.DecodeOps(vs[k-1].Ops)
		if err != nil {
			t.Fatal(err)
		}
		cur, err := patch.Parse(bodies[newest], patch.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		want, err := patch.ApplyOps(cur, patch.Invert(ops))
		if err != nil {
			t.Fatalf("the inverse of %d does not apply to the current body: %v", k, err)
		}
		if got, w := res.Doc.Body, patch.Canonical(want); !bytes.Equal(got, w) {
			t.Fatalf("revert %d: %s, want the inverse applied: %s", k, got, w)
		}
		if res.RebasedFrom != vs[k-1].ETag {
			t.Fatalf("revert %d: Rebased-From %q, want %q", k, res.RebasedFrom, vs[k-1].ETag)
		}
	})
	if disjoint == 0 {
		t.Fatal("no history drawn had a version whose members nothing later wrote")
	}
	t.Logf("%d of %d histories had a version nothing later touched", disjoint, n)
}

// TestRevertStaleIfMatch: a revert's If-Match is a PATCH's: one that names
// an older version is rebased over what followed and answered with
// Rebased-From naming it, as API.md says of a rebase; with the current
// If-Match, Rebased-From names version K when later versions were rebased
// over (REBASE.md's base), and is absent when K is the newest.
func TestRevertStaleIfMatch(t *testing.T) {
	svc, _ := openService(t)
	ctx := context.Background()
	for _, c := range []struct {
		name     string
		k        uint64
		ifMatch  int // version whose ETag If-Match names
		rebased  int // version whose ETag Rebased-From names; 0 none
		wantBody string
	}{
		{"newest, stale If-Match", 3, 1, 1, `{"a":2,"b":1,"c":1}`},
		{"older, stale If-Match", 2, 1, 1, `{"a":1,"b":2,"c":1}`},
		{"older, current If-Match", 2, 3, 2, `{"a":1,"b":2,"c":1}`},
		{"newest, current If-Match", 3, 3, 0, `{"a":2,"b":1,"c":1}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := fmt.Sprintf("k%d-m%d", c.k, c.ifMatch)
			etags := []string{""}
			for i, w := range []document.Write{
				{Kind: document.Put, Body: []byte(`{"a":1,"b":1,"c":1}`)},
				{Kind: document.MergePatch, Body: []byte(`{"a":2}`)},
				{Kind: document.MergePatch, Body: []byte(`{"b":2}`)},
			} {
				w.Collection, w.ID = "r", id
				if i > 0 {
					w.Pre.IfMatch = document.ETagList{Present: true, Tags: []document.EntityTag{{Opaque: etags[i]}}}
				}
				res, err := svc.Write(ctx, w)
				if err != nil {
					t.Fatal(err)
				}
				etags = append(etags, res.Doc.ETag)
			}
			w := revertOf(c.k, etags[c.ifMatch])
			w.Collection, w.ID = "r", id
			res, err := svc.Write(ctx, w)
			if err != nil {
				t.Fatalf("revert %d with If-Match of version %d: %v", c.k, c.ifMatch, err)
			}
			want := ""
			if c.rebased > 0 {
				want = etags[c.rebased]
			}
			if string(res.Doc.Body) != c.wantBody || res.RebasedFrom != want {
				t.Fatalf("revert %d with If-Match of version %d: %s, Rebased-From %q; want %s, Rebased-From %q (version %d)",
					c.k, c.ifMatch, res.Doc.Body, res.RebasedFrom, c.wantBody, want, c.rebased)
			}
		})
	}
}

// writeDuringHistory commits a large write to the document before the
// first history read of it, as another request may between a replay's
// two reads.
type writeDuringHistory struct {
	store.Store
	once  sync.Once
	write func()
}

func (w *writeDuringHistory) History(ctx context.Context, c, id string, after uint64, limit, maxBytes int) ([]store.Version, bool, error) {
	w.once.Do(w.write)
	return w.Store.History(ctx, c, id, after, limit, maxBytes)
}

// TestReplayWithLargeWriteMeanwhile: a replay whose history page stops at
// its byte bound after a write committed meanwhile, but holds every version
// up to the one it read as current, rebuilds its answer (it was 410).
func TestReplayWithLargeWriteMeanwhile(t *testing.T) {
	_, st := openService(t)
	ctx := context.Background()
	cfg := document.DefaultConfig()
	cfg.ReplayBytes = 10_000
	w := &writeDuringHistory{Store: st}
	svc := document.New(w, cfg)
	put := func(body string, key *document.IdempotencyKey) document.Result {
		t.Helper()
		res, err := svc.Write(ctx, document.Write{Kind: document.MergePatch, Collection: "r", ID: "big", Body: []byte(body),
			Pre: document.Preconditions{IfMatch: document.ETagList{Present: true, Any: true}}, Idempotency: key})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if _, err := svc.Write(ctx, document.Write{Kind: document.Put, Collection: "r", ID: "big", Body: []byte(`{"n":0}`)}); err != nil {
		t.Fatal(err)
	}
	key := &document.IdempotencyKey{Key: "k", Scope: "s", Fingerprint: "f"}
	first := put(`{"n":1}`, key)
	put(`{"m":1}`, nil)
	w.write = func() { put(`{"pad":"`+strings.Repeat("x", 20_000)+`"}`, nil) }
	again, err := svc.Write(ctx, document.Write{Kind: document.MergePatch, Collection: "r", ID: "big", Body: []byte(`{"n":1}`),
		Pre: document.Preconditions{IfMatch: document.ETagList{Present: true, Any: true}}, Idempotency: key})
	if err != nil || !again.Replayed || again.Doc.ETag != first.Doc.ETag || string(again.Doc.Body) != string(first.Doc.Body) {
		t.Fatalf("replay: %+v %v, want the first answer %s", again, err, first.Doc.Body)
	}
}

// TestRebasedRemovalOfChanged: a stale write that removes what a
// concurrent version changed inside (REBASE.md E2: Q removed /a/b, P
// removes /a) is rebased, and its version records what it removed from
// the current document, not from its base: the history leads to the
// document, and reverting the write gives back the current version, not
// what Q removed.
func TestRebasedRemovalOfChanged(t *testing.T) {
	ctx := context.Background()
	svc, st := openService(t)
	ifMatch := func(etag string) document.Preconditions {
		return document.Preconditions{IfMatch: document.ETagList{Present: true, Tags: []document.EntityTag{{Opaque: etag}}}}
	}
	for _, c := range []struct {
		name, start, q string
		p              document.Write
	}{
		{"json patch", `{"a":{"b":1,"c":2},"k":0}`, `[{"op":"remove","path":"/a/b"}]`,
			document.Write{Kind: document.JSONPatch, Body: []byte(`[{"op":"remove","path":"/a"}]`)}},
		{"json patch to nothing", `{"a":{"b":1,"c":2}}`, `[{"op":"remove","path":"/a/b"}]`,
			document.Write{Kind: document.JSONPatch, Body: []byte(`[{"op":"remove","path":"/a"}]`)}},
		{"merge patch", `{"a":{"b":1,"c":2},"k":0}`, `[{"op":"remove","path":"/a/b"}]`,
			document.Write{Kind: document.MergePatch, Body: []byte(`{"a":null}`)}},
		{"put", `{"a":{"b":1,"c":2},"k":0}`, `[{"op":"remove","path":"/a/b"}]`,
			document.Write{Kind: document.Put, Body: []byte(`{"k":0}`)}},
		{"array element", `{"a":[{"x":1,"y":2}],"k":0}`, `[{"op":"remove","path":"/a/0/x"}]`,
			document.Write{Kind: document.JSONPatch, Body: []byte(`[{"op":"remove","path":"/a/0"}]`)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := strings.ReplaceAll(c.name, " ", "-")
			base, err := svc.Write(ctx, document.Write{Kind: document.Put, Collection: "p", ID: id, Body: []byte(c.start)})
			if err != nil {
				t.Fatal(err)
			}
			q, err := svc.Write(ctx, document.Write{Kind: document.JSONPatch, Collection: "p", ID: id, Body: []byte(c.q), Pre: ifMatch(base.Doc.ETag)})
			if err != nil {
				t.Fatal(err)
			}
			p := c.p
			p.Collection, p.ID, p.Pre = "p", id, ifMatch(base.Doc.ETag)
			res, err := svc.Write(ctx, p)
			if err != nil || res.RebasedFrom != base.Doc.ETag {
				t.Fatalf("the stale removal: %v (rebased from %q)", err, res.RebasedFrom)
			}
			hist, _, err := st.History(ctx, "p", id, 0, 100, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			body, err := patch.Parse(res.Doc.Body, patch.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if err := document.CheckHistory(body, true, hist, nil); err != nil {
				t.Errorf("history after the rebased removal: %v", err)
			}
			w := revertOf(res.Doc.Seq, res.Doc.ETag)
			w.Collection, w.ID = "p", id
			back, err := svc.Write(ctx, w)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back.Doc.Body, q.Doc.Body) {
				t.Errorf("revert of the rebased removal gives %s, want the version before it, %s", back.Doc.Body, q.Doc.Body)
			}
		})
	}
}
