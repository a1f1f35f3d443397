package patch

import (
	"bytes"

	"github.com/go-json-experiment/json/jsontext"
)

// maxSpliceOps is the most operations ApplyCanonical takes on: each one
// copies the whole document, so past a few, decoding it once is cheaper.
const maxSpliceOps = 8

// ApplyCanonical applies a validated JSON Patch to the canonical encoding
// of a document without decoding the document: it finds each target by
// scanning the bytes and splices in the canonical encoding of the new
// value, so that a small patch to a large document costs a scan and a copy
// instead of a parse and a re-encode.
//
// It handles add, remove, replace and test on paths through existing object
// members and array elements, and only when every operation succeeds and
// the result is within lim. It then returns exactly what CheckDocument
// would return for the result of Apply on the decoded document, with the
// same normalized operations, and ok is true. Otherwise (move, copy, the
// root, more than a few operations, anything that fails or exceeds a limit)
// ok is false and the caller falls back to Apply, which gives the exact
// result or error. doc must be canonical (what CheckDocument returned);
// it is not modified.
func ApplyCanonical(doc []byte, ops []JSONPatchOp, lim Limits) (out []byte, nops []Op, ok bool) {
	if len(ops) == 0 || len(ops) > maxSpliceOps || len(doc) == 0 || doc[0] != '{' {
		return nil, nil, false
	}
	if lim.MaxDepth > 0 && nesting(doc) > lim.MaxDepth {
		return nil, nil, false // stored under a larger limit: Apply says so
	}
	cur, wrote := doc, false
	nops = make([]Op, 0, len(ops))
	for i, op := range ops {
		if len(op.Path) == 0 {
			return nil, nil, false
		}
		var o Op
		switch op.Op {
		case "add", "replace":
			if lim.MaxDepth > 0 && len(op.Path)+depth(op.Value, lim.MaxDepth) > lim.MaxDepth {
				return nil, nil, false
			}
			cur, o, ok = spliceSet(cur, op.Path, appendCanonical(nil, op.Value), op.Op == "add")
			o.Value, wrote = op.Value, true
		case "remove":
			cur, o, ok = spliceRemove(cur, op.Path)
			wrote = true
		case "test":
			var t target
			if t, ok = find(cur, op.Path); ok && t.found {
				var v any
				v, ok = parseSpan(cur[t.start:t.end])
				ok = ok && Equal(v, op.Value)
				o = Op{Kind: OpChk, Path: t.path}
			} else {
				ok = false
			}
		default:
			return nil, nil, false
		}
		if !ok {
			return nil, nil, false
		}
		o.Client, o.Sent = i, op.RawPath
		nops = append(nops, o)
	}
	if lim.MaxDoc > 0 && len(cur) > lim.MaxDoc {
		return nil, nil, false
	}
	if !wrote {
		cur = bytes.Clone(cur) // only tests: still a copy the caller owns
	}
	return cur, nops, true
}

// nesting returns the deepest nesting of arrays and objects in canonical
// data, as depth counts it.
func nesting(data []byte) int {
	level, deepest := 0, 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '"':
			e, ok := skipString(data, i)
			if !ok {
				return len(data) // not canonical: let Apply judge
			}
			i = e - 1
		case '{', '[':
			level++
			deepest = max(deepest, level)
		case '}', ']':
			level--
		}
	}
	return deepest
}

// target is where a pointer leads in canonical bytes: the value's span if
// it exists, else where a new member or element would go.
type target struct {
	path       Path // typed, of the whole pointer
	found      bool
	start, end int  // the value, when found
	member     int  // start of the member (its name) or element, when found
	inArray    bool // the parent is an array
	insert     int  // when not found: offset to insert at
	first      bool // when not found: the parent is empty
	last       bool // when not found: insert goes before the closing bracket
	name       string
}

