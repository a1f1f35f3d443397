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
// Records written before the scope buckets existed have no scope entry and
// count for no scope; they leave by expiry like any other.
var (
	bucketIdem      = []byte("idem")
	bucketIdemExp   = []byte("idemexp")
	bucketIdemScope = []byte("idemscope")
	bucketIdemCount = []byte("idemcount")
)

// idemBuckets are the buckets of the idempotency records in one
// transaction.
type idemBuckets struct {
	idem, exp, scope, count *bbolt.Bucket
}

func idemBucketsOf(tx *bbolt.Tx) idemBuckets {
	return idemBuckets{tx.Bucket(bucketIdem), tx.Bucket(bucketIdemExp), tx.Bucket(bucketIdemScope), tx.Bucket(bucketIdemCount)}
}

// scopePrefix is the key of a scope in idemcount and the prefix of its
// entries in idemscope: the scope's length as a uvarint, then its bytes
// (never empty, as bbolt keys must not be).
func scopePrefix(scope string) []byte {
	k := make([]byte, 0, binary.MaxVarintLen64+len(scope)+8)
	k = binary.AppendUvarint(k, uint64(len(scope)))
	return append(k, scope...)
}

// scopeKey is a record's entry in idemscope: its scope's prefix, its
// expiry and its key, so that a scope's records sort oldest first.
func scopeKey(scope string, expires uint64, key []byte) []byte {
	k := binary.BigEndian.AppendUint64(scopePrefix(scope), expires)
	return append(k, key...)
}

// expKey returns the expiry index key of a record.
func expKey(expires uint64, key []byte) []byte {
	k := make([]byte, 0, 8+len(key))
	k = binary.BigEndian.AppendUint64(k, expires)
	return append(k, key...)
}

// claim takes an idempotency key for a write about to be queued, or
// returns an error wrapping store.ErrIdempotencyExists when a record under
// it has not expired or another queued write holds it. The file has one
// writer, this process, so the claims in memory and the committed records
// together are every holder. The committer releases the claim once the
// write is settled (committed or failed).
func (b *Store) claim(key string) error {
	b.claimsMu.Lock()
	defer b.claimsMu.Unlock()
	if _, busy := b.claims[key]; busy {
		return fmt.Errorf("%w: a write with this key is in progress", store.ErrIdempotencyExists)
	}
	now := uint64(b.now().UnixNano()) // #nosec G115 -- a time after 1970 as unsigned nanos; the order is what matters
	live := false
	if err := b.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketIdem).Get([]byte(key))
		live = len(v) >= 8 && binary.BigEndian.Uint64(v) > now
		return nil
	}); err != nil {
		return err
	}
	if live {
		return fmt.Errorf("%w: a record under this key exists", store.ErrIdempotencyExists)
	}
	b.claims[key] = struct{}{}
	return nil
}

// unclaim releases a key taken by claim.
func (b *Store) unclaim(key string) {
	b.claimsMu.Lock()
	defer b.claimsMu.Unlock()
	delete(b.claims, key)
}

// expValue is a record's value in idemexp: the seq of its version, then its
// scope. Records written before seqs and scopes were kept have an empty
// one (seq 0, scope "").
func expValue(seq uint64, scope string) []byte {
	v := make([]byte, 0, 8+len(scope))
	v = binary.BigEndian.AppendUint64(v, seq)
	return append(v, scope...)
}

// parseExpValue is the inverse of expValue.
func parseExpValue(v []byte) (seq uint64, scope string) {
	if len(v) < 8 {
		return 0, ""
	}
	return binary.BigEndian.Uint64(v), string(v[8:])
}

