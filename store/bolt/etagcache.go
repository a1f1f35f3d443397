package bolt

import (
	"sync"
	"sync/atomic"
)

// etagCache keeps the ETags of documents, and which documents do not
// exist, so that a conditional GET of a document at rest (the 304 of a
// client polling or revalidating) and the checks every write makes (its
// document's ETag, its collection's schema) take no bbolt read transaction.
//
// The committer keeps the cache current: the batches it commits say what
// they wrote (begin with keyed, note), and their commit writes it through.
// Any other write transaction (the layout, sweeps, an import) empties it.
//
// A generation counter orders the cache against the commits, as a seqlock
// does: it is odd from just before a commit until the commit's entries are
// in the cache. A lookup while it is odd reads bbolt, which is what makes a
// read that starts after another has seen a commit see it too. A read of
// bbolt is kept only if no commit began since the lookup (the generation
// is the same): one that did writes its own entries through, or empties
// the cache.
type etagCache struct {
	gen atomic.Uint64 // odd while a commit is under way

	mu sync.RWMutex
	m  map[etagKey]string // "" for a document that does not exist; at most etagCacheMax entries

	// Of the write transaction under way (Store.wmu held): whether notes
	// name every document it writes, and what they say.
	keyed bool
	notes []etagNote
}

type etagKey struct{ collection, id string }

type etagNote struct {
	key  etagKey
	etag string // "" for a delete
}

// etagCacheMax bounds the entries kept: about 100 bytes each. A cache that
// is full is emptied and fills again with what is read and written next.
const etagCacheMax = 1 << 16

// begin starts a write transaction's notes; keyed says that note will be
// told every document it writes. Called with Store.wmu held.
func (c *etagCache) begin(keyed bool) {
	c.keyed = keyed
	c.notes = c.notes[:0]
}

// note records that the write transaction under way, keyed, writes a
// document whose ETag is then etag ("" for a delete).
func (c *etagCache) note(collection, id, etag string) {
	c.notes = append(c.notes, etagNote{etagKey{collection, id}, etag})
}

// committing marks a commit under way; committed ends it: with ok (the
// commit succeeded) and a keyed transaction, the notes are written
// through, in order; otherwise the cache is emptied. Both are called with
// Store.wmu held.
func (c *etagCache) committing() { c.gen.Add(1) }

func (c *etagCache) committed(ok bool) {
	c.mu.Lock()
	if ok && c.keyed {
		for _, n := range c.notes {
			c.setLocked(n.key, n.etag)
		}
	} else {
		c.m = nil
	}
	c.gen.Add(1)
	c.mu.Unlock()
	c.begin(false)
}

// setLocked keeps one entry, c.mu held.
func (c *etagCache) setLocked(k etagKey, etag string) {
	if _, ok := c.m[k]; !ok && len(c.m) >= etagCacheMax {
		c.m = nil
	}
	if c.m == nil {
		c.m = make(map[etagKey]string)
	}
	c.m[k] = etag
}

// get returns what the cache knows of a document: its ETag, or "" and
// exists false for one that does not exist (known reports whether the
// cache knows), and the generation to give put with what bbolt says when
// it does not.
func (c *etagCache) get(collection, id string) (etag string, exists, known bool, gen uint64) {
	gen = c.gen.Load()
	if gen&1 == 1 {
		return "", false, false, gen
	}
	c.mu.RLock()
	etag, known = c.m[etagKey{collection, id}]
	c.mu.RUnlock()
	return etag, etag != "", known, gen
}

// put keeps what bbolt said of a document (its ETag, or "" if it does not
// exist) after get returned gen, if no commit has begun since.
func (c *etagCache) put(collection, id, etag string, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen&1 == 1 || c.gen.Load() != gen {
		return
	}
	c.setLocked(etagKey{collection, id}, etag)
}
