package client

import (
	"context"
	"errors"
	"fmt"
)

// UpdateOption changes how Update works.
type UpdateOption func(*updateOptions)

type updateOptions struct {
	attempts int
	key      string
	reads    []string
}

// MaxAttempts bounds how many times Update reads the document and runs
// its function; the default is 10.
func MaxAttempts(n int) UpdateOption {
	return func(o *updateOptions) {
		if n > 0 {
			o.attempts = n
		}
	}
}

// ArrayKey names the member that identifies the elements of arrays of
// objects, which Update then edits element by element (see Diff); the
// default is "id", and "" replaces changed arrays whole.
func ArrayKey(key string) UpdateOption {
	return func(o *updateOptions) { o.key = key }
}

// Reads declares members, by JSON Pointer, that the function's changes
// depend on without changing them (a total computed from line items, say):
// a concurrent change of any of them is a conflict, and the function runs
// again on the new version. A member that the document does not have when
// it is read cannot be guarded and is left out.
func Reads(pointers ...string) UpdateOption {
	return func(o *updateOptions) { o.reads = append(o.reads, pointers...) }
}

// Update changes a document through a typed value: it reads the document,
// decodes it into a T, lets fn change it, and sends the difference as JSON
// Patch ops, one per changed member (arrays of keyed objects element by
// element, see ArrayKey), with If-Match naming the version read. Members
// of the document that T does not hold are left as they are.
//
// When others have committed versions since the read, the server rebases
// the ops over them: edits of other members land without conflict. Every
// op that changes a value the read version holds is preceded by a test of
// that value, so a concurrent change of the same member, even to the same
// value, is a conflict: Update then reads the document again and runs fn
// again, up to MaxAttempts times (a base version pruned from history,
// 412 base-unknown, is treated the same way). fn must therefore only
// change the value it is given. Adding a member that the read version
// lacks cannot be guarded: two concurrent Updates adding it with the same
// value both succeed.
//
// Update returns the document as its write left it, or as it was read when
// fn changed nothing (no write is sent). Errors: fn's own, as it returned
// it; an error wrapping ErrNotFound when the document does not exist; the
// last *ConflictError, wrapped, when the attempts run out; a *Problem for
// anything else the server refused. A write whose answer was lost is
// retried with its idempotency key: if it was applied, the retry gets its
// answer; if it is refused, it was not, and fn runs again as for any
// conflict.
func Update[T any](ctx context.Context, cl *Client, c, id string, fn func(*T) error, opts ...UpdateOption) (*Document, error) {
	o := updateOptions{attempts: 10, key: "id"}
	for _, f := range opts {
		f(&o)
	}
	var last error
	for range o.attempts {
		doc, err := cl.Get(ctx, c, id)
		if err != nil {
			return nil, err
		}
		ops, err := edit(doc, fn, o)
		if err != nil {
			return nil, err
		}
		if len(ops) == 0 {
			return doc, nil
		}
		res, err := cl.Patch(ctx, c, id, ops, IfMatch(doc.ETag))
		if err == nil {
			return res, nil
		}
		if !redo(err) {
			return nil, err
		}
		last = err
	}
	return nil, fmt.Errorf("patchd: update %s/%s: %d attempts: %w", c, id, o.attempts, last)
}

// edit runs fn on the document decoded as a T and returns the ops of its
// changes.
func edit[T any](doc *Document, fn func(*T) error, o updateOptions) ([]Op, error) {
	var v T
	if err := doc.Decode(&v); err != nil {
		return nil, fmt.Errorf("patchd: update %s/%s: decode: %w", doc.Collection, doc.ID, err)
	}
	before, err := encodeJSON(&v)
	if err != nil {
		return nil, err
	}
	if err := fn(&v); err != nil {
		return nil, err
	}
	after, err := encodeJSON(&v)
	if err != nil {
		return nil, err
	}
	server, err := decodeTree(doc.Value)
	if err != nil {
		return nil, fmt.Errorf("patchd: update %s/%s: %w", doc.Collection, doc.ID, err)
	}
	a, err := decodeTree(before)
	if err != nil {
		return nil, err
	}
	b, err := decodeTree(after)
	if err != nil {
		return nil, err
	}
	d := &differ{key: o.key, guard: true}
	if err := d.diff("", a, b, server, true); err != nil {
		return nil, err
	}
	if len(d.ops) == 0 {
		return nil, nil
	}
	var guards []Op
	for _, p := range o.reads {
		if v, ok := lookup(server, p); ok {
			raw, err := encodeTree(v)
			if err != nil {
				return nil, err
			}
			guards = append(guards, Op{Op: "test", Path: p, Value: raw})
		}
	}
	return append(guards, d.ops...), nil
}

// redo reports whether Update should read again and rerun its function
// after err: a rebase conflict, or a 412 that says the version read can no
// longer be rebased.
func redo(err error) bool {
	var ce *ConflictError
	if errors.As(err, &ce) {
		return true
	}
	var pe *PreconditionError
	if errors.As(err, &pe) {
		switch pe.Problem.Name() {
		case "base-unknown", "rebase-too-far", "rebase-apply-failed", "precondition-failed":
			return true
		}
	}
	return false
}
