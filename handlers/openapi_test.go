package handlers_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/handlers"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
	"github.com/patchd/patchd/web"
)

// loadOpenAPI loads and validates the embedded OpenAPI document and returns
// it with a router over it.
func loadOpenAPI(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	// kin-openapi decodes text/plain but not OpenMetrics' text type, the
	// demo's files or event streams (whose bodies are never read whole).
	for _, ct := range []string{"application/openmetrics-text", "text/html", "text/javascript", "text/css", "text/event-stream"} {
		if openapi3filter.RegisteredBodyDecoder(ct) == nil {
			openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
		}
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
	"X-Request-Id", "Content-Disposition", "Cache-Control", "WWW-Authenticate", "Retry-After", "Idempotent-Replayed",
	"X-Accel-Buffering", "X-Content-Type-Options", "Content-Security-Policy",
	"Access-Control-Allow-Origin", "Access-Control-Expose-Headers", "Access-Control-Allow-Methods",
	"Access-Control-Allow-Headers", "Access-Control-Max-Age"}

// testOrigin is the origin every server of the conformance test lists in
// --cors-origins; requests come from it unless a case says otherwise.
const testOrigin = "https://app.example.com"

// withCORS lists testOrigin in a server's --cors-origins.
func withCORS(c *config) { c.http.CORSOrigins = handlers.ParseOrigins(testOrigin) }

// testToken is a line of the tokens file of the security tests.
type testToken struct {
	role        string
	collections []string // nil: every collection
}

// roleRank orders the roles of the tokens file.
var roleRank = map[string]int{"read": 1, "write": 2, "admin": 3}

// parseTestTokens reads tokensFile (security_test.go) as the server does.
func parseTestTokens(t *testing.T) map[string]testToken {
	t.Helper()
	out := map[string]testToken{}
	for _, line := range strings.Split(tokensFile, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if roleRank[f[1]] == 0 {
			t.Fatalf("tokens file: role %q", f[1])
		}
		tok := testToken{role: f[1]}
		if len(f) > 2 {
			tok.collections = f[2:]
		}
		out[f[0]] = tok
	}
	return out
}

// allows reports whether tok has role on collection coll, as the
// description's security scheme states it: each role includes the weaker
// ones, collections limit a token, and admin routes need a token that
// names none.
func (tok testToken) allows(role, coll string) bool {
	if roleRank[tok.role] < roleRank[role] {
		return false
	}
	if role == "admin" {
		return tok.collections == nil
	}
	// An operation that names no collection (POST /batch) needs the role
	// only; its writes are checked one by one.
	return tok.collections == nil || coll == "" || slices.Contains(tok.collections, coll)
}

// bearerToken returns the token of a request's one Authorization: Bearer
// field.
func bearerToken(r *http.Request) (string, bool) {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	tok = strings.TrimSpace(tok)
	return tok, ok && strings.EqualFold(scheme, "Bearer") && tok != ""
}

// isPreflight reports whether r is a CORS preflight request.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// exchangeChecker validates real requests and answers against the
// description and remembers which documented answers it saw.
type exchangeChecker struct {
	doc      *openapi3.T
	router   routers.Router
	tokens   map[string]testToken
	seen     map[string]bool // "METHOD path status"
	problems map[string]bool // problem type names seen
}

// newExchangeChecker loads the description and the tokens of the
// security tests.
func newExchangeChecker(t *testing.T) *exchangeChecker {
	t.Helper()
	doc, router := loadOpenAPI(t)
	return &exchangeChecker{doc: doc, router: router, tokens: parseTestTokens(t), seen: map[string]bool{}, problems: map[string]bool{}}
}

// exchange sends one request to srv and validates it and its answer with
// check. Requests come from testOrigin unless h names an Origin (an empty
// one: none). status, when not 0, is the status the answer must have, and
// problemName its problem type.
func (x *exchangeChecker) exchange(t *testing.T, srv *server, method, path string, h hdr, body string, want reqCheck, status int, problemName string) response {
	t.Helper()
	req, r, err := send(srv, method, path, h, body)
	if err != nil {
		t.Fatal(err)
	}
	if status != 0 {
		if method == http.MethodHead {
			problemName = "" // no body
		}
		expect(t, r, status, problemName)
	}
	x.check(t, req, []byte(body), want, r.status, r.header, r.body)
	return r
}

// send makes the request of exchange and returns a copy of it to check
// with the answer. It only returns errors, so that goroutines may call it.
func send(srv *server, method, path string, h hdr, body string) (*http.Request, response, error) {
	// No answer takes long; a stream that should not be one ends here.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		return nil, response{}, err
	}
	if body == "" {
		req.Body, req.GetBody, req.ContentLength = nil, nil, 0
	}
	addHeaders(req, h)
	check := req.Clone(context.Background())
	check.Body = nil
	res, err := srv.Client().Do(req)
	if err != nil {
		return nil, response{}, err
	}
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, response{}, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	return check, response{status: res.StatusCode, header: res.Header, body: got}, nil
}

