package handlers_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDocumentAnswersPerClient: a document being written holds its bytes of
// the answers' budget, and one client at most a quarter of it: a client
// that asks for large documents and does not read them is refused 429
// past its share (over HTTP/2, 250 such GETs a connection held 250 MB),
// while another client is served.
func TestDocumentAnswersPerClient(t *testing.T) {
	t.Parallel()
	size := unreadSize()
	s := startServer(t, func(c *config) {
		c.http.AnswerBudget = int64(4 * size) // a client's share: one answer
		c.http.MaxBody, c.doc.Limits.MaxDoc = int64(size+1<<20), size+1<<20
		c.http.DecodeBudget = int64(2 * (size + 1<<20))
	})
	s.create(t, "/docs/big/d", `{"pad":"`+strings.Repeat("p", size)+`"}`)
	conn := dialUnread(t, s, slowClient)
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

// unreadSize returns a size larger than the kernel's sending buffer of a
// connection at most (tcp_wmem; a client dialed by dialUnread takes a few
// KiB at a time): an answer of that size stays being written while its
// client does not read.
func unreadSize() int {
	size := 6 << 20
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_wmem"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 3 {
			if most, err := strconv.Atoi(f[2]); err == nil {
				size = max(size, most+2<<20)
			}
		}
	}
	return size
}

// dialUnread connects to s from addr with a receiving buffer of 4 KiB, for
// a client that sends a request and then reads nothing.
func dialUnread(t *testing.T, s *server, addr *net.TCPAddr) net.Conn {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: addr, Control: func(_, _ string, rc syscall.RawConn) error {
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
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestStreamSnapshotsHoldAnswers: a snapshot a stream is writing holds its
// bytes of the answers' budget, as a document being written does, and one
// client's snapshots at most its share, the stream waiting for room rather
// than reading more. Before, each stream held a copy of whatever snapshot
// it was writing, uncounted: a POST /events of 300 large documents from
// each of many clients that did not read held as many copies as streams.
func TestStreamSnapshotsHoldAnswers(t *testing.T) {
	t.Parallel()
	size := unreadSize()
	s := startServer(t, func(c *config) {
		// Three snapshots fit (each stream holds the largest document
		// there may be, size+1 MiB, while it reads one), a fourth does
		// not, and a client's share is less than one.
		c.http.AnswerBudget = int64(3*size + 3<<19)
		c.http.MaxBody, c.doc.Limits.MaxDoc = int64(size+1<<20), size+1<<20
		c.http.DecodeBudget = int64(2 * (size + 1<<20))
		c.http.OverloadWait = 100 * time.Millisecond
	})
	var subs []string
	for i := range 4 {
		s.create(t, fmt.Sprintf("/docs/big/d%d", i), `{"pad":"`+strings.Repeat("p", size)+`"}`)
		subs = append(subs, fmt.Sprintf(`{"c":"big","id":"d%d"}`, i))
	}
	body := `{"docs":[` + strings.Join(subs, ",") + `]}`
	open := func(addr *net.TCPAddr) net.Conn {
		conn := dialUnread(t, s, addr)
		fmt.Fprintf(conn, "POST /events HTTP/1.1\r\nHost: patchd\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		status := make([]byte, len("HTTP/1.1 200"))
		if _, err := io.ReadFull(conn, status); err != nil || string(status) != "HTTP/1.1 200" {
			t.Fatalf("the unread stream: %q %v", status, err)
		}
		return conn
	}
	// The stream of a client that reads nothing holds its share with the
	// first snapshot it writes: the client's own large GET is refused.
	open(slowClient)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := s.doWith(t, fromClient(slowClient), "GET", "/docs/big/d0", nil, "")
		if r.status == http.StatusTooManyRequests {
			break
		}
		if r.status != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("a large GET of the client whose stream is unread: %d, want 429 once the stream writes its snapshot", r.status)
		}
	}
	for range 3 { // held, not a GET of the loop above still being written
		expect(t, s.doWith(t, fromClient(slowClient), "GET", "/docs/big/d0", nil, ""), http.StatusTooManyRequests, "rate-limited")
	}
	// Streams of two more clients that do not read hold the rest; a
	// fourth's waits without reading its snapshot, and another client's
	// large GET finds no room: 503 overloaded.
	second := open(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)})
	open(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 4)})
	fourth := open(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 5)})
	for {
		r := s.do(t, "GET", "/docs/big/d0", nil, "")
		if r.status == http.StatusServiceUnavailable {
			expect(t, r, 503, "overloaded")
			break
		}
		if r.status != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("a large GET while unread streams hold the answers' budget: %d, want 503 overloaded", r.status)
		}
	}
	// One unread stream gone makes room for the one that waited, and the
	// budget stays full.
	second.Close()
	expect(t, s.do(t, "GET", "/docs/big/d0", nil, ""), 503, "overloaded")
	if !connReads(fourth, "event: snapshot\n") {
		t.Fatal("the stream that waited sent no snapshot once another went")
	}
}

