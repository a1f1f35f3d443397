package client_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/handlers"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// This file is the one place where the tests build a patchd server: the
// server's constructors change, and only serve needs to follow them.

// serverOptions change the test server.
type serverOptions struct {
	// config changes the handlers' configuration.
	config func(*handlers.Config)
	// bolt changes the store's options.
	bolt func(*store.Options)
	// document changes the document service's configuration.
	document func(*document.Config)
	// wrap wraps the server's handler, to watch or disturb requests.
	wrap func(http.Handler) http.Handler
}

// serverOption is an option of startServer.
type serverOption func(*serverOptions)

// withConfig changes the handlers' configuration.
func withConfig(f func(*handlers.Config)) serverOption {
	return func(o *serverOptions) { o.config = f }
}

// withBolt changes the store's options.
func withBolt(f func(*store.Options)) serverOption {
	return func(o *serverOptions) { o.bolt = f }
}

// withDocument changes the document service's configuration.
func withDocument(f func(*document.Config)) serverOption {
	return func(o *serverOptions) { o.document = f }
}

// withWrap wraps the server's handler.
func withWrap(f func(http.Handler) http.Handler) serverOption {
	return func(o *serverOptions) { o.wrap = f }
}

// testServer is a real patchd, the handlers over a bbolt file, on loopback.
type testServer struct {
	path string
	addr string
	opts serverOptions

	srv *httptest.Server
	h   *handlers.Handler
	st  *bolt.Store
}

// serve opens the store at s.path and serves it on addr ("127.0.0.1:0"
// for a free port); s.addr becomes the address it listens on.
func (s *testServer) serve(addr string) error {
	sopts := store.Options{}
	if s.opts.bolt != nil {
		s.opts.bolt(&sopts)
	}
	st, err := bolt.Open(s.path, sopts)
	if err != nil {
		return err
	}
	cfg := handlers.DefaultConfig()
	cfg.UI = false
	cfg.Events.Retry = 20 * time.Millisecond // reconnect soon after a restart
	if s.opts.config != nil {
		s.opts.config(&cfg)
	}
	dcfg := document.DefaultConfig()
	if s.opts.document != nil {
		s.opts.document(&dcfg)
	}
	h := handlers.New(document.New(st, dcfg), cfg)
	var handler http.Handler = h.Echo()
	if s.opts.wrap != nil {
		handler = s.opts.wrap(handler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		st.Close()
		return err
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	s.srv, s.h, s.st, s.addr = srv, h, st, ln.Addr().String()
	return nil
}

// stop ends the change feed streams, closes the server, checks the bbolt
// file and closes it. It may be called more than once.
func (s *testServer) stop() error {
	if s.srv == nil {
		return nil
	}
	s.h.CloseStreams()
	s.srv.Close()
	err := s.st.Check(context.Background())
	if cerr := s.st.Close(); err == nil {
		err = cerr
	}
	s.srv, s.h, s.st = nil, nil, nil
	return err
}

// startServer serves a fresh bbolt file in t.TempDir() and returns its
// URL, and a function that restarts it: it stops the server and closes the
// store, then reopens the same file and serves it on the same address.
// The server stops when the test ends.
func startServer(t *testing.T, opts ...serverOption) (url string, restart func()) {
	t.Helper()
	s := &testServer{path: filepath.Join(t.TempDir(), "patchd.db")}
	for _, o := range opts {
		o(&s.opts)
	}
	if err := s.serve("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Error(err)
		}
	})
	return "http://" + s.addr, func() {
		t.Helper()
		if err := s.stop(); err != nil {
			t.Fatal(err)
		}
		if err := s.serve(s.addr); err != nil {
			t.Fatal(err)
		}
	}
}

// exampleServer is startServer for the examples, which have no
// *testing.T: it panics on errors, and Close removes its directory.
type exampleServer struct {
	URL string
	s   *testServer
	dir string
}

func newExampleServer() *exampleServer {
	dir, err := os.MkdirTemp("", "patchd-example-")
	if err != nil {
		panic(err)
	}
	s := &testServer{path: filepath.Join(dir, "patchd.db")}
	if err := s.serve("127.0.0.1:0"); err != nil {
		panic(err)
	}
	return &exampleServer{URL: "http://" + s.addr, s: s, dir: dir}
}

// Close stops the server and removes its files.
func (e *exampleServer) Close() {
	err := e.s.stop()
	if rerr := os.RemoveAll(e.dir); err == nil {
		err = rerr
	}
	if err != nil {
		panic(err)
	}
}
