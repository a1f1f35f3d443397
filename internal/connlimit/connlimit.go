// Package connlimit bounds the connections a server holds, in all and per
// client address, so that no client can take every file descriptor with
// connections it keeps open and idle.
//
// A Listener counts the connections it accepted and not yet closed. When a
// new connection would pass a bound, the oldest idle connection that holds
// the place (the client's own for the per-client bound) is closed to make
// room: an idle keep-alive connection may be closed at any time, and
// clients open a new one. When none is idle, the new connection is refused:
// over plain HTTP it is answered 503 with Retry-After once its request's
// head has come (within a second), then closed.
//
// The http.Server must report connection states to ConnState.
package connlimit

import (
	"bytes"
	"container/list"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Limits are the bounds of a Listener. A bound of zero or less is no bound.
type Limits struct {
	// Max is the most connections in all.
	Max int
	// PerClient is the most connections of one client address (IP).
	PerClient int
	// Plain says the connections carry plain HTTP/1 (no TLS), so that a
	// refused one can be answered.
	Plain bool
}

// Listener is a net.Listener that keeps to Limits.
type Listener struct {
	net.Listener
	lim Limits

	mu    sync.Mutex
	total int
	byIP  map[string]*address // the connections of each client address
	idle  list.List           // of *conn idle, the longest idle first

	refusing chan struct{} // bounds the answers to refused connections being written
}

// New returns a Listener that accepts from ln within lim.
func New(ln net.Listener, lim Limits) *Listener {
	return &Listener{Listener: ln, lim: lim, byIP: map[string]*address{}, refusing: make(chan struct{}, 16)}
}

// address is the connections of one client address.
type address struct {
	n    int       // connections held
	idle list.List // of *conn idle, the longest idle first
}

// conn is an accepted connection.
type conn struct {
	net.Conn
	l  *Listener
	ip string
	// Guarded by l.mu: the connection's places in l.idle and its
	// client's idle list while it is idle (nil otherwise), and whether it
	// was released.
	idleAll, idleIP *list.Element
	gone            bool
}

// Close closes the connection and gives its place back.
func (c *conn) Close() error {
	c.l.release(c)
	return c.Conn.Close()
}

// CloseWrite shuts down the writing side of the connection, as
// *net.TCPConn does: net/http half-closes a connection it refuses (a 431,
// say) so that its answer is read before the close, which a connection
// without CloseWrite would reset instead.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom copies from r to the connection with the underlying
// connection's ReadFrom when it has one (sendfile, for a file).
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// Accept waits for a connection within the limits and returns it.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip, _, err := net.SplitHostPort(nc.RemoteAddr().String())
		if err != nil {
			ip = nc.RemoteAddr().String()
		}
		c := &conn{Conn: nc, l: l, ip: ip}
		victims, ok := l.admit(c)
		for _, v := range victims {
			_ = v.Conn.Close() // its server goroutine sees the close and ends
		}
		if ok {
			return c, nil
		}
		l.refuse(nc)
	}
}

// admit takes a place for c, making room by releasing the oldest idle
// connections that hold it, which the caller closes; ok is false if there
// is no room.
func (l *Listener) admit(c *conn) (victims []*conn, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lim.PerClient > 0 && l.byIP[c.ip] != nil && l.byIP[c.ip].n >= l.lim.PerClient {
		v := l.oldestIdle(c.ip)
		if v == nil {
			return nil, false
		}
		l.releaseLocked(v)
		victims = append(victims, v)
	}
	if l.lim.Max > 0 && l.total >= l.lim.Max {
		v := l.oldestIdle("")
		if v == nil {
			for _, v := range victims { // keep what the client had (never so: its release made room)
				v.gone = false
				l.add(v)
				l.setIdle(v, true)
			}
			return nil, false
		}
		l.releaseLocked(v)
		victims = append(victims, v)
	}
	l.add(c)
	return victims, true
}

// add counts c, which is not idle. l.mu is held.
func (l *Listener) add(c *conn) {
	cl := l.byIP[c.ip]
	if cl == nil {
		cl = &address{}
		l.byIP[c.ip] = cl
	}
	cl.n++
	l.total++
}

