package bolt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
	"github.com/patchd/patchd/store/storetest"
	"github.com/prometheus/client_golang/prometheus"
)

// fill writes n versions spread over a few documents, one of them deleted
// and created again, and returns the store.
func fill(t *testing.T, path string) *bolt.Store {
	t.Helper()
	s := mustOpenBolt(t, path, store.Options{})
	for i := range 6 {
		storetest.Commit(t, s, "c", fmt.Sprintf("d%d", i%3), &store.Change{Body: fmt.Appendf(nil, `{"n":%d}`, i), Kind: store.KindPut, Ops: []byte(`[]`)})
	}
	storetest.Commit(t, s, "c", "d1", &store.Change{Kind: store.KindDelete})
	storetest.Commit(t, s, "other", "x", &store.Change{Body: []byte(`{"big":12345678901234567890123}`), Kind: store.KindPut})
	storetest.Commit(t, s, "gone", "y", &store.Change{Body: []byte(`{}`), Kind: store.KindPut})
	storetest.Commit(t, s, "gone", "y", &store.Change{Kind: store.KindDelete})
	return s
}

// snapshot reads every document and its whole history through the Store
// interface.
func snapshot(t *testing.T, s store.Store) map[string]any {
	t.Helper()
	ctx := context.Background()
	out := map[string]any{}
	for _, c := range []string{"c", "other", "gone"} {
		entries, _, err := s.List(ctx, c, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			doc, err := s.Get(ctx, c, e.ID)
			if err != nil {
				t.Fatal(err)
			}
			out["doc "+c+"/"+e.ID] = *doc
		}
		for _, id := range []string{"d0", "d1", "d2", "x", "y"} {
			vs, _, err := s.History(ctx, c, id, 0, 0, 0)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			out["hist "+c+"/"+id] = vs
		}
	}
	return out
}

