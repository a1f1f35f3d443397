package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchd/patchd/client"
	"github.com/patchd/patchd/handlers"
)

// answerCutter forwards TCP connections to a server, and can reset the
// connection that carries the next answer as soon as the server starts
// sending it: the request has been processed, and the client never sees
// the answer. internal/faults.Proxy cuts every connection at a moment the
// test picks, which cannot be "after the server answered, before the
// client read it" without a race; this cuts exactly there.
type answerCutter struct {
	ln     net.Listener
	target string
	armed  atomic.Bool
	cuts   atomic.Int32
	// before runs, when set, once the next cut answer has begun and
	// before the client's connection is reset.
	before atomic.Pointer[func()]

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// namedClient is a client of a subtest.
type namedClient struct {
	name string
	cl   *client.Client
}

// cutClients are the two ways a client meets a cut answer: over a reused
// connection, which net/http resends a write over by itself, and over a
// new one (no keep-alives), where the client's retry does.
func cutClients(cut *answerCutter) []namedClient {
	return []namedClient{
		{name: "Reused", cl: client.New(cut.URL(), fastRetry)},
		{name: "New", cl: client.New(cut.URL(), fastRetry, client.WithHTTPClient(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}))},
	}
}

// newAnswerCutter forwards a free loopback port to target (host:port).
func newAnswerCutter(t *testing.T, target string) *answerCutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &answerCutter{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

// URL is the address clients use.
func (p *answerCutter) URL() string { return "http://" + p.ln.Addr().String() }

// cutNextAnswer makes the next answer's connection reset.
func (p *answerCutter) cutNextAnswer() { p.armed.Store(true) }

// cutNextAnswerAfter makes the next answer's connection reset, once f
// has run: the request has been processed, and the client can retry it
// only after f.
func (p *answerCutter) cutNextAnswerAfter(f func()) {
	p.before.Store(&f)
	p.armed.Store(true)
}

func (p *answerCutter) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *answerCutter) track(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns[c] = struct{}{}
}

func (p *answerCutter) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// reset closes c so that the peer sees a reset.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (p *answerCutter) serve(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		reset(c)
		return
	}
	p.track(c)
	p.track(s)
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = io.Copy(s, c)
		_ = s.(*net.TCPConn).CloseWrite()
	})
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 && p.armed.CompareAndSwap(true, false) {
			p.cuts.Add(1)
			if f := p.before.Swap(nil); f != nil {
				(*f)()
			}
			reset(c)
			reset(s)
			break
		}
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			_ = c.(*net.TCPConn).CloseWrite()
			break
		}
	}
	wg.Wait()
	c.Close()
	s.Close()
}

