package cli

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// syncBuffer is a log sink safe for the server goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveOnce runs the server with args until f returns, and returns its
// log.
func serveOnce(t *testing.T, args []string, f func(base string)) string {
	t.Helper()
	var log syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, noEnv, &log, ready) }()
	select {
	case addr := <-ready:
		f("http://" + addr)
	case err := <-done:
		cancel()
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	return log.String()
}

func TestLoopbackWithoutTokens(t *testing.T) {
	db := filepath.Join(t.TempDir(), "p.db")
	t.Run("Refused", func(t *testing.T) {
		// The wildcard address would accept connections from anywhere.
		for _, addr := range []string{"0.0.0.0:0", ":0"} {
			err := run(context.Background(), []string{"--addr", addr, "--db", db}, noEnv, io.Discard, nil)
			if !errors.Is(err, errInsecure) {
				t.Fatalf("--addr %s without --tokens: %v, want errInsecure", addr, err)
			}
			if !strings.Contains(err.Error(), "--insecure-no-auth") {
				t.Fatalf("the error does not name the flag that overrides it: %v", err)
			}
		}
	})
	t.Run("LoopbackSaysSo", func(t *testing.T) {
		log := serveOnce(t, []string{"--addr", "127.0.0.1:0", "--db", db}, func(string) {})
		if !strings.Contains(log, "loopback address only") {
			t.Fatalf("the log does not say authentication is off: %s", log)
		}
	})
}

func TestTokensFlag(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "p.db")
	const secret = "flag-test-token-0123456789"
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(secret+" write\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := serveOnce(t, []string{"--addr", "127.0.0.1:0", "--db", db, "--tokens", tokens, "--rate", "1000", "--cors-origins", "https://a.example"}, func(base string) {
		res, err := http.Get(base + "/docs/c/d")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("no token: %d, want 401", res.StatusCode)
		}
		req, _ := http.NewRequest("GET", base+"/docs/c/d", nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		res, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Fatalf("with the token: %d, want 404", res.StatusCode)
		}
	})
	if strings.Contains(log, secret) || !strings.Contains(log, "authentication on") {
		t.Fatalf("log: %s", log)
	}

	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte(secret+" superuser\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"--addr", "127.0.0.1:0", "--db", db, "--tokens", bad}, noEnv, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "line 1") || strings.Contains(err.Error(), secret) {
		t.Fatalf("bad tokens file: %v", err)
	}
}
