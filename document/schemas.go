package document

import (
	"context"
	"errors"
	"fmt"

	"github.com/patchd/patchd/store"
)

// schemaWrite marks a write of a collection's schema: its body must
// compile as one.
type schemaWrite struct {
	collection string
}

// WriteSchema puts (Kind Put) or deletes (Kind Delete) the schema of the
// collection w.Collection. Its preconditions are a document's, except that
// a schema is never rebased: a stale If-Match is a 412. A schema that does
// not compile is an error wrapping ErrInvalidSchema. Result.Doc is the
// schema as stored (its ID is the collection's name). The documents of the
// collection are not checked against a new schema (see Violations); every
// write after it is.
func (s *Service) WriteSchema(ctx context.Context, w Write) (Result, error) {
	if w.Kind != Put && w.Kind != Delete {
		return Result{}, fmt.Errorf("document: a schema write of kind %v", w.Kind)
	}
	if !store.ValidName(w.Collection) {
		return Result{}, fail(ErrInvalidRequest, fmt.Sprintf("collection %q must match [A-Za-z0-9._~-]{1,128}", w.Collection))
	}
	coll := w.Collection
	w.Collection, w.ID = store.SchemaCollection, coll
	w.Pre.Strict = true
	w.Idempotency = nil
	res, err := s.write(ctx, w, &schemaWrite{collection: coll})
	if w.Kind == Delete && errors.Is(err, store.ErrNotFound) {
		err = fail(store.ErrNotFound, fmt.Sprintf("collection %s has no schema", coll)) // as GET says
	}
	return res, err
}

// Schema returns the schema of a collection as stored. Returns an error
// wrapping store.ErrNotFound if it has none.
func (s *Service) Schema(ctx context.Context, collection string) (*store.Document, error) {
	if !store.ValidName(collection) {
		return nil, fail(store.ErrNotFound, "no such collection")
	}
	doc, err := s.store.Get(ctx, store.SchemaCollection, collection)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fail(store.ErrNotFound, fmt.Sprintf("collection %s has no schema", collection))
	}
	return doc, err
}

// SchemaETag returns the ETag of a collection's schema without reading it.
// Returns an error wrapping store.ErrNotFound if it has none.
func (s *Service) SchemaETag(ctx context.Context, collection string) (string, error) {
	if !store.ValidName(collection) {
		return "", fail(store.ErrNotFound, "no such collection")
	}
	etag, err := s.store.ETag(ctx, store.SchemaCollection, collection)
	if errors.Is(err, store.ErrNotFound) {
		return "", fail(store.ErrNotFound, fmt.Sprintf("collection %s has no schema", collection))
	}
	return etag, err
}

// Violation is a document that breaks its collection's schema.
type Violation struct {
	ID     string        `json:"id"`
	Errors []SchemaError `json:"errors"`
}

// Bounds of one Violations page: the documents it reads, their bytes, the
// work of the schema's patterns on them (about 1 s here; one document's
// own is bounded by maxValidationPatternWork) and of its subschemas (as
// scan estimates it, about 0.5 s here: one write's most). A document that
// would take the page past the subschemas' bound begins the next page,
// unless it is the page's first.
const (
	violationsScanDocs    = 1000
	violationsScanBytes   = 8 << 20
	violationsPatternWork = 2 * maxValidationPatternWork
	violationsWork        = maxValidationWork
)

// Violations checks the documents of a collection whose id sorts after
// the given one against the collection's schema, in id order, and returns
// up to limit of those that break it. It reads at most 1000 documents (or
// 8 MiB of them) per call: next, when not "", is the id to pass as after
// to go on (also once the schema's patterns or subschemas took their bound),
// and a page may hold fewer than limit violations, none even,
// before the end. Returns an error wrapping store.ErrNotFound if the
// collection has no schema.
func (s *Service) Violations(ctx context.Context, collection, after string, limit int) (vs []Violation, next string, err error) {
	sch, err := s.schemaFor(ctx, collection)
	if err != nil {
		return nil, "", err
	}
	if sch == nil {
		return nil, "", fail(store.ErrNotFound, fmt.Sprintf("collection %s has no schema", collection))
	}
	if err := acquireTurn(ctx, s.scans, "to check collection %s against its schema", collection); err != nil {
		return nil, "", err
	}
	defer s.scans.Release()
	vs = []Violation{}
	scanned, bytes, patternWork, work := 0, 0, 0, 0
	for {
		page, more, err := s.store.List(ctx, collection, after, min(100, violationsScanDocs-scanned))
		if err != nil {
			return nil, "", err
		}
		for i, e := range page {
			doc, err := s.store.Get(ctx, collection, e.ID)
			if errors.Is(err, store.ErrNotFound) {
				continue // deleted meanwhile
			}
			if err != nil {
				return nil, "", err
			}
			workLimit := maxValidationWork
			if scanned > 0 {
				workLimit = min(workLimit, violationsWork-work)
			}
			errs, pw, w, err := sch.validateLimited(ctx, nil, doc.Body, maxValidationPatternWork, workLimit)
			if we := (*workError)(nil); errors.As(err, &we) && !we.patterns && workLimit < maxValidationWork && w <= maxValidationWork {
				// Within one write's bound, but past what this page has
				// left: the next page begins with it.
				return vs, after, nil
			}
			patternWork += pw
			work += w
			if ne := (*numberError)(nil); errors.As(err, &ne) {
				// Stored before the schema: it cannot match until the
				// number is changed. No keyword failed.
				errs, err = []SchemaError{{InstancePath: ne.path, Message: ne.Error() + ", beyond what validation compares"}}, nil
			}
			if we := (*workError)(nil); errors.As(err, &we) {
				errs, err = []SchemaError{{Message: we.Error()}}, nil // no keyword failed
			}
			if err != nil {
				return nil, "", err
			}
			if len(errs) > 0 {
				vs = append(vs, Violation{ID: e.ID, Errors: errs})
			}
			after = e.ID
			scanned++
			bytes += len(doc.Body)
			if len(vs) == limit || scanned == violationsScanDocs || bytes >= violationsScanBytes || patternWork >= violationsPatternWork || work >= violationsWork {
				if i < len(page)-1 || more {
					return vs, after, nil
				}
				return vs, "", nil
			}
		}
		if !more {
			return vs, "", nil
		}
	}
}
