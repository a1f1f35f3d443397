package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/patchd/patchd/dump"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
	berrors "go.etcd.io/bbolt/errors"
)

// stdio are a command's standard streams.
type stdio struct {
	in  io.Reader
	out io.Writer
	err io.Writer
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// errRefused is returned by import when some lines were refused.
var errRefused = errors.New("some lines were refused")

// dispatch runs the command args name: serve (the default), backup, export,
// import, migrate, version or help.
func dispatch(ctx context.Context, args []string, getenv func(string) string, std stdio) error {
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "backup":
		return cmdBackup(ctx, args[1:], getenv, std)
	case "export":
		return cmdExport(ctx, args[1:], getenv, std)
	case "import":
		return cmdImport(ctx, args[1:], getenv, std)
	case "migrate":
		return runMigrate(ctx, args[1:], std.err)
	case "version":
		fmt.Fprintln(std.out, versionLine())
		return nil
	case "help":
		if len(args) > 1 && args[1] != "serve" {
			return dispatch(ctx, []string{args[1], "--help"}, getenv, std)
		}
		_, err := parseFlags([]string{"--help"}, getenv, std.err)
		return err
	}
	return run(ctx, args, getenv, std.err, nil)
}

// version returns the module version the binary was built from, or the
// VCS revision when it was built from a work tree, or "devel".
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "-dirty"
	}
	return "devel-" + rev
}

