package store

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// walkBatch is how many documents Walk reads per read transaction.
const walkBatch = 512

// Walk calls fn for every document that has history, deleted documents
// included, in collection then id byte order, until fn returns an error,
// which Walk returns. fn runs outside any transaction and may call the
// store's other methods; documents created meanwhile may or may not be
// visited. Tools such as a copy to another backend use it: List alone
// cannot name collections, nor deleted documents.
func (b *Bolt) Walk(ctx context.Context, fn func(collection, id string) error) error {
	if err := b.enter(); err != nil {
		return fmt.Errorf("store: walk: %w", err)
	}
	defer b.active.Done()
	var afterC, afterID []byte // the last document visited
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("store: walk: %w", err)
		}
		var keys [][2]string
		err := b.db.View(func(tx *bolt.Tx) error {
			hist := tx.Bucket(bucketHist)
			cols := hist.Cursor()
			c, v := cols.Seek(afterC)
			for ; c != nil && len(keys) < walkBatch; c, v = cols.Next() {
				if v != nil {
					continue // not a collection bucket
				}
				hc := hist.Bucket(c).Cursor()
				var k []byte
				if afterID != nil && bytes.Equal(c, afterC) {
					k, _ = hc.Seek(append(bytes.Clone(afterID), 1)) // past every key of afterID
				} else {
					k, _ = hc.First()
				}
				for k != nil && len(keys) < walkBatch {
					if len(k) < 1+seqLen || k[len(k)-1-seqLen] != 0 {
						return fmt.Errorf("history key %q in %q: %w", k, c, errBadVersion)
					}
					id := k[:len(k)-1-seqLen]
					keys = append(keys, [2]string{string(c), string(id)})
					k, _ = hc.Seek(append(bytes.Clone(id), 1))
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("store: walk: %w", err)
		}
		for _, k := range keys {
			if err := fn(k[0], k[1]); err != nil {
				return err
			}
		}
		if len(keys) < walkBatch {
			return nil
		}
		last := keys[len(keys)-1]
		afterC, afterID = []byte(last[0]), []byte(last[1])
	}
}
