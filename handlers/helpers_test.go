package handlers_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/handlers"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// server is a real patchd over a bbolt file, on loopback.
type server struct {
	*httptest.Server
	store *bolt.Store
	path  string
	pg    *replicas // set when serving over PostgreSQL replicas (replicas_test.go)
}

// config is a test server's configuration: the HTTP layer's and the
// document service's.
type config struct {
	http handlers.Config
	doc  document.Config
}

// newConfig returns the defaults changed by opts.
func newConfig(opts ...func(*config)) config {
	cfg := config{http: handlers.DefaultConfig(), doc: document.DefaultConfig()}
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

// newHandler wires st to a handler, as the binary does.
func newHandler(st store.Store, cfg config) *handlers.Handler {
	if ps, ok := st.(store.PresenceStore); ok && cfg.http.Presence == nil {
		cfg.http.Presence = ps.Presence(handlers.DefaultPresenceLimits)
	}
	return handlers.New(document.New(st, cfg.doc), cfg.http)
}

// startServer serves a fresh bbolt file with the default configuration,
// changed by opts.
func startServer(t *testing.T, opts ...func(*config)) *server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "patchd.db")
	if dsn := replicaDatabase(t); dsn != "" {
		path = dsn
	}
	return startServerAt(t, path, store.Options{}, opts...)
}

func startServerAt(t *testing.T, path string, bopts store.Options, opts ...func(*config)) *server {
	t.Helper()
	if store.Scheme(path) != store.PathScheme {
		return startReplicas(t, path, bopts, opts...)
	}
	st, err := bolt.Open(path, bopts)
	if err != nil {
		t.Fatal(err)
	}
	cfg := newConfig(opts...)
	cfg.http.Backup = st
	s := &server{Server: httptest.NewServer(newHandler(st, cfg).Echo()), store: st, path: path}
	t.Cleanup(s.stop)
	return s
}

// stop closes the server and the store; it may be called more than once.
func (s *server) stop() {
	if s.pg != nil {
		s.pg.stop()
		return
	}
	if s.store == nil {
		return
	}
	s.Close()
	if err := s.store.Check(context.Background()); err != nil {
		panic("bbolt check: " + err.Error())
	}
	s.store.Close()
	s.store = nil
}

// response is a read answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// problem decodes a problem+json body.
func (r response) problem(t *testing.T) map[string]any {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type=%q, want application/problem+json (status %d, body %s)", ct, r.status, r.body)
	}
	var p map[string]any
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %s: %v", r.body, err)
	}
	for _, k := range []string{"type", "title", "status", "detail"} {
		if _, ok := p[k]; !ok {
			t.Fatalf("problem body %s lacks %q", r.body, k)
		}
	}
	return p
}

// hdr is a request header list: name, value, name, value...
type hdr []string

func (s *server) do(t *testing.T, method, path string, h hdr, body string) response {
	t.Helper()
	return s.doWith(t, nil, method, path, h, body)
}

// doWith is do with client cl (nil: the server's own).
func (s *server) doWith(t *testing.T, cl *http.Client, method, path string, h hdr, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	target := s.Server
	if s.pg != nil {
		target = s.pg.next() // requests spread over the replicas in turn
	}
	if cl == nil {
		cl = target.Client()
	}
	req, err := http.NewRequest(method, target.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Add(h[i], h[i+1])
	}
	res, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// slowClient is another client than the tests' own requests (127.0.0.1):
// the per-client bounds (bodies' share of the decode budget, pages and
// batches in progress) count it apart.
var slowClient = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}

// fromClient is an HTTP client whose connections come from addr.
func fromClient(addr *net.TCPAddr) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: addr}).DialContext}}
}

// expect fails unless r has the status and, for errors, the problem type.
func expect(t *testing.T, r response, status int, problemName string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status=%d, want %d (body %s)", r.status, status, r.body)
	}
	if problemName != "" {
		if got, want := r.problem(t)["type"], "/problems/"+problemName; got != want {
			t.Fatalf("type=%v, want %s (body %s)", got, want, r.body)
		}
	}
}

const (
	ctJSON  = "application/json"
	ctPatch = "application/json-patch+json"
	ctMerge = "application/merge-patch+json"
)

// create PUTs a new document and returns its ETag.
func (s *server) create(t *testing.T, path, body string) string {
	t.Helper()
	r := s.do(t, "PUT", path, hdr{"Content-Type", ctJSON}, body)
	expect(t, r, http.StatusCreated, "")
	return r.header.Get("ETag")
}
