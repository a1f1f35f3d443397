package handlers_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/patchd/patchd/handlers"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// feedServer is a real patchd over a bbolt file that keeps its Handler, so
// that tests can end the change feed streams.
type feedServer struct {
	*server
	h *handlers.Handler
}

type feedOpts struct {
	cfg      func(*config)
	bolt     store.Options
	timeouts time.Duration // http.Server read and write timeouts; 0 for none
}

func startFeedServer(t testing.TB, o feedOpts) *feedServer {
	t.Helper()
	path := filepath.Join(t.TempDir(), "patchd.db")
	st, err := bolt.Open(path, o.bolt)
	if err != nil {
		t.Fatal(err)
	}
	cfg := newConfig(func(c *config) {
		c.http.Events.Heartbeat = time.Hour // tests that want heartbeats set them
	})
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	h := newHandler(st, cfg)
	ts := httptest.NewUnstartedServer(h.Echo())
	ts.Config.ReadTimeout = o.timeouts
	ts.Config.WriteTimeout = o.timeouts
	ts.Start()
	s := &feedServer{server: &server{Server: ts, store: st, path: path}, h: h}
	t.Cleanup(func() {
		h.CloseStreams()
		s.stop()
	})
	return s
}

// sseEvent is one record of a stream: an event, or a comment.
type sseEvent struct {
	ID, Event, Data, Comment string
}

// feed reads one change feed stream over a raw connection, so that every
// read is bounded by a deadline and a test can stop reading altogether.
type feed struct {
	conn  net.Conn
	res   *http.Response
	br    *bufio.Reader
	retry string
}

const feedWait = 10 * time.Second // longest wait for one record

// openFeed GETs path on s and returns the stream, or the error answer.
func openFeed(t testing.TB, s *feedServer, path string, h hdr, dialer *net.Dialer) (*feed, response) {
	t.Helper()
	if dialer == nil {
		dialer = &net.Dialer{}
	}
	conn, err := dialer.Dial("tcp", s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req, err := http.NewRequest("GET", s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Add(h[i], h[i+1])
	}
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(feedWait))
	res, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		conn.Close()
		return nil, response{status: res.StatusCode, header: res.Header, body: b}
	}
	return &feed{conn: conn, res: res, br: bufio.NewReader(res.Body)}, response{status: res.StatusCode, header: res.Header}
}

func mustOpenFeed(t *testing.T, s *feedServer, path string, h hdr) *feed {
	t.Helper()
	f, r := openFeed(t, s, path, h, nil)
	if f == nil {
		t.Fatalf("GET %s: status %d, body %s", path, r.status, r.body)
	}
	for name, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := r.header.Get(name); got != want {
			t.Fatalf("%s=%q, want %q", name, got, want)
		}
	}
	return f
}

// next reads the next event or comment. Records with neither (the retry
// hint) are remembered and skipped.
func (f *feed) next() (sseEvent, error) {
	f.conn.SetReadDeadline(time.Now().Add(feedWait))
	var ev sseEvent
	seen := false
	for {
		line, err := f.br.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if seen && (ev.Data != "" || ev.Comment != "") {
				return ev, nil
			}
			seen = false
			continue
		}
		seen = true
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "":
			ev.Comment = value
		case "id":
			ev.ID = value
		case "event":
			ev.Event = value
		case "data":
			ev.Data = value
		case "retry":
			f.retry = value
		}
	}
}

// event reads the next event, skipping comments.
func (f *feed) event(t *testing.T) sseEvent {
	t.Helper()
	for {
		ev, err := f.next()
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		if ev.Comment == "" {
			return ev
		}
	}
}

// feedData is the data of a version, snapshot or reset event.
type feedData struct {
	Seq         uint64          `json:"seq"`
	ETag        *string         `json:"etag"`
	Kind        string          `json:"kind"`
	Ops         json.RawMessage `json:"ops"`
	RebasedFrom *string         `json:"rebasedFrom"`
	At          string          `json:"at"`
	Value       json.RawMessage `json:"value"`
}

