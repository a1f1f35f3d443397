package handlers_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchd/patchd/handlers"
	"github.com/patchd/patchd/store"
)

// Two session ids, in session order.
const (
	sessionA = "aaaaaaaa-0000-4000-8000-000000000001"
	sessionB = "bbbbbbbb-0000-4000-8000-000000000002"
)

// presenceSession is a session as the API shows it.
type presenceSession struct {
	Session string          `json:"session"`
	Actor   *string         `json:"actor"`
	Name    *string         `json:"name"`
	Color   *string         `json:"color"`
	Focus   *string         `json:"focus"`
	Data    json.RawMessage `json:"data"`
	Expires time.Time       `json:"expires"`
}

// presenceData is the data of a presence event, or a GET's answer.
type presenceData struct {
	C        string            `json:"c"`
	ID       string            `json:"id"`
	Sessions []presenceSession `json:"sessions"`
}

// ids returns the session ids of p, in order.
func (p presenceData) ids() []string {
	var out []string
	for _, s := range p.Sessions {
		out = append(out, s.Session)
	}
	return out
}

func putPresence(t *testing.T, s *server, path, body string, h ...string) presenceSession {
	t.Helper()
	r := s.do(t, "PUT", path, append(hdr{"Content-Type", ctJSON}, h...), body)
	expect(t, r, http.StatusOK, "")
	var ps presenceSession
	if err := json.Unmarshal(r.body, &ps); err != nil {
		t.Fatalf("PUT %s: %s: %v", path, r.body, err)
	}
	return ps
}

func getPresence(t *testing.T, s *server, path string) presenceData {
	t.Helper()
	r := s.do(t, "GET", path, nil, "")
	expect(t, r, http.StatusOK, "")
	var p presenceData
	if err := json.Unmarshal(r.body, &p); err != nil || p.Sessions == nil {
		t.Fatalf("GET %s: %s: %v", path, r.body, err)
	}
	return p
}

// presenceEvent reads the next event of f, which must be a presence event
// of c/id, and returns its data.
func presenceEvent(t *testing.T, f *feed, c, id string) presenceData {
	t.Helper()
	ev := f.event(t)
	var p presenceData
	if err := json.Unmarshal([]byte(ev.Data), &p); err != nil {
		t.Fatalf("event %s %s: %v", ev.Event, ev.Data, err)
	}
	if ev.Event != "presence" || p.C != c || p.ID != id || p.Sessions == nil {
		t.Fatalf("event %s %s, want presence of %s/%s", ev.Event, ev.Data, c, id)
	}
	return p
}

