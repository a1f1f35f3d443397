package handlers_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/patchd/patchd/store"
)

func etagOf(canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

func TestDocumentLifecycle(t *testing.T) {
	s := startServer(t)
	r := s.do(t, "PUT", "/docs/forms/f1", hdr{"Content-Type", ctJSON}, `{ "name": "Ann", "age": 30, "tags": ["a"] }`)
	expect(t, r, http.StatusCreated, "")
	canon := `{"age":30,"name":"Ann","tags":["a"]}`
	if got := string(r.body); got != canon {
		t.Fatalf("body=%s, want %s", got, canon)
	}
	if got, want := r.header.Get("ETag"), etagOf(canon); got != want {
		t.Fatalf("ETag=%s, want %s", got, want)
	}
	if got := r.header.Get("Location"); got != "/docs/forms/f1" {
		t.Fatalf("Location=%q", got)
	}
	etag := r.header.Get("ETag")

	r = s.do(t, "GET", "/docs/forms/f1", nil, "")
	expect(t, r, http.StatusOK, "")
	for name, want := range map[string]string{"ETag": etag, "Content-Type": ctJSON, "Cache-Control": "no-cache",
		"Accept-Patch": "application/json-patch+json, application/merge-patch+json"} {
		if got := r.header.Get(name); got != want {
			t.Errorf("%s=%q, want %q", name, got, want)
		}
	}
	if string(r.body) != canon {
		t.Fatalf("GET body=%s", r.body)
	}

	r = s.do(t, "HEAD", "/docs/forms/f1", nil, "")
	expect(t, r, http.StatusOK, "")
	if r.header.Get("ETag") != etag || len(r.body) != 0 || r.header.Get("Content-Length") != fmt.Sprint(len(canon)) {
		t.Fatalf("HEAD: %v %q", r.header, r.body)
	}

	// Same content, other key order and white space: same ETag, 200.
	r = s.do(t, "PUT", "/docs/forms/f1", hdr{"Content-Type", ctJSON, "If-Match", etag}, `{"tags":["a"],"name":"Ann","age":30}`)
	expect(t, r, http.StatusOK, "")
	if r.header.Get("ETag") != etag {
		t.Fatalf("same content changed the ETag")
	}

	r = s.do(t, "PATCH", "/docs/forms/f1", hdr{"Content-Type", ctPatch, "If-Match", etag}, `[{"op":"replace","path":"/age","value":31}]`)
	expect(t, r, http.StatusOK, "")
	if got, want := string(r.body), `{"age":31,"name":"Ann","tags":["a"]}`; got != want {
		t.Fatalf("PATCH body=%s, want %s", got, want)
	}
	etag2 := r.header.Get("ETag")
	if etag2 != etagOf(string(r.body)) {
		t.Fatalf("ETag %s does not hash the body", etag2)
	}

	r = s.do(t, "PATCH", "/docs/forms/f1", hdr{"Content-Type", ctMerge, "If-Match", etag2}, `{"tags":null,"email":"a@b.c"}`)
	expect(t, r, http.StatusOK, "")
	if got, want := string(r.body), `{"age":31,"email":"a@b.c","name":"Ann"}`; got != want {
		t.Fatalf("merge body=%s, want %s", got, want)
	}
	etag3 := r.header.Get("ETag")

	r = s.do(t, "DELETE", "/docs/forms/f1", hdr{"If-Match", etag3}, "")
	expect(t, r, http.StatusNoContent, "")
	expect(t, s.do(t, "GET", "/docs/forms/f1", nil, ""), http.StatusNotFound, "not-found")

	// History keeps every version, the delete included.
	r = s.do(t, "GET", "/docs/forms/f1/history", nil, "")
	expect(t, r, http.StatusOK, "")
	var h struct {
		Versions []struct {
			Seq         int               `json:"seq"`
			ETag        *string           `json:"etag"`
			At          string            `json:"at"`
			Kind        string            `json:"kind"`
			Ops         []json.RawMessage `json:"ops"`
			RebasedFrom *string           `json:"rebasedFrom"`
		} `json:"versions"`
		Next *int `json:"next"`
	}
	if err := json.Unmarshal(r.body, &h); err != nil {
		t.Fatal(err)
	}
	kinds := []string{}
	for i, v := range h.Versions {
		if v.Seq != i+1 || v.At == "" || v.RebasedFrom != nil {
			t.Fatalf("version %d: %+v", i, v)
		}
		kinds = append(kinds, v.Kind)
	}
	if got, want := strings.Join(kinds, ","), "put,json-patch,merge-patch,delete"; got != want {
		t.Fatalf("kinds=%s, want %s (body %s)", got, want, r.body)
	}
	if got, want := string(h.Versions[1].Ops[0]), `{"op":"replace","path":"/age","value":31}`; got != want {
		t.Fatalf("ops=%s, want %s", got, want)
	}
	if h.Versions[3].ETag != nil || *h.Versions[2].ETag != etag3 || h.Next != nil {
		t.Fatalf("history: %s", r.body)
	}
}

func TestNumbersKeepTheirLiterals(t *testing.T) {
	s := startServer(t)
	big := `{"a":12345678901234567890123,"b":1e400,"c":-0.0}`
	etag := s.create(t, "/docs/n/1", big)
	if got := string(s.do(t, "GET", "/docs/n/1", nil, "").body); got != big {
		t.Fatalf("GET=%s, want %s", got, big)
	}
	r := s.do(t, "PATCH", "/docs/n/1", hdr{"Content-Type", ctPatch, "If-Match", etag},
		`[{"op":"add","path":"/d","value":98765432109876543210987},{"op":"copy","from":"/b","path":"/e"},{"op":"test","path":"/a","value":12345678901234567890123}]`)
	expect(t, r, http.StatusOK, "")
	want := `{"a":12345678901234567890123,"b":1e400,"c":-0.0,"d":98765432109876543210987,"e":1e400}`
	if string(r.body) != want {
		t.Fatalf("JSON Patch=%s, want %s", r.body, want)
	}
	r = s.do(t, "PATCH", "/docs/n/1", hdr{"Content-Type", ctMerge, "If-Match", r.header.Get("ETag")}, `{"f":1.50,"a":null}`)
	expect(t, r, http.StatusOK, "")
	want = `{"b":1e400,"c":-0.0,"d":98765432109876543210987,"e":1e400,"f":1.50}`
	if string(r.body) != want {
		t.Fatalf("merge=%s, want %s", r.body, want)
	}
	hist := string(s.do(t, "GET", "/docs/n/1/history", nil, "").body)
	for _, lit := range []string{"98765432109876543210987", "1e400", "1.50", "12345678901234567890123"} {
		if !strings.Contains(hist, lit) {
			t.Fatalf("history lost %s: %s", lit, hist)
		}
	}
	// Documents that differ only past float64 precision have different ETags.
	e1 := s.create(t, "/docs/n/x", `{"n":9007199254740993}`)
	e2 := s.create(t, "/docs/n/y", `{"n":9007199254740992}`)
	if e1 == e2 {
		t.Fatal("ETags collide for different big integers")
	}
}

// TestErrorTable covers every row of API.md's error table over HTTP.
func TestErrorTable(t *testing.T) {
	s := startServer(t, func(c *config) { c.http.MaxBody = 4096; c.doc.Limits.MaxDoc = 2048 })
	lax := startServer(t, func(c *config) { c.doc.RequireIfMatch = false })
	etag := s.create(t, "/docs/c/d", `{"a":{"b":1},"list":[1,2]}`)
	lax.create(t, "/docs/c/d", `{"a":1}`)
	for _, tc := range []struct {
		name    string
		srv     *server
		method  string
		path    string
		h       hdr
		body    string
		status  int
		problem string
	}{
		{"InvalidJSON/Syntax", s, "PUT", "/docs/c/new", hdr{"Content-Type", ctJSON}, `{"a":`, 400, "invalid-json"},
		{"InvalidJSON/Duplicate", s, "PUT", "/docs/c/new", hdr{"Content-Type", ctJSON}, `{"a":1,"a":2}`, 400, "invalid-json"},
		{"InvalidJSON/UTF8", s, "PUT", "/docs/c/new", hdr{"Content-Type", ctJSON}, "{\"a\":\"\xc3\x28\"}", 400, "invalid-json"},
		{"InvalidJSON/Surrogate", s, "PUT", "/docs/c/new", hdr{"Content-Type", ctJSON}, `{"a":"\udc00"}`, 400, "invalid-json"},
		{"InvalidJSON/MergePatch", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", etag}, `{"a":1,}`, 400, "invalid-json"},
		{"InvalidPatch/NotArray", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", etag}, `{"op":"add"}`, 400, "invalid-patch"},
		{"InvalidPatch/NoValue", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", etag}, `[{"op":"add","path":"/x"}]`, 400, "invalid-patch"},
		{"InvalidPatch/Pointer", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", etag}, `[{"op":"remove","path":"a"}]`, 400, "invalid-patch"},
		{"InvalidPatch/LeadingZero", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", etag}, `[{"op":"remove","path":"/list/01"}]`, 400, "invalid-patch"},
		{"InvalidPatch/Negative", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", etag}, `[{"op":"add","path":"/list/-1","value":0}]`, 400, "invalid-patch"},
		{"InvalidPatch/MoveIntoChild", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", etag}, `[{"op":"move","from":"/a","path":"/a/b/c"}]`, 400, "invalid-patch"},
		{"InvalidRequest/ID", s, "GET", "/docs/c/a%20b", nil, "", 400, "invalid-request"},
		{"InvalidRequest/DotDot", s, "GET", "/docs/c/..", nil, "", 400, "invalid-request"},
		{"InvalidRequest/Collection", s, "GET", "/docs/%24x/d", nil, "", 400, "invalid-request"},
		{"InvalidRequest/LongID", s, "GET", "/docs/c/" + strings.Repeat("x", 129), nil, "", 400, "invalid-request"},
		{"InvalidRequest/IfMatch", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", `abc`}, `{}`, 400, "invalid-request"},
		{"InvalidRequest/IfNoneMatch", s, "GET", "/docs/c/d", hdr{"If-None-Match", `"abc`}, "", 400, "invalid-request"},
		{"InvalidRequest/Limit", s, "GET", "/docs/c?limit=0", nil, "", 400, "invalid-request"},
		{"InvalidRequest/After", s, "GET", "/docs/c/d/history?after=x", nil, "", 400, "invalid-request"},
		{"NotFound/Get", s, "GET", "/docs/c/missing", nil, "", 404, "not-found"},
		{"NotFound/Patch", s, "PATCH", "/docs/c/missing", hdr{"Content-Type", ctMerge, "If-Match", etag}, `{}`, 404, "not-found"},
		{"NotFound/Delete", s, "DELETE", "/docs/c/missing", hdr{"If-Match", etag}, "", 404, "not-found"},
		{"NotFound/History", s, "GET", "/docs/c/missing/history", nil, "", 404, "not-found"},
		{"NotFound/Route", s, "GET", "/nowhere", nil, "", 404, "not-found"},
		{"MethodNotAllowed", s, "POST", "/docs/c/d", hdr{"Content-Type", ctJSON}, `{}`, 405, "method-not-allowed"},
		{"PatchConflict", lax, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch}, `[{"op":"remove","path":"/zz"}]`, 409, "patch-conflict"},
		{"PreconditionFailed/Delete", s, "DELETE", "/docs/c/d", hdr{"If-Match", `"0000"`}, "", 412, "precondition-failed"},
		{"PreconditionFailed/CreateOnly", s, "PUT", "/docs/c/d", hdr{"Content-Type", ctJSON, "If-None-Match", "*"}, `{}`, 412, "precondition-failed"},
		{"PreconditionFailed/GetIfMatch", s, "GET", "/docs/c/d", hdr{"If-Match", `"0000"`}, "", 412, "precondition-failed"},
		{"PreconditionFailed/IfNoneMatchWrite", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", etag, "If-None-Match", etag}, `{}`, 412, "precondition-failed"},
		{"PreconditionFailed/Strict", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", `"0000"`, "Prefer", "handling=strict"}, `{}`, 412, "precondition-failed"},
		{"PreconditionFailed/IfMatchOnMissing", s, "PUT", "/docs/c/nope", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{}`, 412, "precondition-failed"},
		{"BaseUnknown", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", `"0123456789abcdef0123456789abcdef"`}, `{"x":1}`, 412, "base-unknown"},
		{"TooLarge", s, "PUT", "/docs/c/big", hdr{"Content-Type", ctJSON}, `{"a":"` + strings.Repeat("x", 5000) + `"}`, 413, "too-large"},
		{"UnsupportedMediaType/Patch", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctJSON, "If-Match", etag}, `{}`, 415, "unsupported-media-type"},
		{"UnsupportedMediaType/Put", s, "PUT", "/docs/c/d", hdr{"Content-Type", "text/plain", "If-Match", etag}, `{}`, 415, "unsupported-media-type"},
		{"UnsupportedMediaType/Missing", s, "PUT", "/docs/c/d", hdr{"If-Match", etag}, `{}`, 415, "unsupported-media-type"},
		{"PatchFailed/Test", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", etag}, `[{"op":"test","path":"/a/b","value":2}]`, 422, "patch-failed"},
		{"PatchFailed/Missing", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", etag}, `[{"op":"replace","path":"/zz","value":2}]`, 422, "patch-failed"},
		{"PatchFailed/Index", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", etag}, `[{"op":"add","path":"/list/5","value":2}]`, 422, "patch-failed"},
		{"InvalidDocument/Array", s, "PUT", "/docs/c/new", hdr{"Content-Type", ctJSON}, `[1]`, 422, "invalid-document"},
		{"InvalidDocument/MergeRoot", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", etag}, `[1]`, 422, "invalid-document"},
		{"InvalidDocument/ReplaceRoot", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", etag}, `[{"op":"replace","path":"","value":3}]`, 422, "invalid-document"},
		{"InvalidDocument/Deep", s, "PUT", "/docs/c/new", hdr{"Content-Type", ctJSON}, strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100), 422, "invalid-document"},
		{"InvalidDocument/Size", s, "PUT", "/docs/c/new", hdr{"Content-Type", ctJSON}, `{"a":"` + strings.Repeat("x", 3000) + `"}`, 422, "invalid-document"},
		{"PreconditionRequired/Put", s, "PUT", "/docs/c/d", hdr{"Content-Type", ctJSON}, `{}`, 428, "precondition-required"},
		{"PreconditionRequired/Patch", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge}, `{}`, 428, "precondition-required"},
		{"PreconditionRequired/Delete", s, "DELETE", "/docs/c/d", nil, "", 428, "precondition-required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.srv.do(t, tc.method, tc.path, tc.h, tc.body)
			expect(t, r, tc.status, tc.problem)
			p := r.problem(t)
			if int(p["status"].(float64)) != tc.status || p["detail"] == "" {
				t.Fatalf("problem %s", r.body)
			}
			if tc.status == 412 && tc.srv == s && tc.path == "/docs/c/d" {
				if r.header.Get("ETag") != etag || p["currentEtag"] != etag {
					t.Fatalf("412 without the current ETag: %v %s", r.header, r.body)
				}
			}
			if tc.status == 415 && r.header.Get("Accept-Patch") == "" {
				t.Fatal("415 without Accept-Patch")
			}
		})
	}
	// None of those changed the document.
	r := s.do(t, "GET", "/docs/c/d", nil, "")
	if r.header.Get("ETag") != etag {
		t.Fatalf("document changed: %s", r.body)
	}
	r = s.do(t, "GET", "/docs/c/d/history", nil, "")
	if strings.Count(string(r.body), `"seq"`) != 1 {
		t.Fatalf("history grew: %s", r.body)
	}
}

func TestPreconditions(t *testing.T) {
	s := startServer(t)
	etag := s.create(t, "/docs/c/d", `{"a":1}`)
	weak := "W/" + etag
	t.Run("IfMatchList", func(t *testing.T) {
		r := s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", `"x", ` + etag}, `{"a":1}`)
		expect(t, r, 200, "")
	})
	t.Run("IfMatchStar", func(t *testing.T) {
		r := s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", "*"}, `{"a":1}`)
		expect(t, r, 200, "")
	})
	t.Run("IfMatchWeakNeverMatches", func(t *testing.T) {
		r := s.do(t, "DELETE", "/docs/c/d", hdr{"If-Match", weak}, "")
		expect(t, r, 412, "precondition-failed")
	})
	t.Run("IfNoneMatchWeakComparison", func(t *testing.T) {
		for _, v := range []string{etag, weak, `"x", ` + weak, "*"} {
			r := s.do(t, "GET", "/docs/c/d", hdr{"If-None-Match", v}, "")
			expect(t, r, http.StatusNotModified, "")
			if r.header.Get("ETag") != etag || len(r.body) != 0 {
				t.Fatalf("304 %v %q", r.header, r.body)
			}
		}
		expect(t, s.do(t, "HEAD", "/docs/c/d", hdr{"If-None-Match", etag}, ""), http.StatusNotModified, "")
		expect(t, s.do(t, "GET", "/docs/c/d", hdr{"If-None-Match", `"other"`}, ""), 200, "")
	})
	t.Run("IfMatchBeforeIfNoneMatch", func(t *testing.T) {
		// Step 1 fails first: 412, not 304.
		expect(t, s.do(t, "GET", "/docs/c/d", hdr{"If-Match", `"other"`, "If-None-Match", etag}, ""), 412, "precondition-failed")
	})
	t.Run("CreateOnly", func(t *testing.T) {
		r := s.do(t, "PUT", "/docs/c/fresh", hdr{"Content-Type", ctJSON, "If-None-Match", "*"}, `{}`)
		expect(t, r, 201, "")
		expect(t, s.do(t, "PUT", "/docs/c/fresh", hdr{"Content-Type", ctJSON, "If-None-Match", "*"}, `{}`), 412, "precondition-failed")
	})
	t.Run("ErrorsWinOverPreconditions", func(t *testing.T) {
		expect(t, s.do(t, "GET", "/docs/c/missing", hdr{"If-Match", `"x"`}, ""), 404, "not-found")
		expect(t, s.do(t, "PATCH", "/docs/c/missing", hdr{"Content-Type", ctMerge, "If-Match", `"x"`}, `{}`), 404, "not-found")
		expect(t, s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", "text/plain"}, `{}`), 415, "unsupported-media-type")
		expect(t, s.do(t, "PUT", "/docs/c/d", hdr{"Content-Type", ctJSON}, `{`), 400, "invalid-json")
		expect(t, s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch}, `[{"op":"nope"}]`), 400, "invalid-patch")
	})
	t.Run("ReturnMinimal", func(t *testing.T) {
		cur := s.do(t, "GET", "/docs/c/d", nil, "").header.Get("ETag")
		r := s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", cur, "Prefer", "return=minimal"}, `{"b":2}`)
		expect(t, r, http.StatusNoContent, "")
		if r.header.Get("ETag") != etagOf(`{"a":1,"b":2}`) || r.header.Get("Preference-Applied") != "return=minimal" || len(r.body) != 0 {
			t.Fatalf("minimal: %v %q", r.header, r.body)
		}
		r = s.do(t, "PUT", "/docs/c/min", hdr{"Content-Type", ctJSON, "Prefer", "return=minimal"}, `{"z":1}`)
		expect(t, r, http.StatusCreated, "")
		if len(r.body) != 0 || r.header.Get("ETag") != etagOf(`{"z":1}`) {
			t.Fatalf("minimal create: %v %q", r.header, r.body)
		}
	})
	t.Run("StrictCurrentApplies", func(t *testing.T) {
		cur := s.do(t, "GET", "/docs/c/d", nil, "").header.Get("ETag")
		r := s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", cur, "Prefer", "handling=strict, return=minimal"}, `{"s":1}`)
		expect(t, r, http.StatusNoContent, "")
		if got := r.header.Get("Preference-Applied"); got != "return=minimal, handling=strict" {
			t.Fatalf("Preference-Applied=%q", got)
		}
	})
	t.Run("RequireIfMatchOff", func(t *testing.T) {
		lax := startServer(t, func(c *config) { c.doc.RequireIfMatch = false })
		lax.create(t, "/docs/c/d", `{"a":1}`)
		expect(t, lax.do(t, "PUT", "/docs/c/d", hdr{"Content-Type", ctJSON}, `{"a":2}`), 200, "")
		expect(t, lax.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge}, `{"a":3}`), 200, "")
		expect(t, lax.do(t, "DELETE", "/docs/c/d", nil, ""), 204, "")
	})
	t.Run("StaleInHistoryWithoutRebaseIsPreconditionFailed", func(t *testing.T) {
		old := s.do(t, "GET", "/docs/c/d", nil, "").header.Get("ETag")
		r := s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", old}, `{"c":3}`)
		expect(t, r, 200, "")
		r = s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", old, "Prefer", "handling=strict"}, `{"d":4}`)
		expect(t, r, 412, "precondition-failed")
		if r.header.Get("Preference-Applied") != "handling=strict" {
			t.Fatalf("Preference-Applied=%q", r.header.Get("Preference-Applied"))
		}
	})
}

func TestOptionsAndAllow(t *testing.T) {
	s := startServer(t)
	r := s.do(t, "OPTIONS", "/docs/c/d", nil, "")
	expect(t, r, http.StatusNoContent, "")
	if r.header.Get("Accept-Patch") == "" || !strings.Contains(r.header.Get("Allow"), "PATCH") {
		t.Fatalf("OPTIONS headers %v", r.header)
	}
	r = s.do(t, "PUT", "/docs/c", hdr{"Content-Type", ctJSON}, `{}`)
	expect(t, r, http.StatusMethodNotAllowed, "method-not-allowed")
	if !strings.Contains(r.header.Get("Allow"), "POST") {
		t.Fatalf("405 Allow=%q", r.header.Get("Allow"))
	}
	if d := fmt.Sprint(r.problem(t)["detail"]); !strings.Contains(d, "PUT is not allowed") || !strings.Contains(d, r.header.Get("Allow")) {
		t.Fatalf("405 detail %q: want the method and what is allowed", d)
	}
}

func TestPostAndList(t *testing.T) {
	s := startServer(t)
	var ids []string
	for i := range 5 {
		r := s.do(t, "POST", "/docs/items", hdr{"Content-Type", ctJSON}, fmt.Sprintf(`{"n":%d}`, i))
		expect(t, r, http.StatusCreated, "")
		loc := r.header.Get("Location")
		id := strings.TrimPrefix(loc, "/docs/items/")
		if id == loc || len(id) != 26 {
			t.Fatalf("Location=%q", loc)
		}
		if len(ids) > 0 && id <= ids[len(ids)-1] {
			t.Fatalf("ids not time-ordered: %s after %s", id, ids[len(ids)-1])
		}
		ids = append(ids, id)
		expect(t, s.do(t, "GET", loc, nil, ""), 200, "")
	}
	s.create(t, "/docs/other/x", `{}`)
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		r := s.do(t, "GET", "/docs/items?limit=2&after="+after, nil, "")
		expect(t, r, 200, "")
		var page struct {
			Items []struct{ ID, ETag string } `json:"items"`
			Next  *string                     `json:"next"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			if !strings.HasPrefix(it.ETag, `"`) {
				t.Fatalf("item %+v", it)
			}
			got = append(got, it.ID)
		}
		if page.Next == nil {
			break
		}
		after = *page.Next
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("listed %v, want %v", got, ids)
	}
	r := s.do(t, "GET", "/docs/empty", nil, "")
	expect(t, r, 200, "")
	if string(r.body) != "{\"items\":[],\"next\":null}\n" && string(r.body) != `{"items":[],"next":null}` {
		t.Fatalf("empty list %q", r.body)
	}
}

func TestRestartKeepsEverything(t *testing.T) {
	s := startServer(t)
	etag := s.create(t, "/docs/c/d", `{"a":12345678901234567890123}`)
	r := s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", etag}, `[{"op":"add","path":"/b","value":[1,2]}]`)
	expect(t, r, 200, "")
	body, etag2 := string(r.body), r.header.Get("ETag")
	hist := string(s.do(t, "GET", "/docs/c/d/history", nil, "").body)
	s.stop()

	s2 := startServerAt(t, s.path, store.Options{})
	r = s2.do(t, "GET", "/docs/c/d", nil, "")
	if string(r.body) != body || r.header.Get("ETag") != etag2 {
		t.Fatalf("after restart: %s %s", r.body, r.header.Get("ETag"))
	}
	if got := string(s2.do(t, "GET", "/docs/c/d/history", nil, "").body); got != hist {
		t.Fatalf("history after restart:\n%s\nwant\n%s", got, hist)
	}
	// The old ETag still resolves in history after the restart.
	r = s2.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", etag, "Prefer", "handling=strict"}, `{"z":1}`)
	expect(t, r, 412, "precondition-failed")
}

func TestLimits(t *testing.T) {
	s := startServer(t, func(c *config) { c.doc.Limits.MaxOps = 10; c.doc.Limits.MaxDepth = 8 })
	etag := s.create(t, "/docs/c/d", `{"a":{}}`)
	t.Run("Ops", func(t *testing.T) {
		ops := strings.TrimSuffix(strings.Repeat(`{"op":"test","path":"/a","value":{}},`, 11), ",")
		expect(t, s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", etag}, "["+ops+"]"), 400, "invalid-patch")
	})
	t.Run("DeepMergePatch", func(t *testing.T) {
		deep := strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000)
		expect(t, s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", etag}, deep), 422, "invalid-document")
	})
	t.Run("DeepResult", func(t *testing.T) {
		// Each value is within the limit; the result is not.
		v := strings.Repeat(`{"a":`, 7) + "1" + strings.Repeat("}", 7)
		expect(t, s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", etag},
			`[{"op":"add","path":"/a/b","value":`+v+`}]`), 422, "invalid-document")
	})
	t.Run("CopyAmplification", func(t *testing.T) {
		small := startServer(t, func(c *config) { c.doc.Limits.MaxDoc = 4096 })
		e := small.create(t, "/docs/c/d", `{"a":{"x":"`+strings.Repeat("y", 200)+`"}}`)
		var ops []string
		for i := range 20 {
			ops = append(ops, fmt.Sprintf(`{"op":"copy","from":"/a","path":"/a/k%d"}`, i))
		}
		expect(t, small.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", e}, "["+strings.Join(ops, ",")+"]"), 422, "invalid-document")
	})
	if r := s.do(t, "GET", "/docs/c/d", nil, ""); r.header.Get("ETag") != etag {
		t.Fatalf("a refused write changed the document: %s", r.body)
	}
}
