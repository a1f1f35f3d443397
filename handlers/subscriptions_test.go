package handlers_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// openStream sends method path with body over a raw connection to s (its
// first replica over PostgreSQL) and returns the stream, or the error
// answer.
func openStream(t testing.TB, s *server, method, path string, h hdr, body string) (*feed, response) {
	t.Helper()
	conn, err := net.Dial("tcp", s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Add(h[i], h[i+1])
	}
	if body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", ctJSON)
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

// subscribe opens POST /events with body, which must succeed.
func subscribe(t *testing.T, s *server, body string, h ...string) *feed {
	t.Helper()
	f, r := openStream(t, s, "POST", "/events", h, body)
	if f == nil {
		t.Fatalf("POST /events %s: %d %s", body, r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	return f
}

// holdStream opens a GET stream and reads its first event; it stays open
// until the test ends.
func holdStream(t *testing.T, s *server, path string) *feed {
	t.Helper()
	f, r := openStream(t, s, "GET", path, nil, "")
	if f == nil {
		t.Fatalf("GET %s: %d %s", path, r.status, r.body)
	}
	f.event(t)
	return f
}

// manyEvent is the data of an event of POST /events.
type manyEvent struct {
	Name        string          `json:"-"`
	C           string          `json:"c"`
	ID          string          `json:"id"`
	Seq         uint64          `json:"seq"`
	ETag        *string         `json:"etag"`
	Kind        string          `json:"kind"`
	Ops         json.RawMessage `json:"ops"`
	Value       json.RawMessage `json:"value"`
	Cursor      string          `json:"cursor"`
	Match       *bool           `json:"match"`
	Cursors     []string        `json:"cursors"`
	RebasedFrom *string         `json:"rebasedFrom"`
	raw         string
}

// many reads the next event of a POST /events stream.
func (f *feed) many(t *testing.T) manyEvent {
	t.Helper()
	ev := f.event(t)
	if ev.ID != "" {
		t.Fatalf("POST /events event %q has an id %q", ev.Event, ev.ID)
	}
	var m manyEvent
	if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
		t.Fatalf("event %s data %s: %v", ev.Event, ev.Data, err)
	}
	m.Name, m.raw = ev.Event, ev.Data
	return m
}

// want reads the next event and checks its name and target.
func (f *feed) want(t *testing.T, name, c, id string, seq uint64) manyEvent {
	t.Helper()
	ev := f.many(t)
	if ev.Name != name || ev.C != c || ev.ID != id || ev.Seq != seq {
		t.Fatalf("event %s %s/%s seq %d (%s), want %s %s/%s seq %d", ev.Name, ev.C, ev.ID, ev.Seq, ev.raw, name, c, id, seq)
	}
	return ev
}

// historyWith returns the history entries of a document as the feed
// sends them for a subscription: with c and id (and more members).
func historyWith(t *testing.T, s *server, c, id string, extra map[uint64]map[string]any) map[uint64]string {
	t.Helper()
	r := s.do(t, "GET", "/docs/"+c+"/"+id+"/history?limit=1000", nil, "")
	expect(t, r, http.StatusOK, "")
	var h struct{ Versions []map[string]any }
	dec := json.NewDecoder(strings.NewReader(string(r.body)))
	dec.UseNumber()
	if err := dec.Decode(&h); err != nil {
		t.Fatal(err)
	}
	out := map[uint64]string{}
	for _, v := range h.Versions {
		seq, _ := strconv.ParseUint(string(v["seq"].(json.Number)), 10, 64)
		v["c"], v["id"] = c, id
		for k, x := range extra[seq] {
			v[k] = x
		}
		b, _ := json.Marshal(v) // encoding/json sorts map keys, as canonical JSON does here
		out[seq] = string(b)
	}
	return out
}

// TestEventsManyDocuments: one stream follows several documents: a
// snapshot of each without after (seq 0 and nulls for one never written),
// the versions after a seq with after, ready, then live versions whose
// data is the history entry with c and id.
func TestEventsManyDocuments(t *testing.T) {
	s := startServer(t)
	ea := s.create(t, "/docs/f/a", `{"n":1}`)
	eb := s.create(t, "/docs/f/b", `{"n":1}`)
	expect(t, s.do(t, "PATCH", "/docs/f/b", hdr{"Content-Type", ctMerge, "If-Match", eb}, `{"n":2}`), 200, "")

	f := subscribe(t, s, `{"docs":[{"c":"f","id":"a"},{"c":"f","id":"b","after":1},{"c":"g","id":"never"}]}`)
	snap := f.want(t, "snapshot", "f", "a", 1)
	if string(snap.Value) != `{"n":1}` || snap.ETag == nil || *snap.ETag != ea {
		t.Fatalf("snapshot %s", snap.raw)
	}
	v := f.want(t, "version", "f", "b", 2)
	if want := historyWith(t, s, "f", "b", nil)[2]; v.raw != want {
		t.Fatalf("version data\n%s, want the history entry with c and id\n%s", v.raw, want)
	}
	if ev := f.want(t, "snapshot", "g", "never", 0); ev.ETag != nil || string(ev.Value) != "null" {
		t.Fatalf("snapshot of a document never written: %s", ev.raw)
	}
	if ev := f.many(t); ev.Name != "ready" || ev.raw != `{}` {
		t.Fatalf("after the snapshots: %s %s, want ready", ev.Name, ev.raw)
	}
	s.create(t, "/docs/g/never", `{"born":true}`)
	expect(t, s.do(t, "PATCH", "/docs/f/a", hdr{"Content-Type", ctPatch, "If-Match", ea}, `[{"op":"add","path":"/m","value":1e400}]`), 200, "")
	expect(t, s.do(t, "DELETE", "/docs/f/b", hdr{"If-Match", "*"}, ""), 204, "")
	got := map[string]manyEvent{}
	for range 3 {
		ev := f.many(t)
		if ev.Name != "version" {
			t.Fatalf("event %s %s, want version", ev.Name, ev.raw)
		}
		got[ev.C+"/"+ev.ID] = ev
	}
	for key, seq := range map[string]uint64{"g/never": 1, "f/a": 2, "f/b": 3} {
		c, id, _ := strings.Cut(key, "/")
		if ev := got[key]; ev.Seq != seq || ev.raw != historyWith(t, s, c, id, nil)[seq] {
			t.Errorf("%s: %s, want seq %d as in history", key, ev.raw, seq)
		}
	}
}

// TestEventsManyCollection: a collection subscription sends every
// create, change and delete with a cursor; a new stream after any of
// those cursors (or ready's) resumes right after it, whichever replica it
// reaches.
func TestEventsManyCollection(t *testing.T) {
	s := startServer(t)
	s.create(t, "/docs/orders/before", `{}`) // before the subscription: not sent
	f := subscribe(t, s, `{"collections":[{"c":"orders"}]}`)
	ready := f.many(t)
	if ready.Name != "ready" || len(ready.Cursors) != 1 || ready.Cursors[0] == "" {
		t.Fatalf("first event %s %s, want ready with one cursor", ready.Name, ready.raw)
	}
	x := s.create(t, "/docs/orders/x", `{"status":"open"}`)
	expect(t, s.do(t, "PATCH", "/docs/orders/x", hdr{"Content-Type", ctMerge, "If-Match", x}, `{"status":"paid"}`), 200, "")
	s.create(t, "/docs/orders/y", `{"status":"open"}`)
	s.create(t, "/docs/other/z", `{}`)
	expect(t, s.do(t, "DELETE", "/docs/orders/x", hdr{"If-Match", "*"}, ""), 204, "")
	want := []struct {
		id  string
		seq uint64
	}{{"x", 1}, {"x", 2}, {"y", 1}, {"x", 3}}
	var evs []manyEvent
	for _, w := range want {
		ev := f.want(t, "change", "orders", w.id, w.seq)
		if ev.Cursor == "" || ev.Match != nil {
			t.Fatalf("change %s: want a cursor and no match", ev.raw)
		}
		if h := historyWith(t, s, "orders", w.id, map[uint64]map[string]any{w.seq: {"cursor": ev.Cursor}})[w.seq]; ev.raw != h {
			t.Fatalf("change data\n%s, want the history entry with c, id and cursor\n%s", ev.raw, h)
		}
		evs = append(evs, ev)
	}
	if evs[3].Kind != "delete" {
		t.Fatalf("delete change: %s", evs[3].raw)
	}
	for i, from := range []struct {
		cursor string
		rest   int // the first change after it
	}{{ready.Cursors[0], 0}, {evs[0].Cursor, 1}, {evs[1].Cursor, 2}, {evs[3].Cursor, 4}} {
		g := subscribe(t, s, `{"collections":[{"c":"orders","after":"`+from.cursor+`"}]}`)
		for _, w := range want[from.rest:] {
			g.want(t, "change", "orders", w.id, w.seq)
		}
		if ev := g.many(t); ev.Name != "ready" || ev.Cursors[0] != evs[3].Cursor {
			t.Fatalf("resumed from cursor %d: then %s %s, want ready at the last cursor", i, ev.Name, ev.raw)
		}
	}
}

// TestEventsManyWhere: with where, a collection subscription sends the
// changes whose document matches before or after, with match saying
// whether it matches after.
func TestEventsManyWhere(t *testing.T) {
	s := startServer(t)
	f := subscribe(t, s, `{"collections":[{"c":"o","where":{"/status":"open","/n":{"ge":1}}}]}`)
	if ev := f.many(t); ev.Name != "ready" {
		t.Fatalf("first event %s", ev.Name)
	}
	patch := func(id, body string) {
		t.Helper()
		expect(t, s.do(t, "PATCH", "/docs/o/"+id, hdr{"Content-Type", ctMerge, "If-Match", "*"}, body), 200, "")
	}
	s.create(t, "/docs/o/x", `{"status":"open","n":1.0}`) // matches: sent, true
	s.create(t, "/docs/o/y", `{"status":"closed","n":5}`) // never matched: not sent
	patch("x", `{"status":"closed"}`)                     // matched before: sent, false
	patch("x", `{"note":"a"}`)                            // neither: not sent
	patch("y", `{"status":"open"}`)                       // matches now: sent, true
	patch("y", `{"n":6}`)                                 // both: sent, true
	expect(t, s.do(t, "DELETE", "/docs/o/y", hdr{"If-Match", "*"}, ""), 204, "")
	for _, w := range []struct {
		id    string
		seq   uint64
		match bool
	}{{"x", 1, true}, {"x", 2, false}, {"y", 2, true}, {"y", 3, true}, {"y", 4, false}} {
		ev := f.want(t, "change", "o", w.id, w.seq)
		if ev.Match == nil || *ev.Match != w.match {
			t.Fatalf("change %s, want match %v", ev.raw, w.match)
		}
	}
	// Nothing else came: the next event is a change of a new document.
	s.create(t, "/docs/o/z", `{"status":"open","n":2}`)
	f.want(t, "change", "o", "z", 1)
}

// TestEventsManyWhereAsDeepAsListings: a where as deep as a listing takes
// is taken by a subscription too, although it lies three levels down in
// the body; one level more is refused by both.
func TestEventsManyWhereAsDeepAsListings(t *testing.T) {
	s := startServer(t)
	where := func(levels int) string { // {"/a":{"eq":[...]}}: levels in all
		return `{"/a":{"eq":` + strings.Repeat(`[`, levels-2) + strings.Repeat(`]`, levels-2) + `}}`
	}
	const deepest = 66
	expect(t, s.do(t, "GET", "/docs/c?where="+url.QueryEscape(where(deepest)), nil, ""), http.StatusOK, "")
	f := subscribe(t, s, `{"collections":[{"c":"c","where":`+where(deepest)+`}]}`)
	if ev := f.many(t); ev.Name != "ready" {
		t.Fatalf("first event %s", ev.Name)
	}
	expect(t, s.do(t, "GET", "/docs/c?where="+url.QueryEscape(where(deepest+1)), nil, ""), http.StatusBadRequest, "invalid-request")
	_, r := openStream(t, s, "POST", "/events", nil, `{"collections":[{"c":"c","where":`+where(deepest+1)+`}]}`)
	expect(t, r, http.StatusBadRequest, "invalid-request")
}

// TestEventsManyResetCollection: a cursor older than the retained history
// gives reset-collection with the cursor to go on from; changes follow.
func TestEventsManyResetCollection(t *testing.T) {
	s := startServerAt(t, tempDB(t), store.Options{Retention: store.Retention{Versions: 1, Age: -1}})
	f := subscribe(t, s, `{"collections":[{"c":"r"}]}`)
	old := f.many(t).Cursors[0]
	f.conn.Close()
	e := s.create(t, "/docs/r/a", `{"v":1}`)
	expect(t, s.do(t, "PATCH", "/docs/r/a", hdr{"Content-Type", ctMerge, "If-Match", e}, `{"v":2}`), 200, "") // prunes version 1
	g := subscribe(t, s, `{"collections":[{"c":"r","after":"`+old+`"}]}`)
	reset := g.many(t)
	if reset.Name != "reset-collection" || reset.C != "r" || reset.Cursor == "" {
		t.Fatalf("first event %s %s, want reset-collection", reset.Name, reset.raw)
	}
	if ev := g.many(t); ev.Name != "ready" || ev.Cursors[0] != reset.Cursor {
		t.Fatalf("then %s %s, want ready at the reset's cursor", ev.Name, ev.raw)
	}
	expect(t, s.do(t, "PATCH", "/docs/r/a", hdr{"Content-Type", ctMerge, "If-Match", "*"}, `{"v":3}`), 200, "")
	g.want(t, "change", "r", "a", 3)
}

// tempDB is a database for one test: a bbolt file, or a PostgreSQL
// database when the suite runs over replicas.
func tempDB(t *testing.T) string {
	t.Helper()
	if dsn := replicaDatabase(t); dsn != "" {
		return dsn
	}
	return t.TempDir() + "/patchd.db"
}

// TestEventsManyErrors: what is wrong with a request is a 4xx before the
// stream starts.
func TestEventsManyErrors(t *testing.T) {
	s := startServer(t, withTokens(t), func(c *config) { c.http.Streams.MaxSubscriptions = 2 })
	f := subscribe(t, s, `{"collections":[{"c":"a"}]}`, "Authorization", "Bearer "+tokWriteA)
	cursor := f.many(t).Cursors[0]
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		t.Fatal(err)
	}
	longer := base64.RawURLEncoding.EncodeToString(append(raw[:len(raw):len(raw)], make([]byte, 100)...))
	shorter := base64.RawURLEncoding.EncodeToString(raw[:6])
	// When the cursor's length is not a multiple of three bytes, the last
	// character of its text has bits that carry nothing: another value
	// there would be another text for the same bytes.
	alias := []byte(cursor)
	if len(raw)%3 != 0 {
		// The lowest bit of the last character is spare: flip it.
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		alias[len(alias)-1] = alphabet[strings.IndexByte(alphabet, alias[len(alias)-1])^1]
		if _, err := base64.RawURLEncoding.Strict().DecodeString(string(alias)); err == nil {
			t.Fatalf("%s is not an alias of %s", alias, cursor)
		}
	} else {
		alias = append(alias, '!') // no spare bits (PostgreSQL's cursors): a bad character
	}
	for _, tc := range []struct {
		name, body, token string
		status            int
		problem, says     string
	}{
		{"OtherCollection", `{"docs":[{"c":"a","id":"x"},{"c":"b","id":"x"}]}`, tokWriteA, 403, "forbidden", `collection "b"`},
		{"OtherCollectionOfCollections", `{"collections":[{"c":"b"}]}`, tokWriteA, 403, "forbidden", `collection "b"`},
		{"NoToken", `{"docs":[{"c":"a","id":"x"}]}`, "", 401, "unauthorized", ""},
		{"TooMany", `{"docs":[{"c":"a","id":"x"},{"c":"a","id":"y"}],"collections":[{"c":"a"}]}`, tokRead, 400, "invalid-request", "at most 2"},
		{"Unknown", `{"docs":[{"c":"a","id":"x","since":1}]}`, tokRead, 400, "invalid-request", `unknown member "since"`},
		{"Twice", `{"docs":[{"c":"a","id":"x"},{"c":"a","id":"x"}]}`, tokRead, 400, "invalid-request", "docs[0] again"},
		{"BadSeq", `{"docs":[{"c":"a","id":"x","after":1.5}]}`, tokRead, 400, "invalid-request", "docs[0].after"},
		{"CursorOfAnother", `{"collections":[{"c":"a2","after":"` + cursor + `"}]}`, tokRead, 400, "invalid-request", "collections[0].after"},
		{"CursorLonger", `{"collections":[{"c":"a","after":"` + longer + `"}]}`, tokRead, 400, "invalid-request", "collections[0].after"},
		{"CursorCut", `{"collections":[{"c":"a","after":"` + shorter + `"}]}`, tokRead, 400, "invalid-request", "collections[0].after"},
		{"CursorAlias", `{"collections":[{"c":"a","after":"` + string(alias) + `"}]}`, tokRead, 400, "invalid-request", "collections[0].after"},
		{"BadWhere", `{"collections":[{"c":"a","where":{"/x":{"lt":{}}}}]}`, tokRead, 400, "invalid-request", "lt takes a number or a string"},
		{"WhereTooLarge", `{"collections":[{"c":"a","where":{"/x":{"in":["` + strings.Repeat("v", 40<<10) + `"]}}},{"c":"a2","where":{"/x":{"in":["` + strings.Repeat("w", 40<<10) + `"]}}}]}`, tokRead, 400, "invalid-request", "collections[1]: the filters of one stream hold at most 64 KiB"},
		{"Nothing", `{"docs":[]}`, tokRead, 400, "invalid-request", "nothing to follow"},
		{"NotObject", `[]`, tokRead, 400, "invalid-request", "JSON object"},
		{"Presence", `{"docs":[{"c":"a","id":"x"}],"presence":"yes"}`, tokRead, 400, "invalid-request", "presence"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hdr{"Content-Type", ctJSON}
			if tc.token != "" {
				h = append(h, "Authorization", "Bearer "+tc.token)
			}
			r := s.do(t, "POST", "/events", h, tc.body)
			expect(t, r, tc.status, tc.problem)
			if d := r.problem(t)["detail"].(string); !strings.Contains(d, tc.says) {
				t.Fatalf("detail %q does not say %q", d, tc.says)
			}
		})
	}
}