// putIdempotency stores r (if not nil) in tx as the record of version seq,
// replacing any record under the same key (an expired one: claim refuses
// live ones), keeps at most perScope records of r's scope (no bound when
// perScope < 1) by deleting its oldest, then deletes up to
// store.IdempotencyPruneBatch records expired at now.
func putIdempotency(tx *bbolt.Tx, r *store.IdempotencyRecord, seq uint64, now time.Time, perScope int) error {
	if r == nil {
		return nil
	}
	bs := idemBucketsOf(tx)
	key := []byte(r.Key)
	if old := bs.idem.Get(key); len(old) >= 8 {
		if err := bs.drop(key, binary.BigEndian.Uint64(old)); err != nil {
			return err
		}
	}
	expires := uint64(r.Expires.UnixNano()) // #nosec G115 -- as in claim
	val := make([]byte, 0, 8+len(r.Value))
	val = binary.BigEndian.AppendUint64(val, expires)
	val = append(val, r.Value...)
	if err := bs.idem.Put(key, val); err != nil {
		return err
	}
	if err := bs.exp.Put(expKey(expires, key), expValue(seq, r.Scope)); err != nil {
		return err
	}
	if err := bs.scope.Put(scopeKey(r.Scope, expires, key), nil); err != nil {
		return err
	}
	n, err := bs.addCount(r.Scope, 1)
	if err != nil {
		return err
	}
	if perScope > 0 && n > uint64(perScope) {
		if err := bs.evict(r.Scope, n-uint64(perScope)); err != nil { // #nosec G115 -- perScope > 0
			return err
		}
	}
	return bs.prune(now)
}

// addCount adds delta to a scope's record count and returns the new count.
func (bs idemBuckets) addCount(scope string, delta int64) (uint64, error) {
	k := scopePrefix(scope)
	var n uint64
	if v := bs.count.Get(k); len(v) == 8 {
		n = binary.BigEndian.Uint64(v)
	}
	switch {
	case delta < 0 && n < uint64(-delta):
		n = 0
	case delta < 0:
		n -= uint64(-delta)
	default:
		n += uint64(delta)
	}
	if n == 0 {
		return 0, bs.count.Delete(k)
	}
	return n, bs.count.Put(k, binary.BigEndian.AppendUint64(nil, n))
}

// drop deletes the record under key, which expires at expires, with its
// index entries and its share of its scope's count.
func (bs idemBuckets) drop(key []byte, expires uint64) error {
	ek := expKey(expires, key)
	_, scope := parseExpValue(bs.exp.Get(ek))
	if sk := scopeKey(scope, expires, key); bs.scope.Get(sk) != nil {
		if err := bs.scope.Delete(sk); err != nil {
			return err
		}
		if _, err := bs.addCount(scope, -1); err != nil {
			return err
		}
	}
	if err := bs.exp.Delete(ek); err != nil {
		return err
	}
	return bs.idem.Delete(key)
}

// evict deletes the n oldest records of a scope.
func (bs idemBuckets) evict(scope string, n uint64) error {
	prefix := scopePrefix(scope)
	var dead [][]byte
	c := bs.scope.Cursor()
	for k, _ := c.Seek(prefix); k != nil && uint64(len(dead)) < n; k, _ = c.Next() {
		if !bytes.HasPrefix(k, prefix) || len(k) < len(prefix)+8 {
			break
		}
		dead = append(dead, bytes.Clone(k))
	}
	// Delete after iterating: deleting under a bbolt cursor can skip keys.
	for _, k := range dead {
		expires := binary.BigEndian.Uint64(k[len(prefix):])
		if err := bs.drop(k[len(prefix)+8:], expires); err != nil {
			return err
		}
	}
	return nil
}

