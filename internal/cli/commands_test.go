package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// cli runs a command and returns its error, standard output and standard
// error.
//
//lint:ignore ST1008 the command's outcome reads first at every call site
func cli(t *testing.T, stdin string, args ...string) (error, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	err := dispatch(context.Background(), args, noEnv, stdio{strings.NewReader(stdin), &out, &errb})
	return err, out.String(), errb.String()
}

func TestHelpListsEveryFlag(t *testing.T) {
	serve := []string{"addr", "db", "require-if-match", "max-body", "max-doc", "max-depth", "max-ops", "history-versions",
		"history-age", "max-rebase-ops", "max-rebase-work", "shutdown-timeout", "log-format", "log-level", "ui",
		"tokens", "cors-origins", "rate", "idempotency-ttl", "insecure-no-auth", "read-header-timeout", "read-timeout",
		"write-timeout", "idle-timeout", "max-header-bytes", "max-batch", "max-pages-per-client", "max-batches-per-client", "db-timeout", "idempotency-max-per-client",
		"max-streams", "max-streams-per-client", "max-conns-per-client", "max-subscriptions", "max-subscriptions-per-client", "max-subscriptions-total", "tls-cert", "tls-key", "presence-ttl"}
	for _, tc := range []struct {
		args  []string
		flags []string
	}{
		{[]string{"--help"}, serve},
		{[]string{"serve", "--help"}, serve},
		{[]string{"help"}, serve},
		{[]string{"backup", "--help"}, []string{"db", "out", "url", "lock-timeout"}},
		{[]string{"help", "export"}, []string{"db", "out", "history", "lock-timeout"}},
		{[]string{"import", "-h"}, []string{"db", "in", "max-doc", "max-depth", "max-line", "lock-timeout"}},
		{[]string{"help", "migrate"}, []string{"from", "to"}},
		{[]string{"migrate", "--help"}, []string{"from", "to"}},
		{[]string{"check", "--help"}, []string{"db", "lock-timeout"}},
	} {
		err, usage, stderr := cli(t, "", tc.args...)
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%v: err=%v", tc.args, err)
		}
		// Help asked for goes to stdout, to be read with a pager or grep.
		if stderr != "" {
			t.Errorf("%v: %d bytes on stderr, want the help on stdout alone", tc.args, len(stderr))
		}
		// Each flag line is followed by its variable and default.
		lines := strings.Split(usage, "\n")
		var listed []string
		for k, line := range lines {
			if !strings.HasPrefix(line, "  --") {
				continue
			}
			name := strings.Fields(line)[0][2:]
			listed = append(listed, name)
			if k+1 >= len(lines) || !strings.Contains(lines[k+1], "[env "+envName(name)+", default ") {
				t.Errorf("%v: --%s without its variable and default", tc.args, name)
			}
		}
		slices.Sort(listed)
		want := slices.Sorted(slices.Values(tc.flags))
		if !slices.Equal(listed, want) {
			t.Errorf("%v: lists %v, want %v", tc.args, listed, want)
		}
	}
	_, usage, _ := cli(t, "", "--help")
	for _, args := range [][]string{{"help", "version"}, {"help", "help"}} {
		if _, out, stderr := cli(t, "", args...); !strings.Contains(out, "Usage: patchd "+args[1]) || stderr != "" {
			t.Errorf("%v: stdout %q, stderr %q", args, out, stderr)
		}
	}
	// A mistake's usage goes to stderr.
	if err, out, stderr := cli(t, "", "check", "--bogus"); err == nil || out != "" || !strings.Contains(stderr, "--lock-timeout") {
		t.Errorf("check --bogus: err %v, stdout %q, stderr %q", err, out, stderr)
	}
	for _, want := range []string{"--max-body BYTES", "[env PATCHD_MAX_BODY, default 1MiB]", "--require-if-match BOOL", "--ui BOOL", "[env PATCHD_REQUIRE_IF_MATCH, default true]",
		"--addr ADDR", "default 127.0.0.1:8080", "patchd backup", "patchd export", "patchd import", "patchd version"} {
		if !strings.Contains(usage, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestVersion(t *testing.T) {
	err, out, _ := cli(t, "", "version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "patchd ") || !strings.Contains(out, runtime.Version()) {
		t.Fatalf("version %q", out)
	}
	if v := version(); v == "" || strings.ContainsAny(v, " \n") {
		t.Fatalf("version() = %q", v)
	}
}

func TestLogFormat(t *testing.T) {
	var buf bytes.Buffer
	newLogger("auto", "info", &buf).Info("hello", slog.Int("n", 1))
	if !strings.HasPrefix(buf.String(), `{"time":`) {
		t.Fatalf("auto off a terminal is not JSON: %q", buf.String())
	}
	// Durations read as durations, not as nanoseconds.
	buf.Reset()
	newLogger("json", "info", &buf).Info("hello", "in", 1500*time.Millisecond)
	if !strings.Contains(buf.String(), `"in":"1.5s"`) {
		t.Fatalf("a duration in JSON: %q", buf.String())
	}
	buf.Reset()
	newLogger("text", "info", &buf).Info("hello")
	if !strings.Contains(buf.String(), "msg=hello") {
		t.Fatalf("text: %q", buf.String())
	}
	buf.Reset()
	newLogger("json", "warn", &buf).Info("hidden")
	if buf.Len() != 0 {
		t.Fatalf("info at warn: %q", buf.String())
	}
	for _, args := range [][]string{{"--log-format", "xml"}, {"--log-level", "loud"}} {
		if _, err := parseFlags(args, noEnv, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	cfg, err := parseFlags(nil, func(k string) string { return map[string]string{"PATCHD_LOG_FORMAT": "text"}[k] }, io.Discard)
	if err != nil || cfg.logFormat != "text" {
		t.Fatalf("env: %+v %v", cfg, err)
	}
}

// serveFor runs the server in-process on db until the test ends, and
// returns its base URL.
func serveFor(t *testing.T, db string, args ...string) (base string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	args = append([]string{"--addr", "127.0.0.1:0", "--db", db}, args...)
	go func() { done <- run(ctx, args, noEnv, io.Discard, ready) }()
	select {
	case addr := <-ready:
		stopped := false
		stop = func() {
			if stopped {
				return
			}
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
		t.Cleanup(stop)
		return "http://" + addr, stop
	case err := <-done:
		cancel()
		t.Fatalf("run: %v", err)
	}
	return "", nil
}

func put(t *testing.T, base, path, body string) {
	t.Helper()
	req, _ := http.NewRequest("PUT", base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 201 {
		t.Fatalf("PUT %s: %v %v", path, res, err)
	}
	res.Body.Close()
}

func get(t *testing.T, base, path string) (int, string) {
	t.Helper()
	res, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestBackupCommand(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "p.db")
	base, stop := serveFor(t, db)
	put(t, base, "/docs/c/a", `{"n":12345678901234567890123}`)

	// The server holds the file: the file route explains the way out.
	err, _, _ := cli(t, "", "backup", "--db", db, "--out", filepath.Join(dir, "x.db"), "--lock-timeout", "100ms")
	if err == nil || !strings.Contains(err.Error(), "--url") || !strings.Contains(err.Error(), "/admin/backup") {
		t.Fatalf("backup of a held file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused backup left a file")
	}
	// Through the server: a hot copy.
	hot := filepath.Join(dir, "hot.db")
	err, _, msg := cli(t, "", "backup", "--url", base, "--out", hot)
	if err != nil {
		t.Fatalf("backup --url: %v", err)
	}
	if !strings.Contains(msg, "wrote") {
		t.Fatalf("message %q", msg)
	}
	err, _, _ = cli(t, "", "backup", "--url", "ftp://x", "--out", filepath.Join(dir, "y.db"))
	var ue usageError
	if !errors.As(err, &ue) {
		t.Fatalf("bad --url: %v", err)
	}
	stop()

	// Stopped: the file route works.
	cold := filepath.Join(dir, "cold.db")
	if err, _, _ := cli(t, "", "backup", "--db", db, "--out", cold); err != nil {
		t.Fatal(err)
	}
	if err, _, _ := cli(t, "", "backup", "--db", db); !errors.As(err, &ue) {
		t.Fatalf("no --out: %v", err)
	}
	for _, copyPath := range []string{hot, cold} {
		base, _ := serveFor(t, copyPath)
		if code, body := get(t, base, "/docs/c/a"); code != 200 || body != `{"n":12345678901234567890123}` {
			t.Fatalf("%s: %d %s", copyPath, code, body)
		}
	}
}

// TestCopyOverDatabaseRefused: a backup or export whose --out is the live
// database of a running server, the source itself, or a database with a
// write-ahead log next to it is refused before anything is written, and
// the database keeps every document.
func TestCopyOverDatabaseRefused(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live.db")
	base, stop := serveFor(t, live)
	put(t, base, "/docs/c/before", `{"a":1}`)
	stopped := filepath.Join(dir, "stopped.db")
	if err, _, _ := cli(t, "", "backup", "--url", base, "--out", stopped); err != nil {
		t.Fatal(err)
	}
	wantSame := func(path string, before []byte) {
		t.Helper()
		after, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(after, before) {
			t.Fatalf("%s changed (%v)", path, err)
		}
	}
	stoppedBytes, err := os.ReadFile(stopped)
	if err != nil {
		t.Fatal(err)
	}

	// Over the running server's own file: the hot copy, and a copy of
	// another database.
	for _, args := range [][]string{
		{"backup", "--url", base, "--out", live},
		{"backup", "--db", stopped, "--out", live},
		{"export", "--db", stopped, "--out", live},
	} {
		err, _, _ := cli(t, "", args...)
		if err == nil || !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "in use") {
			t.Fatalf("%v: %v, want a refusal: the file is in use", args, err)
		}
		put(t, base, "/docs/c/after-"+args[0]+args[1], `{"b":2}`)
	}
	stop()
	base, stop = serveFor(t, live)
	for _, path := range []string{"/docs/c/before", "/docs/c/after-backup--url", "/docs/c/after-backup--db", "/docs/c/after-export--db"} {
		if code, body := get(t, base, path); code != 200 {
			t.Fatalf("GET %s after the refused copies: %d %s", path, code, body)
		}
	}
	stop()

	// Over the source itself.
	for _, args := range [][]string{
		{"backup", "--db", stopped, "--out", stopped},
		{"export", "--db", stopped, "--out", stopped},
		{"export", "--db", "file://" + stopped, "--out", stopped},
	} {
		var ue usageError
		if err, _, _ := cli(t, "", args...); !errors.As(err, &ue) || !strings.Contains(err.Error(), "the database itself") {
			t.Fatalf("%v: %v, want a usage error", args, err)
		}
		wantSame(stopped, stoppedBytes)
	}

	// Over a database's log, and over something that is no regular file
	// (a FIFO, which an open would block on).
	base, stop = serveFor(t, live)
	err, _, _ = cli(t, "", "backup", "--db", stopped, "--out", live+"-wal")
	if err == nil || !strings.Contains(err.Error(), "write-ahead log of the database") {
		t.Fatalf("backup over a running database's log: %v", err)
	}
	put(t, base, "/docs/c/after-log", `{"c":3}`)
	stop()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err, _, _ := cli(t, "", "export", "--db", stopped, "--out", fifo); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("export to a FIFO: %v", err)
	}

	// The check holds the file it allows until the copy replaced it: a
	// server cannot start on it meanwhile.
	release, err := checkOut(stopped, live)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := store.Open(context.Background(), live, store.Options{LockTimeout: 100 * time.Millisecond}); !errors.Is(err, store.ErrLocked) {
		if st != nil {
			st.Close()
		}
		t.Fatalf("a writable open of a file the copy may replace: %v, want ErrLocked", err)
	}
	release()
	st, err := store.Open(context.Background(), live, store.Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	st.Close()

	// Over a database with a write-ahead log next to it.
	if err := os.WriteFile(stopped+"-wal", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.db")
	if err, _, _ := cli(t, "", "backup", "--db", live, "--out", other); err != nil {
		t.Fatal(err)
	}
	if err, _, _ := cli(t, "", "backup", "--db", other, "--out", stopped); err == nil || !strings.Contains(err.Error(), "write-ahead log") {
		t.Fatalf("backup over a database with a log: %v", err)
	}
	wantSame(stopped, stoppedBytes)
}

func TestExportImportCommands(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "p.db")
	base, stop := serveFor(t, db)
	put(t, base, "/docs/c/a", `{"a":1}`)
	put(t, base, "/docs/c/b", `{"b":[1,2,3]}`)
	if err, _, _ := cli(t, "", "export", "--db", db, "--lock-timeout", "100ms"); err == nil || !strings.Contains(err.Error(), "backup --url") {
		t.Fatalf("export of a held file: %v", err)
	}
	stop()

	err, stdout, msg := cli(t, "", "export", "--db", db, "--history")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(stdout, "\n") != 2 || !strings.Contains(msg, "export: 2 documents, 0 deleted, 2 versions") {
		t.Fatalf("export:\n%s\n%s", stdout, msg)
	}
	file := filepath.Join(dir, "dump.ndjson")
	if err := os.WriteFile(file, []byte(stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(dir, "fresh.db")
	if err, _, msg := cli(t, "", "import", "--db", fresh, "--in", file); err != nil {
		t.Fatalf("import: %v\n%s", err, msg)
	}
	out2 := filepath.Join(dir, "again.ndjson")
	if err, _, _ := cli(t, "", "export", "--db", fresh, "--history", "--out", out2); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(out2); string(again) != stdout {
		t.Fatalf("round trip differs:\n%s\nwant\n%s", again, stdout)
	}

	// A bad line is reported with its number; the good ones load; the
	// command fails so that scripts notice.
	in := `{"collection":"n","id":"ok","body":{}}` + "\n" + `{"collection":"n","id":"bad","body":{"x":}` + "\n" + `{"collection":"n","id":"ok2","body":{}}` + "\n"
	err, _, msg = cli(t, in, "import", "--db", fresh)
	if !errors.Is(err, errRefused) || !strings.Contains(msg, "line 2: ") || !strings.Contains(msg, "import: 2 documents") {
		t.Fatalf("import with a bad line: %v\n%s", err, msg)
	}
	// A stored schema the server would not compile is refused like a bad
	// line: every write to its collection would fail.
	in = `{"collection":"$schemas","id":"s1","body":{"pattern":"("}}` + "\n" +
		`{"collection":"$schemas","id":"s2","body":{"$ref":"http://example.com/x"}}` + "\n" +
		`{"collection":"$schemas","id":"s3","body":{"type":"object"}}` + "\n"
	err, _, msg = cli(t, in, "import", "--db", fresh)
	if !errors.Is(err, errRefused) || !strings.Contains(msg, "line 1: ") || !strings.Contains(msg, "line 2: ") ||
		!strings.Contains(msg, "the schema of collection s1") || !strings.Contains(msg, "import: 1 documents") {
		t.Fatalf("import of schemas that do not compile: %v\n%s", err, msg)
	}
	st, err := bolt.Open(fresh, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, id := range []string{"ok", "ok2"} {
		if _, err := st.Get(context.Background(), "n", id); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	for id, want := range map[string]bool{"s1": false, "s2": false, "s3": true} {
		if _, err := st.Get(context.Background(), store.SchemaCollection, id); (err == nil) != want {
			t.Fatalf("schema %s: %v, want it loaded: %v", id, err, want)
		}
	}
}

// exit runs a command as the binary does and returns its exit status,
// standard output and standard error.
func exit(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: noEnv}
	return m.Run(context.Background(), args), out.String(), errb.String()
}

// TestCommandLine holds the command line to what a new user expects.
func TestCommandLine(t *testing.T) {
	t.Run("VersionFlag", func(t *testing.T) {
		code, out, errs := exit(t, "--version")
		if code != 0 || !strings.HasPrefix(out, "patchd ") || strings.Contains(errs, "Usage") {
			t.Fatalf("--version: %d, %q, %q", code, out, errs)
		}
	})
	t.Run("VersionSaysHowItWasBuilt", func(t *testing.T) {
		_, out, _ := exit(t, "version")
		if version() == "devel" && !strings.Contains(out, "without version control information") {
			t.Fatalf("a devel version does not say why: %q", out)
		}
	})
	t.Run("HelpVersionDescribes", func(t *testing.T) {
		code, out, errs := exit(t, "help", "version")
		if code != 0 || errs != "" || !strings.Contains(out, "Usage: patchd version") {
			t.Fatalf("help version: %d, %q, %q", code, out, errs)
		}
	})
	t.Run("HelpUnknown", func(t *testing.T) {
		code, _, errs := exit(t, "help", "nosuch")
		if code != 2 || !strings.Contains(errs, `unknown command "nosuch"`) || strings.Contains(errs, "Usage") {
			t.Fatalf("help nosuch: %d, %q", code, errs)
		}
	})
	t.Run("UnknownCommand", func(t *testing.T) {
		if code, _, errs := exit(t, "nosuch"); code != 2 || !strings.Contains(errs, `unknown command "nosuch"`) {
			t.Fatalf("nosuch: %d, %q", code, errs)
		}
	})
	t.Run("MigrateUsageExits2", func(t *testing.T) {
		for _, args := range [][]string{{"migrate"}, {"migrate", "--bogus"}, {"migrate", "--from", "a.db", "--to", "a.db"}} {
			if code, _, errs := exit(t, args...); code != 2 {
				t.Errorf("%v: exit %d, want 2 (%s)", args, code, errs)
			}
		}
	})
	t.Run("FileInUse", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "p.db")
		serveFor(t, db)
		err := run(context.Background(), []string{"--addr", "127.0.0.1:0", "--db", db}, noEnv, io.Discard, nil)
		if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "in use by another process") {
			t.Fatalf("second server on the file: %v", err)
		}
		if want := fmt.Sprintf("PID %d", os.Getpid()); runtime.GOOS == "linux" && !strings.Contains(err.Error(), want) {
			t.Fatalf("%v does not name the holder, %s", err, want)
		}
	})
	t.Run("PortInUseCreatesNoFile", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		db := filepath.Join(t.TempDir(), "p.db")
		if err := run(context.Background(), []string{"--addr", ln.Addr().String(), "--db", db}, noEnv, io.Discard, nil); err == nil {
			t.Fatal("served on a port in use")
		}
		if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a failed start left %s: %v", db, err)
		}
	})
	t.Run("ImportFromTerminalSaysSo", func(t *testing.T) {
		tty, eof := openPTY(t)
		var errb bytes.Buffer
		m := &Main{Stdin: tty, Stdout: io.Discard, Stderr: &errb, Getenv: noEnv}
		db := filepath.Join(t.TempDir(), "p.db")
		done := make(chan int, 1)
		go func() { done <- m.Run(context.Background(), []string{"import", "--db", db}) }()
		eof()
		if code := <-done; code != 0 {
			t.Fatalf("import of nothing: exit %d: %s", code, errb.String())
		}
		if !strings.Contains(errb.String(), "reading NDJSON from standard input") {
			t.Fatalf("import from a terminal said %q", errb.String())
		}
	})
}

// TestLockTimeoutAboveZero: a --lock-timeout of zero or less is a mistake
// on the command line (exit 2), not a silent wait of the default.
func TestLockTimeoutAboveZero(t *testing.T) {
	db := filepath.Join(t.TempDir(), "patchd.db")
	for _, cmd := range []string{"check", "backup", "export", "import"} {
		for _, v := range []string{"0", "-1s", "0s"} {
			err, _, _ := cli(t, "", cmd, "--db", db, "--lock-timeout", v)
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), "above zero") {
				t.Errorf("%s --lock-timeout %s: %v, want a usage error", cmd, v, err)
			}
		}
	}
	if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused command left %s: %v", db, err)
	}
}

// TestBackupURLSaysToken: a backup refused for its token says which
// variable carries it.
func TestBackupURLSaysToken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	out := filepath.Join(t.TempDir(), "b.db")
	for token, want := range map[string]string{"": "set PATCHD_TOKEN", "x": "PATCHD_TOKEN must be an admin token"} {
		_, err := backupURL(context.Background(), srv.URL, out, token)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("token %q: %v, want it to say %q", token, err, want)
		}
	}
}
