package connlimit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serve starts a server on loopback behind a Listener with lim; requests
// to /block wait until release is closed.
func serve(t *testing.T, lim Limits) (l *Listener, addr string, release chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release = make(chan struct{})
	l = New(ln, lim)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/block" {
				w.WriteHeader(http.StatusOK)
				w.(http.Flusher).Flush()
				<-release
			}
			fmt.Fprint(w, "ok")
		}),
		ConnState:         l.ConnState,
		ConnContext:       l.ConnContext,
		ReadHeaderTimeout: 5 * time.Second,
	}
	srv.Handler = l.Handler(srv.Handler)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
		_ = srv.Close()
	})
	return l, ln.Addr().String(), release
}

// client is one connection sending requests by hand.
type client struct {
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	return dialFrom(t, addr, nil)
}

// dialFrom connects from the loopback address from (any when nil).
func dialFrom(t *testing.T, addr string, from net.IP) *client {
	t.Helper()
	d := net.Dialer{}
	if from != nil {
		d.LocalAddr = &net.TCPAddr{IP: from}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{c: c, br: bufio.NewReader(c)}
}

// get sends GET path and reads the answer's status line and headers (and
// its body unless the path blocks).
func (c *client) get(t *testing.T, path string) (*http.Response, error) {
	res, _, err := c.getBody(t, path)
	return res, err
}

// getBody is get, which also returns the body read.
func (c *client) getBody(t *testing.T, path string) (res *http.Response, body []byte, err error) {
	t.Helper()
	_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c.c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
		return nil, nil, err
	}
	if res, err = http.ReadResponse(c.br, nil); err != nil {
		return nil, nil, err
	}
	if path != "/block" {
		body, err = io.ReadAll(res.Body)
	}
	return res, body, err
}

// waitIdle waits until the listener counts n idle connections.
func waitIdle(t *testing.T, l *Listener, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		idle := l.idle.Len()
		l.mu.Unlock()
		if idle >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle connections, want %d", idle, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPerClientIdleMakesRoom: a client at its bound that opens another
// connection gets it; its oldest idle one is closed.
func TestPerClientIdleMakesRoom(t *testing.T) {
	for _, lim := range []Limits{{PerClient: 4, Plain: true}, {Max: 4, Plain: true}} {
		t.Run(fmt.Sprintf("%+v", lim), func(t *testing.T) {
			l, addr, _ := serve(t, lim)
			var cs []*client
			for range 4 {
				c := dial(t, addr)
				if _, err := c.get(t, "/"); err != nil {
					t.Fatal(err)
				}
				cs = append(cs, c)
			}
			waitIdle(t, l, 4)
			// The first connection is used again: the second is now the
			// one idle the longest.
			if res, err := cs[0].get(t, "/"); err != nil || res.StatusCode != http.StatusOK {
				t.Fatalf("the first connection again: %v %v", res, err)
			}
			waitIdle(t, l, 4)
			for i := range 8 { // each new connection takes the place of the oldest idle one
				c := dial(t, addr)
				res, err := c.get(t, "/")
				if err != nil || res.StatusCode != http.StatusOK {
					t.Fatalf("connection %d past the bound: %v %v", i, res, err)
				}
				cs = append(cs, c)
				waitIdle(t, l, 4)
				if total, _ := l.Open("127.0.0.1"); total > 4 {
					t.Fatalf("%d connections held, bound 4", total)
				}
				if i == 0 { // the second connection made room, not the first
					if res, err := cs[0].get(t, "/"); err != nil || res.StatusCode != http.StatusOK {
						t.Fatalf("the first connection after one past the bound: %v %v", res, err)
					}
					waitIdle(t, l, 4)
				}
			}
			// The second connection was closed by the server.
			_ = cs[1].c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := cs[1].br.ReadByte(); err == nil {
				t.Fatal("the oldest idle connection is still open")
			}
		})
	}
}

// TestRefusedWhenNoneIdle: when every connection is busy, a new one is
// answered 503 with Retry-After and closed, and the busy ones go on.
func TestRefusedWhenNoneIdle(t *testing.T) {
	for _, lim := range []Limits{{PerClient: 3, Plain: true}, {Max: 3, Plain: true}} {
		t.Run(fmt.Sprintf("%+v", lim), func(t *testing.T) {
			l, addr, release := serve(t, lim)
			var busy []*http.Response
			for range 3 {
				c := dial(t, addr)
				res, err := c.get(t, "/block")
				if err != nil || res.StatusCode != http.StatusOK {
					t.Fatalf("blocking request: %v %v", res, err)
				}
				busy = append(busy, res)
			}
			c := dial(t, addr)
			res, body, err := c.getBody(t, "/")
			if err != nil {
				t.Fatalf("refused connection: %v, want a 503 answer", err)
			}
			if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "/problems/overloaded") {
				t.Fatalf("refused connection: %d %v %s", res.StatusCode, res.Header, body)
			}
			if total, _ := l.Open("127.0.0.1"); total != 3 {
				t.Fatalf("%d connections held, want the 3 busy ones", total)
			}
			close(release)
			for _, res := range busy {
				if body, err := io.ReadAll(res.Body); err != nil || string(body) != "ok" {
					t.Fatalf("a busy connection failed: %q %v", body, err)
				}
			}
		})
	}
}

