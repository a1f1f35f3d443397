package patch

import (
	"fmt"
	"strconv"
	"strings"
)

// OpKind is the kind of a normalized operation (REBASE.md section 2).
type OpKind uint8

// Normalized operation kinds. History stores only Put, Del, Ins, Rm, Set and
// Root; Chk appears in client patches as a read footprint.
const (
	// OpPut sets an object member (added or overwritten).
	OpPut OpKind = iota + 1
	// OpDel removes an object member; with an empty path, the whole document.
	OpDel
	// OpIns inserts into an array at a concrete index.
	OpIns
	// OpRm removes an array element.
	OpRm
	// OpSet replaces an array element.
	OpSet
	// OpRoot replaces (or creates) the whole document.
	OpRoot
	// OpChk reads a path (test, and the source of copy).
	OpChk
)

var opKindNames = [...]string{OpPut: "put", OpDel: "del", OpIns: "ins", OpRm: "rm", OpSet: "set", OpRoot: "root", OpChk: "chk"}

func (k OpKind) String() string {
	if int(k) < len(opKindNames) && opKindNames[k] != "" {
		return opKindNames[k]
	}
	return fmt.Sprintf("OpKind(%d)", k)
}

// Seg is one typed path segment: an object member name, or an array index
// when IsIndex is set. Segments are typed by the document they were resolved
// against, never guessed from their spelling.
type Seg struct {
	Key     string
	Index   int
	IsIndex bool
}

// Key returns an object member segment.
func Key(k string) Seg { return Seg{Key: k} }

// Idx returns an array index segment.
func Idx(i int) Seg { return Seg{Index: i, IsIndex: true} }

func (s Seg) String() string {
	if s.IsIndex {
		return strconv.Itoa(s.Index)
	}
	return escapeToken(s.Key)
}

// Path is a typed path from the document root. The empty Path is the root.
type Path []Seg

// String returns the path as an RFC 6901 JSON Pointer.
func (p Path) String() string {
	var b strings.Builder
	for _, s := range p {
		b.WriteByte('/')
		b.WriteString(s.String())
	}
	return b.String()
}

// HasPrefix reports whether q is a segment-wise prefix of p (equal paths
// included; the root is a prefix of every path).
func (p Path) HasPrefix(q Path) bool {
	if len(q) > len(p) {
		return false
	}
	for i := range q {
		if p[i] != q[i] {
			return false
		}
	}
	return true
}

// Clone returns a copy of p that shares no memory with it.
func (p Path) Clone() Path { return append(Path(nil), p...) }

func (p Path) child(s Seg) Path {
	c := make(Path, len(p)+1)
	copy(c, p)
	c[len(p)] = s
	return c
}

// Op is a normalized operation: a JSON Patch operation resolved against the
// document it applied to, with concrete typed paths and what it overwrote.
type Op struct {
	Kind OpKind
	Path Path
	// Value is the new value of Put, Ins, Set and Root. Ops are immutable:
	// Value is never modified after the Op is made.
	Value any
	// Old is what Put (when HadOld), Del, Rm, Set and Root (when HadOld)
	// overwrote or removed, so that the op can be undone.
	Old any
	// HadOld tells whether Put overwrote a member and whether Root replaced
	// an existing document.
	HadOld bool
	// Append marks an Ins that the client addressed with "-".
	Append bool
	// Moved marks the Del or Rm half of a move: its value lives on at the
	// move's target, so it is not a deletion that composes with another
	// (exemption E2 does not apply to it).
	Moved bool
	// Client is the index of the client operation this op came from, or -1.
	// It is not stored in history.
	Client int
	// Sent is the path the client sent for that operation. It is not stored
	// in history.
	Sent string
}

// writes reports whether the op changes the document.
func (o Op) writes() bool { return o.Kind != OpChk }

// invert returns the op that undoes o.
func (o Op) invert() Op {
	switch o.Kind {
	case OpPut:
		if o.HadOld {
			return Op{Kind: OpPut, Path: o.Path, Value: o.Old, Old: o.Value, HadOld: true}
		}
		return Op{Kind: OpDel, Path: o.Path, Old: o.Value}
	case OpDel:
		if len(o.Path) == 0 {
			return Op{Kind: OpRoot, Path: o.Path, Value: o.Old}
		}
		return Op{Kind: OpPut, Path: o.Path, Value: o.Old}
	case OpIns:
		return Op{Kind: OpRm, Path: o.Path, Old: o.Value}
	case OpRm:
		return Op{Kind: OpIns, Path: o.Path, Value: o.Old}
	case OpSet:
		return Op{Kind: OpSet, Path: o.Path, Value: o.Old, Old: o.Value}
	case OpRoot:
		if o.HadOld {
			return Op{Kind: OpRoot, Path: o.Path, Value: o.Old, Old: o.Value, HadOld: true}
		}
		return Op{Kind: OpDel, Path: o.Path, Old: o.Value}
	}
	return Op{Kind: OpChk, Path: o.Path}
}