// prune deletes up to store.IdempotencyPruneBatch records that expired
// before now, oldest first.
func (bs idemBuckets) prune(now time.Time) error {
	cutoff := uint64(now.UnixNano()) // #nosec G115 -- as in claim
	var dead [][]byte
	c := bs.exp.Cursor()
	for k, _ := c.First(); k != nil && len(dead) < store.IdempotencyPruneBatch; k, _ = c.Next() {
		if len(k) < 8 || binary.BigEndian.Uint64(k) >= cutoff {
			break
		}
		dead = append(dead, bytes.Clone(k))
	}
	for _, k := range dead {
		if err := bs.drop(k[8:], binary.BigEndian.Uint64(k)); err != nil {
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
	now := uint64(b.now().UnixNano()) // #nosec G115 -- as in claim
	var rec *store.IdempotencyRecord
	err := b.view(func(tx *bbolt.Tx) (err error) {
		rec, err = getIdempotency(tx, []byte(key), now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: idempotency: %w", err)
	}
	if rec == nil {
		return nil, fmt.Errorf("store: idempotency: %w", store.ErrNotFound)
	}
	return rec, nil
}

// getIdempotency reads the record under key in tx: nil when there is none
// or it expired at now. The record owns its bytes.
func getIdempotency(tx *bbolt.Tx, key []byte, now uint64) (*store.IdempotencyRecord, error) {
	idem := tx.Bucket(bucketIdem)
	if idem == nil { // an older file opened read-only
		return nil, nil
	}
	v := idem.Get(key)
	if v == nil {
		return nil, nil
	}
	return decodeIdempotency(tx, key, v, now)
}

// decodeIdempotency decodes the idem value v of key: nil when it expired at
// now.
func decodeIdempotency(tx *bbolt.Tx, key, v []byte, now uint64) (*store.IdempotencyRecord, error) {
	if len(v) < 8 {
		return nil, fmt.Errorf("idempotency record %q: %d bytes", key, len(v))
	}
	expires := binary.BigEndian.Uint64(v)
	if expires <= now {
		return nil, nil
	}
	rec := &store.IdempotencyRecord{
		Key:     string(key),
		Value:   bytes.Clone(v[8:]),
		Expires: time.Unix(0, int64(expires)).UTC(), // #nosec G115 -- written from an int64 in putIdempotency
	}
	if exp := tx.Bucket(bucketIdemExp); exp != nil {
		rec.Seq, rec.Scope = parseExpValue(exp.Get(expKey(expires, key)))
	}
	return rec, nil
}

// DumpIdempotency calls fn for every record that has not expired, in key
// order, from one read transaction (see store.IdempotencyCopier).
func (b *Store) DumpIdempotency(ctx context.Context, fn func(*store.IdempotencyRecord) error) error {
	if err := b.gate.Enter(ctx, "dump idempotency"); err != nil {
		return err
	}
	defer b.gate.Leave()
	now := uint64(b.now().UnixNano()) // #nosec G115 -- as in claim
	err := b.db.View(func(tx *bbolt.Tx) error {
		idem := tx.Bucket(bucketIdem)
		if idem == nil {
			return nil
		}
		return idem.ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			rec, err := decodeIdempotency(tx, k, v, now)
			if err != nil || rec == nil {
				return err
			}
			return fn(rec)
		})
	})
	if err != nil {
		return fmt.Errorf("store: dump idempotency: %w", err)
	}
	return nil
}

// LoadIdempotency writes records as they are, keeping the live records the
// file holds already, in one synced transaction (see
// store.IdempotencyCopier). It returns how many it wrote.
func (b *Store) LoadIdempotency(ctx context.Context, recs []*store.IdempotencyRecord) (int, error) {
	if b.gate.ReadOnly {
		return 0, fmt.Errorf("store: load idempotency: %w", store.ErrReadOnly)
	}
	if err := b.gate.Enter(ctx, "load idempotency"); err != nil {
		return 0, err
	}
	defer b.gate.Leave()
	for _, r := range recs {
		if r == nil {
			return 0, fmt.Errorf("store: load idempotency: %w: nil record", store.ErrInvalidIdempotency)
		}
		if err := r.Check(); err != nil {
			return 0, fmt.Errorf("store: load idempotency: %w", err)
		}
	}
	// Claims are taken by writes in progress; a key held by one is kept
	// for it, like a live record.
	b.claimsMu.Lock()
	defer b.claimsMu.Unlock()
	now := b.now()
	written := 0
	err := b.update(func(tx *bbolt.Tx) error {
		written = 0
		for _, r := range recs {
			if _, busy := b.claims[r.Key]; busy {
				continue
			}
			live, err := getIdempotency(tx, []byte(r.Key), uint64(now.UnixNano())) // #nosec G115 -- as in claim
			if err != nil {
				return err
			}
			if live != nil {
				continue
			}
			if err := putIdempotency(tx, r, r.Seq, now, b.idemPerScope); err != nil {
				return err
			}
			written++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: load idempotency: %w", err)
	}
	return written, nil
}
