package document

import (
	"hash/maphash"
	"strconv"
	"sync"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// Rebasing a stale edit decodes the ops of every version committed since
// its base, and on a hot document the next stale edit decodes most of the
// same versions again. opsCache keeps the decoded ops of recent versions.
// Decoded ops are never modified (patch.Rebase and patch.RebaseOnto only
// read them), so one decoding serves every rebase.

// Bounds of the cache, in estimated bytes of memory: an entry costs about
// opsEntryOverhead plus opsEntryFactor times its encoded size (decoded ops
// are Go structs, interfaces and slices).
const (
	opsCacheBytes    = 4 << 20
	opsCacheMaxEntry = 64 << 10 // encoded; larger versions are decoded every time
	opsEntryOverhead = 256
	opsEntryFactor   = 4
)

// opsCache is a bounded map from a version to its decoded ops, evicting
// the oldest entries first.
type opsCache struct {
	seed  maphash.Seed
	mu    sync.Mutex
	max   int
	size  int
	m     map[string]opsEntry
	order []string // keys, oldest first
}

type opsEntry struct {
	ops  []patch.Op
	size int
}

func newOpsCache(maxBytes int) *opsCache {
	return &opsCache{seed: maphash.MakeSeed(), max: maxBytes, m: make(map[string]opsEntry)}
}

// key returns the cache key of version v of a document.
func (c *opsCache) key(collection, id string, v store.Version) string {
	return collection + "\x00" + id + "\x00" + strconv.FormatUint(v.Seq, 10) + v.ETag +
		strconv.FormatUint(maphash.Bytes(c.seed, v.Ops), 16)
}

// decode returns the decoded ops of version v of a document. The result
// is shared: callers must not modify it.
func (c *opsCache) decode(collection, id string, v store.Version) ([]patch.Op, error) {
	// Seqs are never reused within a document's committed history; the
	// ETag guards against a different database behind the same handler,
	// and the hash of the ops against versions that were decided but never
	// committed (a dry run, a batch that failed), whose seq a different
	// version may take.
	key := c.key(collection, id, v)
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return e.ops, nil
	}
	ops, err := patch.DecodeOps(v.Ops)
	if err != nil || len(v.Ops) > opsCacheMaxEntry {
		return ops, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; ok {
		return ops, nil
	}
	cost := opsEntryOverhead + len(key) + opsEntryFactor*len(v.Ops)
	c.m[key] = opsEntry{ops: ops, size: cost}
	c.order = append(c.order, key)
	c.size += cost
	for c.size > c.max && len(c.order) > 0 {
		old := c.order[0]
		c.order[0] = ""
		c.order = c.order[1:]
		c.size -= c.m[old].size
		delete(c.m, old)
	}
	return ops, nil
}
