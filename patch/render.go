package patch

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// AppendRFC6902 appends to dst what Canonical(RFC6902(DecodeOps(stored)))
// returns for ops stored by EncodeOps, without decoding their values: they
// are stored canonical already, and are copied as they are. Rendering a
// version of a large document this way costs a scan and a copy of its
// bytes, not a tree ten times their size. What it does not expect (members
// out of canonical order, a value of the wrong type) it leaves to the tree:
// the answer is the same either way.
func AppendRFC6902(dst, stored []byte) ([]byte, error) {
	if out, err := appendRFC6902Scan(dst, stored); err == nil {
		return out, nil
	}
	ops, err := DecodeOps(stored)
	if err != nil {
		return dst, err
	}
	return appendCanonical(dst, RFC6902(ops)), nil
}

// errUnexpected makes AppendRFC6902 take the tree path.
var errUnexpected = errors.New("stored ops not as EncodeOps writes them")

// appendRFC6902Scan is AppendRFC6902's scan. It relies on the members of
// each stored op coming in canonical order ("a", "h", "k", "m", "o", "p",
// "v"): by the time it reaches the value, it knows the op and its path,
// and the value goes straight to dst.
func appendRFC6902Scan(dst, stored []byte) ([]byte, error) {
	start := len(dst)
	fail := func() ([]byte, error) { return dst[:start], errUnexpected }
	dst = append(dst, '[')
	if len(stored) == 0 {
		return append(dst, ']'), nil
	}
	dec := jsontext.NewDecoder(bytes.NewBuffer(stored))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '[' {
		return fail()
	}
	n := 0
	for dec.PeekKind() == '{' {
		if _, err := dec.ReadToken(); err != nil {
			return fail()
		}
		var (
			kind                 OpKind
			hadOld, app, gotPath bool
			path                 strings.Builder
			parent               int // length of path without its last segment
			wroteValue           bool
		)
		head := func() []byte { // the op and path members, once known
			op := ""
			switch kind {
			case OpPut:
				op = "add"
				if hadOld { // the member existed: shown as the replace it was
					op = "replace"
				}
			case OpIns:
				op = "add"
			case OpDel, OpRm:
				op = "remove"
			case OpSet:
				op = "replace"
			case OpRoot:
				op = "add"
				if hadOld {
					op = "replace"
				}
			}
			p := path.String()
			if kind == OpIns && app {
				p = p[:parent] + "/-"
			}
			if n > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"op":"`...)
			dst = append(dst, op...)
			dst = append(dst, `","path":`...)
			dst, _ = jsontext.AppendQuote(dst, p)
			return dst
		}
		for dec.PeekKind() == '"' {
			tok, err := dec.ReadToken()
			if err != nil {
				return fail()
			}
			name := tok.String() // before the next read, which reuses the token's bytes
			switch name {
			case "k":
				tok, err := dec.ReadToken()
				if err != nil || tok.Kind() != '"' || gotPath {
					return fail()
				}
				for k, s := range opKindNames {
					if s != "" && s == tok.String() {
						kind = OpKind(k)
					}
				}
				if kind == 0 || kind == OpChk {
					return fail()
				}
			case "h", "a", "m":
				tok, err := dec.ReadToken()
				if err != nil || (tok.Kind() != 't' && tok.Kind() != 'f') || kind != 0 && name != "m" {
					return fail()
				}
				switch name {
				case "h":
					hadOld = tok.Bool()
				case "a":
					app = tok.Bool()
				}
			case "p":
				if kind == 0 {
					return fail()
				}
				if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '[' {
					return fail()
				}
				for dec.PeekKind() != ']' {
					tok, err := dec.ReadToken()
					if err != nil {
						return fail()
					}
					parent = path.Len()
					path.WriteByte('/')
					switch tok.Kind() {
					case '"':
						path.WriteString(escapeToken(tok.String()))
					case '0':
						i, err := strconv.Atoi(tok.String())
						if err != nil {
							return fail()
						}
						path.WriteString(strconv.Itoa(i))
					default:
						return fail()
					}
				}
				if _, err := dec.ReadToken(); err != nil {
					return fail()
				}
				gotPath = true
			case "v":
				if !gotPath || wroteValue {
					return fail()
				}
				v, err := dec.ReadValue()
				if err != nil {
					return fail()
				}
				switch kind {
				case OpPut, OpIns, OpSet, OpRoot:
					dst = head()
					dst = append(dst, `,"value":`...)
					dst = append(dst, v...)
					dst = append(dst, '}')
					wroteValue = true
				}
			default: // "o", what it overwrote, and anything else: not rendered
				if err := dec.SkipValue(); err != nil {
					return fail()
				}
			}
		}
		if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '}' || kind == 0 || !gotPath {
			return fail()
		}
		switch kind {
		case OpDel, OpRm:
			dst = head()
			dst = append(dst, '}')
		case OpPut, OpIns, OpSet, OpRoot:
			if !wroteValue { // a value of null is still a value; none at all is the tree's to render
				return fail()
			}
		}
		n++
	}
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != ']' {
		return fail()
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return fail()
	}
	return append(dst, ']'), nil
}
