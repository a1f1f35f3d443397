package handlers_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/handlers"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// Tokens of the security tests. Each is at least 16 characters.
const (
	tokRead        = "read-token-0123456789"
	tokWriteA      = "write-a-token-0123456789"
	tokAdmin       = "admin-token-0123456789"
	tokScopedAdmin = "scoped-admin-token-0123456789"
)

const tokensFile = `# patchd tokens
` + tokRead + ` read
` + tokWriteA + `   write a a2

` + tokAdmin + ` admin
` + tokScopedAdmin + ` admin a
`

func withTokens(t *testing.T) func(*config) {
	t.Helper()
	toks, err := handlers.ParseTokens(strings.NewReader(tokensFile))
	if err != nil {
		t.Fatal(err)
	}
	return func(c *config) { c.http.Tokens = toks }
}

// startServerWith serves a fresh bbolt file through st (nil: the bbolt
// store itself) with extra routes added by routes.
func startServerWith(t *testing.T, wrap func(store.Store) store.Store, routes func(*handlers.Handler, *echo.Echo), opts ...func(*config)) *server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "patchd.db")
	b, err := bolt.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := newConfig(opts...)
	cfg.http.Backup = b
	var st store.Store = b
	if wrap != nil {
		st = wrap(b)
	}
	h := newHandler(st, cfg)
	e := h.Echo()
	if routes != nil {
		routes(h, e)
	}
	s := &server{Server: httptest.NewServer(e), store: b, path: path}
	t.Cleanup(s.stop)
	return s
}

func bearer(tok string) hdr { return hdr{"Authorization", "Bearer " + tok} }

