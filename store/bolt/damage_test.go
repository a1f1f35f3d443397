package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
)

// These tests damage a real file the way disks and people do, then open it:
// Open must refuse it with an error wrapping store.ErrCorrupt (never a
// panic or a fault, which would kill the test binary), or serve it while
// refusing what is damaged.

// logBuffer is a logger whose lines a test reads.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// put writes a document through Update.
func put(t *testing.T, s *Store, c, id, body string) {
	t.Helper()
	_, err := s.Update(context.Background(), c, id, func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return &store.Change{Body: []byte(body), Kind: store.KindPut}, nil
	})
	if err != nil {
		t.Fatalf("put %s/%s: %v", c, id, err)
	}
}

// filled makes a closed database with n documents of about size bytes in
// collection c, loaded in one transaction, and returns its path.
func filled(t *testing.T, n, size int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "patchd.db")
	s, err := Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC()
	recs := make([]*store.Record, n)
	for i := range recs {
		id := fmt.Sprintf("d%05d", i)
		body := []byte(fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat("p", size)))
		etag := store.ETagOf(body)
		recs[i] = &store.Record{Collection: "c", ID: id,
			Doc:     &store.Document{Collection: "c", ID: id, Body: body, ETag: etag, Seq: 1, UpdatedAt: at},
			History: []store.Version{{Seq: 1, ETag: etag, At: at, Kind: store.KindPut}}}
	}
	if errs, err := s.Load(context.Background(), recs); err != nil || errors.Join(errs...) != nil {
		t.Fatalf("load: %v %v", err, errors.Join(errs...))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// pages returns the file's page size, its current meta and the id and
// flags of every page below the high water mark (overflow pages skipped).
func pages(t *testing.T, data []byte) (ps int, cur meta, flags map[uint64]uint16) {
	t.Helper()
	m0 := decodeMeta(data)
	m1 := decodeMeta(data[m0.pageSize:])
	if m0.err != nil || m1.err != nil {
		t.Fatalf("meta pages: %v, %v", m0.err, m1.err)
	}
	cur = m0
	if m1.txid > m0.txid {
		cur = m1
	}
	ps = int(cur.pageSize)
	flags = map[uint64]uint16{}
	for id := uint64(2); id < cur.pgid; id++ {
		off := int(id) * ps
		flags[id] = binary.LittleEndian.Uint16(data[off+8:])
		id += uint64(binary.LittleEndian.Uint32(data[off+12:])) // skip its overflow pages
	}
	return ps, cur, flags
}

// dropFreelist makes both meta pages name no freelist, as commits leave
// them until Close writes the freelist: the file as a crash leaves it.
func dropFreelist(data []byte, ps int) {
	for _, off := range []int{0, ps} {
		m := data[off+pageHeaderLen : off+pageHeaderLen+metaLen]
		binary.LittleEndian.PutUint64(m[32:], noFreelist)
		h := fnv.New64a()
		_, _ = h.Write(m[:metaSumLen])
		binary.LittleEndian.PutUint64(m[metaSumLen:], h.Sum64())
	}
}

// damage rewrites the file at path with f.
func damage(t *testing.T, path string, f func(data []byte) []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func wantCorrupt(t *testing.T, path string, opts store.Options, want string) {
	t.Helper()
	for _, ro := range []bool{false, true} {
		opts.ReadOnly = ro
		s, err := Open(path, opts)
		if err == nil {
			s.Close()
			t.Fatalf("Open(read-only %v) of a damaged file succeeded", ro)
		}
		if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), want) {
			t.Fatalf("Open(read-only %v): %v; want store.ErrCorrupt saying %q", ro, err, want)
		}
	}
}

