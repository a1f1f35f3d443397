package bolt

import (
	"context"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/patchd/patchd/store"
)

// ETag returns the ETag of a document's committed version without reading
// its body. Returns an error wrapping store.ErrNotFound if the document does
// not exist.
func (b *Store) ETag(ctx context.Context, collection, id string) (string, error) {
	if err := b.gate.EnterRead(ctx, "etag", collection, id); err != nil {
		return "", err
	}
	defer b.gate.Leave()
	etag, gen, ok := b.etags.get(collection, id)
	if ok {
		return etag, nil
	}
	err := b.view(func(tx *bbolt.Tx) error {
		docs := tx.Bucket(bucketDocs).Bucket([]byte(collection))
		if docs == nil {
			return store.ErrNotFound
		}
		v := docs.Get([]byte(id))
		if v == nil {
			return store.ErrNotFound
		}
		if len(v) < docHeaderLen {
			return fmt.Errorf("document %s/%s: %w: %d-byte record", collection, id, store.ErrCorrupt, len(v))
		}
		etag = string(v[16:docHeaderLen])
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("store: etag %s/%s: %w", collection, id, err)
	}
	b.etags.put(collection, id, etag, gen)
	return etag, nil
}
