package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAnswerCutShortLogged: an answer that could not be written whole (its
// client read nothing until --write-timeout passed) is logged as cut
// short, with why, not as a 200 with problem "internal" and no reason.
func TestAnswerCutShortLogged(t *testing.T) {
	// Larger than the kernel's sending buffer of a connection at most
	// (tcp_wmem), so that the answer stays being written while its client
	// reads nothing; imported, not PUT, so that no request of the test
	// itself nears the write timeout (under -race, a PUT of megabytes
	// did).
	size := 6 << 20
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_wmem"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 3 {
			if most, err := strconv.Atoi(f[2]); err == nil {
				size = max(size, most+2<<20)
			}
		}
	}
	dir := t.TempDir()
	db, in := filepath.Join(dir, "p.db"), filepath.Join(dir, "in.ndjson")
	line := `{"collection":"c","id":"big","body":{"pad":"` + strings.Repeat("p", size) + `"}}` + "\n"
	if err := os.WriteFile(in, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	maxDoc := strconv.Itoa(size + 1<<20)
	if err := dispatch(context.Background(), []string{"import", "--db", db, "--in", in, "--max-doc", maxDoc, "--max-line", strconv.Itoa(size + 2<<20)}, noEnv, stdio{nil, io.Discard, io.Discard}); err != nil {
		t.Fatalf("import: %v", err)
	}
	args := []string{"--addr", "127.0.0.1:0", "--db", db, "--log-format", "json", "--write-timeout", "1s", "--max-doc", maxDoc}
	log := serveOnce(t, args, func(base string) {
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
		// Read nothing past the write timeout (the scenario itself), then
		// all that comes: the server closes the connection once its write
		// has failed.
		time.Sleep(2 * time.Second)
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, _ := io.Copy(io.Discard, conn)
		if n >= int64(size) {
			t.Fatalf("read %d bytes: the whole answer came", n)
		}
	})
	if !strings.Contains(log, `"msg":"answer cut short"`) || !strings.Contains(log, `"path":"/docs/c/big"`) {
		t.Fatalf("no line says the answer was cut short:\n%.4000s", log)
	}
	if strings.Contains(log, `"problem":"internal"`) {
		t.Fatalf("a cut answer logged as an internal problem:\n%.4000s", log)
	}
}
