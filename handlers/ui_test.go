package handlers_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestUI(t *testing.T) {
	s := startServer(t)
	for _, tc := range []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script type="module" src="/ui/app.js">`},
		{"/ui/app.js", "text/javascript; charset=utf-8", "from '/ui/client/patchd.js'"},
		{"/ui/style.css", "text/css; charset=utf-8", ".conflict"},
		{"/ui/client/patchd.js", "text/javascript; charset=utf-8", "export class Client"},
		{"/ui/client/json.js", "text/javascript; charset=utf-8", "export function diff"},
		{"/ui/client/sse.js", "text/javascript; charset=utf-8", "export async function* readEvents"},
		{"/ui/list.html", "text/html; charset=utf-8", `<script type="module" src="/ui/list.js">`},
		{"/ui/list.js", "text/javascript; charset=utf-8", "from '/ui/client/watch.js'"},
		{"/ui/client/hub.js", "text/javascript; charset=utf-8", "export class Hub"},
		{"/ui/client/share.js", "text/javascript; charset=utf-8", "export function share"},
		{"/ui/client/watch.js", "text/javascript; charset=utf-8", "export function watch"},
		{"/ui/client/undo.js", "text/javascript; charset=utf-8", "export async function undoNext"},
		{"/ui/client/restore.js", "text/javascript; charset=utf-8", "export async function restore"},
		{"/ui/client/list.js", "text/javascript; charset=utf-8", "export async function list"},
		{"/ui/client/presence.js", "text/javascript; charset=utf-8", "export function presence"},
	} {
		r := s.do(t, "GET", tc.path, nil, "")
		expect(t, r, http.StatusOK, "")
		if got := r.header.Get("Content-Type"); got != tc.contentType {
			t.Errorf("%s: Content-Type=%q, want %q", tc.path, got, tc.contentType)
		}
		if !strings.Contains(string(r.body), tc.contains) {
			t.Errorf("%s: body lacks %q", tc.path, tc.contains)
		}
		if r.header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(r.header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("%s: headers %v", tc.path, r.header)
		}
	}
	for _, path := range []string{"/ui/nope.js", "/ui/embed.go", "/ui/client/package.json", "/ui/..%2fembed.go", "/ui/client/test", "/index.html"} {
		expect(t, s.do(t, "GET", path, nil, ""), http.StatusNotFound, "not-found")
	}
}

func TestUIOff(t *testing.T) {
	s := startServer(t, func(c *config) { c.http.UI = false })
	for _, path := range []string{"/", "/ui/app.js", "/ui/client/patchd.js"} {
		expect(t, s.do(t, "GET", path, nil, ""), http.StatusNotFound, "not-found")
	}
}

// TestUIRevalidatedAndNotRateLimited: a browser restoring ten tabs asks
// for a dozen files each. They carry a strong ETag and are answered 304
// when unchanged, and --rate leaves them alone (ten tabs at once under
// --rate stayed at "Connecting..." with modules answered 429); the API
// is still limited.
func TestUIRevalidatedAndNotRateLimited(t *testing.T) {
	s := startServer(t, func(c *config) { c.http.Rate = 0.001 })
	first := s.do(t, "GET", "/ui/client/patchd.js", nil, "")
	expect(t, first, http.StatusOK, "")
	etag := first.header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) {
		t.Fatalf("ETag %q", etag)
	}
	for range 20 {
		for _, path := range []string{"/", "/ui/app.js", "/ui/client/patchd.js"} {
			r := s.do(t, "GET", path, nil, "")
			expect(t, r, http.StatusOK, "")
		}
		r := s.do(t, "GET", "/ui/client/patchd.js", hdr{"If-None-Match", etag}, "")
		if r.status != http.StatusNotModified || len(r.body) != 0 || r.header.Get("ETag") != etag {
			t.Fatalf("revalidation: %d, ETag %q, %d bytes", r.status, r.header.Get("ETag"), len(r.body))
		}
	}
	if r := s.do(t, "GET", "/ui/app.js", hdr{"If-None-Match", etag}, ""); r.status != http.StatusOK {
		t.Fatalf("another file's ETag: %d", r.status)
	}
	expect(t, s.do(t, "GET", "/docs/c", nil, ""), http.StatusOK, "")
	expect(t, s.do(t, "GET", "/docs/c", nil, ""), http.StatusTooManyRequests, "rate-limited")
	// Only the files there are: a path that is none, or another method, is
	// limited as any request.
	for _, r := range []struct{ method, path string }{
		{"GET", "/ui/nope.js"}, {"GET", "/ui/../docs/c"}, {"GET", "/ui/client/nope.js"}, {"POST", "/ui/app.js"},
	} {
		expect(t, s.do(t, r.method, r.path, nil, ""), http.StatusTooManyRequests, "rate-limited")
	}
}
