package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Diff returns the JSON Patch ops that turn the JSON value before into
// after, member by member, as the JavaScript client's diff does: members
// that differ are replaced, added or removed one by one, so that the
// server rebases the edit cleanly over concurrent edits of other members.
//
// Arrays are replaced whole, unless key names a member that identifies the
// elements (line items with an "id", say) in both arrays: every element an
// object whose key is a string or a number, no key twice. Then removed
// elements are removed, new ones inserted, and changed ones edited member
// by member, each guarded by a test of the element's key, so that an edit
// can never land on another element after concurrent inserts or removals.
// Keyed arrays whose common elements were reordered are replaced whole.
//
// Members come in the byte order of their names (the JavaScript client
// follows the order of the objects). Equal values give an empty, non-nil
// slice, which marshals to [].
func Diff(before, after json.RawMessage, key string) ([]Op, error) {
	a, err := decodeTree(before)
	if err != nil {
		return nil, fmt.Errorf("patchd: diff: before: %w", err)
	}
	b, err := decodeTree(after)
	if err != nil {
		return nil, fmt.Errorf("patchd: diff: after: %w", err)
	}
	d := &differ{key: key, ops: []Op{}}
	if err := d.diff("", a, b, nil, false); err != nil {
		return nil, err
	}
	return d.ops, nil
}

// A tree is a decoded JSON value: map[string]any, []any, json.Number,
// string, bool or nil.

