package bolt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
	"github.com/patchd/patchd/store/storetest"
	bbolt "go.etcd.io/bbolt"
)

// mustOpenBolt opens a Bolt store at path and, at cleanup, checks its
// consistency and closes it (both may find it closed already).
func mustOpenBolt(tb testing.TB, path string, opts store.Options) *bolt.Store {
	tb.Helper()
	s, err := bolt.Open(path, opts)
	if err != nil {
		tb.Fatalf("OpenBolt: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Check(context.Background()); err != nil && !errors.Is(err, store.ErrClosed) {
			tb.Errorf("Check: %v", err)
		}
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestBolt_Conformance(t *testing.T) {
	storetest.RunConformance(t, func(t *testing.T, opts storetest.Options) store.Store {
		return mustOpenBolt(t, filepath.Join(t.TempDir(), "patchd.db"), store.Options{
			Retention:           opts.Retention,
			Now:                 opts.Now,
			Timeout:             opts.Timeout,
			IdempotencyPerScope: opts.IdempotencyPerScope,
			MaxHistoryRead:      opts.MaxHistoryRead,
		})
	})
}

func TestBolt_Reopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "patchd.db")
	now := time.Date(2025, time.May, 6, 7, 8, 9, 123456789, time.UTC)
	opts := store.Options{Now: func() time.Time { return now }}

	s := mustOpenBolt(t, path, opts)
	storetest.Commit(t, s, "notes", "a", &store.Change{Body: []byte(`{"a":1}`), Kind: store.KindPut})
	storetest.Commit(t, s, "notes", "a", &store.Change{
		Body:        []byte(`{"a":2}`),
		Kind:        store.KindJSONPatch,
		Ops:         []byte(`[{"op":"replace","path":"/a","value":2}]`),
		RebasedFrom: store.ETagOf([]byte(`{"a":1}`)),
	})
	storetest.Commit(t, s, "notes", "b", &store.Change{Body: []byte(`{"b":1}`), Kind: store.KindPut})
	storetest.Commit(t, s, "notes", "b", &store.Change{Kind: store.KindDelete})
	storetest.Commit(t, s, "todo", "c", &store.Change{Body: []byte(`{}`), Kind: store.KindMergePatch, Ops: []byte(`[]`)})

	type snapshot struct {
		docs    map[string]*store.Document
		history map[string][]store.Version
		lists   map[string][]store.ListEntry
	}
	read := func(s store.Store) snapshot {
		t.Helper()
		snap := snapshot{
			docs:    make(map[string]*store.Document),
			history: make(map[string][]store.Version),
			lists:   make(map[string][]store.ListEntry),
		}
		for _, name := range []string{"notes/a", "todo/c"} {
			c, id, _ := strings.Cut(name, "/")
			doc, err := s.Get(ctx, c, id)
			if err != nil {
				t.Fatalf("Get(%s): %v", name, err)
			}
			snap.docs[name] = doc
		}
		for _, name := range []string{"notes/a", "notes/b", "todo/c"} {
			c, id, _ := strings.Cut(name, "/")
			vs, _, err := s.History(ctx, c, id, 0, 100, 0)
			if err != nil {
				t.Fatalf("History(%s): %v", name, err)
			}
			snap.history[name] = vs
		}
		for _, c := range []string{"notes", "todo"} {
			es, _, err := s.List(ctx, c, "", 100)
			if err != nil {
				t.Fatalf("List(%s): %v", c, err)
			}
			snap.lists[c] = es
		}
		return snap
	}
	before := read(s)
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = mustOpenBolt(t, path, opts)
	after := read(s)
	if !reflect.DeepEqual(after, before) {
		t.Fatalf("after reopen:\n%+v\nwant\n%+v", after, before)
	}
	if got, want := after.docs["notes/a"].UpdatedAt, now; !got.Equal(want) {
		t.Errorf("UpdatedAt = %v, want %v (nanoseconds kept)", got, want)
	}
	if _, err := s.Get(ctx, "notes", "b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(notes/b) after reopen: error %v, want ErrNotFound", err)
	}
	doc := storetest.Commit(t, s, "notes", "b", &store.Change{Body: []byte(`{"b":2}`), Kind: store.KindPut})
	if got, want := doc.Seq, uint64(3); got != want {
		t.Errorf("Seq of notes/b recreated after reopen = %d, want %d", got, want)
	}
}

func TestBolt_Locked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "patchd.db")
	mustOpenBolt(t, path, store.Options{})
	for _, tc := range []struct {
		name    string
		timeout time.Duration
	}{
		{name: "explicit timeout", timeout: 200 * time.Millisecond},
		{name: "default timeout", timeout: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			s, err := bolt.Open(path, store.Options{LockTimeout: tc.timeout})
			if err == nil {
				_ = s.Close()
				t.Fatal("second OpenBolt on an open file succeeded")
			}
			if !errors.Is(err, store.ErrLocked) {
				t.Errorf("error %v, want ErrLocked", err)
			}
			if want := fmt.Sprintf("(PID %d)", os.Getpid()); runtime.GOOS == "linux" && !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name the holder %s", err, want)
			}
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("second OpenBolt took %v", elapsed)
			}
		})
	}
}

