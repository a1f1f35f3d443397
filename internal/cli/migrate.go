package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/patchd/patchd/store"
)

// migrate is `patchd migrate --from LOCATION --to LOCATION`: it copies
// every document and its history from one store into another (a bbolt file
// into PostgreSQL, or back), then checks every copied ETag. Running it
// again resumes an interrupted copy.
func (m *Main) migrate(ctx context.Context, args []string) error {
	var from, to string
	f := m.newFlagSet("migrate", func(w io.Writer) {
		fmt.Fprintln(w, "Usage: patchd migrate --from FILE|URL --to FILE|URL\n  Copies every document, deleted ones included, with its retained history, and the idempotency keys that have not expired, from one database into another: a bbolt file into PostgreSQL (postgres://...) to serve it from several replicas, or back. Stop the servers of --from first. Every copied document is read back and checked; running it again resumes an interrupted copy.")
	})
	f.add(stringValue{&from}, "from", "", "database to copy: a bbolt file or a postgres:// URL (stop the server using it first)")
	f.add(stringValue{&to}, "to", "", "database to copy into: a postgres:// URL or a bbolt file (created if missing)")
	if err := f.parse(args); err != nil {
		return err
	}
	switch {
	case from == "" || to == "":
		return f.usageErrorf("migrate: --from and --to are required")
	case from == to || sameFile(from, to):
		return f.usageErrorf("migrate: --from and --to are the same database")
	}
	src, err := openReadOnly(ctx, from, 0)
	if err != nil {
		return fmt.Errorf("migrate: --from: %w", err)
	}
	defer src.Close()
	dumper, ok := src.(store.Dumper)
	if !ok {
		return fmt.Errorf("migrate: --from %s cannot list its documents", store.Redact(from))
	}
	created := newDatabaseFile(to)
	dst, err := store.Open(ctx, to, store.Options{})
	if err != nil {
		created(true, false)
		return fmt.Errorf("migrate: --to: %w", err)
	}
	defer dst.Close()
	dest, ok := dst.(store.Destination)
	if !ok {
		return fmt.Errorf("migrate: --to %s cannot load documents", store.Redact(to))
	}

	p := &progress{w: m.Stderr, tty: isTerminal(m.Stderr), now: time.Now}
	fmt.Fprintf(m.Stderr, "copying %s to %s\n", store.Redact(from), store.Redact(to))
	st, err := store.Copy(ctx, dumper, dest, p.report)
	p.finish()
	if err != nil {
		if st.Copied == 0 && st.KeysCopied == 0 {
			if cerr := dst.Close(); cerr == nil {
				created(true, false)
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("migrate: interrupted after %d documents copied now: %w; run the same command again to resume where it stopped", st.Copied, err)
		}
		return fmt.Errorf("migrate: %w", err)
	}
	fmt.Fprintf(m.Stderr, "done: %d documents (%d copied now, %d already there), %d versions; every ETag verified; %d idempotency keys (%d copied now)\n",
		st.Documents, st.Copied, st.Documents-st.Copied, st.Versions, st.Keys, st.KeysCopied)
	return nil
}

// progress draws a copy's advance: a bar redrawn in place on a terminal,
// otherwise a plain line per phase and at most one a second.
type progress struct {
	w    io.Writer
	tty  bool
	now  func() time.Time
	last time.Time // when a plain line was last written
	cur  store.CopyProgress
	open bool // a bar is drawn without its newline
}

// barWidth is the number of cells of the bar.
const barWidth = 30

// report draws p.
func (p *progress) report(pr store.CopyProgress) {
	if p.open && pr.Phase != p.cur.Phase {
		fmt.Fprintln(p.w)
		p.open = false
	}
	first := pr.Phase != p.cur.Phase
	p.cur = pr
	if p.tty {
		cells := barWidth
		if pr.Total > 0 {
			cells = barWidth * pr.Done / pr.Total
		}
		fmt.Fprintf(p.w, "\r%-6s [%s%s] %d/%d documents", pr.Phase,
			strings.Repeat("#", cells), strings.Repeat(".", barWidth-cells), pr.Done, pr.Total)
		p.open = true
		return
	}
	if now := p.now(); first || pr.Done == pr.Total || now.Sub(p.last) >= time.Second {
		fmt.Fprintf(p.w, "%s: %d/%d documents\n", pr.Phase, pr.Done, pr.Total)
		p.last = now
	}
}

// finish ends a bar's line.
func (p *progress) finish() {
	if p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
}

// sameFile reports whether a and b name one existing file (by two paths).
func sameFile(a, b string) bool {
	ai, aerr := os.Stat(a)
	bi, berr := os.Stat(b)
	return aerr == nil && berr == nil && os.SameFile(ai, bi)
}