func decodeEvent(t *testing.T, ev sseEvent, wantEvent string, wantSeq uint64) feedData {
	t.Helper()
	if ev.Event != wantEvent || ev.ID != strconv.FormatUint(wantSeq, 10) {
		t.Fatalf("event %q id %q, want %q id %d (data %s)", ev.Event, ev.ID, wantEvent, wantSeq, ev.Data)
	}
	var d feedData
	if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
		t.Fatalf("event data %s: %v", ev.Data, err)
	}
	if d.Seq != wantSeq {
		t.Fatalf("data seq %d, want %d", d.Seq, wantSeq)
	}
	return d
}

// historyEntries returns GET .../history as raw version objects by seq.
func historyEntries(t *testing.T, s *feedServer, path string) map[uint64]string {
	t.Helper()
	r := s.do(t, "GET", path+"/history?limit=1000", nil, "")
	expect(t, r, http.StatusOK, "")
	var h struct{ Versions []json.RawMessage }
	if err := json.Unmarshal(r.body, &h); err != nil {
		t.Fatal(err)
	}
	out := map[uint64]string{}
	for _, v := range h.Versions {
		var d feedData
		if err := json.Unmarshal(v, &d); err != nil {
			t.Fatal(err)
		}
		out[d.Seq] = string(v)
	}
	return out
}

func TestEventsSnapshotVersionsDelete(t *testing.T) {
	s := startFeedServer(t, feedOpts{})
	e1 := s.create(t, "/docs/f/a", `{"a":1,"b":"x"}`)
	f := mustOpenFeed(t, s, "/docs/f/a/events", nil)

	d := decodeEvent(t, f.event(t), "snapshot", 1)
	if *d.ETag != e1 || string(d.Value) != `{"a":1,"b":"x"}` {
		t.Fatalf("snapshot %+v", d)
	}
	if f.retry != "2000" {
		t.Fatalf("retry hint %q, want 2000", f.retry)
	}

	r := s.do(t, "PATCH", "/docs/f/a", hdr{"Content-Type", ctPatch, "If-Match", e1}, `[{"op":"replace","path":"/a","value":2}]`)
	expect(t, r, http.StatusOK, "")
	e2 := r.header.Get("ETag")
	d = decodeEvent(t, f.event(t), "version", 2)
	if *d.ETag != e2 || d.Kind != "json-patch" || string(d.Ops) != `[{"op":"replace","path":"/a","value":2}]` || d.RebasedFrom != nil {
		t.Fatalf("version 2: %+v", d)
	}

	// A stale edit, rebased: the event names the base.
	r = s.do(t, "PATCH", "/docs/f/a", hdr{"Content-Type", ctMerge, "If-Match", e1}, `{"b":"y"}`)
	expect(t, r, http.StatusOK, "")
	d = decodeEvent(t, f.event(t), "version", 3)
	if d.RebasedFrom == nil || *d.RebasedFrom != e1 || d.Kind != "merge-patch" || *d.ETag != r.header.Get("ETag") {
		t.Fatalf("version 3: %+v", d)
	}

	r = s.do(t, "DELETE", "/docs/f/a", hdr{"If-Match", r.header.Get("ETag")}, "")
	expect(t, r, http.StatusNoContent, "")
	d = decodeEvent(t, f.event(t), "version", 4)
	if d.ETag != nil || d.Kind != "delete" || string(d.Ops) != `[{"op":"remove","path":""}]` {
		t.Fatalf("delete event: %+v", d)
	}

	s.create(t, "/docs/f/a", `{"again":true}`)
	d = decodeEvent(t, f.event(t), "version", 5)
	if d.Kind != "put" || string(d.Ops) != `[{"op":"add","path":"","value":{"again":true}}]` {
		t.Fatalf("re-creation event: %+v", d)
	}

	// Each version event carries exactly the history entry of its seq.
	hist := historyEntries(t, s, "/docs/f/a")
	f2 := mustOpenFeed(t, s, "/docs/f/a/events?after=0", nil)
	for seq := uint64(1); seq <= 5; seq++ {
		ev := f2.event(t)
		decodeEvent(t, ev, "version", seq)
		if ev.Data != hist[seq] {
			t.Fatalf("seq %d: event data %s, history %s", seq, ev.Data, hist[seq])
		}
	}
}

