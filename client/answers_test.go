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
	"github.com/patchd/patchd/document"
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

func TestDocumentAnswerChecked(t *testing.T) {
	tests := []struct {
		name   string
		status int
		etag   string
		body   string
		// want is in the error: what the server sent.
		want string
		// only names the one call to try; "": all.
		only string
	}{
		{name: "NoETag", status: 200, body: `{"a":1}`, want: `ETag ""`},
		{name: "WeakETag", status: 200, etag: `W/"abc"`, body: `{"a":1}`, want: `ETag "W/\"abc\""`},
		{name: "UnquotedETag", status: 200, etag: `abc`, body: `{"a":1}`, want: `ETag "abc"`},
		{name: "NotJSON", status: 200, etag: `"abc"`, body: `{"a":`, want: `not a JSON object`},
		{name: "Array", status: 200, etag: `"abc"`, body: `[1]`, want: `not a JSON object`},
		{name: "Empty", status: 200, etag: `"abc"`, body: ``, want: `not a JSON object`},
		{name: "CreatedNoETag", status: 201, body: `{"a":1}`, want: `ETag ""`, only: "Put"},
	}
	writes := map[string]func(ctx context.Context, cl *client.Client) (*client.Document, error){
		"Get": func(ctx context.Context, cl *client.Client) (*client.Document, error) { return cl.Get(ctx, "c", "d") },
		"Put": func(ctx context.Context, cl *client.Client) (*client.Document, error) {
			return cl.Put(ctx, "c", "d", map[string]int{"a": 1}, client.IfMatch(`"x"`))
		},
		"Patch": func(ctx context.Context, cl *client.Client) (*client.Document, error) {
			return cl.Patch(ctx, "c", "d", []client.Op{{Op: "remove", Path: "/a"}}, client.IfMatch(`"x"`))
		},
		"Merge": func(ctx context.Context, cl *client.Client) (*client.Document, error) {
			return cl.Merge(ctx, "c", "d", map[string]any{"a": nil}, client.IfMatch(`"x"`))
		},
	}
	for _, tc := range tests {
		for name, call := range writes {
			if tc.only != "" && tc.only != name {
				continue
			}
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				url, _ := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
					if tc.etag != "" {
						w.Header().Set("ETag", tc.etag)
					}
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(tc.status)
					_, _ = w.Write([]byte(tc.body))
				})
				doc, err := call(testContext(t), client.New(url))
				if !errors.Is(err, client.ErrInvalidResponse) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("%s: %+v, err=%v; want ErrInvalidResponse saying %s", name, doc, err, tc.want)
				}
			})
		}
	}
}

func TestIfMatchEmptyRefused(t *testing.T) {
	var sent atomic.Int32
	url, _ := startServer(t, withDocument(func(c *document.Config) { c.RequireIfMatch = false }),
		withWrap(func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet {
					sent.Add(1)
				}
				next.ServeHTTP(w, r)
			})
		}))
	cl := client.New(url)
	ctx := testContext(t)
	mustCreate(t, cl, "c", "d", `{"a":1}`)
	sent.Store(0)
	writes := map[string]func() error{
		"Put": func() error {
			_, err := cl.Put(ctx, "c", "d", map[string]int{"a": 2}, client.IfMatch(""))
			return err
		},
		"Patch": func() error {
			_, err := cl.Patch(ctx, "c", "d", []client.Op{{Op: "remove", Path: "/a"}}, client.IfMatch(""))
			return err
		},
		"Merge": func() error {
			_, err := cl.Merge(ctx, "c", "d", map[string]any{"a": 3}, client.IfMatch(""))
			return err
		},
		"Delete": func() error { return cl.Delete(ctx, "c", "d", client.IfMatch("")) },
	}
	for name, write := range writes {
		if err := write(); err == nil || !strings.Contains(err.Error(), "IfMatch") {
			t.Errorf("%s with IfMatch(\"\"): err=%v, want it refused", name, err)
		}
	}
	if n := sent.Load(); n != 0 {
		t.Errorf("%d writes sent", n)
	}
	if n := versions(t, cl, "c", "d"); n != 1 {
		t.Fatalf("%d versions: a write with IfMatch(\"\") went out unconditional", n)
	}
}
