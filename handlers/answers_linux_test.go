package handlers_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestDocumentAnswersPerClient: a document being written holds its bytes of
// the answers' budget, and one client at most a quarter of it: a client
// that asks for large documents and does not read them is refused 429
// past its share (over HTTP/2, 250 such GETs a connection held 250 MB),
// while another client is served.
func TestDocumentAnswersPerClient(t *testing.T) {
	t.Parallel()
	// Larger than the kernel's sending buffer of a connection at most
	// (tcp_wmem; the slow client takes a few KiB at a time): the answer
	// stays being written while the client does not read.
	size := 6 << 20
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_wmem"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 3 {
			if most, err := strconv.Atoi(f[2]); err == nil {
				size = max(size, most+2<<20)
			}
		}
	}
	s := startServer(t, func(c *config) {
		c.http.AnswerBudget = int64(4 * size) // a client's share: one answer
		c.http.MaxBody, c.doc.Limits.MaxDoc = int64(size+1<<20), size+1<<20
		c.http.DecodeBudget = int64(2 * (size + 1<<20))
	})
	s.create(t, "/docs/big/d", `{"pad":"`+strings.Repeat("p", size)+`"}`)
	dialer := &net.Dialer{LocalAddr: slowClient, Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) }); cerr != nil {
			return cerr
		}
		return err
	}}
	conn, err := dialer.Dial("tcp", s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /docs/big/d HTTP/1.1\r\nHost: patchd\r\n\r\n")
	status := make([]byte, len("HTTP/1.1 200"))
	if _, err := io.ReadFull(conn, status); err != nil || string(status) != "HTTP/1.1 200" {
		t.Fatalf("the unread GET: %q %v", status, err)
	}
	r := s.doWith(t, fromClient(slowClient), "GET", "/docs/big/d", nil, "")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("a second large GET of the client that reads nothing: %d (Retry-After %q), want 429 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
	expect(t, s.do(t, "GET", "/docs/big/d", nil, ""), http.StatusOK, "")
	// Small documents are not counted.
	s.create(t, "/docs/big/small", `{"n":1}`)
	expect(t, s.doWith(t, fromClient(slowClient), "GET", "/docs/big/small", nil, ""), http.StatusOK, "")
}