// addHeaders adds h to req, and Origin: testOrigin unless h names an
// Origin; an empty Origin in h means none.
func addHeaders(req *http.Request, h hdr) {
	origin := testOrigin
	for i := 0; i+1 < len(h); i += 2 {
		if http.CanonicalHeaderKey(h[i]) == "Origin" {
			origin = h[i+1]
			continue
		}
		req.Header.Add(h[i], h[i+1])
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
}

// check validates one exchange: the request (as want says), the status,
// the headers and the body of the answer.
func (x *exchangeChecker) check(t *testing.T, req *http.Request, reqBody []byte, want reqCheck, status int, hdr http.Header, body []byte) {
	t.Helper()
	x.checkExchange(t, req, reqBody, want, status, hdr, body, false)
}

// checkExchange validates one exchange; with streamed, the body of a
// change feed, which was not read whole, is not checked.
func (x *exchangeChecker) checkExchange(t *testing.T, req *http.Request, reqBody []byte, want reqCheck, status int, hdr http.Header, body []byte, streamed bool) {
	t.Helper()
	ctx := context.Background()
	if ct := hdr.Get("Content-Type"); ct == "application/problem+json" {
		var p struct{ Type string }
		if err := json.Unmarshal(body, &p); err == nil {
			x.problems[strings.TrimPrefix(p.Type, "/problems/")] = true
		}
	}
	x.checkCORS(t, req, status, hdr)
	route, params, err := x.router.FindRoute(req)
	if err != nil {
		x.checkUnrouted(t, req, status, hdr, body, err)
		return
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if len(reqBody) > 0 {
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
	x.checkAuth(t, key, route, params, req, status)

	// Headers: every required one is there, every declared one follows its
	// schema (kin-openapi checks none on answers to HEAD), and every API
	// header sent is declared (Accept-Patch is on every GET, HEAD and
	// OPTIONS answer).
	x.checkHeaders(t, key, resp.Value.Headers, hdr)
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
	if req.Method == http.MethodOptions && status == http.StatusNoContent {
		x.checkAllow(t, key, route, req, hdr)
	}

	rin := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: hdr, Options: opts}
	if streamed {
		// Only the status and headers: the stream's framing and events are
		// checked by stream.
		if resp.Value.Content.Get(hdr.Get("Content-Type")) == nil {
			t.Fatalf("%s: Content-Type %q is not declared", key, hdr.Get("Content-Type"))
		}
		o := *opts
		o.ExcludeResponseBody = true
		rin.Options = &o
		if err := openapi3filter.ValidateResponse(ctx, rin); err != nil {
			t.Fatalf("%s: answer does not follow the description: %v", key, err)
		}
		return
	}
	// kin-openapi skips answers to HEAD and 304s: those have no body.
	if (req.Method == http.MethodHead || status == http.StatusNotModified || status == http.StatusNoContent) && len(body) != 0 {
		t.Fatalf("%s: a body of %d bytes", key, len(body))
	}
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

// checkHeaders checks that every required header of declared is in hdr,
// and that every one in hdr follows its schema.
func (x *exchangeChecker) checkHeaders(t *testing.T, key string, declared openapi3.Headers, hdr http.Header) {
	t.Helper()
	for name, h := range declared {
		vals := hdr.Values(name)
		if len(vals) == 0 {
			if h.Value.Required {
				t.Fatalf("%s: required header %s missing (headers %v)", key, name, hdr)
			}
			continue
		}
		if len(vals) > 1 {
			t.Fatalf("%s: header %s sent %d times: %q", key, name, len(vals), vals)
		}
		if err := h.Value.Schema.Value.VisitJSON(vals[0], openapi3.EnableJSONSchema2020()); err != nil {
			t.Fatalf("%s: header %s: %q does not follow its schema: %v", key, name, vals[0], err)
		}
	}
}

// checkCORS checks the CORS headers: an answer to a request from
// testOrigin carries Access-Control-Allow-Origin, and the preflight or
// exposed headers; an answer to any other request carries none.
func (x *exchangeChecker) checkCORS(t *testing.T, req *http.Request, status int, hdr http.Header) {
	t.Helper()
	origin := req.Header.Get("Origin")
	if !strings.EqualFold(origin, testOrigin) {
		for name := range hdr {
			if strings.HasPrefix(strings.ToLower(name), "access-control-") {
				t.Fatalf("%s %s from origin %q: answered with %s", req.Method, req.URL.Path, origin, name)
			}
		}
		return
	}
	if got := hdr.Get("Access-Control-Allow-Origin"); got != origin {
		t.Fatalf("%s %s from %s: Access-Control-Allow-Origin %q", req.Method, req.URL.Path, origin, got)
	}
	if isPreflight(req) {
		if status != http.StatusNoContent || hdr.Get("Allow") != "" {
			t.Fatalf("preflight %s: status %d, Allow %q", req.URL.Path, status, hdr.Get("Allow"))
		}
		for _, name := range []string{"Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age"} {
			if hdr.Get(name) == "" {
				t.Fatalf("preflight %s: no %s", req.URL.Path, name)
			}
		}
		return
	}
	if hdr.Get("Access-Control-Expose-Headers") == "" {
		t.Fatalf("%s %s from %s: no Access-Control-Expose-Headers", req.Method, req.URL.Path, origin)
	}
}

// checkUnrouted checks an answer to a request the description has no
// operation for: 404 or 405 (after 401 when the server has tokens, and
// 429 when it has a rate limit), or a preflight's 204, as the
// description's info states.
func (x *exchangeChecker) checkUnrouted(t *testing.T, req *http.Request, status int, hdr http.Header, body []byte, routeErr error) {
	t.Helper()
	key := fmt.Sprintf("%s %s (not in the description) %d", req.Method, req.URL.Path, status)
	c := x.doc.Components
	problemOf := map[int]string{404: "not-found", 405: "method-not-allowed", 401: "unauthorized", 429: "rate-limited"}
	switch {
	case status == http.StatusNoContent && isPreflight(req) && strings.EqualFold(req.Header.Get("Origin"), testOrigin):
		x.checkHeaders(t, key, c.Responses["Options"].Value.Headers, hdr)
	case problemOf[status] != "":
		x.checkProblem(t, status, body)
		var p struct{ Type string }
		if err := json.Unmarshal(body, &p); err != nil || p.Type != "/problems/"+problemOf[status] {
			t.Fatalf("%s: problem type %q", key, p.Type)
		}
		x.checkHeaders(t, key, c.Responses["Internal"].Value.Headers, hdr) // X-Request-Id, Cache-Control
		switch status {
		case http.StatusUnauthorized:
			x.checkHeaders(t, key, openapi3.Headers{"WWW-Authenticate": c.Headers["WWWAuthenticate"]}, hdr)
		case http.StatusTooManyRequests:
			x.checkHeaders(t, key, openapi3.Headers{"Retry-After": c.Headers["RetryAfter"]}, hdr)
		}
	default:
		t.Fatalf("%s: %v", key, routeErr)
	}
	if hdr.Get("X-Request-Id") == "" {
		t.Fatal("no X-Request-Id")
	}
}

// checkAuth checks an answer against the operation's security: an open
// operation is never 401 or 403; a secured one names one role; a valid
// token is never 401; a 403 goes only to a token the role or collections
// do not allow, and any other answer but 429 only to one they allow.
func (x *exchangeChecker) checkAuth(t *testing.T, key string, route *routers.Route, params map[string]string, req *http.Request, status int) {
	t.Helper()
	reqs := route.Operation.Security
	if reqs == nil {
		t.Fatalf("%s: the operation declares no security", key)
	}
	open := len(*reqs) == 0
	role := ""
	if !open {
		// [{"bearer": [ROLE]}, {}]: the {} is a server without --tokens.
		if len(*reqs) != 2 || len((*reqs)[0]) != 1 || len((*reqs)[0]["bearer"]) != 1 || len((*reqs)[1]) != 0 {
			t.Fatalf("%s: security %v, want [{bearer: [ROLE]}, {}]", key, *reqs)
		}
		role = (*reqs)[0]["bearer"][0]
		if roleRank[role] == 0 {
			t.Fatalf("%s: role %q", key, role)
		}
	}
	tok, present := bearerToken(req)
	entry, known := x.tokens[tok]
	known = known && present
	switch {
	case (status == http.StatusUnauthorized || status == http.StatusForbidden) && open:
		t.Fatalf("%s: the operation needs no token", key)
	case status == http.StatusUnauthorized && known:
		t.Fatalf("%s: a valid token refused", key)
	case status == http.StatusForbidden && known && (route.Path == "/batch" || route.Path == "/events") && entry.allows(role, ""):
		// A write of the batch, or a subscription of the stream, to a
		// collection the token may not use: the description's info says so.
	case status == http.StatusForbidden && (!known || entry.allows(role, params["c"])):
		t.Fatalf("%s: a %s token for %v refused, which the description's role %s allows", key, entry.role, entry.collections, role)
	case status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusTooManyRequests:
	case known && !open && !entry.allows(role, params["c"]) && !isPreflight(req):
		t.Fatalf("%s: answered to a %s token for %v, which the description's role %s does not allow", key, entry.role, entry.collections, role)
	}
}

// checkAllow checks that an OPTIONS answer that is not a preflight's lists
// exactly the methods the description has for the path.
func (x *exchangeChecker) checkAllow(t *testing.T, key string, route *routers.Route, req *http.Request, hdr http.Header) {
	t.Helper()
	if isPreflight(req) && strings.EqualFold(req.Header.Get("Origin"), testOrigin) {
		return
	}
	var got, want []string
	for _, m := range strings.Split(hdr.Get("Allow"), ",") {
		if m = strings.TrimSpace(m); m != "" {
			got = append(got, strings.ToUpper(m))
		}
	}
	for m := range route.PathItem.Operations() {
		want = append(want, strings.ToUpper(m))
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: Allow %q, the description has %v", key, hdr.Get("Allow"), want)
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

// sseField is one line of an event stream: "name: value".
var sseField = regexp.MustCompile(`^([a-z]+): (.*)$`)

// stream opens a change feed on srv, reads its first event and ends the
// stream. It validates the request, status and headers against the
// description, the framing (a retry record, then events of id, event and
// one line of JSON data, comments skipped) and the event's data against
// the schema the description's x-events names for it, and returns the
// event.
func (x *exchangeChecker) stream(t *testing.T, srv *server, path string, h hdr, wantEvent string) sseEvent {
	t.Helper()
	return x.streamReq(t, srv, "GET", path, h, "", wantEvent)
}

// streamReq is stream for any method, with a request body: POST /events
// streams too, whose events carry no id field.
func (x *exchangeChecker) streamReq(t *testing.T, srv *server, method, path string, h hdr, body, wantEvent string) sseEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	addHeaders(req, h)
	check := req.Clone(context.Background())
	check.Body = io.NopCloser(strings.NewReader(body))
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("GET %s: status %d, body %s", path, res.StatusCode, b)
	}
	br := bufio.NewReader(res.Body)
	record := func() []string {
		var lines []string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("GET %s: reading the stream after %q: %v", path, lines, err)
			}
			line = strings.TrimSuffix(line, "\n")
			if line == "" {
				return lines
			}
			lines = append(lines, line)
		}
	}
	if rec := record(); len(rec) != 1 || !regexp.MustCompile(`^retry: [0-9]+$`).MatchString(rec[0]) {
		t.Fatalf("GET %s: the stream opens with %q, want one retry field", path, rec)
	}
	rec := record()
	for len(rec) > 0 && !slices.ContainsFunc(rec, func(l string) bool { return !strings.HasPrefix(l, ":") }) {
		rec = record() // comments only: a heartbeat
	}
	cancel() // the stream ends here; the server sees the connection close
	var ev sseEvent
	var names []string
	for _, line := range rec {
		m := sseField.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("GET %s: line %q in event %q", path, line, rec)
		}
		names = append(names, m[1])
		switch m[1] {
		case "id":
			ev.ID = m[2]
		case "event":
			ev.Event = m[2]
		case "data":
			ev.Data = m[2]
		}
	}
	wantNames := []string{"id", "event", "data"}
	if method != "GET" {
		wantNames = wantNames[1:] // resumed by the request body, not Last-Event-ID
	}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("%s %s: event %q, want the fields %v once each", method, path, rec, wantNames)
	}
	x.checkExchange(t, check, []byte(body), reqValid, res.StatusCode, res.Header, nil, true)
	if ev.Event != wantEvent {
		t.Fatalf("GET %s: first event %q, want %q", path, ev.Event, wantEvent)
	}

	// The data follows the schema the description names for the event, and
	// its seq is the event's id.
	route, _, err := x.router.FindRoute(check)
	if err != nil {
		t.Fatal(err)
	}
	mt := route.Operation.Responses.Status(http.StatusOK).Value.Content.Get("text/event-stream")
	events, _ := mt.Extensions["x-events"].(map[string]any)
	ref, _ := events[ev.Event].(string)
	schema := x.doc.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
	if !strings.HasPrefix(ref, "#/components/schemas/") || schema == nil {
		t.Fatalf("GET %s: event %q: x-events names no schema (%v)", path, ev.Event, events)
	}
	var v any
	if err := json.Unmarshal([]byte(ev.Data), &v); err != nil {
		t.Fatalf("GET %s: data %s: %v", path, ev.Data, err)
	}
	if err := schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		t.Fatalf("GET %s: %s data does not follow %s: %v\n%s", path, ev.Event, ref, err, ev.Data)
	}
	var seq struct{ Seq json.Number }
	if err := json.Unmarshal([]byte(ev.Data), &seq); method == "GET" && (err != nil || seq.Seq.String() != ev.ID) {
		t.Fatalf("GET %s: id %q, data seq %q", path, ev.ID, seq.Seq)
	}
	return ev
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

// operation is one operation of the description.
type operation struct {
	method, path string
	op           *openapi3.Operation
}

// operations lists the description's operations by path and method.
func operations(doc *openapi3.T) []operation {
	var out []operation
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			out = append(out, operation{method, path, op})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].path != out[j].path {
			return out[i].path < out[j].path
		}
		return out[i].method < out[j].method
	})
	return out
}

// role returns the role an operation needs, or "" when it is open.
func (o operation) role() string {
	if o.op.Security == nil || len(*o.op.Security) == 0 {
		return ""
	}
	return (*o.op.Security)[0]["bearer"][0]
}

// streams reports whether the operation's 200 is an event stream.
func (o operation) streams() bool {
	r := o.op.Responses.Status(http.StatusOK)
	return r != nil && r.Value.Content.Get("text/event-stream") != nil
}

// request returns a valid request for the operation on collection coll:
// its path, headers and body.
func (o operation) request(coll string) (string, hdr, string) {
	path := strings.NewReplacer("{c}", coll, "{id}", "x", "{file}", "app.js", "{session}", testSession).Replace(o.path)
	if o.path == "/ui/client/{file}" {
		path = "/ui/client/patchd.js"
	}
	switch {
	case o.method == "POST" && o.path == "/batch":
		return path, hdr{"Content-Type", ctJSON}, `{"writes":[{"method":"PUT","path":"/docs/` + coll + `/x","headers":{"If-Match":"*"},"body":{"k":1}}]}`
	case o.method == "POST" && strings.HasSuffix(o.path, "/revert"):
		return path, hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"seq":1}`
	case o.method == "PUT" && strings.Contains(o.path, "/presence/"):
		return path, hdr{"Content-Type", ctJSON}, `{"name":"Ann"}`
	case o.method == "POST" && o.path == "/events":
		return path, hdr{"Content-Type", ctJSON}, `{"docs":[{"c":"` + coll + `","id":"x"}]}`
	}
	switch o.method {
	case "POST":
		return path, hdr{"Content-Type", ctJSON}, `{"k":1}`
	case "PUT":
		return path, hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"k":1}`
	case "PATCH":
		return path, hdr{"Content-Type", ctMerge, "If-Match", "*"}, `{"k":2}`
	case "DELETE":
		return path, hdr{"If-Match", "*"}, ""
	}
	return path, nil, ""
}

// testSession is a valid presence session id.
const testSession = "0123456789abcdef"

// faultyPresence fails every call with err.
type faultyPresence struct{ err error }

func (f faultyPresence) PutPresence(context.Context, store.PresenceSession, time.Duration) (time.Time, error) {
	return time.Time{}, f.err
}
func (f faultyPresence) EndPresence(context.Context, string, string, string, string) error {
	return f.err
}
func (f faultyPresence) ListPresence(context.Context, string, string) ([]store.PresenceSession, error) {
	return nil, f.err
}
func (f faultyPresence) WatchPresence(context.Context) (<-chan store.Event, error) { return nil, f.err }

// faultyStore fails every call: it injects the faults that give 500s.
type faultyStore struct{ store.Store }

var errInjected = errors.New("injected fault")

