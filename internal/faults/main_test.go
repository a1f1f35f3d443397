package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var long = flag.Bool("faults.long", false, "run the long variants: more histories, more kill cycles, longer runs")

// patchdBin is the binary built once by TestMain ("" when skipped).
var patchdBin string

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if testing.Short() || raceEnabled {
			return m.Run() // every test skips
		}
		dir, err := os.MkdirTemp("", "patchd-faults-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if patchdBin, err = Build(ctx, dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// needBinary skips tests that run real processes under -short or -race.
func needBinary(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs real patchd processes; skipped with -short")
	}
	if raceEnabled {
		t.Skip("runs real patchd processes; the race detector would only slow the clients")
	}
}

// startPatchd starts a server on a fresh database with extra flags. At
// cleanup it is killed, and its log is kept in the test's output if the
// test failed.
func startPatchd(t *testing.T, args ...string) *Server {
	t.Helper()
	needBinary(t)
	s := &Server{Bin: patchdBin, DB: filepath.Join(t.TempDir(), "patchd.db"), Args: args}
	if _, err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			log := s.Log()
			if len(log) > 20000 {
				log = "..." + log[len(log)-20000:]
			}
			t.Logf("patchd log:\n%s", log)
		}
	})
	return s
}

// client is an HTTP client for one test's traffic.
func client(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			MaxIdleConns:        64,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		},
	}
}

// reply is an HTTP answer, or err when none came.
type reply struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// problem returns the problem type name of an error answer.
func (r reply) problem() string {
	var p struct{ Type string }
	if err := json.Unmarshal(r.body, &p); err != nil {
		return ""
	}
	return strings.TrimPrefix(p.Type, "/problems/")
}

// call sends one request. hdr is name, value, name, value...
func call(ctx context.Context, c *http.Client, method, url string, body string, hdr ...string) reply {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return reply{err: err}
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return reply{err: err}
	}
	return reply{status: res.StatusCode, header: res.Header, body: b}
}

// mustCall sends a request that must answer with status.
func mustCall(t *testing.T, c *http.Client, method, url, body string, status int, hdr ...string) reply {
	t.Helper()
	r := call(context.Background(), c, method, url, body, hdr...)
	if r.err != nil || r.status != status {
		t.Fatalf("%s %s: %d %v %s, want %d", method, url, r.status, r.err, bytes.TrimSpace(r.body), status)
	}
	return r
}

// writeFile writes a private file.
func writeFile(path, data string) error { return os.WriteFile(path, []byte(data), 0o600) }
