package handlers_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

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
// logged as an internal error.
func TestClientGoneIsNoInternalError(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	entered := make(chan struct{}, 1)
	s := startServerWith(t, func(b store.Store) store.Store { return waitingStore{Store: b, entered: entered} }, nil,
		func(c *config) { c.http.Logger, c.doc.Logger = logger, logger })
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
	s.Close() // waits for the handler to finish, so its log lines are written
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), `"msg":"client gone"`) {
		t.Fatalf("no client-gone line in the log:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), `"msg":"internal error"`) {
		t.Fatalf("a client that went away was logged as an internal error:\n%s", logs.String())
	}
}