func TestAuth(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := startServerWith(t, nil, func(h *handlers.Handler, e *echo.Echo) {
		e.GET("/admin/ping", func(c echo.Context) error { return c.String(http.StatusOK, "pong") })
		e.GET("/other/ping", func(c echo.Context) error { return c.String(http.StatusOK, "pong") })
	}, withTokens(t), func(c *config) { c.http.Logger, c.doc.Logger = logger, logger })

	put := func(tok, path string) response {
		return s.do(t, "PUT", path, append(bearer(tok), "Content-Type", ctJSON), `{"x":1}`)
	}
	t.Run("Healthz", func(t *testing.T) {
		expect(t, s.do(t, "GET", "/healthz", nil, ""), http.StatusOK, "")
	})
	t.Run("StaticFilesOpen", func(t *testing.T) {
		// The API's description and the demo page hold no data.
		for _, path := range []string{"/openapi.json", "/", "/ui/client/patchd.js"} {
			expect(t, s.do(t, "GET", path, nil, ""), http.StatusOK, "")
		}
	})
	t.Run("MetricsAndBackupNeedAdmin", func(t *testing.T) {
		for _, path := range []string{"/metrics", "/admin/backup"} {
			expect(t, s.do(t, "GET", path, nil, ""), http.StatusUnauthorized, "unauthorized")
			expect(t, s.do(t, "GET", path, bearer(tokRead), ""), http.StatusForbidden, "forbidden")
			expect(t, s.do(t, "GET", path, bearer(tokScopedAdmin), ""), http.StatusForbidden, "forbidden")
			expect(t, s.do(t, "GET", path, bearer(tokAdmin), ""), http.StatusOK, "")
		}
	})
	t.Run("Missing", func(t *testing.T) {
		for _, h := range []hdr{nil, {"Authorization", "Basic dXNlcjpwYXNz"}, {"Authorization", "Bearer"},
			{"Authorization", "Bearer "}, {"Authorization", tokAdmin}} {
			r := s.do(t, "GET", "/docs/a/x", h, "")
			expect(t, r, http.StatusUnauthorized, "unauthorized")
			if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer ") {
				t.Errorf("%v: WWW-Authenticate %q", h, got)
			}
		}
		// Two Authorization fields are refused, even if one is valid.
		expect(t, s.do(t, "GET", "/docs/a/x", hdr{"Authorization", "Bearer " + tokAdmin, "Authorization", "Bearer " + tokRead}, ""),
			http.StatusUnauthorized, "unauthorized")
		// A plain OPTIONS is a request like any other; unknown routes too.
		expect(t, s.do(t, "OPTIONS", "/docs/a/x", nil, ""), http.StatusUnauthorized, "unauthorized")
		expect(t, s.do(t, "GET", "/nope", nil, ""), http.StatusUnauthorized, "unauthorized")
		expect(t, s.do(t, "HEAD", "/docs/a/x", nil, ""), http.StatusUnauthorized, "")
	})
	t.Run("Unknown", func(t *testing.T) {
		for _, tok := range []string{"nope-nope-nope-nope", tokAdmin + "x", tokAdmin[:len(tokAdmin)-1], strings.ToUpper(tokAdmin)} {
			r := s.do(t, "GET", "/docs/a/x", bearer(tok), "")
			expect(t, r, http.StatusUnauthorized, "unauthorized")
			if !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_token") {
				t.Errorf("WWW-Authenticate %q lacks invalid_token", r.header.Get("WWW-Authenticate"))
			}
		}
		// The scheme is case-insensitive.
		expect(t, s.do(t, "GET", "/docs/a/x", hdr{"Authorization", "bearer " + tokRead}, ""), http.StatusNotFound, "not-found")
	})
	t.Run("Roles", func(t *testing.T) {
		expect(t, put(tokWriteA, "/docs/a/x"), http.StatusCreated, "")
		expect(t, put(tokAdmin, "/docs/b/x"), http.StatusCreated, "")
		cases := []struct {
			name, tok, method, path string
			status                  int
			problem                 string
		}{
			{"ReadGet", tokRead, "GET", "/docs/a/x", 200, ""},
			{"ReadHead", tokRead, "HEAD", "/docs/b/x", 200, ""},
			{"ReadList", tokRead, "GET", "/docs/b", 200, ""},
			{"ReadHistory", tokRead, "GET", "/docs/a/x/history", 200, ""},
			{"ReadOptions", tokRead, "OPTIONS", "/docs/a/x", 204, ""},
			{"ReadPut", tokRead, "PUT", "/docs/a/y", 403, "forbidden"},
			{"ReadPost", tokRead, "POST", "/docs/a", 403, "forbidden"},
			{"ReadDelete", tokRead, "DELETE", "/docs/a/x", 403, "forbidden"},
			{"ReadPatch", tokRead, "PATCH", "/docs/a/x", 403, "forbidden"},
			{"WriteOutOfScope", tokWriteA, "PUT", "/docs/b/y", 403, "forbidden"},
			{"WriteReadOutOfScope", tokWriteA, "GET", "/docs/b/x", 403, "forbidden"},
			{"WriteListOutOfScope", tokWriteA, "GET", "/docs/b", 403, "forbidden"},
			{"WriteSecondScope", tokWriteA, "PUT", "/docs/a2/y", 201, ""},
			{"WriteGet", tokWriteA, "GET", "/docs/a/x", 200, ""},
			{"ScopedAdminDocs", tokScopedAdmin, "GET", "/docs/a/x", 200, ""},
			{"ScopedAdminOther", tokScopedAdmin, "GET", "/docs/b/x", 403, "forbidden"},
			{"AdminRouteRead", tokRead, "GET", "/admin/ping", 403, "forbidden"},
			{"AdminRouteWrite", tokWriteA, "GET", "/admin/ping", 403, "forbidden"},
			{"AdminRouteScoped", tokScopedAdmin, "GET", "/admin/ping", 403, "forbidden"},
			{"AdminRoute", tokAdmin, "GET", "/admin/ping", 200, ""},
			{"OtherRouteRead", tokRead, "GET", "/other/ping", 403, "forbidden"},
			{"OtherRouteAdmin", tokAdmin, "GET", "/other/ping", 200, ""},
			{"UnknownRoute", tokRead, "GET", "/nope", 404, "not-found"},
			{"MethodNotAllowed", tokRead, "POST", "/docs/a/x", 405, "method-not-allowed"},
			{"BadCollection", tokRead, "GET", "/docs/%2e%2e/x", 400, "invalid-request"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				h := bearer(tc.tok)
				body := ""
				if tc.method == "PUT" || tc.method == "POST" {
					h = append(h, "Content-Type", ctJSON)
					body = `{"y":2}`
				}
				if tc.method == "PATCH" {
					h = append(h, "Content-Type", ctMerge)
					body = `{"y":2}`
				}
				r := s.do(t, tc.method, tc.path, h, body)
				expect(t, r, tc.status, tc.problem)
				if tc.status == 403 && !strings.Contains(r.header.Get("WWW-Authenticate"), "insufficient_scope") {
					t.Errorf("WWW-Authenticate %q lacks insufficient_scope", r.header.Get("WWW-Authenticate"))
				}
			})
		}
	})
	t.Run("NeverLogged", func(t *testing.T) {
		logMu.Lock()
		defer logMu.Unlock()
		for _, tok := range []string{tokRead, tokWriteA, tokAdmin, tokScopedAdmin} {
			if bytes.Contains(logs.Bytes(), []byte(tok)) {
				t.Fatalf("the log holds a token: %s", logs.Bytes())
			}
		}
	})
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestParseTokens(t *testing.T) {
	const tok = "s3cret-token-abcdefgh"
	bad := []struct{ name, file string }{
		{"Empty", ""},
		{"OnlyComments", "# nothing\n\n"},
		{"NoRole", tok + "\n"},
		{"UnknownRole", tok + " owner\n"},
		{"Short", "short read\n"},
		{"Duplicate", tok + " read\n" + tok + " write\n"},
		{"BadCollection", tok + " read a/b\n"},
		{"DotCollection", tok + " read ..\n"},
		{"NonASCII", "s3cret-token-abcdéfgh read\n"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := handlers.ParseTokens(strings.NewReader(tc.file))
			if !errors.Is(err, handlers.ErrTokensFile) {
				t.Fatalf("error %v, want ErrTokensFile", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error shows the token: %v", err)
			}
		})
	}
	toks, err := handlers.ParseTokens(strings.NewReader("  # c\n" + tok + " write a b\n\t" + tok + "2 read\n"))
	if err != nil || toks.Len() != 2 {
		t.Fatalf("ParseTokens: %v, %v", toks, err)
	}
}

