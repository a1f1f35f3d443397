package client_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/client"
)

// requestTimes records when a fake server got each request.
type requestTimes struct {
	mu    sync.Mutex
	times []time.Time
	more  chan struct{} // a value after each request
}

func newRequestTimes() *requestTimes { return &requestTimes{more: make(chan struct{}, 1000)} }

// add records a request and returns how many came before it.
func (r *requestTimes) add() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.times = append(r.times, time.Now())
	select {
	case r.more <- struct{}{}:
	default:
	}
	return len(r.times) - 1
}

// wait waits for n requests, and returns the gaps between them.
func (r *requestTimes) wait(t *testing.T, n int) []time.Duration {
	t.Helper()
	timer := time.NewTimer(eventWait)
	defer timer.Stop()
	for {
		r.mu.Lock()
		if len(r.times) >= n {
			gaps := make([]time.Duration, n-1)
			for i := range gaps {
				gaps[i] = r.times[i+1].Sub(r.times[i])
			}
			r.mu.Unlock()
			return gaps
		}
		r.mu.Unlock()
		select {
		case <-r.more:
		case <-timer.C:
			t.Fatalf("fewer than %d requests within %v", n, eventWait)
		}
	}
}

func TestRetryAfterCapped(t *testing.T) {
	for _, after := range []string{"4294967295", "Fri, 01 Jan 2100 00:00:00 GMT"} {
		t.Run(after, func(t *testing.T) {
			times := newRequestTimes()
			url, _ := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
				if times.add() == 0 {
					w.Header().Set("Retry-After", after)
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.Header().Set("ETag", `"abc"`)
				fmt.Fprint(w, `{"a":1}`)
			})
			cl := client.New(url, client.WithRetry(client.RetryPolicy{BaseDelay: time.Millisecond, MaxRetryAfter: 50 * time.Millisecond}))
			// No deadline: only the cap ends the wait.
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := cl.Get(ctx, "c", "d")
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(eventWait):
				t.Fatalf("Get still waiting after %v: Retry-After %s not capped", eventWait, after)
			}
		})
	}
}

func TestWatchRetryAfterCapped(t *testing.T) {
	times := newRequestTimes()
	url, _ := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		if times.add() == 0 {
			w.Header().Set("Retry-After", "4294967295")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "retry: 2000\n\nevent: ready\ndata: {\"cursors\":[\"AA\"]}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	cl := client.New(url, client.WithRetry(client.RetryPolicy{BaseDelay: time.Millisecond, MaxRetryAfter: 50 * time.Millisecond}))
	ch := cl.Watch(testContext(t), client.Subscriptions{Collections: []client.CollectionSubscription{{Collection: "c"}}, Ready: true})
	if ev := next(t, ch); ev.Type != client.EventReady {
		t.Fatalf("event %+v, want ready", ev)
	}
}

func TestWatchReconnectBackoff(t *testing.T) {
	const base = 20 * time.Millisecond
	tests := []struct {
		name   string
		stream string
		// floors are the least gaps between the first connections.
		floors []time.Duration
	}{
		// A stream that works, then ends: the server's retry, but never
		// sooner than BaseDelay.
		{name: "EndsAfterReady", stream: "retry: 1\n\nevent: ready\ndata: {\"cursors\":[\"AA\"]}\n\n",
			floors: []time.Duration{base, base, base, base, base}},
		// A stream that fails (a malformed event) again and again: the
		// delay grows as the policy says.
		{name: "BadEvent", stream: "retry: 1\n\nevent: ready\ndata: {\"cursors\":[\"AA\"]}\n\nevent: change\ndata: garbage\n\n",
			floors: []time.Duration{base, base, 2 * base, 4 * base, 8 * base}},
		// A stream that ends before any event counts as a failure too.
		{name: "NoEvent", stream: "retry: 1\n\n",
			floors: []time.Duration{base, base, 2 * base, 4 * base, 8 * base}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			times := newRequestTimes()
			url, _ := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
				times.add()
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprint(w, tc.stream)
			})
			cl := client.New(url, client.WithRetry(client.RetryPolicy{BaseDelay: base, MaxDelay: time.Second}))
			ctx, cancel := context.WithCancel(testContext(t))
			defer cancel()
			ch := cl.Watch(ctx, client.Subscriptions{Collections: []client.CollectionSubscription{{Collection: "c"}}})
			go func() {
				for range ch {
				}
			}()
			gaps := times.wait(t, len(tc.floors)+1)
			for i, g := range gaps {
				if g < tc.floors[i] {
					t.Fatalf("reconnection %d after %v, want at least %v (gaps %v)", i+1, g, tc.floors[i], gaps)
				}
			}
		})
	}
}
