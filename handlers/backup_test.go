package handlers_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// TestAdminBackup takes a hot backup over HTTP while clients write, and
// checks that the copy is a consistent database holding what was
// acknowledged before it started.
func TestAdminBackup(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	before := map[string]string{}
	for i := range 20 {
		path := fmt.Sprintf("/docs/c/%d", i)
		before[path] = s.create(t, path, fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("p", 2000)))
	}
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			etag := ""
			for i := range 50 { // bounded: 50 writes per writer
				h := []string{"Content-Type", ctJSON}
				if etag != "" {
					h = append(h, "If-Match", etag)
				}
				req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/docs/w/%d", s.URL, w), strings.NewReader(fmt.Sprintf(`{"n":%d}`, i)))
				for j := 0; j < len(h); j += 2 {
					req.Header.Set(h[j], h[j+1])
				}
				res, err := s.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				res.Body.Close()
				if res.StatusCode >= 300 {
					t.Errorf("PUT: %d", res.StatusCode)
					return
				}
				etag = res.Header.Get("ETag")
			}
		}()
	}
	res, err := s.Client().Get(s.URL + "/admin/backup")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "copy.db")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(f, res.Body)
	res.Body.Close()
	f.Close()
	wg.Wait()
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("backup: %d %v", res.StatusCode, err)
	}
	if cl, _ := strconv.ParseInt(res.Header.Get("Content-Length"), 10, 64); cl != n || n == 0 {
		t.Fatalf("Content-Length %s, body %d bytes", res.Header.Get("Content-Length"), n)
	}
	if ct, cd := res.Header.Get("Content-Type"), res.Header.Get("Content-Disposition"); ct != "application/octet-stream" || !strings.HasPrefix(cd, "attachment; filename=\"patchd-") {
		t.Fatalf("Content-Type %q, Content-Disposition %q", ct, cd)
	}
	ro, err := bolt.Open(out, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := ro.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	ro.Close()
	cp := startServerAt(t, out, store.Options{})
	for path, etag := range before {
		if r := cp.do(t, "GET", path, nil, ""); r.status != 200 || r.header.Get("ETag") != etag {
			t.Fatalf("%s in the copy: %d %s, want %s", path, r.status, r.header.Get("ETag"), etag)
		}
	}
	// The writers' documents are in whatever state the snapshot saw, each
	// agreeing with its own history.
	for w := range 2 {
		r := cp.do(t, "GET", fmt.Sprintf("/docs/w/%d", w), nil, "")
		if r.status == 404 {
			continue
		}
		// The newest version is on the last page of the history.
		var all strings.Builder
		for after := ""; ; {
			h := cp.do(t, "GET", fmt.Sprintf("/docs/w/%d/history?limit=1000%s", w, after), nil, "")
			all.Write(h.body)
			var page struct{ Next *uint64 }
			if err := json.Unmarshal(h.body, &page); err != nil {
				t.Fatal(err)
			}
			if page.Next == nil {
				break
			}
			after = fmt.Sprintf("&after=%d", *page.Next)
		}
		quoted, _ := json.Marshal(r.header.Get("ETag")) // as the history's JSON spells it
		if !strings.Contains(all.String(), string(quoted)) || strings.Count(all.String(), `"seq"`) == 0 {
			t.Fatalf("w/%d: document %s not in its history", w, r.header.Get("ETag"))
		}
	}
}

// TestAdminBackupClientGone stops reading a backup half way: the server
// ends the copy and the store still closes.
func TestAdminBackupClientGone(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	for i := range 50 {
		s.create(t, fmt.Sprintf("/docs/c/%d", i), fmt.Sprintf(`{"pad":"%s"}`, strings.Repeat("p", 4000)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/admin/backup", nil)
	res, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(res.Body, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	cancel()
	res.Body.Close()
	s.stop() // closes the server and the store: must not hang
}

// TestAdminBackupStalledReader: a backup whose reader takes the headers and
// stops reading must not hold up writes, even writes that must grow the
// file (bbolt cannot grow its mapping while a read transaction is open).
// With the reader stalled, 200 KB documents are written until the file has
// doubled: each must be answered within 1 s. A second backup meanwhile is
// refused with 503 overloaded.
func TestAdminBackupStalledReader(t *testing.T) {
	t.Parallel()
	s := startServerAt(t, filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	big := func(i int) string { return fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("p", 200<<10)) }
	for i := range 24 { // 5 MB of documents, 10 MB with their history: more than the socket buffers hold
		s.create(t, fmt.Sprintf("/docs/c/a%d", i), big(i))
	}
	conn, err := net.Dial("tcp", s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := io.WriteString(conn, "GET /admin/backup HTTP/1.1\r\nHost: patchd\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	head, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(head, "HTTP/1.1 200") {
		t.Fatalf("backup: %q, %v", head, err)
	}
	// The reader stops here.

	if r := s.do(t, "GET", "/admin/backup", nil, ""); r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("a second backup: %d %v %s; want 503 with Retry-After", r.status, r.header, r.body)
	} else {
		expect(t, r, 503, "overloaded")
	}

	fi, err := os.Stat(s.path)
	if err != nil {
		t.Fatal(err)
	}
	start := fi.Size()
	client := &http.Client{Timeout: latencyBound}
	var size int64
	for i := 0; i < 200 && size < 2*start; i++ { // bounded: at most 200 writes (80 MB)
		req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/docs/c/b%d", s.URL, i), strings.NewReader(big(i)))
		req.Header.Set("Content-Type", ctJSON)
		t0 := time.Now()
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("write %d with a backup stalled (file %d bytes, %d at the start): %v", i, size, start, err)
		}
		res.Body.Close()
		if res.StatusCode != 201 {
			t.Fatalf("write %d: %d", i, res.StatusCode)
		}
		if d := time.Since(t0); d > latencyBound {
			t.Fatalf("write %d took %v", i, d)
		}
		if fi, err = os.Stat(s.path); err != nil {
			t.Fatal(err)
		}
		size = fi.Size()
	}
	if size < 2*start {
		t.Fatalf("the file grew from %d to %d bytes only: the test did not make it grow", start, size)
	}
}