func TestAnswerLostWriteAppliedOnce(t *testing.T) {
	base, _ := startServer(t)
	direct := client.New(base)
	cut := newAnswerCutter(t, strings.TrimPrefix(base, "http://"))

	tests := []struct {
		name string
		// setup creates the document, if the write needs one.
		setup string
		write func(ctx context.Context, cl *client.Client, id, etag string) (*client.Document, error)
		// want is the document afterwards ("" when deleted); versions how
		// many versions it has then.
		want     string
		versions int
		replayed bool
		created  bool // the result says Created
	}{
		{name: "PatchAppend", setup: `{"items":[1]}`, write: func(ctx context.Context, cl *client.Client, id, etag string) (*client.Document, error) {
			return cl.Patch(ctx, "lost", id, []client.Op{{Op: "add", Path: "/items/-", Value: json.RawMessage(`2`)}}, client.IfMatch(etag))
		}, want: `{"items":[1,2]}`, versions: 2, replayed: true},
		{name: "Merge", setup: `{"n":1}`, write: func(ctx context.Context, cl *client.Client, id, etag string) (*client.Document, error) {
			return cl.Merge(ctx, "lost", id, map[string]any{"m": 2}, client.IfMatch(etag))
		}, want: `{"m":2,"n":1}`, versions: 2, replayed: true},
		{name: "PutReplace", setup: `{"n":1}`, write: func(ctx context.Context, cl *client.Client, id, etag string) (*client.Document, error) {
			return cl.Put(ctx, "lost", id, json.RawMessage(`{"n":2}`), client.IfMatch(etag))
		}, want: `{"n":2}`, versions: 2},
		{name: "PutNew", write: func(ctx context.Context, cl *client.Client, id, _ string) (*client.Document, error) {
			return cl.Put(ctx, "lost", id, json.RawMessage(`{"n":1}`))
		}, want: `{"n":1}`, versions: 1},
		{name: "Create", write: func(ctx context.Context, cl *client.Client, id, _ string) (*client.Document, error) {
			return cl.Create(ctx, "lost", id, map[string]int{"n": 1})
		}, want: `{"n":1}`, versions: 1, created: true},
		{name: "Delete", setup: `{"n":1}`, write: func(ctx context.Context, cl *client.Client, id, etag string) (*client.Document, error) {
			return nil, cl.Delete(ctx, "lost", id, client.IfMatch(etag))
		}, want: "", versions: 2},
	}
	conns := cutClients(cut)
	for _, conn := range conns {
		for _, tc := range tests {
			t.Run(conn.name+"/"+tc.name, func(t *testing.T) {
				doc := testAnswerLost(t, cut, direct, conn.cl, conn.name+tc.name, tc.setup, tc.write, tc.want, tc.versions, tc.replayed)
				if tc.created && !doc.Created {
					t.Fatalf("Created false: the first attempt, whose answer was lost, created the document")
				}
			})
		}
	}
}

// testAnswerLost runs write through the cutter, with its answer cut, and
// checks that it was applied once.
func testAnswerLost(t *testing.T, cut *answerCutter, direct, cl *client.Client, id, setup string,
	write func(ctx context.Context, cl *client.Client, id, etag string) (*client.Document, error), want string, wantVersions int, replayed bool) *client.Document {
	t.Helper()
	ctx := testContext(t)
	var etag string
	if setup != "" {
		etag = mustCreate(t, direct, "lost", id, setup).ETag
	}
	if _, err := cl.List(ctx, "lost", client.ListOptions{}); err != nil { // a connection to reuse
		t.Fatal(err)
	}
	before := cut.cuts.Load()
	cut.cutNextAnswer()
	doc, err := write(ctx, cl, id, etag)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	if got := cut.cuts.Load() - before; got != 1 {
		t.Fatalf("%d answers cut, want 1", got)
	}
	if doc != nil && (string(doc.Value) != want || doc.Replayed != replayed) {
		t.Fatalf("result %s (Replayed %v), want %s (Replayed %v)", doc.Value, doc.Replayed, want, replayed)
	}
	cur, err := direct.Get(ctx, "lost", id)
	switch {
	case want == "" && !errors.Is(err, client.ErrNotFound):
		t.Fatalf("after delete: %v, want ErrNotFound", err)
	case want != "" && (err != nil || string(cur.Value) != want):
		t.Fatalf("document %v (%v), want %s", cur, err, want)
	}
	if got := versions(t, direct, "lost", id); got != wantVersions {
		t.Fatalf("%d versions, want %d: the write was applied more than once", got, wantVersions)
	}
	return doc
}

// failing wraps a handler so that the first n requests to a path get the
// answer of fail, and counts the requests to it.
type failing struct {
	path  string
	n     atomic.Int32
	count atomic.Int32
	fail  func(w http.ResponseWriter)
}

func (f *failing) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == f.path {
			f.count.Add(1)
			if f.n.Add(-1) >= 0 {
				f.fail(w)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// statusAnswer answers status with a plain-text body, as a gateway would,
// and the given headers (name, value, ...).
func statusAnswer(status int, header ...string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, http.StatusText(status))
	}
}

