package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
	"github.com/patchd/patchd/store/storetest"
)

func TestParseFlags(t *testing.T) {
	t.Run("Defaults", func(t *testing.T) {
		cfg, err := parseFlags(nil, noEnv, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		want := serveConfig{addr: "127.0.0.1:8080", db: "./patchd.db", requireIfMatch: true, maxBody: 1 << 20, maxDoc: 1 << 20,
			maxDepth: 64, maxOps: 1000, historyVersions: 1000, maxRebaseOps: 10000, maxRebaseWork: 1000000, historyAge: 24 * time.Hour, shutdownTimeout: 10 * time.Second,
			logFormat: "auto", logLevel: "info", ui: true,
			idempotencyTTL: 24 * time.Hour, dbTimeout: 5 * time.Second, idempotencyLimit: 100_000,
			readHeaderTimeout: 5 * time.Second, readTimeout: 30 * time.Second, writeTimeout: 30 * time.Second,
			idleTimeout: 2 * time.Minute, maxHeaderBytes: 64 << 10, maxBatch: 100, maxPagesPerClient: 8, maxBatchesPerClient: 2,
			maxStreams: 10000, maxStreamsPerClient: 64, maxConnsPerClient: 256, maxSubscriptions: 1000, presenceTTL: 30 * time.Second}
		if cfg != want {
			t.Fatalf("cfg=%+v, want %+v", cfg, want)
		}
	})
	t.Run("FlagsAndServe", func(t *testing.T) {
		cfg, err := parseFlags([]string{"serve", "--addr", ":9", "--require-if-match=false", "--max-body", "64KiB", "--history-age", "1h", "--max-batch", "7",
			"--max-pages-per-client", "9", "--max-batches-per-client", "3"}, noEnv, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.addr != ":9" || cfg.requireIfMatch || cfg.maxBody != 64<<10 || cfg.historyAge != time.Hour || cfg.maxBatch != 7 ||
			cfg.maxPagesPerClient != 9 || cfg.maxBatchesPerClient != 3 {
			t.Fatalf("cfg=%+v", cfg)
		}
	})
	t.Run("BoolWithValue", func(t *testing.T) {
		// API.md writes the boolean flags --require-if-match BOOL and
		// --ui BOOL: the value may follow as the next argument.
		cfg, err := parseFlags([]string{"serve", "--require-if-match", "false", "--ui", "false", "--addr", ":9"}, noEnv, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.requireIfMatch || cfg.ui || cfg.addr != ":9" {
			t.Fatalf("cfg=%+v", cfg)
		}
		cfg, err = parseFlags([]string{"-ui", "true", "--require-if-match"}, noEnv, io.Discard)
		if err != nil || !cfg.ui || !cfg.requireIfMatch {
			t.Fatalf("cfg=%+v, %v", cfg, err)
		}
		// A word that is no boolean after a boolean flag stays an argument.
		if _, err := parseFlags([]string{"--ui", "stray"}, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), `unexpected argument "stray"`) {
			t.Fatalf("--ui stray: %v", err)
		}
	})
	t.Run("Environment", func(t *testing.T) {
		env := map[string]string{"PATCHD_MAX_OPS": "7", "PATCHD_DB": "/x.db", "PATCHD_REQUIRE_IF_MATCH": "false"}
		cfg, err := parseFlags(nil, func(k string) string { return env[k] }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.maxOps != 7 || cfg.db != "/x.db" || cfg.requireIfMatch {
			t.Fatalf("cfg=%+v", cfg)
		}
		// A flag beats its variable.
		cfg, err = parseFlags([]string{"--max-ops=9"}, func(k string) string { return env[k] }, io.Discard)
		if err != nil || cfg.maxOps != 9 {
			t.Fatalf("cfg=%+v, %v", cfg, err)
		}
		// Even a variable that does not parse: the flag wins, and only a
		// variable no flag overrides is an error.
		env["PATCHD_MAX_BODY"] = "abc"
		cfg, err = parseFlags([]string{"--max-body", "2MiB"}, func(k string) string { return env[k] }, io.Discard)
		if err != nil || cfg.maxBody != 2<<20 {
			t.Fatalf("an invalid variable overridden by its flag: cfg=%+v, %v", cfg, err)
		}
		if _, err := parseFlags(nil, func(k string) string { return env[k] }, io.Discard); err == nil || !strings.Contains(err.Error(), "PATCHD_MAX_BODY") {
			t.Fatalf("an invalid variable: %v", err)
		}
	})
	t.Run("LargeMaxSubscriptions", func(t *testing.T) {
		// The bounds on what all streams follow default to at least it.
		if cfg, err := parseFlags([]string{"--max-subscriptions", "300000"}, noEnv, io.Discard); err != nil || cfg.maxSubscriptions != 300000 {
			t.Fatalf("--max-subscriptions 300000: %+v %v", cfg, err)
		}
	})
	t.Run("Errors", func(t *testing.T) {
		for _, args := range [][]string{{"--nope"}, {"--max-body", "lots"}, {"--max-depth", "0"}, {"--max-depth", "1001"}, {"stray"}, {"--max-batch", "0"}, {"--max-batch", "10001"},
			{"--db-timeout", "0"}, {"--db-timeout", "5ms"}, {"--idempotency-max-per-client", "0"},
			{"--max-streams", "0"}, {"--max-streams-per-client", "-1"}, {"--max-subscriptions", "0"}, {"--max-conns-per-client", "0"},
			{"--max-subscriptions-per-client", "999"}, {"--max-subscriptions-per-client", "-1"}, {"--max-subscriptions-total", "999"}, {"--max-subscriptions-total", "-1"},
			{"--max-subscriptions-per-client", "5000", "--max-subscriptions-total", "4000"},
			{"--tls-cert", "cert.pem"}, {"--tls-key", "key.pem"}, {"--presence-ttl", "500ms"}, {"--presence-ttl", "25h"}, {"--shutdown-timeout", "-1s"}} {
			var usage strings.Builder
			if _, err := parseFlags(args, noEnv, &usage); err == nil {
				t.Errorf("%v: no error", args)
			}
		}
		var usage strings.Builder
		_, err := parseFlags([]string{"--nope"}, noEnv, &usage)
		if err == nil || !strings.Contains(usage.String(), "-max-body") {
			t.Fatalf("unknown flag: err=%v, usage %q", err, usage.String())
		}
		if _, err := parseFlags([]string{"--help"}, noEnv, io.Discard); !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("--help: %v", err)
		}
	})
}

// TestRun starts the server in-process, writes, stops it, starts it again on
// the same file and reads the write back.
func TestRun(t *testing.T) {
	db := filepath.Join(t.TempDir(), "p.db")
	serve := func(t *testing.T, f func(base string)) {
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan string, 1)
		done := make(chan error, 1)
		go func() { done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--db", db}, noEnv, io.Discard, ready) }()
		select {
		case addr := <-ready:
			f("http://" + addr)
		case err := <-done:
			t.Fatalf("run: %v", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("run: %v", err)
		}
	}
	serve(t, func(base string) {
		res, err := http.Get(base + "/healthz")
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("healthz: %v %v", res, err)
		}
		res.Body.Close()
		req, _ := http.NewRequest("PUT", base+"/docs/c/d", strings.NewReader(`{"a":1}`))
		req.Header.Set("Content-Type", "application/json")
		res, err = http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != 201 {
			t.Fatalf("PUT: %v %v", res, err)
		}
		res.Body.Close()
		// The HTTP/2 preface in clear never reaches the API (handlers.HTTP1Only).
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		res, err = http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || res.StatusCode != http.StatusHTTPVersionNotSupported {
			t.Fatalf("the HTTP/2 preface: %v %v", res, err)
		}
		res.Body.Close()
	})
	serve(t, func(base string) {
		res, err := http.Get(base + "/docs/c/d")
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("GET after restart: %v %v", res, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(b) != `{"a":1}` {
			t.Fatalf("body %s", b)
		}
	})
}

// TestMaxBatch: --max-batch reaches the server.
func TestMaxBatch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--db", filepath.Join(t.TempDir(), "p.db"), "--max-batch", "2"}, noEnv, io.Discard, ready)
	}()
	var base string
	select {
	case addr := <-ready:
		base = "http://" + addr
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	batch := func(n int) int {
		w := strings.TrimSuffix(strings.Repeat(`{"method":"POST","path":"/docs/c","body":{}},`, n), ",")
		res, err := http.Post(base+"/batch", "application/json", strings.NewReader(`{"writes":[`+w+`]}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := batch(2); got != http.StatusOK {
		t.Fatalf("a batch of 2: %d", got)
	}
	if got := batch(3); got != http.StatusBadRequest {
		t.Fatalf("a batch of 3 with --max-batch 2: %d", got)
	}
}

// TestRunRefusedForItsLog: a start refused for the database's write-ahead
// log (here one without a valid checkpoint) says what to do with the log,
// not that patchd check lists damage in the file, which is sound.
func TestRunRefusedForItsLog(t *testing.T) {
	db := filepath.Join(t.TempDir(), "p.db")
	st, err := bolt.Open(db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	storetest.Commit(t, st, "c", "d", &store.Change{Body: []byte(`{"a":1}`), Kind: store.KindPut})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db+"-wal", make([]byte, 1<<16), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = run(ctx, []string{"--addr", "127.0.0.1:0", "--db", db}, noEnv, io.Discard, make(chan string, 1))
	if !errors.Is(err, bolt.ErrWALRefused) || !strings.Contains(err.Error(), "move the log away") || strings.Contains(err.Error(), "patchd check") {
		t.Fatalf("start with a damaged log: %v", err)
	}
}

// TestConnectionsPerClient: --max-conns-per-client bounds the connections
// of one address. Busy ones (here change feed streams) hold their places,
// and one more connection is answered 503 with Retry-After; idle
// keep-alive ones give their places to new connections.
func TestConnectionsPerClient(t *testing.T) {
	base, _ := serveFor(t, filepath.Join(t.TempDir(), "p.db"), "--max-conns-per-client", "2")
	addr := strings.TrimPrefix(base, "http://")
	send := func(c net.Conn, br *bufio.Reader, req string) (*http.Response, string) {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q: %v", req, err)
		}
		if res.Header.Get("Content-Type") == "text/event-stream" {
			return res, ""
		}
		body, _ := io.ReadAll(res.Body)
		return res, string(body)
	}
	dial := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	c, br := dial()
	if res, body := send(c, br, "PUT /docs/c/d HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"); res.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d %s", res.StatusCode, body)
	}
	// onNew sends req on a new connection, again while the answer is 503:
	// the server marks a connection idle just after its answer, so the
	// previous one may not be idle yet when the next arrives.
	onNew := func(req string) (net.Conn, *http.Response, string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, br := dial()
			res, body := send(c, br, req)
			if res.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
				return c, res, body
			}
			c.Close()
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Five more connections, one after the other, each kept open and idle:
	// each takes the place of the oldest idle one.
	for i := range 5 {
		if _, res, body := onNew("GET /docs/c/d HTTP/1.1\r\nHost: x\r\n\r\n"); res.StatusCode != http.StatusOK {
			t.Fatalf("connection %d: %d %s", i, res.StatusCode, body)
		}
	}
	// Two streams hold both places.
	var streams []net.Conn
	for range 2 {
		c, res, body := onNew("GET /docs/c/d/events HTTP/1.1\r\nHost: x\r\n\r\n")
		if res.StatusCode != http.StatusOK {
			t.Fatalf("stream: %d %s", res.StatusCode, body)
		}
		streams = append(streams, c)
	}
	c, br = dial()
	res, body := send(c, br, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || !strings.Contains(body, "overloaded") {
		t.Fatalf("a third busy connection: %d %v %s, want 503 with Retry-After", res.StatusCode, res.Header, body)
	}
	// A stream ends: its place is free again.
	streams[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, br := dial()
		res, body := send(c, br, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if res.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a stream ended: %d %s", res.StatusCode, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