// TestStreamLimits: --max-streams and --max-streams-per-client count the
// streams of both routes; past either, 429 with Retry-After; a client is
// its token; a stream that ends frees its place.
func TestStreamLimits(t *testing.T) {
	s := startServer(t, withTokens(t), func(c *config) {
		c.http.Streams.PerClient = 2
		c.http.Streams.Max = 3
	})
	s.do(t, "PUT", "/docs/a/x", hdr{"Content-Type", ctJSON, "Authorization", "Bearer " + tokWriteA}, `{}`)
	read, write := hdr{"Authorization", "Bearer " + tokRead}, hdr{"Authorization", "Bearer " + tokWriteA}
	open := func(h hdr, post bool) (*feed, response) {
		if post {
			return openStream(t, s, "POST", "/events", h, `{"docs":[{"c":"a","id":"x"}]}`)
		}
		return openStream(t, s, "GET", "/docs/a/x/events", h, "")
	}
	first, _ := open(read, false)
	second, _ := open(read, true)
	if first == nil || second == nil {
		t.Fatal("the first two streams of a client were refused")
	}
	for _, post := range []bool{false, true} {
		f, r := open(read, post)
		if f != nil {
			t.Fatalf("a third stream of one client (POST %v) was admitted", post)
		}
		expect(t, r, http.StatusTooManyRequests, "rate-limited")
		if r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "max-streams-per-client") {
			t.Fatalf("429 without Retry-After or reason: %v %s", r.header, r.body)
		}
	}
	// Another token is another client, until the server's limit.
	if f, r := open(write, true); f == nil {
		t.Fatalf("another client's stream: %d %s", r.status, r.body)
	}
	if f, r := open(write, false); f != nil || r.status != http.StatusTooManyRequests || !strings.Contains(string(r.body), "--max-streams)") {
		t.Fatalf("a stream past --max-streams: %d %s", r.status, r.body)
	}
	// Ordinary requests are served meanwhile.
	expect(t, s.do(t, "GET", "/docs/a/x", read, ""), http.StatusOK, "")
	// A stream that ends frees its place.
	first.conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, r := open(read, false)
		if f != nil {
			break
		}
		if r.status != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("after a stream ended: %d %s", r.status, r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStreamSubscriptionLimits: what one client's streams follow at once,
// and what all streams follow, are bounded (what a stream keeps of each
// lives as long as it does): past either, 429 with Retry-After, and a
// stream that ends gives its share back.
func TestStreamSubscriptionLimits(t *testing.T) {
	s := startServer(t, withTokens(t), func(c *config) {
		c.http.Streams.MaxSubscriptions = 3
		c.http.Streams.SubscriptionsPerClient = 5
		c.http.Streams.Subscriptions = 8
	})
	s.do(t, "PUT", "/docs/a/x", hdr{"Content-Type", ctJSON, "Authorization", "Bearer " + tokWriteA}, `{}`)
	read, write := hdr{"Authorization", "Bearer " + tokRead}, hdr{"Authorization", "Bearer " + tokWriteA}
	docs := func(n int) string {
		ds := make([]string, n)
		for i := range ds {
			ds[i] = fmt.Sprintf(`{"c":"a","id":"d%d"}`, i)
		}
		return `{"docs":[` + strings.Join(ds, ",") + `]}`
	}
	refused := func(f *feed, r response, says string) {
		t.Helper()
		if f != nil {
			t.Fatal("a stream past the bound was admitted")
		}
		expect(t, r, http.StatusTooManyRequests, "rate-limited")
		if r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), says) {
			t.Fatalf("429 without Retry-After or %q: %v %s", says, r.header, r.body)
		}
	}
	first, r := openStream(t, s, "POST", "/events", read, docs(3))
	if first == nil {
		t.Fatalf("first stream: %d %s", r.status, r.body)
	}
	f, r := openStream(t, s, "POST", "/events", read, docs(3))
	refused(f, r, "--max-subscriptions-per-client")
	if f, r := openStream(t, s, "GET", "/docs/a/x/events", read, ""); f == nil { // 3 + 1
		t.Fatalf("a stream within the client's bound: %d %s", r.status, r.body)
	}
	if f, r := openStream(t, s, "POST", "/events", write, docs(3)); f == nil { // 4 + 3 of 8
		t.Fatalf("another client's stream: %d %s", r.status, r.body)
	}
	f, r = openStream(t, s, "POST", "/events", write, docs(2))
	refused(f, r, "--max-subscriptions-total")
	// A stream that ends gives its share back.
	first.conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, r := openStream(t, s, "POST", "/events", write, docs(2))
		if f != nil {
			break
		}
		if r.status != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("after a stream ended: %d %s", r.status, r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEventsManyNoGapUnderConcurrentWrites: writers change many documents
// of a collection at once (over PostgreSQL, through every replica) while a
// stream follows the collection and documents; midway a second stream
// resumes from the last cursor the first one gave. Between them every
// version arrives exactly once, each document's in seq order.
func TestEventsManyNoGapUnderConcurrentWrites(t *testing.T) {
	s := startServer(t)
	const docs, writers, each = 6, 4, 15
	for i := range docs {
		s.create(t, fmt.Sprintf("/docs/cw/d%d", i), `{"n":0}`)
	}
	f := subscribe(t, s, `{"collections":[{"c":"cw"}],"docs":[{"c":"cw","id":"d0","after":1}]}`)
	if ev := f.many(t); ev.Name != "ready" {
		t.Fatalf("first event %s", ev.raw)
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r := s.do(t, "PATCH", fmt.Sprintf("/docs/cw/d%d", (w+i)%docs), hdr{"Content-Type", ctMerge, "If-Match", "*"}, fmt.Sprintf(`{"w%d":%d}`, w, i))
				if r.status != http.StatusOK {
					t.Errorf("PATCH: %d %s", r.status, r.body)
				}
			}
		})
	}
	total := writers * each
	last := map[string]uint64{} // per document, the last seq read (each was created at 1)
	for i := range docs {
		last[fmt.Sprintf("d%d", i)] = 1
	}
	d0 := uint64(1) // the last version of d0's own subscription
	seen, cursor := 0, ""
	read := func(f *feed, stop int) {
		for seen < stop {
			ev := f.many(t)
			switch {
			case ev.Name == "version" && ev.ID == "d0":
				if ev.Seq != d0+1 {
					t.Fatalf("d0 version %d after %d", ev.Seq, d0)
				}
				d0 = ev.Seq
			case ev.Name == "change":
				if ev.Seq != last[ev.ID]+1 {
					t.Fatalf("%s: change seq %d after %d", ev.ID, ev.Seq, last[ev.ID])
				}
				last[ev.ID] = ev.Seq
				seen++
				cursor = ev.Cursor
			case ev.Name == "ready":
			default:
				t.Fatalf("unexpected %s %s", ev.Name, ev.raw)
			}
		}
	}
	read(f, total/2)
	f.conn.Close()
	g := subscribe(t, s, `{"collections":[{"c":"cw","after":"`+cursor+`"}]}`)
	read(g, total)
	wg.Wait()
	sum := 0
	for _, n := range last {
		sum += int(n) - 1
	}
	if sum != total {
		t.Fatalf("%d changes, want %d", sum, total)
	}
	// Nothing more: the next change is a new document's. The resumed
	// stream's ready follows its replay, which may have held every change
	// read above: it can come first.
	s.create(t, "/docs/cw/last", `{}`)
	ev := g.many(t)
	if ev.Name == "ready" {
		ev = g.many(t)
	}
	if ev.Name != "change" || ev.ID != "last" {
		t.Fatalf("after every change: %s %s", ev.Name, ev.raw)
	}
}