func TestEventsDeletedDocument(t *testing.T) {
	s := startFeedServer(t, feedOpts{})
	e := s.create(t, "/docs/f/gone", `{"a":1}`)
	expect(t, s.do(t, "DELETE", "/docs/f/gone", hdr{"If-Match", e}, ""), http.StatusNoContent, "")
	f := mustOpenFeed(t, s, "/docs/f/gone/events", nil)
	ev := f.event(t)
	if ev.Data != `{"etag":null,"seq":2,"value":null}` {
		t.Fatalf("snapshot of a deleted document: %+v", ev)
	}
	decodeEvent(t, ev, "snapshot", 2)
	s.create(t, "/docs/f/gone", `{"b":2}`)
	decodeEvent(t, f.event(t), "version", 3)
}

// TestEventsDeletedLongHistory: the snapshot of a deleted document whose
// history is longer than a page (by bytes here) is at the delete's seq,
// whatever the number of versions: the last version is searched for, not
// read through the whole history.
func TestEventsDeletedLongHistory(t *testing.T) {
	s := startFeedServer(t, feedOpts{})
	for n := 2; n <= 12; n++ {
		path := fmt.Sprintf("/docs/f/long%d", n)
		etag := s.create(t, path, `{"n":0}`)
		for i := 1; i < n; i++ { // versions of 300 KB: a page holds three or four
			r := s.do(t, "PUT", path, hdr{"Content-Type", ctJSON, "If-Match", etag}, fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("p", 300<<10)))
			expect(t, r, http.StatusOK, "")
			etag = r.header.Get("ETag")
		}
		expect(t, s.do(t, "DELETE", path, hdr{"If-Match", etag}, ""), http.StatusNoContent, "")
		ev := mustOpenFeed(t, s, path+"/events", nil).event(t)
		if want := fmt.Sprintf(`{"etag":null,"seq":%d,"value":null}`, n+1); ev.Data != want {
			t.Fatalf("snapshot of a deleted document after %d versions: %s, want %s", n+1, ev.Data, want)
		}
	}
}

// patchN creates path and patches it n times: versions 1 to n+1.
func patchN(t *testing.T, s *feedServer, path string, n int) string {
	t.Helper()
	etag := s.create(t, path, `{"n":0}`)
	for i := 1; i <= n; i++ {
		r := s.do(t, "PATCH", path, hdr{"Content-Type", ctMerge, "If-Match", etag}, fmt.Sprintf(`{"n":%d}`, i))
		expect(t, r, http.StatusOK, "")
		etag = r.header.Get("ETag")
	}
	return etag
}

func TestEventsResume(t *testing.T) {
	for _, tc := range []struct {
		name  string
		path  string
		h     hdr
		first uint64
	}{
		{"LastEventID", "/docs/f/r/events", hdr{"Last-Event-ID", "3"}, 4},
		{"After", "/docs/f/r/events?after=1", nil, 2},
		{"FromTheStart", "/docs/f/r/events?after=0", nil, 1},
		{"HeaderWins", "/docs/f/r/events?after=0", hdr{"Last-Event-ID", "5"}, 6},
		{"AtTheEnd", "/docs/f/r/events?after=6", nil, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startFeedServer(t, feedOpts{})
			patchN(t, s, "/docs/f/r", 5)
			f := mustOpenFeed(t, s, tc.path, tc.h)
			for seq := tc.first; seq <= 6; seq++ {
				decodeEvent(t, f.event(t), "version", seq)
			}
			// Live from here: the next write is the next event.
			r := s.do(t, "PATCH", "/docs/f/r", hdr{"Content-Type", ctMerge, "If-Match", "*"}, `{"live":true}`)
			expect(t, r, http.StatusOK, "")
			d := decodeEvent(t, f.event(t), "version", 7)
			if *d.ETag != r.header.Get("ETag") {
				t.Fatalf("live event %+v", d)
			}
		})
	}
}

