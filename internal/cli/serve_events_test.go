package cli

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestShutdownEndsStreams: a graceful shutdown ends open change feed
// streams instead of waiting for them until --shutdown-timeout.
func TestShutdownEndsStreams(t *testing.T) {
	db := filepath.Join(t.TempDir(), "p.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--db", db, "--shutdown-timeout", "60s"}, noEnv, io.Discard, ready)
	}()
	var base string
	select {
	case addr := <-ready:
		base = "http://" + addr
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	req, _ := http.NewRequest("PUT", base+"/docs/c/d", strings.NewReader(`{"a":1}`))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 201 {
		t.Fatalf("PUT: %v %v", res, err)
	}
	res.Body.Close()
	res, err = http.Get(base + "/docs/c/d/events")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("events: %v %v", res, err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	for { // read up to the snapshot event
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "event: snapshot") {
			break
		}
	}
	start := time.Now()
	cancel()
	// A shutdown that waited for the stream would hit its 60s deadline and
	// fail; the test's own deadline stops it long before.
	if err := <-done; err != nil {
		t.Fatalf("run after %v: %v", time.Since(start), err)
	}
	if _, err := io.ReadAll(br); err != nil {
		t.Fatalf("stream after shutdown: %v", err)
	}
}

// TestUIFlag: the demo is served at / by default and not with --ui=false.
func TestUIFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{{nil, 200}, {[]string{"--ui=false"}, 404}} {
		db := filepath.Join(t.TempDir(), "p.db")
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan string, 1)
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, append([]string{"--addr", "127.0.0.1:0", "--db", db}, tc.args...), noEnv, io.Discard, ready)
		}()
		select {
		case addr := <-ready:
			for _, path := range []string{"/", "/ui/app.js", "/ui/client/patchd.js"} {
				res, err := http.Get("http://" + addr + path)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode != tc.want {
					t.Errorf("%v GET %s: %d, want %d", tc.args, path, res.StatusCode, tc.want)
				}
			}
		case err := <-done:
			t.Fatalf("run: %v", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