// oldestIdle returns the connection idle the longest, of client ip ("" for
// any), or nil. l.mu is held.
func (l *Listener) oldestIdle(ip string) *conn {
	idle := &l.idle
	if ip != "" {
		cl := l.byIP[ip]
		if cl == nil {
			return nil
		}
		idle = &cl.idle
	}
	if e := idle.Front(); e != nil {
		return e.Value.(*conn)
	}
	return nil
}

// setIdle puts c at the back of the idle lists, or takes it out of them.
// l.mu is held, and c is not released.
func (l *Listener) setIdle(c *conn, idle bool) {
	cl := l.byIP[c.ip]
	if c.idleAll != nil {
		l.idle.Remove(c.idleAll)
		cl.idle.Remove(c.idleIP)
		c.idleAll, c.idleIP = nil, nil
	}
	if idle {
		c.idleAll, c.idleIP = l.idle.PushBack(c), cl.idle.PushBack(c)
	}
}

func (l *Listener) release(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.releaseLocked(c)
}

func (l *Listener) releaseLocked(c *conn) {
	if c.gone {
		return
	}
	l.setIdle(c, false)
	c.gone = true
	l.total--
	if cl := l.byIP[c.ip]; cl != nil {
		if cl.n--; cl.n == 0 {
			delete(l.byIP, c.ip)
		}
	}
}

// refusal is the answer to a refused plain HTTP connection.
var refusal = func() []byte {
	body := `{"type":"/problems/overloaded","title":"Overloaded","status":503,"detail":"the server holds as many connections as it takes (in all, or from this address); close idle ones, or retry"}`
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}()

// refuse closes a connection there is no room for, after answering it 503
// when it carries plain HTTP and few answers are being written.
func (l *Listener) refuse(nc net.Conn) {
	if !l.lim.Plain {
		_ = nc.Close()
		return
	}
	select {
	case l.refusing <- struct{}{}:
	default:
		_ = nc.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		// The answer goes after the request's head: net/http's client
		// takes one that comes before its request for an unsolicited
		// response, a network error, and never sees the 503. A client
		// that sends no head within a second gets no answer.
		if !readHead(nc, time.Now().Add(time.Second)) {
			_ = nc.Close()
			return
		}
		_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write(refusal)
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
			// Read what the client sent until it closes, briefly, so that
			// the close does not reset the connection before the answer
			// is read.
			_ = tc.SetReadDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 1024)
			for {
				if _, err := tc.Read(buf); err != nil {
					break
				}
			}
		}
		_ = nc.Close()
	}()
}

// maxRefusedHead is the most of a refused connection's request read for
// the end of its head.
const maxRefusedHead = 16 << 10

// readHead reads from nc until the end of a request's head (an empty
// line), and reports whether it came before deadline and within
// maxRefusedHead bytes.
func readHead(nc net.Conn, deadline time.Time) bool {
	_ = nc.SetReadDeadline(deadline)
	defer func() { _ = nc.SetReadDeadline(time.Time{}) }()
	buf := make([]byte, 0, 1024)
	for len(buf) < maxRefusedHead {
		n, err := nc.Read(buf[len(buf):min(cap(buf), maxRefusedHead)])
		buf = buf[:len(buf)+n]
		if bytes.Contains(buf, []byte("\r\n\r\n")) || bytes.Contains(buf, []byte("\n\n")) {
			return true
		}
		if err != nil {
			return false
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
	}
	return false
}

// ConnState is the http.Server's ConnState hook: it tracks which
// connections are idle.
func (l *Listener) ConnState(nc net.Conn, st http.ConnState) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, ok := nc.(*conn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch st {
	case http.StateIdle, http.StateNew, http.StateActive:
		if !c.gone {
			l.setIdle(c, st == http.StateIdle)
		}
	case http.StateHijacked, http.StateClosed:
		l.releaseLocked(c)
	}
}

// Open returns the connections held, in all and of client ip.
func (l *Listener) Open(ip string) (total, client int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cl := l.byIP[ip]; cl != nil {
		client = cl.n
	}
	return l.total, client
}
