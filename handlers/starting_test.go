package handlers_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/patchd/patchd/handlers"
)

// TestStarting: while the store opens, /healthz says the process is
// alive, and everything else (/readyz, the API) is 503 unavailable with
// Retry-After and a problem body.
func TestStarting(t *testing.T) {
	srv := httptest.NewServer(handlers.Starting(nil))
	defer srv.Close()
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/healthz", 200}, {"HEAD", "/healthz", 200},
		{"GET", "/readyz", 503}, {"PUT", "/docs/c/d", 503}, {"HEAD", "/docs/c/d", 503}, {"POST", "/events", 503},
	} {
		req, err := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.status {
			t.Fatalf("%s %s: %d, want %d", c.method, c.path, res.StatusCode, c.status)
		}
		if c.status == 503 {
			if res.Header.Get("Retry-After") == "" || res.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%s %s: headers %v", c.method, c.path, res.Header)
			}
			if c.method == "HEAD" {
				continue
			}
			var p struct{ Type string }
			if err := json.Unmarshal(body, &p); err != nil || p.Type != "/problems/unavailable" {
				t.Fatalf("%s %s: body %s (%v)", c.method, c.path, body, err)
			}
		} else if c.method == "GET" && string(body) != "{\"status\":\"ok\"}\n" {
			t.Fatalf("GET /healthz: %q", body)
		}
	}
}

// TestStartingCORS: a page of an allowed origin can read the starting
// server's answers (its preflight is answered, and the 503 carries the CORS
// headers, Retry-After among those it may read), so that a browser client
// waits and retries instead of seeing a network error; another origin gets
// no CORS headers.
func TestStartingCORS(t *testing.T) {
	const origin = "https://app.example.com"
	srv := httptest.NewServer(handlers.Starting(handlers.ParseOrigins(origin + "/")))
	defer srv.Close()
	do := func(method, from string, hdr ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+"/docs/c/d", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", from)
		for i := 0; i < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	pre := do("OPTIONS", origin, "Access-Control-Request-Method", "PATCH", "Access-Control-Request-Headers", "if-match")
	if pre.StatusCode != 204 || pre.Header.Get("Access-Control-Allow-Origin") != origin ||
		!strings.Contains(pre.Header.Get("Access-Control-Allow-Methods"), "PATCH") ||
		!strings.Contains(pre.Header.Get("Access-Control-Allow-Headers"), "If-Match") {
		t.Fatalf("preflight: %d %v", pre.StatusCode, pre.Header)
	}
	res := do("PATCH", origin)
	if res.StatusCode != 503 || res.Header.Get("Access-Control-Allow-Origin") != origin ||
		!strings.Contains(res.Header.Get("Access-Control-Expose-Headers"), "Retry-After") {
		t.Fatalf("PATCH: %d %v", res.StatusCode, res.Header)
	}
	other := do("PATCH", "https://evil.example.com")
	if other.StatusCode != 503 || other.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("another origin: %d %v", other.StatusCode, other.Header)
	}
}
