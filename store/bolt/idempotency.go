package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/patchd/patchd/store"
)

// The idempotency buckets were added to format "1" without changing it:
// older files get them when first opened, and older builds ignore them.
var (
	bucketIdem    = []byte("idem")
	bucketIdemExp = []byte("idemexp")
)

// putIdempotency stores r (if not nil) in tx, replacing any record under
// the same key, then deletes up to store.IdempotencyPruneBatch records expired at now.
func putIdempotency(tx *bbolt.Tx, r *store.IdempotencyRecord, now time.Time) error {
	if r == nil {
		return nil
	}
	idem, exp := tx.Bucket(bucketIdem), tx.Bucket(bucketIdemExp)
	key := []byte(r.Key)
	if old := idem.Get(key); len(old) >= 8 {
		if err := exp.Delete(expKey(binary.BigEndian.Uint64(old), key)); err != nil {
			return err
		}
	}
	expires := uint64(r.Expires.UnixNano()) // #nosec G115 -- a time after 1970 as unsigned nanos; the order is what matters
	val := make([]byte, 0, 8+len(r.Value))
	val = binary.BigEndian.AppendUint64(val, expires)
	val = append(val, r.Value...)
	if err := idem.Put(key, val); err != nil {
		return err
	}
	if err := exp.Put(expKey(expires, key), nil); err != nil {
		return err
	}
	return pruneIdempotency(idem, exp, now)
}

// expKey returns the expiry index key of a record.
func expKey(expires uint64, key []byte) []byte {
	k := make([]byte, 0, 8+len(key))
	k = binary.BigEndian.AppendUint64(k, expires)
	return append(k, key...)
}

// pruneIdempotency deletes up to store.IdempotencyPruneBatch records that expired
// before now, oldest first.
func pruneIdempotency(idem, exp *bbolt.Bucket, now time.Time) error {
	cutoff := uint64(now.UnixNano()) // #nosec G115 -- as in putIdempotency
	var dead [][]byte
	c := exp.Cursor()
	for k, _ := c.First(); k != nil && len(dead) < store.IdempotencyPruneBatch; k, _ = c.Next() {
		if len(k) < 8 || binary.BigEndian.Uint64(k) >= cutoff {
			break
		}
		dead = append(dead, bytes.Clone(k))
	}
	// Delete after iterating: deleting under a bbolt cursor can skip keys.
	for _, k := range dead {
		if err := exp.Delete(k); err != nil {
			return err
		}
		if err := idem.Delete(k[8:]); err != nil {
			return err
		}
	}
	return nil
}

// Idempotency returns the record committed with a write under key.
// Returns ErrNotFound if there is none or it has expired.
func (b *Store) Idempotency(ctx context.Context, key string) (*store.IdempotencyRecord, error) {
	if err := b.gate.Enter(ctx, "idempotency"); err != nil {
		return nil, err
	}
	defer b.gate.Leave()
	now := uint64(b.now().UnixNano()) // #nosec G115 -- as in putIdempotency
	var rec *store.IdempotencyRecord
	err := b.view(func(tx *bbolt.Tx) error {
		idem := tx.Bucket(bucketIdem)
		if idem == nil { // an older file opened read-only
			return nil
		}
		v := idem.Get([]byte(key))
		if v == nil {
			return nil
		}
		if len(v) < 8 {
			return fmt.Errorf("idempotency record %q: %d bytes", key, len(v))
		}
		expires := binary.BigEndian.Uint64(v)
		if expires <= now {
			return nil
		}
		rec = &store.IdempotencyRecord{
			Key:     key,
			Value:   bytes.Clone(v[8:]),
			Expires: time.Unix(0, int64(expires)).UTC(), // #nosec G115 -- written from an int64 above
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: idempotency: %w", err)
	}
	if rec == nil {
		return nil, fmt.Errorf("store: idempotency: %w", store.ErrNotFound)
	}
	return rec, nil
}