// TestRefusedAnswerAfterRequest: the 503 of a refused connection is
// written after the client's request, not as soon as the connection is
// accepted: net/http's client takes an answer that comes before its
// request for an "unsolicited response" and reports a network error
// instead of the 503 and its Retry-After. A client that sends nothing is
// closed without an answer, after a second.
func TestRefusedAnswerAfterRequest(t *testing.T) {
	_, addr, release := serve(t, Limits{PerClient: 1, Plain: true})
	defer close(release)
	busy := dial(t, addr)
	if res, err := busy.get(t, "/block"); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("blocking request: %v %v", res, err)
	}
	c := dial(t, addr)
	_ = c.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.br.Peek(1); err == nil {
		t.Fatalf("the refusal came before the request: %q", n)
	}
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, body, err := c.getBody(t, "/")
	if err != nil || res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "/problems/overloaded") {
		t.Fatalf("refused connection: %v %v %s", res, err, body)
	}
	silent := dial(t, addr)
	_ = silent.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(silent.br); len(b) != 0 || err != nil {
		t.Fatalf("a refused connection that sent nothing: %q %v, want closed without an answer", b, err)
	}
}

// TestRefusalsShared: one address's refused connections that send nothing
// hold at most maxRefusingPerClient of the places for answering refused
// connections, so that another address's refused request still gets its
// 503 rather than a bare close.
func TestRefusalsShared(t *testing.T) {
	_, addr, release := serve(t, Limits{Max: 1, Plain: true})
	defer close(release)
	if res, err := dial(t, addr).get(t, "/block"); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("blocking request: %v %v", res, err)
	}
	for range maxRefusing { // refused, and silent: each holds its place for a second
		dialFrom(t, addr, net.IPv4(127, 0, 0, 2))
	}
	c := dialFrom(t, addr, net.IPv4(127, 0, 0, 3))
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, body, err := c.getBody(t, "/")
	if err != nil || res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "/problems/overloaded") {
		t.Fatalf("another address's refused request while one address's silent connections wait: %v %v %s, want 503", res, err, body)
	}
}

