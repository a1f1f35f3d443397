package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"time"

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
	id, err := b.lastTxID()
	if err != nil {
		tb.Fatal(err)
	}
	return id
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

// SetWALHook makes the Store call f at each step of its write-ahead log:
// "appended", "committed", "synced", "checkpointed", "close-synced",
// "close-removed". f runs with the log's lock held.
func SetWALHook(b *Store, f func(step string)) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.walHook = f
}

// SetCommitFault makes a logged commit fail when f returns an error.
func SetCommitFault(b *Store, f func() error) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.commitFault = f
}

// SetCheckpointEvery sets when checkpoints are due: after every of time or
// bytes of records.
func SetCheckpointEvery(b *Store, every time.Duration, bytes int64) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.wal.every, b.wal.bytes = every, bytes
}

// Checkpoint takes a checkpoint of the write-ahead log now.
func Checkpoint(tb interface{ Fatal(...any) }, b *Store) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if err := b.checkpointLocked(); err != nil {
		tb.Fatal(err)
	}
}

// WALRecords returns the seqs of the records after the checkpoint of the
// log file at path, and where the last one starts.
func WALRecords(tb interface{ Fatal(...any) }, path string) (seqs []uint64, lastAt int64) {
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := parseWAL(data)
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range c.recs {
		seqs = append(seqs, r.seq)
	}
	if n := len(c.recs); n > 0 {
		lastAt = c.end - int64(walRecHeader+len(c.recs[n-1].payload))
	}
	return seqs, lastAt
}

// WALPath names the write-ahead log of the database at path.
func WALPath(path string) string { return walPath(path) }

// SetSyncFault makes a sync of the database file fail when f returns an
// error.
func SetSyncFault(b *Store, f func() error) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.syncFault = f
}

// ReadTxs returns the number of bbolt read transactions begun so far.
func ReadTxs(b *Store) int { return b.db.Stats().TxN }
