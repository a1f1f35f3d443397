package handlers_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// switchableStore passes every call to its store until down is set; then
// reads, writes and Ping fail as a store whose database is unreachable.
// History fails alone while historyDown is set, Changes while changesDown
// is.
type switchableStore struct {
	store.Store
	down, historyDown, changesDown atomic.Bool
	historyFailures                atomic.Int32 // History calls failed
	changesFailures                atomic.Int32 // Changes calls failed
	failures                       atomic.Int32 // calls failed while down
}

func (s *switchableStore) Changes(ctx context.Context, c string, after store.Cursor, limit int) (store.ChangeLog, error) {
	if s.down.Load() || s.changesDown.Load() {
		s.changesFailures.Add(1)
		s.failures.Add(1)
		return store.ChangeLog{}, errDown
	}
	return s.Store.Changes(ctx, c, after, limit)
}

func (s *switchableStore) Get(ctx context.Context, c, id string) (*store.Document, error) {
	if s.down.Load() {
		s.failures.Add(1)
		return nil, errDown
	}
	return s.Store.Get(ctx, c, id)
}

func (s *switchableStore) ETag(ctx context.Context, c, id string) (string, error) {
	if s.down.Load() {
		s.failures.Add(1)
		return "", errDown
	}
	return s.Store.ETag(ctx, c, id)
}

func (s *switchableStore) Update(ctx context.Context, c, id string, fn store.UpdateFunc) (*store.Document, error) {
	if s.down.Load() {
		s.failures.Add(1)
		return nil, errDown
	}
	return s.Store.Update(ctx, c, id, fn)
}

func (s *switchableStore) List(ctx context.Context, c, after string, limit int) ([]store.ListEntry, bool, error) {
	if s.down.Load() {
		s.failures.Add(1)
		return nil, false, errDown
	}
	return s.Store.List(ctx, c, after, limit)
}

func (s *switchableStore) History(ctx context.Context, c, id string, after uint64, limit, maxBytes int) ([]store.Version, bool, error) {
	if s.down.Load() || s.historyDown.Load() {
		s.historyFailures.Add(1)
		s.failures.Add(1)
		return nil, false, errDown
	}
	return s.Store.History(ctx, c, id, after, limit, maxBytes)
}

func (s *switchableStore) Idempotency(ctx context.Context, key string) (*store.IdempotencyRecord, error) {
	if s.down.Load() {
		s.failures.Add(1)
		return nil, errDown
	}
	return s.Store.Idempotency(ctx, key)
}

func (s *switchableStore) Ping(ctx context.Context) error {
	if s.down.Load() {
		s.failures.Add(1)
		return errDown
	}
	return s.Store.Ping(ctx)
}