// connReads reads conn until what it has read holds want (true), or for
// 10 s.
func connReads(conn net.Conn, want string) bool {
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []byte
	buf := make([]byte, 4096)
	for !strings.Contains(string(got), want) {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		if len(got) > 1<<16 {
			got = got[len(got)-1<<15:]
		}
		if err != nil {
			return false
		}
	}
	return true
}

// fullAnswers starts a feed server whose answers' budget a client that
// reads nothing fills with one large GET (left open), with 64 KiB to
// spare; it returns the server and the size of the large document
// /docs/big/d.
func fullAnswers(t *testing.T) (*feedServer, int) {
	t.Helper()
	size := unreadSize()
	s := startFeedServer(t, feedOpts{cfg: func(c *config) {
		c.http.AnswerBudget = int64(size + 64<<10)
		c.http.MaxBody, c.doc.Limits.MaxDoc = int64(size+1<<20), size+1<<20
		c.http.DecodeBudget = int64(2 * (size + 1<<20))
		c.http.OverloadWait = 100 * time.Millisecond
	}})
	s.create(t, "/docs/big/d", `{"pad":"`+strings.Repeat("p", size)+`"}`)
	conn := dialUnread(t, s.server, slowClient)
	fmt.Fprintf(conn, "GET /docs/big/d HTTP/1.1\r\nHost: patchd\r\n\r\n")
	status := make([]byte, len("HTTP/1.1 200"))
	if _, err := io.ReadFull(conn, status); err != nil || string(status) != "HTTP/1.1 200" {
		t.Fatalf("the unread GET: %q %v", status, err)
	}
	return s, size
}

// TestSmallSnapshotsNeedNoRoom: a snapshot under 16 KiB holds nothing of
// the answers' budget, so streams of small documents start while large
// answers fill it (before, each snapshot first reserved the largest
// document there may be, and waited for that much room).
func TestSmallSnapshotsNeedNoRoom(t *testing.T) {
	t.Parallel()
	s, _ := fullAnswers(t)
	s.create(t, "/docs/small/s", `{"n":1}`)
	f := mustOpenFeed(t, s, "/docs/small/s/events", nil)
	if ev := f.event(t); ev.Event != "snapshot" {
		t.Fatalf("first event %+v, want the snapshot", ev)
	}
	if held := s.h.AnswersHeld(); held >= int64(unreadSize())+64<<10 {
		t.Fatalf("answers' budget holds %d bytes", held)
	}
}

// TestResumeCaughtUpHoldsNothing: a stream resumed at the document's
// current seq sends no event at its start, and holds nothing of the
// answers' budget while it waits for the next (before, it held the
// document's bytes for as long as it stayed open).
func TestResumeCaughtUpHoldsNothing(t *testing.T) {
	t.Parallel()
	s := startFeedServer(t, feedOpts{})
	s.create(t, "/docs/f/big", `{"pad":"`+strings.Repeat("p", 100<<10)+`"}`)
	for range 3 {
		mustOpenFeed(t, s, "/docs/f/big/events", hdr{"Last-Event-ID", "1"})
	}
	if held := s.h.AnswersHeld(); held != 0 {
		t.Fatalf("3 caught-up streams hold %d bytes of the answers' budget, want 0", held)
	}
}

