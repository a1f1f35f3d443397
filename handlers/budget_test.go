package handlers_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/handlers"
)

// waitBudgetHeld waits until h's body decode budget holds n bytes.
func waitBudgetHeld(t *testing.T, h *handlers.Handler, n int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); h.BodyBudgetHeld() != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the budget holds %d bytes after 10 s, want %d", h.BodyBudgetHeld(), n)
		}
	}
}

// slowUpload opens a PUT of a 1 MiB body from slowClient and sends sent
// bytes of it, then keeps the connection open, sending a byte now and then
// until stop is closed.
func slowUpload(t *testing.T, addr, path string, sent int, stop <-chan struct{}) {
	t.Helper()
	slowUploadOf(t, addr, path, 1<<20, sent, stop)
}

// slowUploadOf is slowUpload of a body of size bytes.
func slowUploadOf(t *testing.T, addr, path string, size, sent int, stop <-chan struct{}) {
	t.Helper()
	conn, err := (&net.Dialer{LocalAddr: slowClient}).Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	head := fmt.Sprintf("PUT %s HTTP/1.1\r\nHost: patchd\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, size)
	if _, err := io.WriteString(conn, head+`{"pad":"`+strings.Repeat("p", sent-8)); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer conn.Close()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := io.WriteString(conn, "p"); err != nil {
					return
				}
			}
		}
	}()
}

// TestSlowUploadsHoldNoBudget: two clients that announce 1 MiB bodies and
// send them a byte at a time (together, the whole decode budget, had it been
// reserved by Content-Length) do not hold up other writers: the p99 of 100
// writes of 32 KiB bodies stays under 1 s. Then, with the budget really
// taken (an upload that sent more than all of it), a writer is refused
// soon with 503 overloaded and Retry-After instead of waiting.
func TestSlowUploadsHoldNoBudget(t *testing.T) {
	t.Parallel()
	s := startServer(t, func(c *config) { c.http.OverloadWait = 100 * time.Millisecond })
	addr := s.Listener.Addr().String()
	stop := make(chan struct{})
	defer close(stop)
	slowUpload(t, addr, "/docs/c/slow1", 16, stop)
	slowUpload(t, addr, "/docs/c/slow2", 16, stop)

	body := `{"pad":"` + strings.Repeat("w", 32<<10) + `"}`
	client := &http.Client{Timeout: 5 * time.Second}
	var mu sync.Mutex
	var took []time.Duration
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/docs/c/w%d-%d", s.URL, w, i), strings.NewReader(body))
				req.Header.Set("Content-Type", ctJSON)
				t0 := time.Now()
				res, err := client.Do(req)
				d := time.Since(t0)
				if err != nil {
					t.Errorf("write with slow uploads open: %v", err)
					return
				}
				res.Body.Close()
				if res.StatusCode != 201 {
					t.Errorf("write: %d", res.StatusCode)
					return
				}
				mu.Lock()
				took = append(took, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	slices.Sort(took)
	p50, p99 := took[len(took)/2], took[len(took)*99/100]
	t.Logf("100 writes of 32 KiB beside two slow uploads: p50 %v, p99 %v", p50, p99)
	if p99 >= latencyBound {
		t.Fatalf("p99 %v with two slow uploads open", p99)
	}

	// An upload that has sent more than a whole budget of 64 KiB holds all
	// of it: a writer is refused at once, 503 overloaded with Retry-After.
	var h *handlers.Handler
	full := startServerWith(t, nil, func(hh *handlers.Handler, _ *echo.Echo) { h = hh },
		func(c *config) { c.http.DecodeBudget, c.http.OverloadWait = 64<<10, 100*time.Millisecond })
	slowUpload(t, full.Listener.Addr().String(), "/docs/c/full", 100<<10, stop)
	waitBudgetHeld(t, h, 64<<10)
	r := full.do(t, "PUT", "/docs/c/refused", hdr{"Content-Type", ctJSON}, body)
	expect(t, r, 503, "overloaded")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	// A small body takes nothing from the budget: it goes through.
	expect(t, full.do(t, "PUT", "/docs/c/small", hdr{"Content-Type", ctJSON}, `{"small":true}`), 201, "")
}

// TestBodyShareOfOneClient: one client holds at most its share of the
// decode budget (a quarter of it, or one largest body if that is more),
// whatever the number of its connections: past it, its next body is
// refused at once with 429 and Retry-After, and other clients still get
// theirs.
func TestBodyShareOfOneClient(t *testing.T) {
	t.Parallel()
	var h *handlers.Handler
	s := startServerWith(t, nil, func(hh *handlers.Handler, _ *echo.Echo) { h = hh }, func(c *config) {
		c.http.DecodeBudget, c.http.MaxBody, c.http.OverloadWait = 256<<10, 64<<10, 100*time.Millisecond
	})
	stop := make(chan struct{})
	defer close(stop)
	// The slow client sends 48 KiB of a 64 KiB body: of its share of
	// 64 KiB, 16 KiB are left.
	slowUploadOf(t, s.Listener.Addr().String(), "/docs/c/slow", 64<<10, 48<<10, stop)
	waitBudgetHeld(t, h, 48<<10)
	body := `{"pad":"` + strings.Repeat("w", 32<<10) + `"}`
	r := s.doWith(t, fromClient(slowClient), "PUT", "/docs/c/more", hdr{"Content-Type", ctJSON}, body)
	if r.status != 429 || !strings.Contains(string(r.body), "rate-limited") || r.header.Get("Retry-After") == "" {
		t.Fatalf("a body past the client's share: %d %.200s (Retry-After %q), want 429 rate-limited with Retry-After", r.status, r.body, r.header.Get("Retry-After"))
	}
	// Another client's body of the same size goes through, and the
	// refused one holds nothing.
	expect(t, s.do(t, "PUT", "/docs/c/other", hdr{"Content-Type", ctJSON}, body), 201, "")
	waitBudgetHeld(t, h, 48<<10)
}

// TestBodyShareFreeOnAnswer: a body's share of the budget is free by the
// time its client has the answer, so a client that sends its next body as
// soon as it reads an answer, on each of as many connections as its share
// holds bodies, is never refused.
func TestBodyShareFreeOnAnswer(t *testing.T) {
	t.Parallel()
	s := startServer(t, func(c *config) {
		c.http.DecodeBudget, c.http.MaxBody, c.http.OverloadWait = 256<<10, 64<<10, 100*time.Millisecond
	})
	body := `{"pad":"` + strings.Repeat("w", 30<<10) + `"}` // two fit in the share of 64 KiB
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused := 0
	for w := range 2 {
		wg.Go(func() {
			cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
			for i := range 300 {
				req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/docs/c/b%d", s.URL, w), strings.NewReader(body))
				req.Header.Set("Content-Type", ctJSON)
				if i > 0 {
					req.Header.Set("If-Match", "*")
				}
				res, err := cl.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode == 429 {
					mu.Lock()
					refused++
					mu.Unlock()
				} else if res.StatusCode >= 300 {
					t.Errorf("PUT: %d", res.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
	if refused > 0 {
		t.Fatalf("%d of 600 bodies sent on reading the answer before were refused for the client's share", refused)
	}
}