// TestEventsReset: a resume point older than the retained history, or past
// its end, gets a reset event with the current document, then goes on.
func TestEventsReset(t *testing.T) {
	s := startFeedServer(t, feedOpts{bolt: store.Options{Retention: store.Retention{Versions: 2, Age: time.Nanosecond}}})
	etag := patchN(t, s, "/docs/f/p", 5) // versions 1-6; 5 and 6 are kept
	for _, tc := range []struct {
		name  string
		after string
	}{
		{"Pruned", "1"},
		{"JustPruned", "3"},
		{"Future", "99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := mustOpenFeed(t, s, "/docs/f/p/events", hdr{"Last-Event-ID", tc.after})
			d := decodeEvent(t, f.event(t), "reset", 6)
			if *d.ETag != etag || string(d.Value) != `{"n":5}` {
				t.Fatalf("reset %+v", d)
			}
		})
	}
	t.Run("StillRetained", func(t *testing.T) {
		f := mustOpenFeed(t, s, "/docs/f/p/events", hdr{"Last-Event-ID", "4"})
		decodeEvent(t, f.event(t), "version", 5)
		decodeEvent(t, f.event(t), "version", 6)
	})
	t.Run("GoesOn", func(t *testing.T) {
		f := mustOpenFeed(t, s, "/docs/f/p/events?after=2", nil)
		decodeEvent(t, f.event(t), "reset", 6)
		r := s.do(t, "PATCH", "/docs/f/p", hdr{"Content-Type", ctMerge, "If-Match", etag}, `{"n":6}`)
		expect(t, r, http.StatusOK, "")
		etag = r.header.Get("ETag")
		decodeEvent(t, f.event(t), "version", 7)
	})
}

func TestEventsErrors(t *testing.T) {
	s := startFeedServer(t, feedOpts{})
	s.create(t, "/docs/f/e", `{}`)
	for _, tc := range []struct {
		name    string
		path    string
		h       hdr
		status  int
		problem string
	}{
		{"NoSuchDocument", "/docs/f/nope/events", nil, 404, "not-found"},
		{"NoSuchDocumentResume", "/docs/f/nope/events?after=3", nil, 404, "not-found"},
		{"BadID", "/docs/f/a..b%20/events", nil, 400, "invalid-request"},
		{"BadAfter", "/docs/f/e/events?after=-1", nil, 400, "invalid-request"},
		{"BadLastEventID", "/docs/f/e/events", hdr{"Last-Event-ID", "x1"}, 400, "invalid-request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, r := openFeed(t, s, tc.path, tc.h, nil)
			if f != nil {
				t.Fatalf("got a stream")
			}
			expect(t, r, tc.status, tc.problem)
		})
	}
	t.Run("Options", func(t *testing.T) {
		r := s.do(t, "OPTIONS", "/docs/f/e/events", nil, "")
		expect(t, r, http.StatusNoContent, "")
		if got := r.header.Get("Allow"); got != "GET, OPTIONS" {
			t.Fatalf("Allow=%q", got)
		}
	})
	t.Run("Post", func(t *testing.T) {
		expect(t, s.do(t, "POST", "/docs/f/e/events", nil, ""), http.StatusMethodNotAllowed, "method-not-allowed")
	})
}

func TestEventsHeartbeat(t *testing.T) {
	s := startFeedServer(t, feedOpts{cfg: func(c *config) { c.http.Events.Heartbeat = 20 * time.Millisecond }})
	s.create(t, "/docs/f/h", `{}`)
	f := mustOpenFeed(t, s, "/docs/f/h/events", nil)
	decodeEvent(t, f.event(t), "snapshot", 1)
	for i := 0; i < 3; i++ {
		ev, err := f.next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Comment == "" || ev.Data != "" {
			t.Fatalf("record %d: %+v, want a comment", i, ev)
		}
	}
}

