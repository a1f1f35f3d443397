package document_test

import (
	"context"
	"errors"
	"testing"

	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/store"
)

// TestSchemaSeenByEveryService: two services over one store, as two
// replicas over one database: a schema written through one applies to the
// very next write through the other, and so do its replacement and its
// removal.
func TestSchemaSeenByEveryService(t *testing.T) {
	a, st := openService(t)
	b := document.New(st, document.DefaultConfig())
	ctx := context.Background()
	put := func(svc *document.Service, id, body string) error {
		_, err := svc.Write(ctx, document.Write{Kind: document.Put, Collection: "c", ID: id, Body: []byte(body)})
		return err
	}
	if err := put(b, "before", `{"n":"text"}`); err != nil { // b has seen no schema yet
		t.Fatal(err)
	}
	strict := document.Write{Kind: document.Put, Collection: "c", Body: []byte(`{"properties":{"n":{"type":"integer"}}}`)}
	res, err := a.WriteSchema(ctx, strict)
	if err != nil {
		t.Fatal(err)
	}
	if err := put(b, "x", `{"n":"text"}`); !errors.Is(err, document.ErrSchemaViolation) {
		t.Fatalf("write through b after a's schema: %v, want ErrSchemaViolation", err)
	}
	loose := document.Write{Kind: document.Put, Collection: "c", Body: []byte(`{"properties":{"n":{"type":["integer","string"]}}}`),
		Pre: document.Preconditions{IfMatch: document.ETagList{Present: true, Tags: []document.EntityTag{{Opaque: res.Doc.ETag}}}}}
	if res, err = a.WriteSchema(ctx, loose); err != nil {
		t.Fatal(err)
	}
	if err := put(b, "x", `{"n":"text"}`); err != nil {
		t.Fatalf("write through b after a loosened the schema: %v", err)
	}
	if err := put(a, "y", `{"n":true}`); !errors.Is(err, document.ErrSchemaViolation) {
		t.Fatalf("write through a: %v, want ErrSchemaViolation", err)
	}
	del := document.Write{Kind: document.Delete, Collection: "c",
		Pre: document.Preconditions{IfMatch: document.ETagList{Present: true, Tags: []document.EntityTag{{Opaque: res.Doc.ETag}}}}}
	if _, err := b.WriteSchema(ctx, del); err != nil {
		t.Fatal(err)
	}
	if err := put(a, "y", `{"n":true}`); err != nil {
		t.Fatalf("write through a after b removed the schema: %v", err)
	}
	if _, err := a.Schema(ctx, "c"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Schema after its delete: %v", err)
	}
	// The schema collection is not written as documents.
	if _, err := a.Write(ctx, document.Write{Kind: document.Put, Collection: store.SchemaCollection, ID: "c", Body: []byte(`{}`)}); !errors.Is(err, document.ErrInvalidRequest) {
		t.Fatalf("Write to the schema collection: %v", err)
	}
}
