package faults

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// closedWithin reports whether the server closes conn within d: a read
// returns EOF or a reset, not a timeout. Whatever the server sends first
// (an error answer) is read and dropped.
func closedWithin(conn net.Conn, d time.Duration) (bool, time.Duration) {
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(d))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, time.Since(start)
	}
	return true, time.Since(start)
}

// TestSlowClients runs slowloris-style clients against a real patchd with
// short timeouts: clients dripping headers a byte at a time, clients that
// stall in the middle of a body, idle keep-alive connections, and
// oversized headers. Each must be cut off by its timeout (or refused)
// while a legitimate client keeps being served throughout.
func TestSlowClients(t *testing.T) {
	needBinary(t)
	srv := startPatchd(t, "--read-header-timeout", "1s", "--read-timeout", "2s", "--write-timeout", "5s",
		"--idle-timeout", "1500ms", "--max-header-bytes", "8KiB")
	addr := srv.Addr()
	legit := client(5 * time.Second)
	mustCall(t, legit, "PUT", "http://"+addr+"/docs/slow/d", `{"a":1}`, 201, "Content-Type", "application/json")

	// The legitimate client, all along.
	stop := make(chan struct{})
	var served int
	var lat []time.Duration
	var legitErr error
	var lwg sync.WaitGroup
	lwg.Add(1)
	go func() {
		defer lwg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			start := time.Now()
			r := call(context.Background(), legit, "GET", "http://"+addr+"/docs/slow/d", "")
			if r.err != nil || r.status != 200 {
				legitErr = fmt.Errorf("legitimate GET: %d %v", r.status, r.err)
				return
			}
			lat = append(lat, time.Since(start))
			served++
		}
	}()

	dial := func() net.Conn {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	type probe struct {
		name  string
		conn  net.Conn
		bound time.Duration
	}
	var probes []probe
	// Slowloris: the request line, then header bytes one at a time.
	const loris = 8
	var dripWG sync.WaitGroup
	dripStop := make(chan struct{})
	for i := range loris {
		conn := dial()
		if _, err := conn.Write([]byte("GET /docs/slow/d HTTP/1.1\r\nHost: patchd\r\n")); err != nil {
			t.Fatal(err)
		}
		dripWG.Add(1)
		go func() {
			defer dripWG.Done()
			for b := 0; ; b++ {
				select {
				case <-dripStop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if _, err := conn.Write([]byte{"X-Drip: aaaaaaaaaaaa"[b%20]}); err != nil {
					return // cut off
				}
			}
		}()
		probes = append(probes, probe{fmt.Sprintf("header drip %d", i), conn, 1*time.Second + 2*time.Second})
	}
	// Slow bodies: complete headers, a tenth of the body, then nothing.
	for i := range 4 {
		conn := dial()
		if _, err := fmt.Fprintf(conn, "PUT /docs/slow/b%d HTTP/1.1\r\nHost: patchd\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":\"xx", i); err != nil {
			t.Fatal(err)
		}
		probes = append(probes, probe{fmt.Sprintf("stalled body %d", i), conn, 2*time.Second + 2*time.Second})
	}
	// Idle keep-alive: one request, then silence.
	for i := range 2 {
		conn := dial()
		if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: patchd\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		rd := bufio.NewReader(conn)
		res, err := http.ReadResponse(rd, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		probes = append(probes, probe{fmt.Sprintf("idle keep-alive %d", i), conn, 1500*time.Millisecond + 2*time.Second})
	}

	// Each is cut off within its timeout plus slack.
	var wg sync.WaitGroup
	results := make([]string, len(probes))
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if closed, after := closedWithin(p.conn, p.bound); !closed {
				results[i] = fmt.Sprintf("%s: still open after %v", p.name, after)
			}
		}()
	}
	wg.Wait()
	close(dripStop)
	dripWG.Wait()
	for _, r := range results {
		if r != "" {
			t.Error(r)
		}
	}

	// Oversized headers: 431, and the connection is closed.
	conn := dial()
	if _, err := fmt.Fprintf(conn, "GET /docs/slow/d HTTP/1.1\r\nHost: patchd\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 16<<10)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized headers: %v %v, want 431", res, err)
	}
	res.Body.Close()

	close(stop)
	lwg.Wait()
	if legitErr != nil {
		t.Fatal(legitErr)
	}
	// The stalled bodies wrote nothing.
	for i := range 4 {
		mustCall(t, legit, "GET", fmt.Sprintf("http://%s/docs/slow/b%d", addr, i), "", 404)
	}
	slices.Sort(lat)
	if served < 10 {
		t.Fatalf("the legitimate client was served %d times", served)
	}
	t.Logf("SLOW CLIENTS: %d header drips, 4 stalled bodies, 2 idle keep-alives cut off by their timeouts; oversized headers 431; legitimate client served %d times meanwhile, latency median %v, max %v",
		loris, served, lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
}

// TestRateUnderLoad sends requests from one client as fast as four
// connections allow, well over the limit: some get 429 with Retry-After,
// none a 5xx, and no more are allowed than the bucket holds plus the rate
// times the time taken.
func TestRateUnderLoad(t *testing.T) {
	needBinary(t)
	const rate, total = 50, 300
	srv := startPatchd(t, "--rate", fmt.Sprint(rate))
	url := "http://" + srv.Addr() + "/docs/rate/d"
	var mu sync.Mutex
	counts := map[int]int{}
	sent := 0
	var wg sync.WaitGroup
	start := time.Now()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client(5 * time.Second)
			for {
				mu.Lock()
				if sent == total {
					mu.Unlock()
					return
				}
				sent++
				mu.Unlock()
				r := call(context.Background(), c, "GET", url, "")
				mu.Lock()
				switch {
				case r.err != nil:
					t.Errorf("GET: %v", r.err)
				case r.status >= 500:
					t.Errorf("%d %s", r.status, r.body)
				case r.status == 429 && (r.header.Get("Retry-After") == "" || r.problem() != "rate-limited"):
					t.Errorf("429 without Retry-After or problem type: %v %s", r.header, r.body)
				}
				counts[r.status]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	allowed, limited := counts[404], counts[429]
	// The bucket starts full with one second's worth (the burst).
	if most := rate + int(took.Seconds()*rate) + 1; allowed > most || allowed < rate {
		t.Fatalf("%d allowed in %v, want %d to %d (%v)", allowed, took, rate, most, counts)
	}
	if limited == 0 && took < time.Duration(total-rate)*time.Second/rate {
		t.Fatalf("none limited: %v in %v", counts, took)
	}
	t.Logf("RATE: %d requests in %v (%.0f/s) against --rate %d: %d allowed, %d answered 429 with Retry-After (%.0f%%), 0 5xx",
		total, took.Round(time.Millisecond), total/took.Seconds(), rate, allowed, limited, 100*float64(limited)/total)
}
