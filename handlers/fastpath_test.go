package handlers_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// countingStore is the real store, counting the calls that read a body or
// take a document's lock.
type countingStore struct {
	*bolt.Store
	gets, updates atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, c, id string) (*store.Document, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, c, id)
}

func (s *countingStore) Update(ctx context.Context, c, id string, fn store.UpdateFunc) (*store.Document, error) {
	s.updates.Add(1)
	return s.Store.Update(ctx, c, id, fn)
}

// TestFastPreconditions: 304s and the 412s and 428s that the current ETag
// decides are answered without reading the body or locking the document,
// and answer exactly what the full path answers.
func TestFastPreconditions(t *testing.T) {
	b, err := bolt.Open(filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := &countingStore{Store: b}
	s := &server{Server: httptest.NewServer(newHandler(st, newConfig()).Echo()), store: b}
	t.Cleanup(s.stop)

	e1 := s.create(t, "/docs/c/d", `{"a":1}`)
	r := s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", e1}, `{"a":2}`)
	expect(t, r, http.StatusOK, "")
	e2 := r.header.Get("ETag")

	for _, tc := range []struct {
		name, method string
		h            hdr
		body         string
		status       int
		problem      string
		base         string // expected baseEtag, if any
	}{
		{name: "GET304", method: "GET", h: hdr{"If-None-Match", e2}, status: http.StatusNotModified},
		{name: "GETStaleIfMatch", method: "GET", h: hdr{"If-Match", e1}, status: http.StatusPreconditionFailed, problem: "precondition-failed"},
		{name: "StrictStale", method: "PATCH", h: hdr{"Content-Type", ctMerge, "If-Match", e1, "Prefer", "handling=strict"}, body: `{"b":1}`, status: http.StatusPreconditionFailed, problem: "precondition-failed", base: e1},
		{name: "StrictUnknown", method: "PATCH", h: hdr{"Content-Type", ctMerge, "If-Match", `"nope"`, "Prefer", "handling=strict"}, body: `{"b":1}`, status: http.StatusPreconditionFailed, problem: "precondition-failed", base: `"nope"`},
		{name: "DeleteStale", method: "DELETE", h: hdr{"If-Match", e1}, status: http.StatusPreconditionFailed, problem: "precondition-failed"},
		{name: "CreateOnlyExists", method: "PUT", h: hdr{"Content-Type", ctJSON, "If-None-Match", "*"}, body: `{}`, status: http.StatusPreconditionFailed, problem: "precondition-failed"},
		{name: "NoIfMatch", method: "PATCH", h: hdr{"Content-Type", ctMerge}, body: `{"b":1}`, status: http.StatusPreconditionRequired, problem: "precondition-required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gets, updates := st.gets.Load(), st.updates.Load()
			r := s.do(t, tc.method, "/docs/c/d", tc.h, tc.body)
			expect(t, r, tc.status, tc.problem)
			if got := r.header.Get("ETag"); got != e2 {
				t.Errorf("ETag=%s, want the current %s", got, e2)
			}
			if tc.problem != "" {
				p := r.problem(t)
				if p["currentEtag"] != e2 {
					t.Errorf("currentEtag=%v, want %s", p["currentEtag"], e2)
				}
				if tc.base != "" && p["baseEtag"] != tc.base {
					t.Errorf("baseEtag=%v, want %s", p["baseEtag"], tc.base)
				}
			}
			if n := st.gets.Load() - gets; n != 0 {
				t.Errorf("%d Get calls, want none", n)
			}
			if n := st.updates.Load() - updates; n != 0 {
				t.Errorf("%d Update calls, want none", n)
			}
		})
	}
	// The same requests on a stale document go the full way.
	updates := st.updates.Load()
	r = s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", e1}, `{"b":1}`)
	expect(t, r, http.StatusOK, "")
	if r.header.Get("Rebased-From") != e1 || st.updates.Load() != updates+1 {
		t.Fatalf("rebased write: Rebased-From %q, %d updates", r.header.Get("Rebased-From"), st.updates.Load()-updates)
	}
}