// TestSlowHeadsMakeRoom: connections that have not sent a whole request
// head for longer than HeadGrace (slowloris: a header line now and then)
// make room as idle ones do, so that they cannot hold every place; busy
// ones (a request being served) never do.
func TestSlowHeadsMakeRoom(t *testing.T) {
	for _, lim := range []Limits{{PerClient: 3, Plain: true, HeadGrace: 100 * time.Millisecond}, {Max: 3, Plain: true, HeadGrace: 100 * time.Millisecond}} {
		t.Run(fmt.Sprintf("%+v", lim), func(t *testing.T) {
			l, addr, release := serve(t, lim)
			busy, err := dial(t, addr).get(t, "/block")
			if err != nil || busy.StatusCode != http.StatusOK {
				t.Fatalf("blocking request: %v %v", busy, err)
			}
			var slow []*client
			for range 2 {
				c := dial(t, addr)
				if _, err := fmt.Fprint(c.c, "GET / HTTP/1.1\r\nHost: x\r\n"); err != nil {
					t.Fatal(err)
				}
				slow = append(slow, c)
			}
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
				if total, _ := l.Open("127.0.0.1"); total == 3 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the three connections were not counted")
				}
			}
			time.Sleep(2 * lim.HeadGrace)
			// Two clients whose requests stay busy: each takes a slow one's
			// place (an idle one would be taken first).
			for i := range 2 {
				c := dial(t, addr)
				if res, err := c.get(t, "/block"); err != nil || res.StatusCode != http.StatusOK {
					t.Fatalf("client %d, with slow heads holding the places: %v %v", i, res, err)
				}
			}
			// The slow ones were closed at once (the server's own header
			// timeout, 5 s, would close them later).
			for i, c := range slow {
				_ = c.c.SetReadDeadline(time.Now().Add(2 * time.Second))
				_, err := c.br.ReadByte()
				var ne net.Error
				if err == nil || errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("slow connection %d: %v, want it closed", i, err)
				}
			}
			close(release)
			if body, err := io.ReadAll(busy.Body); string(body) != "ok" {
				t.Fatalf("the busy connection: %q %v", body, err)
			}
		})
	}
}

// TestClientOfIPv6: an IPv6 client is its /64, as for rate limits and
// streams: one host usually holds a whole /64, and its addresses cost it
// nothing.
func TestClientOfIPv6(t *testing.T) {
	if a, b := clientOf("[2001:db8:1:2::1]:443"), clientOf("[2001:db8:1:2:ffff::9]:80"); a != b {
		t.Fatalf("two addresses of one /64: %q and %q", a, b)
	}
	if a, b := clientOf("[2001:db8:1:2::1]:443"), clientOf("[2001:db8:1:3::1]:443"); a == b {
		t.Fatalf("two /64s: both %q", a)
	}
	if got := clientOf("192.0.2.7:1234"); got != "192.0.2.7" {
		t.Fatalf("IPv4: %q", got)
	}
}

// TestRefusedRequestAnswered: a connection the server refuses a request on
// (headers over MaxHeaderBytes: 431) gets the whole answer, not a reset:
// the server half-closes it (CloseWrite) through the Listener's
// connection, then closes it with the rest of the request unread.
func TestRefusedRequestAnswered(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(ln, Limits{PerClient: 4, Plain: true})
	srv := &http.Server{Handler: http.NotFoundHandler(), ConnState: l.ConnState, MaxHeaderBytes: 1 << 10}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	c := dial(t, ln.Addr().String())
	_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c.c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 100<<10)); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(c.br, nil)
	if err != nil || res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a request with 100 KB of headers: %v %v, want 431", res, err)
	}
	// The answer has no length: it ends where the server closes its side,
	// which must be a close, not a reset.
	if body, err := io.ReadAll(res.Body); err != nil {
		t.Fatalf("the 431's body: %q, %v", body, err)
	}
}

// BenchmarkAdmitAtBound: a connection accepted at the bound in all, with
// 100,000 idle connections held by 1,000 addresses, finds the oldest idle
// one to close.
func BenchmarkAdmitAtBound(b *testing.B) {
	const n = 100_000
	l := New(nil, Limits{Max: n, PerClient: n})
	for i := range n {
		c := &conn{l: l, ip: fmt.Sprint("10.0.", i%1000)}
		l.admit(c)
		l.setIdle(c, true)
	}
	b.ResetTimer()
	for i := range b.N {
		c := &conn{l: l, ip: fmt.Sprint("10.1.", i%1000)}
		victims, ok := l.admit(c)
		if !ok || len(victims) != 1 {
			b.Fatalf("admit at the bound: %d victims, %v", len(victims), ok)
		}
		l.setIdle(c, true)
	}
}