// decodeTree decodes one JSON value, keeping number literals.
func decodeTree(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

// equalTree reports whether two trees are the same JSON value; numbers
// compare by their literals.
func equalTree(a, b any) bool { return reflect.DeepEqual(a, b) }

// encodeTree returns the JSON of a tree.
func encodeTree(v any) (json.RawMessage, error) {
	b, err := encodeJSON(v)
	return json.RawMessage(b), err
}

// escapeToken escapes one JSON Pointer reference token.
func escapeToken(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// parsePointer splits an RFC 6901 JSON Pointer into its tokens.
func parsePointer(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	if p[0] != '/' {
		return nil, fmt.Errorf("patchd: JSON Pointer %q does not start with /", p)
	}
	toks := strings.Split(p[1:], "/")
	for i, t := range toks {
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return toks, nil
}

// lookup returns the node at a JSON Pointer; false when there is none.
func lookup(v any, p string) (any, bool) {
	toks, err := parsePointer(p)
	if err != nil {
		return nil, false
	}
	for _, t := range toks {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[t]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(x) || (len(t) > 1 && t[0] == '0') {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// differ collects the ops of a diff.
type differ struct {
	key string
	// guard, for Update, changes three things: every change of a value
	// that the server's version holds is preceded by a test of that value
	// (taken from the server's version, which the typed value may render
	// differently), so that a concurrent change of it is a conflict; a
	// changed member is added rather than replaced when the server's
	// version lacks it; and a removal of a member the server's version
	// lacks is left out.
	guard bool
	ops   []Op
}

func (d *differ) emit(op, path string, v any) error {
	raw, err := encodeTree(v)
	if err != nil {
		return err
	}
	d.ops = append(d.ops, Op{Op: op, Path: path, Value: raw})
	return nil
}

// test guards path with the server's value s when there is one.
func (d *differ) test(path string, s any, sOK bool) error {
	if !d.guard || !sOK {
		return nil
	}
	return d.emit("test", path, s)
}

// diff appends the ops that turn a into b at path. s is the server's node
// at the same place (sOK false when it has none); only guard uses it.
func (d *differ) diff(path string, a, b, s any, sOK bool) error {
	if equalTree(a, b) {
		return nil
	}
	ma, aObj := a.(map[string]any)
	mb, bObj := b.(map[string]any)
	if aObj && bObj {
		ms, _ := s.(map[string]any)
		for _, k := range sortedKeys(ma) {
			if _, ok := mb[k]; ok {
				continue
			}
			if _, onServer := ms[k]; d.guard && !onServer {
				continue
			}
			d.ops = append(d.ops, Op{Op: "remove", Path: path + "/" + escapeToken(k)})
		}
		for _, k := range sortedKeys(mb) {
			sk, skOK := ms[k]
			if av, ok := ma[k]; ok {
				if err := d.diff(path+"/"+escapeToken(k), av, mb[k], sk, skOK); err != nil {
					return err
				}
				continue
			}
			if err := d.test(path+"/"+escapeToken(k), sk, skOK); err != nil {
				return err
			}
			if err := d.emit("add", path+"/"+escapeToken(k), mb[k]); err != nil {
				return err
			}
		}
		return nil
	}
	la, aArr := a.([]any)
	lb, bArr := b.([]any)
	if aArr && bArr && d.key != "" && keyed(la, d.key) && keyed(lb, d.key) {
		if done, err := d.diffKeyed(path, la, lb, s); done || err != nil {
			return err
		}
	}
	if err := d.test(path, s, sOK); err != nil {
		return err
	}
	op := "replace"
	if d.guard && !sOK && path != "" {
		op = "add" // sets an object member whether or not it exists
	}
	return d.emit(op, path, b)
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// elemKey returns an element's key value as a comparable string: its type
// and its literal. ok is false when the element is not an object or its
// key is not a string or a number.
func elemKey(e any, key string) (string, bool) {
	m, ok := e.(map[string]any)
	if !ok {
		return "", false
	}
	switch k := m[key].(type) {
	case string:
		return "s" + k, true
	case json.Number:
		return "n" + k.String(), true
	}
	return "", false
}

// keyed reports whether every element of arr is an object with a string
// or number key, and no key repeats.
func keyed(arr []any, key string) bool {
	seen := make(map[string]bool, len(arr))
	for _, e := range arr {
		k, ok := elemKey(e, key)
		if !ok || seen[k] {
			return false
		}
		seen[k] = true
	}
	return true
}

// diffKeyed diffs two keyed arrays element by element; done is false when
// the kept elements were reordered, and the array is to be replaced whole.
// s is the server's array, used when it lines up with a.
func (d *differ) diffKeyed(path string, a, b []any, s any) (done bool, err error) {
	srv, _ := s.([]any)
	if len(srv) != len(a) {
		srv = nil
	}
	keyOf := func(e any) string { k, _ := elemKey(e, d.key); return k }
	inA := make(map[string]bool, len(a))
	for _, e := range a {
		inA[keyOf(e)] = true
	}
	inB := make(map[string]bool, len(b))
	for _, e := range b {
		inB[keyOf(e)] = true
	}
	var kept []int // indices in a of the elements b keeps
	for i, e := range a {
		if inB[keyOf(e)] {
			kept = append(kept, i)
		}
	}
	j := 0
	for _, e := range b {
		if inA[keyOf(e)] {
			if keyOf(a[kept[j]]) != keyOf(e) {
				return false, nil // reordered
			}
			j++
		}
	}
	// keyTest guards an element of a (index ai) now at working index wi.
	keyTest := func(wi, ai int) error {
		p := path + "/" + strconv.Itoa(wi) + "/" + escapeToken(d.key)
		v := a[ai].(map[string]any)[d.key]
		if srv != nil {
			if sv, ok := srv[ai].(map[string]any)[d.key]; ok {
				v = sv
			}
		}
		return d.emit("test", p, v)
	}
	for i := len(a) - 1; i >= 0; i-- {
		if !inB[keyOf(a[i])] {
			if err := keyTest(i, i); err != nil {
				return true, err
			}
			d.ops = append(d.ops, Op{Op: "remove", Path: path + "/" + strconv.Itoa(i)})
		}
	}
	j = 0 // index into kept
	for i, e := range b {
		if !inA[keyOf(e)] {
			// The working array holds b[0..i-1] and the kept elements not
			// yet reached: with none of those left, this is an append.
			p := path + "/" + strconv.Itoa(i)
			if j == len(kept) {
				p = path + "/-"
			}
			if err := d.emit("add", p, e); err != nil {
				return true, err
			}
			continue
		}
		ai := kept[j]
		j++
		var se any
		seOK := false
		if srv != nil {
			se, seOK = srv[ai], true
		}
		inner := &differ{key: d.key, guard: d.guard}
		if err := inner.diff(path+"/"+strconv.Itoa(i), a[ai], e, se, seOK); err != nil {
			return true, err
		}
		if len(inner.ops) > 0 {
			if err := keyTest(i, ai); err != nil {
				return true, err
			}
			d.ops = append(d.ops, inner.ops...)
		}
	}
	return true, nil
}