func (faultyStore) Get(context.Context, string, string) (*store.Document, error) {
	return nil, errInjected
}
func (faultyStore) ETag(context.Context, string, string) (string, error) {
	return "", errInjected
}
func (faultyStore) Update(context.Context, string, string, store.UpdateFunc) (*store.Document, error) {
	return nil, errInjected
}
func (faultyStore) UpdateMany(context.Context, []store.Key, store.ManyFunc) ([]*store.Document, error) {
	return nil, errInjected
}
func (faultyStore) List(context.Context, string, string, int) ([]store.ListEntry, bool, error) {
	return nil, false, errInjected
}
func (faultyStore) History(context.Context, string, string, uint64, int, int) ([]store.Version, bool, error) {
	return nil, false, errInjected
}
func (faultyStore) Backup(context.Context, io.Writer, func(int64)) (int64, error) {
	return 0, errInjected
}

// noSpaceStore fails every write and backup as the bbolt store does when
// its device is full.
type noSpaceStore struct{ store.Store }

func errNoSpace() error {
	return fmt.Errorf("store: %w: %w", store.ErrNoSpace, &os.PathError{Op: "write", Path: "patchd.db", Err: syscall.ENOSPC})
}

func (noSpaceStore) Update(context.Context, string, string, store.UpdateFunc) (*store.Document, error) {
	return nil, errNoSpace()
}
func (noSpaceStore) UpdateMany(context.Context, []store.Key, store.ManyFunc) ([]*store.Document, error) {
	return nil, errNoSpace()
}
func (noSpaceStore) Backup(context.Context, io.Writer, func(int64)) (int64, error) {
	return 0, errNoSpace()
}

// blockingBackup holds every backup until released.
type blockingBackup struct {
	store.Backuper
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockingBackup) Backup(ctx context.Context, w io.Writer, start func(int64)) (int64, error) {
	b.once.Do(func() { close(b.entered) })
	<-b.release
	return b.Backuper.Backup(ctx, w, start)
}

// unavailableStore fails every call as a store whose database is down.
type unavailableStore struct{ store.Store }

var errDown = fmt.Errorf("%w: injected: connection refused", store.ErrUnavailable)

func (unavailableStore) Get(context.Context, string, string) (*store.Document, error) {
	return nil, errDown
}
func (unavailableStore) ETag(context.Context, string, string) (string, error) { return "", errDown }
func (unavailableStore) Update(context.Context, string, string, store.UpdateFunc) (*store.Document, error) {
	return nil, errDown
}
func (unavailableStore) UpdateMany(context.Context, []store.Key, store.ManyFunc) ([]*store.Document, error) {
	return nil, errDown
}
func (unavailableStore) List(context.Context, string, string, int) ([]store.ListEntry, bool, error) {
	return nil, false, errDown
}
func (unavailableStore) History(context.Context, string, string, uint64, int, int) ([]store.Version, bool, error) {
	return nil, false, errDown
}
func (unavailableStore) Idempotency(context.Context, string) (*store.IdempotencyRecord, error) {
	return nil, errDown
}
func (unavailableStore) Ping(context.Context) error { return errDown }