// find resolves p in canonical data. The parent of the last token must
// exist; the last token may name a missing member (found is false) or, in
// an array, the position just past the end or "-" (found is false).
func find(data []byte, p pointer) (target, bool) {
	// The path grows as the pointer resolves: most lookups of a long
	// pointer end at its first tokens.
	t := target{path: make(Path, 0, min(len(p), 8))}
	start, end := 0, len(data)
	for k, tok := range p {
		lastTok := k == len(p)-1
		switch data[start] {
		case '{':
			ms, vs, ve, ins, found, ok := member(data, start, tok)
			if !ok {
				return t, false
			}
			t.path = append(t.path, Key(tok))
			if !found {
				if !lastTok {
					return t, false
				}
				t.insert, t.name = ins, tok
				t.first = data[start+1] == '}'
				t.last = data[ins] == '}'
				return t, true
			}
			t.member, start, end = ms, vs, ve
		case '[':
			n, es, ee, ins, count, ok := element(data, start, tok)
			if !ok {
				return t, false
			}
			t.path = append(t.path, Idx(n))
			if es < 0 {
				if !lastTok {
					return t, false
				}
				t.inArray, t.insert = true, ins
				t.first, t.last = count == 0, true
				return t, true
			}
			t.member, start, end = es, es, ee
			t.inArray = true
		default:
			return t, false
		}
		if !lastTok {
			t.inArray = false
		}
	}
	t.found, t.start, t.end = true, start, end
	return t, true
}

// member finds the member named tok in the object at data[at]. It returns
// the offsets of the member's name, of its value and past the value, or,
// when absent, the offset where a member named tok goes in canonical order
// (the start of the first greater name, or the closing brace).
func member(data []byte, at int, tok string) (ms, vs, ve, ins int, found, ok bool) {
	i := at + 1
	if data[i] == '}' {
		return 0, 0, 0, i, false, true
	}
	for {
		ks := i
		ke, ok := skipString(data, i)
		if !ok {
			return 0, 0, 0, 0, false, false
		}
		c, ok := compareName(data[ks:ke], tok)
		if !ok {
			return 0, 0, 0, 0, false, false
		}
		if c > 0 {
			return 0, 0, 0, ks, false, true
		}
		vs = ke + 1 // past ':'
		ve, ok = skipValue(data, vs)
		if !ok {
			return 0, 0, 0, 0, false, false
		}
		if c == 0 {
			return ks, vs, ve, 0, true, true
		}
		switch data[ve] {
		case ',':
			i = ve + 1
		case '}':
			return 0, 0, 0, ve, false, true
		default:
			return 0, 0, 0, 0, false, false
		}
	}
}

// element finds the element tok names in the array at data[at] (as an add
// target when tok is "-" or the length). It returns the index, the element's
// span (es < 0 when it does not exist), where an element at the end goes,
// and the array's length when es < 0.
func element(data []byte, at int, tok string) (n, es, ee, ins, count int, ok bool) {
	want := -1 // "-": the end
	if tok != "-" {
		if want = parseIndex(tok, 1<<62); want < 0 {
			return 0, 0, 0, 0, 0, false
		}
	}
	i := at + 1
	if data[i] == ']' {
		if want > 0 {
			return 0, 0, 0, 0, 0, false
		}
		return 0, -1, 0, i, 0, true
	}
	for idx := 0; ; idx++ {
		e, ok := skipValue(data, i)
		if !ok {
			return 0, 0, 0, 0, 0, false
		}
		if idx == want {
			return idx, i, e, 0, 0, true
		}
		switch data[e] {
		case ',':
			i = e + 1
		case ']':
			if want == idx+1 || want < 0 {
				return idx + 1, -1, 0, e, idx + 1, true
			}
			return 0, 0, 0, 0, 0, false // out of range
		default:
			return 0, 0, 0, 0, 0, false
		}
	}
}

