package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

func TestMigrateFlags(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.db")
	existing := filepath.Join(dir, "m.db")
	if err := os.WriteFile(existing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{args: nil, want: "--from and --to are required"},
		{args: []string{"--from", "x.db"}, want: "--from and --to are required"},
		{args: []string{"--from", "x.db", "--to", "x.db"}, want: "the same database"},
		{args: []string{"--from", existing, "--to", dir + "/../" + filepath.Base(dir) + "/m.db"}, want: "the same database"},
		{args: []string{"--from", missing, "--to", "postgres://u@localhost/db"}, want: "no such file"},
		{args: []string{"--from", "a", "--to", "postgres://h/db", "extra"}, want: "unexpected argument"},
		{args: []string{"--bogus"}, want: "flag provided but not defined"},
	} {
		var stderr bytes.Buffer
		err := dispatch(context.Background(), append([]string{"migrate"}, tc.args...), noEnv, stdio{nil, io.Discard, &stderr})
		if err == nil || !strings.Contains(err.Error()+stderr.String(), tc.want) {
			t.Errorf("migrate %q: %v (stderr %q), want %q", tc.args, err, stderr.String(), tc.want)
		}
	}
}

// TestFailedCommandsLeaveNoDatabase: an import or a migrate that fails
// before writing anything leaves no new (empty) database file behind; a
// file that existed before is left as it was.
func TestFailedCommandsLeaveNoDatabase(t *testing.T) {
	dir := t.TempDir()
	for name, args := range map[string][]string{
		"ImportFromDirectory":    {"import", "--db", filepath.Join(dir, "i1.db"), "--in", dir},
		"ImportAllRefused":       {"import", "--db", filepath.Join(dir, "i2.db"), "--in", writeTemp(t, dir, "bad.ndjson", "{\n")},
		"MigrateFromUnreachable": {"migrate", "--from", "postgres://u@127.0.0.1:1/x?connect_timeout=1", "--to", filepath.Join(dir, "m.db")},
	} {
		t.Run(name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := dispatch(context.Background(), args, noEnv, stdio{strings.NewReader(""), io.Discard, &stderr})
			if err == nil {
				t.Fatalf("%v succeeded", args)
			}
			db := args[slices.Index(args, "--db")+1:]
			if i := slices.Index(args, "--to"); i >= 0 {
				db = args[i+1:]
			}
			if _, serr := os.Stat(db[0]); !errors.Is(serr, fs.ErrNotExist) {
				t.Fatalf("%v failed (%v) and left %s (%v)", args, err, db[0], serr)
			}
			if strings.Contains(name, "Directory") && !strings.Contains(err.Error(), "is a directory") {
				t.Fatalf("import from a directory: %v", err)
			}
		})
	}
	// A database that existed keeps what it holds.
	kept := filepath.Join(dir, "kept.db")
	if err := dispatch(context.Background(), []string{"import", "--db", kept, "--in", writeTemp(t, dir, "ok.ndjson", `{"collection":"c","id":"a","body":{}}`+"\n")}, noEnv, stdio{nil, io.Discard, io.Discard}); err != nil {
		t.Fatal(err)
	}
	if err := dispatch(context.Background(), []string{"import", "--db", kept, "--in", dir}, noEnv, stdio{nil, io.Discard, io.Discard}); err == nil {
		t.Fatal("import from a directory succeeded")
	}
	if _, err := os.Stat(kept); err != nil {
		t.Fatalf("a database that existed was removed: %v", err)
	}
}

// writeTemp writes a file in dir and returns its path.
func writeTemp(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMigrateProgress(t *testing.T) {
	reports := []store.CopyProgress{
		{Phase: "copy", Done: 0, Total: 4},
		{Phase: "copy", Done: 2, Total: 4},
		{Phase: "copy", Done: 4, Total: 4},
		{Phase: "verify", Done: 0, Total: 4},
		{Phase: "verify", Done: 4, Total: 4},
	}
	var tty bytes.Buffer
	p := &progress{w: &tty, tty: true, now: time.Now}
	for _, r := range reports {
		p.report(r)
	}
	p.finish()
	want := "\rcopy   [..............................] 0/4 documents" +
		"\rcopy   [###############...............] 2/4 documents" +
		"\rcopy   [##############################] 4/4 documents\n" +
		"\rverify [..............................] 0/4 documents" +
		"\rverify [##############################] 4/4 documents\n"
	if tty.String() != want {
		t.Errorf("terminal output:\n%q\nwant\n%q", tty.String(), want)
	}

	// Not a terminal: plain lines, the first and last of each phase, and
	// at most one a second between them.
	var plain bytes.Buffer
	clock := time.Unix(0, 0)
	p = &progress{w: &plain, now: func() time.Time { return clock }}
	for _, r := range reports {
		p.report(r)
	}
	p.finish()
	want = "copy: 0/4 documents\ncopy: 4/4 documents\nverify: 0/4 documents\nverify: 4/4 documents\n"
	if plain.String() != want {
		t.Errorf("plain output:\n%q\nwant\n%q", plain.String(), want)
	}
}

// TestMigrateInterrupted: a migrate stopped by a signal says so, and how
// to go on (it said only "context canceled").
func TestMigrateInterrupted(t *testing.T) {
	dir := t.TempDir()
	from := filepath.Join(dir, "from.db")
	writeDB(t, from, "n", "a", `{"a":1}`)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the signal came before the first document
	var stderr bytes.Buffer
	err := dispatch(ctx, []string{"migrate", "--from", from, "--to", filepath.Join(dir, "to.db")}, noEnv, stdio{nil, io.Discard, &stderr})
	if err == nil || !strings.Contains(err.Error(), "interrupted") || !strings.Contains(err.Error(), "run the same command again to resume") || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

// TestBackupIsItsOwnDatabase: a backup gets an id of its own. Restored in
// the place of its original after both went on, a cursor a client got
// from the original after the backup is of another database
// (reset-collection), not a position in the copy's log, where it resumed
// past changes the client never saw.
func TestBackupIsItsOwnDatabase(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "orig.db")
	writeDB(t, orig, "c", "a", `{"n":1}`)
	cp := filepath.Join(dir, "copy.db")
	if err := dispatch(context.Background(), []string{"backup", "--db", orig, "--out", cp}, noEnv, stdio{nil, io.Discard, io.Discard}); err != nil {
		t.Fatal(err)
	}
	// The original goes on; a client follows it.
	st, err := bolt.Open(orig, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, st, "c", "b", `{"n":2}`)
	commit(t, st, "c", "c", `{"n":3}`)
	log, err := st.Changes(context.Background(), "c", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	cursor := log.Next
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// The copy, restored, goes on otherwise.
	rs, err := bolt.Open(cp, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for _, id := range []string{"x", "y", "z"} {
		commit(t, rs, "c", id, `{}`)
	}
	if _, err := rs.Changes(context.Background(), "c", cursor, 100); !errors.Is(err, store.ErrCursorGone) {
		t.Fatalf("the original's cursor on the restored copy: %v, want ErrCursorGone", err)
	}
}

// writeDB makes a bbolt database at path holding one document, and closes
// it.
func writeDB(t *testing.T, path, c, id, body string) {
	t.Helper()
	st, err := bolt.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, st, c, id, body)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}
