package handlers_test

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
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/patchd/patchd/handlers"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// loadOpenAPI loads and validates the embedded OpenAPI document and returns
// it with a router over it.
func loadOpenAPI(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	// kin-openapi decodes text/plain but not OpenMetrics' text type.
	if openapi3filter.RegisteredBodyDecoder("application/openmetrics-text") == nil {
		openapi3filter.RegisterBodyDecoder("application/openmetrics-text", openapi3filter.PlainBodyDecoder)
	}
	doc, err := openapi3.NewLoader().LoadFromData(handlers.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if !doc.IsOpenAPI31OrLater() || doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return doc, router
}

// reqCheck says what request validation must conclude about a request.
type reqCheck int

const (
	reqValid   reqCheck = iota // the request follows the description
	reqInvalid                 // it breaks a rule the description states
	reqAny                     // it breaks a rule the description cannot state (duplicate names, index syntax...)
)

// apiHeaders are the headers of this API that an answer may carry only
// where the description declares them.
var apiHeaders = []string{"ETag", "Location", "Rebased-From", "Preference-Applied", "Allow", "Accept-Patch",
	"X-Request-Id", "Content-Disposition"}

// exchangeChecker validates real requests and answers against the
// description and remembers which documented answers it saw.
type exchangeChecker struct {
	doc      *openapi3.T
	router   routers.Router
	seen     map[string]bool // "METHOD path status"
	problems map[string]bool // problem type names seen
}

// check validates one exchange: the request (as want says), the status,
// the headers and the body of the answer.
func (x *exchangeChecker) check(t *testing.T, req *http.Request, reqBody []byte, want reqCheck, status int, hdr http.Header, body []byte) {
	t.Helper()
	ctx := context.Background()
	if ct := hdr.Get("Content-Type"); ct == "application/problem+json" {
		var p struct{ Type string }
		if err := json.Unmarshal(body, &p); err == nil {
			x.problems[strings.TrimPrefix(p.Type, "/problems/")] = true
		}
	}
	route, params, err := x.router.FindRoute(req)
	if err != nil {
		// Not a route of the description: only a 404 or 405 problem.
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			t.Fatalf("no route in the description for %s %s, and status %d: %v", req.Method, req.URL.Path, status, err)
		}
		x.checkProblem(t, status, body)
		if hdr.Get("X-Request-Id") == "" {
			t.Fatal("no X-Request-Id")
		}
		return
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if reqBody != nil {
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	rerr := openapi3filter.ValidateRequest(ctx, in)
	switch {
	case want == reqValid && rerr != nil:
		t.Fatalf("request does not follow the description: %v", rerr)
	case want == reqInvalid && rerr == nil:
		t.Fatalf("the description accepts a request the server refuses (%d)", status)
	}

	key := fmt.Sprintf("%s %s %d", req.Method, route.Path, status)
	resp := route.Operation.Responses.Status(status)
	if resp == nil {
		t.Fatalf("%s: status not in the description", key)
	}
	x.seen[key] = true

	// Headers: every required one is there, and every API header sent is
	// declared (Accept-Patch is on every GET, HEAD and OPTIONS answer).
	for name, h := range resp.Value.Headers {
		if h.Value.Required && hdr.Get(name) == "" {
			t.Fatalf("%s: required header %s missing (headers %v)", key, name, hdr)
		}
	}
	for _, name := range apiHeaders {
		if hdr.Get(name) == "" {
			continue
		}
		if _, ok := resp.Value.Headers[name]; ok {
			continue
		}
		if name == "Accept-Patch" && (req.Method == "GET" || req.Method == "HEAD" || req.Method == "OPTIONS") {
			continue
		}
		t.Fatalf("%s: header %s: %q is not declared", key, name, hdr.Get(name))
	}

	// kin-openapi skips answers to HEAD and 304s: those have no body.
	if (req.Method == http.MethodHead || status == http.StatusNotModified || status == http.StatusNoContent) && len(body) != 0 {
		t.Fatalf("%s: a body of %d bytes", key, len(body))
	}
	rin := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: hdr, Options: opts}
	if len(body) == 0 && len(resp.Value.Content) > 0 {
		// Prefer: return=minimal answers 201 with no body, which the
		// description states in prose; the headers are still checked.
		if status != http.StatusCreated || !strings.Contains(req.Header.Get("Prefer"), "return=minimal") {
			if req.Method != http.MethodHead {
				t.Fatalf("%s: empty body", key)
			}
		}
		o := *opts
		o.ExcludeResponseBody = true
		rin.Options = &o
	}
	rin.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(ctx, rin); err != nil {
		t.Fatalf("%s: answer does not follow the description: %v\nbody %.500s", key, err, body)
	}
}

// checkProblem validates a problem body against the Problem schema.
func (x *exchangeChecker) checkProblem(t *testing.T, status int, body []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("problem body %q: %v", body, err)
	}
	schema := x.doc.Components.Schemas["Problem"].Value
	if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		t.Fatalf("problem body does not follow the Problem schema: %v\n%s", err, body)
	}
	if m, _ := v.(map[string]any); m["status"] != float64(status) {
		t.Fatalf("problem status %v, answer %d", m["status"], status)
	}
}

