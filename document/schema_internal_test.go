package document

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// TestSchemaCompiledOncePerETag: writes reuse the compiled schema until
// the schema changes.
func TestSchemaCompiledOncePerETag(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := New(st, DefaultConfig())
	ctx := context.Background()
	put := func(id string) {
		t.Helper()
		if _, err := s.Write(ctx, Write{Kind: Put, Collection: "c", ID: id, Body: []byte(`{"n":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
	cached := func() *compiledSchema {
		s.schemas.mu.Lock()
		defer s.schemas.mu.Unlock()
		return s.schemas.m["c"]
	}
	res, err := s.WriteSchema(ctx, Write{Kind: Put, Collection: "c", Body: []byte(`{"type":"object"}`)})
	if err != nil {
		t.Fatal(err)
	}
	put("a")
	first := cached()
	if first == nil || first.etag != res.Doc.ETag {
		t.Fatalf("cache after a write: %+v", first)
	}
	put("b")
	if cached() != first {
		t.Fatal("the schema was compiled again for an unchanged ETag")
	}
	pre := Preconditions{IfMatch: ETagList{Present: true, Tags: []EntityTag{{Opaque: res.Doc.ETag}}}}
	if res, err = s.WriteSchema(ctx, Write{Kind: Put, Collection: "c", Body: []byte(`{"type":"object","required":["n"]}`), Pre: pre}); err != nil {
		t.Fatal(err)
	}
	put("c")
	if c := cached(); c == first || c.etag != res.Doc.ETag {
		t.Fatalf("cache after the schema changed: %+v", c)
	}
}
