// Package connlimit bounds the connections a server holds, in all and per
// client address, so that no client can take every file descriptor with
// connections it keeps open and idle.
//
// A Listener counts the connections it accepted and not yet closed. When a
// new connection would pass a bound, the oldest idle connection that holds
// the place (the client's own for the per-client bound) is closed to make
// room: an idle keep-alive connection may be closed at any time, and
// clients open a new one. A connection that has not sent a whole request
// head for longer than HeadGrace (its first, or its next one) makes room
// likewise, so that clients that send their heads a line at a time
// (slowloris) cannot hold every place. When there is none of either, the
// new connection is refused: over plain HTTP it is answered 503 with
// Retry-After once its request's head has come (within a second), then
// closed.
//
// A client is an IP address, or for IPv6 its /64 network, which one host
// usually holds whole.
//
// The http.Server must report connection states to ConnState, pass its
// connections' contexts through ConnContext, and serve its handler through
// Handler.
package connlimit

import (
	"bytes"
	"container/list"
	"context"
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
	// HeadGrace is how long a connection may take to send a request's
	// head (the TLS handshake included) before it makes room for others
	// at a bound. Zero means 2s.
	HeadGrace time.Duration
}

// Listener is a net.Listener that keeps to Limits.
type Listener struct {
	net.Listener
	lim Limits

	mu    sync.Mutex
	total int
	byIP  map[string]*address // the connections of each client address
	idle  list.List           // of *conn idle, the longest idle first
	heads list.List           // of *conn waiting for a request's head, the longest first

	refusing   chan struct{}  // bounds the answers to refused connections being written
	refusingBy map[string]int // of those, each client address's (under mu); only addresses with some
}

// maxRefusing is the most refused connections being answered at once, and
// maxRefusingPerClient the most of one client address, so that one
// address's connections that never send a request's head do not leave
// every other refused client a bare close.
const (
	maxRefusing          = 16
	maxRefusingPerClient = 4
)

// New returns a Listener that accepts from ln within lim.
func New(ln net.Listener, lim Limits) *Listener {
	if lim.HeadGrace <= 0 {
		lim.HeadGrace = 2 * time.Second
	}
	return &Listener{Listener: ln, lim: lim, byIP: map[string]*address{}, refusing: make(chan struct{}, maxRefusing), refusingBy: map[string]int{}}
}

// address is the connections of one client address.
type address struct {
	n     int       // connections held
	idle  list.List // of *conn idle, the longest idle first
	heads list.List // of *conn waiting for a request's head, the longest first
}

// conn is an accepted connection.
type conn struct {
	net.Conn
	l  *Listener
	ip string
	// Guarded by l.mu: the connection's places in the idle lists while it
	// is idle, and in the lists of those waiting for a request's head while
	// it waits (since headSince); whether it was released.
	idle, head place
	headSince  time.Time
	gone       bool
}

// place is a connection's place in a list of the Listener's and in the
// same list of its client's: idle, or waiting for a request's head.
type place struct{ all, client *list.Element }

// set puts c at the back of all and client, or (in false) takes it out of
// them.
func (p *place) set(c *conn, in bool, all, client *list.List) {
	if p.all != nil {
		all.Remove(p.all)
		client.Remove(p.client)
		p.all, p.client = nil, nil
	}
	if in {
		p.all, p.client = all.PushBack(c), client.PushBack(c)
	}
}

// first returns the front connection of all, or for a client ("" for
// none) of its own list of, or nil.
func (l *Listener) first(client string, of func(*address) *list.List, all *list.List) *conn {
	if client != "" {
		cl := l.byIP[client]
		if cl == nil {
			return nil
		}
		all = of(cl)
	}
	if e := all.Front(); e != nil {
		return e.Value.(*conn)
	}
	return nil
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
		c := &conn{Conn: nc, l: l, ip: clientOf(nc.RemoteAddr().String())}
		victims, ok := l.admit(c)
		for _, v := range victims {
			_ = v.Conn.Close() // its server goroutine sees the close and ends
		}
		if ok {
			return c, nil
		}
		l.refuse(nc, c.ip)
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
			v = l.slowestHead(c.ip)
		}
		if v == nil {
			return nil, false
		}
		l.releaseLocked(v)
		victims = append(victims, v)
	}
	if l.lim.Max > 0 && l.total >= l.lim.Max {
		v := l.oldestIdle("")
		if v == nil {
			v = l.slowestHead("")
		}
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
	return l.first(ip, func(a *address) *list.List { return &a.idle }, &l.idle)
}

