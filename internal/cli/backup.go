package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// lockedHint explains what to do with a database a server holds.
func lockedHint(db string) string {
	return fmt.Sprintf("%s is in use by a running patchd server, which holds it for writing; "+
		"copy it through that server instead: patchd backup --url http://ADDR --out FILE (GET /admin/backup)", db)
}

// openReadOnly opens the store at db for reading, explaining a lock held by
// a server.
func openReadOnly(ctx context.Context, db string, timeout time.Duration) (store.Store, error) {
	st, err := store.Open(ctx, db, store.Options{ReadOnly: true, LockTimeout: timeout})
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%s (%w)", lockedHint(db), err)
	}
	return st, err
}

func (m *Main) backup(ctx context.Context, args []string) error {
	var db, out, from string
	var timeout time.Duration
	f := m.newFlagSet("backup", func(w io.Writer) {
		fmt.Fprintln(w, "Usage: patchd backup [flags]\n  Copies a patchd database consistently into a new file. Without --url it reads --db, which no server may be running on; with --url it asks that running server for a hot copy (GET /admin/backup, with the PATCHD_TOKEN variable as its bearer token).")
	})
	f.add(stringValue{&db}, "db", "./patchd.db", "database file to copy (when no server runs on it)")
	f.add(stringValue{&out}, "out", "", "file to write the copy to (required; written whole or not at all)")
	f.add(stringValue{&from}, "url", "", "base URL of a running server to copy from, like http://127.0.0.1:8080")
	f.lockTimeout(&timeout)
	if err := f.parse(args); err != nil {
		return err
	}
	if out == "" {
		return f.usageErrorf("backup: --out is required")
	}
	if from != "" {
		db = ""
	}
	release, err := checkOut(db, out)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer release()
	var n int64
	if from != "" {
		n, err = backupURL(ctx, from, out, m.Getenv("PATCHD_TOKEN"))
	} else {
		n, err = backupStore(ctx, db, out, timeout)
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	// The copy is a database of its own from now on (bolt.Reidentify).
	if err := bolt.Reidentify(out); err != nil {
		_ = os.Remove(out)
		return fmt.Errorf("backup: the copy could not be given its own id, removed it: %w", err)
	}
	if err := verifyFile(ctx, out); err != nil {
		_ = os.Remove(out)
		return fmt.Errorf("backup: the copy does not check out, removed it: %w", err)
	}
	fmt.Fprintf(m.Stderr, "backup: wrote %d bytes to %s and checked them\n", n, out)
	return nil
}

// checkOut refuses an output file that is the database db itself (when db
// is not empty) or a file that may not be replaced (bolt.Replaceable): the
// database of a running server, one with a write-ahead log next to it, a
// database's log, or no regular file. A copy renamed over either would take
// the place of the live database. release, never nil, ends the lock kept on
// an existing out until the copy has replaced it.
func checkOut(db, out string) (release func(), err error) {
	if db = strings.TrimPrefix(db, "file://"); db != "" && sameFile(db, out) {
		return func() {}, usageError{fmt.Errorf("--out %s is the database itself; write the copy to another file", out)}
	}
	return bolt.Replaceable(out)
}

// backupStore copies the store at db, which no server may be using, into
// out through its Backup.
func backupStore(ctx context.Context, db, out string, timeout time.Duration) (int64, error) {
	st, err := openReadOnly(ctx, db, timeout)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	b, ok := st.(store.Backuper)
	if !ok {
		return 0, fmt.Errorf("%s has no file to copy; back it up with its database's own tools", store.Redact(db))
	}
	var n int64
	err = writeFileAtomic(out, func(w io.Writer) error {
		n, err = b.Backup(ctx, w, nil)
		return err
	})
	return n, err
}

// verifyFile opens a copy read-only and has it check itself.
func verifyFile(ctx context.Context, path string) error {
	st, err := store.Open(ctx, path, store.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer st.Close()
	if c, ok := st.(store.Checker); ok {
		return c.Check(ctx)
	}
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
		err := fmt.Errorf("GET %s: %s: %s", u, res.Status, strings.TrimSpace(string(body)))
		if res.StatusCode == http.StatusUnauthorized || res.StatusCode == http.StatusForbidden {
			if token == "" {
				return 0, fmt.Errorf("%w (set PATCHD_TOKEN to an admin token of the server)", err)
			}
			return 0, fmt.Errorf("%w (PATCHD_TOKEN must be an admin token of the server)", err)
		}
		return 0, err
	}
	var n int64
	err = writeFileAtomic(out, func(w io.Writer) error {
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