// spliceSet adds (or, with add false, replaces) the value at p with the
// canonical bytes enc, and returns the new document and the normalized op
// (without its Value).
func spliceSet(data []byte, p pointer, enc []byte, add bool) ([]byte, Op, bool) {
	t, ok := find(data, p)
	if !ok {
		return nil, Op{}, false
	}
	if t.found {
		if t.inArray && add { // add into an array inserts before the element
			out := make([]byte, 0, len(data)+len(enc)+1)
			out = append(out, data[:t.member]...)
			out = append(out, enc...)
			out = append(out, ',')
			out = append(out, data[t.member:]...)
			return out, Op{Kind: OpIns, Path: t.path}, true
		}
		old, ok := parseSpan(data[t.start:t.end])
		if !ok {
			return nil, Op{}, false
		}
		out := make([]byte, 0, len(data)-(t.end-t.start)+len(enc))
		out = append(out, data[:t.start]...)
		out = append(out, enc...)
		out = append(out, data[t.end:]...)
		if t.inArray {
			return out, Op{Kind: OpSet, Path: t.path, Old: old}, true
		}
		return out, Op{Kind: OpPut, Path: t.path, Old: old, HadOld: true}, true
	}
	if !add {
		return nil, Op{}, false // replace needs an existing target
	}
	var ins []byte
	if t.inArray {
		ins = enc
	} else {
		ins, _ = jsontext.AppendQuote(make([]byte, 0, len(t.name)+len(enc)+4), t.name)
		ins = append(ins, ':')
		ins = append(ins, enc...)
	}
	out := make([]byte, 0, len(data)+len(ins)+1)
	out = append(out, data[:t.insert]...)
	switch {
	case t.first:
		out = append(out, ins...)
	case t.last:
		out = append(out, ',')
		out = append(out, ins...)
	default:
		out = append(out, ins...)
		out = append(out, ',')
	}
	out = append(out, data[t.insert:]...)
	if t.inArray {
		return out, Op{Kind: OpIns, Path: t.path, Append: p[len(p)-1] == "-"}, true
	}
	return out, Op{Kind: OpPut, Path: t.path}, true
}

// spliceRemove removes the member or element at p.
func spliceRemove(data []byte, p pointer) ([]byte, Op, bool) {
	t, ok := find(data, p)
	if !ok || !t.found {
		return nil, Op{}, false
	}
	old, ok := parseSpan(data[t.start:t.end])
	if !ok {
		return nil, Op{}, false
	}
	from, to := t.member, t.end
	switch {
	case data[to] == ',':
		to++
	case data[from-1] == ',':
		from--
	}
	out := make([]byte, 0, len(data)-(to-from))
	out = append(out, data[:from]...)
	out = append(out, data[to:]...)
	if t.inArray {
		return out, Op{Kind: OpRm, Path: t.path, Old: old}, true
	}
	return out, Op{Kind: OpDel, Path: t.path, Old: old}, true
}

// parseSpan decodes one value of a canonical document.
func parseSpan(b []byte) (any, bool) {
	v, err := Parse(b, Limits{})
	return v, err == nil
}

// compareName compares the member name whose quoted canonical encoding is
// q with tok, in canonical (UTF-16) order.
func compareName(q []byte, tok string) (int, bool) {
	raw := q[1 : len(q)-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return compareUTF16(string(raw), tok), true
	}
	name, err := jsontext.AppendUnquote(nil, q)
	if err != nil {
		return 0, false
	}
	return compareUTF16(string(name), tok), true
}

// skipString returns the offset just past the string starting at data[i].
func skipString(data []byte, i int) (int, bool) {
	if i >= len(data) || data[i] != '"' {
		return 0, false
	}
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '"':
			return j + 1, true
		case '\\':
			j++ // the escaped byte
		}
	}
	return 0, false
}

// skipValue returns the offset just past the value starting at data[i] of
// a canonical document (no white space).
func skipValue(data []byte, i int) (int, bool) {
	if i >= len(data) {
		return 0, false
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		level := 0
		for j := i; j < len(data); {
			switch data[j] {
			case '"':
				e, ok := skipString(data, j)
				if !ok {
					return 0, false
				}
				j = e
				continue
			case '{', '[':
				level++
			case '}', ']':
				level--
				if level == 0 {
					return j + 1, true
				}
			}
			j++
		}
		return 0, false
	}
	j := i
	for j < len(data) && data[j] != ',' && data[j] != '}' && data[j] != ']' {
		j++
	}
	return j, j > i
}