func TestRetriedStatuses(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		header   []string
		failures int32
		attempts int
		// wantStatus is the answer's status when the write fails; 0 when
		// it succeeds.
		wantStatus int
		wantCount  int32
	}{
		{name: "503", status: 503, failures: 2, attempts: 5, wantCount: 3},
		{name: "502", status: 502, failures: 1, attempts: 5, wantCount: 2},
		{name: "504", status: 504, failures: 1, attempts: 5, wantCount: 2},
		{name: "429RetryAfter", status: 429, header: []string{"Retry-After", "0"}, failures: 1, attempts: 5, wantCount: 2},
		{name: "503Exhausted", status: 503, failures: 10, attempts: 3, wantStatus: 503, wantCount: 3},
		{name: "400NeverRetried", status: 400, failures: 1, attempts: 5, wantStatus: 400, wantCount: 1},
		{name: "401NeverRetried", status: 401, failures: 1, attempts: 5, wantStatus: 401, wantCount: 1},
		{name: "409NeverRetried", status: 409, failures: 1, attempts: 5, wantStatus: 409, wantCount: 1},
		{name: "500NeverRetried", status: 500, failures: 1, attempts: 5, wantStatus: 500, wantCount: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &failing{path: "/docs/r/" + tc.name, fail: statusAnswer(tc.status, tc.header...)}
			f.n.Store(tc.failures)
			base, _ := startServer(t, withWrap(f.wrap))
			cl := client.New(base, client.WithRetry(client.RetryPolicy{Attempts: tc.attempts, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}))
			doc, err := cl.Create(testContext(t), "r", tc.name, json.RawMessage(`{"a":1}`))
			if got := f.count.Load(); got != tc.wantCount {
				t.Fatalf("%d requests, want %d", got, tc.wantCount)
			}
			if tc.wantStatus == 0 {
				if err != nil || !doc.Created {
					t.Fatalf("Create: %+v, %v", doc, err)
				}
				return
			}
			var p *client.Problem
			if !errors.As(err, &p) || p.Status != tc.wantStatus || p.Detail != http.StatusText(tc.wantStatus) {
				t.Fatalf("err=%v (%#v), want a *Problem with status %d", err, p, tc.wantStatus)
			}
		})
	}
}