func TestPresenceLifecycle(t *testing.T) {
	s := startServer(t)
	doc := s.create(t, "/docs/forms/1", `{"name":"Ann"}`)
	before := s.do(t, "GET", "/docs/forms/1/history", nil, "")
	expect(t, before, http.StatusOK, "")

	start := time.Now()
	a := putPresence(t, s, "/docs/forms/1/presence/"+sessionA, `{"name":"Ann","color":"#c33","focus":"/name","data":{"typing":true}}`)
	if a.Session != sessionA || a.Actor != nil || *a.Name != "Ann" || *a.Color != "#c33" || *a.Focus != "/name" || string(a.Data) != `{"typing":true}` {
		t.Fatalf("PUT answered %+v", a)
	}
	if a.Expires.Before(start.Add(handlers.DefaultPresenceTTL-time.Second)) || a.Expires.After(time.Now().Add(handlers.DefaultPresenceTTL+time.Second)) {
		t.Fatalf("expires %v: not about 30 s from %v", a.Expires, start)
	}
	// Members left out are null; the document need not exist.
	b := putPresence(t, s, "/docs/forms/1/presence/"+sessionB, `{}`)
	if b.Name != nil || b.Color != nil || b.Focus != nil || string(b.Data) != "null" {
		t.Fatalf("PUT {} answered %+v", b)
	}
	putPresence(t, s, "/docs/forms/new/presence/"+sessionA, `{"focus":""}`)
	expect(t, s.do(t, "GET", "/docs/forms/new", nil, ""), http.StatusNotFound, "not-found")

	if got := getPresence(t, s, "/docs/forms/1/presence").ids(); strings.Join(got, ",") != sessionA+","+sessionB {
		t.Fatalf("sessions %v", got)
	}
	if got := getPresence(t, s, "/docs/forms/new/presence").ids(); len(got) != 1 {
		t.Fatalf("sessions of a document never written %v", got)
	}
	if got := getPresence(t, s, "/docs/forms/none/presence").ids(); len(got) != 0 {
		t.Fatalf("sessions of a document without any %v", got)
	}

	// Renewing replaces what the session shows and extends it.
	a2 := putPresence(t, s, "/docs/forms/1/presence/"+sessionA, `{"name":"Ann B."}`)
	if !a2.Expires.After(a.Expires) || *a2.Name != "Ann B." || a2.Focus != nil {
		t.Fatalf("renewal answered %+v after %+v", a2, a)
	}

	expect(t, s.do(t, "DELETE", "/docs/forms/1/presence/"+sessionA, nil, ""), http.StatusNoContent, "")
	expect(t, s.do(t, "DELETE", "/docs/forms/1/presence/"+sessionA, nil, ""), http.StatusNotFound, "not-found")
	if got := getPresence(t, s, "/docs/forms/1/presence").ids(); strings.Join(got, ",") != sessionB {
		t.Fatalf("sessions after DELETE %v", got)
	}

	// None of it is a version.
	after := s.do(t, "GET", "/docs/forms/1/history", nil, "")
	if string(after.body) != string(before.body) {
		t.Fatalf("history changed by presence:\n%s\n%s", before.body, after.body)
	}
	if r := s.do(t, "GET", "/docs/forms/1", nil, ""); r.header.Get("ETag") != doc {
		t.Fatalf("ETag %s, was %s", r.header.Get("ETag"), doc)
	}
	expect(t, s.do(t, "GET", "/docs/forms/new/history", nil, ""), http.StatusNotFound, "not-found")
}

func TestPresenceErrors(t *testing.T) {
	s := startServer(t)
	base := "/docs/forms/1/presence/"
	for _, tc := range []struct {
		name, path, ct, body string
		status               int
		problem, detail      string
	}{
		{"ShortSession", base + "0123456789abcde", ctJSON, `{}`, 400, "invalid-request", "session"},
		{"LongSession", base + strings.Repeat("a", 65), ctJSON, `{}`, 400, "invalid-request", "session"},
		{"SessionChars", base + "0123456789abcdef%21", ctJSON, `{}`, 400, "invalid-request", "session"},
		{"BadID", "/docs/forms/a%20b/presence/" + sessionA, ctJSON, `{}`, 400, "invalid-request", "id"},
		{"NotObject", base + sessionA, ctJSON, `[]`, 400, "invalid-request", "object"},
		{"Unknown", base + sessionA, ctJSON, `{"nick":"a"}`, 400, "invalid-request", `"nick"`},
		{"NameNumber", base + sessionA, ctJSON, `{"name":1}`, 400, "invalid-request", "name"},
		{"ColorObject", base + sessionA, ctJSON, `{"color":{}}`, 400, "invalid-request", "color"},
		{"FocusRelative", base + sessionA, ctJSON, `{"focus":"a/b"}`, 400, "invalid-request", "focus"},
		{"FocusEscape", base + sessionA, ctJSON, `{"focus":"/a~2"}`, 400, "invalid-request", "focus"},
		{"FocusNumber", base + sessionA, ctJSON, `{"focus":3}`, 400, "invalid-request", "focus"},
		{"TooDeep", base + sessionA, ctJSON, `{"data":` + strings.Repeat(`[`, 16) + strings.Repeat(`]`, 16) + `}`, 400, "invalid-request", "deeper"},
		{"InvalidJSON", base + sessionA, ctJSON, `{"name":`, 400, "invalid-json", ""},
		{"TooLarge", base + sessionA, ctJSON, `{"data":"` + strings.Repeat("x", 1020) + `"}`, 413, "too-large", "1024"},
		{"MediaType", base + sessionA, "text/plain", `{}`, 415, "unsupported-media-type", ""},
		{"DryRun", base + sessionA + "?dryRun=true", ctJSON, `{}`, 400, "invalid-request", "dryRun does not apply"},
		{"DryRunValue", base + sessionA + "?dryRun=1", ctJSON, `{}`, 400, "invalid-request", "dryRun must be true or false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(t, "PUT", tc.path, hdr{"Content-Type", tc.ct}, tc.body)
			expect(t, r, tc.status, tc.problem)
			if d, _ := r.problem(t)["detail"].(string); !strings.Contains(d, tc.detail) {
				t.Fatalf("detail %q does not name %q", d, tc.detail)
			}
		})
	}
	// Exactly 1 KiB is accepted.
	body := `{"data":"` + strings.Repeat("x", 1024-len(`{"data":""}`)) + `"}`
	putPresence(t, s, base+sessionA, body)
	expect(t, s.do(t, "DELETE", base+"short", nil, ""), http.StatusBadRequest, "invalid-request")
	if got := getPresence(t, s, "/docs/forms/1/presence").ids(); len(got) != 1 {
		t.Fatalf("sessions %v", got)
	}
}

