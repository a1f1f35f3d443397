package cli

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// commit writes a document version straight into st.
func commit(t *testing.T, st store.Store, c, id, body string) {
	t.Helper()
	_, err := st.Update(context.Background(), c, id, func(_ context.Context, cur *store.Document, _ store.History) (*store.Change, error) {
		v, err := patch.Parse([]byte(body), patch.Limits{})
		if err != nil {
			return nil, err
		}
		ops := patch.EncodeCreate([]byte(body))
		if cur != nil {
			old, _ := patch.Parse(cur.Body, patch.Limits{})
			ops = patch.EncodeOps([]patch.Op{{Kind: patch.OpRoot, Value: v, Old: old, HadOld: true}})
		}
		return &store.Change{Body: []byte(body), Kind: store.KindPut, Ops: ops}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCheckCommand runs patchd check on a sound file, then on files damaged
// in their bytes and in their history: every problem is a line naming its
// document, and the exit status says whether there was one. Damage that
// leaves no database to read is exit status 1 with a clear message, for
// check and for serve alike, never a panic.
func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "p.db")
	st, err := bolt.Open(db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, st, "n", "a", `{"a":1}`)
	commit(t, st, "n", "a", `{"a":2}`)
	commit(t, st, "n", "b", `{"needle":"0123456789abcdef"}`)
	commit(t, st, "n", "gone", `{}`)
	if _, err := st.Update(context.Background(), "n", "gone", func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return &store.Change{Kind: store.KindDelete, Ops: patch.EncodeDelete([]byte(`{}`))}, nil
	}); err != nil {
		t.Fatal(err)
	}
	// A history that does not lead to its document: version 2 claims an op
	// that does not undo to version 1.
	at := time.Now().UTC()
	body := []byte(`{"x":1}`)
	rec := &store.Record{Collection: "n", ID: "lie",
		Doc: &store.Document{Collection: "n", ID: "lie", Body: body, ETag: store.ETagOf(body), Seq: 2, UpdatedAt: at},
		History: []store.Version{
			{Seq: 1, ETag: store.ETagOf([]byte(`{"x":0}`)), At: at, Kind: store.KindPut, Ops: patch.EncodeCreate([]byte(`{"x":0}`))},
			{Seq: 2, ETag: store.ETagOf(body), At: at, Kind: store.KindJSONPatch,
				Ops: patch.EncodeOps([]patch.Op{{Kind: patch.OpPut, Path: patch.Path{patch.Key("x")}, Value: patch.Number("1"), Old: patch.Number("5"), HadOld: true}})},
		}}
	if errs, err := st.Load(context.Background(), []*store.Record{rec}); err != nil || errs[0] != nil {
		t.Fatalf("load: %v %v", err, errs)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	code, out, errs := exit(t, "check", "--db", db)
	if code != 1 || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "n/lie: ") || !strings.Contains(out, "undoing seq 2") {
		t.Fatalf("check with a broken history: exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(errs, "3 documents, 1 deleted with history, 7 versions: 1 problem") {
		t.Fatalf("check's summary: %q", errs)
	}

	// One flipped byte in a stored body (and in its creation's history).
	data, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(data, []byte("0123456789abcdef")) == 0 {
		t.Fatal("the body is not in the file")
	}
	data = bytes.ReplaceAll(data, []byte("0123456789abcdef"), []byte("X123456789abcdef"))
	if err := os.WriteFile(db, data, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs = exit(t, "check", "--db", db)
	if code != 1 || !strings.Contains(out, "n/b: ") || !strings.Contains(out, "not that of the body") || !strings.Contains(out, "n/lie: ") {
		t.Fatalf("check with a damaged body: exit %d\n%s%s", code, out, errs)
	}

	// A sound file.
	good := filepath.Join(dir, "good.db")
	st, err = bolt.Open(good, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, st, "n", "a", `{"a":1}`)
	commit(t, st, "n", "a", `{"a":2}`)
	st.Close()
	if code, out, errs := exit(t, "check", "--db", good); code != 0 || out != "" || !strings.Contains(errs, "no problems") {
		t.Fatalf("check of a sound file: exit %d, %q, %q", code, out, errs)
	}

	// A database that cannot be reached is not called damaged.
	if code, out, errs := exit(t, "check", "--db", "postgres://u@127.0.0.1:1/x?connect_timeout=1"); code != 1 || out != "" ||
		!strings.Contains(errs, "cannot be read now") || strings.Contains(errs, "damaged") {
		t.Fatalf("check of an unreachable database: exit %d, %q, %q", code, out, errs)
	}

	// A stored schema the server cannot compile (put there around the
	// API) is a problem: every write to its collection fails.
	st, err = bolt.Open(good, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, st, store.SchemaCollection, "n", `{"pattern":"("}`)
	st.Close()
	if code, out, errs := exit(t, "check", "--db", good); code != 1 || !strings.HasPrefix(out, store.SchemaCollection+"/n: the schema of collection n does not compile") {
		t.Fatalf("check of a schema that does not compile: exit %d, %q, %q", code, out, errs)
	}

	// Files that hold no database to read: exit 1 with a message, from
	// check and from serve.
	for name, damage := range map[string]func([]byte) []byte{
		"empty":     func([]byte) []byte { return nil },
		"truncated": func(b []byte) []byte { return b[:3*binary.LittleEndian.Uint32(b[24:])] }, // three pages: the meta pages and one more
		"random": func(b []byte) []byte {
			for i := range b {
				b[i] = byte(i*31 + i/7)
			}
			return b
		},
	} {
		data, err := os.ReadFile(good)
		if err != nil {
			t.Fatal(err)
		}
		bad := filepath.Join(dir, name+".db")
		if err := os.WriteFile(bad, damage(data), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"check", "--db", bad}, {"--addr", "127.0.0.1:0", "--db", bad}} {
			code, _, errs := exit(t, args...)
			if code != 1 || !strings.Contains(errs, "stored data is damaged") || strings.Contains(errs, "goroutine") {
				t.Errorf("%s: %v: exit %d, %q", name, args, code, errs)
			}
		}
	}
}

// TestCheckMessagesPrintable: what damaged data holds reaches the terminal
// escaped (a damaged ETag printed raw sent its bytes to it).
func TestCheckMessagesPrintable(t *testing.T) {
	var out strings.Builder
	c := &checker{out: &out}
	c.problem("c/d", "etag %s", "\"\x1b[31mred\xff\x00\"")
	c.problem("c/e", "é ok, \uFFFD kept")
	want := "c/d: etag \"\\u001b[31mred\\xff\\u0000\"\nc/e: é ok, \uFFFD kept\n"
	if out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
}
