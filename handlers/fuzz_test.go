package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// FuzzHTTP drives the whole HTTP handler (middleware, routing, parsing,
// preconditions, patching, rebase, the bbolt store) with arbitrary
// requests. It must never answer 5xx or panic; every error must be a
// problem+json body; every document it answers with must be canonical and
// carry the ETag of its bytes; and after every request the stored state
// must be consistent: each document a canonical object within the limits,
// its ETag that of its body, and the newest history version naming it.
func FuzzHTTP(f *testing.F) {
	seeds := []struct {
		method      uint8
		id, ct, ifm string
		body        string
	}{
		{0, "d", "", "", ""},
		{2, "d", "application/json", "", `{"a":1,"b":[1,2,{"c":null}]}`},
		{2, "d", "application/json", "cur", `{"a":2}`},
		{4, "d", "application/json-patch+json", "cur", `[{"op":"add","path":"/b/-","value":3},{"op":"move","from":"/a","path":"/z"}]`},
		{4, "d", "application/json-patch+json", "first", `[{"op":"replace","path":"/b/0","value":9}]`},
		{4, "d", "application/merge-patch+json", "first", `{"b":null,"n":1e999999}`},
		{4, "d", "application/json-patch+json", "cur", `[{"op":"copy","from":"","path":"/c"},{"op":"test","path":"/c/a","value":1.0}]`},
		{5, "d", "", "cur", ""},
		{3, "", "application/json", "", `{"x":{"y":[true,false,"\u00e9"]}}`},
		{0, "d/history", "", "", ""},
		{2, "..", "application/json", "", `{}`},
		{4, "d", "application/merge-patch+json", `W/"x", "y"`, `[]`},
		{2, "e", "application/json", "*", `{"a":{"a":{"a":{"a":1}}}}`},
	}
	for _, s := range seeds {
		f.Add(s.method, s.id, s.ct, s.ifm, []byte(s.body))
	}
	st, err := bolt.Open(filepath.Join(f.TempDir(), "patchd.db"), store.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := st.Check(context.Background()); err != nil {
			f.Errorf("bbolt check: %v", err)
		}
		st.Close()
	})
	cfg := newConfig()
	cfg.doc.Limits = patch.Limits{MaxDepth: 16, MaxDoc: 16 << 10, MaxOps: 64}
	cfg.http.MaxBody = 16 << 10
	cfg.doc.RequireIfMatch = false
	e := newHandler(st, cfg).Echo()
	methods := []string{"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"}
	first := map[string]string{} // the first ETag seen per path, for stale edits

	f.Fuzz(func(t *testing.T, method uint8, id, ct, ifMatch string, body []byte) {
		m := methods[int(method)%len(methods)]
		path := "/docs/f/" + id
		if m == "POST" {
			path = "/docs/f"
		}
		u := &url.URL{Path: path}
		req := httptest.NewRequest("GET", "/", bytes.NewReader(body))
		req.Method, req.URL, req.RequestURI = m, u, u.String()
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		switch ifMatch {
		case "":
		case "cur", "first":
			etag := ""
			if ifMatch == "first" {
				etag = first[path]
			} else if doc, err := st.Get(t.Context(), "f", id); err == nil {
				etag = doc.ETag
			}
			if etag != "" {
				req.Header.Set("If-Match", etag)
			}
		default:
			req.Header.Set("If-Match", ifMatch)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)

		if rec.Code >= 500 {
			t.Fatalf("%s %s: %d %s", m, path, rec.Code, rec.Body.Bytes())
		}
		got := rec.Body.Bytes()
		switch {
		case rec.Code >= 400:
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("%s %s: %d with Content-Type %q", m, path, rec.Code, ct)
			}
			var p struct{ Type string }
			if m != "HEAD" && (json.Unmarshal(got, &p) != nil || !strings.HasPrefix(p.Type, "/problems/")) {
				t.Fatalf("%s %s: %d problem body %q", m, path, rec.Code, got)
			}
		case rec.Code == 200 || rec.Code == 201:
			if m == "HEAD" || m == "OPTIONS" || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") ||
				strings.HasSuffix(path, "/history") || path == "/docs/f" && m == "GET" {
				break
			}
			v, err := patch.Parse(got, patch.Limits{})
			if err != nil || !bytes.Equal(patch.Canonical(v), got) {
				t.Fatalf("%s %s: body %q is not canonical JSON (%v)", m, path, got, err)
			}
			if etag := rec.Header().Get("ETag"); etag != store.ETagOf(got) {
				t.Fatalf("%s %s: ETag %s, body hashes to %s", m, path, etag, store.ETagOf(got))
			}
			if _, ok := first[path]; !ok {
				first[path] = rec.Header().Get("ETag")
			}
		}
		// The document the request named, or the one a POST created.
		target := id
		if loc := rec.Header().Get("Location"); loc != "" {
			target = strings.TrimPrefix(loc, "/docs/f/")
		}
		checkDoc(t, st, target, cfg.doc.Limits)
	})
}

// checkDoc checks a stored document of collection f, if it exists: a
// canonical object within the limits, whose ETag hashes its body and
// names the newest version in its history.
func checkDoc(t *testing.T, st *bolt.Store, id string, lim patch.Limits) {
	t.Helper()
	doc, err := st.Get(t.Context(), "f", id)
	if errors.Is(err, store.ErrNotFound) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if doc.ETag != store.ETagOf(doc.Body) {
		t.Fatalf("%q: ETag %s, body hashes to %s", id, doc.ETag, store.ETagOf(doc.Body))
	}
	v, err := patch.Parse(doc.Body, patch.Limits{})
	if err != nil {
		t.Fatalf("%q: stored body %q: %v", id, doc.Body, err)
	}
	if _, ok := v.(map[string]any); !ok || !bytes.Equal(patch.Canonical(v), doc.Body) {
		t.Fatalf("%q: stored body %q is not a canonical object", id, doc.Body)
	}
	if _, err := patch.CheckDocument(v, lim); err != nil {
		t.Fatalf("%q: stored body over the limits: %v", id, err)
	}
	vs, _, err := st.History(t.Context(), "f", id, doc.Seq-1, 0, 0)
	if err != nil || len(vs) != 1 || vs[0].ETag != doc.ETag {
		t.Fatalf("%q: newest version %+v (%v), want seq %d with ETag %s", id, vs, err, doc.Seq, doc.ETag)
	}
}