func TestPresenceLimits(t *testing.T) {
	s := startServer(t, func(c *config) {
		c.http.Presence = store.NewMemoryPresence(store.PresenceLimits{PerDocument: 2, PerClient: 3}, nil)
		c.http.PresenceTTL = 20 * time.Second
	})
	putPresence(t, s, "/docs/f/1/presence/"+sessionA, `{}`)
	putPresence(t, s, "/docs/f/1/presence/"+sessionB, `{}`)
	r := s.do(t, "PUT", "/docs/f/1/presence/cccccccccccccccc", hdr{"Content-Type", ctJSON}, `{}`)
	expect(t, r, http.StatusTooManyRequests, "rate-limited")
	if r.header.Get("Retry-After") != "20" {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	// Renewing is never refused.
	putPresence(t, s, "/docs/f/1/presence/"+sessionA, `{"name":"again"}`)
	// The client's third session, then none.
	putPresence(t, s, "/docs/f/2/presence/"+sessionA, `{}`)
	r = s.do(t, "PUT", "/docs/f/3/presence/"+sessionA, hdr{"Content-Type", ctJSON}, `{}`)
	expect(t, r, http.StatusTooManyRequests, "rate-limited")
	if d, _ := r.problem(t)["detail"].(string); !strings.Contains(d, "client") {
		t.Fatalf("detail %q", d)
	}
	// Ending one makes room.
	expect(t, s.do(t, "DELETE", "/docs/f/2/presence/"+sessionA, nil, ""), http.StatusNoContent, "")
	putPresence(t, s, "/docs/f/3/presence/"+sessionA, `{}`)
}

// TestPresenceClientShare: one client cannot take every place of a
// document: past its share, its new sessions are refused and another
// client's are still taken.
func TestPresenceClientShare(t *testing.T) {
	s := startServer(t, withTokens(t), func(c *config) {
		c.http.Presence = store.NewMemoryPresence(store.PresenceLimits{PerDocument: 3, PerClientDocument: 2}, nil)
	})
	putPresence(t, s, "/docs/a/1/presence/"+sessionA, `{}`, bearer(tokWriteA)...)
	putPresence(t, s, "/docs/a/1/presence/"+sessionB, `{}`, bearer(tokWriteA)...)
	r := s.do(t, "PUT", "/docs/a/1/presence/cccccccccccccccc", append(bearer(tokWriteA), "Content-Type", ctJSON), `{}`)
	expect(t, r, http.StatusTooManyRequests, "rate-limited")
	if d, _ := r.problem(t)["detail"].(string); !strings.Contains(d, "share") || r.header.Get("Retry-After") == "" {
		t.Fatalf("detail %q, Retry-After %q", d, r.header.Get("Retry-After"))
	}
	// Renewing is never refused, and another client gets the last place.
	putPresence(t, s, "/docs/a/1/presence/"+sessionA, `{"name":"again"}`, bearer(tokWriteA)...)
	putPresence(t, s, "/docs/a/1/presence/cccccccccccccccc", `{}`, bearer(tokAdmin)...)
	// The client's share is of one document: another one takes its sessions.
	putPresence(t, s, "/docs/a/2/presence/"+sessionA, `{}`, bearer(tokWriteA)...)
}

func TestPresenceActor(t *testing.T) {
	s := startServer(t, withTokens(t))
	ps := putPresence(t, s, "/docs/a/1/presence/"+sessionA, `{}`, bearer(tokWriteA)...)
	sum := sha256.Sum256([]byte(tokWriteA))
	if ps.Actor == nil || *ps.Actor != "token:"+hex.EncodeToString(sum[:4]) {
		t.Fatalf("actor %v", ps.Actor)
	}
	// Write role for PUT and DELETE, read for GET.
	r := s.do(t, "PUT", "/docs/a/1/presence/"+sessionB, append(bearer(tokRead), "Content-Type", ctJSON), `{}`)
	expect(t, r, http.StatusForbidden, "forbidden")
	expect(t, s.do(t, "DELETE", "/docs/a/1/presence/"+sessionA, bearer(tokRead), ""), http.StatusForbidden, "forbidden")
	r = s.do(t, "GET", "/docs/a/1/presence", bearer(tokRead), "")
	expect(t, r, http.StatusOK, "")
	if !strings.Contains(string(r.body), `"actor":"token:`) {
		t.Fatalf("GET %s", r.body)
	}
}

func TestPresenceEvents(t *testing.T) {
	s := startServer(t)
	s.create(t, "/docs/forms/1", `{"n":0}`)
	// A session there before the stream opens is announced before ready.
	putPresence(t, s, "/docs/forms/1/presence/"+sessionA, `{"name":"Ann"}`)
	with := subscribe(t, s, `{"docs":[{"c":"forms","id":"1"},{"c":"forms","id":"2"}],"collections":[{"c":"forms"}],"presence":true}`)
	with.want(t, "snapshot", "forms", "1", 1)
	if p := presenceEvent(t, with, "forms", "1"); strings.Join(p.ids(), ",") != sessionA || *p.Sessions[0].Name != "Ann" {
		t.Fatalf("presence at the start %+v", p)
	}
	with.want(t, "snapshot", "forms", "2", 0) // no sessions: no event
	with.want(t, "ready", "", "", 0)
	without := subscribe(t, s, `{"docs":[{"c":"forms","id":"1"}],"collections":[{"c":"forms"}]}`)
	without.want(t, "snapshot", "forms", "1", 1)
	without.want(t, "ready", "", "", 0)

	putPresence(t, s, "/docs/forms/1/presence/"+sessionB, `{"name":"Bob","focus":"/n"}`)
	p := presenceEvent(t, with, "forms", "1")
	if strings.Join(p.ids(), ",") != sessionA+","+sessionB || *p.Sessions[1].Focus != "/n" {
		t.Fatalf("presence %+v", p)
	}
	// A renewal that changes nothing shown sends nothing: the next event
	// is the next change.
	putPresence(t, s, "/docs/forms/1/presence/"+sessionB, `{"name":"Bob","focus":"/n"}`)
	putPresence(t, s, "/docs/forms/1/presence/"+sessionB, `{"name":"Bob","focus":null}`)
	if p := presenceEvent(t, with, "forms", "1"); p.Sessions[1].Focus != nil {
		t.Fatalf("presence %+v", p)
	}
	// Another document's presence goes to its own subscription.
	putPresence(t, s, "/docs/forms/2/presence/"+sessionA, `{}`)
	if p := presenceEvent(t, with, "forms", "2"); len(p.Sessions) != 1 {
		t.Fatalf("presence %+v", p)
	}
	expect(t, s.do(t, "DELETE", "/docs/forms/1/presence/"+sessionA, nil, ""), http.StatusNoContent, "")
	if p := presenceEvent(t, with, "forms", "1"); strings.Join(p.ids(), ",") != sessionB {
		t.Fatalf("presence after DELETE %+v", p)
	}

	// Presence is not a change: both streams' next event is the write's,
	// and the stream without presence never had a presence event.
	r := s.do(t, "PATCH", "/docs/forms/1", hdr{"Content-Type", ctMerge, "If-Match", "*"}, `{"n":1}`)
	expect(t, r, http.StatusOK, "")
	for _, f := range []*feed{with, without} {
		f.want(t, "version", "forms", "1", 2)
		f.want(t, "change", "forms", "1", 2)
	}
	expect(t, s.do(t, "DELETE", "/docs/forms/1/presence/"+sessionB, nil, ""), http.StatusNoContent, "")
	if p := presenceEvent(t, with, "forms", "1"); len(p.Sessions) != 0 {
		t.Fatalf("presence after the last DELETE %+v", p)
	}
}

func TestPresenceExpires(t *testing.T) {
	const ttl = time.Second
	s := startServer(t, func(c *config) { c.http.PresenceTTL = ttl })
	f := subscribe(t, s, `{"docs":[{"c":"forms","id":"1","after":0}],"presence":true}`)
	f.want(t, "ready", "", "", 0)
	ps := putPresence(t, s, "/docs/forms/1/presence/"+sessionA, `{"name":"Ann"}`)
	if p := presenceEvent(t, f, "forms", "1"); len(p.Sessions) != 1 || !p.Sessions[0].Expires.Equal(ps.Expires) {
		t.Fatalf("presence %+v, PUT answered %+v", p, ps)
	}
	// Not renewed: the session ends at its expiry, and the stream is told.
	p := presenceEvent(t, f, "forms", "1")
	if len(p.Sessions) != 0 {
		t.Fatalf("presence after the expiry %+v", p)
	}
	if now := time.Now(); now.Before(ps.Expires.Add(-50 * time.Millisecond)) {
		t.Fatalf("told of the expiry at %v, before it (%v)", now, ps.Expires)
	}
	if got := getPresence(t, s, "/docs/forms/1/presence").ids(); len(got) != 0 {
		t.Fatalf("sessions after the expiry %v", got)
	}
	expect(t, s.do(t, "DELETE", "/docs/forms/1/presence/"+sessionA, nil, ""), http.StatusNotFound, "not-found")
}

// countingPresence counts the reads of presence lists.
type countingPresence struct {
	store.Presence
	lists atomic.Int64
}

func (c *countingPresence) ListPresence(ctx context.Context, coll, id string) ([]store.PresenceSession, error) {
	c.lists.Add(1)
	return c.Presence.ListPresence(ctx, coll, id)
}

// TestPresenceReadShared: the streams that follow a document's presence
// share one read of it per change, instead of each reading and rendering
// the list (60 streams, 100 sessions of 1 KB: 26 ms of CPU a PUT).
func TestPresenceReadShared(t *testing.T) {
	cp := &countingPresence{Presence: store.NewMemoryPresence(handlers.DefaultPresenceLimits, nil)}
	s := startServer(t, func(c *config) { c.http.Presence = cp })
	s.create(t, "/docs/forms/1", `{"n":0}`)
	const streams = 20
	var feeds []*feed
	for range streams {
		f := subscribe(t, s, `{"docs":[{"c":"forms","id":"1"}],"presence":true}`)
		f.want(t, "snapshot", "forms", "1", 1)
		f.want(t, "ready", "", "", 0)
		feeds = append(feeds, f)
	}
	for i, session := range []string{sessionA, sessionB} {
		before := cp.lists.Load()
		putPresence(t, s, "/docs/forms/1/presence/"+session, `{"name":"Ann"}`)
		for _, f := range feeds {
			if p := presenceEvent(t, f, "forms", "1"); len(p.Sessions) != i+1 {
				t.Fatalf("presence %+v, want %d sessions", p, i+1)
			}
		}
		if n := cp.lists.Load() - before; n > streams/4 {
			t.Fatalf("%d reads of the presence list for %d streams and one change", n, streams)
		}
	}
}

// TestPresenceCoalesced: a storm of presence writes reaches a stream as at
// most one event per presenceEvery (the list they leave), ending with the
// last state, rather than one event per write.
func TestPresenceCoalesced(t *testing.T) {
	s := startServer(t)
	s.create(t, "/docs/forms/1", `{"n":0}`)
	f := subscribe(t, s, `{"docs":[{"c":"forms","id":"1"}],"presence":true}`)
	f.want(t, "snapshot", "forms", "1", 1)
	f.want(t, "ready", "", "", 0)
	const writes = 40
	start := time.Now()
	for i := range writes {
		putPresence(t, s, "/docs/forms/1/presence/"+sessionA, fmt.Sprintf(`{"focus":"/f%d"}`, i))
	}
	events := 0
	for {
		p := presenceEvent(t, f, "forms", "1")
		events++
		if *p.Sessions[0].Focus == fmt.Sprintf("/f%d", writes-1) {
			break
		}
	}
	elapsed := time.Since(start)
	// The first event goes at once; each later one waits presenceEvery.
	if most := 1 + int(elapsed/(250*time.Millisecond)); events > most {
		t.Fatalf("%d presence events in %v for %d writes, want at most %d", events, elapsed, writes, most)
	}
	t.Logf("%d writes in %v: %d events", writes, elapsed, events)
}

// TestPresenceSessionIsItsClients: every reader sees the session ids, so a
// live session is renewed and ended only by the client (token) that
// announced it: another is 403, and the session stays as it was (anyone
// could end or speak for anyone).
func TestPresenceSessionIsItsClients(t *testing.T) {
	s := startServer(t, withTokens(t))
	putPresence(t, s, "/docs/a/1/presence/"+sessionA, `{"name":"Ann"}`, bearer(tokWriteA)...)
	r := s.do(t, "PUT", "/docs/a/1/presence/"+sessionA, append(bearer(tokAdmin), "Content-Type", ctJSON), `{"name":"Eve"}`)
	expect(t, r, http.StatusForbidden, "forbidden")
	if d, _ := r.problem(t)["detail"].(string); !strings.Contains(d, "another client") {
		t.Errorf("detail %q", d)
	}
	expect(t, s.do(t, "DELETE", "/docs/a/1/presence/"+sessionA, bearer(tokAdmin), ""), http.StatusForbidden, "forbidden")
	r = s.do(t, "GET", "/docs/a/1/presence", bearer(tokRead), "")
	expect(t, r, http.StatusOK, "")
	if !strings.Contains(string(r.body), `"name":"Ann"`) || strings.Contains(string(r.body), "Eve") {
		t.Fatalf("after the refusals: %s", r.body)
	}
	// Its own client renews and ends it.
	putPresence(t, s, "/docs/a/1/presence/"+sessionA, `{"name":"Ann B."}`, bearer(tokWriteA)...)
	expect(t, s.do(t, "DELETE", "/docs/a/1/presence/"+sessionA, bearer(tokWriteA), ""), http.StatusNoContent, "")
	// Once ended, the id is free.
	putPresence(t, s, "/docs/a/1/presence/"+sessionA, `{}`, bearer(tokAdmin)...)
}
