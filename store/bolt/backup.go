package bolt

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/patchd/patchd/store"
)

// backupChunk is how much of a spooled copy one write to the destination
// carries.
const backupChunk = 256 << 10

// Backup writes a consistent copy of the database file to w, from one read
// transaction (bbolt's Tx.WriteTo), while writes go on. The copy is a
// complete bbolt file that Open opens as it is. start, when not nil,
// is called with the copy's exact size before anything is written.
//
// A read transaction keeps the pages it sees from being reused, and bbolt
// cannot grow the file's mapping while one is open: every write that needs
// more room waits for it. So the transaction is never held at the pace of
// a remote reader: unless w is a regular file, the copy is first written
// to a temporary file next to the database (unlinked at once, so that
// nothing is left behind), the transaction ends, and w gets the temporary
// file's bytes in chunks. If ctx is done, the copy stops with ctx's error.
func (b *Store) Backup(ctx context.Context, w io.Writer, start func(size int64)) (int64, error) {
	if err := b.gate.Enter(ctx, "backup"); err != nil {
		return 0, err
	}
	defer b.gate.Leave()
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			n, err := b.snapshot(ctx, f, start)
			if err != nil {
				return n, fmt.Errorf("store: backup %s: %w", b.path, noSpace(err))
			}
			return n, nil
		}
	}
	n, err := b.spooled(ctx, w, start)
	if err != nil {
		return n, fmt.Errorf("store: backup %s: %w", b.path, noSpace(err))
	}
	return n, nil
}

// snapshot writes the database to w in one read transaction.
func (b *Store) snapshot(ctx context.Context, w io.Writer, start func(size int64)) (int64, error) {
	var n int64
	err := b.view(func(tx *bbolt.Tx) error {
		if start != nil {
			start(tx.Size())
		}
		cw := &ctxWriter{ctx: ctx, w: w}
		var err error
		n, err = tx.WriteTo(cw)
		if err != nil && cw.err != nil {
			// bbolt formats some of the writer's errors as text ("meta 0
			// copy: ..."), losing a full device's ENOSPC and the
			// context's error; the writer's own error keeps them.
			err = fmt.Errorf("%w (%v)", cw.err, err)
		} else if err != nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		return err
	})
	return n, err
}

// spooled copies the database into an unlinked temporary file in its
// directory, then that file to w.
func (b *Store) spooled(ctx context.Context, w io.Writer, start func(size int64)) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(b.path), "."+filepath.Base(b.path)+".backup*")
	if err != nil {
		return 0, err
	}
	defer tmp.Close()
	if err := os.Remove(tmp.Name()); err != nil { // the open file lives on, nameless
		return 0, err
	}
	size, err := b.snapshot(ctx, tmp, nil)
	if err != nil {
		return 0, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	if start != nil {
		start(size)
	}
	buf := make([]byte, backupChunk)
	var n int64
	for n < size {
		k, err := io.ReadFull(tmp, buf[:min(int64(len(buf)), size-n)])
		if err != nil {
			return n, err
		}
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, err = w.Write(buf[:k])
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// ctxWriter fails writes once its context is done, and keeps the first
// error of a write.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
	err error
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if c.err == nil {
		c.err = c.ctx.Err()
	}
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.err = err
	return n, err
}

// Replaceable reports, with nil, that a new file may be put at path (by a
// backup or an export): nothing is there, or a regular file that no process
// holds (bbolt's lock, which a running patchd holds on its database), that
// has no write-ahead log next to it and is not itself a database's log. A
// held file gives an error wrapping store.ErrLocked. release ends the
// shared lock Replaceable keeps on an existing file, so that no server
// starts on it until the new file has replaced it; call it after the
// rename (it is never nil).
func Replaceable(path string) (release func(), err error) {
	release = func() {}
	if base, ok := strings.CutSuffix(path, "-wal"); ok {
		if _, err := os.Stat(base); err == nil {
			return release, fmt.Errorf("%s is the write-ahead log of the database %s; choose another file", path, base)
		}
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return release, nil
	case err != nil:
		return release, err
	case !fi.Mode().IsRegular():
		return release, fmt.Errorf("%s is not a regular file; choose a file to write (or - for standard output, where there is one)", path)
	}
	f, err := os.Open(path) // #nosec G304 -- the file the operator named
	if err != nil {
		return release, err
	}
	if err := lockFile(f, false, 0); err != nil {
		_ = f.Close()
		if errors.Is(err, berrors.ErrTimeout) {
			return release, fmt.Errorf("%w: %s is in use by another process%s, a running patchd server's database perhaps; choose another file", store.ErrLocked, path, lockHolder(path))
		}
		return release, err
	}
	if _, err := os.Stat(walPath(path)); err == nil {
		_ = f.Close()
		return release, fmt.Errorf("%s has a write-ahead log next to it (%s): it is the database of a patchd that was not closed; start patchd on it once, or choose another file", path, walPath(path))
	}
	return func() { _ = f.Close() }, nil
}

// Reidentify gives the database file at path, a copy that Backup wrote
// and nothing has opened yet, an id of its own. A copy restored in the
// place of its original is another history from the moment it was taken:
// with the original's id, a cursor a client got from the original after
// that moment would resume in the copy's log at a change it never saw
// (cursors name their database, see cursor), and the original's
// write-ahead log would be taken for the copy's. No other process may
// have the file open.
func Reidentify(path string) error {
	var db *bbolt.DB
	err := guard("open", func() (err error) {
		db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, FreelistType: bbolt.FreelistMapType})
		return err
	})
	if err != nil {
		return fmt.Errorf("store: reidentify %s: %w", path, err)
	}
	err = guard("update", func() error {
		return db.Update(func(tx *bbolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			if meta == nil || len(meta.Get(keyDBID)) != dbIDLen {
				return fmt.Errorf("%w: the file has no database id", store.ErrUnknownFormat)
			}
			id := make([]byte, dbIDLen)
			if _, err := rand.Read(id); err != nil {
				return err
			}
			return meta.Put(keyDBID, id)
		})
	})
	if cerr := guard("close", db.Close); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: reidentify %s: %w", path, err)
	}
	return nil
}