func TestCORS(t *testing.T) {
	const origin = "https://app.example.com"
	s := startServer(t, withTokens(t), func(c *config) {
		c.http.CORSOrigins = handlers.ParseOrigins("https://APP.example.com/ , https://other.example")
	})
	t.Run("Preflight", func(t *testing.T) {
		// No token: preflights are answered before authentication.
		r := s.do(t, "OPTIONS", "/docs/a/x", hdr{"Origin", origin, "Access-Control-Request-Method", "PATCH",
			"Access-Control-Request-Headers", "if-match, content-type, authorization, idempotency-key, prefer"}, "")
		expect(t, r, http.StatusNoContent, "")
		if got := r.header.Get("Access-Control-Allow-Origin"); got != origin {
			t.Fatalf("Allow-Origin %q, want %q", got, origin)
		}
		for _, m := range []string{"GET", "PUT", "POST", "PATCH", "DELETE"} {
			if !strings.Contains(r.header.Get("Access-Control-Allow-Methods"), m) {
				t.Errorf("Allow-Methods %q lacks %s", r.header.Get("Access-Control-Allow-Methods"), m)
			}
		}
		for _, h := range []string{"If-Match", "If-None-Match", "Prefer", "Idempotency-Key", "Authorization", "Content-Type"} {
			if !strings.Contains(r.header.Get("Access-Control-Allow-Headers"), h) {
				t.Errorf("Allow-Headers %q lacks %s", r.header.Get("Access-Control-Allow-Headers"), h)
			}
		}
		if r.header.Get("Access-Control-Max-Age") == "" || !strings.Contains(strings.Join(r.header.Values("Vary"), ","), "Origin") {
			t.Errorf("preflight headers %v", r.header)
		}
	})
	t.Run("PreflightOtherOrigin", func(t *testing.T) {
		r := s.do(t, "OPTIONS", "/docs/a/x", hdr{"Origin", "https://evil.example", "Access-Control-Request-Method", "PATCH"}, "")
		if got := r.header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Fatalf("Allow-Origin %q for an origin not listed", got)
		}
	})
	t.Run("Actual", func(t *testing.T) {
		r := s.do(t, "PUT", "/docs/a/x", append(bearer(tokWriteA), "Content-Type", ctJSON, "Origin", origin), `{"a":1}`)
		expect(t, r, http.StatusCreated, "")
		if got := r.header.Get("Access-Control-Allow-Origin"); got != origin {
			t.Fatalf("Allow-Origin %q", got)
		}
		for _, h := range []string{"ETag", "Location", "Rebased-From", "Preference-Applied"} {
			if !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), h) {
				t.Errorf("Expose-Headers %q lacks %s", r.header.Get("Access-Control-Expose-Headers"), h)
			}
		}
		// Errors carry the headers too, so that a page can read them.
		r = s.do(t, "GET", "/docs/a/x", hdr{"Origin", origin}, "")
		expect(t, r, http.StatusUnauthorized, "unauthorized")
		if got := r.header.Get("Access-Control-Allow-Origin"); got != origin {
			t.Fatalf("401 Allow-Origin %q", got)
		}
		r = s.do(t, "GET", "/docs/a/x", append(bearer(tokRead), "Origin", "https://evil.example"), "")
		expect(t, r, http.StatusOK, "")
		if got := r.header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Fatalf("Allow-Origin %q for an origin not listed", got)
		}
	})
	t.Run("Any", func(t *testing.T) {
		s := startServer(t, func(c *config) { c.http.CORSOrigins = handlers.ParseOrigins("*") })
		r := s.do(t, "OPTIONS", "/docs/a/x", hdr{"Origin", "https://any.example", "Access-Control-Request-Method", "PUT"}, "")
		expect(t, r, http.StatusNoContent, "")
		if got := r.header.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Fatalf("Allow-Origin %q, want *", got)
		}
	})
	t.Run("Off", func(t *testing.T) {
		s := startServer(t)
		r := s.do(t, "OPTIONS", "/docs/a/x", hdr{"Origin", origin, "Access-Control-Request-Method", "PUT"}, "")
		expect(t, r, http.StatusNoContent, "")
		if r.header.Get("Access-Control-Allow-Origin") != "" || r.header.Get("Allow") == "" {
			t.Fatalf("CORS off: %v", r.header)
		}
	})
}

