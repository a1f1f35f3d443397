package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchd/patchd/client"
)

// fakeServer serves handler on loopback, counting its requests: a server
// that misbehaves on purpose, to check what the client does with faults
// a real patchd never makes.
func fakeServer(t *testing.T, handler http.HandlerFunc) (url string, count *atomic.Int32) {
	t.Helper()
	count = new(atomic.Int32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, count
}

// longBody writes n bytes of JSON-looking filler, or less if the client
// goes away.
func longBody(w http.ResponseWriter, n int) {
	chunk := []byte(strings.Repeat(" ", 32<<10))
	for sent := 0; sent < n; sent += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

func TestAnswerBodyBounded(t *testing.T) {
	for _, status := range []int{http.StatusOK, http.StatusNotFound, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			url, count := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("ETag", `"abc"`)
				w.WriteHeader(status)
				longBody(w, 16<<20)
			})
			cl := client.New(url, fastRetry, client.WithMaxResponse(1<<20))
			doc, err := cl.Get(testContext(t), "c", "d")
			if !errors.Is(err, client.ErrResponseTooLarge) {
				var size int
				if doc != nil {
					size = len(doc.Value)
				}
				t.Fatalf("Get: %d-byte value, err=%v; want ErrResponseTooLarge", size, err)
			}
			if n := count.Load(); n != 1 {
				t.Fatalf("%d requests: a too large answer was retried", n)
			}
		})
	}
	// A Content-Length over the bound fails before the body is read.
	url, _ := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "2000000")
		w.WriteHeader(http.StatusOK)
	})
	if _, err := client.New(url, client.WithMaxResponse(1<<20)).Get(testContext(t), "c", "d"); !errors.Is(err, client.ErrResponseTooLarge) {
		t.Fatalf("Content-Length over the bound: err=%v, want ErrResponseTooLarge", err)
	}
}

func TestAnswerBodyEndsAtDeadline(t *testing.T) {
	// A body that trickles and never ends.
	url, _ := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				if _, err := w.Write([]byte(" ")); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}
	})
	ctx, cancel := context.WithTimeout(testContext(t), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := client.New(url).Get(ctx, "c", "d")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err=%v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("returned %v after a 200ms deadline", d)
	}
}

func TestWatchErrorAnswerBounded(t *testing.T) {
	url, count := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		longBody(w, 16<<20)
	})
	cl := client.New(url, fastRetry, client.WithMaxResponse(1<<20))
	ch := cl.Watch(testContext(t), client.Subscriptions{Collections: []client.CollectionSubscription{{Collection: "c"}}})
	if ev := next(t, ch); ev.Type != client.EventError || !errors.Is(ev.Err, client.ErrResponseTooLarge) {
		t.Fatalf("event %+v, want an error wrapping ErrResponseTooLarge", ev)
	}
	closed(t, ch)
	if n := count.Load(); n != 1 {
		t.Fatalf("%d requests: a too large answer was retried", n)
	}
}
