package handlers_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// halfClosed sends one complete request over a new connection, shuts down
// the connection's writing side (shutdown(SHUT_WR)) and reads the answer.
func halfClosed(addr, request string) (*http.Response, []byte, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, request); err != nil {
		return nil, nil, err
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		return nil, nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("no answer: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return res, body, fmt.Errorf("a short answer: %w", err)
	}
	return res, body, nil
}

// TestHalfClosedRequestsAnswered: a client that sends a whole request and
// then shuts down its side of the connection (as HTTP/1.0 clients and some
// tools do) still reads the answer; net/http takes the end of its stream
// for a client gone, which must not cancel the request. 300 requests of
// every kind: each gets its complete answer, nothing is logged at error
// level, and no 500 is counted.
func TestHalfClosedRequestsAnswered(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := startServer(t, func(c *config) { c.http.Logger, c.doc.Logger = logger, logger })
	addr := s.Listener.Addr().String()
	etag := s.create(t, "/docs/c/shared", `{"n":0}`)
	req := func(method, path, ct, ifMatch, body string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: patchd\r\n", method, path)
		if ct != "" {
			fmt.Fprintf(&b, "Content-Type: %s\r\n", ct)
		}
		if ifMatch != "" {
			fmt.Fprintf(&b, "If-Match: %s\r\n", ifMatch)
		}
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
		return b.String()
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 { // bounded: 4 x 25 x 3 requests
				id := fmt.Sprintf("w%d-%d", w, i)
				for _, tc := range []struct {
					request string
					status  int
				}{
					{req("PUT", "/docs/c/"+id, ctJSON, "", fmt.Sprintf(`{"id":%q}`, id)), 201},
					{req("GET", "/docs/c/"+id, "", "", ""), 200},
					{req("PATCH", "/docs/c/shared", ctMerge, etag, fmt.Sprintf(`{%q:%d}`, id, i)), 200},
				} {
					res, body, err := halfClosed(addr, tc.request)
					if err != nil {
						t.Errorf("%s: %v", strings.SplitN(tc.request, "\r\n", 2)[0], err)
						return
					}
					if res.StatusCode != tc.status {
						t.Errorf("%s: %d %s", strings.SplitN(tc.request, "\r\n", 2)[0], res.StatusCode, body)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	text := logs.String()
	mu.Unlock()
	for _, bad := range []string{`"level":"ERROR"`, `"status":500`, `"status":499`} {
		if strings.Contains(text, bad) {
			t.Fatalf("a half-closed client was logged with %s", bad)
		}
	}
	if _, ok := value(s.scrape(t), "patchd_http_requests_total", "route", "/docs/:c/:id", "method", "PUT", "status", "500"); ok {
		t.Fatal("the metrics count a 500")
	}
}