func TestBolt_Format(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, path string)
		wantErr error // nil: any error
	}{
		{
			name: "unknown format",
			setup: func(t *testing.T, path string) {
				s, err := bolt.Open(path, store.Options{})
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				rawUpdate(t, path, func(tx *bbolt.Tx) error {
					return tx.Bucket([]byte("meta")).Put([]byte("format"), []byte("4"))
				})
			},
			wantErr: store.ErrUnknownFormat,
		},
		{
			name: "another application's bbolt file",
			setup: func(t *testing.T, path string) {
				rawUpdate(t, path, func(tx *bbolt.Tx) error {
					_, err := tx.CreateBucket([]byte("widgets"))
					return err
				})
			},
			wantErr: store.ErrUnknownFormat,
		},
		{
			name: "not a bbolt file",
			setup: func(t *testing.T, path string) {
				if err := os.WriteFile(path, bytes.Repeat([]byte("not a database\n"), 1000), 0o600); err != nil {
					t.Fatal(err)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "patchd.db")
			tc.setup(t, path)
			s, err := bolt.Open(path, store.Options{})
			if err == nil {
				_ = s.Close()
				t.Fatal("OpenBolt succeeded")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("OpenBolt error %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// rawUpdate runs fn in a write transaction on the bbolt file at path.
func rawUpdate(t *testing.T, path string, fn func(*bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func TestBolt_FileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "patchd.db")
	mustOpenBolt(t, path, store.Options{})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
		t.Errorf("mode %v, want %v", got, want)
	}
}

func TestBolt_InvalidKey(t *testing.T) {
	ctx := context.Background()
	s := mustOpenBolt(t, filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	for _, tc := range []struct {
		name       string
		collection string
		id         string
	}{
		{name: "empty id", collection: "notes", id: ""},
		{name: "empty collection", collection: "", id: "a"},
		{name: "NUL in id", collection: "notes", id: "a\x00b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Update(ctx, tc.collection, tc.id, func(context.Context, *store.Document, store.History) (*store.Change, error) {
				return &store.Change{Body: []byte(`{}`), Kind: store.KindPut}, nil
			})
			if err == nil {
				t.Fatal("Update succeeded")
			}
			if _, err := s.Get(ctx, tc.collection, tc.id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get error %v, want ErrNotFound", err)
			}
			if _, _, err := s.History(ctx, tc.collection, tc.id, 0, 10, 0); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("History error %v, want ErrNotFound", err)
			}
		})
	}
}

func TestBolt_HistoryOutlivesUpdateFunc(t *testing.T) {
	ctx := context.Background()
	s := mustOpenBolt(t, filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	doc := storetest.Commit(t, s, "notes", "a", &store.Change{Body: []byte(`{}`), Kind: store.KindPut})
	var kept store.History
	if _, err := s.Update(ctx, "notes", "a", func(_ context.Context, _ *store.Document, h store.History) (*store.Change, error) {
		kept = h
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := kept.Since(ctx, []string{doc.ETag}); err == nil {
		t.Error("Since after its UpdateFunc returned succeeded")
	}
}

func TestBolt_Logger(t *testing.T) {
	var buf bytes.Buffer
	var tick atomic.Int64
	s := mustOpenBolt(t, filepath.Join(t.TempDir(), "patchd.db"), store.Options{
		Retention: store.Retention{Versions: 1, Age: time.Nanosecond},
		Now:       func() time.Time { return time.Unix(tick.Add(1), 0) },
		Logger:    slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	storetest.Commit(t, s, "notes", "a", &store.Change{Body: []byte(`{"a":1}`), Kind: store.KindPut})
	storetest.Commit(t, s, "notes", "a", &store.Change{Body: []byte(`{"a":2}`), Kind: store.KindPut})
	if out := buf.String(); !strings.Contains(out, "pruned history") || !strings.Contains(out, "component=store") {
		t.Errorf("log output:\n%s\nwant a component=store \"pruned history\" event", out)
	}
}

func BenchmarkBoltUpdate(b *testing.B) {
	s := mustOpenBolt(b, filepath.Join(b.TempDir(), "patchd.db"), store.Options{})
	body := fmt.Appendf(nil, `{"pad":"%s"}`, strings.Repeat("x", 1024-len(`{"pad":""}`)))
	change := &store.Change{Body: body, Kind: store.KindPut}
	fn := func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return change, nil
	}
	var next atomic.Int64
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id := fmt.Sprintf("doc-%d", next.Add(1))
		for pb.Next() {
			if _, err := s.Update(context.Background(), "bench", id, fn); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
