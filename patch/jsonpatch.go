package patch

import (
	"errors"
	"fmt"
	"strings"
)

// JSONPatchOp is one operation of an RFC 6902 JSON Patch, validated.
type JSONPatchOp struct {
	// Op is add, remove, replace, move, copy or test.
	Op string
	// Path and From are the parsed pointers; From is set for move and copy.
	Path, From pointer
	// RawPath and RawFrom are the pointers as the client sent them.
	RawPath, RawFrom string
	// Value is set for add, replace and test. It is never modified.
	Value any
}

// ParseJSONPatch parses and validates an RFC 6902 JSON Patch document in
// full before anything is applied: it must be an array of at most lim.MaxOps
// objects, each with a known "op", string pointers in RFC 6901 syntax where
// the op needs them, a "value" where the op needs one, and a move "from" that
// is not a proper prefix of its "path". Members the RFC does not define are
// ignored, as RFC 6902 section 4 asks. Errors wrap ErrInvalidJSON or
// ErrInvalidPatch; values nested deeper than lim.MaxDepth give
// ErrInvalidDocument.
func ParseJSONPatch(body []byte, lim Limits) ([]JSONPatchOp, error) {
	if lim.MaxDepth > 0 {
		lim.MaxDepth += 2 // the patch's own array and operation objects
	}
	v, err := Parse(body, lim)
	if pe := (*Error)(nil); errors.As(err, &pe) && errors.Is(pe.Err, ErrInvalidDocument) && strings.HasPrefix(pe.Detail, "nesting is deeper") {
		// Say the limit the operator set, which applies to the values.
		pe.Detail = fmt.Sprintf("a value of the patch nests deeper than the limit of %d (the patch's array and operation objects are not counted)", lim.MaxDepth-2)
	}
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, errorf(ErrInvalidPatch, -1, "a JSON Patch must be an array of operations")
	}
	if lim.MaxOps > 0 && len(arr) > lim.MaxOps {
		return nil, errorf(ErrInvalidPatch, -1, "the patch has %d operations; the limit is %d", len(arr), lim.MaxOps)
	}
	ops := make([]JSONPatchOp, len(arr))
	for i, e := range arr {
		op, err := parseOperation(e)
		if err != nil {
			var pe *Error
			if errors.As(err, &pe) {
				pe.Op = i
			}
			return nil, err
		}
		ops[i] = op
	}
	return ops, nil
}

func parseOperation(e any) (JSONPatchOp, error) {
	m, ok := e.(map[string]any)
	if !ok {
		return JSONPatchOp{}, errorf(ErrInvalidPatch, -1, "an operation must be an object")
	}
	var op JSONPatchOp
	name, ok := m["op"].(string)
	if !ok {
		return op, errorf(ErrInvalidPatch, -1, `"op" must be a string`)
	}
	op.Op = name
	var needFrom, needValue bool
	switch name {
	case "add", "replace", "test":
		needValue = true
	case "remove":
	case "move", "copy":
		needFrom = true
	default:
		return op, errorf(ErrInvalidPatch, -1, "unknown op %q", name)
	}
	var err error
	if op.RawPath, op.Path, err = pointerMember(m, "path"); err != nil {
		return op, err
	}
	if needFrom {
		if op.RawFrom, op.From, err = pointerMember(m, "from"); err != nil {
			return op, err
		}
		if name == "move" && op.From.isProperPrefix(op.Path) {
			return op, errorf(ErrInvalidPatch, -1, "cannot move %q into its own child %q", op.RawFrom, op.RawPath)
		}
	}
	if needValue {
		v, ok := m["value"]
		if !ok {
			return op, errorf(ErrInvalidPatch, -1, "%s needs a \"value\"", name)
		}
		op.Value = v
	}
	return op, nil
}

func pointerMember(m map[string]any, name string) (string, pointer, error) {
	raw, ok := m[name]
	if !ok {
		return "", nil, errorf(ErrInvalidPatch, -1, "missing %q", name)
	}
	s, ok := raw.(string)
	if !ok {
		return "", nil, errorf(ErrInvalidPatch, -1, "%q must be a string", name)
	}
	p, err := parsePointer(s)
	if err != nil {
		return "", nil, err
	}
	return s, p, nil
}

// String returns the operation as the client might have written it, for
// messages.
func (o JSONPatchOp) String() string {
	if o.From != nil {
		return fmt.Sprintf("%s %q from %q", o.Op, o.RawPath, o.RawFrom)
	}
	return fmt.Sprintf("%s %q", o.Op, o.RawPath)
}
