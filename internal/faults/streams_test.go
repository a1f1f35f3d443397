package faults

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestStreamsAtFileLimit runs patchd with 1,024 file descriptors
// (prlimit --nofile=1024:1024) and opens 1,500 change feed streams, 50 at
// a time, while probes read and write: every stream attempt is answered
// (200, or 503 overloaded once the descriptors left are those kept for
// other requests), every probe is answered, and the streams admitted
// still deliver.
func TestStreamsAtFileLimit(t *testing.T) {
	s, addr := startLimited(t, "--nofile=1024:1024", "--max-streams-per-client", "100000", "--max-conns-per-client", "100000")
	if limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", s.cmd.Process.Pid)); err != nil || !strings.Contains(string(limits), "Max open files            1024                 1024") {
		t.Fatalf("the server's limits: %v\n%s", err, limits)
	}
	base := "http://" + addr
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	probe := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if r := call(ctx, probe, "PUT", base+"/docs/c/d", `{"n":0}`, "Content-Type", "application/json"); r.status != http.StatusCreated {
		t.Fatalf("create: %d %v", r.status, r.err)
	}

	const attempts, parallel = 1500, 50
	var (
		mu       sync.Mutex
		held     []net.Conn
		statuses = map[int]int{}
		failures []string
	)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	attempt := func() {
		conn, err := net.DialTimeout("tcp", addr, 20*time.Second)
		if err != nil {
			mu.Lock()
			failures = append(failures, "dial: "+err.Error())
			mu.Unlock()
			return
		}
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(conn, "GET /docs/c/d/events HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		br := bufio.NewReader(conn)
		res, err := http.ReadResponse(br, nil)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failures = append(failures, "no answer: "+err.Error())
			conn.Close()
			return
		}
		statuses[res.StatusCode]++
		if res.StatusCode == http.StatusOK {
			conn.SetDeadline(time.Time{})
			held = append(held, conn)
			return
		}
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
			failures = append(failures, fmt.Sprintf("status %d, Retry-After %q", res.StatusCode, res.Header.Get("Retry-After")))
		}
		conn.Close()
	}
	// Probes: a read and a write on a fresh connection, one after the
	// other, for as long as the attempts go on and once more after.
	var (
		probes        int
		probeFailures []string
	)
	probeOnce := func(n int) {
		if r := call(ctx, probe, "GET", base+"/docs/c/d", ""); r.status != http.StatusOK {
			probeFailures = append(probeFailures, fmt.Sprintf("GET: %d %v", r.status, r.err))
		}
		if r := call(ctx, probe, "PUT", base+fmt.Sprintf("/docs/p/%d", n), `{}`, "Content-Type", "application/json"); r.status != http.StatusCreated {
			probeFailures = append(probeFailures, fmt.Sprintf("PUT: %d %v", r.status, r.err))
		}
		probes++
	}
	attemptsDone := make(chan struct{})
	probesDone := make(chan struct{})
	go func() {
		defer close(probesDone)
		for n := 0; ; n++ {
			select {
			case <-attemptsDone:
				probeOnce(n)
				return
			default:
			}
			probeOnce(n)
			if len(probeFailures) > 0 {
				<-attemptsDone
				return
			}
		}
	}()
	work := make(chan struct{})
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for range work {
				attempt()
			}
		})
	}
	for range attempts {
		mu.Lock()
		failed := len(failures) > 0
		mu.Unlock()
		if failed {
			break // one is enough: the rest would wait for their deadlines too
		}
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	close(attemptsDone)
	<-probesDone

	t.Logf("%d attempts: %v; %d streams held; %d probes", attempts, statuses, len(held), probes)
	if len(failures) > 0 {
		t.Fatalf("%d stream attempts not answered as they should be, first: %s", len(failures), failures[0])
	}
	if len(probeFailures) > 0 {
		t.Fatalf("%d of %d probes failed, first: %s", len(probeFailures), 2*probes, probeFailures[0])
	}
	if statuses[http.StatusServiceUnavailable] == 0 || len(held) < 500 {
		t.Fatalf("answers %v: want streams up to the reserve, then 503", statuses)
	}
	// The streams admitted still deliver: a write reaches the last one.
	if r := call(ctx, probe, "PATCH", base+"/docs/c/d", `{"n":1}`, "Content-Type", "application/merge-patch+json", "If-Match", "*"); r.status != http.StatusOK {
		t.Fatalf("PATCH: %d %v", r.status, r.err)
	}
	last := held[len(held)-1]
	last.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(last)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("the last stream admitted: %v", err)
		}
		if strings.HasPrefix(line, "event: version") {
			break
		}
	}
}

