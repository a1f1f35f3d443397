package faults

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/handlers"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// TestDiskFull fills the device under patchd's database: writes are
// answered 507 insufficient-storage with Retry-After, never a 500; the
// full device is logged once a minute, not once a write; every
// acknowledged write stays readable with its ETag; and once space is freed,
// writes succeed again without a restart.
//
// It runs on a tmpfs of 8 MiB when this machine lets the test mount one
// (root, or CAP_SYS_ADMIN); a file system image of fixed size would need a
// mount too. Otherwise it injects ENOSPC into the store's writes of an
// in-process server. The log says which ran.
func TestDiskFull(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=8m,mode=0700")
	if err != nil {
		t.Logf("DISKFULL: ran with ENOSPC injected into the store's writes (mounting a tmpfs: %v)", err)
		diskFullInjected(t)
		return
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	t.Log("DISKFULL: ran on a tmpfs of 8 MiB")
	needBinary(t)
	// Ballast to delete once the device is full: the space that comes back.
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, bytes.Repeat([]byte{1}, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := &Server{Bin: patchdBin, DB: filepath.Join(mnt, "patchd.db")}
	if _, err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// Registered after the unmount, so it runs before it.
	t.Cleanup(func() {
		srv.Stop()
		if t.Failed() {
			t.Logf("patchd log:\n%s", tail(srv.Log(), 20000))
		}
	})
	base := "http://" + srv.Addr()
	diskFull(t, base, true, func() {
		if err := os.Remove(ballast); err != nil {
			t.Fatal(err)
		}
	}, srv.Log)
	if srv.Starts() != 1 {
		t.Fatalf("patchd was started %d times", srv.Starts())
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	// Opened for writing: a killed server's write-ahead log is replayed
	// first (a read-only open refuses a log with writes to replay).
	st, err := bolt.Open(srv.DB, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Check(context.Background()); err != nil {
		t.Fatalf("the file after the device filled up: %v", err)
	}
}

// tail returns the end of s.
func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// diskFull writes documents of 64 KiB to the server at base until writes
// are refused, checks the refusals and the log, calls free, and checks
// that writes succeed again and that every acknowledged one is there. On
// a real full device it checks a batch and a hot backup too.
func diskFull(t *testing.T, base string, device bool, free func(), log func() string) {
	t.Helper()
	c := client(10 * time.Second)
	pad := strings.Repeat("x", 64<<10)
	acked := map[string]string{} // path -> ETag
	refused := 0
	for i := 0; i < 400 && refused < 20; i++ { // bounded: 400 x 64 KiB is three times the device
		path := fmt.Sprintf("%s/docs/full/d%03d", base, i)
		r := call(context.Background(), c, "PUT", path, fmt.Sprintf(`{"i":%d,"pad":%q}`, i, pad), "Content-Type", "application/json")
		switch {
		case r.err != nil:
			t.Fatalf("PUT %d: %v", i, r.err)
		case r.status == 201:
			acked[path] = r.header.Get("ETag")
		case r.status == 507:
			if p := r.problem(); p != "insufficient-storage" || r.header.Get("Retry-After") == "" {
				t.Fatalf("507 with problem %q, Retry-After %q", p, r.header.Get("Retry-After"))
			}
			refused++
		default:
			t.Fatalf("PUT %d: %d %s", i, r.status, r.body)
		}
	}
	if refused < 20 {
		t.Fatalf("the device never filled up: %d writes acknowledged, %d refused", len(acked), refused)
	}
	text := log()
	if n := strings.Count(text, "storage full: writes are refused"); n != 1 {
		t.Fatalf("%d writes refused, %d lines about it in the log; want one a minute:\n%s", refused, n, tail(text, 5000))
	}
	if device {
		// A batch and a hot backup need room too: 507, as a single write.
		var writes []string
		for i := range 5 {
			writes = append(writes, fmt.Sprintf(`{"method":"PUT","path":"/docs/full/batch%d","body":{"pad":%q}}`, i, pad))
		}
		r := call(context.Background(), c, "POST", base+"/batch", `{"writes":[`+strings.Join(writes, ",")+`]}`, "Content-Type", "application/json")
		if r.err != nil || r.status != 507 || r.problem() != "insufficient-storage" || r.header.Get("Retry-After") == "" {
			t.Fatalf("a batch on a full device: %d %v %s (Retry-After %q), want 507 insufficient-storage", r.status, r.err, r.body, r.header.Get("Retry-After"))
		}
		r = call(context.Background(), c, "GET", base+"/admin/backup", "")
		if r.err != nil || r.status != 507 || r.problem() != "insufficient-storage" || r.header.Get("Retry-After") == "" {
			t.Fatalf("a backup on a full device: %d %v %.300s (Retry-After %q), want 507 insufficient-storage", r.status, r.err, r.body, r.header.Get("Retry-After"))
		}
		text = log()
	}
	for _, bad := range []string{`"msg":"internal error"`, `"status":500`} {
		if strings.Contains(text, bad) {
			t.Fatalf("the log holds %s:\n%s", bad, tail(text, 5000))
		}
	}
	free()
	r := call(context.Background(), c, "PUT", base+"/docs/full/after", `{"after":true}`, "Content-Type", "application/json")
	if r.err != nil || r.status != 201 {
		t.Fatalf("a write once space was freed: %d %v %s", r.status, r.err, r.body)
	}
	acked[base+"/docs/full/after"] = r.header.Get("ETag")
	for path, etag := range acked {
		r := mustCall(t, c, "GET", path, "", 200)
		sum := sha256.Sum256(r.body)
		if got := r.header.Get("ETag"); got != etag || got != `"`+hex.EncodeToString(sum[:16])+`"` {
			t.Fatalf("%s: ETag %s, acknowledged %s, body hashes to %x", path, got, etag, sum[:16])
		}
	}
	t.Logf("DISKFULL: %d writes acknowledged, %d refused with 507, all acknowledged read back after space was freed", len(acked), refused)
}

// fullStore fails every Update with what the bbolt store returns when a
// write finds the device full, once room writes have gone through, until
// freed is set.
type fullStore struct {
	store.Store
	room  atomic.Int64
	freed atomic.Bool
	path  string
}

func (s *fullStore) Update(ctx context.Context, c, id string, fn store.UpdateFunc) (*store.Document, error) {
	if !s.freed.Load() && s.room.Add(-1) < 0 {
		enospc := &os.PathError{Op: "write", Path: s.path, Err: syscall.ENOSPC}
		return nil, fmt.Errorf("store: update %s/%s: %w: %w", c, id, store.ErrNoSpace, enospc)
	}
	return s.Store.Update(ctx, c, id, fn)
}

// diskFullInjected runs diskFull against an in-process server whose store
// fails every write with ENOSPC once 40 documents are written, until space
// is "freed".
func diskFullInjected(t *testing.T) {
	path := filepath.Join(t.TempDir(), "patchd.db")
	st, err := bolt.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var mu sync.Mutex
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	hcfg := handlers.DefaultConfig()
	hcfg.Logger = logger
	dcfg := document.DefaultConfig()
	dcfg.Logger = logger
	fs := &fullStore{Store: st, path: path}
	fs.room.Store(40)
	h := handlers.New(document.New(fs, dcfg), hcfg)
	srv := httptest.NewServer(h.Echo())
	t.Cleanup(srv.Close)
	diskFull(t, srv.URL, false, func() { fs.freed.Store(true) }, func() string {
		mu.Lock()
		defer mu.Unlock()
		return logs.String()
	})
}

// writerFunc is an io.Writer made of a function.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
