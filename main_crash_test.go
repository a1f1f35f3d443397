package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// TestKill9 runs the real binary under concurrent writes, kills it with
// SIGKILL at a random moment, restarts it and reads everything back, a few
// times over: every write that was acknowledged must be there (group commit
// must never answer before the fsync), and the file must pass bbolt's
// consistency check. Half the writers own a document each; the other half
// share one document, each owning a field and editing from the ETag of its
// own last answer, so that their writes are rebased and queue behind one
// another's pending versions.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "patchd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	db := filepath.Join(dir, "p.db")
	start := func() (*exec.Cmd, string) {
		t.Helper()
		cmd := exec.Command(bin, "--addr", "127.0.0.1:0", "--db", db)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" {
				go io.Copy(io.Discard, stderr)
				return cmd, "http://" + line.Addr
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no serving line: %v", sc.Err())
		return nil, ""
	}
	client := &http.Client{Timeout: 10 * time.Second}
	send := func(method, url, ct, ifMatch, body string) (int, string, []byte, error) {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		res, err := client.Do(req)
		if err != nil {
			return 0, "", nil, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return res.StatusCode, res.Header.Get("ETag"), b, err
	}

	const writers = 8
	// writer w writes /v<w> of its document: w<w> for w < 4, shared otherwise.
	docOf := func(w int) string {
		if w < writers/2 {
			return fmt.Sprintf("/docs/c/w%d", w)
		}
		return "/docs/c/shared"
	}
	acked := make([]int, writers) // last value acknowledged per writer
	cmd, base := start()
	for w := range writers {
		if w <= writers/2 { // each own document, and the shared one
			if status, _, b, err := send("PUT", base+docOf(w), "application/json", "", `{"v0":0,"v1":0,"v2":0,"v3":0,"v4":0,"v5":0,"v6":0,"v7":0}`); err != nil || status != http.StatusCreated {
				t.Fatalf("PUT: %d %s %v", status, b, err)
			}
		}
	}
	for cycle := range 3 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		totalAcked := 0
		for w := range writers {
			wg.Go(func() {
				_, etag, _, err := send("GET", base+docOf(w), "", "", "")
				if err != nil {
					return
				}
				for k := acked[w] + 1; ; k++ {
					status, next, body, err := send("PATCH", base+docOf(w), "application/json-patch+json", etag,
						fmt.Sprintf(`[{"op":"replace","path":"/v%d","value":%d}]`, w, k))
					if err != nil {
						return // killed: the outcome of k is unknown
					}
					if status != http.StatusOK {
						t.Errorf("writer %d: PATCH %d: %d %s", w, k, status, body)
						return
					}
					mu.Lock()
					acked[w] = k
					totalAcked++
					mu.Unlock()
					etag = next
				}
			})
		}
		time.Sleep(time.Duration(200+rand.IntN(400)) * time.Millisecond) // let the writers run, then kill at a random moment
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		wg.Wait()
		if t.Failed() {
			return
		}

		// The file is consistent.
		st, err := bolt.Open(db, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Check(context.Background()); err != nil {
			t.Fatalf("cycle %d: %v", cycle, err)
		}
		st.Close()

		cmd, base = start()
		for w := range writers {
			status, _, body, err := send("GET", base+docOf(w), "", "", "")
			if err != nil || status != http.StatusOK {
				t.Fatalf("read back: %d %v", status, err)
			}
			var doc map[string]int
			if err := json.Unmarshal(body, &doc); err != nil {
				t.Fatal(err)
			}
			got := doc[fmt.Sprintf("v%d", w)]
			if got < acked[w] || got > acked[w]+1 {
				t.Fatalf("cycle %d writer %d: value %d after the restart, last acknowledged %d", cycle, w, got, acked[w])
			}
			acked[w] = got // an unacknowledged write that made it counts from here
		}
		t.Logf("cycle %d: %d acknowledged writes, all present after kill -9", cycle, totalAcked)
		if totalAcked == 0 {
			t.Fatalf("cycle %d: no write was acknowledged before the kill", cycle)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}
