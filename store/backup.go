package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrLocked means another process, usually a running patchd server, holds
// the database file. bbolt allows one writer process, and a reader only
// while no writer holds the file, so such a file can only be copied through
// that process (GET /admin/backup).
var ErrLocked = errors.New("database file is in use by another process")

// Backuper is implemented by stores that can write a consistent copy of
// themselves while they serve.
type Backuper interface {
	// Backup writes a consistent snapshot of the whole store to w. start,
	// when not nil, is called with the snapshot's size in bytes before the
	// first byte is written. It returns the number of bytes written.
	Backup(ctx context.Context, w io.Writer, start func(size int64)) (int64, error)
}

var _ Backuper = (*Bolt)(nil)

// Backup writes a consistent copy of the database file to w, from one read
// transaction (bbolt's Tx.WriteTo), while writes go on. The copy is a
// complete bbolt file that OpenBolt opens as it is. start, when not nil,
// is called with the copy's exact size before anything is written.
//
// The read transaction is held until the copy is written: a slow writer w
// keeps old pages from being reused, and can hold up a commit that needs
// to grow the file. If ctx is done, the copy stops with ctx's error.
func (b *Bolt) Backup(ctx context.Context, w io.Writer, start func(size int64)) (int64, error) {
	if err := b.enter(); err != nil {
		return 0, fmt.Errorf("store: backup: %w", err)
	}
	defer b.active.Done()
	var n int64
	err := b.db.View(func(tx *bolt.Tx) error {
		if start != nil {
			start(tx.Size())
		}
		var err error
		n, err = tx.WriteTo(ctxWriter{ctx, w})
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err() // bbolt does not wrap the writer's error
		}
		return n, fmt.Errorf("store: backup %s: %w", b.path, err)
	}
	return n, nil
}

// ctxWriter fails writes once its context is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// openReadOnly opens an existing bbolt file read-only, waiting at most
// timeout for a process that holds it for writing. It returns an error
// wrapping ErrLocked when that wait ends, and one wrapping os.ErrNotExist
// for a missing file (it never creates one).
func openReadOnly(path string, timeout time.Duration) (*bolt.DB, error) {
	if timeout <= 0 {
		timeout = defaultLockTimeout
	}
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, err
	}
	if err := db.View(checkFormat); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return db, nil
}

// checkFormat checks that a file holds patchd's layout, without changing it.
func checkFormat(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return fmt.Errorf("%w: no %q bucket", ErrUnknownFormat, bucketMeta)
	}
	if v := meta.Get(keyFormat); string(v) != boltFormat {
		return fmt.Errorf("%w: format %q, want %q", ErrUnknownFormat, v, boltFormat)
	}
	for _, name := range [][]byte{bucketDocs, bucketHist} {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("%w: no %q bucket", ErrUnknownFormat, name)
		}
	}
	return nil
}

// BackupFile copies the patchd database at path, which no process may be
// writing, into a new file out: it opens path read-only (waiting at most
// timeout for its lock), writes the copy next to out, syncs it and renames
// it into place, so that out is either complete or absent. It returns the
// size of the copy.
//
// Returns an error wrapping ErrLocked when a running server holds path:
// back that up through the server instead (GET /admin/backup).
func BackupFile(ctx context.Context, path, out string, timeout time.Duration) (int64, error) {
	db, err := openReadOnly(path, timeout)
	if err != nil {
		return 0, fmt.Errorf("store: backup: %w", err)
	}
	defer db.Close()
	var n int64
	err = WriteFileAtomic(out, func(w io.Writer) error {
		return db.View(func(tx *bolt.Tx) error {
			var err error
			n, err = tx.WriteTo(ctxWriter{ctx, w})
			return err
		})
	})
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err() // bbolt does not wrap the writer's error
		}
		return 0, fmt.Errorf("store: backup %s: %w", path, err)
	}
	return n, nil
}

// WriteFileAtomic creates the file path (mode 0600) with what write writes:
// it writes a temporary file in the same directory, syncs it, renames it to
// path and syncs the directory. On any error it removes the temporary file
// and leaves path as it was.
func WriteFileAtomic(path string, write func(io.Writer) error) (err error) {
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

// VerifyFile opens a patchd database file read-only and runs bbolt's
// consistency check over it, for a backup just taken. It returns an error
// wrapping ErrUnknownFormat if the file is not a patchd database.
func VerifyFile(path string) error {
	db, err := openReadOnly(path, defaultLockTimeout)
	if err != nil {
		return fmt.Errorf("store: verify: %w", err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		var first error
		for err := range tx.Check() {
			if first == nil {
				first = err
			}
		}
		return first
	})
	if err != nil {
		return fmt.Errorf("store: verify %s: %w", path, err)
	}
	return nil
}
