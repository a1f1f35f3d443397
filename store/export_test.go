package store

import bolt "go.etcd.io/bbolt"

// Test hooks into the group commit. Set them before the first Update.

// SetBeforeCommit makes the committer call f with the number of writes of
// each shared transaction before it starts it.
func SetBeforeCommit(b *Bolt, f func(writes int)) {
	b.gc.beforeCommit = func(batch []*commitReq) { f(len(batch)) }
}

// SetPutFault makes the write of a version fail when f returns an error.
func SetPutFault(b *Bolt, f func(collection, id string, seq uint64) error) { b.gc.putFault = f }

// TxID returns the id of the last committed bbolt write transaction: it
// grows by one per commit, and every commit costs two fdatasyncs.
func TxID(tb interface{ Fatal(...any) }, b *Bolt) uint64 {
	var id int
	if err := b.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		tb.Fatal(err)
	}
	return uint64(id)
}

// ErrBaseFailed is errBaseFailed, for errors.Is in tests.
var ErrBaseFailed = errBaseFailed

// Queued returns the number of writes waiting for the committer.
func Queued(b *Bolt) int {
	b.gc.mu.Lock()
	defer b.gc.mu.Unlock()
	return len(b.gc.queue)
}
