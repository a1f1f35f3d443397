package handlers_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/patchd/patchd/handlers"
)

// TestHTTP1OnlyRefusesPreface: the HTTP/2 preface in clear gets the 505
// that net/http gives any other HTTP/2.0 request line, and never reaches
// the handler; ordinary requests do.
func TestHTTP1OnlyRefusesPreface(t *testing.T) {
	var reached atomic.Int32
	srv := httptest.NewServer(handlers.HTTP1Only(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})))
	t.Cleanup(srv.Close)
	send := func(raw string) (*http.Response, string) {
		t.Helper()
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	// What net/http itself answers to an HTTP/2.0 request line.
	want, wantBody := send("GET / HTTP/2.0\r\nHost: x\r\n\r\n")
	if want.StatusCode != http.StatusHTTPVersionNotSupported {
		t.Fatalf("GET / HTTP/2.0: %d %q", want.StatusCode, wantBody)
	}
	res, body := send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	if res.StatusCode != http.StatusHTTPVersionNotSupported || body != wantBody || !res.Close ||
		res.Header.Get("Content-Type") != want.Header.Get("Content-Type") {
		t.Fatalf("preface: %d %v %q (close %v); net/http answers %d %v %q", res.StatusCode, res.Header, body, res.Close, want.StatusCode, want.Header, wantBody)
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("the handler saw %d requests", n)
	}
	if res, _ := send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"); res.StatusCode != http.StatusNoContent || reached.Load() != 1 {
		t.Fatalf("an HTTP/1.1 request: %d, handler reached %d times", res.StatusCode, reached.Load())
	}
}
