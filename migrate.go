package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/postgres"
)

// openStore opens the store --db names: a postgres:// URL or a bbolt file.
func openStore(ctx context.Context, db string, r store.Retention, log *slog.Logger) (store.Store, error) {
	if postgres.IsURL(db) {
		return postgres.Open(ctx, db, postgres.Options{Retention: r, Logger: log})
	}
	return store.OpenBolt(db, store.BoltOptions{Retention: r, Logger: log})
}

// redactDB returns db with any password in a URL replaced, for logs.
func redactDB(db string) string {
	if !postgres.IsURL(db) {
		return db
	}
	u, err := url.Parse(db)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	return u.Redacted()
}

// runMigrate is `patchd migrate --from FILE --to URL`: it copies every
// document and its history from a bbolt file into PostgreSQL, then checks
// every copied ETag. Running it again resumes an interrupted copy.
func runMigrate(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("patchd migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "bbolt database file to copy (stop the server using it first)")
	to := fs.String("to", "", "postgres:// URL of the database to copy into")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: patchd migrate --from FILE --to postgres://...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		fs.Usage()
		return fmt.Errorf("migrate: unexpected argument %q", fs.Arg(0))
	case *from == "" || *to == "":
		fs.Usage()
		return errors.New("migrate: --from and --to are required")
	case !postgres.IsURL(*to):
		return fmt.Errorf("migrate: --to %q is not a postgres:// URL", *to)
	}
	if _, err := os.Stat(*from); err != nil {
		return fmt.Errorf("migrate: --from: %w", err)
	}
	src, err := store.OpenBolt(*from, store.BoltOptions{})
	if err != nil {
		return fmt.Errorf("migrate: %w (is a patchd server still using the file? stop it first)", err)
	}
	defer src.Close()
	dst, err := postgres.Open(ctx, *to, postgres.Options{})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer dst.Close()

	tty := false
	if f, ok := stderr.(*os.File); ok {
		tty = isatty.IsTerminal(f.Fd())
	}
	p := &progress{w: stderr, tty: tty, now: time.Now}
	fmt.Fprintf(stderr, "copying %s to %s\n", *from, redactDB(*to))
	st, err := postgres.CopyFromBolt(ctx, src, dst, p.report)
	p.finish()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	fmt.Fprintf(stderr, "done: %d documents (%d copied now, %d already there), %d versions; every ETag verified\n",
		st.Documents, st.Copied, st.Documents-st.Copied, st.Versions)
	return nil
}

// progress draws a copy's advance: a bar redrawn in place on a terminal,
// otherwise a plain line per phase and at most one a second.
type progress struct {
	w    io.Writer
	tty  bool
	now  func() time.Time
	last time.Time // when a plain line was last written
	cur  postgres.Progress
	open bool // a bar is drawn without its newline
}

// barWidth is the number of cells of the bar.
const barWidth = 30

// report draws p.
func (p *progress) report(pr postgres.Progress) {
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