// TestStreamsIdleOverHTTP2: over HTTP/2 a stream that stays idle for
// longer than the write timeout lives on (a write deadline left set would
// reset it), for both routes.
func TestStreamsIdleOverHTTP2(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := newConfig(func(c *config) {
		c.http.Events.WriteTimeout = 50 * time.Millisecond
		c.http.Events.Heartbeat = time.Hour
	})
	h := newHandler(st, cfg)
	ts := httptest.NewUnstartedServer(h.Echo())
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(func() { h.CloseStreams(); ts.Close(); st.Close() })
	client := ts.Client()
	send := func(method, path, body string, hd ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hd); i += 2 {
			req.Header.Set(hd[i], hd[i+1])
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if res.ProtoMajor != 2 {
			t.Fatalf("%s, want HTTP/2", res.Proto)
		}
		return res
	}
	res := send("PUT", "/docs/h/d", `{"n":0}`, "Content-Type", ctJSON)
	res.Body.Close()
	var streams []*bufio.Reader
	for _, path := range []string{"/docs/h/d/events", "/events"} {
		res := send(map[bool]string{true: "GET", false: "POST"}[path != "/events"], path, `{"docs":[{"c":"h","id":"d"}]}`, "Content-Type", ctJSON)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, res.StatusCode)
		}
		t.Cleanup(func() { res.Body.Close() })
		br := bufio.NewReader(res.Body)
		readUntil(t, br, "event: snapshot")
		streams = append(streams, br)
	}
	time.Sleep(4 * cfg.http.Events.WriteTimeout) // idle: the point of the test
	res = send("PATCH", "/docs/h/d", `{"n":1}`, "Content-Type", ctMerge, "If-Match", "*")
	res.Body.Close()
	for _, br := range streams {
		readUntil(t, br, "event: version")
	}
}