// documented lists every answer the description documents, as
// "METHOD path status".
func documented(doc *openapi3.T) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				out = append(out, fmt.Sprintf("%s %s %s", method, path, status))
			}
		}
	}
	sort.Strings(out)
	return out
}

// faultyStore fails every call: it injects the faults that give 500s.
type faultyStore struct{ store.Store }

var errInjected = errors.New("injected fault")

func (faultyStore) Get(context.Context, string, string) (*store.Document, error) {
	return nil, errInjected
}
func (faultyStore) Update(context.Context, string, string, store.UpdateFunc) (*store.Document, error) {
	return nil, errInjected
}
func (faultyStore) List(context.Context, string, string, int) ([]store.ListEntry, bool, error) {
	return nil, false, errInjected
}
func (faultyStore) History(context.Context, string, string, uint64, int) ([]store.Version, bool, error) {
	return nil, false, errInjected
}
func (faultyStore) Backup(context.Context, io.Writer, func(int64)) (int64, error) {
	return 0, errInjected
}

// loadBrokenHistory stores a document whose history does not describe it,
// so that rebasing over it fails (412 rebase-apply-failed). It returns the
// ETag of the older version.
func loadBrokenHistory(t *testing.T, st *store.Bolt, coll, id string) string {
	t.Helper()
	body := []byte(`{"x":1}`)
	old := store.ETagOf([]byte(`{"x":0}`))
	at := time.Now().UTC()
	// A "set" op on a member name cannot be undone: the base version cannot
	// be rebuilt.
	lie := patch.EncodeOps([]patch.Op{{Kind: patch.OpSet, Path: patch.Path{patch.Key("x")}, Value: patch.Number("1"), Old: patch.Number("0")}})
	rec := &store.Record{Collection: coll, ID: id,
		Doc: &store.Document{Collection: coll, ID: id, Body: body, ETag: store.ETagOf(body), Seq: 2, UpdatedAt: at},
		History: []store.Version{
			{Seq: 1, ETag: old, At: at, Kind: store.KindPut, Ops: patch.EncodeOps([]patch.Op{{Kind: patch.OpRoot, Value: map[string]any{"x": patch.Number("0")}}})},
			{Seq: 2, ETag: store.ETagOf(body), At: at, Kind: store.KindJSONPatch, Ops: lie},
		}}
	errs, err := st.Load(context.Background(), []*store.Record{rec})
	if err != nil || errs[0] != nil {
		t.Fatalf("load: %v %v", err, errs)
	}
	return old
}