func TestOpenRefusesDamagedFiles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, data []byte) []byte
		want   string
	}{
		{name: "empty", damage: func(*testing.T, []byte) []byte { return nil }, want: "0 bytes"},
		{name: "random", damage: func(_ *testing.T, data []byte) []byte {
			for i := range data {
				data[i] = byte(i*7919 + i/3)
			}
			return data
		}, want: "neither meta page is valid"},
		{name: "truncated", damage: func(t *testing.T, data []byte) []byte {
			ps, cur, _ := pages(t, data)
			return data[:int(cur.pgid)*ps/2] // the file may run past its pages (bbolt grows it ahead)
		}, want: "truncated"},
		{name: "truncated within the meta pages", damage: func(_ *testing.T, data []byte) []byte { return data[:100] }, want: "truncated"},
		{name: "both meta pages", damage: func(t *testing.T, data []byte) []byte {
			ps, _, _ := pages(t, data)
			data[pageHeaderLen+20] ^= 1
			data[ps+pageHeaderLen+20] ^= 1
			return data
		}, want: "neither meta page is valid"},
		{name: "zeroed branch pages", damage: func(t *testing.T, data []byte) []byte {
			ps, _, flags := pages(t, data)
			n := 0
			for id, f := range flags {
				if f == flagBranch {
					clear(data[int(id)*ps : int(id+1)*ps])
					n++
				}
			}
			if n == 0 {
				t.Fatal("the file has no branch page")
			}
			return data
		}, want: "bbolt failed on it"},
		{name: "zeroed branch pages, no freelist written (a crash)", damage: func(t *testing.T, data []byte) []byte {
			ps, _, flags := pages(t, data)
			dropFreelist(data, ps)
			for id, f := range flags {
				if f == flagBranch {
					clear(data[int(id)*ps : int(id+1)*ps])
				}
			}
			return data
		}, want: "bbolt failed on it"},
		{name: "freelist naming the root", damage: func(t *testing.T, data []byte) []byte {
			ps, cur, _ := pages(t, data)
			off := int(cur.freelist) * ps
			binary.LittleEndian.PutUint16(data[off+10:], 1)
			binary.LittleEndian.PutUint64(data[off+pageHeaderLen:], cur.root)
			return data
		}, want: "the freelist"},
		{name: "freelist out of range", damage: func(t *testing.T, data []byte) []byte {
			ps, cur, _ := pages(t, data)
			off := int(cur.freelist) * ps
			binary.LittleEndian.PutUint16(data[off+10:], 1)
			binary.LittleEndian.PutUint64(data[off+pageHeaderLen:], cur.pgid+1000)
			return data
		}, want: "outside the file's pages"},
		{name: "freelist page zeroed", damage: func(t *testing.T, data []byte) []byte {
			ps, cur, _ := pages(t, data)
			clear(data[int(cur.freelist)*ps : int(cur.freelist+1)*ps])
			return data
		}, want: "no freelist page"},
		{name: "root page zeroed", damage: func(t *testing.T, data []byte) []byte {
			ps, cur, _ := pages(t, data)
			clear(data[int(cur.root)*ps : int(cur.root+1)*ps])
			return data
		}, want: "neither a branch nor a leaf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filled(t, 600, 200) // about 40 pages: branch pages in the docs tree
			damage(t, path, func(data []byte) []byte { return tc.damage(t, data) })
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			wantCorrupt(t, path, store.Options{}, tc.want)
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Fatal("opening changed the damaged file")
			}
		})
	}
}