// TestStreamWaitingForRoomClosed: a stream whose snapshot waits for room
// when the streams are closed (a shutdown) is answered 503 with
// Retry-After, not 500.
func TestStreamWaitingForRoomClosed(t *testing.T) {
	t.Parallel()
	s, _ := fullAnswers(t)
	got := make(chan response, 1)
	go func() {
		_, r := openFeed(t, s, "/docs/big/d/events", nil, nil)
		got <- r
	}()
	deadline := time.Now().Add(10 * time.Second)
	for s.h.AnswersWaiting() == 0 { // the stream waits for room
		if time.Now().After(deadline) {
			t.Fatal("the stream's snapshot never waited for room")
		}
		runtime.Gosched()
	}
	s.h.CloseStreams()
	r := <-got
	expect(t, r, http.StatusServiceUnavailable, "unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("a 503 without Retry-After")
	}
}

// TestStreamReplaysHoldAnswers: the version events a stream replays hold
// their bytes of the answers' budget while written, as snapshots do (a
// version written by a PUT carries the whole document): before, 1,024
// unread streams replaying versions of 900 KB held 1.5 GB.
func TestStreamReplaysHoldAnswers(t *testing.T) {
	t.Parallel()
	size := unreadSize()
	s := startFeedServer(t, feedOpts{cfg: func(c *config) {
		c.http.AnswerBudget = int64(4 * (size + 1<<20))
		c.http.MaxBody, c.doc.Limits.MaxDoc = int64(size+1<<20), size+1<<20
		c.http.DecodeBudget = int64(2 * (size + 1<<20))
	}})
	s.create(t, "/docs/big/d", `{"pad":"`+strings.Repeat("p", size)+`"}`)
	held := func(want int64, what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for s.h.AnswersHeld() < want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the answers' budget holds %d bytes, want at least %d", what, s.h.AnswersHeld(), want)
			}
			runtime.Gosched()
		}
	}
	body := `{"docs":[{"c":"big","id":"d","after":0}]}`
	conn := dialUnread(t, s.server, slowClient)
	fmt.Fprintf(conn, "POST /events HTTP/1.1\r\nHost: patchd\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	held(int64(size), "an unread POST /events replaying a version")
	conn = dialUnread(t, s.server, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)})
	fmt.Fprintf(conn, "GET /docs/big/d/events?after=0 HTTP/1.1\r\nHost: patchd\r\n\r\n")
	held(int64(2*size), "and an unread GET .../events?after=0")
}

// TestCloseStreamsStopsStart: closing the streams (a shutdown) ends a
// POST /events still sending its snapshots at its next read, rather than
// after all of them: a slow client on 300 large documents kept a graceful
// shutdown waiting until its deadline.
func TestCloseStreamsStopsStart(t *testing.T) {
	t.Parallel()
	s := startFeedServer(t, feedOpts{})
	var subs []string
	pad := strings.Repeat("p", 100<<10)
	for i := range 300 {
		s.create(t, fmt.Sprintf("/docs/many/d%d", i), `{"pad":"`+pad+`"}`)
		subs = append(subs, fmt.Sprintf(`{"c":"many","id":"d%d"}`, i))
	}
	body := `{"docs":[` + strings.Join(subs, ",") + `]}`
	conn, err := net.Dial("tcp", s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /events HTTP/1.1\r\nHost: patchd\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("the stream: %v %v", res, err)
	}
	head := make([]byte, len("retry: "))
	if _, err := io.ReadFull(res.Body, head); err != nil { // open, and sending
		t.Fatal(err)
	}
	s.h.CloseStreams()
	rest, err := io.ReadAll(res.Body) // to the answer's end
	if err != nil {
		t.Fatalf("reading the rest of the stream: %v (a stream that does not end)", err)
	}
	if n := strings.Count(string(rest), "event: snapshot\n"); n >= 300 {
		t.Fatalf("%d snapshots after the streams were closed: the stream sent them all", n)
	}
}

// TestCaughtUpResumeNeedsNoRoom: a stream resumed at a large document's
// current seq sends nothing at its start, so it does not wait for room in
// a full answers' budget: over GET and POST /events alike it opens at
// once (POST /events sends ready).
func TestCaughtUpResumeNeedsNoRoom(t *testing.T) {
	t.Parallel()
	s, _ := fullAnswers(t)
	mustOpenFeed(t, s, "/docs/big/d/events", hdr{"Last-Event-ID", "1"})
	body := `{"docs":[{"c":"big","id":"d","after":1}]}`
	conn, err := net.Dial("tcp", s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /events HTTP/1.1\r\nHost: patchd\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if !connReads(conn, "event: ready") {
		t.Fatal("a caught-up POST /events sent no ready while the answers' budget was full")
	}
}
