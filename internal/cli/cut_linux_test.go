package cli

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAnswerCutShortLogged: an answer that could not be written whole (its
// client read nothing until --write-timeout passed) is logged as cut
// short, with why, not as a 200 with problem "internal" and no reason.
func TestAnswerCutShortLogged(t *testing.T) {
	db := filepath.Join(t.TempDir(), "p.db")
	args := []string{"--addr", "127.0.0.1:0", "--db", db, "--log-format", "json", "--write-timeout", "1s",
		"--max-doc", "12MiB", "--max-body", "12MiB"}
	log := serveOnce(t, args, func(base string) {
		req, _ := http.NewRequest("PUT", base+"/docs/c/big", strings.NewReader(`{"pad":"`+strings.Repeat("p", 10<<20)+`"}`))
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != http.StatusCreated {
			t.Fatalf("PUT: %v %v", res, err)
		}
		res.Body.Close()
		dialer := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var err error
			if cerr := rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) }); cerr != nil {
				return cerr
			}
			return err
		}}
		conn, err := dialer.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /docs/c/big HTTP/1.1\r\nHost: patchd\r\n\r\n")
		// Read nothing past the write timeout, then all that comes: the
		// server closes the connection once its write has failed.
		time.Sleep(2 * time.Second)
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, _ := io.Copy(io.Discard, conn)
		if n >= 10<<20 {
			t.Fatalf("read %d bytes: the whole answer came", n)
		}
	})
	if !strings.Contains(log, `"msg":"answer cut short"`) || !strings.Contains(log, `"path":"/docs/c/big"`) {
		t.Fatalf("no line says the answer was cut short:\n%s", log)
	}
	if strings.Contains(log, `"problem":"internal"`) {
		t.Fatalf("a cut answer logged as an internal problem:\n%s", log)
	}
}