// readUntil reads lines of br until one starts with prefix.
func readUntil(t *testing.T, br *bufio.Reader, prefix string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				done <- err
				return
			}
			if strings.HasPrefix(line, prefix) {
				done <- nil
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waiting for %q: %v", prefix, err)
		}
	case <-time.After(feedWait):
		t.Fatalf("no %q within %v", prefix, feedWait)
	}
}

// TestEventsManySharedReads: streams that follow one collection share
// their reads of its change log; under concurrent writes each of them
// still gets every change exactly once, in order, one stream resuming
// midway from its last cursor included.
func TestEventsManySharedReads(t *testing.T) {
	s := startServer(t)
	const streams, writers, each = 6, 4, 12
	var fs []*feed
	for range streams {
		f := subscribe(t, s, `{"collections":[{"c":"sh"}]}`)
		if ev := f.many(t); ev.Name != "ready" {
			t.Fatalf("first event %s", ev.raw)
		}
		fs = append(fs, f)
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r := s.do(t, "PUT", fmt.Sprintf("/docs/sh/w%d-%d", w, i), hdr{"Content-Type", ctJSON}, `{}`)
				if r.status != http.StatusCreated {
					t.Errorf("PUT: %d %s", r.status, r.body)
				}
			}
		})
	}
	total := writers * each
	var orders [][]string
	for i, f := range fs {
		var got []string
		stop := total
		if i == 0 {
			stop = total / 3 // this one resumes on a new stream midway
		}
		last := ""
		for len(got) < stop {
			ev := f.many(t)
			if ev.Name != "change" || ev.Seq != 1 {
				t.Fatalf("stream %d: %s %s", i, ev.Name, ev.raw)
			}
			got, last = append(got, ev.ID), ev.Cursor
		}
		if i == 0 {
			f.conn.Close()
			g := subscribe(t, s, `{"collections":[{"c":"sh","after":"`+last+`"}]}`)
			for len(got) < total {
				ev := g.many(t)
				if ev.Name == "ready" {
					continue
				}
				if ev.Name != "change" || ev.Seq != 1 {
					t.Fatalf("resumed stream: %s %s", ev.Name, ev.raw)
				}
				got = append(got, ev.ID)
			}
		}
		orders = append(orders, got)
	}
	wg.Wait()
	for i, got := range orders {
		seen := map[string]bool{}
		for _, id := range got {
			if seen[id] {
				t.Fatalf("stream %d: %s twice", i, id)
			}
			seen[id] = true
		}
		if fmt.Sprint(got) != fmt.Sprint(orders[1]) {
			t.Fatalf("stream %d read %v,\nstream 1 read %v", i, got, orders[1])
		}
	}
}

