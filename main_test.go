package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestSIGTERM runs the real binary and stops it with SIGTERM: it must exit
// cleanly and leave a database that opens again.
func TestSIGTERM(t *testing.T) {
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
		t.Fatalf("no serving line: %v", sc.Err())
		return nil, ""
	}
	cmd, base := start()
	req, _ := http.NewRequest("PUT", base+"/docs/c/d", strings.NewReader(`{"n":12345678901234567890123}`))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 201 {
		t.Fatalf("PUT: %v %v", res, err)
	}
	res.Body.Close()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	cmd, base = start()
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	res, err = http.Get(base + "/docs/c/d")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != `{"n":12345678901234567890123}` {
		t.Fatalf("after restart: %d %s", res.StatusCode, b)
	}
	if _, err := os.Stat(db); err != nil {
		t.Fatal(err)
	}
}
