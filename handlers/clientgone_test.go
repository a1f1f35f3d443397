package handlers_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
)

// waitingStore holds every Update until its context ends, then fails with
// the context's error, as a store does when the client goes away.
type waitingStore struct {
	store.Store
	entered chan struct{}
}

func (s waitingStore) Update(ctx context.Context, c, id string, fn store.UpdateFunc) (*store.Document, error) {
	s.entered <- struct{}{}
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestClientGoneIsNoInternalError: a write whose client disconnects is not
// logged as an internal error, nor as any 500 or error-level line, and the
// metrics count it as 499 (client closed request), not 500.
func TestClientGoneIsNoInternalError(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	entered := make(chan struct{}, 1)
	s := startServerWith(t, func(b store.Store) store.Store { return waitingStore{Store: b, entered: entered} }, nil,
		func(c *config) {
			c.http.Logger, c.doc.Logger = logger, logger
			// The request goes on this long after its client's end of
			// stream, in case the client only half-closed.
			c.http.HalfCloseGrace = 50 * time.Millisecond
		})
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "PUT", s.URL+"/docs/c/d", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctJSON)
	done := make(chan error, 1)
	go func() {
		res, err := s.Client().Do(req)
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	<-entered
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the cancelled request got an answer")
	}
	// The handler ends once the store returns: wait for its request line,
	// written after its metrics.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		logged := strings.Contains(logs.String(), `"msg":"request"`)
		mu.Unlock()
		if logged {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no request line within 10s")
		}
	}
	mu.Lock()
	text := logs.String()
	mu.Unlock()
	if !strings.Contains(text, `"msg":"client gone"`) {
		t.Fatalf("no client-gone line in the log:\n%s", text)
	}
	for _, bad := range []string{`"msg":"internal error"`, `"level":"ERROR"`, `"status":500`, `"problem":"internal"`} {
		if strings.Contains(text, bad) {
			t.Fatalf("a client that went away was logged with %s:\n%s", bad, text)
		}
	}
	if !strings.Contains(text, `"status":499`) {
		t.Fatalf("no request line with status 499:\n%s", text)
	}
	f := s.scrape(t)
	mustValue(t, f, 1, "patchd_http_requests_total", "route", "/docs/:c/:id", "method", "PUT", "status", "499")
	if _, ok := value(f, "patchd_http_requests_total", "route", "/docs/:c/:id", "method", "PUT", "status", "500"); ok {
		t.Fatal("the metrics count a 500 for a client that went away")
	}
}
