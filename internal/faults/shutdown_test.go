package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestGracefulShutdown sends SIGTERM while writers keep the server busy
// and a few requests are in the middle of their bodies. The requests in
// flight must all be answered 200, new connections must be refused while
// they are still open, the process must exit 0, and after a restart every
// acknowledged write, of the writers and the slow requests, must be
// there.
func TestGracefulShutdown(t *testing.T) {
	needBinary(t)
	const slow, writers = 4, 4
	srv := startPatchd(t, "--shutdown-timeout", "20s")
	addr := srv.Addr()
	c := client(5 * time.Second)
	url := "http://" + addr + "/docs/shut/d"
	mustCall(t, c, "PUT", url, `{}`, 201, "Content-Type", "application/json")

	// Load: writers add unique fields until the server goes away.
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			etag := ""
			for n := 0; ; n++ {
				if etag == "" {
					r := call(context.Background(), c, "GET", url, "")
					if r.err != nil || r.status != 200 {
						return
					}
					etag = r.header.Get("ETag")
				}
				f := fmt.Sprintf("w%dn%d", w, n)
				r := call(context.Background(), c, "PATCH", url, fmt.Sprintf(`{%q:1}`, f),
					"Content-Type", "application/merge-patch+json", "If-Match", etag)
				if r.err != nil || r.status == 503 {
					return
				}
				if r.status != 200 {
					t.Errorf("PATCH during shutdown: %d %s", r.status, r.body)
					return
				}
				mu.Lock()
				acked[f] = true
				mu.Unlock()
				etag = r.header.Get("ETag")
			}
		}()
	}

	// In flight: requests whose handlers are reading their bodies. With
	// Expect: 100-continue the server says so (100 Continue) once the
	// handler reads, so the test knows they are in flight.
	type slowReq struct {
		conn net.Conn
		rd   *bufio.Reader
		rest string
	}
	var reqs []slowReq
	for i := range slow {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		body := fmt.Sprintf(`{"slow%d":"%s"}`, i, strings.Repeat("x", 100))
		head := fmt.Sprintf("PUT /docs/shut/slow%d HTTP/1.1\r\nHost: patchd\r\nContent-Type: application/json\r\n"+
			"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n", i, len(body))
		if _, err := conn.Write([]byte(head)); err != nil {
			t.Fatal(err)
		}
		rd := bufio.NewReader(conn)
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := rd.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
			t.Fatalf("slow request %d: %q %v, want 100 Continue", i, line, err)
		}
		if _, err := rd.ReadString('\n'); err != nil { // the blank line after 100
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte(body[:10])); err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, slowReq{conn, rd, body[10:]})
	}

	// Let the load build up before the signal.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 100 {
			break
		}
	}
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	if err := srv.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connections are refused while the slow requests are in flight.
	refused := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			refused = true
			break
		}
		conn.Close()
	}
	if !refused {
		t.Fatal("new connections still accepted 10s after SIGTERM")
	}
	if err := srv.Wait(0); err == nil {
		t.Fatal("the server exited with requests in flight")
	}
	// Finish the slow requests: each must be answered, and committed.
	for i, r := range reqs {
		if _, err := r.conn.Write([]byte(r.rest)); err != nil {
			t.Fatalf("slow request %d: %v", i, err)
		}
		res, err := http.ReadResponse(r.rd, nil)
		if err != nil {
			t.Fatalf("slow request %d: no answer: %v", i, err)
		}
		res.Body.Close()
		if res.StatusCode != 201 {
			t.Fatalf("slow request %d: %d, want 201", i, res.StatusCode)
		}
	}
	if err := srv.Wait(30 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	if _, err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	r := mustCall(t, c, "GET", "http://"+srv.Addr()+"/docs/shut/d", "", 200)
	var body map[string]any
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatal(err)
	}
	for f := range acked {
		if _, ok := body[f]; !ok {
			t.Fatalf("acknowledged field %s lost in shutdown", f)
		}
	}
	for i := range slow {
		mustCall(t, c, "GET", fmt.Sprintf("http://%s/docs/shut/slow%d", srv.Addr(), i), "", 200)
	}
	t.Logf("SHUTDOWN: %d requests in flight at SIGTERM all answered and committed; new connections refused; %d writes acknowledged under load (%d of them after SIGTERM), 0 lost", slow, len(acked), len(acked)-before)
}
