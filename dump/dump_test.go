package dump_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/dump"
	"github.com/patchd/patchd/handlers"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// api is a real patchd over a bbolt file.
type api struct {
	t   *testing.T
	srv *httptest.Server
	st  *bolt.Store
}

func serve(t *testing.T, path string) *api {
	t.Helper()
	st, err := bolt.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := &api{t: t, srv: httptest.NewServer(handlers.New(document.New(st, document.DefaultConfig()), handlers.DefaultConfig()).Echo()), st: st}
	t.Cleanup(a.close)
	return a
}

func (a *api) close() {
	if a.st == nil {
		return
	}
	a.srv.Close()
	if err := a.st.Check(context.Background()); err != nil {
		a.t.Errorf("check: %v", err)
	}
	a.st.Close()
	a.st = nil
}

// do sends a request and returns the status, the ETag and the body.
func (a *api) do(method, path, ct, ifMatch, body string) (int, string, string) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.srv.URL+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	res, err := a.srv.Client().Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header.Get("ETag"), string(b)
}

func (a *api) must(status int, method, path, ct, ifMatch, body string) string {
	a.t.Helper()
	got, etag, b := a.do(method, path, ct, ifMatch, body)
	if got != status {
		a.t.Fatalf("%s %s: %d %s, want %d", method, path, got, b, status)
	}
	return etag
}

const (
	ctJSON  = "application/json"
	ctPatch = "application/json-patch+json"
	ctMerge = "application/merge-patch+json"
)

// populate writes documents of every kind through the API: JSON Patch on
// arrays, Merge Patch, a rebased edit, big numbers, a delete and a
// re-creation, and a document deleted for good.
func populate(a *api) []string {
	e := a.must(201, "PUT", "/docs/forms/1", ctJSON, "", `{"name":"Ann","n":12345678901234567890123,"tags":["a","b"],"x":1e400}`)
	e2 := a.must(200, "PATCH", "/docs/forms/1", ctPatch, e, `[{"op":"add","path":"/tags/1","value":{"k":[1,2]}},{"op":"move","from":"/tags/0","path":"/first"}]`)
	a.must(200, "PATCH", "/docs/forms/1", ctMerge, e2, `{"name":"Anne","extra":{"deep":[null,{"z":-0.0}]}}`)
	a.must(200, "PATCH", "/docs/forms/1", ctMerge, e, `{"x":2}`) // stale: rebased
	a.must(200, "POST", "/docs/forms/1/revert", ctJSON, "*", `{"seq":4}`)
	a.must(201, "PUT", "/schemas/forms", ctJSON, "", `{"type":"object"}`)
	g := a.must(201, "PUT", "/docs/forms/2", ctJSON, "", `{"s":"\u00e9\ud83d\ude00"}`)
	a.must(204, "DELETE", "/docs/forms/2", "", g, "")
	a.must(201, "PUT", "/docs/forms/2", ctJSON, "", `{"again":true}`)
	d := a.must(201, "PUT", "/docs/gone/x", ctJSON, "", `{}`)
	a.must(204, "DELETE", "/docs/gone/x", "", d, "")
	for i := range 30 {
		a.must(201, "POST", "/docs/many", ctJSON, "", fmt.Sprintf(`{"i":%d}`, i))
	}
	var paths []string
	for _, c := range []string{"forms", "many", "gone"} {
		_, _, body := a.do("GET", "/docs/"+c+"?limit=1000", "", "", "")
		for _, part := range strings.Split(body, `"id":"`)[1:] {
			paths = append(paths, "/docs/"+c+"/"+part[:strings.IndexByte(part, '"')])
		}
	}
	return append(paths, "/docs/gone/x", "/schemas/forms")
}

