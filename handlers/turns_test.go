package handlers_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// stuckListStore holds every List until release is closed (or the
// request ends), announcing each on entered: requests in progress.
type stuckListStore struct {
	store.Store
	entered chan struct{}
	release chan struct{}
}

func (s stuckListStore) List(ctx context.Context, c, after string, limit int) ([]store.ListEntry, bool, error) {
	s.entered <- struct{}{}
	select {
	case <-s.release:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	return s.Store.List(ctx, c, after, limit)
}

// TestPagesInProgressPerClient: one client has at most PagesPerClient
// listings (and history pages, violations) in progress at once, over any
// number of connections: one more is 429 with Retry-After, while another
// client's goes through.
func TestPagesInProgressPerClient(t *testing.T) {
	t.Parallel()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	stuck := stuckListStore{Store: st, entered: make(chan struct{}, 16), release: make(chan struct{})}
	s := &server{Server: httptest.NewServer(newHandler(stuck, newConfig(func(c *config) { c.http.PagesPerClient = 3 })).Echo())}
	t.Cleanup(s.Close)
	type answer struct {
		status int
		err    error
	}
	get := func(cl *http.Client, done chan<- answer) {
		res, err := cl.Get(s.URL + "/docs/c")
		if err != nil {
			done <- answer{err: err}
			return
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		done <- answer{status: res.StatusCode}
	}
	one := fromClient(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	done := make(chan answer, 8)
	for range 3 {
		go get(one, done)
		<-stuck.entered
	}
	more := &http.Client{Timeout: 5 * time.Second}
	res, err := more.Get(s.URL + "/docs/c")
	if err != nil {
		t.Fatalf("a fourth listing of the client: %v, want 429 at once", err)
	}
	res.Body.Close()
	if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" {
		t.Fatalf("a fourth listing of the client: %d (Retry-After %q), want 429 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
	// Another client is not held up by the first one's pages.
	go get(fromClient(slowClient), done)
	select {
	case <-stuck.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("another client's listing did not start")
	}
	close(stuck.release)
	for range 4 {
		if a := <-done; a.err != nil || a.status != 200 {
			t.Fatalf("a listing in progress: %d %v", a.status, a.err)
		}
	}
	// Their turns are given back.
	expect(t, s.do(t, "GET", "/docs/c", nil, ""), 200, "")
}

// TestBatchTurnFreeBeforeAnswer: a batch's turn (--max-batches) is given
// back once it is decided, before its answer is written, so a client that
// does not read a large answer holds none, while the answers' budget has
// room for the answer; without room the turn is held (the memory of
// unread answers stays bounded). One client has at most two batches in
// progress.
func TestBatchTurnFreeBeforeAnswer(t *testing.T) {
	t.Parallel()
	s := startServer(t, func(c *config) { c.http.MaxBatches, c.http.AnswerBudget = 1, 40<<20 })
	s.create(t, "/docs/c/big", `{"n":0,"pad":"`+strings.Repeat("p", 1<<20-64)+`"}`)
	// 30 dry-run merges of the 1 MB document: an answer of 30 MB.
	var writes []string
	for i := range 30 {
		writes = append(writes, fmt.Sprintf(`{"method":"PATCH","path":"/docs/c/big","headers":{"Content-Type":"application/merge-patch+json","If-Match":"*"},"body":{"n":%d}}`, i))
	}
	big := `{"writes":[` + strings.Join(writes, ",") + `]}`
	// unread sends the batch from the slow client and reads the start of
	// its answer only: the batch was decided, its answer is being written.
	unread := func() {
		conn, err := (&net.Dialer{LocalAddr: slowClient}).Dial("tcp", s.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprintf(conn, "POST /batch?dryRun=true HTTP/1.1\r\nHost: patchd\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(big), big)
		status := make([]byte, len("HTTP/1.1 200"))
		if _, err := io.ReadFull(conn, status); err != nil || string(status) != "HTTP/1.1 200" {
			t.Fatalf("the unread batch: %q %v", status, err)
		}
	}
	small := `{"writes":[{"method":"PUT","path":"/docs/c/small","headers":{"Content-Type":"application/json"},"body":{"a":1}}]}`
	unread()
	// Another client's batch gets the one turn: the unread answer holds
	// its bytes of the answers' budget, not the turn.
	expect(t, s.do(t, "POST", "/batch", hdr{"Content-Type", ctJSON}, small), 200, "")
	// A second unread answer does not fit in what is left of the budget:
	// it keeps its turn while it is written.
	unread()
	// The slow client has two batches in progress: a third is refused.
	r := s.doWith(t, fromClient(slowClient), "POST", "/batch", hdr{"Content-Type", ctJSON}, small)
	expect(t, r, 429, "rate-limited")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	expect(t, s.do(t, "POST", "/batch", hdr{"Content-Type", ctJSON}, strings.Replace(small, "/small", "/small2", 1)), 503, "overloaded")
}

// TestPageAnswersBounded: pages being written hold their bytes of the
// answers' budget, shared with batches, whatever the number of clients: a
// page that does not fit waits, then is refused 503 overloaded (before,
// unread pages from many addresses grew the heap without bound).
func TestPageAnswersBounded(t *testing.T) {
	t.Parallel()
	s := startServer(t, func(c *config) { c.http.AnswerBudget = 32 << 20 })
	s.create(t, "/docs/c/big", `{"n":0,"pad":"`+strings.Repeat("p", 1<<20-64)+`"}`)
	for i := range 3 {
		s.create(t, fmt.Sprintf("/docs/pages/p%d", i), `{"pad":"`+strings.Repeat("q", 900<<10)+`"}`)
	}
	// A 30 MB batch answer that its client does not read holds 30 MiB.
	var writes []string
	for i := range 30 {
		writes = append(writes, fmt.Sprintf(`{"method":"PATCH","path":"/docs/c/big","headers":{"Content-Type":"application/merge-patch+json","If-Match":"*"},"body":{"n":%d}}`, i))
	}
	big := `{"writes":[` + strings.Join(writes, ",") + `]}`
	conn, err := (&net.Dialer{LocalAddr: slowClient}).Dial("tcp", s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /batch?dryRun=true HTTP/1.1\r\nHost: patchd\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(big), big)
	status := make([]byte, len("HTTP/1.1 200"))
	if _, err := io.ReadFull(conn, status); err != nil || string(status) != "HTTP/1.1 200" {
		t.Fatalf("the unread batch: %q %v", status, err)
	}
	// A page of 2.7 MB does not fit in what is left; a small one does.
	expect(t, s.do(t, "GET", "/docs/pages?include=body", nil, ""), 503, "overloaded")
	expect(t, s.do(t, "GET", "/docs/pages", nil, ""), 200, "")
	expect(t, s.do(t, "GET", "/docs/pages/p0/history", nil, ""), 200, "")
	// Once the batch's client goes, the page fits.
	conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := s.do(t, "GET", "/docs/pages?include=body", nil, "")
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page after the batch's client went: %d %s", r.status, r.body)
		}
	}
}