// loadBrokenHistory stores a document whose history does not describe it,
// so that rebasing over it fails (412 rebase-apply-failed). It returns the
// ETag of the older version.
func loadBrokenHistory(t *testing.T, st *bolt.Store, coll, id string) string {
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
// with kin-openapi. Every operation is also called without a token, with
// an unknown one, with one its role does not allow and with one it does on
// a server with tokens, and over the limit on a rate-limited server; the
// change feed's streams are opened and their first events checked. It
// then checks that every answer the description documents was seen.
func TestOpenAPIConformance(t *testing.T) {
	x := newExchangeChecker(t)
	doc := x.doc

	s := startServer(t, withCORS, func(c *config) { c.http.MaxBody = 4096; c.doc.Limits.MaxDoc = 2048 })
	lax := startServer(t, withCORS, func(c *config) { c.doc.RequireIfMatch = false })
	tight := startServer(t, withCORS, func(c *config) { c.doc.Rebase.MaxOps = 1 })
	authd := startServer(t, withCORS, withTokens(t))
	// One request every 1000 s: every request after the first is limited,
	// however slow the machine.
	limited := startServer(t, withCORS, func(c *config) { c.http.Rate = 0.001 })
	uiOff := startServer(t, withCORS, func(c *config) { c.http.UI = false })
	// A server with room for one stream, and one with too few file
	// descriptors left for any.
	oneStream := startServer(t, withCORS, func(c *config) { c.http.Streams.Max = 1 })
	noFiles := startServer(t, withCORS, func(c *config) {
		c.http.Streams.OpenFiles = func() (int, int, error) { return 1000, 1024, nil }
	})
	bst, err := bolt.Open(filepath.Join(t.TempDir(), "f.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bst.Close() })
	faulty := &server{Server: httptest.NewServer(newHandler(faultyStore{bst}, newConfig(withCORS, func(c *config) {
		c.http.Backup = faultyStore{bst}
		c.http.Presence = faultyPresence{errInjected}
	})).Echo())}
	t.Cleanup(faulty.Close)
	full := &server{Server: httptest.NewServer(newHandler(noSpaceStore{bst}, newConfig(withCORS, func(c *config) { c.http.Backup = noSpaceStore{bst} })).Echo())}
	t.Cleanup(full.Close)
	// A decode budget of 16 KiB that a slow upload holds: bodies of 16 KiB
	// or more are refused (503 overloaded) after waiting 20 ms.
	var busyH *handlers.Handler
	busy := startServerWith(t, nil, func(h *handlers.Handler, _ *echo.Echo) { busyH = h }, withCORS,
		func(c *config) { c.http.DecodeBudget, c.http.OverloadWait = 16<<10, 20*time.Millisecond })
	busy.create(t, "/docs/c/d", `{"a":1}`)
	stopUpload := make(chan struct{})
	t.Cleanup(func() { close(stopUpload) })
	slowUpload(t, busy.Listener.Addr().String(), "/docs/c/slow", 20<<10, stopUpload)
	waitBudgetHeld(t, busyH, 16<<10)
	big := `{"a":"` + strings.Repeat("x", 17<<10) + `"}`
	down := &server{Server: httptest.NewServer(newHandler(unavailableStore{bst}, newConfig(withCORS, func(c *config) {
		c.http.Presence = faultyPresence{store.ErrUnavailable}
	})).Echo())}
	// Room for one presence session per document, taken by a session
	// that outlives the test however slowly it runs.
	crowded := startServer(t, withCORS, func(c *config) {
		c.http.Presence = store.NewMemoryPresence(store.PresenceLimits{PerDocument: 1}, nil)
		c.http.PresenceTTL = time.Hour
	})
	expect(t, crowded.do(t, "PUT", "/docs/c/d/presence/"+testSession, hdr{"Content-Type", ctJSON}, `{}`), 200, "")
	t.Cleanup(down.Close)
	// Keeps one version per document: the answers of idempotent requests
	// are gone as soon as another write follows them.
	gone := startServerAt(t, filepath.Join(t.TempDir(), "g.db"), store.Options{Retention: store.Retention{Versions: 1, Age: -1}}, withCORS)

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
	i0 := s.create(t, "/docs/i/p", `{"a":0}`)
	x.exchange(t, authd, "PUT", "/docs/a/x", append(bearer(tokWriteA), "Content-Type", ctJSON), `{"a":1}`, reqValid, 201, "")
	x.exchange(t, limited, "GET", "/docs/c", nil, "", reqValid, 200, "") // takes the one request allowed
	g0 := gone.create(t, "/docs/g/p", `{"a":0}`)
	goneP := hdr{"Content-Type", ctMerge, "If-Match", g0, "Idempotency-Key", `"gone-1"`}
	g1 := x.exchange(t, gone, "PATCH", "/docs/g/p", goneP, `{"a":1}`, reqValid, 200, "").header.Get("ETag")
	expect(t, gone.do(t, "PUT", "/docs/g/p", hdr{"Content-Type", ctJSON, "If-Match", g1}, `{"a":2}`), 200, "")
	goneC := hdr{"Content-Type", ctJSON, "Idempotency-Key", `"gone-2"`}
	created := x.exchange(t, gone, "POST", "/docs/g", goneC, `{"n":1}`, reqValid, 201, "")
	expect(t, gone.do(t, "PUT", created.header.Get("Location"), hdr{"Content-Type", ctJSON, "If-Match", created.header.Get("ETag")}, `{"n":2}`), 200, "")

	// Reverts, schemas and batches.
	rv := func(id string, bodies ...string) string {
		e := s.create(t, "/docs/rv/"+id, bodies[0])
		for _, b := range bodies[1:] {
			r := s.do(t, "PATCH", "/docs/rv/"+id, hdr{"Content-Type", ctMerge, "If-Match", e}, b)
			expect(t, r, 200, "")
			e = r.header.Get("ETag")
		}
		return e
	}
	rvOK := rv("ok", `{"a":1,"b":1}`, `{"a":2}`)
	rv("min", `{"a":1}`, `{"a":2}`)
	rvC := rv("c", `{"a":1}`, `{"a":2}`, `{"a":3}`)
	expect(t, s.do(t, "DELETE", "/docs/rv/del", hdr{"If-Match", rv("del", `{"a":1}`)}, ""), 204, "")
	const formSchema = `{"type":"object","properties":{"n":{"type":"integer","maximum":10},"plan":{"enum":["free","pro"]},"seats":{"type":"integer","minimum":1}},` +
		`"if":{"properties":{"plan":{"const":"free"}},"required":["plan"]},"then":{"properties":{"seats":{"maximum":5}}}}`
	svOld := s.create(t, "/docs/sv/old", `{"n":50}`) // before the schema: stays, and shows as a violation
	expect(t, s.do(t, "PUT", "/schemas/sv", hdr{"Content-Type", ctJSON, "If-None-Match", "*"}, formSchema), 201, "")
	svOld2 := s.do(t, "PATCH", "/docs/sv/old", hdr{"Content-Type", ctMerge, "If-Match", svOld}, `{"n":5}`)
	expect(t, svOld2, 200, "")
	sv0 := s.create(t, "/docs/sv/skew", `{"plan":"pro","seats":3}`)
	expect(t, s.do(t, "PATCH", "/docs/sv/skew", hdr{"Content-Type", ctMerge, "If-Match", sv0}, `{"plan":"free"}`), 200, "")
	scSchema := `{"type":"object"}`
	lax.create(t, "/docs/c/t", `{"a":1}`)
	batchOf := func(writes ...string) string { return `{"writes":[` + strings.Join(writes, ",") + `]}` }
	oneStream.create(t, "/docs/c/d", `{"a":1}`)
	holdStream(t, oneStream, "/docs/c/d/events") // takes the one stream allowed
	s.create(t, "/docs/o/a", `{"n":2,"s":"x"}`)
	s.create(t, "/docs/o/b", `{"n":1}`)
	s.create(t, "/docs/o/c", `{"s":"y"}`)
	orderedNext := func() string { // the next of an ordered first page
		r := s.do(t, "GET", "/docs/o?order=/n&limit=1", nil, "")
		expect(t, r, 200, "")
		var page struct{ Next string }
		if err := json.Unmarshal(r.body, &page); err != nil || page.Next == "" {
			t.Fatalf("ordered page %s: %v", r.body, err)
		}
		return page.Next
	}()
	sub := func(v string) string { return url.QueryEscape(v) }
	docsSub := `{"docs":[{"c":"c","id":"d"}]}`

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
		{"Health/StoreDown", down, "GET", "/healthz", nil, "", V, 200, ""},
		{"Ready", s, "GET", "/readyz", nil, "", V, 200, ""},
		{"Ready/StoreDown", down, "GET", "/readyz", nil, "", V, 503, "unavailable"},
		{"HealthHead", s, "HEAD", "/healthz", nil, "", V, 200, ""},
		{"ReadyHead", s, "HEAD", "/readyz", nil, "", V, 200, ""},
		{"ReadyHead/StoreDown", down, "HEAD", "/readyz", nil, "", V, 503, ""},
		{"OpenAPIHead", s, "HEAD", "/openapi.json", nil, "", V, 200, ""},
		{"MetricsHead", s, "HEAD", "/metrics", nil, "", V, 200, ""},
		{"DemoHead", s, "HEAD", "/", nil, "", V, 200, ""},
		{"DemoFileHead", s, "HEAD", "/ui/app.js", nil, "", V, 200, ""},
		{"List/Unavailable", down, "GET", "/docs/c", nil, "", V, 503, "unavailable"},
		{"ListHead/Unavailable", down, "HEAD", "/docs/c", nil, "", V, 503, ""},
		{"Post/Unavailable", down, "POST", "/docs/p", hdr{"Content-Type", ctJSON}, `{}`, V, 503, "unavailable"},
		{"Post/AnswerGone", gone, "POST", "/docs/g", goneC, `{"n":1}`, V, 410, "idempotency-answer-gone"},
		{"Get/Unavailable", down, "GET", "/docs/c/d", nil, "", V, 503, "unavailable"},
		{"Head/Unavailable", down, "HEAD", "/docs/c/d", nil, "", V, 503, ""},
		{"Put/Unavailable", down, "PUT", "/docs/c/d", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{}`, V, 503, "unavailable"},
		{"Patch/Unavailable", down, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", "*"}, `{}`, V, 503, "unavailable"},
		{"Patch/AnswerGone", gone, "PATCH", "/docs/g/p", goneP, `{"a":1}`, V, 410, "idempotency-answer-gone"},
		{"Delete/Unavailable", down, "DELETE", "/docs/c/d", hdr{"If-Match", "*"}, "", V, 503, "unavailable"},
		{"History/Unavailable", down, "GET", "/docs/c/d/history", nil, "", V, 503, "unavailable"},
		{"HistoryHead/Unavailable", down, "HEAD", "/docs/c/d/history", nil, "", V, 503, ""},
		{"Events/Unavailable", down, "GET", "/docs/c/d/events", nil, "", V, 503, "unavailable"},
		{"OpenAPI", s, "GET", "/openapi.json", nil, "", V, 200, ""},
		{"Metrics", s, "GET", "/metrics", nil, "", V, 200, ""},
		{"MetricsOpenMetrics", s, "GET", "/metrics", hdr{"Accept", "application/openmetrics-text; version=1.0.0"}, "", V, 200, ""},
		{"Backup", s, "GET", "/admin/backup", nil, "", V, 200, ""},
		{"Backup/Fault", faulty, "GET", "/admin/backup", nil, "", V, 500, "internal"},
		{"Backup/Full", full, "GET", "/admin/backup", nil, "", V, 507, "insufficient-storage"},

		{"List", s, "GET", "/docs/c", nil, "", V, 200, ""},
		{"List/Page", s, "GET", "/docs/c?limit=1&after=", hdr{"X-Request-Id", "trace-1"}, "", V, 200, ""},
		{"List/Empty", s, "GET", "/docs/none", nil, "", V, 200, ""},
		{"List/BadLimit", s, "GET", "/docs/c?limit=0", nil, "", I, 400, "invalid-request"},
		{"List/BadAfter", s, "GET", "/docs/c?after=..", nil, "", I, 400, "invalid-request"},
		{"List/Fault", faulty, "GET", "/docs/c", nil, "", V, 500, "internal"},
		{"List/Bodies", s, "GET", "/docs/o?include=body", nil, "", V, 200, ""},
		{"List/Where", s, "GET", "/docs/o?include=body&where=" + sub(`{"/n":{"ge":1},"/s":{"exists":true}}`), nil, "", V, 200, ""},
		{"List/Order", s, "GET", "/docs/o?order=-/n&limit=2", nil, "", V, 200, ""},
		{"List/OrderNext", s, "GET", "/docs/o?order=/n&limit=1&after=" + orderedNext, nil, "", V, 200, ""},
		{"List/BadInclude", s, "GET", "/docs/o?include=all", nil, "", I, 400, "invalid-request"},
		{"List/BadWhere", s, "GET", "/docs/o?where=" + sub(`{"n":1}`), nil, "", V, 400, "invalid-request"},
		{"List/BadOperator", s, "GET", "/docs/o?where=" + sub(`{"/n":{"lt":[1]}}`), nil, "", V, 400, "invalid-request"},
		{"List/BadOrder", s, "GET", "/docs/o?order=n", nil, "", I, 400, "invalid-request"},
		{"List/BadOrderAfter", s, "GET", "/docs/o?order=/n&after=x", nil, "", V, 400, "invalid-request"},
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
		{"Post/Full", full, "POST", "/docs/p", hdr{"Content-Type", ctJSON}, `{}`, V, 507, "insufficient-storage"},
		{"Post/Overloaded", busy, "POST", "/docs/p", hdr{"Content-Type", ctJSON}, big, V, 503, "overloaded"},
		{"Post/Idempotent", s, "POST", "/docs/i", hdr{"Content-Type", ctJSON, "Idempotency-Key", `"k-1"`}, `{"n":1}`, V, 201, ""},
		{"Post/IdempotentReplay", s, "POST", "/docs/i", hdr{"Content-Type", ctJSON, "Idempotency-Key", `"k-1"`}, `{"n":1}`, V, 201, ""},
		{"Post/IdempotentMinimal", s, "POST", "/docs/i", hdr{"Content-Type", ctJSON, "Idempotency-Key", "k-2", "Prefer", "return=minimal"}, `{"n":2}`, V, 201, ""},
		{"Post/IdempotentMinimalReplay", s, "POST", "/docs/i", hdr{"Content-Type", ctJSON, "Idempotency-Key", "k-2", "Prefer", "return=minimal"}, `{"n":2}`, V, 201, ""},
		{"Post/KeyReused", s, "POST", "/docs/i", hdr{"Content-Type", ctJSON, "Idempotency-Key", `"k-1"`}, `{"n":3}`, V, 422, "idempotency-key-reused"},
		{"Post/BadKey", s, "POST", "/docs/i", hdr{"Content-Type", ctJSON, "Idempotency-Key", `"unterminated`}, `{}`, I, 400, "invalid-request"},
		{"Post/LongKey", s, "POST", "/docs/i", hdr{"Content-Type", ctJSON, "Idempotency-Key", strings.Repeat("k", 256)}, `{}`, I, 400, "invalid-request"},
		{"Post/TwoKeys", s, "POST", "/docs/i", hdr{"Content-Type", ctJSON, "Idempotency-Key", "k-3", "Idempotency-Key", "k-4"}, `{}`, A, 400, "invalid-request"},
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
		{"Put/Full", full, "PUT", "/docs/c/d", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{}`, V, 507, "insufficient-storage"},
		{"Put/Overloaded", busy, "PUT", "/docs/c/d", hdr{"Content-Type", ctJSON, "If-Match", "*"}, big, V, 503, "overloaded"},

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
		{"Patch/Full", full, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", "*"}, `{}`, V, 507, "insufficient-storage"},
		{"Patch/Overloaded", busy, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", "*"}, big, V, 503, "overloaded"},
		{"Patch/Idempotent", s, "PATCH", "/docs/i/p", hdr{"Content-Type", ctMerge, "If-Match", i0, "Idempotency-Key", `"p-1"`}, `{"a":1}`, V, 200, ""},
		{"Patch/IdempotentReplay", s, "PATCH", "/docs/i/p", hdr{"Content-Type", ctMerge, "If-Match", i0, "Idempotency-Key", `"p-1"`}, `{"a":1}`, V, 200, ""},
		{"Patch/IdempotentMinimal", s, "PATCH", "/docs/i/p", hdr{"Content-Type", ctMerge, "If-Match", "*", "Prefer", "return=minimal", "Idempotency-Key", `"p-2"`}, `{"b":1}`, V, 204, ""},
		{"Patch/IdempotentMinimalReplay", s, "PATCH", "/docs/i/p", hdr{"Content-Type", ctMerge, "If-Match", "*", "Prefer", "return=minimal", "Idempotency-Key", `"p-2"`}, `{"b":1}`, V, 204, ""},
		{"Patch/KeyReused", s, "PATCH", "/docs/i/p", hdr{"Content-Type", ctMerge, "If-Match", i0, "Idempotency-Key", `"p-1"`}, `{"a":2}`, V, 422, "idempotency-key-reused"},
		{"Patch/BadKey", s, "PATCH", "/docs/i/p", hdr{"Content-Type", ctMerge, "If-Match", "*", "Idempotency-Key", "two words"}, `{}`, I, 400, "invalid-request"},

		{"Delete/BadID", s, "DELETE", "/docs/c/a%20b", hdr{"If-Match", "*"}, "", I, 400, "invalid-request"},
		{"Delete/NotFound", s, "DELETE", "/docs/c/missing", hdr{"If-Match", "*"}, "", V, 404, "not-found"},
		{"Delete/Stale", s, "DELETE", "/docs/r/x", hdr{"If-Match", r0, "Prefer", "handling=strict"}, "", V, 412, "precondition-failed"},
		{"Delete/Required", s, "DELETE", "/docs/r/x", nil, "", V, 428, "precondition-required"},
		{"Delete", s, "DELETE", "/docs/c/new2", hdr{"If-Match", etagOf(`{"z":1}`)}, "", V, 204, ""},
		{"Delete/Fault", faulty, "DELETE", "/docs/c/d", hdr{"If-Match", "*"}, "", V, 500, "internal"},
		{"Delete/Full", full, "DELETE", "/docs/c/d", hdr{"If-Match", "*"}, "", V, 507, "insufficient-storage"},
		{"DocumentOptions", s, "OPTIONS", "/docs/c/d", nil, "", V, 204, ""},
		{"DocumentOptions/BadName", s, "OPTIONS", "/docs/c/a%20b", nil, "", I, 400, "invalid-request"},
		{"CollectionOptions/BadName", s, "OPTIONS", "/docs/bad%20c", nil, "", I, 400, "invalid-request"},
		{"PresenceOptions/BadSession", s, "OPTIONS", "/docs/c/d/presence/short", nil, "", I, 400, "invalid-request"},
		{"EventsOptions/BadName", s, "OPTIONS", "/docs/c/a%20b/events", nil, "", I, 400, "invalid-request"},
		{"HistoryOptions/BadName", s, "OPTIONS", "/docs/c/a%20b/history", nil, "", I, 400, "invalid-request"},
		{"PresenceListOptions/BadName", s, "OPTIONS", "/docs/c/a%20b/presence", nil, "", I, 400, "invalid-request"},
		{"RevertOptions/BadName", s, "OPTIONS", "/docs/c/a%20b/revert", nil, "", I, 400, "invalid-request"},
		{"SchemaOptions/BadName", s, "OPTIONS", "/schemas/bad%20c", nil, "", I, 400, "invalid-request"},
		{"ViolationsOptions/BadName", s, "OPTIONS", "/schemas/bad%20c/violations", nil, "", I, 400, "invalid-request"},

		{"Put/DryRun", s, "PUT", "/docs/c/dry?dryRun=true", hdr{"Content-Type", ctJSON}, `{"z":1}`, V, 201, ""},
		{"Put/BadDryRun", s, "PUT", "/docs/c/dry?dryRun=yes", hdr{"Content-Type", ctJSON}, `{"z":1}`, I, 400, "invalid-request"},
		{"Put/SchemaViolation", s, "PUT", "/docs/sv/new", hdr{"Content-Type", ctJSON}, `{"n":99}`, V, 422, "schema-violation"},
		{"Post/SchemaViolation", s, "POST", "/docs/sv", hdr{"Content-Type", ctJSON}, `{"plan":"gold"}`, V, 422, "schema-violation"},
		{"Patch/SchemaViolation", s, "PATCH", "/docs/sv/old", hdr{"Content-Type", ctMerge, "If-Match", svOld2.header.Get("ETag")}, `{"n":11}`, V, 422, "schema-violation"},
		{"Patch/SchemaRebaseConflict", s, "PATCH", "/docs/sv/skew", hdr{"Content-Type", ctMerge, "If-Match", sv0}, `{"seats":25}`, V, 412, "rebase-conflict"},
		{"Patch/DryRun", s, "PATCH", "/docs/c/d?dryRun=true", hdr{"Content-Type", ctMerge, "If-Match", "*"}, `{"dry":1}`, V, 200, ""},

		{"Revert", s, "POST", "/docs/rv/ok/revert", hdr{"Content-Type", ctJSON, "If-Match", rvOK}, `{"seq":2}`, V, 200, ""},
		{"Revert/Minimal", s, "POST", "/docs/rv/min/revert", hdr{"Content-Type", ctJSON, "If-Match", "*", "Prefer", "return=minimal"}, `{"seq":2}`, V, 204, ""},
		{"Revert/Undelete", s, "POST", "/docs/rv/del/revert", hdr{"Content-Type", ctJSON}, `{"seq":2}`, V, 201, ""},
		{"Revert/DryRun", s, "POST", "/docs/rv/c/revert?dryRun=true", hdr{"Content-Type", ctJSON, "If-Match", rvC}, `{"seq":3}`, V, 200, ""},
		{"Revert/Create", s, "POST", "/docs/rv/ok/revert", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"seq":1}`, V, 422, "cannot-revert"},
		{"Revert/SchemaViolation", s, "POST", "/docs/sv/old/revert", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"seq":2}`, V, 422, "schema-violation"},
		{"Revert/BadSeq", s, "POST", "/docs/rv/ok/revert", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"seq":0}`, I, 400, "invalid-request"},
		{"Revert/Extra", s, "POST", "/docs/rv/ok/revert", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"seq":1,"x":1}`, I, 400, "invalid-request"},
		{"Revert/InvalidJSON", s, "POST", "/docs/rv/ok/revert", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"seq":`, I, 400, "invalid-json"},
		{"Revert/NotFound", s, "POST", "/docs/rv/missing/revert", hdr{"Content-Type", ctJSON}, `{"seq":1}`, V, 404, "not-found"},
		{"Revert/NeverSeen", s, "POST", "/docs/rv/ok/revert", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"seq":99}`, V, 412, "base-unknown"},
		{"Revert/Conflict", s, "POST", "/docs/rv/c/revert", hdr{"Content-Type", ctJSON, "If-Match", rvC}, `{"seq":2}`, V, 412, "rebase-conflict"},
		{"Revert/TooLarge", s, "POST", "/docs/rv/ok/revert", hdr{"Content-Type", ctJSON}, `{"seq":1,"x":"` + strings.Repeat("x", 5000) + `"}`, A, 413, "too-large"},
		{"Revert/MediaType", s, "POST", "/docs/rv/ok/revert", hdr{"Content-Type", "text/plain"}, `{"seq":1}`, I, 415, "unsupported-media-type"},
		{"Revert/Required", s, "POST", "/docs/rv/c/revert", hdr{"Content-Type", ctJSON}, `{"seq":3}`, V, 428, "precondition-required"},
		{"Revert/Fault", faulty, "POST", "/docs/rv/ok/revert", hdr{"Content-Type", ctJSON}, `{"seq":1}`, V, 500, "internal"},
		{"RevertOptions", s, "OPTIONS", "/docs/rv/ok/revert", nil, "", V, 204, ""},

		{"Schema/Create", s, "PUT", "/schemas/sc", hdr{"Content-Type", ctJSON, "If-None-Match", "*"}, scSchema, V, 201, ""},
		{"Schema/CreateMinimal", s, "PUT", "/schemas/sc2", hdr{"Content-Type", ctJSON, "Prefer", "return=minimal"}, scSchema, V, 201, ""},
		{"Schema/Replace", s, "PUT", "/schemas/sc", hdr{"Content-Type", ctJSON, "If-Match", etagOf(scSchema)}, `{"type":"object","required":["a"]}`, V, 200, ""},
		{"Schema/ReplaceMinimal", s, "PUT", "/schemas/sc", hdr{"Content-Type", ctJSON, "If-Match", etagOf(`{"required":["a"],"type":"object"}`), "Prefer", "return=minimal"}, scSchema, V, 204, ""},
		{"Schema/DryRun", s, "PUT", "/schemas/sc3?dryRun=true", hdr{"Content-Type", ctJSON}, scSchema, V, 201, ""},
		{"Schema/Invalid", s, "PUT", "/schemas/bad", hdr{"Content-Type", ctJSON}, `{"type":5}`, V, 422, "invalid-schema"},
		{"Schema/RemoteRef", s, "PUT", "/schemas/bad", hdr{"Content-Type", ctJSON}, `{"$ref":"https://example.com/s.json"}`, V, 422, "invalid-schema"},
		{"Schema/Cycle", s, "PUT", "/schemas/bad", hdr{"Content-Type", ctJSON}, `{"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"allOf":[{"$ref":"#/$defs/a"}]}},"$ref":"#/$defs/a"}`, V, 422, "invalid-schema"},
		{"Schema/NotObject", s, "PUT", "/schemas/bad", hdr{"Content-Type", ctJSON}, `true`, I, 422, "invalid-schema"},
		{"Schema/InvalidJSON", s, "PUT", "/schemas/bad", hdr{"Content-Type", ctJSON}, `{"type":`, I, 400, "invalid-json"},
		{"Schema/BadName", s, "PUT", "/schemas/a%20b", hdr{"Content-Type", ctJSON}, `{}`, I, 400, "invalid-request"},
		{"Schema/TooLarge", s, "PUT", "/schemas/big", hdr{"Content-Type", ctJSON}, `{"description":"` + strings.Repeat("x", 5000) + `"}`, A, 413, "too-large"},
		{"Schema/MediaType", s, "PUT", "/schemas/sc", hdr{"Content-Type", "text/plain"}, `{}`, I, 415, "unsupported-media-type"},
		{"Schema/Stale", s, "PUT", "/schemas/sc", hdr{"Content-Type", ctJSON, "If-Match", etagOf(`{"required":["a"],"type":"object"}`)}, `{}`, V, 412, "precondition-failed"},
		{"Schema/Required", s, "PUT", "/schemas/sc", hdr{"Content-Type", ctJSON}, `{}`, V, 428, "precondition-required"},
		{"Schema/Fault", faulty, "PUT", "/schemas/sc", hdr{"Content-Type", ctJSON}, `{}`, V, 500, "internal"},
		{"GetSchema", s, "GET", "/schemas/sc", nil, "", V, 200, ""},
		{"GetSchema/NotModified", s, "GET", "/schemas/sc", hdr{"If-None-Match", etagOf(scSchema)}, "", V, 304, ""},
		{"GetSchema/BadName", s, "GET", "/schemas/a%20b", nil, "", I, 400, "invalid-request"},
		{"GetSchema/NotFound", s, "GET", "/schemas/none", nil, "", V, 404, "not-found"},
		{"GetSchema/IfMatch", s, "GET", "/schemas/sc", hdr{"If-Match", `"0000"`}, "", V, 412, "precondition-failed"},
		{"GetSchema/Fault", faulty, "GET", "/schemas/sc", nil, "", V, 500, "internal"},
		{"HeadSchema", s, "HEAD", "/schemas/sc", nil, "", V, 200, ""},
		{"HeadSchema/NotModified", s, "HEAD", "/schemas/sc", hdr{"If-None-Match", "*"}, "", V, 304, ""},
		{"HeadSchema/BadName", s, "HEAD", "/schemas/a%20b", nil, "", I, 400, ""},
		{"HeadSchema/NotFound", s, "HEAD", "/schemas/none", nil, "", V, 404, ""},
		{"HeadSchema/IfMatch", s, "HEAD", "/schemas/sc", hdr{"If-Match", `"0000"`}, "", V, 412, ""},
		{"HeadSchema/Fault", faulty, "HEAD", "/schemas/sc", nil, "", V, 500, ""},
		{"Violations", s, "GET", "/schemas/sv/violations", nil, "", V, 200, ""},
		{"Violations/BadLimit", s, "GET", "/schemas/sv/violations?limit=0", nil, "", I, 400, "invalid-request"},
		{"Violations/NotFound", s, "GET", "/schemas/none/violations", nil, "", V, 404, "not-found"},
		{"Violations/Fault", faulty, "GET", "/schemas/sv/violations", nil, "", V, 500, "internal"},
		{"Violations/Unavailable", down, "GET", "/schemas/sv/violations", nil, "", V, 503, "unavailable"},
		{"ViolationsHead/Unavailable", down, "HEAD", "/schemas/sv/violations", nil, "", V, 503, ""},
		{"ViolationsHead", s, "HEAD", "/schemas/sv/violations", nil, "", V, 200, ""},
		{"ViolationsHead/BadLimit", s, "HEAD", "/schemas/sv/violations?limit=0", nil, "", I, 400, ""},
		{"ViolationsHead/NotFound", s, "HEAD", "/schemas/none/violations", nil, "", V, 404, ""},
		{"ViolationsHead/Fault", faulty, "HEAD", "/schemas/sv/violations", nil, "", V, 500, ""},
		{"ViolationsOptions", s, "OPTIONS", "/schemas/sv/violations", nil, "", V, 204, ""},
		{"DeleteSchema/Stale", s, "DELETE", "/schemas/sc2", hdr{"If-Match", `"0123456789abcdef0123456789abcdef"`}, "", V, 412, "precondition-failed"},
		{"DeleteSchema/Required", s, "DELETE", "/schemas/sc2", nil, "", V, 428, "precondition-required"},
		{"DeleteSchema", s, "DELETE", "/schemas/sc2", hdr{"If-Match", etagOf(scSchema)}, "", V, 204, ""},
		{"DeleteSchema/NotFound", s, "DELETE", "/schemas/sc2", hdr{"If-Match", "*"}, "", V, 404, "not-found"},
		{"DeleteSchema/BadName", s, "DELETE", "/schemas/a%20b", hdr{"If-Match", "*"}, "", I, 400, "invalid-request"},
		{"DeleteSchema/Fault", faulty, "DELETE", "/schemas/sc", hdr{"If-Match", "*"}, "", V, 500, "internal"},
		{"SchemaOptions", s, "OPTIONS", "/schemas/sc", nil, "", V, 204, ""},

		{"Batch", s, "POST", "/batch", hdr{"Content-Type", ctJSON}, batchOf(
			`{"method":"PUT","path":"/docs/bt/a","body":{"a":1}}`,
			`{"method":"PATCH","path":"/docs/bt/a","headers":{"Content-Type":"application/merge-patch+json","If-Match":"`+strings.ReplaceAll(etagOf(`{"a":1}`), `"`, `\"`)+`"},"body":{"b":2}}`,
			`{"method":"POST","path":"/docs/bt","headers":{"Prefer":"return=minimal"},"body":{"c":3}}`,
			`{"method":"DELETE","path":"/docs/c/new","headers":{"If-Match":"*"}}`), V, 200, ""},
		{"Batch/DryRun", s, "POST", "/batch?dryRun=true", hdr{"Content-Type", ctJSON}, batchOf(`{"method":"PUT","path":"/docs/bt/dry","body":{}}`), V, 200, ""},
		{"Batch/Empty", s, "POST", "/batch", hdr{"Content-Type", ctJSON}, `{"writes":[]}`, I, 400, "invalid-request"},
		{"Batch/NotABatch", s, "POST", "/batch", hdr{"Content-Type", ctJSON}, `[1]`, I, 400, "invalid-request"},
		{"Batch/UnknownMethod", s, "POST", "/batch", hdr{"Content-Type", ctJSON}, batchOf(`{"method":"GET","path":"/docs/c/d"}`), I, 400, "invalid-request"},
		{"Batch/OutsideDocs", s, "POST", "/batch", hdr{"Content-Type", ctJSON}, batchOf(`{"method":"PUT","path":"/admin/backup","body":{}}`), V, 400, "invalid-request"},
		{"Batch/Nested", s, "POST", "/batch", hdr{"Content-Type", ctJSON}, batchOf(`{"method":"POST","path":"/batch","body":{"writes":[]}}`), V, 400, "invalid-request"},
		{"Batch/DuplicateKeys", s, "POST", "/batch", hdr{"Content-Type", ctJSON}, batchOf(
			`{"method":"POST","path":"/docs/bt","headers":{"Idempotency-Key":"k"},"body":{}}`,
			`{"method":"POST","path":"/docs/bt","headers":{"idempotency-key":"k"},"body":{}}`), V, 400, "invalid-request"},
		{"Batch/InvalidPatch", s, "POST", "/batch", hdr{"Content-Type", ctJSON}, batchOf(`{"method":"PATCH","path":"/docs/c/d","headers":{"Content-Type":"application/json-patch+json","If-Match":"*"},"body":[{"op":"nope"}]}`), V, 400, "invalid-patch"},
		{"Batch/InvalidJSON", s, "POST", "/batch", hdr{"Content-Type", ctJSON}, `{"writes":[`, I, 400, "invalid-json"},
		{"Batch/NotFound", s, "POST", "/batch", hdr{"Content-Type", ctJSON}, batchOf(`{"method":"PATCH","path":"/docs/c/missing","headers":{"Content-Type":"application/merge-patch+json","If-Match":"*"},"body":{}}`), V, 404, "not-found"},
		{"Batch/PatchConflict", lax, "POST", "/batch", hdr{"Content-Type", ctJSON}, batchOf(`{"method":"PATCH","path":"/docs/c/t","headers":{"Content-Type":"application/json-patch+json"},"body":[{"op":"remove","path":"/zz"}]}`), V, 409, "patch-conflict"},
		{"Batch/Precondition", s, "POST", "/batch", hdr{"Content-Type", ctJSON}, batchOf(`{"method":"PUT","path":"/docs/c/d","headers":{"If-None-Match":"*"},"body":{}}`), V, 412, "precondition-failed"},
		{"Batch/TooLarge", s, "POST", "/batch", hdr{"Content-Type", ctJSON}, batchOf(`{"method":"PUT","path":"/docs/c/big","body":{"a":"` + strings.Repeat("x", 5000) + `"}}`), A, 413, "too-large"},
		{"Batch/MediaType", s, "POST", "/batch", hdr{"Content-Type", "text/plain"}, batchOf(), I, 415, "unsupported-media-type"},
		{"Batch/WriteMediaType", s, "POST", "/batch", hdr{"Content-Type", ctJSON}, batchOf(`{"method":"PATCH","path":"/docs/c/d","headers":{"Content-Type":"text/plain","If-Match":"*"},"body":{}}`), V, 415, "unsupported-media-type"},
		{"Batch/Unprocessable", s, "POST", "/batch", hdr{"Content-Type", ctJSON}, batchOf(`{"method":"PUT","path":"/docs/c/arr","body":[1]}`), V, 422, "invalid-document"},
		{"Batch/SchemaViolation", s, "POST", "/batch", hdr{"Content-Type", ctJSON}, batchOf(`{"method":"PUT","path":"/docs/bt/ok","body":{}}`, `{"method":"PUT","path":"/docs/sv/b","body":{"n":11}}`), V, 422, "schema-violation"},
		{"Batch/Required", s, "POST", "/batch", hdr{"Content-Type", ctJSON}, batchOf(`{"method":"PUT","path":"/docs/c/d","body":{}}`), V, 428, "precondition-required"},
		{"Batch/Unavailable", down, "POST", "/batch", hdr{"Content-Type", ctJSON}, batchOf(`{"method":"PUT","path":"/docs/c/d","headers":{"If-Match":"*"},"body":{}}`), V, 503, "unavailable"},
		{"Batch/Full", full, "POST", "/batch", hdr{"Content-Type", ctJSON}, batchOf(`{"method":"PUT","path":"/docs/c/d","headers":{"If-Match":"*"},"body":{}}`), V, 507, "insufficient-storage"},
		{"Batch/Fault", faulty, "POST", "/batch", hdr{"Content-Type", ctJSON}, batchOf(`{"method":"PUT","path":"/docs/c/d","body":{}}`), V, 500, "internal"},
		{"Batch/Forbidden", authd, "POST", "/batch", append(bearer(tokWriteA), "Content-Type", ctJSON), batchOf(`{"method":"PUT","path":"/docs/a/y","body":{}}`, `{"method":"PUT","path":"/docs/b/y","body":{}}`), V, 403, "forbidden"},
		{"BatchOptions", s, "OPTIONS", "/batch", nil, "", V, 204, ""},

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
		{"Events/BadAfter", s, "GET", "/docs/c/d/events?after=x", nil, "", I, 400, "invalid-request"},
		{"Events/NegativeAfter", s, "GET", "/docs/c/d/events?after=-1", nil, "", I, 400, "invalid-request"},
		{"Events/BadLastEventID", s, "GET", "/docs/c/d/events", hdr{"Last-Event-ID", "7x"}, "", I, 400, "invalid-request"},
		{"Events/LastEventIDOverflow", s, "GET", "/docs/c/d/events", hdr{"Last-Event-ID", "18446744073709551616"}, "", A, 400, "invalid-request"},
		{"Events/BadID", s, "GET", "/docs/c/a%20b/events", nil, "", I, 400, "invalid-request"},
		{"Events/NotFound", s, "GET", "/docs/c/missing/events", nil, "", V, 404, "not-found"},
		{"Events/Fault", faulty, "GET", "/docs/c/d/events", nil, "", V, 500, "internal"},
		{"Events/FaultResume", faulty, "GET", "/docs/c/d/events?after=1", nil, "", V, 500, "internal"},
		{"EventsOptions", s, "OPTIONS", "/docs/c/d/events", nil, "", V, 204, ""},
		{"Events/TooManyStreams", oneStream, "GET", "/docs/c/d/events", nil, "", V, 429, "rate-limited"},
		{"Events/Overloaded", noFiles, "GET", "/docs/c/d/events", nil, "", V, 503, "overloaded"},
		{"EventsMany/InvalidJSON", s, "POST", "/events", hdr{"Content-Type", ctJSON}, `{"docs":`, I, 400, "invalid-json"},
		{"EventsMany/Nothing", s, "POST", "/events", hdr{"Content-Type", ctJSON}, `{}`, V, 400, "invalid-request"},
		{"EventsMany/BadName", s, "POST", "/events", hdr{"Content-Type", ctJSON}, `{"docs":[{"c":"c","id":".."}]}`, I, 400, "invalid-request"},
		{"EventsMany/BadCursor", s, "POST", "/events", hdr{"Content-Type", ctJSON}, `{"collections":[{"c":"c","after":"bm90IGEgY3Vyc29y"}]}`, V, 400, "invalid-request"},
		{"EventsMany/BadWhere", s, "POST", "/events", hdr{"Content-Type", ctJSON}, `{"collections":[{"c":"c","where":{"/a":{"in":1}}}]}`, V, 400, "invalid-request"},
		{"EventsMany/Twice", s, "POST", "/events", hdr{"Content-Type", ctJSON}, `{"collections":[{"c":"c"},{"c":"c"}]}`, V, 400, "invalid-request"},
		{"EventsMany/TooLarge", s, "POST", "/events", hdr{"Content-Type", ctJSON}, `{"docs":[` + strings.Repeat(`{"c":"c","id":"d"},`, 300) + `{"c":"c","id":"d"}]}`, A, 413, "too-large"},
		{"EventsMany/MediaType", s, "POST", "/events", hdr{"Content-Type", "text/plain"}, docsSub, I, 415, "unsupported-media-type"},
		{"EventsMany/TooManyStreams", oneStream, "POST", "/events", hdr{"Content-Type", ctJSON}, docsSub, V, 429, "rate-limited"},
		{"EventsMany/Overloaded", noFiles, "POST", "/events", hdr{"Content-Type", ctJSON}, docsSub, V, 503, "overloaded"},
		{"EventsManyOptions", s, "OPTIONS", "/events", nil, "", V, 204, ""},

		{"PutPresence", s, "PUT", "/docs/c/d/presence/" + testSession, hdr{"Content-Type", ctJSON}, `{"name":"Ann","color":"#c33","focus":"/a/b","data":{"typing":true}}`, V, 200, ""},
		{"PutPresence/Renew", s, "PUT", "/docs/c/d/presence/" + testSession, hdr{"Content-Type", ctJSON}, `{"name":"Ann","focus":null}`, V, 200, ""},
		{"PutPresence/NoDocument", s, "PUT", "/docs/c/never/presence/" + testSession, hdr{"Content-Type", ctJSON}, `{}`, V, 200, ""},
		{"PutPresence/ShortSession", s, "PUT", "/docs/c/d/presence/short", hdr{"Content-Type", ctJSON}, `{}`, I, 400, "invalid-request"},
		{"PutPresence/BadFocus", s, "PUT", "/docs/c/d/presence/" + testSession, hdr{"Content-Type", ctJSON}, `{"focus":"a/b"}`, I, 400, "invalid-request"},
		{"PutPresence/Unknown", s, "PUT", "/docs/c/d/presence/" + testSession, hdr{"Content-Type", ctJSON}, `{"nick":"a"}`, I, 400, "invalid-request"},
		{"PutPresence/InvalidJSON", s, "PUT", "/docs/c/d/presence/" + testSession, hdr{"Content-Type", ctJSON}, `{"name":`, I, 400, "invalid-json"},
		{"PutPresence/TooLarge", s, "PUT", "/docs/c/d/presence/" + testSession, hdr{"Content-Type", ctJSON}, `{"data":"` + strings.Repeat("x", 1100) + `"}`, A, 413, "too-large"},
		{"PutPresence/MediaType", s, "PUT", "/docs/c/d/presence/" + testSession, hdr{"Content-Type", "text/plain"}, `{}`, I, 415, "unsupported-media-type"},
		{"PutPresence/Full", crowded, "PUT", "/docs/c/d/presence/" + testSession + "2", hdr{"Content-Type", ctJSON}, `{}`, V, 429, "rate-limited"},
		{"PutPresence/Fault", faulty, "PUT", "/docs/c/d/presence/" + testSession, hdr{"Content-Type", ctJSON}, `{}`, V, 500, "internal"},
		{"PutPresence/Unavailable", down, "PUT", "/docs/c/d/presence/" + testSession, hdr{"Content-Type", ctJSON}, `{}`, V, 503, "unavailable"},
		{"GetPresence", s, "GET", "/docs/c/d/presence", nil, "", V, 200, ""},
		{"GetPresence/NoDocument", s, "GET", "/docs/c/none/presence", nil, "", V, 200, ""},
		{"GetPresence/BadID", s, "GET", "/docs/c/a%20b/presence", nil, "", I, 400, "invalid-request"},
		{"GetPresence/Fault", faulty, "GET", "/docs/c/d/presence", nil, "", V, 500, "internal"},
		{"GetPresence/Unavailable", down, "GET", "/docs/c/d/presence", nil, "", V, 503, "unavailable"},
		{"HeadPresence", s, "HEAD", "/docs/c/d/presence", nil, "", V, 200, ""},
		{"HeadPresence/BadID", s, "HEAD", "/docs/c/a%20b/presence", nil, "", I, 400, ""},
		{"HeadPresence/Fault", faulty, "HEAD", "/docs/c/d/presence", nil, "", V, 500, ""},
		{"HeadPresence/Unavailable", down, "HEAD", "/docs/c/d/presence", nil, "", V, 503, ""},
		{"PresenceOptions", s, "OPTIONS", "/docs/c/d/presence", nil, "", V, 204, ""},
		{"PresenceSessionOptions", s, "OPTIONS", "/docs/c/d/presence/" + testSession, nil, "", V, 204, ""},
		{"DeletePresence", s, "DELETE", "/docs/c/d/presence/" + testSession, nil, "", V, 204, ""},
		{"DeletePresence/NotFound", s, "DELETE", "/docs/c/d/presence/" + testSession, nil, "", V, 404, "not-found"},
		{"DeletePresence/BadSession", s, "DELETE", "/docs/c/d/presence/a%20b", nil, "", I, 400, "invalid-request"},
		{"DeletePresence/Fault", faulty, "DELETE", "/docs/c/d/presence/" + testSession, nil, "", V, 500, "internal"},
		{"DeletePresence/Unavailable", down, "DELETE", "/docs/c/d/presence/" + testSession, nil, "", V, 503, "unavailable"},

		{"Demo", s, "GET", "/", nil, "", V, 200, ""},
		{"Demo/Document", s, "GET", "/?c=demo&id=order", nil, "", V, 200, ""},
		{"DemoFile/HTML", s, "GET", "/ui/index.html", nil, "", V, 200, ""},
		{"DemoFile/JS", s, "GET", "/ui/app.js", nil, "", V, 200, ""},
		{"DemoFile/CSS", s, "GET", "/ui/style.css", nil, "", V, 200, ""},
		{"DemoFile/NotFound", s, "GET", "/ui/nope.js", nil, "", V, 404, "not-found"},
		{"DemoFile/Source", s, "GET", "/ui/embed.go", nil, "", V, 404, "not-found"},
		{"ClientFile/JS", s, "GET", "/ui/client/sse.js", nil, "", V, 200, ""},
		{"ClientFile/Types", s, "GET", "/ui/client/patchd.d.ts", nil, "", V, 200, ""},
		{"ClientFile/NotFound", s, "GET", "/ui/client/package.json", nil, "", V, 404, "not-found"},
		{"Demo/NotModified", s, "GET", "/", hdr{"If-None-Match", fileETag(t, web.Demo(), "index.html")}, "", V, 304, ""},
		{"DemoHead/NotModified", s, "HEAD", "/", hdr{"If-None-Match", fileETag(t, web.Demo(), "index.html")}, "", V, 304, ""},
		{"DemoFile/NotModified", s, "GET", "/ui/app.js", hdr{"If-None-Match", "W/" + fileETag(t, web.Demo(), "app.js")}, "", V, 304, ""},
		{"DemoFileHead/NotModified", s, "HEAD", "/ui/app.js", hdr{"If-None-Match", fileETag(t, web.Demo(), "app.js")}, "", V, 304, ""},
		{"ClientFile/NotModified", s, "GET", "/ui/client/sse.js", hdr{"If-None-Match", `"x", ` + fileETag(t, web.Client(), "sse.js")}, "", V, 304, ""},
		{"ClientFileHead/NotModified", s, "HEAD", "/ui/client/sse.js", hdr{"If-None-Match", "*"}, "", V, 304, ""},
		{"Demo/Off", uiOff, "GET", "/", nil, "", V, 404, "not-found"},
		{"DemoOptions/Off", uiOff, "OPTIONS", "/", nil, "", V, 404, "not-found"},
		{"DemoFile/Off", uiOff, "GET", "/ui/app.js", nil, "", V, 404, "not-found"},
		{"DemoFileOptions/Off", uiOff, "OPTIONS", "/ui/app.js", nil, "", V, 404, "not-found"},
		{"ClientFile/Off", uiOff, "GET", "/ui/client/patchd.js", nil, "", V, 404, "not-found"},
		{"ClientFileOptions/Off", uiOff, "OPTIONS", "/ui/client/patchd.js", nil, "", V, 404, "not-found"},
		{"DemoHead/Off", uiOff, "HEAD", "/", nil, "", V, 404, ""},
		{"DemoFileHead/NotFound", s, "HEAD", "/ui/nope.js", nil, "", V, 404, ""},
		{"ClientFileHead/NotFound", s, "HEAD", "/ui/client/package.json", nil, "", V, 404, ""},

		{"CORS/NoOrigin", s, "GET", "/docs/c/d", hdr{"Origin", ""}, "", V, 200, ""},
		{"CORS/OtherOrigin", s, "GET", "/docs/c/d", hdr{"Origin", "https://other.example"}, "", V, 200, ""},
		{"CORS/Preflight", s, "OPTIONS", "/docs/c/d", hdr{"Access-Control-Request-Method", "PATCH", "Access-Control-Request-Headers", "if-match, idempotency-key"}, "", V, 204, ""},
		{"CORS/PreflightOtherOrigin", s, "OPTIONS", "/docs/c/d", hdr{"Origin", "https://other.example", "Access-Control-Request-Method", "PATCH"}, "", V, 204, ""},
		{"CORS/PreflightUnrouted", s, "OPTIONS", "/nowhere", hdr{"Access-Control-Request-Method", "GET"}, "", A, 204, ""},
		{"CORS/PreflightNoToken", authd, "OPTIONS", "/metrics", hdr{"Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "authorization"}, "", V, 204, ""},
		{"CORS/PreflightNotLimited", limited, "OPTIONS", "/docs/c", hdr{"Access-Control-Request-Method", "POST"}, "", V, 204, ""},

		{"Unrouted/NotFound", s, "GET", "/nowhere", nil, "", A, 404, "not-found"},
		{"Unrouted/MethodNotAllowed", s, "POST", "/docs/c/d", hdr{"Content-Type", ctJSON}, `{}`, A, 405, "method-not-allowed"},
		{"Unrouted/PutCollection", s, "PUT", "/docs/c", hdr{"Content-Type", ctJSON}, `{}`, A, 405, "method-not-allowed"},
		{"Unrouted/Unauthorized", authd, "GET", "/nowhere", nil, "", A, 401, "unauthorized"},
		{"Unrouted/NotFoundToken", authd, "GET", "/nowhere", bearer(tokRead), "", A, 404, "not-found"},
		{"Unrouted/MethodNotAllowedToken", authd, "POST", "/docs/a/x", append(bearer(tokRead), "Content-Type", ctJSON), `{}`, A, 405, "method-not-allowed"},
		{"Unrouted/RateLimited", limited, "GET", "/nowhere", nil, "", A, 429, "rate-limited"},
	}
	// Replays carry Idempotent-Replayed; first answers do not.
	replayed := map[string]bool{
		"Post/Idempotent": false, "Post/IdempotentReplay": true, "Post/IdempotentMinimal": false, "Post/IdempotentMinimalReplay": true,
		"Patch/Idempotent": false, "Patch/IdempotentReplay": true, "Patch/IdempotentMinimal": false, "Patch/IdempotentMinimalReplay": true,
	}
	answers := map[string]response{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := x.exchange(t, tc.srv, tc.method, tc.path, tc.h, tc.body, tc.req, tc.status, tc.problem)
			answers[tc.name] = r
			if want, ok := replayed[tc.name]; ok && (r.header.Get("Idempotent-Replayed") == "true") != want {
				t.Fatalf("Idempotent-Replayed %q", r.header.Get("Idempotent-Replayed"))
			}
		})
	}
	for _, pair := range [][2]string{{"Post/Idempotent", "Post/IdempotentReplay"}, {"Patch/Idempotent", "Patch/IdempotentReplay"}} {
		first, again := answers[pair[0]], answers[pair[1]]
		if first.header.Get("ETag") != again.header.Get("ETag") || first.header.Get("Location") != again.header.Get("Location") || !bytes.Equal(first.body, again.body) {
			t.Errorf("%s: the replay differs from the first answer: %v %s, then %v %s", pair[1], first.header, first.body, again.header, again.body)
		}
	}

	t.Run("Streams", func(t *testing.T) {
		ev := x.stream(t, s, "/docs/c/d/events", nil, "snapshot")
		if !strings.Contains(ev.Data, `"value":{`) {
			t.Fatalf("snapshot of a document: %s", ev.Data)
		}
		if ev := x.stream(t, s, "/docs/r/x/events?after=0", nil, "version"); ev.ID != "1" {
			t.Fatalf("after=0 starts at %s", ev.ID)
		}
		if ev := x.stream(t, s, "/docs/r/x/events", hdr{"Last-Event-ID", "1"}, "version"); ev.ID != "2" {
			t.Fatalf("Last-Event-ID 1 resumes at %s", ev.ID)
		}
		x.stream(t, s, "/docs/r/x/events", hdr{"Last-Event-ID", "1000"}, "reset")
		x.stream(t, s, "/docs/r/x/events?after=0", hdr{"Last-Event-ID", "1000"}, "reset") // the header wins
		if ev := x.stream(t, s, "/docs/c/new2/events", hdr{"Origin", ""}, "snapshot"); !strings.Contains(ev.Data, `"etag":null`) {
			t.Fatalf("snapshot of a deleted document: %s", ev.Data)
		}
		post := func(body, want string) sseEvent {
			return x.streamReq(t, s, "POST", "/events", hdr{"Content-Type", ctJSON}, body, want)
		}
		post(`{"docs":[{"c":"c","id":"d"}]}`, "snapshot")
		post(`{"docs":[{"c":"c","id":"never"}]}`, "snapshot")
		post(`{"docs":[{"c":"r","id":"x","after":0}]}`, "version")
		post(`{"docs":[{"c":"r","id":"x","after":1000}]}`, "reset")
		expect(t, s.do(t, "PUT", "/docs/c/p/presence/"+testSession, hdr{"Content-Type", ctJSON}, `{"name":"Ann","focus":"/a"}`), 200, "")
		post(`{"docs":[{"c":"c","id":"p","after":0}],"presence":true}`, "presence")
		ready := post(`{"collections":[{"c":"o","where":{"/n":1}}],"presence":false}`, "ready")
		var cursors struct{ Cursors []string }
		if err := json.Unmarshal([]byte(ready.Data), &cursors); err != nil || len(cursors.Cursors) != 1 {
			t.Fatalf("ready %s: %v", ready.Data, err)
		}
		// From that cursor: the change after it.
		s.do(t, "PATCH", "/docs/o/b", hdr{"Content-Type", ctMerge, "If-Match", "*"}, `{"n":3}`)
		ch := post(`{"collections":[{"c":"o","after":"`+cursors.Cursors[0]+`","where":{"/n":1}}]}`, "change")
		if !strings.Contains(ch.Data, `"match":false`) {
			t.Fatalf("change of a document that stopped matching: %s", ch.Data)
		}
		s.do(t, "PATCH", "/docs/o/b", hdr{"Content-Type", ctMerge, "If-Match", "*"}, `{"n":4}`)
		post(`{"collections":[{"c":"o","after":"`+cursors.Cursors[0]+`"}]}`, "change")
	})

	// Idempotency keys in use: the first request waits in the store while
	// the second comes.
	for _, tc := range []struct {
		name, method, path string
		h                  hdr
		body               string
		then               int // the first request's status once released
	}{
		{"Post", "POST", "/docs/s", hdr{"Content-Type", ctJSON, "Idempotency-Key", `"slow-1"`}, `{}`, 201},
		{"Patch", "PATCH", "/docs/s/x", hdr{"Content-Type", ctMerge, "If-Match", "*", "Idempotency-Key", `"slow-2"`}, `{}`, 404},
		{"Revert", "POST", "/docs/s/x/revert", hdr{"Content-Type", ctJSON, "Idempotency-Key", `"slow-3"`}, `{"seq":1}`, 404},
		{"Batch", "POST", "/batch", hdr{"Content-Type", ctJSON}, `{"writes":[{"method":"POST","path":"/docs/s","headers":{"Idempotency-Key":"slow-4"},"body":{}}]}`, 200},
	} {
		t.Run("KeyInUse/"+tc.name, func(t *testing.T) {
			bs := newBlockingStore()
			srv := startServerWith(t, func(st store.Store) store.Store { bs.Store = st; return bs }, nil, withCORS)
			release := sync.OnceFunc(func() { close(bs.release) })
			defer release() // also when a check fails, so that the server can close
			type result struct {
				req *http.Request
				r   response
				err error
			}
			done := make(chan result, 1)
			go func() {
				req, r, err := send(srv, tc.method, tc.path, tc.h, tc.body)
				done <- result{req, r, err}
			}()
			var first result
			select {
			case <-bs.entered:
			case first = <-done:
				t.Fatalf("the first request was answered without waiting: %d %s %v", first.r.status, first.r.body, first.err)
			}
			x.exchange(t, srv, tc.method, tc.path, tc.h, tc.body, reqValid, 409, "idempotency-key-in-use")
			release()
			first = <-done
			if first.err != nil {
				t.Fatal(first.err)
			}
			expect(t, first.r, tc.then, "")
			x.check(t, first.req, []byte(tc.body), reqValid, first.r.status, first.r.header, first.r.body)
		})
	}

	// A backup while another runs: 503 overloaded.
	t.Run("Backup/Overloaded", func(t *testing.T) {
		bst, err := bolt.Open(filepath.Join(t.TempDir(), "b.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer bst.Close()
		bb := &blockingBackup{Backuper: bst, entered: make(chan struct{}), release: make(chan struct{})}
		srv := &server{Server: httptest.NewServer(newHandler(bst, newConfig(withCORS, func(c *config) { c.http.Backup = bb })).Echo())}
		defer srv.Close()
		release := sync.OnceFunc(func() { close(bb.release) })
		defer release()
		done := make(chan response, 1)
		go func() {
			_, r, _ := send(srv, "GET", "/admin/backup", nil, "")
			done <- r
		}()
		<-bb.entered
		x.exchange(t, srv, "GET", "/admin/backup", nil, "", reqValid, 503, "overloaded")
		release()
		if r := <-done; r.status != 200 {
			t.Fatalf("the backup that ran: %d", r.status)
		}
	})

	// Every operation with tokens: without one and with an unknown one (401
	// unless it is open), with one its role does not allow (403), and with
	// one it does.
	insufficient := map[string][2]string{ // role: token, collection
		"read":  {tokWriteA, "b"},
		"write": {tokRead, "a"},
		"admin": {tokScopedAdmin, "a"},
	}
	sufficient := map[string]string{"": tokRead, "read": tokRead, "write": tokWriteA, "admin": tokAdmin}
	for _, o := range operations(doc) {
		t.Run("Auth/"+o.method+" "+o.path, func(t *testing.T) {
			role := o.role()
			path, h, body := o.request("a")
			for _, tok := range []hdr{nil, bearer("not-a-token-0123456789")} {
				r := x.exchange(t, authd, o.method, path, append(tok, h...), body, reqValid, 0, "")
				if (r.status == http.StatusUnauthorized) != (role != "") {
					t.Fatalf("%s without a valid token: %d (role %q)", path, r.status, role)
				}
			}
			if role != "" && o.op.Responses.Status(http.StatusForbidden) != nil { // OPTIONS /events concerns no collection
				in := insufficient[role]
				path, h, body := o.request(in[1])
				x.exchange(t, authd, o.method, path, append(bearer(in[0]), h...), body, reqValid, 403, "forbidden")
			}
			if o.streams() {
				x.streamReq(t, authd, o.method, path, append(bearer(sufficient[role]), h...), body, "snapshot")
				return
			}
			r := x.exchange(t, authd, o.method, path, append(bearer(sufficient[role]), h...), body, reqValid, 0, "")
			if r.status == http.StatusUnauthorized || r.status == http.StatusForbidden {
				t.Fatalf("%s with a %s token: %d", path, role, r.status)
			}
		})
	}

	// Every operation over the rate limit: 429 wherever the description
	// says so.
	for _, o := range operations(doc) {
		t.Run("RateLimited/"+o.method+" "+o.path, func(t *testing.T) {
			path, h, body := o.request("c")
			r := x.exchange(t, limited, o.method, path, h, body, reqValid, 0, "")
			if documented := o.op.Responses.Status(http.StatusTooManyRequests) != nil; documented != (r.status == http.StatusTooManyRequests) {
				t.Fatalf("%s: %d, 429 documented: %v", path, r.status, documented)
			}
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
// or a body member are refused, those of authentication and of the rate
// limit included.
func TestOpenAPICatchesDrift(t *testing.T) {
	_, router := loadOpenAPI(t)
	s := startServer(t)
	etag := s.create(t, "/docs/c/d", `{"a":1}`)
	getFrom := func(s *server, path string, h ...string) (*http.Request, *http.Response, []byte) {
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
	get := func(path string, h ...string) (*http.Request, *http.Response, []byte) { return getFrom(s, path, h...) }
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

	// The answers of authentication and of the rate limit keep their
	// headers and types.
	sec := startServer(t, withTokens(t), func(c *config) { c.http.Rate = 0.001 })
	for _, want := range []struct {
		status  int
		changes map[string]func(h http.Header, b []byte) []byte
	}{
		{http.StatusUnauthorized, map[string]func(http.Header, []byte) []byte{
			"NoChallenge":    func(h http.Header, b []byte) []byte { h.Del("WWW-Authenticate"); return b },
			"OtherChallenge": func(h http.Header, b []byte) []byte { h.Set("WWW-Authenticate", "Basic"); return b },
			"OtherProblemType": func(h http.Header, b []byte) []byte {
				return bytes.Replace(b, []byte("unauthorized"), []byte("forbidden"), 1)
			},
			"BadOrigin": func(h http.Header, b []byte) []byte {
				h.Set("Access-Control-Allow-Origin", "app.example.com")
				return b
			},
		}},
		{http.StatusTooManyRequests, map[string]func(http.Header, []byte) []byte{
			"NoRetryAfter":   func(h http.Header, b []byte) []byte { h.Del("Retry-After"); return b },
			"RetryAfterZero": func(h http.Header, b []byte) []byte { h.Set("Retry-After", "0"); return b },
			"OtherProblemType": func(h http.Header, b []byte) []byte {
				return bytes.Replace(b, []byte("rate-limited"), []byte("forbidden"), 1)
			},
		}},
	} {
		// The first request is allowed by the rate limit (and refused for
		// want of a token); the second is limited.
		req, res, body := getFrom(sec, "/docs/c/d")
		if res.StatusCode != want.status {
			t.Fatalf("status %d, want %d", res.StatusCode, want.status)
		}
		if err := validate(req, res.StatusCode, res.Header, body); err != nil {
			t.Fatalf("the real %d fails: %v", want.status, err)
		}
		for name, change := range want.changes {
			t.Run(fmt.Sprintf("%d/%s", want.status, name), func(t *testing.T) {
				h := res.Header.Clone()
				b := change(h, slices.Clone(body))
				if maps.EqualFunc(h, res.Header, slices.Equal) && bytes.Equal(b, body) {
					t.Fatal("the change did not apply")
				}
				if err := validate(req, res.StatusCode, h, b); err == nil {
					t.Fatal("accepted")
				}
			})
		}
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

// fileETag is the ETag the UI serves a file of fsys with.
func fileETag(t *testing.T, fsys fs.FS, name string) string {
	t.Helper()
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		t.Fatal(err)
	}
	return store.ETagOf(b)
}
