package handlers_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// logSink keeps the JSON lines a slog.JSONHandler writes, and wakes
// waiters on each one.
type logSink struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines []map[string]any
	more  chan struct{}
}

func newLogSink() *logSink { return &logSink{more: make(chan struct{}, 1)} }

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	var m map[string]any
	if err := json.Unmarshal(p, &m); err == nil {
		l.lines = append(l.lines, m)
	}
	select {
	case l.more <- struct{}{}:
	default:
	}
	return len(p), nil
}

// request waits for the request line with the given request id.
func (l *logSink) request(t *testing.T, id string) map[string]any {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		l.mu.Lock()
		for _, m := range l.lines {
			if m["msg"] == "request" && m["request_id"] == id {
				l.mu.Unlock()
				return m
			}
		}
		l.mu.Unlock()
		select {
		case <-l.more:
		case <-deadline:
			t.Fatalf("no request line for %s in:\n%s", id, l.all())
		}
	}
}

func (l *logSink) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func TestRequestLog(t *testing.T) {
	t.Parallel()
	sink := newLogSink()
	s := startServer(t, func(c *config) {
		c.http.Logger = slog.New(slog.NewJSONHandler(sink, nil))
	})
	const secret = "s3cr3t-value"
	const token = "tok-abcdef"

	// A sane X-Request-Id is kept and echoed.
	r := s.do(t, "PUT", "/docs/c/d", hdr{"Content-Type", ctJSON, "X-Request-Id", "req-1", "Authorization", "Bearer " + token},
		`{"a":"`+secret+`","b":1}`)
	expect(t, r, http.StatusCreated, "")
	if got := r.header.Get("X-Request-Id"); got != "req-1" {
		t.Fatalf("X-Request-Id=%q, want req-1", got)
	}
	e0 := r.header.Get("ETag")
	line := sink.request(t, "req-1")
	for k, want := range map[string]any{"method": "PUT", "route": "/docs/:c/:id", "path": "/docs/c/d", "status": float64(201),
		"etag_after": e0, "rebased": false, "level": "INFO"} {
		if line[k] != want {
			t.Errorf("%s=%v, want %v (line %v)", k, line[k], want, line)
		}
	}
	if _, ok := line["etag_before"]; ok {
		t.Errorf("a create has an etag_before: %v", line)
	}
	if d, ok := line["duration_ms"].(float64); !ok || d < 0 {
		t.Errorf("duration_ms=%v", line["duration_ms"])
	}

	// A write against the current version, then a stale one that rebases.
	r = s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", e0, "X-Request-Id", "req-2"}, `{"b":2}`)
	expect(t, r, 200, "")
	e1 := r.header.Get("ETag")
	line = sink.request(t, "req-2")
	if line["etag_before"] != e0 || line["etag_after"] != e1 || line["rebased"] != false {
		t.Errorf("direct write: %v", line)
	}
	r = s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", e0, "X-Request-Id", "req-3"}, `{"c":`+`"`+secret+`"}`)
	expect(t, r, 200, "")
	line = sink.request(t, "req-3")
	if line["etag_before"] != e1 || line["etag_after"] != r.header.Get("ETag") || line["rebased"] != true {
		t.Errorf("rebased write: %v", line)
	}

	// A refused write logs the current version and the problem type.
	r = s.do(t, "PATCH", "/docs/c/d", hdr{"Content-Type", ctMerge, "If-Match", e0, "X-Request-Id", "req-4"}, `{"b":3}`)
	expect(t, r, 412, "rebase-conflict")
	line = sink.request(t, "req-4")
	if line["status"] != float64(412) || line["problem"] != "rebase-conflict" || line["etag_before"] != r.header.Get("ETag") || line["etag_after"] != nil {
		t.Errorf("refused write: %v", line)
	}

	// An id that is not sane is replaced by a generated one.
	for _, bad := range []string{"", "has space", strings.Repeat("x", 129), "quote\"d", "naïve"} {
		h := hdr{}
		if bad != "" {
			h = hdr{"X-Request-Id", bad}
		}
		r = s.do(t, "GET", "/docs/c/d", h, "")
		expect(t, r, 200, "")
		id := r.header.Get("X-Request-Id")
		if id == bad || len(id) != 26 {
			t.Fatalf("X-Request-Id %q for %q, want a generated one", id, bad)
		}
		sink.request(t, id)
	}
	// Errors, 404s of unknown routes included, have an id too.
	r = s.do(t, "GET", "/nowhere", hdr{"X-Request-Id", "req-5"}, "")
	expect(t, r, 404, "not-found")
	if r.header.Get("X-Request-Id") != "req-5" || sink.request(t, "req-5")["route"] != "unmatched" {
		t.Fatalf("404: %v", r.header)
	}

	// Never a body, a query string or a token.
	expect(t, s.do(t, "GET", "/docs/c?after="+secret, hdr{"X-Request-Id", "req-6"}, ""), 200, "")
	sink.request(t, "req-6")
	all := sink.all()
	for _, leak := range []string{secret, token, "Bearer"} {
		if strings.Contains(all, leak) {
			t.Fatalf("the log holds %q:\n%s", leak, all)
		}
	}
}

func TestRequestLogErrorLevel(t *testing.T) {
	t.Parallel()
	sink := newLogSink()
	bst, err := bolt.Open(filepath.Join(t.TempDir(), "p.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bst.Close() })
	cfg := newConfig()
	cfg.http.Logger = slog.New(slog.NewJSONHandler(sink, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s := &server{Server: httptest.NewServer(newHandler(faultyStore{bst}, cfg).Echo())}
	t.Cleanup(s.Close)
	// Info lines are off at this level; a 5xx line is at error level.
	expect(t, s.do(t, "GET", "/healthz", hdr{"X-Request-Id", "quiet"}, ""), 200, "")
	expect(t, s.do(t, "GET", "/docs/c/d", hdr{"X-Request-Id", "loud"}, ""), 500, "internal")
	if line := sink.request(t, "loud"); line["level"] != "ERROR" || line["problem"] != "internal" {
		t.Fatalf("5xx line %v", line)
	}
	if strings.Contains(sink.all(), "quiet") {
		t.Fatalf("an info line at warn level: %s", sink.all())
	}
}
