package cli

import (
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/mattn/go-isatty"

	"github.com/patchd/patchd/store"
)

// writeFileAtomic creates the file path (mode 0600) with what write writes:
// it writes a temporary file in the same directory, syncs it, renames it to
// path and syncs the directory. On any error it removes the temporary file
// and leaves path as it was.
func writeFileAtomic(path string, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil { // #nosec G304 -- the directory of the path the caller (the operator) named
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// isTerminal reports whether w (or r) is a terminal.
func isTerminal(w any) bool {
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
	// JSON renders a duration as its nanoseconds; say "1.5s" instead.
	opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() == slog.KindDuration {
			a.Value = slog.StringValue(a.Value.Duration().String())
		}
		return a
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// newDatabaseFile reports whether db names a database file that does not
// exist yet, which the command is about to create; done removes it again
// (and the log a failed open may have left) if the command failed without
// writing anything into it, so that a failed import or migrate leaves no
// empty database behind. A URL (postgres://...) is left alone.
func newDatabaseFile(db string) (done func(failed, wrote bool)) {
	if store.Scheme(db) != store.PathScheme || strings.HasPrefix(db, "file://") {
		return func(bool, bool) {}
	}
	if _, err := os.Lstat(db); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return func(bool, bool) {}
	}
	return func(failed, wrote bool) {
		if failed && !wrote {
			_ = os.Remove(db)
			_ = os.Remove(db + "-wal")
		}
	}
}