// TestOpenAPIConformance sends a table of real requests covering every
// route, every documented status and every problem type to real servers,
// and validates each request and answer against the OpenAPI description
// with kin-openapi. It then checks that every answer the description
// documents was seen.
func TestOpenAPIConformance(t *testing.T) {
	doc, router := loadOpenAPI(t)
	x := &exchangeChecker{doc: doc, router: router, seen: map[string]bool{}, problems: map[string]bool{}}

	s := startServer(t, func(c *handlers.Config) { c.MaxBody = 4096; c.Limits.MaxDoc = 2048; c.StatsMaxAge = time.Nanosecond })
	lax := startServer(t, func(c *handlers.Config) { c.RequireIfMatch = false })
	tight := startServer(t, func(c *handlers.Config) { c.Rebase.MaxOps = 1 })
	bst, err := store.OpenBolt(filepath.Join(t.TempDir(), "f.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bst.Close() })
	faulty := &server{Server: httptest.NewServer(handlers.New(faultyStore{bst}, handlers.DefaultConfig()).Echo())}
	t.Cleanup(faulty.Close)

	// State the table's requests rely on.
	e0 := s.create(t, "/docs/c/d", `{"a":{"b":1},"list":[1,2]}`)
	lax.create(t, "/docs/c/d", `{"a":1}`)
	r0 := s.create(t, "/docs/r/x", `{"p":1,"q":1}`)
	r1 := s.do(t, "PATCH", "/docs/r/x", hdr{"Content-Type", ctMerge, "If-Match", r0}, `{"p":2}`)
	expect(t, r1, 200, "")
	t0 := tight.create(t, "/docs/c/d", `{"a":1}`)
	t1 := tight.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", t0}, `{"a":2,"b":2}`)
	expect(t, t1, 200, "")
	broken := loadBrokenHistory(t, s.store, "b", "x")
	deep := strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100)

	type apiCase struct {
		name    string
		srv     *server
		method  string
		path    string
		h       hdr
		body    string
		req     reqCheck
		status  int
		problem string
	}
	V, I, A := reqValid, reqInvalid, reqAny
	cases := []apiCase{
		{"Health", s, "GET", "/healthz", nil, "", V, 200, ""},
		{"OpenAPI", s, "GET", "/openapi.json", nil, "", V, 200, ""},
		{"Metrics", s, "GET", "/metrics", nil, "", V, 200, ""},
		{"MetricsOpenMetrics", s, "GET", "/metrics", hdr{"Accept", "application/openmetrics-text; version=1.0.0"}, "", V, 200, ""},
		{"Backup", s, "GET", "/admin/backup", nil, "", V, 200, ""},
		{"Backup/Fault", faulty, "GET", "/admin/backup", nil, "", V, 500, "internal"},

		{"List", s, "GET", "/docs/c", nil, "", V, 200, ""},
		{"List/Page", s, "GET", "/docs/c?limit=1&after=", hdr{"X-Request-Id", "trace-1"}, "", V, 200, ""},
		{"List/Empty", s, "GET", "/docs/none", nil, "", V, 200, ""},
		{"List/BadLimit", s, "GET", "/docs/c?limit=0", nil, "", I, 400, "invalid-request"},
		{"List/BadAfter", s, "GET", "/docs/c?after=..", nil, "", I, 400, "invalid-request"},
		{"List/Fault", faulty, "GET", "/docs/c", nil, "", V, 500, "internal"},
		{"ListHead", s, "HEAD", "/docs/c", nil, "", V, 200, ""},
		{"ListHead/BadCollection", s, "HEAD", "/docs/%24x", nil, "", I, 400, ""},
		{"ListHead/Fault", faulty, "HEAD", "/docs/c", nil, "", V, 500, ""},
		{"Post", s, "POST", "/docs/p", hdr{"Content-Type", ctJSON}, `{"n":1}`, V, 201, ""},
		{"Post/Minimal", s, "POST", "/docs/p", hdr{"Content-Type", ctJSON, "Prefer", "return=minimal"}, `{"n":2}`, V, 201, ""},
		{"Post/InvalidJSON", s, "POST", "/docs/p", hdr{"Content-Type", ctJSON}, `{"n":`, I, 400, "invalid-json"},
		{"Post/TooLarge", s, "POST", "/docs/p", hdr{"Content-Type", ctJSON}, `{"a":"` + strings.Repeat("x", 5000) + `"}`, A, 413, "too-large"},
		{"Post/MediaType", s, "POST", "/docs/p", hdr{"Content-Type", "text/plain"}, `{}`, I, 415, "unsupported-media-type"},
		{"Post/NotObject", s, "POST", "/docs/p", hdr{"Content-Type", ctJSON}, `[1]`, I, 422, "invalid-document"},
		{"Post/Fault", faulty, "POST", "/docs/p", hdr{"Content-Type", ctJSON}, `{}`, V, 500, "internal"},
		{"CollectionOptions", s, "OPTIONS", "/docs/c", nil, "", V, 204, ""},

		{"Get", s, "GET", "/docs/c/d", nil, "", V, 200, ""},
		{"Get/NotModified", s, "GET", "/docs/c/d", hdr{"If-None-Match", e0}, "", V, 304, ""},
		{"Get/BadID", s, "GET", "/docs/c/a%20b", nil, "", I, 400, "invalid-request"},
		{"Get/DotDot", s, "GET", "/docs/c/..", nil, "", I, 400, "invalid-request"},
		{"Get/LongID", s, "GET", "/docs/c/" + strings.Repeat("x", 129), nil, "", I, 400, "invalid-request"},
		{"Get/BadIfNoneMatch", s, "GET", "/docs/c/d", hdr{"If-None-Match", `"abc`}, "", I, 400, "invalid-request"},
		{"Get/NotFound", s, "GET", "/docs/c/missing", nil, "", V, 404, "not-found"},
		{"Get/IfMatch", s, "GET", "/docs/c/d", hdr{"If-Match", `"0000"`}, "", V, 412, "precondition-failed"},
		{"Get/Fault", faulty, "GET", "/docs/c/d", nil, "", V, 500, "internal"},
		{"Head", s, "HEAD", "/docs/c/d", nil, "", V, 200, ""},
		{"Head/NotModified", s, "HEAD", "/docs/c/d", hdr{"If-None-Match", "*"}, "", V, 304, ""},
		{"Head/BadID", s, "HEAD", "/docs/c/a%20b", nil, "", I, 400, ""},
		{"Head/NotFound", s, "HEAD", "/docs/c/missing", nil, "", V, 404, ""},
		{"Head/IfMatch", s, "HEAD", "/docs/c/d", hdr{"If-Match", `"0000"`}, "", V, 412, ""},
		{"Head/Fault", faulty, "HEAD", "/docs/c/d", nil, "", V, 500, ""},

		{"Put/Create", s, "PUT", "/docs/c/new", hdr{"Content-Type", ctJSON}, `{"z":1}`, V, 201, ""},
		{"Put/CreateMinimal", s, "PUT", "/docs/c/new2", hdr{"Content-Type", ctJSON, "Prefer", "return=minimal"}, `{"z":1}`, V, 201, ""},
		{"Put/Replace", s, "PUT", "/docs/c/new", hdr{"Content-Type", ctJSON, "If-Match", etagOf(`{"z":1}`)}, `{"z":2}`, V, 200, ""},
		{"Put/ReplaceMinimal", s, "PUT", "/docs/c/new", hdr{"Content-Type", ctJSON, "If-Match", etagOf(`{"z":2}`), "Prefer", "return=minimal"}, `{"z":3}`, V, 204, ""},
		{"Put/Rebased", s, "PUT", "/docs/r/x", hdr{"Content-Type", ctJSON, "If-Match", r0}, `{"p":1,"q":1,"z":1}`, V, 200, ""},
		{"Put/InvalidJSON", s, "PUT", "/docs/c/new", hdr{"Content-Type", ctJSON}, `{"a":`, I, 400, "invalid-json"},
		{"Put/Duplicate", s, "PUT", "/docs/c/new", hdr{"Content-Type", ctJSON}, `{"a":1,"a":2}`, A, 400, "invalid-json"},
		{"Put/BadUTF8", s, "PUT", "/docs/c/new", hdr{"Content-Type", ctJSON}, "{\"a\":\"\xc3\x28\"}", A, 400, "invalid-json"},
		{"Put/LoneSurrogate", s, "PUT", "/docs/c/new", hdr{"Content-Type", ctJSON}, `{"a":"\udc00"}`, A, 400, "invalid-json"},
		{"Put/BadIfMatch", s, "PUT", "/docs/c/d", hdr{"Content-Type", ctJSON, "If-Match", "abc"}, `{}`, I, 400, "invalid-request"},
		{"Put/CreateOnly", s, "PUT", "/docs/c/d", hdr{"Content-Type", ctJSON, "If-None-Match", "*"}, `{}`, V, 412, "precondition-failed"},
		{"Put/IfMatchMissing", s, "PUT", "/docs/c/nope", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{}`, V, 412, "precondition-failed"},
		{"Put/Strict", s, "PUT", "/docs/r/x", hdr{"Content-Type", ctJSON, "If-Match", r0, "Prefer", "handling=strict"}, `{"p":1}`, V, 412, "precondition-failed"},
		{"Put/RebaseConflict", s, "PUT", "/docs/r/x", hdr{"Content-Type", ctJSON, "If-Match", r0}, `{"p":9,"q":1}`, V, 412, "rebase-conflict"},
		{"Put/BaseUnknown", s, "PUT", "/docs/c/d", hdr{"Content-Type", ctJSON, "If-Match", `"bogus"`}, `{}`, V, 412, "base-unknown"},
		{"Put/TooLarge", s, "PUT", "/docs/c/big", hdr{"Content-Type", ctJSON}, `{"a":"` + strings.Repeat("x", 5000) + `"}`, A, 413, "too-large"},
		{"Put/MediaType", s, "PUT", "/docs/c/d", hdr{"Content-Type", "text/plain", "If-Match", e0}, `{}`, I, 415, "unsupported-media-type"},
		{"Put/NoMediaType", s, "PUT", "/docs/c/d", hdr{"If-Match", e0}, `{}`, I, 415, "unsupported-media-type"},
		{"Put/Array", s, "PUT", "/docs/c/new", hdr{"Content-Type", ctJSON}, `[1]`, I, 422, "invalid-document"},
		{"Put/Deep", s, "PUT", "/docs/c/new", hdr{"Content-Type", ctJSON}, deep, A, 422, "invalid-document"},
		{"Put/Size", s, "PUT", "/docs/c/new", hdr{"Content-Type", ctJSON}, `{"a":"` + strings.Repeat("x", 3000) + `"}`, A, 422, "invalid-document"},
		{"Put/Required", s, "PUT", "/docs/c/d", hdr{"Content-Type", ctJSON}, `{}`, V, 428, "precondition-required"},
		{"Put/Fault", faulty, "PUT", "/docs/c/d", hdr{"Content-Type", ctJSON}, `{}`, V, 500, "internal"},

		{"Patch/Merge", lax, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge}, `{"m":[null]}`, V, 200, ""},
		{"Patch/Rebased", s, "PATCH", "/docs/r/x", hdr{"Content-Type", ctMerge, "If-Match", r0}, `{"q":2}`, V, 200, ""},
		{"Patch/Minimal", lax, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", "*", "Prefer", "return=minimal, handling=strict"}, `{"k":1}`, V, 204, ""},
		{"Patch/InvalidJSON", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", e0}, `{"a":1,}`, I, 400, "invalid-json"},
		{"Patch/NotArray", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", e0}, `{"op":"add"}`, I, 400, "invalid-patch"},
		{"Patch/NoValue", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", e0}, `[{"op":"add","path":"/x"}]`, I, 400, "invalid-patch"},
		{"Patch/NoFrom", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", e0}, `[{"op":"move","path":"/x"}]`, I, 400, "invalid-patch"},
		{"Patch/UnknownOp", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", e0}, `[{"op":"nope","path":"/x"}]`, I, 400, "invalid-patch"},
		{"Patch/Pointer", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", e0}, `[{"op":"remove","path":"a"}]`, I, 400, "invalid-patch"},
		{"Patch/LeadingZero", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", e0}, `[{"op":"remove","path":"/list/01"}]`, A, 400, "invalid-patch"},
		{"Patch/MoveIntoChild", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", e0}, `[{"op":"move","from":"/a","path":"/a/b/c"}]`, A, 400, "invalid-patch"},
		{"Patch/BadIfMatch", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", "abc"}, `{}`, I, 400, "invalid-request"},
		{"Patch/NotFound", s, "PATCH", "/docs/c/missing", hdr{"Content-Type", ctMerge, "If-Match", e0}, `{}`, V, 404, "not-found"},
		{"Patch/Conflict", lax, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch}, `[{"op":"remove","path":"/zz"}]`, V, 409, "patch-conflict"},
		{"Patch/IfNoneMatch", s, "PATCH", "/docs/r/x", hdr{"Content-Type", ctMerge, "If-Match", "*", "If-None-Match", "*"}, `{}`, V, 412, "precondition-failed"},
		{"Patch/Strict", s, "PATCH", "/docs/r/x", hdr{"Content-Type", ctMerge, "If-Match", r0, "Prefer", "handling=strict"}, `{"y":1}`, V, 412, "precondition-failed"},
		{"Patch/RebaseConflict", s, "PATCH", "/docs/r/x", hdr{"Content-Type", ctPatch, "If-Match", r0}, `[{"op":"replace","path":"/p","value":7}]`, V, 412, "rebase-conflict"},
		{"Patch/BaseUnknown", s, "PATCH", "/docs/r/x", hdr{"Content-Type", ctMerge, "If-Match", `"0123456789abcdef0123456789abcdef"`}, `{"y":1}`, V, 412, "base-unknown"},
		{"Patch/TooFar", tight, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", t0}, `{"c":3}`, V, 412, "rebase-too-far"},
		{"Patch/ApplyFailed", s, "PATCH", "/docs/b/x", hdr{"Content-Type", ctMerge, "If-Match", broken}, `{"y":1}`, V, 412, "rebase-apply-failed"},
		{"Patch/TooLarge", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", e0}, `{"a":"` + strings.Repeat("x", 5000) + `"}`, A, 413, "too-large"},
		{"Patch/MediaType", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctJSON, "If-Match", e0}, `{}`, I, 415, "unsupported-media-type"},
		{"Patch/TestFailed", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", e0}, `[{"op":"test","path":"/a/b","value":2}]`, V, 422, "patch-failed"},
		{"Patch/Index", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", e0}, `[{"op":"add","path":"/list/5","value":2}]`, V, 422, "patch-failed"},
		{"Patch/MergeRoot", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", e0}, `[1]`, V, 422, "invalid-document"},
		{"Patch/ReplaceRoot", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", e0}, `[{"op":"replace","path":"","value":3}]`, V, 422, "invalid-document"},
		{"Patch/JSONPatch", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctPatch, "If-Match", e0}, `[{"op":"add","path":"/n","value":12345678901234567890123}]`, V, 200, ""},
		{"Patch/Required", s, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge}, `{}`, V, 428, "precondition-required"},
		{"Patch/Fault", faulty, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge}, `{}`, V, 500, "internal"},

		{"Delete/BadID", s, "DELETE", "/docs/c/a%20b", hdr{"If-Match", "*"}, "", I, 400, "invalid-request"},
		{"Delete/NotFound", s, "DELETE", "/docs/c/missing", hdr{"If-Match", "*"}, "", V, 404, "not-found"},
		{"Delete/Stale", s, "DELETE", "/docs/r/x", hdr{"If-Match", r0, "Prefer", "handling=strict"}, "", V, 412, "precondition-failed"},
		{"Delete/Required", s, "DELETE", "/docs/r/x", nil, "", V, 428, "precondition-required"},
		{"Delete", s, "DELETE", "/docs/c/new2", hdr{"If-Match", etagOf(`{"z":1}`)}, "", V, 204, ""},
		{"Delete/Fault", faulty, "DELETE", "/docs/c/d", hdr{"If-Match", "*"}, "", V, 500, "internal"},
		{"DocumentOptions", s, "OPTIONS", "/docs/c/d", nil, "", V, 204, ""},

		{"History", s, "GET", "/docs/r/x/history", nil, "", V, 200, ""},
		{"History/Page", s, "GET", "/docs/r/x/history?limit=1&after=1", nil, "", V, 200, ""},
		{"History/Deleted", s, "GET", "/docs/c/new2/history", nil, "", V, 200, ""},
		{"History/BadAfter", s, "GET", "/docs/r/x/history?after=x", nil, "", I, 400, "invalid-request"},
		{"History/NotFound", s, "GET", "/docs/c/missing/history", nil, "", V, 404, "not-found"},
		{"History/Fault", faulty, "GET", "/docs/c/d/history", nil, "", V, 500, "internal"},
		{"HistoryHead", s, "HEAD", "/docs/r/x/history", nil, "", V, 200, ""},
		{"HistoryHead/BadLimit", s, "HEAD", "/docs/r/x/history?limit=5000", nil, "", I, 400, ""},
		{"HistoryHead/NotFound", s, "HEAD", "/docs/c/missing/history", nil, "", V, 404, ""},
		{"HistoryHead/Fault", faulty, "HEAD", "/docs/c/d/history", nil, "", V, 500, ""},
		{"HistoryOptions", s, "OPTIONS", "/docs/r/x/history", nil, "", V, 204, ""},

		{"Unrouted/NotFound", s, "GET", "/nowhere", nil, "", A, 404, "not-found"},
		{"Unrouted/MethodNotAllowed", s, "POST", "/docs/c/d", hdr{"Content-Type", ctJSON}, `{}`, A, 405, "method-not-allowed"},
		{"Unrouted/PutCollection", s, "PUT", "/docs/c", hdr{"Content-Type", ctJSON}, `{}`, A, 405, "method-not-allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			req, err := http.NewRequest(tc.method, tc.srv.URL+tc.path, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i+1 < len(tc.h); i += 2 {
				req.Header.Add(tc.h[i], tc.h[i+1])
			}
			check := req.Clone(context.Background())
			if body == nil {
				req.Body, check.Body = nil, nil
			}
			res, err := tc.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tc.status {
				t.Fatalf("status=%d, want %d (body %s)", res.StatusCode, tc.status, got)
			}
			if tc.problem != "" {
				expect(t, response{status: res.StatusCode, header: res.Header, body: got}, tc.status, tc.problem)
			}
			x.check(t, check, body, tc.req, res.StatusCode, res.Header, got)
		})
	}

	var missing []string
	for _, k := range documented(doc) {
		if !x.seen[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		t.Errorf("documented answers no request produced:\n%s", strings.Join(missing, "\n"))
	}
	var types []string
	for _, v := range doc.Components.Schemas["Problem"].Value.Properties["type"].Value.Enum {
		name := strings.TrimPrefix(v.(string), "/problems/")
		if !x.problems[name] {
			types = append(types, name)
		}
	}
	if len(types) > 0 {
		t.Errorf("problem types no request produced: %v", types)
	}
}

// TestOpenAPICatchesDrift shows that the checks above can fail: answers
// that differ from the description in a status, a header, a problem type
// or a body member are refused.
func TestOpenAPICatchesDrift(t *testing.T) {
	_, router := loadOpenAPI(t)
	s := startServer(t)
	etag := s.create(t, "/docs/c/d", `{"a":1}`)
	get := func(path string, h ...string) (*http.Request, *http.Response, []byte) {
		req, _ := http.NewRequest("GET", s.URL+path, nil)
		for i := 0; i+1 < len(h); i += 2 {
			req.Header.Set(h[i], h[i+1])
		}
		res, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return req, res, b
	}
	validate := func(req *http.Request, status int, hdr http.Header, body []byte) error {
		route, params, err := router.FindRoute(req)
		if err != nil {
			return err
		}
		opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
		rin := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: hdr, Options: opts}
		rin.SetBodyBytes(body)
		return openapi3filter.ValidateResponse(context.Background(), rin)
	}
	req, res, body := get("/docs/c/d")
	if err := validate(req, res.StatusCode, res.Header, body); err != nil {
		t.Fatalf("the real answer fails: %v", err)
	}
	for _, tc := range []struct {
		name   string
		status int
		change func(h http.Header, body []byte) []byte
	}{
		{"UndocumentedStatus", 409, func(h http.Header, b []byte) []byte { return b }},
		{"NoETag", 200, func(h http.Header, b []byte) []byte { h.Del("ETag"); return b }},
		{"WeakETag", 200, func(h http.Header, b []byte) []byte { h.Set("ETag", "W/"+etag); return b }},
		{"NoRequestID", 200, func(h http.Header, b []byte) []byte { h.Del("X-Request-Id"); return b }},
		{"NotAnObject", 200, func(h http.Header, b []byte) []byte { return []byte(`[1]`) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := res.Header.Clone()
			b := tc.change(h, slices.Clone(body))
			if err := validate(req, tc.status, h, b); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	req, res, body = get("/docs/c/missing")
	if err := validate(req, res.StatusCode, res.Header, body); err != nil {
		t.Fatalf("the real 404 fails: %v", err)
	}
	for _, tc := range []struct {
		name string
		body string
	}{
		{"OtherProblemType", strings.Replace(string(body), "not-found", "patch-failed", 1)},
		{"ExtraMember", strings.Replace(string(body), `{"type"`, `{"x":1,"type"`, 1)},
		{"ConflictsOutsideRebase", strings.Replace(string(body), `{"type"`, `{"conflicts":[{"clientOp":0,"clientPath":"/a","concurrentPath":"/a","concurrentVersion":1,"reason":"overlap"}],"type"`, 1)},
		{"StatusMismatch", strings.Replace(string(body), `"status":404`, `"status":`+strconv.Itoa(410), 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.body == string(body) {
				t.Fatal("the change did not apply")
			}
			if err := validate(req, res.StatusCode, res.Header, []byte(tc.body)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestOpenAPIServed checks that /openapi.json serves the embedded document.
func TestOpenAPIServed(t *testing.T) {
	s := startServer(t)
	r := s.do(t, "GET", "/openapi.json", nil, "")
	expect(t, r, 200, "")
	if !bytes.Equal(r.body, handlers.OpenAPI()) {
		t.Fatal("served document differs from the embedded one")
	}
}