func versionLine() string {
	return fmt.Sprintf("patchd %s (%s %s/%s)", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// newLogger returns the server's logger: JSON, or text on a terminal when
// format is auto.
func newLogger(format, level string, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: map[string]slog.Level{
		"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[level]}
	if format == "text" || format == "auto" && isTerminal(w) {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// envSuffix matches the "(env ..., default ...)" that some flag usages
// carry; the usage printer states both itself.
var envSuffix = regexp.MustCompile(`\s*\(env PATCHD_[A-Z0-9_]+[^)]*\)`)

// printFlags writes every flag of fs with its environment variable and
// default (from defaults, or the flag's own).
func printFlags(w io.Writer, fs *flag.FlagSet, defaults map[string]string) {
	fs.VisitAll(func(f *flag.Flag) {
		_, usage := flag.UnquoteUsage(f)
		usage = envSuffix.ReplaceAllString(usage, "")
		head := "  --" + f.Name
		if !isBool(f) {
			head += " " + argName(f)
		}
		def, ok := defaults[f.Name]
		if !ok {
			def = f.DefValue
		}
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "%-32s %s\n%-32s [env %s, default %s]\n", head, usage, "", envName(f.Name), def)
	})
}

// argName names a flag's value in the usage.
func argName(f *flag.Flag) string {
	switch f.Name {
	case "addr":
		return "ADDR"
	case "db", "out", "in", "tokens":
		return "FILE"
	case "url":
		return "URL"
	case "log-format":
		return "auto|json|text"
	case "log-level":
		return "LEVEL"
	}
	switch f.Value.(type) {
	case durationValue:
		return "DURATION"
	case byteSize:
		return "BYTES"
	case intValue:
		return "N"
	}
	return "VALUE"
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// serveUsage is the --help of patchd and patchd serve.
func serveUsage(w io.Writer, fs *flag.FlagSet, defaults map[string]string) func() {
	return func() {
		fmt.Fprintf(w, `Usage:
  patchd [serve] [flags]   run the server (the default command)
  patchd backup [flags]    copy a database consistently (--db FILE, or --url of a running server) to --out FILE
  patchd export [flags]    write every document, optionally with history, as NDJSON
  patchd import [flags]    load NDJSON written by export, checking every line
  patchd migrate [flags]   copy a bbolt file into PostgreSQL (--from FILE --to postgres://...), resumable, verified
  patchd version           print the version
  patchd help COMMAND      the flags of a command

Every flag also reads the environment variable shown; a flag given on the command line wins.

Flags of serve:
`)
		printFlags(w, fs, defaults)
	}
}

// cmdFlags declares a subcommand's flags, each with a PATCHD_* variable.
type cmdFlags struct {
	fs       *flag.FlagSet
	getenv   func(string) string
	defaults map[string]string
	errs     []error
}

func newCmdFlags(name, summary string, getenv func(string) string, stderr io.Writer) *cmdFlags {
	f := &cmdFlags{fs: flag.NewFlagSet("patchd "+name, flag.ContinueOnError), getenv: getenv, defaults: map[string]string{}}
	f.fs.SetOutput(stderr)
	f.fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: patchd %s [flags]\n  %s\n\nEvery flag also reads the environment variable shown; a flag given on the command line wins.\n\nFlags:\n", name, summary)
		printFlags(stderr, f.fs, f.defaults)
	}
	return f
}

// add declares a flag whose value parses with v and sets its default from
// the environment or def.
func (f *cmdFlags) add(v flag.Value, name, def, usage string) {
	f.fs.Var(v, name, usage)
	f.defaults[name] = def
	val := def
	if e := f.getenv(envName(name)); e != "" {
		val = e
	}
	if err := v.Set(val); err != nil {
		f.errs = append(f.errs, fmt.Errorf("%s=%q: %w", envName(name), val, err))
	}
}

func (f *cmdFlags) parse(args []string) error {
	if err := errors.Join(f.errs...); err != nil {
		return usageError{err}
	}
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if f.fs.NArg() > 0 {
		f.fs.Usage()
		return usageError{fmt.Errorf("unexpected argument %q", f.fs.Arg(0))}
	}
	return nil
}

// stringValue is a flag.Value for a plain string.
type stringValue struct{ p *string }

func (v stringValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}
func (v stringValue) Set(s string) error { *v.p = s; return nil }

// lockedHint explains what to do with a database a server holds.
func lockedHint(db string) string {
	return fmt.Sprintf("%s is in use by a running patchd server, which holds it for writing; "+
		"copy it through that server instead: patchd backup --url http://ADDR --out FILE (GET /admin/backup)", db)
}

func cmdBackup(ctx context.Context, args []string, getenv func(string) string, std stdio) error {
	var db, out, from string
	var timeout time.Duration
	f := newCmdFlags("backup", "Copies a patchd database consistently into a new file. Without --url it reads --db, which no server may be running on; with --url it asks that running server for a hot copy (GET /admin/backup).", getenv, std.err)
	f.add(stringValue{&db}, "db", "./patchd.db", "database file to copy (when no server runs on it)")
	f.add(stringValue{&out}, "out", "", "file to write the copy to (required; written whole or not at all)")
	f.add(stringValue{&from}, "url", "", "base URL of a running server to copy from, like http://127.0.0.1:8080")
	f.add(durationValue{&timeout}, "lock-timeout", "1s", "how long to wait for the database file's lock")
	if err := f.parse(args); err != nil {
		return err
	}
	if out == "" {
		f.fs.Usage()
		return usageError{errors.New("backup: --out is required")}
	}
	var n int64
	var err error
	if from != "" {
		n, err = backupURL(ctx, from, out, getenv("PATCHD_TOKEN"))
	} else {
		n, err = store.BackupFile(ctx, db, out, timeout)
		if errors.Is(err, store.ErrLocked) {
			return fmt.Errorf("backup: %s", lockedHint(db))
		}
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := store.VerifyFile(out); err != nil {
		_ = os.Remove(out)
		return fmt.Errorf("backup: the copy does not check out, removed it: %w", err)
	}
	fmt.Fprintf(std.err, "backup: wrote %d bytes to %s and checked them\n", n, out)
	return nil
}

// backupURL saves GET /admin/backup of the server at base into out. A
// non-empty token (the PATCHD_TOKEN variable: never a flag, so that it stays
// out of process listings) is sent as a bearer token.
func backupURL(ctx context.Context, base, out, token string) (int64, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return 0, usageError{fmt.Errorf("--url %q: want a base URL like http://127.0.0.1:8080", base)}
	}
	u = u.JoinPath("/admin/backup")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return 0, fmt.Errorf("GET %s: %s: %s", u, res.Status, strings.TrimSpace(string(body)))
	}
	var n int64
	err = store.WriteFileAtomic(out, func(w io.Writer) error {
		var err error
		n, err = io.Copy(w, res.Body)
		if err != nil {
			return err
		}
		if res.ContentLength >= 0 && n != res.ContentLength {
			return fmt.Errorf("GET %s: got %d of %d bytes", u, n, res.ContentLength)
		}
		return nil
	})
	return n, err
}

// openForExport opens db read-only, explaining a lock held by a server.
func openForExport(db string, timeout time.Duration) (*store.Bolt, error) {
	st, err := store.OpenBoltReadOnly(db, timeout)
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%s; then export from the copy", lockedHint(db))
	}
	return st, err
}

func cmdExport(ctx context.Context, args []string, getenv func(string) string, std stdio) error {
	var db, out string
	var history bool
	var timeout time.Duration
	f := newCmdFlags("export", "Writes every document of a stopped database (or of a backup) as NDJSON, one document a line.", getenv, std.err)
	f.add(stringValue{&db}, "db", "./patchd.db", "database file to read (no server may be running on it)")
	f.add(stringValue{&out}, "out", "-", "file to write, or - for standard output")
	f.add(boolValue{&history}, "history", "false", "add every retained version, and deleted documents whose history is retained")
	f.add(durationValue{&timeout}, "lock-timeout", "1s", "how long to wait for the database file's lock")
	if err := f.parse(args); err != nil {
		return err
	}
	st, err := openForExport(db, timeout)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer st.Close()
	stats, err := st.Stats(ctx)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	total, unit := stats.Documents, "documents"
	if history {
		total, unit = stats.Versions, "versions"
	}
	p := dump.NewProgress(std.err, isTerminal(std.err), total, unit)
	var c dump.Counts
	write := func(w io.Writer) error {
		var err error
		c, err = dump.Export(ctx, st, w, dump.ExportOptions{History: history, Progress: p})
		return err
	}
	if out == "-" {
		err = write(std.out)
	} else {
		err = store.WriteFileAtomic(out, write)
	}
	p.Done()
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	fmt.Fprintf(std.err, "export: %d documents, %d deleted, %d versions, %d bytes\n", c.Documents, c.Deleted, c.Versions, c.Bytes)
	return nil
}

func cmdImport(ctx context.Context, args []string, getenv func(string) string, std stdio) error {
	var db, in string
	var maxDoc, maxLine int64
	var maxDepth int
	var timeout time.Duration
	f := newCmdFlags("import", "Loads NDJSON written by export into a database no server is running on (created if missing). Every line is checked like an API body; a bad line is reported with its number and skipped, and the others are loaded. Documents that exist already are refused, not replaced.", getenv, std.err)
	f.add(stringValue{&db}, "db", "./patchd.db", "database file to load into (created if missing; no server may be running on it)")
	f.add(stringValue{&in}, "in", "-", "NDJSON file to read, or - for standard input")
	f.add(byteSize{&maxDoc}, "max-doc", "1MiB", "largest document, as the server's --max-doc")
	f.add(intValue{&maxDepth}, "max-depth", "64", "deepest nesting of a document, as the server's --max-depth")
	f.add(byteSize{&maxLine}, "max-line", "256MiB", "longest line read; longer ones are refused")
	f.add(durationValue{&timeout}, "lock-timeout", "1s", "how long to wait for the database file's lock")
	if err := f.parse(args); err != nil {
		return err
	}
	if maxDoc < 1 || maxDepth < 1 || maxLine < 1 {
		return usageError{errors.New("import: --max-doc, --max-depth and --max-line must be positive")}
	}
	r := std.in
	var total int64
	if in != "-" {
		file, err := os.Open(in) // #nosec G304 -- the operator names the file to import with --in
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer file.Close()
		if fi, err := file.Stat(); err == nil && fi.Mode().IsRegular() {
			total = fi.Size()
		}
		r = file
	}
	st, err := store.OpenBolt(db, store.BoltOptions{Timeout: timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("import: %s is in use by a running patchd server; stop it, or import into another file and start the server on that", db)
	}
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	p := dump.NewProgress(std.err, isTerminal(std.err), total, "bytes")
	var refused []*dump.LineError
	c, err := dump.Import(ctx, st, r, dump.ImportOptions{
		Limits:   patch.Limits{MaxDepth: maxDepth, MaxDoc: int(maxDoc)},
		MaxLine:  int(min(maxLine, 1<<40)),
		Progress: p,
		Report: func(le *dump.LineError) {
			refused = append(refused, le)
			if len(refused) <= 1000 {
				fmt.Fprintf(std.err, "import: %v\n", le)
			}
		},
	})
	p.Done()
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if len(refused) > 1000 {
		fmt.Fprintf(std.err, "import: ... and %d more refused lines\n", len(refused)-1000)
	}
	fmt.Fprintf(std.err, "import: %d documents, %d deleted, %d versions loaded; %d lines refused\n", c.Documents, c.Deleted, c.Versions, c.Rejected)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if c.Rejected > 0 {
		return fmt.Errorf("import: %d of the lines were refused (see above): %w", c.Rejected, errRefused)
	}
	return nil
}