// EncodeOps encodes ops for storage. Paths keep their segment types (member
// names as strings, indices as numbers) and ops keep what they overwrote.
// Chk ops are left out: history records only writes.
func EncodeOps(ops []Op) []byte {
	arr := make([]any, 0, len(ops))
	for _, o := range ops {
		if !o.writes() {
			continue
		}
		path := make([]any, len(o.Path))
		for i, s := range o.Path {
			if s.IsIndex {
				path[i] = Number(strconv.Itoa(s.Index))
			} else {
				path[i] = s.Key
			}
		}
		m := map[string]any{"k": o.Kind.String(), "p": path}
		switch o.Kind {
		case OpPut, OpIns, OpSet, OpRoot:
			m["v"] = o.Value
		}
		if o.HadOld || o.Kind == OpDel || o.Kind == OpRm || o.Kind == OpSet {
			m["o"] = o.Old
		}
		if o.HadOld {
			m["h"] = true
		}
		if o.Append {
			m["a"] = true
		}
		if o.Moved {
			m["m"] = true
		}
		arr = append(arr, m)
	}
	return Canonical(arr)
}

// Pointer returns the path of o as it was committed and as history
// writes it: an append (an Ins the client addressed with "-") ends in
// "/-", every other op's path is its typed path.
func (o Op) Pointer() string {
	if o.Kind == OpIns && o.Append && len(o.Path) > 0 {
		return o.Path[:len(o.Path)-1].String() + "/-"
	}
	return o.Path.String()
}

// DecodeOps decodes what EncodeOps produced.
func DecodeOps(data []byte) ([]Op, error) {
	if len(data) == 0 {
		return nil, nil
	}
	v, err := Parse(data, Limits{})
	if err != nil {
		return nil, fmt.Errorf("decode ops: %w", err)
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("decode ops: not an array")
	}
	ops := make([]Op, 0, len(arr))
	for _, e := range arr {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("decode ops: not an object")
		}
		o := Op{Client: -1}
		name, _ := m["k"].(string)
		for k, n := range opKindNames {
			if n != "" && n == name {
				o.Kind = OpKind(k)
			}
		}
		if o.Kind == 0 || o.Kind == OpChk {
			return nil, fmt.Errorf("decode ops: unknown kind %q", name)
		}
		segs, _ := m["p"].([]any)
		o.Path = make(Path, len(segs))
		for i, s := range segs {
			switch s := s.(type) {
			case string:
				o.Path[i] = Key(s)
			case Number:
				n, err := strconv.Atoi(string(s))
				if err != nil {
					return nil, fmt.Errorf("decode ops: bad index %q", s)
				}
				o.Path[i] = Idx(n)
			default:
				return nil, fmt.Errorf("decode ops: bad path segment")
			}
		}
		o.Value, o.Old = m["v"], m["o"]
		o.HadOld, _ = m["h"].(bool)
		o.Append, _ = m["a"].(bool)
		o.Moved, _ = m["m"].(bool)
		ops = append(ops, o)
	}
	return ops, nil
}

// RFC6902 renders ops as an RFC 6902 JSON Patch (a JSON value for
// Canonical), the form history shows to clients. Chk ops are left out.
func RFC6902(ops []Op) []any {
	out := make([]any, 0, len(ops))
	for _, o := range ops {
		path := o.Path.String()
		var m map[string]any
		switch o.Kind {
		case OpPut:
			op := "add"
			if o.HadOld { // the member existed: the client's replace, or an add over it
				op = "replace"
			}
			m = map[string]any{"op": op, "path": path, "value": o.Value}
		case OpIns:
			m = map[string]any{"op": "add", "path": o.Pointer(), "value": o.Value}
		case OpDel, OpRm:
			m = map[string]any{"op": "remove", "path": path}
		case OpSet:
			m = map[string]any{"op": "replace", "path": path, "value": o.Value}
		case OpRoot:
			op := "add"
			if o.HadOld {
				op = "replace"
			}
			m = map[string]any{"op": op, "path": path, "value": o.Value}
		default:
			continue
		}
		out = append(out, m)
	}
	return out
}