// TestIdleConnectionsAtFileLimit runs patchd with 1,024 file descriptors
// and, from one address with no per-address bound, opens 1,100 keep-alive
// connections that each send one request and stay open, idle: more than
// the descriptors. Every connection is answered, the server holds no more
// than its bound (the limit less 64), and a probe on a fresh connection
// is served, since each new connection takes the place of the oldest idle
// one. Before the bound, the server reached its limit and served nothing
// until the idle connections timed out.
func TestIdleConnectionsAtFileLimit(t *testing.T) {
	s, addr := startLimited(t, "--nofile=1024:1024", "--max-conns-per-client", "100000")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	probe := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range 1100 {
		conn, err := net.DialTimeout("tcp", addr, 20*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		held = append(held, conn)
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("connection %d not answered: %v", i, err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("connection %d: %d", i, res.StatusCode)
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if len(fds) > 1024-64+32 {
		t.Fatalf("the server holds %d descriptors; its connections are bounded by 960", len(fds))
	}
	if r := call(ctx, probe, "PUT", "http://"+addr+"/docs/c/d", `{"n":0}`, "Content-Type", "application/json"); r.status != http.StatusCreated {
		t.Fatalf("a probe after the flood: %d %v", r.status, r.err)
	}
}

// TestSmallAddressSpace runs patchd with 6 GB of address space (prlimit
// --as), less than the 16 GiB it maps for a database: it maps less, says
// so, and serves, and a write survives a restart. Before, it could not
// open the database ("cannot allocate memory").
func TestSmallAddressSpace(t *testing.T) {
	s, addr := startLimited(t, "--as=6000000000")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := &http.Client{Timeout: 20 * time.Second}
	if r := call(ctx, c, "PUT", "http://"+addr+"/docs/c/d", `{"n":1}`, "Content-Type", "application/json"); r.status != http.StatusCreated {
		t.Fatalf("PUT: %d %v", r.status, r.err)
	}
	if !strings.Contains(s.Log(), "mapping less") {
		t.Fatalf("the server did not say it maps less:\n%s", s.Log())
	}
	s.Stop()
	addr, err := s.Start()
	if err != nil {
		t.Fatalf("restart: %v\n%s", err, s.Log())
	}
	if r := call(ctx, c, "GET", "http://"+addr+"/docs/c/d", ""); r.status != http.StatusOK {
		t.Fatalf("GET after a restart: %d %v", r.status, r.err)
	}
}

// startLimited starts the binary on a new database under prlimit with
// limit (skipping the test without prlimit), with extra flags args, and
// stops it when the test ends.
func startLimited(t *testing.T, limit string, args ...string) (*Server, string) {
	t.Helper()
	needBinary(t)
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("needs prlimit (util-linux)")
	}
	s := &Server{Bin: patchdBin, DB: filepath.Join(t.TempDir(), "patchd.db"), Args: args, Wrap: []string{prlimit, limit}}
	addr, err := s.Start()
	if err != nil {
		t.Fatalf("start: %v\n%s", err, s.Log())
	}
	t.Cleanup(s.Stop)
	return s, addr
}