// TestEventsManyBodyBudget: a stream holds the decode budget for its
// request body only while it parses it, not for as long as it streams:
// with a budget of 64 KiB, two streams of 40 KB bodies open, and a 30 KB
// write goes through beside them.
func TestEventsManyBodyBudget(t *testing.T) {
	s := startServer(t, func(c *config) { c.http.DecodeBudget = 64 << 10 })
	var subs []string
	for i := range 280 {
		subs = append(subs, fmt.Sprintf(`{"c":"b","id":"%0128d"}`, i))
	}
	body := `{"docs":[` + strings.Join(subs, ",") + `]}`
	if len(body) < 40<<10-1024 {
		t.Fatalf("body of %d bytes", len(body))
	}
	for i := range 2 {
		f, r := openStream(t, s, "POST", "/events", nil, body)
		if f == nil {
			t.Fatalf("stream %d: %d %s", i, r.status, r.body)
		}
		f.many(t) // the first snapshot: the body was parsed
	}
	done := make(chan response, 1)
	go func() {
		done <- s.do(t, "PUT", "/docs/b/big", hdr{"Content-Type", ctJSON}, `{"pad":"`+strings.Repeat("x", 30<<10)+`"}`)
	}()
	select {
	case r := <-done:
		expect(t, r, http.StatusCreated, "")
	case <-time.After(feedWait):
		t.Fatal("a 30 KB write waited for the streams' bodies")
	}
}

