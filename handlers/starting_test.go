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
	srv := httptest.NewServer(handlers.Starting())
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