func TestBolt_BackupWhileWriting(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenBolt(t, filepath.Join(dir, "live.db"), store.Options{})
	ctx := context.Background()
	storetest.Commit(t, s, "c", "seed", &store.Change{Body: []byte(`{"seed":true}`), Kind: store.KindPut})

	// Writers run while the backup copies; each stops after a fixed number
	// of writes.
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				_, err := s.Update(ctx, "c", fmt.Sprintf("w%d", w), func(context.Context, *store.Document, store.History) (*store.Change, error) {
					return &store.Change{Body: fmt.Appendf(nil, `{"i":%d,"pad":"%s"}`, i, bytes.Repeat([]byte("x"), 500)), Kind: store.KindPut}, nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	out := filepath.Join(dir, "copy.db")
	var size int64 = -1
	var buf bytes.Buffer
	n, err := s.Backup(ctx, &buf, func(sz int64) { size = sz })
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if n != size || int64(buf.Len()) != n {
		t.Fatalf("wrote %d bytes, announced %d, buffer %d", n, size, buf.Len())
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := verifyFile(out); err != nil {
		t.Fatal(err)
	}
	cp := mustOpenBolt(t, out, store.Options{})
	if _, err := cp.Get(ctx, "c", "seed"); err != nil {
		t.Fatalf("the copy lacks a write made before it: %v", err)
	}
	// Every document in the copy agrees with its own history: the copy is
	// one snapshot, not a mix of two.
	for _, id := range []string{"w0", "w1"} {
		doc, err := cp.Get(ctx, "c", id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		vs, _, err := cp.History(ctx, "c", id, 0, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		last := vs[len(vs)-1]
		if doc.ETag != store.ETagOf(doc.Body) || last.ETag != doc.ETag || last.Seq != doc.Seq {
			t.Fatalf("%s: document seq %d %s, last version seq %d %s", id, doc.Seq, doc.ETag, last.Seq, last.ETag)
		}
	}
}

func TestBolt_BackupCancelled(t *testing.T) {
	s := fill(t, filepath.Join(t.TempDir(), "p.db"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf bytes.Buffer
	if _, err := s.Backup(ctx, &buf, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err=%v, want context.Canceled", err)
	}
}

// backupFile copies the stopped database at src into out through a
// read-only open and Backup, as the backup command does.
func backupFile(ctx context.Context, src, out string, timeout time.Duration) (int64, error) {
	s, err := bolt.Open(src, store.Options{ReadOnly: true, LockTimeout: timeout})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	var buf bytes.Buffer
	n, err := s.Backup(ctx, &buf, nil)
	if err != nil {
		return n, err
	}
	return n, os.WriteFile(out, buf.Bytes(), 0o600)
}

// verifyFile opens a database read-only and checks it.
func verifyFile(path string) error {
	s, err := bolt.Open(path, store.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Check(context.Background())
}

func TestBackupReadOnly(t *testing.T) {
	ctx := context.Background()
	t.Run("Stopped", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "p.db")
		s := fill(t, src)
		want := snapshot(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "b.db")
		n, err := backupFile(ctx, src, out, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(out); err != nil || fi.Size() != n {
			t.Fatalf("backup file: %v %v (wrote %d)", fi, err, n)
		}
		if err := verifyFile(out); err != nil {
			t.Fatal(err)
		}
		if got := snapshot(t, mustOpenBolt(t, out, store.Options{})); !reflect.DeepEqual(got, want) {
			t.Fatalf("backup differs:\n%v\nwant\n%v", got, want)
		}
	})
	t.Run("Locked", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "p.db")
		fill(t, src) // stays open: this process holds the file for writing
		_, err := backupFile(ctx, src, filepath.Join(dir, "b.db"), 100*time.Millisecond)
		if !errors.Is(err, store.ErrLocked) {
			t.Fatalf("err=%v, want ErrLocked", err)
		}
	})
	t.Run("Missing", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "none.db")
		if _, err := backupFile(ctx, src, filepath.Join(dir, "b.db"), time.Second); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err=%v, want ErrNotExist", err)
		}
		if _, err := os.Stat(src); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("a read-only open created its file")
		}
	})
	t.Run("NotPatchd", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "junk.db")
		if err := os.WriteFile(src, bytes.Repeat([]byte("junk"), 4096), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := backupFile(ctx, src, filepath.Join(dir, "b.db"), time.Second); err == nil {
			t.Fatal("backed up a file that is not a database")
		}
		if err := verifyFile(src); err == nil {
			t.Fatal("verified a file that is not a database")
		}
	})
}

func TestOpenReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	s := fill(t, path)
	want := snapshot(t, s)
	if _, err := bolt.Open(path, store.Options{ReadOnly: true, LockTimeout: 50 * time.Millisecond}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("open while held: %v, want ErrLocked", err)
	}
	s.Close()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := bolt.Open(path, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, ro); !reflect.DeepEqual(got, want) {
		t.Fatalf("read-only view differs")
	}
	_, err = ro.Update(ctx, "c", "new", func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return &store.Change{Body: []byte(`{}`), Kind: store.KindPut}, nil
	})
	if !errors.Is(err, store.ErrReadOnly) {
		t.Fatalf("Update on a read-only store: %v, want ErrReadOnly", err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("a read-only open changed the file")
	}
}

func TestBolt_Metrics(t *testing.T) {
	s := fill(t, filepath.Join(t.TempDir(), "p.db"))
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector())
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) == 0 {
				got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
	}
	// Current: c/d0, c/d2, other/x. Versions: 6 puts + delete on c, 1 on
	// other, put + delete on gone.
	for name, want := range map[string]float64{"patchd_documents": 3, "patchd_history_versions": 10, "patchd_collections": 3} {
		if got[name] != want {
			t.Errorf("%s=%v, want %v", name, got[name], want)
		}
	}
	for _, name := range []string{"patchd_bolt_file_size_bytes", "patchd_bolt_read_tx_total"} {
		if got[name] <= 0 {
			t.Errorf("%s=%v, want > 0", name, got[name])
		}
	}
}
