package store

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// ETag returns the ETag of a document's committed version without reading
// its body, so that 304s and refused preconditions cost no copy of it.
// Returns an error wrapping ErrNotFound if the document does not exist.
func (b *Bolt) ETag(ctx context.Context, collection, id string) (string, error) {
	if err := b.enter(); err != nil {
		return "", fmt.Errorf("store: etag %s/%s: %w", collection, id, err)
	}
	defer b.active.Done()
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("store: etag %s/%s: %w", collection, id, err)
	}
	var etag string
	err := b.db.View(func(tx *bolt.Tx) error {
		docs := tx.Bucket(bucketDocs).Bucket([]byte(collection))
		if docs == nil || !validKey(collection, id) {
			return ErrNotFound
		}
		v := docs.Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		if len(v) < docHeaderLen {
			return fmt.Errorf("document %s/%s: %d-byte record", collection, id, len(v))
		}
		etag = string(v[16:docHeaderLen])
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("store: etag %s/%s: %w", collection, id, err)
	}
	return etag, nil
}
