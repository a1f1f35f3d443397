package bolt

import (
	"context"
	"errors"
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
	etag, exists, known, gen := b.etags.get(collection, id)
	switch {
	case known && exists:
		return etag, nil
	case known:
		return "", &notFoundError{collection, id}
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
	if errors.Is(err, store.ErrNotFound) {
		b.etags.put(collection, id, "", gen)
		return "", &notFoundError{collection, id}
	}
	if err != nil {
		return "", fmt.Errorf("store: etag %s/%s: %w", collection, id, err)
	}
	b.etags.put(collection, id, etag, gen)
	return etag, nil
}

// notFoundError is ETag's answer for a document that does not exist.
type notFoundError struct{ collection, id string }

func (e *notFoundError) Error() string {
	return fmt.Sprintf("store: etag %s/%s: %v", e.collection, e.id, store.ErrNotFound)
}

func (e *notFoundError) Unwrap() error { return store.ErrNotFound }