// pendingStore makes the change log look as PostgreSQL's does while a
// transaction that began earlier is still open: the first reads after a
// cursor return nothing but Pending.
type pendingStore struct {
	store.Store
	mu      sync.Mutex
	pending int // reads left that answer Pending only
}

func (p *pendingStore) Changes(ctx context.Context, c string, after store.Cursor, limit int) (store.ChangeLog, error) {
	p.mu.Lock()
	hold := after != nil && p.pending > 0
	if hold {
		p.pending--
	}
	p.mu.Unlock()
	if hold {
		return store.ChangeLog{Next: after, Pending: true}, nil
	}
	return p.Store.Changes(ctx, c, after, limit)
}

// TestEventsManyPendingChanges: a change that is committed but not yet
// readable (Pending) reaches the stream without another commit to wake it.
func TestEventsManyPendingChanges(t *testing.T) {
	ps := &pendingStore{}
	s := startServerWith(t, func(st store.Store) store.Store { ps.Store = st; return ps }, nil)
	f := subscribe(t, s, `{"collections":[{"c":"p"}]}`)
	if ev := f.many(t); ev.Name != "ready" {
		t.Fatalf("first event %s", ev.raw)
	}
	ps.mu.Lock()
	ps.pending = 3
	ps.mu.Unlock()
	s.create(t, "/docs/p/a", `{}`)
	f.want(t, "change", "p", "a", 1)
}

// TestEventsManyPendingAtStart: changes still pending when a stream
// replays from a cursor reach it without another commit.
func TestEventsManyPendingAtStart(t *testing.T) {
	ps := &pendingStore{}
	s := startServerWith(t, func(st store.Store) store.Store { ps.Store = st; return ps }, nil)
	f := subscribe(t, s, `{"collections":[{"c":"p"}]}`)
	cursor := f.many(t).Cursors[0]
	f.conn.Close()
	s.create(t, "/docs/p/a", `{}`)
	ps.mu.Lock()
	ps.pending = 3
	ps.mu.Unlock()
	g := subscribe(t, s, `{"collections":[{"c":"p","after":"`+cursor+`"}]}`)
	if ev := g.many(t); ev.Name != "ready" {
		t.Fatalf("first event %s, want ready (the change is pending)", ev.raw)
	}
	g.want(t, "change", "p", "a", 1)
}