func TestRateLimit(t *testing.T) {
	// One request every 100 s, so the second is limited however slow the
	// machine is.
	s := startServer(t, func(c *config) { c.http.Rate = 0.01 })
	expect(t, s.do(t, "GET", "/docs/a/x", nil, ""), http.StatusNotFound, "not-found")
	r := s.do(t, "GET", "/docs/a/x", nil, "")
	expect(t, r, http.StatusTooManyRequests, "rate-limited")
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || secs < 90 || secs > 100 {
		t.Fatalf("Retry-After %q, want about 100", r.header.Get("Retry-After"))
	}
	// Writes are limited the same way, before anything is read or written.
	expect(t, s.do(t, "PUT", "/docs/a/x", hdr{"Content-Type", ctJSON}, `{}`), http.StatusTooManyRequests, "rate-limited")
	expect(t, s.do(t, "GET", "/healthz", nil, ""), http.StatusOK, "")
	if _, err := s.store.Get(context.Background(), "a", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a limited PUT wrote: %v", err)
	}
}

// blockingStore holds every Update and UpdateMany until release is
// closed, after telling entered (one token a call, up to its buffer), so
// that a test can keep writes in flight.
type blockingStore struct {
	store.Store
	entered chan struct{}
	release chan struct{}
}

// newBlockingStore returns a blockingStore; its Store is set by the test.
func newBlockingStore() *blockingStore {
	return &blockingStore{entered: make(chan struct{}, 16), release: make(chan struct{})}
}