// TestOpenCreatesOnlyMissingFiles: a missing file is created, and the log
// says so; an existing one, empty or not, is never initialized afresh.
func TestOpenCreatesOnlyMissingFiles(t *testing.T) {
	var logs logBuffer
	path := filepath.Join(t.TempDir(), "new.db")
	s, err := Open(path, store.Options{Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "c", "d", `{}`)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"msg":"created a new database"`) {
		t.Fatalf("no line about the new file:\n%s", logs.String())
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("the directory holds %d files, want only the database", len(entries))
	}
	logs = logBuffer{}
	s, err = Open(path, store.Options{Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if strings.Contains(logs.String(), "created") {
		t.Fatalf("an existing file was reported created:\n%s", logs.String())
	}
}

// TestOpenRefusesADirectory: a directory named as the database is said to
// be one (it was reported as a damaged bbolt file), for reading and for
// writing, and it is not taken as an outage to wait out.
func TestOpenRefusesADirectory(t *testing.T) {
	dir := t.TempDir()
	for _, ro := range []bool{false, true} {
		_, err := Open(dir, store.Options{ReadOnly: ro})
		if err == nil || !strings.Contains(err.Error(), "is a directory, not a database file") || errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("read-only %v: %v", ro, err)
		}
	}
}

// TestDamagedBody flips one byte of a stored body: the file opens (its
// structure is sound), but the document is never served nor patched as
// good data: Get and Update fail with store.ErrCorrupt, the log names the
// document, and the metric counts it. Other documents are served.
func TestDamagedBody(t *testing.T) {
	path := filepath.Join(t.TempDir(), "patchd.db")
	s, err := Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "c", "ok", `{"fine":true}`)
	put(t, s, "c", "bad", `{"needle":"0123456789abcdef"}`)
	s.Close()
	damage(t, path, func(data []byte) []byte {
		n := 0
		for i := bytes.Index(data, []byte("0123456789abcdef")); i >= 0; i = bytes.Index(data, []byte("0123456789abcdef")) {
			data[i] = 'X' // every copy: the document's and its creation's in history
			n++
		}
		if n == 0 {
			t.Fatal("the body is not in the file")
		}
		return data
	})
	var logs logBuffer
	s, err = Open(path, store.Options{Logger: logs.logger()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	if doc, err := s.Get(ctx, "c", "ok"); err != nil || string(doc.Body) != `{"fine":true}` {
		t.Fatalf("Get(ok) = %v, %v", doc, err)
	}
	doc, err := s.Get(ctx, "c", "bad")
	if !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Get(bad) = %+v, %v; want store.ErrCorrupt", doc, err)
	}
	called := false
	_, err = s.Update(ctx, "c", "bad", func(context.Context, *store.Document, store.History) (*store.Change, error) {
		called = true
		return &store.Change{Body: []byte(`{}`), Kind: store.KindPut}, nil
	})
	if !errors.Is(err, store.ErrCorrupt) || called {
		t.Fatalf("Update(bad): %v, UpdateFunc called %v; want store.ErrCorrupt before it", err, called)
	}
	if !strings.Contains(logs.String(), `"collection":"c","id":"bad"`) {
		t.Fatalf("the log does not name the document:\n%s", logs.String())
	}
	if n := s.corruptReads.Load(); n != 2 {
		t.Fatalf("corrupt reads counted %d, want 2", n)
	}
	// A write to a sound document still goes through.
	put(t, s, "c", "ok", `{"fine":"still"}`)
}

// TestDamagedMetaPage: one damaged meta page is no reason to refuse a file
// (it is what a torn write of it leaves), but it is logged, and Check
// reports it.
func TestDamagedMetaPage(t *testing.T) {
	path := filled(t, 5, 10)
	damage(t, path, func(data []byte) []byte {
		data[pageHeaderLen+48] ^= 0xff // meta page 0's txid: its checksum no longer matches
		return data
	})
	var logs logBuffer
	s, err := Open(path, store.Options{Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(logs.String(), "meta page 0 is not valid") || !strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Fatalf("the damaged meta page is not logged as an error:\n%s", logs.String())
	}
	err = s.Check(context.Background())
	if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), "meta page 0") {
		t.Fatalf("Check: %v; want the damaged meta page", err)
	}
}

// TestDamageDeepInTheFile zeroes a leaf page in the middle of a collection,
// which the checks at open do not reach: reads and writes of it fail with
// store.ErrCorrupt instead of crashing the process, and Check finds it.
func TestDamageDeepInTheFile(t *testing.T) {
	path := filled(t, 600, 200)
	damage(t, path, func(data []byte) []byte {
		ps, _, flags := pages(t, data)
		var leaves []uint64
		for id, f := range flags {
			if f == flagLeaf && bytes.Contains(data[int(id)*ps:int(id+1)*ps], []byte(`"i":300,`)) {
				leaves = append(leaves, id)
			}
		}
		if len(leaves) != 1 {
			t.Fatalf("%d leaf pages hold d00300", len(leaves))
		}
		clear(data[int(leaves[0])*ps : int(leaves[0]+1)*ps])
		return data
	})
	var logs logBuffer
	s, err := Open(path, store.Options{Logger: logs.logger()})
	if err != nil {
		t.Fatalf("Open: %v (the damage is beyond what Open checks)", err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Get(ctx, "c", "d00000"); err != nil {
		t.Fatalf("Get(d00000): %v", err)
	}
	if _, err := s.Get(ctx, "c", "d00300"); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Get(d00300): %v; want store.ErrCorrupt", err)
	}
	if err := s.Check(ctx); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Check: %v; want store.ErrCorrupt", err)
	}
	// A write of the damaged document fails before its UpdateFunc runs.
	called := false
	_, err = s.Update(ctx, "c", "d00300", func(context.Context, *store.Document, store.History) (*store.Change, error) {
		called = true
		return &store.Change{Body: []byte(`{}`), Kind: store.KindPut}, nil
	})
	if !errors.Is(err, store.ErrCorrupt) || called {
		t.Fatalf("Update(d00300): %v, UpdateFunc called %v; want store.ErrCorrupt", err, called)
	}
}

// TestWritesStopAfterDamage: when bbolt panics in a write transaction (as
// it does on a damaged freelist or page it must rewrite; injected here),
// the write fails with store.ErrCorrupt, the process lives, and every later
// write is refused, so that the damage is not spread; reads go on.
func TestWritesStopAfterDamage(t *testing.T) {
	var logs logBuffer
	s, err := Open(filepath.Join(t.TempDir(), "patchd.db"), store.Options{Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put(t, s, "c", "a", `{"a":1}`)
	s.committer.putFault = func(string, string, uint64) error { panic("invalid page type: 7: 0") }
	write := func(id string) error {
		_, err := s.Update(context.Background(), "c", id, func(context.Context, *store.Document, store.History) (*store.Change, error) {
			return &store.Change{Body: []byte(`{"b":2}`), Kind: store.KindPut}, nil
		})
		return err
	}
	if err := write("b"); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("the write bbolt panicked on: %v; want store.ErrCorrupt", err)
	}
	s.committer.putFault = nil
	if err := write("c"); !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), "writes stopped") {
		t.Fatalf("a later write: %v; want store.ErrCorrupt (writes stopped)", err)
	}
	if doc, err := s.Get(context.Background(), "c", "a"); err != nil || string(doc.Body) != `{"a":1}` {
		t.Fatalf("Get after the damage: %v, %v", doc, err)
	}
	if !strings.Contains(logs.String(), "writes are refused from now on") {
		t.Fatalf("the log does not say that writes stopped:\n%s", logs.String())
	}
}

// TestNoSpace: a write that fails because the device is full (ENOSPC from
// the file, injected here) fails with store.ErrNoSpace, which keeps the
// system's error, commits nothing, and the same write succeeds once the
// device has room again.
func TestNoSpace(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.committer.putFault = func(string, string, uint64) error {
		return &os.PathError{Op: "write", Path: s.path, Err: syscall.ENOSPC}
	}
	write := func() error {
		_, err := s.Update(context.Background(), "c", "d", func(context.Context, *store.Document, store.History) (*store.Change, error) {
			return &store.Change{Body: []byte(`{"a":1}`), Kind: store.KindPut}, nil
		})
		return err
	}
	if err := write(); !errors.Is(err, store.ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a write on a full device: %v; want store.ErrNoSpace and ENOSPC", err)
	}
	if _, err := s.Get(context.Background(), "c", "d"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after the failed write: %v", err)
	}
	s.committer.putFault = nil
	if err := write(); err != nil {
		t.Fatalf("the write once there is room: %v", err)
	}
}

// TestFreelistWrittenAtClose: commits leave the freelist unwritten; the
// file as a crash leaves it (copied while the store is open) opens, with
// every committed write, passes Check and takes writes, and Close writes
// the freelist, so that the next Open need not rebuild it.
func TestFreelistWrittenAtClose(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "patchd.db")
	s, err := Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		put(t, s, "c", fmt.Sprintf("d%d", i%50), fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat("p", 300)))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, cur, _ := pages(t, data); cur.freelist != noFreelist {
		t.Fatalf("an open store's file names freelist page %d, want none", cur.freelist)
	}
	closed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, cur, _ := pages(t, closed); cur.freelist == noFreelist {
		t.Fatal("Close wrote no freelist")
	}

	crashed := filepath.Join(dir, "crashed.db")
	if err := os.WriteFile(crashed, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(crashed, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		doc, err := s.Get(context.Background(), "c", fmt.Sprintf("d%d", i))
		if err != nil || doc.Seq != 4 {
			t.Fatalf("d%d after the crash: %+v %v", i, doc, err)
		}
	}
	for i := range 100 {
		put(t, s, "c", fmt.Sprintf("e%d", i), fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat("q", 300)))
	}
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
