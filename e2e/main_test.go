// Package e2e runs patchd end to end over PostgreSQL: several patchd
// processes (the built binary) over one database, the HTTP test suites
// spread over replicas, replicas killed under load, and the migrate
// command. Without PostgreSQL the tests skip (see package pgtest).
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/patchd/patchd/store/postgres/pgtest"
)

// Shared by the package's tests, set up by TestMain.
var (
	pg  pgtest.Env
	bin string // the patchd binary built for the tests
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "patchd-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	bin = filepath.Join(dir, "patchd")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "..")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(2)
	}
	code := pg.Run(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// replica is one patchd process.
type replica struct {
	URL  string
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer // its stderr after the serving line
	done chan struct{}
}

// startReplica runs the binary with --db db on a free loopback port and
// waits until it serves. It is stopped at cleanup.
func startReplica(t testing.TB, db string, args ...string) *replica {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--addr", "127.0.0.1:0", "--db", db}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &replica{cmd: cmd, done: make(chan struct{})}
	sc := bufio.NewScanner(stderr)
	var head strings.Builder
	for sc.Scan() {
		head.WriteString(sc.Text() + "\n")
		var line struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" {
			r.URL = "http://" + line.Addr
			break
		}
	}
	if r.URL == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("patchd did not start:\n%s", head.String())
	}
	go func() {
		io.Copy(r, stderr)
		cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// Write collects the replica's log.
func (r *replica) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.Write(p)
}

// Log returns what the replica logged after it started.
func (r *replica) Log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

// kill ends the replica with SIGKILL, as a crash would.
func (r *replica) kill() {
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
}

// stop ends the replica with SIGTERM (SIGKILL after 10s); a replica that
// logged an error at level ERROR fails the test.
func (r *replica) stop(t testing.TB) {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		r.kill()
	}
	if strings.Contains(r.Log(), `"level":"ERROR"`) {
		t.Errorf("replica %s logged errors:\n%s", r.URL, r.Log())
	}
}

// startReplicas starts n replicas over db at once, so that they also race
// to migrate a new database.
func startReplicas(t testing.TB, db string, n int, args ...string) []*replica {
	t.Helper()
	rs := make([]*replica, n)
	var wg sync.WaitGroup
	for i := range rs {
		wg.Go(func() { rs[i] = startReplica(t, db, args...) })
	}
	wg.Wait()
	for _, r := range rs {
		if r == nil {
			t.FailNow()
		}
	}
	return rs
}

// client sends requests with a bounded timeout.
var client = &http.Client{Timeout: 30 * time.Second}

// response is an answer read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

// send makes one request; hdr is name, value, name, value...
func send(ctx context.Context, base, method, path, body string, hdr ...string) (response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: res.StatusCode, header: res.Header, body: b}, nil
}

// do is send that fails the test on a transport error.
func do(t testing.TB, base, method, path, body string, hdr ...string) response {
	t.Helper()
	r, err := send(context.Background(), base, method, path, body, hdr...)
	if err != nil {
		t.Fatalf("%s %s%s: %v", method, base, path, err)
	}
	return r
}

// want fails the test unless r has the status.
func want(t testing.TB, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
}
