package bolt

import (
	"sync"
	"sync/atomic"
)

// etagCache keeps the ETags that Store.ETag read, until the next write
// transaction: a conditional GET of a document at rest (the 304 of a
// client polling or revalidating) then takes no bbolt read transaction.
//
// A generation counter orders the cache against the writes, as a seqlock
// does: every write transaction makes it odd before it begins and even
// again once it has committed or failed. An entry is good only under the
// even generation it was read at. A read of bbolt is kept only if the
// generation was even and the same before and after it, so that no write
// transaction ran in between; a lookup during a write transaction (odd)
// reads bbolt, which is what makes a read that starts after another has
// seen a commit see it too.
type etagCache struct {
	gen atomic.Uint64 // odd while a write transaction is under way

	mu sync.RWMutex
	at uint64             // the generation of m's entries
	m  map[etagKey]string // at most etagCacheMax entries
}

type etagKey struct{ collection, id string }

// etagCacheMax bounds the entries kept: about 100 bytes each.
const etagCacheMax = 1 << 16

// writing marks a write transaction under way; written ends it. Both are
// called with Store.wmu held.
func (c *etagCache) writing() { c.gen.Add(1) }
func (c *etagCache) written() { c.gen.Add(1) }

// get returns the cached ETag of a document if there is one, and else the
// generation to give put with what bbolt says.
func (c *etagCache) get(collection, id string) (etag string, gen uint64, ok bool) {
	gen = c.gen.Load()
	if gen&1 == 1 {
		return "", gen, false
	}
	c.mu.RLock()
	if c.at == gen {
		etag, ok = c.m[etagKey{collection, id}]
	}
	c.mu.RUnlock()
	return etag, gen, ok
}

// put keeps an ETag read from bbolt after get returned gen, if no write
// transaction has begun since.
func (c *etagCache) put(collection, id, etag string, gen uint64) {
	if gen&1 == 1 || c.gen.Load() != gen {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case gen < c.at:
		return // a newer generation's entries are here
	case gen > c.at || c.m == nil:
		c.m = make(map[etagKey]string)
		c.at = gen
	case len(c.m) >= etagCacheMax:
		return
	}
	c.m[etagKey{collection, id}] = etag
}