// enter tells entered of a call, unless its buffer is full.
func (b *blockingStore) enter() {
	select {
	case b.entered <- struct{}{}:
	default:
	}
}

func (b *blockingStore) Update(ctx context.Context, c, id string, fn store.UpdateFunc) (*store.Document, error) {
	b.enter()
	select {
	case <-b.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return b.Store.Update(ctx, c, id, fn)
}

func (b *blockingStore) UpdateMany(ctx context.Context, keys []store.Key, fn store.ManyFunc) ([]*store.Document, error) {
	b.enter()
	select {
	case <-b.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return b.Store.UpdateMany(ctx, keys, fn)
}

func TestIdempotency(t *testing.T) {
	s := startServer(t)
	key := `"8e03978e-40d5-43e8-bc93-6894a57f9324"`
	t.Run("Post", func(t *testing.T) {
		h := hdr{"Content-Type", ctJSON, "Idempotency-Key", key}
		first := s.do(t, "POST", "/docs/p", h, `{"n":1}`)
		expect(t, first, http.StatusCreated, "")
		again := s.do(t, "POST", "/docs/p", h, `{"n":1}`)
		expect(t, again, http.StatusCreated, "")
		for _, name := range []string{"Location", "ETag", "Content-Type"} {
			if first.header.Get(name) != again.header.Get(name) {
				t.Errorf("%s: %q then %q", name, first.header.Get(name), again.header.Get(name))
			}
		}
		if !bytes.Equal(first.body, again.body) || again.header.Get("Idempotent-Replayed") != "true" || first.header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("replay: %s %v", again.body, again.header)
		}
		list := s.do(t, "GET", "/docs/p", nil, "")
		if n := strings.Count(string(list.body), `"id"`); n != 1 {
			t.Fatalf("%d documents after a retried POST: %s", n, list.body)
		}
		// Same key, other body: 422, nothing written.
		expect(t, s.do(t, "POST", "/docs/p", h, `{"n":2}`), http.StatusUnprocessableEntity, "idempotency-key-reused")
		// Same key, other path: 422 too.
		expect(t, s.do(t, "POST", "/docs/q", h, `{"n":1}`), http.StatusUnprocessableEntity, "idempotency-key-reused")
		if n := strings.Count(string(s.do(t, "GET", "/docs/p", nil, "").body), `"id"`); n != 1 {
			t.Fatalf("%d documents after a refused POST", n)
		}
		// A bare key is accepted as the same key as its quoted form.
		expect(t, s.do(t, "POST", "/docs/p", hdr{"Content-Type", ctJSON, "Idempotency-Key", strings.Trim(key, `"`)}, `{"n":1}`), http.StatusCreated, "")
	})
	t.Run("Patch", func(t *testing.T) {
		e0 := s.create(t, "/docs/c/d", `{"a":0}`)
		h := hdr{"Content-Type", ctMerge, "If-Match", e0, "Idempotency-Key", `"patch-1"`}
		first := s.do(t, "PATCH", "/docs/c/d", h, `{"a":1}`)
		expect(t, first, http.StatusOK, "")
		// The retry names a stale ETag; without the key it would be
		// rebased and conflict. With it, the first answer comes back.
		again := s.do(t, "PATCH", "/docs/c/d", h, `{"a":1}`)
		expect(t, again, http.StatusOK, "")
		if again.header.Get("ETag") != first.header.Get("ETag") || !bytes.Equal(again.body, first.body) {
			t.Fatalf("replay %v %s, first %v %s", again.header, again.body, first.header, first.body)
		}
		hist := s.do(t, "GET", "/docs/c/d/history", nil, "")
		if n := strings.Count(string(hist.body), `"seq"`); n != 2 {
			t.Fatalf("%d versions after a retried PATCH, want 2", n)
		}
		// A rebased answer is replayed with its Rebased-From.
		e1 := first.header.Get("ETag")
		expect(t, s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", e1}, `{"b":1}`), http.StatusOK, "")
		h2 := hdr{"Content-Type", ctMerge, "If-Match", e1, "Idempotency-Key", `"patch-2"`}
		r1 := s.do(t, "PATCH", "/docs/c/d", h2, `{"c":1}`)
		r2 := s.do(t, "PATCH", "/docs/c/d", h2, `{"c":1}`)
		expect(t, r2, http.StatusOK, "")
		if r1.header.Get("Rebased-From") != e1 || r2.header.Get("Rebased-From") != e1 || r2.header.Get("ETag") != r1.header.Get("ETag") {
			t.Fatalf("rebased replay: %d %v %s then %v", r1.status, r1.header, r1.body, r2.header)
		}
		// Return=minimal answers are replayed minimal.
		cur := r1.header.Get("ETag")
		h3 := hdr{"Content-Type", ctMerge, "If-Match", cur, "Prefer", "return=minimal", "Idempotency-Key", `"patch-3"`}
		expect(t, s.do(t, "PATCH", "/docs/c/d", h3, `{"d":1}`), http.StatusNoContent, "")
		r := s.do(t, "PATCH", "/docs/c/d", h3, `{"d":1}`)
		expect(t, r, http.StatusNoContent, "")
		if len(r.body) != 0 || r.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("minimal replay: %v %q", r.header, r.body)
		}
		// Other If-Match, same key: a different request.
		expect(t, s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", e0, "Prefer", "return=minimal", "Idempotency-Key", `"patch-3"`}, `{"d":1}`),
			http.StatusUnprocessableEntity, "idempotency-key-reused")
	})
	t.Run("FailuresStoreNothing", func(t *testing.T) {
		cur := s.create(t, "/docs/c/f", `{"a":0}`)
		bad := hdr{"Content-Type", ctPatch, "If-Match", cur, "Idempotency-Key", `"fail-1"`}
		expect(t, s.do(t, "PATCH", "/docs/c/f", bad, `[{"op":"test","path":"/a","value":1}]`), http.StatusUnprocessableEntity, "patch-failed")
		expect(t, s.do(t, "PATCH", "/docs/c/f", bad, `[{"op":"test","path":"/a","value":1}]`), http.StatusUnprocessableEntity, "patch-failed")
		// Nothing was stored, so the key is free for a corrected request.
		expect(t, s.do(t, "PATCH", "/docs/c/f", bad, `[{"op":"replace","path":"/a","value":1}]`), http.StatusOK, "")
	})
	t.Run("BadKeys", func(t *testing.T) {
		for _, k := range []string{`""`, `"unterminated`, `"a"b`, `"\x"`, strings.Repeat("k", 256), "two words", `"é"`} {
			expect(t, s.do(t, "POST", "/docs/p", hdr{"Content-Type", ctJSON, "Idempotency-Key", k}, `{}`), http.StatusBadRequest, "invalid-request")
		}
		expect(t, s.do(t, "POST", "/docs/p", hdr{"Content-Type", ctJSON, "Idempotency-Key", `"a"`, "Idempotency-Key", `"b"`}, `{}`), http.StatusBadRequest, "invalid-request")
		// What follows the string is named: parameters (RFC 8941) or not.
		r := s.do(t, "POST", "/docs/p", hdr{"Content-Type", ctJSON, "Idempotency-Key", `"k" ;x=1`}, `{}`)
		expect(t, r, http.StatusBadRequest, "invalid-request")
		if !strings.Contains(string(r.body), "only parameters may follow") {
			t.Fatalf("a key with a space before its parameters: %s", r.body)
		}
	})
	t.Run("KeyParameters", func(t *testing.T) {
		// A structured-field string may carry parameters: they are ignored.
		h := hdr{"Content-Type", ctJSON, "Idempotency-Key", `"with-params";x=1;y="a b";z`}
		l1 := s.do(t, "POST", "/docs/p", h, `{}`)
		expect(t, l1, http.StatusCreated, "")
		l2 := s.do(t, "POST", "/docs/p", hdr{"Content-Type", ctJSON, "Idempotency-Key", `"with-params"`}, `{}`)
		if l2.status != http.StatusCreated || l2.header.Get("Location") != l1.header.Get("Location") {
			t.Fatalf("the same key without its parameters: %d %s, want the replay of %s", l2.status, l2.header.Get("Location"), l1.header.Get("Location"))
		}
	})
	t.Run("Expiry", func(t *testing.T) {
		var mu sync.Mutex
		offset := time.Duration(0)
		path := filepath.Join(t.TempDir(), "patchd.db")
		s := startServerAt(t, path, store.Options{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(offset) }},
			func(c *config) { c.doc.IdempotencyTTL = time.Hour })
		h := hdr{"Content-Type", ctJSON, "Idempotency-Key", `"exp"`}
		l1 := s.do(t, "POST", "/docs/e", h, `{}`).header.Get("Location")
		if l2 := s.do(t, "POST", "/docs/e", h, `{}`).header.Get("Location"); l2 != l1 {
			t.Fatalf("replay within the TTL: %s then %s", l1, l2)
		}
		mu.Lock()
		offset = 2 * time.Hour
		mu.Unlock()
		if l3 := s.do(t, "POST", "/docs/e", h, `{}`).header.Get("Location"); l3 == l1 || l3 == "" {
			t.Fatalf("after the TTL the key still replays %s", l3)
		}
	})
	t.Run("ScopedByToken", func(t *testing.T) {
		s := startServer(t, withTokens(t))
		h := hdr{"Content-Type", ctJSON, "Idempotency-Key", `"shared"`}
		l1 := s.do(t, "POST", "/docs/a", append(bearer(tokWriteA), h...), `{}`).header.Get("Location")
		l2 := s.do(t, "POST", "/docs/a", append(bearer(tokAdmin), h...), `{}`).header.Get("Location")
		if l1 == "" || l2 == "" || l1 == l2 {
			t.Fatalf("two tokens, one key: %q and %q", l1, l2)
		}
	})
	t.Run("InFlight", func(t *testing.T) {
		bs := newBlockingStore()
		s := startServerWith(t, func(st store.Store) store.Store { bs.Store = st; return bs }, nil)
		h := hdr{"Content-Type", ctJSON, "Idempotency-Key", `"slow"`}
		done := make(chan response, 1)
		go func() { done <- s.do(t, "POST", "/docs/s", h, `{}`) }()
		<-bs.entered
		expect(t, s.do(t, "POST", "/docs/s", h, `{}`), http.StatusConflict, "idempotency-key-in-use")
		// Another key is not held up by it (its Update waits in the
		// store, so only check it is not refused: release first).
		close(bs.release)
		first := <-done
		expect(t, first, http.StatusCreated, "")
		again := s.do(t, "POST", "/docs/s", h, `{}`)
		if again.status != http.StatusCreated || again.header.Get("Location") != first.header.Get("Location") {
			t.Fatalf("retry after the first finished: %d %v", again.status, again.header)
		}
	})
}