func TestRateLimitRetryAfter(t *testing.T) {
	base, _ := startServer(t, withConfig(func(c *handlers.Config) { c.Rate, c.RateBurst = 1, 1 }))
	// Without Retry-After, two attempts a millisecond apart would both
	// find the bucket empty.
	cl := client.New(base, client.WithRetry(client.RetryPolicy{Attempts: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	ctx := testContext(t)
	mustCreate(t, cl, "rate", "a", `{}`)

	// A deadline sooner than Retry-After: the 429 comes back at once.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err := cl.Get(short, "rate", "a")
	var p *client.Problem
	if !errors.As(err, &p) || p.Status != http.StatusTooManyRequests || p.Name() != "rate-limited" {
		t.Fatalf("err=%v, want 429 rate-limited", err)
	}

	start := time.Now()
	if _, err := cl.Get(ctx, "rate", "a"); err != nil {
		t.Fatalf("Get after waiting Retry-After: %v", err)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Fatalf("succeeded after %v: Retry-After (1s) was not waited for", d)
	}
}

func TestNetworkErrorsRetried(t *testing.T) {
	// A server that accepts connections and closes them at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })

	cl := client.New("http://"+ln.Addr().String(), client.WithRetry(client.RetryPolicy{Attempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	_, err = cl.Get(testContext(t), "c", "d")
	var p *client.Problem
	if err == nil || errors.As(err, &p) || !strings.Contains(err.Error(), "3 attempts") {
		t.Fatalf("err=%v, want a network error after 3 attempts", err)
	}
	if got := accepted.Load(); got != 3 {
		t.Fatalf("%d connections, want 3", got)
	}

	// Nothing listens: refused connections are retried too.
	addr := ln.Addr().String()
	ln.Close()
	wg.Wait()
	_, err = client.New("http://"+addr, fastRetry).Get(testContext(t), "c", "d")
	if err == nil || !strings.Contains(err.Error(), "8 attempts") {
		t.Fatalf("err=%v, want a network error after 8 attempts", err)
	}

	// The context ends the retries.
	ctx, cancel := context.WithCancel(testContext(t))
	cancel()
	if _, err := client.New("http://"+addr).Get(ctx, "c", "d"); !errors.Is(err, context.Canceled) {
		t.Fatalf("err=%v, want context.Canceled", err)
	}
}

func TestIdempotencyKeyKeptAcrossRetries(t *testing.T) {
	var mu sync.Mutex
	var keys []string
	f := &failing{path: "/docs/k/d", fail: statusAnswer(503)}
	base, _ := startServer(t, withWrap(func(next http.Handler) http.Handler {
		inner := f.wrap(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPatch {
				mu.Lock()
				keys = append(keys, r.Header.Get("Idempotency-Key"))
				mu.Unlock()
			}
			inner.ServeHTTP(w, r)
		})
	}))
	cl := client.New(base, fastRetry)
	ctx := testContext(t)
	doc := mustCreate(t, cl, "k", "d", `{"n":0}`)
	f.n.Store(2)
	doc, err := cl.Merge(ctx, "k", "d", map[string]int{"n": 1}, client.IfMatch(doc.ETag))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Merge(ctx, "k", "d", map[string]int{"n": 2}, client.IfMatch(doc.ETag), client.IdempotencyKey(`my "key" \ 1`)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(keys) != 4 || keys[0] == "" || keys[0] != keys[1] || keys[1] != keys[2] || keys[3] == keys[0] {
		t.Fatalf("keys %q: want three equal keys (two failures, one success), then another", keys)
	}
	if got, want := keys[3], `"my \"key\" \\ 1"`; got != want {
		t.Fatalf("key %s, want %s", got, want)
	}
	if _, err := cl.Merge(ctx, "k", "d", map[string]int{"n": 3}, client.IdempotencyKey("bad\n")); err == nil {
		t.Fatal("a key with a control character was sent")
	}
}

func TestTokens(t *testing.T) {
	const token = "0123456789abcdef-write-token"
	tokens, err := handlers.ParseTokens(strings.NewReader(token + " write\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := &failing{path: "/docs/t/d", fail: statusAnswer(503)}
	base, _ := startServer(t, withConfig(func(c *handlers.Config) { c.Tokens = tokens }), withWrap(f.wrap))
	ctx := testContext(t)

	if _, err := client.New(base, client.WithToken(token)).Create(ctx, "t", "d", json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	var p *client.Problem
	f.count.Store(0)
	if _, err := client.New(base, fastRetry).Get(ctx, "t", "d"); !errors.As(err, &p) || p.Status != 401 {
		t.Fatalf("without a token: err=%v, want 401", err)
	}
	if got := f.count.Load(); got != 1 {
		t.Fatalf("401 sent %d times, want once", got)
	}

	// The function is asked for every attempt: it can refresh the token.
	var calls atomic.Int32
	refresh := client.WithTokenFunc(func(context.Context) (string, error) {
		if calls.Add(1) == 1 {
			return "expired-expired-expired", nil // the 503 answers before auth
		}
		return token, nil
	})
	f.n.Store(1)
	if _, err := client.New(base, refresh, fastRetry).Get(ctx, "t", "d"); err != nil {
		t.Fatal(err)
	}
	if got := calls.Load(); got != 2 {
		t.Fatalf("token function called %d times, want 2", got)
	}
	// Its error fails the request without sending it.
	boom := errors.New("no token today")
	f.count.Store(0)
	failing := client.WithTokenFunc(func(context.Context) (string, error) { return "", boom })
	if _, err := client.New(base, failing).Get(ctx, "t", "d"); !errors.Is(err, boom) {
		t.Fatalf("err=%v, want the token function's", err)
	}
	if got := f.count.Load(); got != 0 {
		t.Fatalf("%d requests sent without a token", got)
	}
}

func TestRequestHeadersAndQuery(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]*http.Request{}
	base, _ := startServer(t, withWrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen[r.Method] = r.Clone(context.Background())
			mu.Unlock()
			next.ServeHTTP(w, r)
		})
	}))
	cl := client.New(base, client.WithUserAgent("orders-service/2"))
	ctx := testContext(t)
	doc := mustCreate(t, cl, "h", "d", `{"a":1}`)
	if _, err := cl.Patch(ctx, "h", "d", []client.Op{{Op: "remove", Path: "/a"}}, client.IfMatch(strings.Trim(doc.ETag, `"`)), client.Strict(), client.DryRun()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	put, patch := seen[http.MethodPut], seen[http.MethodPatch]
	for name, tc := range map[string]struct{ got, want string }{
		"User-Agent":           {put.UserAgent(), "orders-service/2"},
		"Create If-None-Match": {put.Header.Get("If-None-Match"), "*"},
		"Content-Type PUT":     {put.Header.Get("Content-Type"), "application/json"},
		"Content-Type PATCH":   {patch.Header.Get("Content-Type"), "application/json-patch+json"},
		"If-Match quoted":      {patch.Header.Get("If-Match"), doc.ETag},
		"Prefer":               {patch.Header.Get("Prefer"), "handling=strict"},
		"dryRun":               {patch.URL.Query().Get("dryRun"), "true"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s=%q, want %q", name, tc.got, tc.want)
		}
	}
}

func TestAnswerLostThenPreconditionFailed(t *testing.T) {
	base, _ := startServer(t)
	direct := client.New(base)
	cut := newAnswerCutter(t, strings.TrimPrefix(base, "http://"))
	// other changes the document while the answer of the first attempt
	// is lost: the retry then finds a version it did not write.
	other := func(t *testing.T, id string) func() {
		return func() {
			ctx := testContext(t)
			cur, err := direct.Get(ctx, "unknown", id)
			if errors.Is(err, client.ErrNotFound) {
				_, err = direct.Create(ctx, "unknown", id, map[string]int{"other": 1})
			} else if err == nil {
				_, err = direct.Merge(ctx, "unknown", id, map[string]int{"other": 1}, client.IfMatch(cur.ETag))
			}
			if err != nil {
				t.Errorf("the concurrent write: %v", err)
			}
		}
	}
	tests := []struct {
		name  string
		setup string
		write func(ctx context.Context, cl *client.Client, id, etag string) error
		// want is the sentinel of the answer the retry gets.
		want error
	}{
		{name: "Delete", setup: `{"n":1}`, write: func(ctx context.Context, cl *client.Client, id, etag string) error {
			return cl.Delete(ctx, "unknown", id, client.IfMatch(etag))
		}, want: client.ErrPreconditionFailed},
		{name: "Create", write: func(ctx context.Context, cl *client.Client, id, _ string) error {
			_, err := cl.Create(ctx, "unknown", id, map[string]int{"n": 1})
			return err
		}, want: client.ErrPreconditionFailed},
		{name: "PutStrict", setup: `{"n":1}`, write: func(ctx context.Context, cl *client.Client, id, etag string) error {
			_, err := cl.Put(ctx, "unknown", id, map[string]int{"n": 2}, client.IfMatch(etag), client.Strict())
			return err
		}, want: client.ErrPreconditionFailed},
		{name: "PutNew", write: func(ctx context.Context, cl *client.Client, id, _ string) error {
			_, err := cl.Put(ctx, "unknown", id, map[string]int{"n": 1})
			return err
		}, want: client.ErrPreconditionRequired},
	}
	conns := cutClients(cut)
	for _, conn := range conns {
		for _, tc := range tests {
			t.Run(conn.name+"/"+tc.name, func(t *testing.T) {
				ctx := testContext(t)
				id := conn.name + tc.name
				var etag string
				if tc.setup != "" {
					etag = mustCreate(t, direct, "unknown", id, tc.setup).ETag
				}
				if _, err := conn.cl.List(ctx, "unknown", client.ListOptions{}); err != nil { // a connection to reuse
					t.Fatal(err)
				}
				cut.cutNextAnswerAfter(other(t, id))
				err := tc.write(ctx, conn.cl, id, etag)
				var pe *client.PreconditionError
				if !errors.Is(err, client.ErrOutcomeUnknown) || !errors.Is(err, tc.want) || !errors.As(err, &pe) {
					t.Fatalf("err=%v, want a *PreconditionError (%v) that wraps ErrOutcomeUnknown", err, tc.want)
				}
			})
		}
	}
	// Without a lost answer, the outcome is known: nothing was written.
	doc := mustCreate(t, direct, "unknown", "known", `{"n":1}`)
	if _, err := direct.Merge(testContext(t), "unknown", "known", map[string]int{"n": 2}, client.IfMatch(doc.ETag)); err != nil {
		t.Fatal(err)
	}
	err := direct.Delete(testContext(t), "unknown", "known", client.IfMatch(doc.ETag))
	if !errors.Is(err, client.ErrPreconditionFailed) || errors.Is(err, client.ErrOutcomeUnknown) {
		t.Fatalf("err=%v, want a 412 without ErrOutcomeUnknown", err)
	}
}

// TestCommitUnknownThenPreconditionFailed: a 503 that says the database
// did not confirm the commit leaves the outcome open, as a lost answer
// does: a Delete refused on its retry says so.
func TestCommitUnknownThenPreconditionFailed(t *testing.T) {
	var direct *client.Client
	var first atomic.Bool
	first.Store(true)
	base, _ := startServer(t, withWrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodDelete || !first.CompareAndSwap(true, false) {
				next.ServeHTTP(w, r)
				return
			}
			// The delete commits, someone writes again, and the answer
			// is the one of a commit the database did not confirm.
			next.ServeHTTP(httptest.NewRecorder(), r)
			if _, err := direct.Create(testContext(t), "cu", "d", map[string]int{"again": 1}); err != nil {
				t.Errorf("the concurrent write: %v", err)
			}
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"type":"/problems/unavailable","title":"Service unavailable","status":503,"detail":"the database did not confirm whether this write committed"}`)
		})
	}))
	direct = client.New(base)
	doc := mustCreate(t, direct, "cu", "d", `{"n":1}`)
	err := client.New(base, fastRetry).Delete(testContext(t), "cu", "d", client.IfMatch(doc.ETag))
	var pe *client.PreconditionError
	if !errors.Is(err, client.ErrOutcomeUnknown) || !errors.As(err, &pe) {
		t.Fatalf("err=%v, want a *PreconditionError that wraps ErrOutcomeUnknown", err)
	}
}

// TestUpdateRedoesAfterUnappliedAttempt: a PATCH carries an idempotency
// key, so a retry refused after a lost answer shows the first attempt was
// not applied (the server would have answered as it did): Update reads
// again and runs its function once more, as for any conflict.
func TestUpdateRedoesAfterUnappliedAttempt(t *testing.T) {
	type counter struct {
		N int `json:"n"`
	}
	increment := func(c *counter) error { c.N++; return nil }
	var direct *client.Client
	var first atomic.Bool
	first.Store(true)
	base, _ := startServer(t, withWrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPatch && first.CompareAndSwap(true, false) {
				// Lost on the way (a gateway's 502), while another
				// increment lands.
				if _, err := client.Update(testContext(t), direct, "u", "n", increment); err != nil {
					t.Errorf("the concurrent increment: %v", err)
				}
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			next.ServeHTTP(w, r)
		})
	}))
	direct = client.New(base)
	mustCreate(t, direct, "u", "n", `{"n":0}`)
	if _, err := client.Update(testContext(t), client.New(base, fastRetry), "u", "n", increment); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got := string(mustGet(t, direct, "u", "n").Value); got != `{"n":2}` {
		t.Fatalf("document %s after two increments", got)
	}
}
