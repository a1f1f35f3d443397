package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/dump"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// errRefused is returned by import when some lines were refused.
var errRefused = errors.New("some lines were refused")

// importCmd is the import command (import is a keyword).
func (m *Main) importCmd(ctx context.Context, args []string) error {
	var db, in string
	var maxDoc, maxLine int64
	var maxDepth int
	var timeout time.Duration
	f := m.newFlagSet("import", func(w io.Writer) {
		fmt.Fprintln(w, "Usage: patchd import [flags]\n  Loads NDJSON written by export into a database no server is running on (created if missing). Every line is checked like an API body; a bad line is reported with its number and skipped, and the others are loaded. Documents that exist already are refused, not replaced.")
	})
	f.add(stringValue{&db}, "db", "./patchd.db", "database to load into (a file is created if missing; no server may be running on it)")
	f.add(stringValue{&in}, "in", "-", "NDJSON file to read, or - for standard input")
	f.add(byteSize{&maxDoc}, "max-doc", "1MiB", "largest document, as the server's --max-doc")
	f.add(intValue{&maxDepth}, "max-depth", "64", "deepest nesting of a document, as the server's --max-depth")
	f.add(byteSize{&maxLine}, "max-line", "256MiB", "longest line read; longer ones are refused")
	f.lockTimeout(&timeout)
	if err := f.parse(args); err != nil {
		return err
	}
	if maxDoc < 1 || maxDepth < 1 || maxLine < 1 {
		return f.usageErrorf("import: --max-doc, --max-depth and --max-line must be positive")
	}
	if maxDepth > maxDepthFlag {
		return f.usageErrorf("import: --max-depth is at most %d, as the server's", maxDepthFlag)
	}
	r := m.Stdin
	var total int64
	if in != "-" {
		file, err := os.Open(in) // #nosec G304 -- the operator names the file to import with --in
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer file.Close()
		fi, err := file.Stat()
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		if fi.IsDir() {
			return fmt.Errorf("import: --in %s is a directory; name the NDJSON file export wrote", in)
		}
		if fi.Mode().IsRegular() {
			total = fi.Size()
		}
		r = file
	} else if isTerminal(m.Stdin) {
		fmt.Fprintln(m.Stderr, "import: reading NDJSON from standard input (end it with Ctrl-D; --in FILE reads a file)")
	}
	created := newDatabaseFile(db)
	st, err := store.Open(ctx, db, store.Options{LockTimeout: timeout})
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("import: %s is in use by a running patchd server; stop it, or import into another file and start the server on that (%w)", db, err)
	}
	if err != nil {
		created(true, false)
		return fmt.Errorf("import: %w", err)
	}
	dst, ok := st.(store.Loader)
	if !ok {
		_ = st.Close()
		return fmt.Errorf("import: %s cannot load documents", store.Redact(db))
	}
	p := dump.NewProgress(m.Stderr, isTerminal(m.Stderr), total, "bytes")
	var refused []*dump.LineError
	c, err := dump.Import(ctx, dst, r, dump.ImportOptions{
		Limits:      patch.Limits{MaxDepth: maxDepth, MaxDoc: int(maxDoc)},
		MaxLine:     int(min(maxLine, 1<<40)),
		Progress:    p,
		CheckSchema: document.CheckSchema,
		Report: func(le *dump.LineError) {
			refused = append(refused, le)
			if len(refused) <= 1000 {
				fmt.Fprintf(m.Stderr, "import: %v\n", le)
			}
		},
	})
	p.Done()
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	created(err != nil || c.Rejected > 0, c.Documents+c.Deleted > 0)
	if len(refused) > 1000 {
		fmt.Fprintf(m.Stderr, "import: ... and %d more refused lines\n", len(refused)-1000)
	}
	fmt.Fprintf(m.Stderr, "import: %d documents, %d deleted, %d versions loaded; %d lines refused\n", c.Documents, c.Deleted, c.Versions, c.Rejected)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if c.Rejected > 0 {
		return fmt.Errorf("import: %d of the lines were refused (see above): %w", c.Rejected, errRefused)
	}
	return nil
}
