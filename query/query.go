// Package query parses and evaluates the filters and the order of a
// collection listing (API.md, "Listing with bodies, filters and order"):
// a where object that maps JSON Pointers to values or to operators, and an
// order that names one pointer. The same filter decides which changes a
// collection subscription of the change feed sends. Nothing here does I/O.
package query

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/patchd/patchd/patch"
)

// ErrInvalid is wrapped by every error of ParseWhere and ParseOrder; the
// message says what is wrong, for the client.
var ErrInvalid = errors.New("invalid query")

// Limits of a filter, so that evaluating it stays cheap whatever a client
// sends.
const (
	// MaxConditions is the most pointers one where object may name.
	MaxConditions = 64
	// MaxIn is the most values one "in" operator may list.
	MaxIn = 1000
	// MaxDepth bounds the nesting of a where object: a value as deep as
	// a document may be by default (64), inside {"/p": {"eq": ...}}.
	MaxDepth = 66
	// MaxPointerTokens is the most reference tokens a pointer of a where
	// or an order may have: no document nests deeper than --max-depth,
	// itself at most 1000, so a longer pointer names nothing, and the
	// cost of a lookup grows with its pointer.
	MaxPointerTokens = 1000
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Where is a parsed filter: every condition must hold. The zero value (and
// nil) matches every document.
type Where struct {
	conds []condition
}

// condition is what one pointer of a where object must satisfy.
type condition struct {
	raw string
	ptr patch.Pointer
	ops []operator // all must hold
}

// existsOnly reports whether the condition is one exists test.
func (c condition) existsOnly() bool { return len(c.ops) == 1 && c.ops[0].name == "exists" }

// operator is one test of a condition.
type operator struct {
	name string
	val  any // eq, ne, lt, le, gt, ge; the prefix string of prefix
	// in: set holds the keys (scalarKey) of its values that are not
	// arrays or objects, and rest those that are: a value is looked up in set,
	// not compared with each of up to MaxIn values (a filter of 1000
	// long numbers over 100,000 documents took 29 s).
	set  map[string]struct{}
	rest []any
	want bool // exists
}

// scalarKey returns a string that two values that are not arrays or
// objects share exactly when patch.Equal holds for them.
func scalarKey(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "n", true
	case bool:
		if x {
			return "t", true
		}
		return "f", true
	case string:
		return "s" + x, true
	case patch.Number:
		return "#" + patch.NumberKey(x), true
	}
	return "", false
}

// operators are the names an operator object may use.
var operators = []string{"eq", "ne", "lt", "le", "gt", "ge", "in", "exists", "prefix"}

// ParseWhere parses a where parameter: a JSON object mapping JSON Pointers
// to either a value that is not an object (JSON equality: 1 equals 1.0) or
// an object of operators (eq, ne, lt, le, gt, ge, in, exists, prefix), all
// of which must hold. An object is always read as operators, so that a
// mistyped operator is an error rather than an equality that never holds:
// to compare with an object, use {"eq": {...}}. An empty text gives a nil
// Where, which matches everything. Errors wrap ErrInvalid and say what is
// wrong.
func ParseWhere(s string) (*Where, error) {
	if s == "" {
		return nil, nil
	}
	v, err := patch.Parse([]byte(s), patch.Limits{MaxDepth: MaxDepth, MaxNumber: patch.DefaultMaxNumber})
	if errors.Is(err, patch.ErrNumberTooLong) {
		return nil, invalid("where: %v", err)
	}
	if errors.Is(err, patch.ErrInvalidDocument) {
		return nil, invalid("where nests deeper than the limit of %d levels", MaxDepth)
	}
	if err != nil {
		return nil, invalid("where is not valid JSON: %v", err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, invalid("where must be a JSON object mapping JSON Pointers to values or operators")
	}
	if len(obj) > MaxConditions {
		return nil, invalid("where names %d pointers; at most %d", len(obj), MaxConditions)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	w := &Where{}
	for _, k := range keys {
		ptr, err := patch.ParsePointer(k)
		if err != nil {
			return nil, invalid("where: %q is not a JSON Pointer (RFC 6901: empty, or \"/\" then tokens, \"~\" only as ~0 or ~1)", k)
		}
		if len(ptr) > MaxPointerTokens {
			return nil, invalid("where: a pointer of %d tokens; at most %d (no document nests deeper)", len(ptr), MaxPointerTokens)
		}
		c := condition{raw: k, ptr: ptr}
		if c.ops, err = parseOperators(k, obj[k]); err != nil {
			return nil, err
		}
		w.conds = append(w.conds, c)
	}
	return w, nil
}

// parseOperators reads the value a pointer maps to.
func parseOperators(ptr string, v any) ([]operator, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return []operator{{name: "eq", val: v}}, nil
	}
	if len(m) == 0 {
		return nil, invalid("where %q: {} names no operator (%s); to compare with an object, use {\"eq\": {...}}", ptr, strings.Join(operators, ", "))
	}
	var other []string
	for k := range m {
		if !slices.Contains(operators, k) {
			other = append(other, fmt.Sprintf("%q", k))
		}
	}
	if len(other) > 0 {
		sort.Strings(other)
		return nil, invalid("where %q: %s is not an operator (%s); to compare with an object, use {\"eq\": {...}}",
			ptr, strings.Join(other, ", "), strings.Join(operators, ", "))
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	ops := make([]operator, 0, len(m))
	for _, name := range names {
		arg := m[name]
		op := operator{name: name}
		switch name {
		case "eq", "ne":
			op.val = arg
		case "lt", "le", "gt", "ge":
			switch arg.(type) {
			case patch.Number, string:
			default:
				return nil, invalid("where %q: %s takes a number or a string", ptr, name)
			}
			op.val = arg
		case "in":
			a, ok := arg.([]any)
			if !ok {
				return nil, invalid("where %q: in takes an array of values", ptr)
			}
			if len(a) > MaxIn {
				return nil, invalid("where %q: in lists %d values; at most %d", ptr, len(a), MaxIn)
			}
			op.set = make(map[string]struct{}, len(a))
			for _, x := range a {
				if k, ok := scalarKey(x); ok {
					op.set[k] = struct{}{}
				} else {
					op.rest = append(op.rest, x)
				}
			}
		case "exists":
			b, ok := arg.(bool)
			if !ok {
				return nil, invalid("where %q: exists takes true or false", ptr)
			}
			op.want = b
		case "prefix":
			s, ok := arg.(string)
			if !ok {
				return nil, invalid("where %q: prefix takes a string", ptr)
			}
			op.val = s
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// Pointers returns the members the filter reads. The slice is the
// filter's own: the caller must not modify it.
func (w *Where) Pointers() []patch.Pointer {
	if w == nil {
		return nil
	}
	out := make([]patch.Pointer, len(w.conds))
	for i, c := range w.conds {
		out[i] = c.ptr
	}
	return out
}

// Match reports whether the document doc (a tree of package patch's
// values; nil when it does not exist) satisfies every condition. A
// document that does not exist matches nothing.
func (w *Where) Match(doc any) bool {
	if doc == nil {
		return false
	}
	return w.match(func(p patch.Pointer) (any, bool) { return p.Get(doc) }, func(p patch.Pointer) bool {
		_, ok := p.Get(doc)
		return ok
	})
}

// MatchCanonical is Match on a document's canonical bytes (as stored),
// which it reads without decoding the whole document. nil bytes are a
// document that does not exist.
func (w *Where) MatchCanonical(doc []byte) bool {
	if doc == nil {
		return false
	}
	if w != nil && w.valueLookups() > lookupsBeforeDecode {
		// Each lookup scans the document: past a few, decoding it once
		// costs less ("", "/a", "/a/a"... scanned a large document once
		// per pointer).
		tree, err := patch.Parse(doc, patch.Limits{})
		if err != nil {
			return false
		}
		return w.Match(tree)
	}
	return w.match(func(p patch.Pointer) (any, bool) { return p.Lookup(doc) }, func(p patch.Pointer) bool {
		_, ok := p.LookupRaw(doc)
		return ok
	})
}

// MatchLookups is Match on a document that the caller looks up in:
// get returns the value at a pointer, has whether there is one (without
// decoding it). MatchCanonical is MatchLookups on the canonical bytes.
func (w *Where) MatchLookups(get func(patch.Pointer) (any, bool), has func(patch.Pointer) bool) bool {
	return w.match(get, has)
}

// Decodes reports whether MatchCanonical decodes the whole document (the
// filter reads more members than it looks up in the bytes): a caller
// that has the document decoded already may call Match instead.
func (w *Where) Decodes() bool {
	return w != nil && w.valueLookups() > lookupsBeforeDecode
}

// valueLookups counts the conditions that need a value (exists needs
// none).
func (w *Where) valueLookups() int {
	n := 0
	for _, c := range w.conds {
		if !c.existsOnly() {
			n++
		}
	}
	return n
}

// lookupsBeforeDecode is how many pointers MatchCanonical looks up in a
// document's bytes; with more, it decodes the document once.
const lookupsBeforeDecode = 3

func (w *Where) match(get func(patch.Pointer) (any, bool), has func(patch.Pointer) bool) bool {
	if w == nil {
		return true
	}
	for _, c := range w.conds {
		if c.existsOnly() {
			// exists needs no value: do not decode one.
			if !c.ops[0].holds(nil, has(c.ptr)) {
				return false
			}
			continue
		}
		v, ok := get(c.ptr)
		for _, op := range c.ops {
			if !op.holds(v, ok) {
				return false
			}
		}
	}
	return true
}

// holds evaluates op on the value found (ok false: no member there).
func (op operator) holds(v any, ok bool) bool {
	switch op.name {
	case "exists":
		return ok == op.want
	case "ne":
		return !ok || !patch.Equal(v, op.val)
	}
	if !ok {
		return false
	}
	switch op.name {
	case "eq":
		return patch.Equal(v, op.val)
	case "in":
		if k, ok := scalarKey(v); ok {
			_, in := op.set[k]
			return in
		}
		for _, x := range op.rest {
			if patch.Equal(v, x) {
				return true
			}
		}
		return false
	case "prefix":
		s, isStr := v.(string)
		return isStr && strings.HasPrefix(s, op.val.(string))
	}
	c, comparable := compareSameType(v, op.val)
	if !comparable {
		return false
	}
	switch op.name {
	case "lt":
		return c < 0
	case "le":
		return c <= 0
	case "gt":
		return c > 0
	case "ge":
		return c >= 0
	}
	return false
}

// compareSameType compares two numbers by value or two strings by code
// point; other pairs do not compare.
func compareSameType(a, b any) (int, bool) {
	switch a := a.(type) {
	case patch.Number:
		if b, ok := b.(patch.Number); ok {
			return patch.CompareNumbers(a, b), true
		}
	case string:
		if b, ok := b.(string); ok {
			return strings.Compare(a, b), true // UTF-8 byte order is code point order
		}
	}
	return 0, false
}

// Order is a parsed order parameter: a JSON Pointer, descending with a "-"
// in front. Ties are broken by id, ascending; documents without the member
// sort last in either direction.
type Order struct {
	// Raw is the parameter as given, "-" included.
	Raw string
	// Ptr is the member the documents are sorted by.
	Ptr patch.Pointer
	// Desc sorts from the greatest value down.
	Desc bool
}

// ParseOrder parses an order parameter. Errors wrap ErrInvalid.
func ParseOrder(s string) (Order, error) {
	o := Order{Raw: s}
	if s == "" { // as every parameter given empty: a mistake more likely than the whole document
		return o, invalid("order must name a member with a JSON Pointer such as /name, or -/name for descending")
	}
	raw := s
	if strings.HasPrefix(raw, "-") {
		o.Desc, raw = true, raw[1:] // "-" alone: the whole document (pointer ""), descending
	}
	p, err := patch.ParsePointer(raw)
	if err != nil {
		return o, invalid("order: %q is not a JSON Pointer (RFC 6901), with an optional \"-\" in front for descending", raw)
	}
	if len(p) > MaxPointerTokens {
		return o, invalid("order: a pointer of %d tokens; at most %d (no document nests deeper)", len(p), MaxPointerTokens)
	}
	o.Ptr = p
	return o, nil
}

// MaxKeyBytes is how much of a string (its UTF-8), an array or an object
// (its canonical encoding) sorts: values equal in their first MaxKeyBytes
// bytes tie, and ties are broken by id. It keeps a sort key, the pages'
// heap and the next token small whatever the member holds.
const MaxKeyBytes = 1024

// Key is where a document sorts in an Order: the value of its member, or
// none.
type Key struct {
	// Value is the member's value, a string cut to MaxKeyBytes; for an
	// array or an object, a nil []any or map[string]any that only says
	// which, the value being in Canon. Missing is true when there is none.
	Value   any
	Missing bool
	// Canon is the canonical encoding of an array or object value, cut
	// to MaxKeyBytes.
	Canon []byte
	// ID breaks ties.
	ID string
}

// KeyOf returns the sort key of a document from its canonical bytes.
func (o Order) KeyOf(id string, doc []byte) Key {
	raw, ok := o.Ptr.LookupRaw(doc)
	if ok && len(raw) > 0 && (raw[0] == '[' || raw[0] == '{') {
		// The stored bytes are canonical: cut them instead of decoding
		// a large value to encode it again.
		return containerKey(id, raw[0] == '[', raw)
	}
	v, ok := o.Ptr.Lookup(doc)
	return MakeKey(id, v, ok)
}

// containerKey is the key of an array or object whose canonical encoding
// starts with canon. It keeps a copy of at most MaxKeyBytes: a key held
// by a page must not hold the whole document it was cut from.
func containerKey(id string, array bool, canon []byte) Key {
	k := Key{ID: id, Value: map[string]any(nil), Canon: bytes.Clone(canon[:min(len(canon), MaxKeyBytes)])}
	if array {
		k.Value = []any(nil)
	}
	return k
}

// MakeKey returns the sort key of a document whose member holds v (ok
// false: it has none).
func MakeKey(id string, v any, ok bool) Key {
	switch x := v.(type) {
	case string:
		// A copy, not a substring, for the same reason as containerKey.
		return Key{ID: id, Value: strings.Clone(x[:min(len(x), MaxKeyBytes)])}
	case []any:
		return containerKey(id, true, patch.Canonical(x))
	case map[string]any:
		return containerKey(id, false, patch.Canonical(x))
	}
	return Key{ID: id, Value: v, Missing: !ok}
}

// Compare orders two keys: by value (descending when the order says so),
// documents without the member last, then by id ascending. Values of
// different types sort null, false, true, numbers (by value), strings (by
// code point), arrays, objects (these two by their canonical encoding);
// strings, arrays and objects by their first MaxKeyBytes bytes.
func (o Order) Compare(a, b Key) int {
	switch {
	case a.Missing && !b.Missing:
		return 1
	case !a.Missing && b.Missing:
		return -1
	case !a.Missing:
		c := compareValues(a.Value, b.Value)
		if c == 0 && a.Canon != nil {
			c = bytes.Compare(a.Canon, b.Canon)
		}
		if o.Desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return strings.Compare(a.ID, b.ID)
}

// rank is the place of a JSON type in the order of mixed values.
func rank(v any) int {
	switch v := v.(type) {
	case nil:
		return 0
	case bool:
		if v {
			return 2
		}
		return 1
	case patch.Number:
		return 3
	case string:
		return 4
	case []any:
		return 5
	}
	return 6
}

// compareValues is a total order on JSON values (see Order.Compare).
func compareValues(a, b any) int {
	ra, rb := rank(a), rank(b)
	if ra != rb {
		if ra < rb {
			return -1
		}
		return 1
	}
	if c, ok := compareSameType(a, b); ok {
		return c
	}
	return 0 // arrays and objects: Compare compares their Canon
}
