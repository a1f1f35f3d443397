package document

import (
	"errors"
	"fmt"

	"github.com/patchd/patchd/patch"
)

// edit is a client's change to one document, parsed.
type edit struct {
	// apply applies the change to doc (a tree it may modify) and returns
	// the result and the normalized ops. It may be called more than once.
	apply func(doc any) (any, []patch.Op, error)
	// create is the new document when the target does not exist (Put,
	// Post); nil means the write needs an existing document.
	create any
	// body is the canonical encoding of create, when set.
	body []byte
	// canonical, when set, applies the change to the canonical bytes of
	// the current version without decoding them, and returns the new
	// canonical bytes (checked against the limits) and the normalized ops;
	// ok is false when it cannot, and apply is used instead.
	canonical func(cur []byte) (body []byte, ops []patch.Op, ok bool)
}

// schemaError makes a schema's body that breaks a document's limits (its
// depth, its size) an invalid schema; any other write's error is returned
// as it is.
func (d *decision) schemaError(err error) error {
	if d.schemaWrite != nil && errors.Is(err, patch.ErrInvalidDocument) {
		return fail(ErrInvalidSchema, "the schema breaks a document's limits: "+err.Error())
	}
	return err
}

// parse reads the write's body into its edit, within the limits.
func (d *decision) parse() error {
	lim := d.s.cfg.Limits
	switch d.w.Kind {
	case Put, Post:
		doc, err := patch.Parse(d.w.Body, lim)
		if err != nil {
			return d.schemaError(err)
		}
		if _, ok := doc.(map[string]any); !ok && d.schemaWrite != nil {
			return fail(ErrInvalidSchema, "a schema must be a JSON object (use {} to accept every document)")
		}
		canonical, err := patch.CheckDocument(doc, lim)
		if err != nil {
			return d.schemaError(err)
		}
		if d.schemaWrite != nil {
			if _, err := compileSchema(d.schemaWrite.collection, canonical); err != nil {
				return err
			}
		}
		body := doc.(map[string]any) // CheckDocument refuses anything but an object
		d.edit = edit{create: doc, body: canonical, apply: func(cur any) (any, []patch.Op, error) {
			if m, ok := cur.(map[string]any); ok {
				return body, patch.Diff(m, body), nil
			}
			return body, []patch.Op{{Kind: patch.OpRoot, Value: body, Old: cur, HadOld: true}}, nil
		}}
	case JSONPatch:
		ops, err := patch.ParseJSONPatch(d.w.Body, lim)
		if err != nil {
			return err
		}
		d.edit = edit{apply: func(doc any) (any, []patch.Op, error) {
			return patch.Apply(doc, ops, lim)
		}, canonical: func(cur []byte) ([]byte, []patch.Op, bool) {
			return patch.ApplyCanonical(cur, ops, lim)
		}}
	case MergePatch:
		mp, err := patch.Parse(d.w.Body, lim)
		if err != nil {
			return err
		}
		d.edit = edit{apply: func(doc any) (any, []patch.Op, error) {
			res, ops := patch.MergePatch(doc, mp)
			return res, ops, nil
		}}
	case Delete:
	case Revert:
		if d.w.Revert == 0 {
			return fail(ErrInvalidRequest, "a revert names the seq of a version, a positive integer")
		}
	default:
		return fmt.Errorf("document: write of unknown kind %v", d.w.Kind)
	}
	return nil
}
