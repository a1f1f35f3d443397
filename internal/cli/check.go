package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// errProblems is check's failure: it found damage, listed on stdout.
var errProblems = errors.New("the database is damaged")

func (m *Main) check(ctx context.Context, args []string) error {
	var db string
	var timeout time.Duration
	f := m.newFlagSet("check", func(w io.Writer) {
		fmt.Fprintln(w, "Usage: patchd check [flags]\n  Verifies a database no server runs on (or a backup): the storage structure, every document's bytes against its ETag, every document's retained history against the document, and every stored schema (one that does not compile fails every write to its collection). Each problem is printed on a line of its own, naming its document; the exit status is 1 if there is any.")
	})
	f.add(stringValue{&db}, "db", "./patchd.db", "database to check (no server may be running on a file)")
	f.lockTimeout(&timeout)
	if err := f.parse(args); err != nil {
		return err
	}
	st, err := openReadOnly(ctx, db, timeout)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	defer st.Close()
	c := checker{out: m.Stdout}
	// A database that cannot be reached is not damaged: say so, and list
	// no problem.
	unreachable := func(err error) error {
		return fmt.Errorf("check: %s cannot be read now, so nothing was checked: %w", store.Redact(db), err)
	}
	if ck, ok := st.(store.Checker); ok {
		if err := ck.Check(ctx); errors.Is(err, store.ErrUnavailable) {
			return unreachable(err)
		} else if err != nil {
			c.storage(err)
		}
	}
	if d, ok := st.(store.Dumper); ok {
		if err := d.Dump(ctx, true, c.record); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("check: %w", ctx.Err())
			}
			if errors.Is(err, store.ErrUnavailable) && c.docs+c.deleted == 0 {
				return unreachable(err)
			}
			c.problem("", "reading the documents stopped here, the rest is unchecked: %v", err)
		}
	}
	fmt.Fprintf(m.Stderr, "check: %s: %d documents, %d deleted with history, %d versions: %s\n",
		store.Redact(db), c.docs, c.deleted, c.versions, plural(c.problems, "problem"))
	if c.problems > 0 {
		return fmt.Errorf("check: %w: %s (listed above)", errProblems, plural(c.problems, "problem"))
	}
	return nil
}

// checker counts what check reads and prints each problem.
type checker struct {
	out                     io.Writer
	docs, deleted, versions int
	problems                int
}

// problem prints one problem of a document ("" for the whole store).
func (c *checker) problem(doc, format string, args ...any) {
	c.problems++
	if doc == "" {
		doc = "storage"
	}
	fmt.Fprintf(c.out, "%s: %s\n", doc, printable(fmt.Sprintf(format, args...)))
}

// printable escapes what a terminal would act on or garble in s: control
// characters and bytes that are not UTF-8, as damaged data may hold.
func printable(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !unicode.IsPrint(r) && r != ' ':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// storage prints each problem of a store's Check.
func (c *checker) storage(err error) {
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		c.problem("", "%v", err)
		return
	}
	for _, e := range joined.Unwrap() {
		c.problem("", "%v", e)
	}
}

// record checks one document of a dump with history: that it is what its
// last version produced (store.CheckRecord: its bytes against its ETag
// among others), then that its history leads to it
// (document.CheckHistory).
func (c *checker) record(r *store.Record) error {
	name := r.Collection + "/" + r.ID
	c.versions += len(r.History)
	if r.Doc == nil {
		c.deleted++
	} else {
		c.docs++
	}
	if err := store.CheckRecord(r); err != nil {
		c.problem(name, "%s", strings.TrimPrefix(err.Error(), name+": ")) // it names the document already
		return nil
	}
	var body any
	if r.Doc != nil {
		var err error
		if body, err = patch.Parse(r.Doc.Body, patch.Limits{}); err != nil {
			c.problem(name, "the stored body is no JSON: %v", err)
			return nil
		}
	}
	if err := document.CheckHistory(body, r.Doc != nil, r.History, nil); err != nil {
		c.problem(name, "%v", err)
	}
	if r.Collection == store.SchemaCollection && r.Doc != nil {
		if err := document.CheckSchema(r.ID, r.Doc.Body); err != nil {
			c.problem(name, "the schema of collection %s does not compile, so every write to the collection fails: %v", r.ID, err)
		}
	}
	return nil
}

// plural says n things.
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	if n == 0 {
		return "no " + thing + "s"
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