// logBuffer collects a server's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestStoreUnavailableIs503: while the store cannot reach its database,
// every request that needs it is answered 503 unavailable with
// Retry-After, a detail that tells the client what to do (not the
// driver's words, which go to the log as a warning), and /healthz stays
// 200 while /readyz says 503; once the store is back, both are 200 again.
func TestStoreUnavailableIs503(t *testing.T) {
	var (
		sw   *switchableStore
		logs logBuffer
	)
	s := startServerWith(t, func(st store.Store) store.Store { sw = &switchableStore{Store: st}; return sw }, nil,
		func(c *config) {
			c.http.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
			c.http.ReadyCache = time.Nanosecond // every probe checks
		})
	e0 := s.create(t, "/docs/c/d", `{"a":0}`)
	expect(t, s.do(t, "GET", "/readyz", nil, ""), http.StatusOK, "")
	sw.down.Store(true)
	for _, tc := range []struct {
		method, path string
		h            hdr
		body         string
	}{
		{"GET", "/docs/c/d", nil, ""},
		{"GET", "/docs/c", nil, ""},
		{"GET", "/docs/c/d/history", nil, ""},
		{"GET", "/docs/c/d/events", nil, ""},
		{"PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", e0}, `{"a":1}`},
		{"PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", e0, "Idempotency-Key", `"k"`}, `{"a":1}`},
		{"POST", "/docs/c", hdr{"Content-Type", ctJSON}, `{}`},
		{"PUT", "/docs/c/d", hdr{"Content-Type", ctJSON, "If-Match", e0}, `{}`},
		{"DELETE", "/docs/c/d", hdr{"If-Match", e0}, ""},
		{"POST", "/events", hdr{"Content-Type", ctJSON}, `{"docs":[{"c":"c","id":"d"}]}`},
		{"POST", "/events", hdr{"Content-Type", ctJSON}, `{"collections":[{"c":"c"}]}`},
		{"PUT", "/schemas/c", hdr{"Content-Type", ctJSON}, `{"type":"object"}`},
		{"DELETE", "/schemas/c", nil, ""},
		{"GET", "/readyz", nil, ""},
	} {
		before := sw.failures.Load()
		r := s.do(t, tc.method, tc.path, tc.h, tc.body)
		expect(t, r, http.StatusServiceUnavailable, "unavailable")
		// Each call may wait --db-timeout: a request that found the store
		// down makes no second one.
		if n := sw.failures.Load() - before; n != 1 {
			t.Errorf("%s %s: %d calls to the store that is down, want 1", tc.method, tc.path, n)
		}
		if r.header.Get("Retry-After") != "1" {
			t.Fatalf("%s %s: Retry-After %q, want 1", tc.method, tc.path, r.header.Get("Retry-After"))
		}
		// The line with the store's error names the request, so that an
		// operator given its X-Request-Id finds why it failed.
		id := r.header.Get("X-Request-Id")
		if !logLineWith(logs.String(), `"request_id":"`+id+`"`, "injected: connection refused") {
			t.Errorf("%s %s: no log line has request %s and the store's error:\n%s", tc.method, tc.path, id, logs.String())
		}
		// Once: the cause, then the request line.
		if n := strings.Count(logs.String(), `"request_id":"`+id+`"`); n != 2 {
			t.Errorf("%s %s: %d log lines for request %s, want the cause and the request:\n%s", tc.method, tc.path, n, id, logs.String())
		}
		if d := r.problem(t)["detail"].(string); strings.Contains(d, "injected") || !strings.Contains(d, "retry") && !strings.Contains(d, "traffic") {
			t.Fatalf("%s %s: detail %q", tc.method, tc.path, d)
		}
	}
	expect(t, s.do(t, "GET", "/healthz", nil, ""), http.StatusOK, "")
	if l := logs.String(); strings.Contains(l, `"level":"ERROR"`) || !strings.Contains(l, "injected: connection refused") {
		t.Fatalf("log: the outage must be logged as warnings with the store's error:\n%s", l)
	}
	sw.down.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for s.do(t, "GET", "/readyz", nil, "").status != http.StatusOK { // once the cached check is stale
		if time.Now().After(deadline) {
			t.Fatal("/readyz still 503 10s after the store came back")
		}
		time.Sleep(time.Millisecond)
	}
	expect(t, s.do(t, "GET", "/docs/c/d", nil, ""), http.StatusOK, "")

	// A write whose commit was sent but not confirmed says how to learn
	// its outcome.
	unknown := fmt.Errorf("store: update c/d: %w: %w", store.ErrCommitUnknown, store.ErrUnavailable)
	s2 := startServerWith(t, func(st store.Store) store.Store { return failingUpdates{st, unknown} }, nil)
	s2.create(t, "/docs/c/d", `{"a":0}`)
	r := s2.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", "*", "Idempotency-Key", `"k"`}, `{"a":1}`)
	expect(t, r, http.StatusServiceUnavailable, "unavailable")
	if d := r.problem(t)["detail"].(string); !strings.Contains(d, "same Idempotency-Key") {
		t.Fatalf("detail %q", d)
	}
	// A batch's keyed writes get their outcome again; the others are read.
	r = s2.do(t, "POST", "/batch", hdr{"Content-Type", ctJSON}, `{"writes":[{"method":"PUT","path":"/docs/c/e","body":{"a":1}}]}`)
	expect(t, r, http.StatusServiceUnavailable, "unavailable")
	if d := r.problem(t)["detail"].(string); !strings.Contains(d, "batch") || !strings.Contains(d, "reading") {
		t.Fatalf("batch: detail %q", d)
	}
	// PUT and DELETE take no Idempotency-Key: reading is the way.
	for _, method := range []string{"PUT", "DELETE"} {
		r := s2.do(t, method, "/docs/c/d", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"a":1}`)
		expect(t, r, http.StatusServiceUnavailable, "unavailable")
		if d := r.problem(t)["detail"].(string); strings.Contains(d, "same Idempotency-Key") || !strings.Contains(d, "read the document") {
			t.Fatalf("%s: detail %q", method, d)
		}
	}
}

// failingUpdates fails every Update but a document's creation with err,
// and every UpdateMany.
type failingUpdates struct {
	store.Store
	err error
}

func (f failingUpdates) UpdateMany(ctx context.Context, keys []store.Key, fn store.ManyFunc) ([]*store.Document, error) {
	return nil, f.err
}

func (f failingUpdates) Update(ctx context.Context, c, id string, fn store.UpdateFunc) (*store.Document, error) {
	if _, err := f.Store.ETag(ctx, c, id); err == nil {
		return nil, f.err
	}
	return f.Store.Update(ctx, c, id, fn)
}

// logLineWith reports whether one line of logs holds every one of subs.
func logLineWith(logs string, subs ...string) bool {
	for line := range strings.Lines(logs) {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(line, sub)
		}
		if all {
			return true
		}
	}
	return false
}

// TestReadyzLogsOncePerCheck: probes that a cached failed check answers
// are 503 without logging its cause again; the check that failed logs it
// once.
func TestReadyzLogsOncePerCheck(t *testing.T) {
	var logs logBuffer
	s := startServerWith(t, func(st store.Store) store.Store { sw := &switchableStore{Store: st}; sw.down.Store(true); return sw }, nil,
		func(c *config) {
			c.http.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
			c.http.ReadyCache = time.Hour
		})
	for range 4 {
		expect(t, s.do(t, "GET", "/readyz", nil, ""), http.StatusServiceUnavailable, "unavailable")
	}
	if n := strings.Count(logs.String(), "injected: connection refused"); n != 1 || strings.Contains(logs.String(), `"msg":"store unavailable"`) {
		t.Fatalf("the store's error logged %d times for 4 probes of one check, want 1 and no other cause line:\n%s", n, logs.String())
	}
}

// TestReadyzLogsRecovery: the first check that finds the store answering
// after one that did not says so in the log, once.
func TestReadyzLogsRecovery(t *testing.T) {
	var logs logBuffer
	var sw *switchableStore
	s := startServerWith(t, func(st store.Store) store.Store { sw = &switchableStore{Store: st}; return sw }, nil,
		func(c *config) {
			c.http.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
			c.http.ReadyCache = time.Nanosecond // every probe checks
		})
	expect(t, s.do(t, "GET", "/readyz", nil, ""), http.StatusOK, "")
	sw.down.Store(true)
	expect(t, s.do(t, "GET", "/readyz", nil, ""), http.StatusServiceUnavailable, "unavailable")
	sw.down.Store(false)
	for range 3 {
		expect(t, s.do(t, "GET", "/readyz", nil, ""), http.StatusOK, "")
	}
	if n := strings.Count(logs.String(), "ready again"); n != 1 {
		t.Fatalf("the recovery logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestReadyzProbe: /readyz needs no token and is not rate-limited, like
// /healthz; it reuses one check for ReadyCache.
func TestReadyzProbe(t *testing.T) {
	var sw *switchableStore
	s := startServerWith(t, func(st store.Store) store.Store { sw = &switchableStore{Store: st}; return sw }, nil,
		withTokens(t), func(c *config) { c.http.Rate = 0.001; c.http.ReadyCache = time.Hour })
	for range 3 {
		r := s.do(t, "GET", "/readyz", nil, "")
		expect(t, r, http.StatusOK, "")
		if string(r.body) != "{\"status\":\"ready\"}\n" {
			t.Fatalf("body %q", r.body)
		}
	}
	// Cached: the store going down shows after ReadyCache, not at once.
	sw.down.Store(true)
	expect(t, s.do(t, "GET", "/readyz", nil, ""), http.StatusOK, "")
}

// TestFeedSurvivesStoreErrors: a change feed stream whose history reads
// fail for a while (the database restarting) stays open, and delivers the
// versions committed meanwhile once reads succeed again, with no gap.
func TestFeedSurvivesStoreErrors(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sw := &switchableStore{Store: st}
	h := newHandler(sw, newConfig(func(c *config) { c.http.Events.Heartbeat = time.Hour }))
	s := &feedServer{server: &server{Server: httptest.NewServer(h.Echo()), store: st}, h: h}
	t.Cleanup(func() {
		h.CloseStreams()
		s.stop()
	})
	e1 := s.create(t, "/docs/f/a", `{"n":1}`)
	f := mustOpenFeed(t, s, "/docs/f/a/events", nil)
	decodeEvent(t, f.event(t), "snapshot", 1)

	sw.historyDown.Store(true)
	r := s.do(t, "PATCH", "/docs/f/a", hdr{"Content-Type", ctMerge, "If-Match", e1}, `{"n":2}`)
	expect(t, r, http.StatusOK, "")
	deadline := time.Now().Add(10 * time.Second)
	for sw.historyFailures.Load() < 3 { // the stream tried, and tried again
		if time.Now().After(deadline) {
			t.Fatalf("the stream read history %d times while it failed", sw.historyFailures.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	expect(t, s.do(t, "PATCH", "/docs/f/a", hdr{"Content-Type", ctMerge, "If-Match", r.header.Get("ETag")}, `{"n":3}`), http.StatusOK, "")
	sw.historyDown.Store(false)
	decodeEvent(t, f.event(t), "version", 2)
	decodeEvent(t, f.event(t), "version", 3)
	if got := h.OpenStreams(); got != 1 {
		t.Fatalf("%d open streams, want 1", got)
	}
	// The stream's retries are counted.
	m := s.do(t, "GET", "/metrics", nil, "")
	if !strings.Contains(string(m.body), "patchd_feed_read_retries_total ") || !strings.Contains(string(m.body), "patchd_feed_streams 1") {
		t.Fatalf("metrics lack the feed's retries or streams:\n%s", m.body)
	}
}

// TestEventsManySurviveStoreErrors: a POST /events stream whose reads
// fail for a while (the database restarting) stays open, at its start as
// later, and delivers what was committed meanwhile once reads succeed
// again, with no gap and nothing twice; a cursor that cannot be read
// before the stream opens is 503, not a stream that ends at once.
func TestEventsManySurviveStoreErrors(t *testing.T) {
	var sw *switchableStore
	s := startServerWith(t, func(st store.Store) store.Store { sw = &switchableStore{Store: st}; return sw }, nil,
		func(c *config) { c.http.Events.Heartbeat = time.Hour })
	e1 := s.create(t, "/docs/m/a", `{"n":1}`)
	f := subscribe(t, s, `{"docs":[{"c":"m","id":"a"}],"collections":[{"c":"m"}]}`)
	f.want(t, "snapshot", "m", "a", 1)
	cursor := f.want(t, "ready", "", "", 0).Cursors[0]

	waitFailures := func(t *testing.T, n *atomic.Int32, least int32) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for n.Load() < least { // the stream tried, and tried again
			if time.Now().After(deadline) {
				t.Fatalf("%d failed reads, want at least %d (history %d, changes %d)", n.Load(), least, sw.historyFailures.Load(), sw.changesFailures.Load())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	sw.historyDown.Store(true)
	sw.changesDown.Store(true)
	r := s.do(t, "PATCH", "/docs/m/a", hdr{"Content-Type", ctMerge, "If-Match", e1}, `{"n":2}`)
	expect(t, r, http.StatusOK, "")
	waitFailures(t, &sw.historyFailures, 3)
	e3 := s.do(t, "PATCH", "/docs/m/a", hdr{"Content-Type", ctMerge, "If-Match", r.header.Get("ETag")}, `{"n":3}`)
	expect(t, e3, http.StatusOK, "")
	c0 := sw.changesFailures.Load()
	sw.historyDown.Store(false)
	// Once history reads again, the change log still fails: tried again
	// (after a backoff grown by the failures before, up to 5 s).
	waitFailures(t, &sw.changesFailures, c0+1)
	sw.changesDown.Store(false)
	f.want(t, "version", "m", "a", 2)
	f.want(t, "version", "m", "a", 3)
	f.want(t, "change", "m", "a", 2)
	f.want(t, "change", "m", "a", 3)

	// Reads that fail at the start: the stream opens, waits, then sends
	// its start and ready once.
	sw.historyDown.Store(true)
	f2 := subscribe(t, s, `{"docs":[{"c":"m","id":"a","after":1}]}`)
	waitFailures(t, &sw.historyFailures, sw.historyFailures.Load()+2)
	sw.historyDown.Store(false)
	f2.want(t, "version", "m", "a", 2)
	f2.want(t, "version", "m", "a", 3)
	f2.want(t, "ready", "", "", 0)
	expect(t, s.do(t, "PATCH", "/docs/m/a", hdr{"Content-Type", ctMerge, "If-Match", e3.header.Get("ETag")}, `{"n":4}`), http.StatusOK, "")
	f2.want(t, "version", "m", "a", 4)

	sw.changesDown.Store(true)
	r = s.do(t, "POST", "/events", hdr{"Content-Type", ctJSON}, `{"collections":[{"c":"m","after":"`+cursor+`"}]}`)
	expect(t, r, http.StatusServiceUnavailable, "unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	sw.changesDown.Store(false)
}

// badOpsStore returns undecodable ops for versions from 2 of documents
// named "bad", and ErrCorrupt for reads of change logs after a cursor
// while corrupt is set.
type badOpsStore struct {
	store.Store
	corrupt atomic.Bool
}

func (s *badOpsStore) History(ctx context.Context, c, id string, after uint64, limit, maxBytes int) ([]store.Version, bool, error) {
	vs, more, err := s.Store.History(ctx, c, id, after, limit, maxBytes)
	for i := range vs {
		if id == "bad" && vs[i].Seq >= 2 {
			vs[i].Ops = []byte("not ops")
		}
	}
	return vs, more, err
}

func (s *badOpsStore) Changes(ctx context.Context, c string, after store.Cursor, limit int) (store.ChangeLog, error) {
	if s.corrupt.Load() && after != nil {
		return store.ChangeLog{}, store.ErrCorrupt
	}
	return s.Store.Changes(ctx, c, after, limit)
}

// TestEventsManyEndOnLastingErrors: errors that trying again does not mend
// end a POST /events stream, as before streams outlasted an unavailable
// store: history that does not decode (the client reconnects, and the
// other subscriptions go on there), and a damaged change log read before
// the stream opens, which is 500, not a 503 to retry without end.
func TestEventsManyEndOnLastingErrors(t *testing.T) {
	var bs *badOpsStore
	s := startServerWith(t, func(st store.Store) store.Store { bs = &badOpsStore{Store: st}; return bs }, nil,
		func(c *config) { c.http.Events.Heartbeat = time.Hour })
	eb := s.create(t, "/docs/m/bad", `{"n":1}`)
	s.create(t, "/docs/m/good", `{"n":1}`)
	f := subscribe(t, s, `{"docs":[{"c":"m","id":"bad"},{"c":"m","id":"good"}],"collections":[{"c":"m"}]}`)
	f.want(t, "snapshot", "m", "bad", 1)
	f.want(t, "snapshot", "m", "good", 1)
	cursor := f.want(t, "ready", "", "", 0).Cursors[0]
	expect(t, s.do(t, "PATCH", "/docs/m/bad", hdr{"Content-Type", ctMerge, "If-Match", eb}, `{"n":2}`), http.StatusOK, "")
	for {
		ev, err := f.next()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the stream is still open %v after the version that does not decode", feedWait)
		}
		if err != nil {
			break // the stream ended
		}
		if ev.Event == "version" {
			t.Fatalf("a version that does not decode was sent: %s", ev.Data)
		}
	}
	bs.corrupt.Store(true)
	r := s.do(t, "POST", "/events", hdr{"Content-Type", ctJSON}, `{"collections":[{"c":"m","after":"`+cursor+`"}]}`)
	expect(t, r, http.StatusInternalServerError, "internal")
}

// storedRecord returns the idempotency record of key, sent without a token.
func storedRecord(t *testing.T, st store.Store, key string) *store.IdempotencyRecord {
	t.Helper()
	rec, err := st.Idempotency(context.Background(), "\x00"+key)
	if err != nil {
		t.Fatalf("record %q: %v", key, err)
	}
	return rec
}

// TestIdempotencyRecordsAreSmall: a keyed write's record costs the same
// whatever the document's size; a retry's answer is rebuilt from the
// document as it was (current, or by undoing the versions that followed,
// a delete included); once that version is pruned, the retry is 410
// idempotency-answer-gone, naming the version, and is not applied again.
func TestIdempotencyRecordsAreSmall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "patchd.db")
	s := startServerAt(t, path, store.Options{Retention: store.Retention{Versions: 4, Age: -1}},
		func(c *config) { c.http.MaxBody = 2 << 20; c.doc.Limits.MaxDoc = 2 << 20 })
	big := `{"blob":"` + strings.Repeat("x", 900<<10) + `","list":[]}`
	e0 := s.create(t, "/docs/c/big", big)
	h := hdr{"Content-Type", ctPatch, "If-Match", e0, "Idempotency-Key", `"append-1"`}
	op := `[{"op":"add","path":"/list/-","value":"once"}]`
	first := s.do(t, "PATCH", "/docs/c/big", h, op)
	expect(t, first, http.StatusOK, "")
	if rec := storedRecord(t, s.store, "append-1"); len(rec.Value) > 512 || rec.Seq != 2 {
		t.Fatalf("the record of a write of a %d-byte document: %d bytes, seq %d; want at most 512 bytes, seq 2", len(first.body), len(rec.Value), rec.Seq)
	}
	replay := func(t *testing.T) response {
		t.Helper()
		r := s.do(t, "PATCH", "/docs/c/big", h, op)
		if r.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("not a replay: %d %v", r.status, r.header)
		}
		return r
	}
	same := func(t *testing.T, r response) {
		t.Helper()
		expect(t, r, http.StatusOK, "")
		if r.header.Get("ETag") != first.header.Get("ETag") || !bytes.Equal(r.body, first.body) {
			t.Fatalf("replay %s (%d bytes), first %s (%d bytes)", r.header.Get("ETag"), len(r.body), first.header.Get("ETag"), len(first.body))
		}
	}
	same(t, replay(t)) // the document is at that version
	e2 := s.do(t, "PATCH", "/docs/c/big", hdr{"Content-Type", ctMerge, "If-Match", first.header.Get("ETag")}, `{"more":1}`).header.Get("ETag")
	same(t, replay(t)) // one version later
	expect(t, s.do(t, "DELETE", "/docs/c/big", hdr{"If-Match", e2}, ""), http.StatusNoContent, "")
	same(t, replay(t)) // deleted since
	// Minimal answers are replayed minimal.
	s.create(t, "/docs/c/small", `{"a":0}`)
	hm := hdr{"Content-Type", ctMerge, "If-Match", "*", "Prefer", "return=minimal", "Idempotency-Key", `"minimal-1"`}
	m1 := s.do(t, "PATCH", "/docs/c/small", hm, `{"a":1}`)
	expect(t, m1, http.StatusNoContent, "")
	m2 := s.do(t, "PATCH", "/docs/c/small", hm, `{"a":1}`)
	if m2.status != http.StatusNoContent || len(m2.body) != 0 || m2.header.Get("ETag") != m1.header.Get("ETag") || m2.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("minimal replay: %d %v %q", m2.status, m2.header, m2.body)
	}

	// Four more versions prune the keyed write's version.
	cur := s.create(t, "/docs/c/big", `{"again":0}`)
	for i := 1; i <= 4; i++ {
		r := s.do(t, "PUT", "/docs/c/big", hdr{"Content-Type", ctJSON, "If-Match", cur}, fmt.Sprintf(`{"again":%d}`, i))
		expect(t, r, http.StatusOK, "")
		cur = r.header.Get("ETag")
	}
	r := replay(t)
	expect(t, r, http.StatusGone, "idempotency-answer-gone")
	p := r.problem(t)
	if p["appliedEtag"] != first.header.Get("ETag") || p["appliedSeq"] != float64(2) {
		t.Fatalf("410 %s, want appliedEtag %s, appliedSeq 2", r.body, first.header.Get("ETag"))
	}
	if got := s.do(t, "GET", "/docs/c/big", nil, ""); got.header.Get("ETag") != cur {
		t.Fatalf("the 410 changed the document: %s", got.body)
	}
	// A POST whose answer is gone names the document it created.
	hp := hdr{"Content-Type", ctJSON, "Idempotency-Key", `"post-1"`}
	created := s.do(t, "POST", "/docs/p", hp, `{"v":0}`)
	expect(t, created, http.StatusCreated, "")
	cur = created.header.Get("ETag")
	for i := 1; i <= 4; i++ {
		r := s.do(t, "PUT", created.header.Get("Location"), hdr{"Content-Type", ctJSON, "If-Match", cur}, fmt.Sprintf(`{"v":%d}`, i))
		cur = r.header.Get("ETag")
	}
	r = s.do(t, "POST", "/docs/p", hp, `{"v":0}`)
	expect(t, r, http.StatusGone, "idempotency-answer-gone")
	if r.header.Get("Location") != created.header.Get("Location") {
		t.Fatalf("410 Location %q, want %q", r.header.Get("Location"), created.header.Get("Location"))
	}
	if n := strings.Count(string(s.do(t, "GET", "/docs/p", nil, "").body), `"id"`); n != 1 {
		t.Fatalf("%d documents after the POST's retry, want 1", n)
	}
}

// TestIdempotencyReplayWorkBound: a replay reverts at most ReplayVersions
// later versions to rebuild its answer; past that, even with the version
// still in history, it is 410 idempotency-answer-gone.
func TestIdempotencyReplayWorkBound(t *testing.T) {
	s := startServer(t, func(c *config) { c.doc.ReplayVersions = 2 })
	e0 := s.create(t, "/docs/c/d", `{"n":0}`)
	h := hdr{"Content-Type", ctMerge, "If-Match", e0, "Idempotency-Key", `"bounded"`}
	first := s.do(t, "PATCH", "/docs/c/d", h, `{"n":1}`)
	expect(t, first, http.StatusOK, "")
	cur := first.header.Get("ETag")
	for i := 2; i <= 4; i++ {
		r := s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", cur}, fmt.Sprintf(`{"n":%d}`, i))
		expect(t, r, http.StatusOK, "")
		cur = r.header.Get("ETag")
		again := s.do(t, "PATCH", "/docs/c/d", h, `{"n":1}`)
		if i <= 3 { // 1 or 2 versions to revert
			expect(t, again, http.StatusOK, "")
			if again.header.Get("ETag") != first.header.Get("ETag") || !bytes.Equal(again.body, first.body) {
				t.Fatalf("replay after %d later versions: %s %s", i-1, again.header.Get("ETag"), again.body)
			}
			continue
		}
		expect(t, again, http.StatusGone, "idempotency-answer-gone")
	}
}

// TestIdempotencyReplayBytesBound: a replay reverts later versions of at
// most ReplayBytes of changes; past that, 410 idempotency-answer-gone,
// before reading them all (200 versions of 500 KB took 374 MB of heap).
func TestIdempotencyReplayBytesBound(t *testing.T) {
	s := startServer(t, func(c *config) { c.doc.ReplayBytes = 10_000 })
	e0 := s.create(t, "/docs/c/d", `{"n":0}`)
	h := hdr{"Content-Type", ctMerge, "If-Match", e0, "Idempotency-Key", `"sized"`}
	first := s.do(t, "PATCH", "/docs/c/d", h, `{"n":1}`)
	expect(t, first, http.StatusOK, "")
	cur := first.header.Get("ETag")
	for i := 1; i <= 4; i++ {
		pad := strings.Repeat("x", 3000)
		r := s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", cur}, fmt.Sprintf(`{"pad":"%s%d"}`, pad, i))
		expect(t, r, http.StatusOK, "")
		cur = r.header.Get("ETag")
		again := s.do(t, "PATCH", "/docs/c/d", h, `{"n":1}`)
		if i <= 2 { // 3 or 6 KB of changes to revert
			expect(t, again, http.StatusOK, "")
			if again.header.Get("ETag") != first.header.Get("ETag") || !bytes.Equal(again.body, first.body) {
				t.Fatalf("replay after %d later versions: %s %s", i, again.header.Get("ETag"), again.body)
			}
			continue
		}
		expect(t, again, http.StatusGone, "idempotency-answer-gone")
		if p := again.problem(t); !strings.Contains(p["detail"].(string), "10000 bytes") {
			t.Fatalf("replay after %d versions: %s", i, again.body)
		}
	}
}

// TestIdempotencyBoundPerClient: each client (token) keeps its newest
// records up to the bound; an older key is forgotten, so its retry is a
// new request, while other clients' keys are untouched.
func TestIdempotencyBoundPerClient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "patchd.db")
	s := startServerAt(t, path, store.Options{IdempotencyPerScope: 2}, withTokens(t))
	post := func(tok, key string) string {
		t.Helper()
		r := s.do(t, "POST", "/docs/a", append(bearer(tok), "Content-Type", ctJSON, "Idempotency-Key", key), `{}`)
		expect(t, r, http.StatusCreated, "")
		return r.header.Get("Location")
	}
	b1 := post(tokAdmin, "k1")
	a := []string{post(tokWriteA, "k1"), post(tokWriteA, "k2"), post(tokWriteA, "k3")}
	if again := post(tokWriteA, "k3"); again != a[2] {
		t.Fatalf("retry of the newest key: %s, want %s", again, a[2])
	}
	if again := post(tokWriteA, "k2"); again != a[1] {
		t.Fatalf("retry of the second newest key: %s, want %s", again, a[1])
	}
	if again := post(tokWriteA, "k1"); again == a[0] {
		t.Fatalf("the oldest key past the bound still replays %s", again)
	}
	if again := post(tokAdmin, "k1"); again != b1 {
		t.Fatalf("another client's key: %s, want %s", again, b1)
	}
}
