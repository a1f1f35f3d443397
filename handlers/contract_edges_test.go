package handlers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/patchd/patchd/patch"
)

// Edges of the contract found by trying it from outside: each answer here
// was once a 500, a real write where none was asked for, or a problem that
// named the wrong thing.

// TestSchemaNumbersBeyondValidation: the validator compares numbers
// exactly, and past about 1e1000000 it cannot (it panicked: 500). Numbers
// of a collection with a schema, and of the schema, are bounded instead,
// with a 4xx that says so.
func TestSchemaNumbersBeyondValidation(t *testing.T) {
	s := startServer(t)
	h := hdr{"Content-Type", ctJSON}
	// Stored before the schema exists: any number is fine.
	old := s.create(t, "/docs/n/old", `{"m":1e4000000,"k":1}`)
	s.create(t, "/docs/n/z", `{"m":2e3000000}`)
	expect(t, s.do(t, "PUT", "/schemas/n", h, `{"properties":{"m":{"maximum":5}},"uniqueItems":true}`), http.StatusCreated, "")

	for _, body := range []string{`{"m":1e4000000}`, `{"m":-1E+2000}`, `{"m":1e-1001}`, `{"m":` + strings.Repeat("7", 1001) + `}`, `{"a":[` + strings.Repeat("1e2000000,", 21) + `1]}`} {
		r := s.do(t, "PUT", "/docs/n/x", h, body)
		expect(t, r, http.StatusUnprocessableEntity, "invalid-document")
		if d, _ := r.problem(t)["detail"].(string); !strings.Contains(d, "schema") {
			t.Errorf("%.40s: detail %q does not say why", body, d)
		}
	}
	expect(t, s.do(t, "GET", "/docs/n/x", nil, ""), http.StatusNotFound, "not-found")
	// Within the bounds, compared exactly.
	expect(t, s.do(t, "PUT", "/docs/n/x", h, `{"m":1e1000}`), http.StatusUnprocessableEntity, "schema-violation")
	expect(t, s.do(t, "PUT", "/docs/n/x", h, `{"m":-1e1000}`), http.StatusCreated, "")

	// An edit of the old document that leaves the number alone cannot
	// be validated either: 422, not 500; one that replaces it passes.
	r := s.do(t, "PATCH", "/docs/n/old", hdr{"Content-Type", ctMerge, "If-Match", old}, `{"k":2}`)
	expect(t, r, http.StatusUnprocessableEntity, "invalid-document")
	expect(t, s.do(t, "PATCH", "/docs/n/old", hdr{"Content-Type", ctMerge, "If-Match", old}, `{"m":4}`), http.StatusOK, "")
	expect(t, s.do(t, "PUT", "/docs/n/y", hdr{"Content-Type", ctJSON}, `{"m":3}`), http.StatusCreated, "")
	// The other document stored before the schema: listed as a violation.
	r = s.do(t, "GET", "/schemas/n/violations", nil, "")
	expect(t, r, http.StatusOK, "")
	var page struct {
		Items []struct {
			ID     string
			Errors []struct{ InstancePath, Keyword, Message string }
		}
	}
	if err := json.Unmarshal(r.body, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || page.Items[0].ID != "z" || page.Items[0].Errors[0].InstancePath != "/m" {
		t.Fatalf("violations %s", r.body)
	}

	// The schema's own numbers.
	for _, sch := range []string{`{"multipleOf":1e-10000000}`, `{"maximum":1e1001}`, `{"enum":[` + strings.Repeat("9", 1001) + `]}`} {
		r := s.do(t, "PUT", "/schemas/m", h, sch)
		expect(t, r, http.StatusUnprocessableEntity, "invalid-schema")
	}
}

// TestStaleWriteInvalidOnItsBase: a stale write whose edit breaks the
// schema on the very version it was made against is the client's own
// mistake, 422 schema-violation, not a conflict with someone else's edit.
func TestStaleWriteInvalidOnItsBase(t *testing.T) {
	s := startServer(t)
	expect(t, s.do(t, "PUT", "/schemas/s1", hdr{"Content-Type", ctJSON}, `{"properties":{"b":{"type":"integer"}},"required":["a"]}`), http.StatusCreated, "")
	e1 := s.create(t, "/docs/s1/d", `{"a":1,"b":1}`)
	expect(t, s.do(t, "PATCH", "/docs/s1/d", hdr{"Content-Type", ctMerge, "If-Match", e1}, `{"a":2}`), http.StatusOK, "")

	r := s.do(t, "PATCH", "/docs/s1/d", hdr{"Content-Type", ctMerge, "If-Match", e1}, `{"b":"x"}`)
	expect(t, r, http.StatusUnprocessableEntity, "schema-violation")
	if errs := schemaErrors(t, r); len(errs) != 1 || errs[0]["instancePath"] != "/b" || errs[0]["keyword"] != "type" {
		t.Fatalf("errors %s", r.body)
	}

	// Revert: version 2 set a; with a schema that now requires a to
	// be 2, undoing it breaks the schema on version 2 itself (whatever
	// came after): 422 as well.
	cur := s.do(t, "GET", "/docs/s1/d", nil, "").header.Get("ETag")
	expect(t, s.do(t, "PATCH", "/docs/s1/d", hdr{"Content-Type", ctMerge, "If-Match", cur}, `{"b":5}`), http.StatusOK, "")
	sch := s.do(t, "GET", "/schemas/s1", nil, "").header.Get("ETag")
	expect(t, s.do(t, "PUT", "/schemas/s1", hdr{"Content-Type", ctJSON, "If-Match", sch}, `{"properties":{"a":{"const":2}}}`), http.StatusOK, "")
	cur = s.do(t, "GET", "/docs/s1/d", nil, "").header.Get("ETag")
	r = s.do(t, "POST", "/docs/s1/d/revert", hdr{"Content-Type", ctJSON, "If-Match", cur}, `{"seq":2}`)
	expect(t, r, http.StatusUnprocessableEntity, "schema-violation")
	if errs := schemaErrors(t, r); len(errs) != 1 || errs[0]["instancePath"] != "/a" || errs[0]["keyword"] != "const" {
		t.Fatalf("errors %s", r.body)
	}
}

// TestSchemaErrorsNameTheirKeyword: not and false schemas fail with a
// keyword too.
func TestSchemaErrorsNameTheirKeyword(t *testing.T) {
	s := startServer(t)
	expect(t, s.do(t, "PUT", "/schemas/kw", hdr{"Content-Type", ctJSON}, `{"properties":{"n":{"not":{}},"f":false}}`), http.StatusCreated, "")
	r := s.do(t, "PUT", "/docs/kw/x", hdr{"Content-Type", ctJSON}, `{"n":1,"f":1}`)
	expect(t, r, http.StatusUnprocessableEntity, "schema-violation")
	got := map[string]any{}
	for _, e := range schemaErrors(t, r) {
		got[e["instancePath"].(string)] = e["keyword"]
	}
	if got["/n"] != "not" || got["/f"] != "false" {
		t.Fatalf("keywords %v in %s", got, r.body)
	}
}

// TestQueryThatDoesNotParse: Echo drops a query string it cannot parse;
// the server answers 400 instead of acting as if nothing were asked (a
// real write for ?dryRun=true;, an unfiltered page for ?where=%ZZ).
func TestQueryThatDoesNotParse(t *testing.T) {
	s := startServer(t)
	s.create(t, "/docs/q/a", `{"s":"a;b","n":1}`)
	s.create(t, "/docs/q/b", `{"s":"c","n":2}`)
	for _, q := range []string{
		"/docs/q?where=%ZZ",
		"/docs/q?where=%7B%22%2Fn%22:1%7D;x",
		"/docs/q?order=%ZZ",
		"/docs/q?limit=1&after=%ZZ",
		"/docs/q?limit=1&limit=2",
		"/docs/q?where=%7B%7D&where=%7B%22%2Fn%22:1%7D",
		"/docs/q/a/events?after=%ZZ",
		"/docs/q/a/history?limit=%ZZ",
	} {
		expect(t, s.do(t, "GET", q, nil, ""), http.StatusBadRequest, "invalid-request")
	}
	for _, q := range []string{"?dryRun=true;", "?dryRun", "?dryRun=", "?dryRun=false&dryRun=true"} {
		expect(t, s.do(t, "PUT", "/docs/q/dry"+q, hdr{"Content-Type", ctJSON}, `{"a":1}`), http.StatusBadRequest, "invalid-request")
		e := s.do(t, "GET", "/docs/q/a", nil, "").header.Get("ETag")
		expect(t, s.do(t, "DELETE", "/docs/q/a"+q, hdr{"If-Match", e}, ""), http.StatusBadRequest, "invalid-request")
	}
	expect(t, s.do(t, "GET", "/docs/q/dry", nil, ""), http.StatusNotFound, "not-found")
	expect(t, s.do(t, "GET", "/docs/q/a", nil, ""), http.StatusOK, "")
	// A where that nests deeper than its limit says so, not "not JSON".
	deep := strings.Repeat(`[`, 70) + strings.Repeat(`]`, 70)
	r := s.do(t, "GET", "/docs/q?where="+url.QueryEscape(`{"/n":{"eq":`+deep+`}}`), nil, "")
	expect(t, r, http.StatusBadRequest, "invalid-request")
	if d, _ := r.problem(t)["detail"].(string); !strings.Contains(d, "deeper") {
		t.Errorf("detail %q", d)
	}
}

// TestPresenceRefusesDryRun: presence has no dry run; asking for one is
// 400, never a real announcement or end.
func TestPresenceRefusesDryRun(t *testing.T) {
	s := startServer(t)
	s.create(t, "/docs/p/d", `{}`)
	const path = "/docs/p/d/presence/session-0123456789abcdef"
	expect(t, s.do(t, "PUT", path+"?dryRun=true", hdr{"Content-Type", ctJSON}, `{"name":"Ann"}`), http.StatusBadRequest, "invalid-request")
	r := s.do(t, "GET", "/docs/p/d/presence", nil, "")
	if !strings.Contains(string(r.body), `"sessions":[]`) {
		t.Fatalf("presence after a refused dry run: %s", r.body)
	}
	expect(t, s.do(t, "PUT", path+"?dryRun=false", hdr{"Content-Type", ctJSON}, `{"name":"Ann"}`), http.StatusOK, "")
	expect(t, s.do(t, "DELETE", path+"?dryRun=true", nil, ""), http.StatusBadRequest, "invalid-request")
	if r := s.do(t, "GET", "/docs/p/d/presence", nil, ""); !strings.Contains(string(r.body), "Ann") {
		t.Fatalf("presence after a refused dry run: %s", r.body)
	}
}

// TestBatchTooDeepNamesItsWrite: a write whose body nests too deeply is
// refused like any other refused write of a batch, with its index and the
// limit a plain request has.
func TestBatchTooDeepNamesItsWrite(t *testing.T) {
	s := startServer(t)
	deep := strings.Repeat(`{"a":`, 65) + "1" + strings.Repeat("}", 65)
	body := `{"writes":[{"method":"PUT","path":"/docs/b/ok","body":{"x":1}},{"method":"PUT","path":"/docs/b/deep","body":` + deep + `}]}`
	r := s.do(t, "POST", "/batch", hdr{"Content-Type", ctJSON}, body)
	expect(t, r, http.StatusUnprocessableEntity, "invalid-document")
	p := r.problem(t)
	if p["index"] != float64(1) || !strings.Contains(p["detail"].(string), "limit of 64") {
		t.Fatalf("problem %s", r.body)
	}
	expect(t, s.do(t, "GET", "/docs/b/ok", nil, ""), http.StatusNotFound, "not-found")
	// The same body on its own request: the same problem.
	r = s.do(t, "PUT", "/docs/b/deep", hdr{"Content-Type", ctJSON}, deep)
	expect(t, r, http.StatusUnprocessableEntity, "invalid-document")
}

// TestNotFoundSaysWhat: a 404 names what is missing in the API's words,
// not the store's.
func TestNotFoundSaysWhat(t *testing.T) {
	s := startServer(t)
	for path, want := range map[string]string{"/docs/p/nodoc": "no such document", "/schemas/p": "collection p has no schema"} {
		r := s.do(t, "GET", path, nil, "")
		expect(t, r, http.StatusNotFound, "not-found")
		if p := r.problem(t); p["detail"] != want || p["title"] != "Not found" {
			t.Errorf("%s: %s", path, r.body)
		}
	}
}

// TestBodyRefusals: a content coding is 415 (RFC 9110 section 15.5.16),
// and a POST /events body nested too deeply is a bad request, not a
// document.
func TestBodyRefusals(t *testing.T) {
	s := startServer(t)
	for _, path := range []string{"/docs/e/x", "/docs/e/x/presence/session-0123456789abcdef"} {
		expect(t, s.do(t, "PUT", path, hdr{"Content-Type", ctJSON, "Content-Encoding", "gzip"}, `{"a":1}`), http.StatusUnsupportedMediaType, "unsupported-media-type")
	}
	expect(t, s.do(t, "POST", "/docs/e", hdr{"Content-Type", ctJSON, "Content-Encoding", "br"}, `{"a":1}`), http.StatusUnsupportedMediaType, "unsupported-media-type")
	expect(t, s.do(t, "PUT", "/docs/e/x", hdr{"Content-Type", ctJSON, "Content-Encoding", "identity"}, `{"a":1}`), http.StatusCreated, "")
	// A coding in a second field line, or after identity in a list, is a
	// coding all the same (RFC 9110 section 5.3: the lines are one list).
	for _, h := range []hdr{
		{"Content-Type", ctJSON, "Content-Encoding", "identity", "Content-Encoding", "gzip"},
		{"Content-Type", ctJSON, "Content-Encoding", "identity, gzip"},
	} {
		expect(t, s.do(t, "PUT", "/docs/e/y", h, `{"a":1}`), http.StatusUnsupportedMediaType, "unsupported-media-type")
	}
	expect(t, s.do(t, "PUT", "/docs/e/y", hdr{"Content-Type", ctJSON, "Content-Encoding", "Identity", "Content-Encoding", "identity"}, `{"a":1}`), http.StatusCreated, "")
	deep := strings.Repeat("[", 1000) + strings.Repeat("]", 1000)
	expect(t, s.do(t, "POST", "/events", hdr{"Content-Type", ctJSON}, deep), http.StatusBadRequest, "invalid-request")
}

// TestContentTypeCharset: JSON is UTF-8 (RFC 8259 section 8.1). A body
// declared in another charset, or under two Content-Type fields, is 415
// and changes nothing; charset=utf-8, in any case, is the same as none.
func TestContentTypeCharset(t *testing.T) {
	s := startServer(t)
	e := s.create(t, "/docs/cs/a", `{"a":1}`)
	for _, tc := range []struct {
		method, path string
		h            hdr
		body         string
	}{
		{"PUT", "/docs/cs/a", hdr{"Content-Type", "application/json; charset=utf-16", "If-Match", e}, `{"a":2}`},
		{"PUT", "/docs/cs/a", hdr{"Content-Type", "application/json; charset=iso-8859-1", "If-Match", e}, `{"a":2}`},
		{"PATCH", "/docs/cs/a", hdr{"Content-Type", "application/merge-patch+json; charset=utf-16", "If-Match", e}, `{"a":2}`},
		{"PATCH", "/docs/cs/a", hdr{"Content-Type", "application/merge-patch+json", "Content-Type", "application/json-patch+json", "If-Match", e}, `{"a":2}`},
		{"PUT", "/docs/cs/a", hdr{"Content-Type", ctJSON, "Content-Type", ctJSON, "If-Match", e}, `{"a":2}`},
		{"POST", "/docs/cs", hdr{"Content-Type", "application/json; charset=utf-32"}, `{"a":2}`},
		{"POST", "/batch", hdr{"Content-Type", "application/json; charset=utf-16"}, `{"writes":[]}`},
		{"POST", "/batch", hdr{"Content-Type", ctJSON}, `{"writes":[{"method":"PUT","path":"/docs/cs/a","headers":{"Content-Type":"application/json; charset=utf-16","If-Match":` + fmt.Sprintf("%q", e) + `},"body":{"a":2}}]}`},
	} {
		r := s.do(t, tc.method, tc.path, tc.h, tc.body)
		expect(t, r, http.StatusUnsupportedMediaType, "unsupported-media-type")
		d, _ := r.problem(t)["detail"].(string)
		if !strings.Contains(d, "UTF-8") && !strings.Contains(d, "one Content-Type") {
			t.Errorf("%s %s %v: detail %q says neither the charset nor the two fields", tc.method, tc.path, tc.h, d)
		}
	}
	if r := s.do(t, "GET", "/docs/cs/a", nil, ""); r.header.Get("ETag") != e {
		t.Fatalf("a refused write changed the document: %s", r.body)
	}
	r := s.do(t, "PATCH", "/docs/cs/a", hdr{"Content-Type", "application/merge-patch+json; charset=UTF-8", "If-Match", e}, `{"a":2}`)
	expect(t, r, http.StatusOK, "")
	expect(t, s.do(t, "PATCH", "/docs/cs/a", hdr{"Content-Type", "application/merge-patch+json; charset=utf8", "If-Match", r.header.Get("ETag")}, `{"a":3}`), http.StatusOK, "")
}

// TestSchemaFanOutAcrossLevels: applicators that also descend (a $ref in
// anyOf beside properties that $ref the next level) apply C(n, k)
// subschemas to a value k levels down. Such a schema was accepted, and a
// 46-byte write then took seconds and gigabytes; it is refused when put.
func TestSchemaFanOutAcrossLevels(t *testing.T) {
	s := startServer(t)
	var b strings.Builder
	const n = 24
	b.WriteString(`{"$ref":"#/$defs/d0","$defs":{`)
	for i := range n {
		fmt.Fprintf(&b, `"d%d":{"properties":{"a":{"$ref":"#/$defs/d%d"}},"anyOf":[{"$ref":"#/$defs/d%d"},{"required":["zz"]}]},`, i, i+1, i+1)
	}
	fmt.Fprintf(&b, `"d%d":{"type":"string"}}}`, n)
	r := s.do(t, "PUT", "/schemas/exp", hdr{"Content-Type", ctJSON}, b.String())
	expect(t, r, http.StatusUnprocessableEntity, "invalid-schema")
	if d, _ := r.problem(t)["detail"].(string); !strings.Contains(d, "levels down") {
		t.Errorf("detail %q", d)
	}
	// Recursion that descends one level per step stays small: a tree.
	tree := `{"$ref":"#/$defs/node","$defs":{"node":{"type":"object","required":["name"],"properties":{"name":{"type":"string"},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}}}}}`
	expect(t, s.do(t, "PUT", "/schemas/tree", hdr{"Content-Type", ctJSON}, tree), http.StatusCreated, "")
	deep := strings.Repeat(`{"name":"n","children":[`, 20) + `{"name":"leaf"}` + strings.Repeat("]}", 20)
	expect(t, s.do(t, "PUT", "/docs/tree/t", hdr{"Content-Type", ctJSON}, deep), http.StatusCreated, "")
}

// TestPatternCostBounded: Go's regexp is linear in the input times the
// compiled program. A pattern whose program is large is refused when the
// schema is put, and a string too long for a pattern fails it at once,
// saying so, instead of holding the document for seconds.
func TestPatternCostBounded(t *testing.T) {
	s := startServer(t)
	h := hdr{"Content-Type", ctJSON}
	r := s.do(t, "PUT", "/schemas/rx", h, `{"properties":{"s":{"pattern":"[a-z]{0,1000}x"}}}`)
	expect(t, r, http.StatusUnprocessableEntity, "invalid-schema")
	if d, _ := r.problem(t)["detail"].(string); !strings.Contains(d, "instructions") {
		t.Errorf("detail %q", d)
	}
	expect(t, s.do(t, "PUT", "/schemas/rx", h, `{"properties":{"s":{"pattern":"^[a-z]{0,300}x$"}}}`), http.StatusCreated, "")
	long := strings.Repeat("ab", 400_000)
	r = s.do(t, "PUT", "/docs/rx/a", h, `{"s":"`+long+`"}`)
	expect(t, r, http.StatusUnprocessableEntity, "schema-violation")
	errs := schemaErrors(t, r)
	if len(errs) != 1 || errs[0]["keyword"] != "pattern" || !strings.Contains(errs[0]["message"].(string), "too long to check") || len(r.body) > 2000 {
		t.Fatalf("answer of %d bytes: %.300s", len(r.body), r.body)
	}
	// Short strings are checked as ever, and a long one that does not
	// match is reported without quoting all of it.
	expect(t, s.do(t, "PUT", "/docs/rx/b", h, `{"s":"abcx"}`), http.StatusCreated, "")
	r = s.do(t, "PUT", "/docs/rx/c", h, `{"s":"`+strings.Repeat("A", 5000)+`"}`)
	expect(t, r, http.StatusUnprocessableEntity, "schema-violation")
	if len(r.body) > 2000 {
		t.Fatalf("answer of %d bytes", len(r.body))
	}
}

// TestBatchOutputBounded: a batch holds every version it makes until it
// commits, and answers with them all: 100 small patches of a large
// document made 89 MB of answer and 1.8 GB of memory. The documents a
// batch produces are bounded instead (413, naming the write).
func TestBatchOutputBounded(t *testing.T) {
	s := startServer(t)
	big := `{"pad":"` + strings.Repeat("x", 900_000) + `"}`
	e := s.create(t, "/docs/bb/big", big)
	var b strings.Builder
	b.WriteString(`{"writes":[`)
	for i := range 40 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"method":"PATCH","path":"/docs/bb/big","headers":{"Content-Type":"application/merge-patch+json","If-Match":%q},"body":{"f%d":%d}}`, e, i, i)
	}
	b.WriteString(`]}`)
	for _, q := range []string{"?dryRun=true", ""} {
		r := s.do(t, "POST", "/batch"+q, hdr{"Content-Type", ctJSON}, b.String())
		if r.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, an answer of %d bytes", r.status, len(r.body)) // not the body: 36 MB
		}
		expect(t, r, http.StatusRequestEntityTooLarge, "too-large")
		if i, _ := r.problem(t)["index"].(float64); i < 30 || i > 37 {
			t.Fatalf("index %v: %s", i, r.body)
		}
	}
	if g := s.do(t, "GET", "/docs/bb/big", nil, ""); g.header.Get("ETag") != e {
		t.Fatal("a refused batch changed the document")
	}
}

// TestOrderByLargeMember: sorting by a member that holds a large object
// compared it by re-encoding both sides at every comparison (seconds for
// 40 documents) and put all of it in next, which then did not fit in a
// request line. Strings, arrays and objects sort by their first
// query.MaxKeyBytes bytes; next stays small and pages cover every
// document once.
func TestOrderByLargeMember(t *testing.T) {
	s := startServer(t)
	const n = 7
	for i := range n {
		// Equal in their first 2 KiB but for one: ties beyond the first
		// 1 KiB go by id.
		lead := "same"
		if i == 3 {
			lead = "aaaa"
		}
		big := fmt.Sprintf(`{"a":{"k":%q,"pad":%q}}`, lead, strings.Repeat("x", 200_000)+fmt.Sprint(n-i))
		s.create(t, fmt.Sprintf("/docs/ol/d%d", i), big)
	}
	var ids []string
	next := ""
	for page := 0; page < n; page++ {
		q := "/docs/ol?order=/a&limit=2"
		if next != "" {
			q += "&after=" + next
		}
		r := s.do(t, "GET", q, nil, "")
		expect(t, r, http.StatusOK, "")
		var p struct {
			Items []struct{ ID string }
			Next  *string
		}
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatal(err)
		}
		for _, it := range p.Items {
			ids = append(ids, it.ID)
		}
		if p.Next == nil {
			break
		}
		if len(*p.Next) > 4096 {
			t.Fatalf("next of %d bytes", len(*p.Next))
		}
		next = *p.Next
	}
	if got := strings.Join(ids, ","); got != "d3,d0,d1,d2,d4,d5,d6" {
		t.Fatalf("order %s", got)
	}
}

// TestFilterScanBoundedByBytes: a filtered listing examines at most
// MaxFilterScanBytes of documents per request, however few they are; the
// page ends early with next, and the pages go on to the end.
func TestFilterScanBoundedByBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 70 MB")
	}
	s := startServer(t)
	pad := strings.Repeat("x", 1000_000)
	for i := range 70 {
		s.create(t, fmt.Sprintf("/docs/fb/d%02d", i), `{"n":`+fmt.Sprint(i)+`,"pad":"`+pad+`"}`)
	}
	where := url.QueryEscape(`{"/n":69}`)
	pages, found, next := 0, 0, ""
	for pages < 10 {
		q := "/docs/fb?where=" + where
		if next != "" {
			q += "&after=" + next
		}
		r := s.do(t, "GET", q, nil, "")
		expect(t, r, http.StatusOK, "")
		pages++
		var p struct {
			Items []struct{ ID string }
			Next  *string
		}
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatal(err)
		}
		found += len(p.Items)
		if p.Next == nil {
			break
		}
		next = *p.Next
	}
	if pages != 2 || found != 1 {
		t.Fatalf("%d pages, %d found: want the scan cut once, d69 on the second page", pages, found)
	}
}

// TestSchemaDynamicRefFanOut: a $dynamicRef resolves, while validating, to
// any $dynamicAnchor of its name in scope; counted by its static target
// only, two of them per level passed the check and doubled the work at
// every level of the document.
func TestSchemaDynamicRefFanOut(t *testing.T) {
	s := startServer(t)
	h := hdr{"Content-Type", ctJSON}
	dyn := `{"$dynamicAnchor":"n","properties":{"a":{"$ref":"i.json"}},"$defs":{"i":{"$id":"i.json","allOf":[{"$dynamicRef":"#n"},{"$dynamicRef":"#n"}],"$defs":{"leaf":{"$dynamicAnchor":"n"}}}}}`
	expect(t, s.do(t, "PUT", "/schemas/dy", h, dyn), http.StatusUnprocessableEntity, "invalid-schema")
	// One dynamic reference per level is a plain recursion.
	one := `{"$dynamicAnchor":"n","properties":{"a":{"$dynamicRef":"#n"},"s":{"type":"string"}}}`
	expect(t, s.do(t, "PUT", "/schemas/dy", h, one), http.StatusCreated, "")
	deep := strings.Repeat(`{"a":`, 30) + `{"s":"x"}` + strings.Repeat("}", 30)
	expect(t, s.do(t, "PUT", "/docs/dy/x", h, deep), http.StatusCreated, "")
	// Large enums are refused: each value is compared with every one.
	var b strings.Builder
	b.WriteString(`{"properties":{"a":{"items":{"enum":[0`)
	for i := 1; i <= 1000; i++ {
		fmt.Fprintf(&b, ",%d", i)
	}
	b.WriteString(`]}}}}`)
	expect(t, s.do(t, "PUT", "/schemas/en", h, b.String()), http.StatusUnprocessableEntity, "invalid-schema")
}

// TestValidationWorkBounded: the bound on subschemas per value does not
// bound a document of many values; a document whose validation would
// apply over two million is refused before validating (it took 2 s for
// 600 array elements at 8,189 subschemas each).
func TestValidationWorkBounded(t *testing.T) {
	s := startServer(t)
	h := hdr{"Content-Type", ctJSON}
	var b strings.Builder
	b.WriteString(`{"properties":{"a":{"items":{"$ref":"#/$defs/d0"}}},"$defs":{`)
	for i := range 11 {
		fmt.Fprintf(&b, `"d%d":{"allOf":[{"$ref":"#/$defs/d%d"},{"$ref":"#/$defs/d%d"}]},`, i, i+1, i+1)
	}
	b.WriteString(`"d11":{"type":"integer"}}}`)
	expect(t, s.do(t, "PUT", "/schemas/wk", h, b.String()), http.StatusCreated, "")
	r := s.do(t, "PUT", "/docs/wk/big", h, `{"a":[`+strings.Repeat("0,", 599)+`0]}`)
	expect(t, r, http.StatusUnprocessableEntity, "invalid-document")
	if d, _ := r.problem(t)["detail"].(string); !strings.Contains(d, "subschemas") {
		t.Errorf("detail %q", d)
	}
	// A few elements are validated as ever.
	expect(t, s.do(t, "PUT", "/docs/wk/small", h, `{"a":[1,2,3]}`), http.StatusCreated, "")
	expect(t, s.do(t, "PUT", "/docs/wk/bad", h, `{"a":[1.5]}`), http.StatusUnprocessableEntity, "schema-violation")
}

// TestEnumBoundIsTheKeyword: the enum bound applies to the enum keyword of
// a subschema, not to any member of that name (a default value may hold
// one).
func TestEnumBoundIsTheKeyword(t *testing.T) {
	s := startServer(t)
	long := "[0" + strings.Repeat(",1", 1000) + "]"
	expect(t, s.do(t, "PUT", "/schemas/ek", hdr{"Content-Type", ctJSON}, `{"properties":{"a":{"default":{"enum":`+long+`}}}}`), http.StatusCreated, "")
	r := s.do(t, "PUT", "/schemas/ek2", hdr{"Content-Type", ctJSON}, `{"$defs":{"x":{"enum":`+long+`}},"properties":{"a":{"$ref":"#/$defs/x"}}}`)
	expect(t, r, http.StatusUnprocessableEntity, "invalid-schema")
	if d, _ := r.problem(t)["detail"].(string); !strings.Contains(d, "1001 values") {
		t.Errorf("detail %q", d)
	}
}

// TestLongNumbers: numbers are kept and compared exactly, at a cost that
// grows with their length (a test op against a number of a million digits
// took 1.2 ms, 24 s of CPU for a batch of such patches), so a number
// literal written by a client is at most patch.DefaultMaxNumber bytes:
// longer is 422 invalid-document, whatever the write, and nothing is
// written.
func TestLongNumbers(t *testing.T) {
	s := startServer(t)
	h := hdr{"Content-Type", ctJSON}
	fits := "1" + strings.Repeat("0", patch.DefaultMaxNumber-1)
	long := fits + "0"
	etag := s.create(t, "/docs/n/ok", `{"n":`+fits+`,"m":1}`)
	for _, w := range []struct{ method, path, ct, body string }{
		{"PUT", "/docs/n/x", ctJSON, `{"n":` + long + `}`},
		{"POST", "/docs/n", ctJSON, `{"n":` + long + `}`},
		{"PATCH", "/docs/n/ok", ctPatch, `[{"op":"replace","path":"/m","value":` + long + `}]`},
		{"PATCH", "/docs/n/ok", ctPatch, `[{"op":"test","path":"/n","value":-` + long + `}]`},
		{"PATCH", "/docs/n/ok", ctMerge, `{"m":[` + long + `]}`},
	} {
		r := s.do(t, w.method, w.path, hdr{"Content-Type", w.ct, "If-Match", etag}, w.body)
		if w.method != "PATCH" {
			r = s.do(t, w.method, w.path, hdr{"Content-Type", w.ct}, w.body)
		}
		expect(t, r, http.StatusUnprocessableEntity, "invalid-document")
		if p := r.problem(t); !strings.Contains(p["detail"].(string), fmt.Sprint(patch.DefaultMaxNumber)) {
			t.Errorf("%s %s: detail %q does not name the limit", w.method, w.path, p["detail"])
		}
	}
	r := s.do(t, "POST", "/batch", h, `{"writes":[{"method":"PUT","path":"/docs/n/y","body":{}},{"method":"PUT","path":"/docs/n/z","body":{"n":`+long+`}}]}`)
	expect(t, r, http.StatusUnprocessableEntity, "invalid-document")
	if p := r.problem(t); p["index"] != float64(1) {
		t.Fatalf("batch: %s, want index 1", r.body)
	}
	expect(t, s.do(t, "GET", "/docs/n/y", nil, ""), http.StatusNotFound, "not-found")
	expect(t, s.do(t, "GET", "/docs/n/x", nil, ""), http.StatusNotFound, "not-found")
	// Filters compare with every document they examine: their numbers are
	// bounded alike (400, naming the limit).
	r = s.do(t, "GET", "/docs/n?where="+url.QueryEscape(`{"/n":`+long+`}`), nil, "")
	expect(t, r, http.StatusBadRequest, "invalid-request")
	expect(t, s.do(t, "GET", "/docs/n?where="+url.QueryEscape(`{"/n":`+fits+`}`), nil, ""), http.StatusOK, "")
	r = s.do(t, "POST", "/events", h, `{"collections":[{"c":"n","where":{"/n":{"in":[`+long+`]}}}]}`)
	expect(t, r, http.StatusBadRequest, "invalid-request")
	if p := r.problem(t); !strings.Contains(p["detail"].(string), fmt.Sprint(patch.DefaultMaxNumber)) {
		t.Errorf("POST /events: detail %q does not name the limit", p["detail"])
	}
	if got := s.do(t, "GET", "/docs/n/ok", nil, ""); got.header.Get("ETag") != etag {
		t.Fatalf("the document changed: %s", got.body)
	}
}

// TestSchemaNotFoundSaysSo: a collection without a schema is named as
// such, by DELETE as by GET (DELETE said "no such document").
func TestSchemaNotFoundSaysSo(t *testing.T) {
	s := startServer(t)
	for _, r := range []response{
		s.do(t, "GET", "/schemas/nosuch", nil, ""),
		s.do(t, "DELETE", "/schemas/nosuch", hdr{"If-Match", "*"}, ""),
	} {
		expect(t, r, http.StatusNotFound, "not-found")
		if p := r.problem(t); p["detail"] != "collection nosuch has no schema" {
			t.Errorf("detail %q", p["detail"])
		}
	}
}

// TestSchemaNumbersExactInMessages: the messages of the numeric keywords
// write their numbers exactly (the validator's own went through float64:
// "got 9.007199254740992×10¹⁵, want 9.007199254740992×10¹⁵").
func TestSchemaNumbersExactInMessages(t *testing.T) {
	s := startServer(t)
	expect(t, s.do(t, "PUT", "/schemas/nx", hdr{"Content-Type", ctJSON},
		`{"properties":{"a":{"maximum":9007199254740992},"b":{"exclusiveMinimum":0.1},"c":{"multipleOf":0.25},"d":{"minimum":25}}}`), http.StatusCreated, "")
	r := s.do(t, "PUT", "/docs/nx/x", hdr{"Content-Type", ctJSON}, `{"a":9007199254740993,"b":0.1,"c":1.3,"d":1e1}`)
	expect(t, r, http.StatusUnprocessableEntity, "schema-violation")
	got := map[string]any{}
	for _, e := range schemaErrors(t, r) {
		got[e["instancePath"].(string)] = e["message"]
	}
	want := map[string]any{
		"/a": "maximum: got 9007199254740993, want 9007199254740992",
		"/b": "exclusiveMinimum: got 0.1, want 0.1",
		"/c": "multipleOf: got 1.3, want 0.25",
		"/d": "minimum: got 10, want 25",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
}

// TestIndexBeyondAnyArray: an array index of the RFC's syntax is out of
// range however many digits it has (it was refused as "not an array
// index", 400): 422 patch-failed, as for any index past the end. On an
// object the same token is a member name.
func TestIndexBeyondAnyArray(t *testing.T) {
	s := startServer(t)
	etag := s.create(t, "/docs/ix/d", `{"arr":[0,1,2],"o":{}}`)
	h := hdr{"Content-Type", ctPatch, "If-Match", etag}
	for _, tok := range []string{"9223372036854775807", "99999999999999999999", "1000000000000000000"} {
		for _, p := range []string{
			`[{"op":"add","path":"/arr/` + tok + `","value":1}]`,
			`[{"op":"remove","path":"/arr/` + tok + `"}]`,
			`[{"op":"replace","path":"/arr/` + tok + `","value":1}]`,
			`[{"op":"test","path":"/arr/` + tok + `","value":1}]`,
		} {
			r := s.do(t, "PATCH", "/docs/ix/d", h, p)
			expect(t, r, http.StatusUnprocessableEntity, "patch-failed")
			if d, _ := r.problem(t)["detail"].(string); !strings.Contains(d, "out of range") {
				t.Errorf("%s: detail %q", p, d)
			}
		}
	}
	expect(t, s.do(t, "PATCH", "/docs/ix/d", h, `[{"op":"add","path":"/o/99999999999999999999","value":1}]`), http.StatusOK, "")
}

// TestPercentEncodedNames: a percent-encoded unreserved character in the
// path is the character (RFC 3986 section 6.2.2.2): /docs/ct/%41bc is
// /docs/ct/Abc (it was 400, "id %41bc must match").
func TestPercentEncodedNames(t *testing.T) {
	s := startServer(t)
	etag := s.create(t, "/docs/ct/Abc", `{"a":1}`)
	for _, p := range []string{"/docs/ct/%41bc", "/docs/%63t/Abc", "/docs/ct/Ab%63", "/docs/%63%74/%41%62%63"} {
		r := s.do(t, "GET", p, nil, "")
		expect(t, r, http.StatusOK, "")
		if r.header.Get("ETag") != etag {
			t.Errorf("GET %s: ETag %q, want %q", p, r.header.Get("ETag"), etag)
		}
	}
	expect(t, s.do(t, "PUT", "/docs/ct/a%7E", hdr{"Content-Type", ctJSON}, `{}`), http.StatusCreated, "")
	expect(t, s.do(t, "GET", "/docs/ct/a~", nil, ""), http.StatusOK, "")
	expect(t, s.do(t, "GET", "/docs/ct/Abc/histor%79", nil, ""), http.StatusOK, "")
	// A batch's paths read the same.
	r := s.do(t, "POST", "/batch", hdr{"Content-Type", ctJSON}, `{"writes":[{"method":"PATCH","path":"/%64ocs/%63t/%41bc","headers":{"Content-Type":"application/merge-patch+json","If-Match":`+strconv.Quote(etag)+`},"body":{"b":2}}]}`)
	expect(t, r, http.StatusOK, "")
	expect(t, s.do(t, "POST", "/batch", hdr{"Content-Type", ctJSON}, `{"writes":[{"method":"PUT","path":"/docs/ct/a%20b","body":{}}]}`), http.StatusBadRequest, "invalid-request")
	// Reserved and other characters stay what they are: not a name.
	for _, p := range []string{"/docs/ct/a%2Fb", "/docs/ct/a%20b", "/docs/c%2ft/Abc"} {
		expect(t, s.do(t, "GET", p, nil, ""), http.StatusBadRequest, "invalid-request")
	}
}

// TestOptionsChecksNames: OPTIONS of a path whose collection or id is not
// a name is 400 like every other method (it answered 204 with Allow).
func TestOptionsChecksNames(t *testing.T) {
	s := startServer(t)
	for _, p := range []string{"/docs/ct/a%20b", "/docs/bad%20c", "/docs/bad%20c/x", "/docs/ct/a%20b/history", "/schemas/bad%20c"} {
		expect(t, s.do(t, "OPTIONS", p, nil, ""), http.StatusBadRequest, "invalid-request")
	}
	expect(t, s.do(t, "OPTIONS", "/docs/ct/ok", nil, ""), http.StatusNoContent, "")
}

// TestEmptyNames: an empty collection or id is not a name: 400 (it was
// 404 "no such resource").
func TestEmptyNames(t *testing.T) {
	s := startServer(t)
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		for _, p := range []string{"/docs/ct/", "/docs//", "/docs//x", "/docs/ct/x/presence/"} {
			r := s.do(t, m, p, hdr{"Content-Type", ctJSON}, `{}`)
			expect(t, r, http.StatusBadRequest, "invalid-request")
		}
	}
}

// TestConflictNamesAppendAsCommitted: a conflict's concurrentPath is the
// concurrent op's path as committed, "/-" for an append, as history shows
// it (it named the index the element took).
func TestConflictNamesAppendAsCommitted(t *testing.T) {
	s := startServer(t)
	base := s.create(t, "/docs/ap/d", `{"tags":["a"],"t":[]}`)
	expect(t, s.do(t, "PATCH", "/docs/ap/d", hdr{"Content-Type", ctPatch, "If-Match", base}, `[{"op":"add","path":"/tags/-","value":"b"},{"op":"add","path":"/t/-","value":1}]`), http.StatusOK, "")
	for _, tc := range []struct{ ct, body, path string }{
		{ctMerge, `{"tags":["a","c"]}`, "/tags/-"},
		{ctPatch, `[{"op":"replace","path":"/t","value":[2]}]`, "/t/-"},
	} {
		r := s.do(t, "PATCH", "/docs/ap/d", hdr{"Content-Type", tc.ct, "If-Match", base}, tc.body)
		expect(t, r, http.StatusPreconditionFailed, "rebase-conflict")
		cs, _ := r.problem(t)["conflicts"].([]any)
		if len(cs) != 1 || cs[0].(map[string]any)["concurrentPath"] != tc.path {
			t.Errorf("%s: conflicts %v, want one with concurrentPath %s", tc.body, cs, tc.path)
		}
	}
}

// TestConflictsOfTwoAppends: two appends in one version are two pairs,
// though they read the same (/tags/-): REBASE.md records all conflicts.
func TestConflictsOfTwoAppends(t *testing.T) {
	s := startServer(t)
	base := s.create(t, "/docs/ap2/d", `{"tags":["a"]}`)
	expect(t, s.do(t, "PATCH", "/docs/ap2/d", hdr{"Content-Type", ctPatch, "If-Match", base}, `[{"op":"add","path":"/tags/-","value":"b"},{"op":"add","path":"/tags/-","value":"c"}]`), http.StatusOK, "")
	r := s.do(t, "PATCH", "/docs/ap2/d", hdr{"Content-Type", ctPatch, "If-Match", base}, `[{"op":"replace","path":"/tags","value":[]}]`)
	expect(t, r, http.StatusPreconditionFailed, "rebase-conflict")
	if cs, _ := r.problem(t)["conflicts"].([]any); len(cs) != 2 {
		t.Fatalf("conflicts %v, want two pairs", cs)
	}
}

// TestHeadSendsContentLength: HEAD answers have the headers of GET's,
// Content-Length included (listings and history lacked it).
func TestHeadSendsContentLength(t *testing.T) {
	s := startServer(t)
	etag := s.create(t, "/docs/hl/a", `{"n":1}`)
	expect(t, s.do(t, "PATCH", "/docs/hl/a", hdr{"Content-Type", ctMerge, "If-Match", etag}, `{"n":2}`), http.StatusOK, "")
	s.create(t, "/docs/hl/b", `{"n":3}`)
	// Answers longer than net/http's buffer, which it sends without a
	// length unless the handler gives one.
	pad := strings.Repeat("x", 100)
	for i := range 40 {
		s.create(t, fmt.Sprintf("/docs/hl/p%02d", i), `{"n":"`+pad+`"}`)
	}
	for i := range 40 {
		expect(t, s.do(t, "PATCH", "/docs/hl/a", hdr{"Content-Type", ctMerge, "If-Match", "*"}, fmt.Sprintf(`{"s%d":"%s"}`, i, pad)), http.StatusOK, "")
	}
	expect(t, s.do(t, "PUT", "/schemas/hl", hdr{"Content-Type", ctJSON}, `{"properties":{"n":{"type":"integer"}}}`), http.StatusCreated, "")
	for i := range 30 {
		expect(t, s.do(t, "PUT", fmt.Sprintf("/docs/hl/a/presence/session-%04d-abcdef", i), hdr{"Content-Type", ctJSON}, `{"name":"`+pad+`"}`), http.StatusOK, "")
	}
	for _, p := range []string{"/docs/hl?limit=1", "/docs/hl?include=body", "/docs/hl/a/history", "/docs/hl/a", "/docs/hl/a/history?limit=1",
		"/schemas/hl", "/schemas/hl/violations", "/docs/hl/a/presence", "/openapi.json", "/healthz", "/readyz", "/", "/ui/client/patchd.js",
		// Error answers.
		"/docs/hl/zz/history", "/docs/hl/a/history?after=abc", "/docs/c/%2F", "/schemas/zz", "/nothing"} {
		g := s.do(t, "GET", p, nil, "")
		hd := s.do(t, "HEAD", p, nil, "")
		if hd.status != g.status {
			t.Errorf("HEAD %s: %d, GET %d", p, hd.status, g.status)
		}
		want := strconv.Itoa(len(g.body))
		if got := g.header.Get("Content-Length"); got != want {
			t.Errorf("GET %s: Content-Length %q, want %s (%d bytes)", p, got, want, len(g.body))
		}
		if got := hd.header.Get("Content-Length"); got != want {
			t.Errorf("HEAD %s: Content-Length %q, want %s (GET's)", p, got, want)
		}
	}
}

// TestSchemaErrorsDeterministic: the same write gets the same errors in
// the same order, and, past 50, the same 50 (the validator walks
// properties in map order: three orders came back for one request).
func TestSchemaErrorsDeterministic(t *testing.T) {
	s := startServer(t)
	var props, doc []string
	for i := range 60 {
		props = append(props, fmt.Sprintf(`"p%02d":{"type":"integer"}`, i))
		doc = append(doc, fmt.Sprintf(`"p%02d":"x"`, i))
	}
	expect(t, s.do(t, "PUT", "/schemas/de", hdr{"Content-Type", ctJSON},
		`{"properties":{"a":{"items":{"type":"integer"}},"b":{"enum":[1,2]},"c":{"const":"x"},"d":{"pattern":"^z"},"m":{"multipleOf":3},`+strings.Join(props, ",")+`}}`), http.StatusCreated, "")
	for _, body := range []string{`{"b":3,"c":"y","d":"q","m":1}`, `{` + strings.Join(doc, ",") + `}`, `{"a":[` + strings.Repeat(`"x",`, 11) + `"x"]}`} {
		var first string
		for range 12 {
			r := s.do(t, "PUT", "/docs/de/x", hdr{"Content-Type", ctJSON}, body)
			expect(t, r, http.StatusUnprocessableEntity, "schema-violation")
			var paths []string
			for _, e := range schemaErrors(t, r) {
				paths = append(paths, e["instancePath"].(string))
			}
			got := strings.Join(paths, " ")
			if first == "" {
				first = got
				if !slices.IsSortedFunc(paths, comparePaths) {
					t.Errorf("errors not in path order: %s", got)
				}
			} else if got != first {
				t.Fatalf("the same write got errors\n%s\nthen\n%s", first, got)
			}
		}
	}
	// In path order across the schema's branches too (/z, from an allOf,
	// came before /a).
	expect(t, s.do(t, "PUT", "/schemas/de2", hdr{"Content-Type", ctJSON},
		`{"allOf":[{"properties":{"z":{"type":"integer"}}}],"properties":{"a":{"type":"integer"}}}`), http.StatusCreated, "")
	r := s.do(t, "PUT", "/docs/de2/x", hdr{"Content-Type", ctJSON}, `{"a":"x","z":"x"}`)
	expect(t, r, http.StatusUnprocessableEntity, "schema-violation")
	var paths []string
	for _, e := range schemaErrors(t, r) {
		paths = append(paths, e["instancePath"].(string))
	}
	if strings.Join(paths, " ") != "/a /z" {
		t.Errorf("errors at %v, want /a then /z", paths)
	}
}

// comparePaths orders JSON Pointers token by token, array indices by
// number.
func comparePaths(a, b string) int {
	return slices.CompareFunc(strings.Split(a, "/"), strings.Split(b, "/"), func(x, y string) int {
		if nx, err := strconv.Atoi(x); err == nil {
			if ny, err := strconv.Atoi(y); err == nil {
				return nx - ny
			}
		}
		return strings.Compare(x, y)
	})
}

// TestBadNamesWithScopedToken: a name that is not one is 400 for a token
// scoped to some collections too (it was 403, "may not read collection
// ..", while an unscoped token got 400).
func TestBadNamesWithScopedToken(t *testing.T) {
	s := startServer(t, withTokens(t))
	for _, tc := range []struct{ method, path string }{
		{"GET", "/docs/%2E%2E/x"}, {"GET", "/docs/a%2Fb/x"}, {"OPTIONS", "/docs/%2E%2E"}, {"PUT", "/docs/a%20b/x"},
	} {
		expect(t, s.do(t, tc.method, tc.path, append(bearer(tokWriteA), "Content-Type", ctJSON), `{}`), http.StatusBadRequest, "invalid-request")
	}
	// A valid name of another collection stays forbidden, and no token
	// is still 401.
	expect(t, s.do(t, "GET", "/docs/other/x", bearer(tokWriteA), ""), http.StatusForbidden, "forbidden")
	expect(t, s.do(t, "GET", "/docs/%2E%2E/x", nil, ""), http.StatusUnauthorized, "unauthorized")
}

// TestPreconditionsOffTheDocument: If-Match and If-None-Match are read on
// every route. Malformed, they are 400 (they were ignored on POST,
// listings, history and streams). On POST, which creates a document under
// a new id, If-Match with ETags is false (412, and nothing is made),
// If-Match: * and If-None-Match hold. A 412 for a document that does not
// exist says currentEtag null (it said nothing).
func TestPreconditionsOffTheDocument(t *testing.T) {
	s := startServer(t)
	s.create(t, "/docs/pc/a", `{"n":1}`)
	ct := hdr{"Content-Type", ctJSON}
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/docs/pc", `{"a":1}`},
		{"GET", "/docs/pc", ""},
		{"GET", "/docs/pc/a/history", ""},
		{"GET", "/docs/pc/a/events", ""},
		{"POST", "/events", `{"docs":[{"c":"pc","id":"a"}]}`},
	} {
		for _, h := range []string{"If-Match", "If-None-Match"} {
			r := s.do(t, tc.method, tc.path, append(hdr{h, "bogus"}, ct...), tc.body)
			expect(t, r, http.StatusBadRequest, "invalid-request")
		}
	}
	r := s.do(t, "POST", "/docs/pc", append(hdr{"If-Match", `"0123456789abcdef0123456789abcdef"`}, ct...), `{"a":1}`)
	expect(t, r, http.StatusPreconditionFailed, "precondition-failed")
	if p := r.problem(t); p["currentEtag"] != nil || !strings.Contains(string(r.body), `"currentEtag":null`) {
		t.Errorf("412 of a POST: %s, want currentEtag null", r.body)
	}
	// A body that does not parse is 400 first, as on every write.
	expect(t, s.do(t, "POST", "/docs/pc", append(hdr{"If-Match", `"0123456789abcdef0123456789abcdef"`}, ct...), `{x`), http.StatusBadRequest, "invalid-json")
	// The same in a batch: each write keeps the preconditions of its own
	// request.
	r = s.do(t, "POST", "/batch", ct, `{"writes":[{"method":"POST","path":"/docs/pc","headers":{"If-Match":"\"0123456789abcdef0123456789abcdef\"","Content-Type":"application/json"},"body":{"y":1}}]}`)
	expect(t, r, http.StatusPreconditionFailed, "precondition-failed")
	r = s.do(t, "POST", "/batch", ct, `{"writes":[{"method":"POST","path":"/docs/pc","headers":{"If-Match":"bogus","Content-Type":"application/json"},"body":{"y":1}}]}`)
	expect(t, r, http.StatusBadRequest, "invalid-request")
	expect(t, s.do(t, "POST", "/docs/pc", append(hdr{"If-Match", "*"}, ct...), `{"a":2}`), http.StatusCreated, "")
	expect(t, s.do(t, "POST", "/docs/pc", append(hdr{"If-None-Match", "*"}, ct...), `{"a":3}`), http.StatusCreated, "")
	var page struct{ Items []any }
	if err := json.Unmarshal(s.do(t, "GET", "/docs/pc", nil, "").body, &page); err != nil || len(page.Items) != 3 {
		t.Errorf("%d documents (%v), want 3: the refused POST made none", len(page.Items), err)
	}
	r = s.do(t, "PUT", "/docs/pc/missing", append(hdr{"If-Match", "*"}, ct...), `{}`)
	expect(t, r, http.StatusPreconditionFailed, "precondition-failed")
	if !strings.Contains(string(r.body), `"currentEtag":null`) {
		t.Errorf("412 of a missing document: %s, want currentEtag null", r.body)
	}
}

// TestPreferQuoted: RFC 7240 allows a preference's value as a
// quoted-string; return="minimal" was ignored.
func TestPreferQuoted(t *testing.T) {
	s := startServer(t)
	e := s.create(t, "/docs/pq/a", `{"n":1}`)
	r := s.do(t, "PATCH", "/docs/pq/a", hdr{"Content-Type", ctMerge, "If-Match", e, "Prefer", `return="minimal"`}, `{"n":2}`)
	if r.status != http.StatusNoContent || r.header.Get("Preference-Applied") != "return=minimal" {
		t.Fatalf("%d, Preference-Applied %q; want 204 and return=minimal", r.status, r.header.Get("Preference-Applied"))
	}
}

// TestFormatRegexCostBounded: a string under format "regex" is compiled
// to be checked; compiling counts against the validation's meter, so that
// a body of many costly ones (a{999}: a thousand instructions each) is
// refused once the meter is spent (it took 17 s of CPU for 950 KB, 2.4 s
// for 110 KB, each string compiled twice, nothing counted), while a few
// are checked as ever.
func TestFormatRegexCostBounded(t *testing.T) {
	s := startServer(t)
	h := hdr{"Content-Type", ctJSON}
	expect(t, s.do(t, "PUT", "/schemas/rx", h, `{"properties":{"a":{"type":"array","items":{"type":"string","format":"regex"}}}}`), http.StatusCreated, "")
	expect(t, s.do(t, "PUT", "/docs/rx/ok", h, `{"a":["^[a-z]+$","a{3}b"]}`), http.StatusCreated, "")
	r := s.do(t, "PUT", "/docs/rx/bad", h, `{"a":["("]}`)
	expect(t, r, http.StatusUnprocessableEntity, "schema-violation")
	costly := `"a{900}b"` + strings.Repeat(`,"a{900}b"`, 15_000)
	r = s.do(t, "PUT", "/docs/rx/costly?dryRun=true", h, `{"a":[`+costly+`]}`)
	expect(t, r, http.StatusUnprocessableEntity, "invalid-document")
	if d, _ := r.problem(t)["detail"].(string); !strings.Contains(d, `format "regex"`) {
		t.Errorf("detail %q: want it to say the regular expressions' work is over the limit", d)
	}
}

// TestLongIfMatchNotEchoed: a 412 names the client's base ETag, unless it
// is longer than any version's could be: a 100 KB If-Match does not make
// a 100 KB answer.
func TestLongIfMatchNotEchoed(t *testing.T) {
	s := startServer(t)
	s.create(t, "/docs/c/d", `{"a":1}`)
	long := `"` + strings.Repeat("0", 2000) + `"`
	r := s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", long}, `{"a":2}`)
	expect(t, r, http.StatusPreconditionFailed, "base-unknown")
	if len(r.body) > 1500 || r.problem(t)["baseEtag"] != nil {
		t.Fatalf("a 412 of %d bytes, baseEtag %v", len(r.body), r.problem(t)["baseEtag"])
	}
	short := `"0123456789abcdef0123456789abcdef"`
	r = s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", short}, `{"a":2}`)
	expect(t, r, http.StatusPreconditionFailed, "base-unknown")
	if r.problem(t)["baseEtag"] != short {
		t.Fatalf("baseEtag %v, want %s", r.problem(t)["baseEtag"], short)
	}
}
