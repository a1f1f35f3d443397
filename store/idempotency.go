package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrInvalidIdempotency means a Change carried an IdempotencyRecord with
// an empty or over-long key.
var ErrInvalidIdempotency = errors.New("invalid idempotency record")

// The idempotency buckets were added to format "1" without changing it:
// older files get them when first opened, and older builds ignore them.
var (
	bucketIdem    = []byte("idem")
	bucketIdemExp = []byte("idemexp")
)

// idemPruneBatch bounds the expired records one commit deletes, so that
// the cost of pruning is spread over the writes that create records.
const idemPruneBatch = 32

// checkIdempotency validates a record before any transaction.
func checkIdempotency(r *IdempotencyRecord) error {
	if r == nil {
		return nil
	}
	if r.Key == "" || len(r.Key) > MaxIdempotencyKey {
		return fmt.Errorf("%w: key of %d bytes, want 1 to %d", ErrInvalidIdempotency, len(r.Key), MaxIdempotencyKey)
	}
	return nil
}

// putIdempotency stores r (if not nil) in tx, replacing any record under
// the same key, then deletes up to idemPruneBatch records expired at now.
func putIdempotency(tx *bolt.Tx, r *IdempotencyRecord, now time.Time) error {
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

// pruneIdempotency deletes up to idemPruneBatch records that expired
// before now, oldest first.
func pruneIdempotency(idem, exp *bolt.Bucket, now time.Time) error {
	cutoff := uint64(now.UnixNano()) // #nosec G115 -- as in putIdempotency
	var dead [][]byte
	c := exp.Cursor()
	for k, _ := c.First(); k != nil && len(dead) < idemPruneBatch; k, _ = c.Next() {
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
func (b *Bolt) Idempotency(ctx context.Context, key string) (*IdempotencyRecord, error) {
	if err := b.enter(); err != nil {
		return nil, fmt.Errorf("store: idempotency: %w", err)
	}
	defer b.active.Done()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: idempotency: %w", err)
	}
	now := uint64(b.now().UnixNano()) // #nosec G115 -- as in putIdempotency
	var rec *IdempotencyRecord
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketIdem).Get([]byte(key))
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
		rec = &IdempotencyRecord{
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
		return nil, fmt.Errorf("store: idempotency: %w", ErrNotFound)
	}
	return rec, nil
}