// TestEventsOutliveServerTimeouts: the server's read and write timeouts
// bound requests, not streams.
func TestEventsOutliveServerTimeouts(t *testing.T) {
	const timeout = 150 * time.Millisecond
	s := startFeedServer(t, feedOpts{
		timeouts: timeout,
		cfg:      func(c *config) { c.http.Events.Heartbeat = 20 * time.Millisecond },
	})
	s.create(t, "/docs/f/t", `{}`)
	f := mustOpenFeed(t, s, "/docs/f/t/events", nil)
	decodeEvent(t, f.event(t), "snapshot", 1)
	start := time.Now()
	beats := 0
	for time.Since(start) < 5*timeout {
		ev, err := f.next()
		if err != nil {
			t.Fatalf("stream ended after %v and %d heartbeats: %v", time.Since(start), beats, err)
		}
		if ev.Comment != "" {
			beats++
		}
	}
	// The server's idle timeout (the same 150 ms) may close the keep-alive
	// connection the create used just as the PATCH goes out on it; a PATCH
	// is not retried, so dial afresh.
	s.Client().CloseIdleConnections()
	r := s.do(t, "PATCH", "/docs/f/t", hdr{"Content-Type", ctMerge, "If-Match", "*"}, `{"late":true}`)
	expect(t, r, http.StatusOK, "")
	decodeEvent(t, f.event(t), "version", 2)
}

// TestEventsCloseStreams: CloseStreams (called when shutdown starts) ends
// every stream.
func TestEventsCloseStreams(t *testing.T) {
	s := startFeedServer(t, feedOpts{})
	s.create(t, "/docs/f/c", `{}`)
	f := mustOpenFeed(t, s, "/docs/f/c/events", nil)
	decodeEvent(t, f.event(t), "snapshot", 1)
	if n := s.h.OpenStreams(); n != 1 {
		t.Fatalf("OpenStreams()=%d, want 1", n)
	}
	s.h.CloseStreams()
	if ev, err := f.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after CloseStreams: %+v, %v; want EOF", ev, err)
	}
}

// TestEventsNoGapUnderConcurrentWrites: streams that start, and resume,
// while writers race see every version once, in order, and their ops
// rebuild the final document.
func TestEventsNoGapUnderConcurrentWrites(t *testing.T) {
	s := startFeedServer(t, feedOpts{cfg: func(c *config) { c.http.Events.Batch = 7 }})
	s.create(t, "/docs/f/w", `{"items":[]}`)
	const writers, perWriter = 4, 25
	const last = 1 + writers*perWriter

	f1 := mustOpenFeed(t, s, "/docs/f/w/events", nil)
	snap := decodeEvent(t, f1.event(t), "snapshot", 1)

	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				body := fmt.Sprintf(`[{"op":"add","path":"/items/-","value":"w%d-%d"},{"op":"add","path":"/w%d","value":%d}]`, w, i, w, i)
				req, _ := http.NewRequest("PATCH", s.URL+"/docs/f/w", strings.NewReader(body))
				req.Header.Set("Content-Type", ctPatch)
				req.Header.Set("If-Match", "*")
				res, err := s.Client().Do(req)
				if err != nil {
					errc <- err
					return
				}
				res.Body.Close()
				if res.StatusCode != 200 {
					errc <- fmt.Errorf("PATCH: %d", res.StatusCode)
					return
				}
			}
		}()
	}

	// f1 applies every version to the snapshot; f2 reads part of the way,
	// drops, and resumes from its last id.
	doc := []byte(snap.Value)
	apply := func(d feedData) {
		p, err := jsonpatch.DecodePatch(d.Ops)
		if err != nil {
			t.Fatal(err)
		}
		if doc, err = p.Apply(doc); err != nil {
			t.Fatalf("seq %d: %v", d.Seq, err)
		}
	}
	f2 := mustOpenFeed(t, s, "/docs/f/w/events?after=1", nil)
	seq2 := uint64(1)
	for ; seq2 < 30; seq2++ {
		decodeEvent(t, f2.event(t), "version", seq2+1)
	}
	f2.conn.Close()
	f2 = mustOpenFeed(t, s, "/docs/f/w/events", hdr{"Last-Event-ID", strconv.FormatUint(seq2, 10)})
	for seq := uint64(2); seq <= last; seq++ {
		apply(decodeEvent(t, f1.event(t), "version", seq))
	}
	for seq2++; seq2 <= last; seq2++ {
		decodeEvent(t, f2.event(t), "version", seq2)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	r := s.do(t, "GET", "/docs/f/w", nil, "")
	var got, want any
	json.Unmarshal(doc, &got)
	json.Unmarshal(r.body, &want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ops rebuilt %s, server has %s", doc, r.body)
	}
}

