package bolt

import (
	"context"
	"fmt"
	"io"

	bbolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the database file to w, from one read
// transaction (bbolt's Tx.WriteTo), while writes go on. The copy is a
// complete bbolt file that Open opens as it is. start, when not nil,
// is called with the copy's exact size before anything is written.
//
// The read transaction is held until the copy is written: a slow writer w
// keeps old pages from being reused, and can hold up a commit that needs
// to grow the file. If ctx is done, the copy stops with ctx's error.
func (b *Store) Backup(ctx context.Context, w io.Writer, start func(size int64)) (int64, error) {
	if err := b.gate.Enter(ctx, "backup"); err != nil {
		return 0, err
	}
	defer b.gate.Leave()
	var n int64
	err := b.db.View(func(tx *bbolt.Tx) error {
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