// slowestHead returns the connection of client ip ("" for any) that has
// waited the longest for a request's head, if that is longer than
// HeadGrace, or nil. l.mu is held.
func (l *Listener) slowestHead(ip string) *conn {
	if c := l.first(ip, func(a *address) *list.List { return &a.heads }, &l.heads); c != nil && time.Since(c.headSince) > l.lim.HeadGrace {
		return c
	}
	return nil
}

// setHead puts c at the back of the lists of connections waiting for a
// request's head, from now, or takes it out of them. l.mu is held, and c
// is not released.
func (l *Listener) setHead(c *conn, waiting bool) {
	c.head.set(c, waiting, &l.heads, &l.byIP[c.ip].heads)
	if waiting {
		c.headSince = time.Now()
	}
}

// setIdle puts c at the back of the idle lists, or takes it out of them.
// l.mu is held, and c is not released.
func (l *Listener) setIdle(c *conn, idle bool) {
	c.idle.set(c, idle, &l.idle, &l.byIP[c.ip].idle)
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
	l.setHead(c, false)
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
// when it carries plain HTTP and few answers are being written, in all and
// to its client address ip.
func (l *Listener) refuse(nc net.Conn, ip string) {
	if !l.lim.Plain || !l.takeRefusal(ip) {
		_ = nc.Close()
		return
	}
	go func() {
		defer l.giveRefusal(ip)
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

// takeRefusal takes a place for answering a refused connection of ip, if
// there is one within maxRefusing and maxRefusingPerClient.
func (l *Listener) takeRefusal(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.refusingBy[ip] >= maxRefusingPerClient {
		return false
	}
	select {
	case l.refusing <- struct{}{}:
	default:
		return false
	}
	l.refusingBy[ip]++
	return true
}

// giveRefusal gives back ip's place taken by takeRefusal.
func (l *Listener) giveRefusal(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	<-l.refusing
	if l.refusingBy[ip]--; l.refusingBy[ip] <= 0 {
		delete(l.refusingBy, ip)
	}
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
// connections are idle, and which wait for a request's head: a new one,
// and one that was idle and begins its next request.
func (l *Listener) ConnState(nc net.Conn, st http.ConnState) {
	c := connOf(nc)
	if c == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch st {
	case http.StateIdle, http.StateNew, http.StateActive:
		if c.gone {
			return
		}
		if st == http.StateNew || st == http.StateActive && c.idle.all != nil {
			l.setHead(c, true)
		} else if st == http.StateIdle {
			l.setHead(c, false)
		}
		l.setIdle(c, st == http.StateIdle)
	case http.StateHijacked, http.StateClosed:
		l.releaseLocked(c)
	}
}

// connOf returns the *conn under nc, or nil.
func connOf(nc net.Conn) *conn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, _ := nc.(*conn)
	return c
}

// connKey is the context key of a request's connection.
type connKey struct{}

// ConnContext is the http.Server's ConnContext hook: it lets Handler find
// a request's connection.
func (l *Listener) ConnContext(ctx context.Context, nc net.Conn) context.Context {
	if c := connOf(nc); c != nil {
		return context.WithValue(ctx, connKey{}, c)
	}
	return ctx
}

// Handler wraps the server's handler: a request that reaches it has sent
// its head, and its connection no longer waits for one.
func (l *Listener) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(connKey{}).(*conn); ok {
			l.mu.Lock()
			if !c.gone {
				l.setHead(c, false)
			}
			l.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

// clientOf returns the client of a remote address: its IP, or for IPv6
// its /64 network.
func clientOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return host
	case ip.To4() == nil:
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
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
