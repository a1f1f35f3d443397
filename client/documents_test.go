package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchd/patchd/client"
)

// testContext bounds a test's requests.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fastRetry retries soon, so that tests of retries stay quick.
var fastRetry = client.WithRetry(client.RetryPolicy{Attempts: 8, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond})

// mustCreate creates a document and returns it.
func mustCreate(t *testing.T, cl *client.Client, c, id, value string) *client.Document {
	t.Helper()
	doc, err := cl.Create(testContext(t), c, id, json.RawMessage(value))
	if err != nil {
		t.Fatalf("create %s/%s: %v", c, id, err)
	}
	return doc
}

// mustGet reads a document's value as a string.
func mustGet(t *testing.T, cl *client.Client, c, id string) *client.Document {
	t.Helper()
	doc, err := cl.Get(testContext(t), c, id)
	if err != nil {
		t.Fatalf("get %s/%s: %v", c, id, err)
	}
	return doc
}

// versions returns the number of versions in a document's history.
func versions(t *testing.T, cl *client.Client, c, id string) int {
	t.Helper()
	page, err := cl.History(testContext(t), c, id, client.HistoryOptions{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(page.Versions)
}

func TestDocumentLifecycle(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)

	doc, err := cl.Create(ctx, "forms", "42", map[string]any{"name": "Ann", "phone": "555-0100", "email": "ann@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(doc.Value), `{"email":"ann@example.com","name":"Ann","phone":"555-0100"}`; got != want {
		t.Fatalf("Value=%s, want %s", got, want)
	}
	if !doc.Created || doc.ETag == "" || doc.Collection != "forms" || doc.ID != "42" {
		t.Fatalf("created document %+v", doc)
	}
	e1 := doc.ETag

	// Alice changes the phone from E1: applied directly.
	alice, err := cl.Patch(ctx, "forms", "42", []client.Op{{Op: "replace", Path: "/phone", Value: json.RawMessage(`"555-0199"`)}}, client.IfMatch(e1))
	if err != nil {
		t.Fatal(err)
	}
	if alice.RebasedFrom != "" || alice.Created {
		t.Fatalf("direct patch: %+v", alice)
	}
	// Bob changes the email, still from E1: rebased.
	bob, err := cl.Merge(ctx, "forms", "42", map[string]any{"email": "ann@example.org"}, client.IfMatch(e1))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := bob.RebasedFrom, e1; got != want {
		t.Fatalf("RebasedFrom=%q, want %q", got, want)
	}
	if got, want := string(bob.Value), `{"email":"ann@example.org","name":"Ann","phone":"555-0199"}`; got != want {
		t.Fatalf("Value=%s, want %s", got, want)
	}
	// Bob also changes the phone from E1: a conflict, nothing written.
	_, err = cl.Patch(ctx, "forms", "42", json.RawMessage(`[{"op":"replace","path":"/phone","value":"555-0000"}]`), client.IfMatch(e1))
	var ce *client.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("err=%v, want a *ConflictError", err)
	}
	if got, want := ce.Paths(), []string{"/phone"}; !slices.Equal(got, want) {
		t.Fatalf("Paths=%v, want %v", got, want)
	}
	if c := ce.Conflicts[0]; c.ConcurrentPath != "/phone" || c.ConcurrentVersion != 2 || c.Reason == "" || c.ClientOp != 0 {
		t.Fatalf("conflict %+v", c)
	}
	if ce.BaseETag != e1 || ce.CurrentETag != bob.ETag {
		t.Fatalf("BaseETag=%q CurrentETag=%q, want %q %q", ce.BaseETag, ce.CurrentETag, e1, bob.ETag)
	}
	if !errors.Is(err, client.ErrPreconditionFailed) {
		t.Fatalf("errors.Is(%v, ErrPreconditionFailed) is false", err)
	}
	var p *client.Problem
	if !errors.As(err, &p) || p.Status != http.StatusPreconditionFailed || p.Name() != "rebase-conflict" || p.Members["conflicts"] == nil {
		t.Fatalf("problem %+v", p)
	}
	cur, err := ce.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cur.ETag != bob.ETag || string(cur.Value) != string(bob.Value) {
		t.Fatalf("Current=%+v, want %+v", cur, bob)
	}

	// A replace with the current ETag.
	put, err := cl.Put(ctx, "forms", "42", json.RawMessage(`{"name":"Ann"}`), client.IfMatch(cur.ETag))
	if err != nil {
		t.Fatal(err)
	}
	if put.Created || string(put.Value) != `{"name":"Ann"}` {
		t.Fatalf("put %+v", put)
	}

	hist, err := cl.History(ctx, "forms", "42", client.HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for i, v := range hist.Versions {
		if v.Seq != uint64(i+1) || v.At.IsZero() {
			t.Fatalf("version %d: %+v", i, v)
		}
		kinds = append(kinds, v.Kind)
	}
	if want := []string{"put", "json-patch", "merge-patch", "put"}; !slices.Equal(kinds, want) {
		t.Fatalf("kinds=%v, want %v", kinds, want)
	}
	if hist.Versions[2].RebasedFrom != e1 || hist.Next != 0 {
		t.Fatalf("history %+v", hist)
	}

	if err := cl.Delete(ctx, "forms", "42", client.IfMatch(put.ETag)); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Get(ctx, "forms", "42"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Get after Delete: err=%v, want ErrNotFound", err)
	}
}

func TestWriteErrors(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	doc := mustCreate(t, cl, "c", "d", `{"a":1,"b":{"c":2}}`)
	later, err := cl.Merge(ctx, "c", "d", json.RawMessage(`{"a":2}`), client.IfMatch(doc.ETag))
	if err != nil {
		t.Fatal(err)
	}
	old := doc.ETag

	tests := []struct {
		name     string
		write    func() error
		status   int
		problem  string
		wantType string // "conflict", "precondition" or "problem"
		is       error
	}{
		{name: "CreateExisting", write: func() error {
			_, err := cl.Create(ctx, "c", "d", json.RawMessage(`{"x":1}`))
			return err
		}, status: 412, problem: "precondition-failed", wantType: "precondition", is: client.ErrPreconditionFailed},
		{name: "PutWithoutIfMatch", write: func() error {
			_, err := cl.Put(ctx, "c", "d", json.RawMessage(`{"x":1}`))
			return err
		}, status: 428, problem: "precondition-required", wantType: "precondition", is: client.ErrPreconditionRequired},
		{name: "StrictStale", write: func() error {
			_, err := cl.Merge(ctx, "c", "d", json.RawMessage(`{"x":1}`), client.IfMatch(old), client.Strict())
			return err
		}, status: 412, problem: "precondition-failed", wantType: "precondition", is: client.ErrPreconditionFailed},
		{name: "UnknownBase", write: func() error {
			_, err := cl.Merge(ctx, "c", "d", json.RawMessage(`{"x":1}`), client.IfMatch("0123456789abcdef0123456789abcdef"))
			return err
		}, status: 412, problem: "base-unknown", wantType: "precondition", is: client.ErrPreconditionFailed},
		{name: "DeleteStale", write: func() error {
			return cl.Delete(ctx, "c", "d", client.IfMatch(old))
		}, status: 412, problem: "precondition-failed", wantType: "precondition", is: client.ErrPreconditionFailed},
		{name: "ConflictingPatch", write: func() error {
			_, err := cl.Patch(ctx, "c", "d", []client.Op{{Op: "replace", Path: "/a", Value: json.RawMessage(`5`)}}, client.IfMatch(old))
			return err
		}, status: 412, problem: "rebase-conflict", wantType: "conflict", is: client.ErrPreconditionFailed},
		{name: "PatchFails", write: func() error {
			_, err := cl.Patch(ctx, "c", "d", []client.Op{{Op: "test", Path: "/a", Value: json.RawMessage(`7`)}}, client.IfMatch(later.ETag))
			return err
		}, status: 422, problem: "patch-failed", wantType: "problem"},
		{name: "InvalidPatch", write: func() error {
			_, err := cl.Patch(ctx, "c", "d", json.RawMessage(`[{"op":"frobnicate","path":"/a"}]`), client.IfMatch(later.ETag))
			return err
		}, status: 400, problem: "invalid-patch", wantType: "problem"},
		{name: "PatchMissing", write: func() error {
			_, err := cl.Merge(ctx, "c", "nope", json.RawMessage(`{}`), client.IfMatch(old))
			return err
		}, status: 404, problem: "not-found", wantType: "problem", is: client.ErrNotFound},
		{name: "DeleteMissing", write: func() error {
			return cl.Delete(ctx, "c", "nope", client.IfMatch(old))
		}, status: 404, problem: "not-found", wantType: "problem", is: client.ErrNotFound},
		{name: "InvalidName", write: func() error {
			_, err := cl.Get(ctx, "c", "a b")
			return err
		}, status: 400, problem: "invalid-request", wantType: "problem"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.write()
			var p *client.Problem
			if !errors.As(err, &p) {
				t.Fatalf("err=%v, want a *Problem", err)
			}
			if got, want := p.Status, tc.status; got != want {
				t.Fatalf("Status=%d, want %d (%v)", got, want, err)
			}
			if got, want := p.Name(), tc.problem; got != want {
				t.Fatalf("Name=%q, want %q", got, want)
			}
			if got, want := p.Type, "/problems/"+tc.problem; got != want {
				t.Fatalf("Type=%q, want %q", got, want)
			}
			if p.Detail == "" || p.Title == "" || p.Members["status"] == nil {
				t.Fatalf("problem %+v lacks members", p)
			}
			var ce *client.ConflictError
			var pe *client.PreconditionError
			if isConflict := errors.As(err, &ce); isConflict != (tc.wantType == "conflict") {
				t.Fatalf("ConflictError: got %T, want %s", err, tc.wantType)
			}
			if isPre := errors.As(err, &pe); isPre != (tc.wantType == "precondition") {
				t.Fatalf("PreconditionError: got %T, want %s", err, tc.wantType)
			}
			if pe != nil && pe.CurrentETag != later.ETag {
				t.Fatalf("CurrentETag=%q, want %q", pe.CurrentETag, later.ETag)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("errors.Is(%v, %v) is false", err, tc.is)
			}
		})
	}
	if got, want := string(mustGet(t, cl, "c", "d").Value), `{"a":2,"b":{"c":2}}`; got != want {
		t.Fatalf("after refused writes: %s, want %s", got, want)
	}
}

func TestValueBytesKeptExactly(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	// A json.RawMessage goes as it is; the server keeps number literals.
	doc := mustCreate(t, cl, "n", "1", `{"big":12345678901234567890123,"huge":1e400,"s":"<&>"}`)
	if got, want := string(doc.Value), `{"big":12345678901234567890123,"huge":1e400,"s":"<&>"}`; got != want {
		t.Fatalf("Value=%s, want %s", got, want)
	}
	// Values of any other type go through encoding/json, without HTML
	// escaping.
	got, err := cl.Patch(ctx, "n", "1", []map[string]any{{"op": "add", "path": "/t", "value": "a<b"}}, client.IfMatch(doc.ETag))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"big":12345678901234567890123,"huge":1e400,"s":"<&>","t":"a<b"}`; string(got.Value) != want {
		t.Fatalf("Value=%s, want %s", got.Value, want)
	}
	if _, err := cl.Put(ctx, "n", "2", json.RawMessage(`{"a":`)); err == nil || strings.Contains(err.Error(), "400") {
		t.Fatalf("invalid RawMessage: err=%v, want a client-side error", err)
	}
}

func TestList(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	var want []string
	for _, id := range []string{"e", "a", "d", "b", "c"} {
		mustCreate(t, cl, "l", id, `{"id":"`+id+`"}`)
	}
	want = []string{"a", "b", "c", "d", "e"}

	page, err := cl.List(ctx, "l", client.ListOptions{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 2 || page.Items[0].ID != "a" || page.Items[1].ID != "b" || page.Next != "b" || page.Items[0].ETag == "" {
		t.Fatalf("first page %+v", page)
	}
	var got []string
	for it, err := range cl.ListAll(ctx, "l", client.ListOptions{Limit: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, it.ID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ListAll=%v, want %v", got, want)
	}
	empty, err := cl.List(ctx, "nothing-here", client.ListOptions{})
	if err != nil || len(empty.Items) != 0 || empty.Next != "" {
		t.Fatalf("empty collection: %+v, %v", empty, err)
	}
}

func TestListOptionsAreSent(t *testing.T) {
	var query atomic.Pointer[url.Values]
	base, _ := startServer(t, withWrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && r.URL.Path == "/docs/l" {
				q := r.URL.Query()
				query.Store(&q)
			}
			next.ServeHTTP(w, r)
		})
	}))
	cl := client.New(base)
	ctx := testContext(t)
	mustCreate(t, cl, "l", "a", `{"status":"open"}`)
	opts := client.ListOptions{Limit: 5, Where: map[string]any{"/status": "open"}, Order: "-/total"}
	page, err := cl.List(ctx, "l", opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || page.Items[0].ID != "a" {
		t.Fatalf("filtered, ordered page %+v", page)
	}
	q := *query.Load()
	for name, want := range map[string]string{"limit": "5", "where": `{"/status":"open"}`, "order": "-/total"} {
		if got := q[name]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%q, want %q", name, got, want)
		}
	}
	bodies, err := cl.List(ctx, "l", client.ListOptions{IncludeBody: true})
	if err != nil || len(bodies.Items) != 1 || string(bodies.Items[0].Value) != `{"status":"open"}` {
		t.Fatalf("IncludeBody: %+v, %v", bodies, err)
	}
	if q := *query.Load(); q["include"] == nil || q["include"][0] != "body" {
		t.Fatalf("include=%q, want body", q["include"])
	}
	if _, err := cl.List(ctx, "l", client.ListOptions{After: "0", Order: "-/total"}); err == nil {
		t.Fatal("an After that no ordered page gave was accepted")
	}
}

func TestNewWithBadURL(t *testing.T) {
	for _, tc := range []struct {
		name, url string
	}{
		{name: "Relative", url: "/docs"},
		{name: "NoScheme", url: "127.0.0.1:8080"},
		{name: "OtherScheme", url: "ftp://example.com"},
		{name: "Query", url: "http://example.com/?a=b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.New(tc.url).Get(testContext(t), "c", "d")
			if err == nil || !strings.Contains(err.Error(), "base URL") {
				t.Fatalf("err=%v, want a base URL error", err)
			}
		})
	}
}

func TestListFilteredOrderedWithBodies(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	for id, v := range map[string]string{
		"a": `{"status":"open","total":5}`,
		"b": `{"status":"paid","total":50}`,
		"c": `{"status":"open","total":30}`,
		"d": `{"status":"open"}`,
		"e": `{"status":"open","total":12}`,
	} {
		mustCreate(t, cl, "o", id, v)
	}
	var got []string
	opts := client.ListOptions{Limit: 2, IncludeBody: true, Where: map[string]any{"/status": "open"}, Order: "-/total"}
	for it, err := range cl.ListAll(ctx, "o", opts) {
		if err != nil {
			t.Fatal(err)
		}
		doc := mustGet(t, cl, "o", it.ID)
		if string(it.Value) != string(doc.Value) || it.ETag != doc.ETag || it.Seq != 1 {
			t.Fatalf("item %+v, want %s %s seq 1", it, doc.Value, doc.ETag)
		}
		got = append(got, it.ID)
	}
	// Descending total, the document without one last, paid left out.
	if want := []string{"c", "e", "a", "d"}; !slices.Equal(got, want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
	page, err := cl.List(ctx, "o", client.ListOptions{Where: map[string]any{"/total": map[string]any{"gt": 10, "lt": 40}}})
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, it := range page.Items {
		if it.Value != nil {
			t.Fatalf("item %+v has a value without IncludeBody", it)
		}
		got = append(got, it.ID)
	}
	if want := []string{"c", "e"}; !slices.Equal(got, want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
	_, err = cl.List(ctx, "o", client.ListOptions{Where: map[string]any{"/total": map[string]any{"greater": 1}}})
	var p *client.Problem
	if !errors.As(err, &p) || p.Status != http.StatusBadRequest || p.Name() != "invalid-request" {
		t.Fatalf("a bad where: %v, want 400 invalid-request", err)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	doc := mustCreate(t, cl, "dry", "a", `{"n":1}`)

	p, err := cl.Patch(ctx, "dry", "a", []client.Op{{Op: "replace", Path: "/n", Value: json.RawMessage(`2`)}}, client.IfMatch(doc.ETag), client.DryRun())
	if err != nil || string(p.Value) != `{"n":2}` || p.ETag == doc.ETag {
		t.Fatalf("dry-run patch: %+v, %v", p, err)
	}
	m, err := cl.Merge(ctx, "dry", "a", map[string]int{"m": 1}, client.IfMatch(doc.ETag), client.DryRun())
	if err != nil || string(m.Value) != `{"m":1,"n":1}` {
		t.Fatalf("dry-run merge: %+v, %v", m, err)
	}
	c, err := cl.Create(ctx, "dry", "b", map[string]int{"n": 1}, client.DryRun())
	if err != nil || !c.Created {
		t.Fatalf("dry-run create: %+v, %v", c, err)
	}
	if err := cl.Delete(ctx, "dry", "a", client.IfMatch(doc.ETag), client.DryRun()); err != nil {
		t.Fatalf("dry-run delete: %v", err)
	}
	// A dry run answers as the write would, refusals included.
	_, err = cl.Patch(ctx, "dry", "a", []client.Op{{Op: "test", Path: "/n", Value: json.RawMessage(`7`)}}, client.IfMatch(doc.ETag), client.DryRun())
	var prob *client.Problem
	if !errors.As(err, &prob) || prob.Status != http.StatusUnprocessableEntity {
		t.Fatalf("dry-run failing patch: %v, want 422", err)
	}

	// Nothing was written: the document, its history and the collection
	// are as before.
	if got := mustGet(t, cl, "dry", "a"); got.ETag != doc.ETag || string(got.Value) != `{"n":1}` {
		t.Fatalf("after dry runs: %+v", got)
	}
	h, err := cl.History(ctx, "dry", "a", client.HistoryOptions{})
	if err != nil || len(h.Versions) != 1 {
		t.Fatalf("history %+v, %v: want one version", h, err)
	}
	if _, err := cl.Get(ctx, "dry", "b"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("dry-run create left a document: %v", err)
	}
}

// TestCreateLeavesCallersOptionsAlone: Create adds its own option to the
// caller's, and must not do it in the caller's array (several goroutines
// sharing one options slice raced on it).
func TestCreateLeavesCallersOptionsAlone(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	opts := make([]client.WriteOption, 1, 4)
	opts[0] = client.DryRun()
	if _, err := cl.Create(ctx, "opts", "a", map[string]int{"n": 1}, opts...); err != nil {
		t.Fatal(err)
	}
	for i, o := range opts[:cap(opts)] {
		if i > 0 && o != nil {
			t.Fatalf("Create wrote option %d into the caller's array", i)
		}
	}
}
