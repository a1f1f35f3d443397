package handlers_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/patchd/patchd/store"
)

// TestDamagedDocumentNotServed flips one byte of a stored body, as a disk
// may: the server still starts and serves the other documents, but never
// that one as good data: GET is 500 internal, the log says which document
// and why at error level, patchd_store_corrupt_reads_total counts it, and
// a write is refused the same way rather than applied to the damaged bytes.
func TestDamagedDocumentNotServed(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "patchd.db")
	s := startServerAt(t, path, store.Options{})
	s.create(t, "/docs/c/ok", `{"fine":true}`)
	etag := s.create(t, "/docs/c/bad", `{"needle":"0123456789abcdef"}`)
	s.stop()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("0123456789abcdef")) {
		t.Fatal("the body is not in the file")
	}
	data = bytes.ReplaceAll(data, []byte("0123456789abcdef"), []byte("0123456789abcdeF"))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	s = startServerAt(t, path, store.Options{Logger: logger}, func(c *config) { c.http.Logger = logger })
	expect(t, s.do(t, "GET", "/docs/c/ok", nil, ""), 200, "")
	r := s.do(t, "GET", "/docs/c/bad", nil, "")
	expect(t, r, 500, "internal")
	if bytes.Contains(r.body, []byte("abcde")) {
		t.Fatalf("the answer holds the damaged body: %s", r.body)
	}
	expect(t, s.do(t, "PATCH", "/docs/c/bad", hdr{"Content-Type", ctMerge, "If-Match", etag}, `{"x":1}`), 500, "internal")
	mu.Lock()
	text := logs.String()
	mu.Unlock()
	if !strings.Contains(text, `"level":"ERROR","msg":"stored document is damaged`) || !strings.Contains(text, `"collection":"c","id":"bad"`) {
		t.Fatalf("no error line naming the document:\n%s", text)
	}
	mustValue(t, s.scrape(t), 2, "patchd_store_corrupt_reads_total")
}
