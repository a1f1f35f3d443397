package document

import (
	"fmt"
	"testing"
)

// TestTreeCacheBounded: take and put any number of times on a few
// documents and the cache holds at most one entry per document, within
// its byte bound.
func TestTreeCacheBounded(t *testing.T) {
	c := newTreeCache(4 << 10)
	body := []byte(`{"a":1}`)
	tree := map[string]any{"a": 1}
	for i := range 10000 {
		id := fmt.Sprint(i % 3)
		c.take("c", id, "x")
		c.put("c", id, body, tree)
	}
	if n := c.len(); n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
	for i := range 100 {
		c.put("c", fmt.Sprint("d", i), body, tree)
	}
	if c.size > c.max || c.len() != len(c.m) {
		t.Fatalf("size %d of %d, %d entries, %d in the map", c.size, c.max, c.len(), len(c.m))
	}
	if got := c.take("c", "d99", `"nope"`); got != nil || c.take("c", "d99", "") != nil {
		t.Fatal("take gave a tree for another ETag, or kept it after a miss")
	}
}
