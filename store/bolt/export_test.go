package bolt

import bbolt "go.etcd.io/bbolt"

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