// TestEventsSlowConsumer: a consumer that stops reading does not slow the
// writers; its stream is ended once a write to it blocks for longer than
// the write timeout, and it resumes by id without a gap.
func TestEventsSlowConsumer(t *testing.T) {
	var logs logBuffer
	s := startFeedServer(t, feedOpts{cfg: func(c *config) {
		c.http.Events.WriteTimeout = time.Second
		c.http.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	}})
	s.create(t, "/docs/f/slow", `{"big":""}`)
	// A small receive buffer, so that the server's writes block soon.
	small := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	stalled, r := openFeed(t, s, "/docs/f/slow/events", nil, small)
	if stalled == nil {
		t.Fatalf("status %d", r.status)
	}
	decodeEvent(t, stalled.event(t), "snapshot", 1)
	// A healthy consumer of the same document, read by its own goroutine.
	healthy := mustOpenFeed(t, s, "/docs/f/slow/events?after=1", nil)
	const writes = 200 // 200 versions of 64 KiB each: far more than socket buffers hold
	healthyDone := make(chan error, 1)
	go func() {
		for seq := uint64(2); seq <= writes+1; seq++ {
			ev, err := healthy.next()
			for err == nil && ev.Comment != "" {
				ev, err = healthy.next()
			}
			if err != nil || ev.ID != strconv.FormatUint(seq, 10) {
				healthyDone <- fmt.Errorf("healthy consumer at seq %d: %+v %v", seq, ev.ID, err)
				return
			}
		}
		healthyDone <- nil
	}()

	// The writers never wait for the stalled stream; if they did, this
	// loop would stop at the first full socket buffer.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	big := strings.Repeat("x", 64<<10)
	start := time.Now()
	for i := 0; i < writes; i++ {
		body := fmt.Sprintf(`[{"op":"replace","path":"/big","value":"%d%s"}]`, i, big)
		req, _ := http.NewRequestWithContext(ctx, "PATCH", s.URL+"/docs/f/slow", strings.NewReader(body))
		req.Header.Set("Content-Type", ctPatch)
		req.Header.Set("If-Match", "*")
		res, err := s.Client().Do(req)
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("write %d: %d", i, res.StatusCode)
		}
	}
	t.Logf("%d writes of 64 KiB with a stalled consumer: %v", writes, time.Since(start))
	if err := <-healthyDone; err != nil {
		t.Fatal(err)
	}

	// The server ends the stalled stream once a write to it has blocked
	// for the write timeout; wait for that (the healthy stream stays).
	for deadline := time.Now().Add(30 * time.Second); s.h.OpenStreams() > 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams still open", s.h.OpenStreams())
		}
	}
	// Draining what the sockets hold then ends in EOF (a stream still
	// open would instead wait for more), before the last version.
	lastID := uint64(1)
	for {
		ev, err := stalled.next()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the stalled stream is still open after seq %d", lastID)
			}
			break // EOF, or a cut in the middle of a chunk
		}
		if ev.Comment == "" {
			if ev.ID != strconv.FormatUint(lastID+1, 10) {
				t.Fatalf("event id %s after %d", ev.ID, lastID)
			}
			lastID++
		}
	}
	if lastID >= writes+1 {
		t.Fatalf("the stalled consumer got every version (%d); the test did not stall it", lastID)
	}
	t.Logf("the stalled stream ended after seq %d of %d", lastID, writes+1)
	// The log says why (its request's line says 200).
	if n := strings.Count(logs.String(), "closed a stream whose client stopped reading"); n != 1 {
		t.Fatalf("%d log lines say a stream was cut off for not reading, want 1", n)
	}
	resumed := mustOpenFeed(t, s, "/docs/f/slow/events", hdr{"Last-Event-ID", strconv.FormatUint(lastID, 10)})
	for seq := lastID + 1; seq <= writes+1; seq++ {
		decodeEvent(t, resumed.event(t), "version", seq)
	}
}