func export(t *testing.T, st *bolt.Store, history bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := dump.Export(context.Background(), st, &buf, dump.ExportOptions{History: history}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func importInto(t *testing.T, st *bolt.Store, data []byte) (dump.Counts, []*dump.LineError) {
	t.Helper()
	var bad []*dump.LineError
	c, err := dump.Import(context.Background(), st, bytes.NewReader(data), dump.ImportOptions{
		Limits: document.DefaultConfig().Limits,
		Report: func(le *dump.LineError) { bad = append(bad, le) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, bad
}

// TestRoundTrip exports, imports into a fresh file, and compares what the
// API answers for every document: bodies, ETags, and with history every
// version; a second export is byte for byte the first.
func TestRoundTrip(t *testing.T) {
	for _, history := range []bool{false, true} {
		t.Run(fmt.Sprintf("History=%v", history), func(t *testing.T) {
			dir := t.TempDir()
			src := serve(t, filepath.Join(dir, "src.db"))
			paths := populate(src)
			data := export(t, src.st, history)

			dst := serve(t, filepath.Join(dir, "dst.db"))
			c, bad := importInto(t, dst.st, data)
			if len(bad) > 0 {
				t.Fatalf("refused lines: %v", bad)
			}
			wantDeleted := int64(0)
			if history {
				wantDeleted = 1
			}
			if c.Documents != 33 || c.Deleted != wantDeleted || c.Rejected != 0 {
				t.Fatalf("counts %+v", c)
			}
			for _, p := range paths {
				s1, e1, b1 := src.do("GET", p, "", "", "")
				s2, e2, b2 := dst.do("GET", p, "", "", "")
				if s1 != s2 || e1 != e2 || b1 != b2 {
					t.Fatalf("%s: %d %s %s, imported %d %s %s", p, s1, e1, b1, s2, e2, b2)
				}
				if !history {
					continue
				}
				_, _, h1 := src.do("GET", p+"/history", "", "", "")
				_, _, h2 := dst.do("GET", p+"/history", "", "", "")
				if h1 != h2 {
					t.Fatalf("%s history:\n%s\nimported:\n%s", p, h1, h2)
				}
			}
			if again := export(t, dst.st, history); !bytes.Equal(again, data) {
				t.Fatalf("second export differs:\n%s\nfirst:\n%s", again, data)
			}
			if !history {
				return
			}
			// The imported history still rebases: a stale edit from an
			// ETag of the old file applies.
			_, _, h := src.do("GET", "/docs/forms/1/history", "", "", "")
			var hist struct{ Versions []struct{ ETag string } }
			if err := json.Unmarshal([]byte(h), &hist); err != nil || len(hist.Versions) < 2 {
				t.Fatalf("history %s: %v", h, err)
			}
			old := hist.Versions[0].ETag
			if s, _, b := dst.do("PATCH", "/docs/forms/1", ctMerge, old, `{"new":1}`); s != 200 {
				t.Fatalf("rebase from %s after import: %d %s", old, s, b)
			}
		})
	}
}

// who returns a one-version line whose version has the given members
// besides seq, at, etag, rebasedFrom and ops; each call a new id.
func who(members string) string {
	whoN++
	return fmt.Sprintf(`{"collection":"n","id":"who%d","body":{"a":1},"history":[{"seq":1,"at":"2025-01-02T03:04:05Z","etag":%q,%s,"rebasedFrom":null,"ops":[{"k":"root","p":[],"v":{"a":1}}]}]}`,
		whoN, store.ETagOf([]byte(`{"a":1}`)), members)
}

var whoN int

func TestImportRefusesBadLines(t *testing.T) {
	dir := t.TempDir()
	src := serve(t, filepath.Join(dir, "src.db"))
	populate(src)
	full := strings.Split(strings.TrimSpace(string(export(t, src.st, true))), "\n")
	var good string // forms/1 with its history
	for _, l := range full {
		if strings.HasPrefix(l, `{"collection":"forms","id":"1",`) {
			good = l
		}
	}
	tampered := strings.Replace(good, `"o":"Ann"`, `"o":"Bob"`, 1)
	// The values versions wrote, where undoing reads only what they
	// overwrote: the created body, and a merge's new value.
	tamperedRoot := strings.Replace(good, `"name":"Ann",`, `"name":"Eve",`, 1)
	tamperedNew := strings.Replace(good, `"v":"Anne"`, `"v":"Evan"`, 1)
	if tampered == good || tamperedRoot == good || tamperedNew == good {
		t.Fatalf("no Ann in %s", good)
	}
	deep := strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70)
	lines := []struct {
		line string
		ok   bool
	}{
		{`{"collection":"n","id":"ok1","body":{"a":1}}`, true},
		{`{"collection":"n","id":"bad-json","body":{"a":`, false},
		{`{"collection":"n","id":"dup","body":{"a":1,"a":2}}`, false},
		{`{"collection":"n","id":"surrogate","body":{"a":"\udc00"}}`, false},
		{"", true}, // a blank line is skipped, not refused
		{`{"collection":"n","id":"arr","body":[1]}`, false},
		{`{"collection":"n","id":"deep","body":` + deep + `}`, false},
		{`{"collection":"n","id":"big","body":{"a":"` + strings.Repeat("x", 1<<20) + `"}}`, false},
		{`{"collection":"n","id":"..","body":{}}`, false},
		{`{"collection":"n","id":"typo","body":{},"bdy":{}}`, false},
		{`{"collection":"n","id":"etag","body":{},"etag":"\"00000000000000000000000000000000\""}`, false},
		{`{"collection":"n","id":"ok2","body":{"b":12345678901234567890123},"seq":7,"updatedAt":"2025-01-02T03:04:05.5Z"}`, true},
		{`{"collection":"n","id":"deleted-no-history","body":null}`, false},
		{strings.Replace(good, `"seq":1,`, `"seq":9,`, 1), false}, // history gap
		{tampered, false},     // ops that do not lead to the body
		{tamperedRoot, false}, // a created body that is not the version's
		{tamperedNew, false},  // a new value that does not lead to the next version
		{good, true},
		{good, false}, // exists now
		{`{"collection":"n","id":"long","body":{"a":"` + strings.Repeat("y", 3<<20) + `"}}`, false},
		{`[1]`, false},
		{`{"collection":"n","id":"ok3","body":{}}`, true},
		{who(`"kind":"put","reverts":1`), false},
		{who(`"kind":"revert"`), false},
		{who(`"kind":"put","actor":5`), false},
		{who(`"kind":"put","requestId":""`), false},
		{who(`"kind":"put","actor":"alice","requestId":"r-1"`), true},
	}
	var in strings.Builder
	for _, l := range lines {
		in.WriteString(l.line + "\n")
	}
	dst := serve(t, filepath.Join(dir, "dst.db"))
	var bad []*dump.LineError
	c, err := dump.Import(context.Background(), dst.st, strings.NewReader(in.String()), dump.ImportOptions{
		Limits:     document.DefaultConfig().Limits,
		MaxLine:    2 << 20,
		BatchBytes: 100, // several batches
		Report:     func(le *dump.LineError) { bad = append(bad, le) },
	})
	if err != nil {
		t.Fatal(err)
	}
	refused := map[int]bool{}
	for _, le := range bad {
		refused[le.Line] = true
		if !strings.HasPrefix(le.Error(), fmt.Sprintf("line %d: ", le.Line)) {
			t.Errorf("message %q", le.Error())
		}
	}
	for i, l := range lines {
		if refused[i+1] == l.ok {
			t.Errorf("line %d (%.60s): refused=%v", i+1, l.line, refused[i+1])
		}
	}
	if c.Documents != 5 || c.Rejected != int64(len(bad)) {
		t.Fatalf("counts %+v, %d refused", c, len(bad))
	}
	for _, le := range bad {
		if le.Line == 19 && !errors.Is(le, store.ErrExists) {
			t.Errorf("line 19: %v, want ErrExists", le)
		}
		if le.Line == 2 && !errors.Is(le, dump.ErrInvalidLine) {
			t.Errorf("line 2: %v, want ErrInvalidLine", le)
		}
	}
	if s, e, b := dst.do("GET", "/docs/n/ok2", "", "", ""); s != 200 || b != `{"b":12345678901234567890123}` || e != store.ETagOf([]byte(b)) {
		t.Fatalf("ok2: %d %s %s", s, e, b)
	}
	if _, _, h := dst.do("GET", "/docs/n/ok2/history", "", "", ""); !strings.Contains(h, `"seq":7`) || !strings.Contains(h, `"at":"2025-01-02T03:04:05.5Z"`) {
		t.Fatalf("ok2 history %s", h)
	}
	// A write continues the imported document.
	if s, _, b := dst.do("PATCH", "/docs/n/ok2", ctMerge, store.ETagOf([]byte(`{"b":12345678901234567890123}`)), `{"c":1}`); s != 200 {
		t.Fatalf("write after import: %d %s", s, b)
	}
	for _, p := range []string{"/docs/n/bad-json", "/docs/n/arr", "/docs/n/long"} {
		if s, _, _ := dst.do("GET", p, "", "", ""); s != 404 {
			t.Fatalf("%s: %d", p, s)
		}
	}
}

// TestImportCanonicalizes: bodies come in as any valid JSON and are stored
// canonical, with the ETag the API would give them.
func TestImportCanonicalizes(t *testing.T) {
	dst := serve(t, filepath.Join(t.TempDir(), "dst.db"))
	_, bad := importInto(t, dst.st, []byte(`{"id":"a","collection":"c","body":{ "z" : 1.50, "a" : [ 1e400 ] }}`))
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	canon := `{"a":[1e400],"z":1.50}`
	if s, e, b := dst.do("GET", "/docs/c/a", "", "", ""); s != 200 || b != canon || e != store.ETagOf([]byte(canon)) {
		t.Fatalf("%d %s %s", s, e, b)
	}
	if got := string(patch.Canonical(map[string]any{"a": []any{patch.Number("1e400")}, "z": patch.Number("1.50")})); got != canon {
		t.Fatal(got)
	}
}
