package document

import (
	"container/list"
	"sync"

	"github.com/patchd/patchd/store"
)

// A write that cannot be spliced into the canonical bytes (a rebase, a
// Merge Patch, a PUT over a document) decodes the current version into a
// tree, and on a hot document the next write decodes the version this one
// just made. treeCache keeps the tree of the newest version of recently
// written small documents, keyed by its ETag, so that the next write of the
// document can take it instead of decoding. Because an ETag is a hash of
// the canonical bytes, a tree is right for any version with that ETag,
// committed or not.
//
// A write takes the tree out of the cache (take) and owns it: decoded trees
// are modified in place by Apply, ApplyOps and MergePatch. It puts back the
// tree of the version it made, which nothing modifies afterwards.

// Bounds of the cache, in estimated bytes of memory: a decoded tree takes
// about treeFactor times its canonical size.
const (
	treeCacheBytes  = 8 << 20
	treeCacheMaxDoc = 64 << 10 // larger documents are decoded every time
	treeFactor      = 10
)

// treeCache is a bounded map from a document to the tree of one of its
// versions, evicting the least recently put first.
type treeCache struct {
	mu   sync.Mutex
	max  int
	size int
	m    map[string]*list.Element // by collection "\x00" id; values are *treeEntry
	lru  list.List                // front: least recently put
}

type treeEntry struct {
	key  string
	etag string
	tree any
	size int
}

func newTreeCache(maxBytes int) *treeCache {
	return &treeCache{max: maxBytes, m: make(map[string]*list.Element)}
}

// take removes and returns the tree of a document's version with the
// given ETag, or nil.
func (c *treeCache) take(collection, id, etag string) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[collection+"\x00"+id]
	if !ok {
		return nil
	}
	e := c.remove(el)
	if e.etag != etag {
		return nil
	}
	return e.tree
}

// put keeps tree as the decoded form of a document's version whose
// canonical bytes are body. The caller gives the tree up.
func (c *treeCache) put(collection, id string, body []byte, tree any) {
	if len(body) > treeCacheMaxDoc || tree == nil {
		return
	}
	key := collection + "\x00" + id
	e := &treeEntry{key: key, etag: store.ETagOf(body), tree: tree, size: 256 + len(key) + treeFactor*len(body)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		c.remove(el)
	}
	c.m[key] = c.lru.PushBack(e)
	c.size += e.size
	for c.size > c.max {
		c.remove(c.lru.Front())
	}
}

// remove drops an entry; c.mu is held.
func (c *treeCache) remove(el *list.Element) *treeEntry {
	e := c.lru.Remove(el).(*treeEntry)
	delete(c.m, e.key)
	c.size -= e.size
	return e
}

// len returns the number of entries, for tests.
func (c *treeCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
