package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bbolt "go.etcd.io/bbolt"
)

// Test hooks into the group commit. Set them before the first Update.

// SetBeforeCommit makes the committer call f with the number of writes of
// each shared transaction before it starts it.
func SetBeforeCommit(b *Store, f func(writes int)) {
	b.committer.beforeCommit = func(batch []*commitReq) { f(len(batch)) }
}

// SetPutFault makes the write of a version fail when f returns an error.
func SetPutFault(b *Store, f func(collection, id string, seq uint64) error) { b.committer.putFault = f }

// TxID returns the id of the last committed bbolt write transaction: it
// grows by one per commit, and every commit costs two fdatasyncs.
func TxID(tb interface{ Fatal(...any) }, b *Store) uint64 {
	var id int
	if err := b.db.View(func(tx *bbolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		tb.Fatal(err)
	}
	return uint64(id)
}

// ErrBaseFailed is errBaseFailed, for errors.Is in tests.
var ErrBaseFailed = errBaseFailed

// Queued returns the number of writes waiting for the committer.
func Queued(b *Store) int {
	b.committer.mu.Lock()
	defer b.committer.mu.Unlock()
	return len(b.committer.queue)
}

// LogEntries returns the number of entries in a collection's change log.
func LogEntries(tb interface{ Fatal(...any) }, b *Store, collection string) int {
	n := 0
	if err := b.db.View(func(tx *bbolt.Tx) error {
		if lb := tx.Bucket(bucketChLog).Bucket([]byte(collection)); lb != nil {
			n = lb.Stats().KeyN
		}
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return n
}

// Format returns the format recorded in the file.
func Format(tb interface{ Fatal(...any) }, b *Store) string {
	var f string
	if err := b.db.View(func(tx *bbolt.Tx) error {
		f = string(tx.Bucket(bucketMeta).Get(keyFormat))
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return f
}

// WriteStats returns what bbolt's write transactions have written since
// the file was opened: the pages written (a run of contiguous pages counts
// once) and the bytes of the pages they allocated.
func WriteStats(b *Store) (writes, bytes int64) {
	st := b.db.Stats().TxStats
	return st.GetWrite(), st.GetPageAlloc()
}

// LogIDs returns the entries of a collection's change log in order, as
// id/seq.
func LogIDs(tb interface{ Fatal(...any) }, b *Store, collection string) []string {
	var out []string
	if err := b.db.View(func(tx *bbolt.Tx) error {
		lb := tx.Bucket(bucketChLog).Bucket([]byte(collection))
		if lb == nil {
			return nil
		}
		return lb.ForEach(func(_, hk []byte) error {
			id, seq, _ := bytes.Cut(hk, []byte{0})
			out = append(out, fmt.Sprintf("%s/%d", id, binary.BigEndian.Uint64(seq)))
			return nil
		})
	}); err != nil {
		tb.Fatal(err)
	}
	return out
}
