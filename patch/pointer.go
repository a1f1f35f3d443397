package patch

import (
	"strings"
)

// Pointer is a parsed RFC 6901 JSON Pointer: its reference tokens,
// unescaped. The empty pointer refers to the whole document.
type Pointer []string

// pointer is the package's name for Pointer.
type pointer = Pointer

// ParsePointer parses an RFC 6901 JSON Pointer. It returns an error
// wrapping ErrInvalidPatch, whose message names the pointer and what is
// wrong with it, unless s is "" or starts with "/" and every "~" is
// followed by "0" or "1".
func ParsePointer(s string) (Pointer, error) { return parsePointer(s) }

// parsePointer parses an RFC 6901 JSON Pointer (see ParsePointer).
func parsePointer(s string) (pointer, error) {
	if s == "" {
		return pointer{}, nil
	}
	if s[0] != '/' {
		return nil, errorf(ErrInvalidPatch, -1, "pointer %q must be empty or start with \"/\"", s)
	}
	toks := strings.Split(s[1:], "/")
	for i, t := range toks {
		if !strings.Contains(t, "~") {
			continue
		}
		for j := 0; j < len(t); j++ {
			if t[j] == '~' && (j+1 == len(t) || (t[j+1] != '0' && t[j+1] != '1')) {
				return nil, errorf(ErrInvalidPatch, -1, "pointer %q has \"~\" not followed by \"0\" or \"1\"", s)
			}
		}
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return pointer(toks), nil
}

// String returns the pointer in RFC 6901 syntax.
func (p pointer) String() string {
	var b strings.Builder
	for _, t := range p {
		b.WriteByte('/')
		b.WriteString(escapeToken(t))
	}
	return b.String()
}

func escapeToken(t string) string {
	if !strings.ContainsAny(t, "~/") {
		return t
	}
	return strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1")
}

// Get returns the value p refers to in the JSON value doc (a tree of this
// package's values), and false when there is none: a missing member, an
// index that is not one or is out of range (RFC 6901 array indices, no
// "-"), or a token applied to a string, number, boolean or null. The value
// is doc's own: the caller must not modify it.
func (p Pointer) Get(doc any) (any, bool) {
	cur := doc
	for _, tok := range p {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i := parseIndex(tok, len(c))
			if i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// Lookup is Get on the canonical encoding of a document (as CheckDocument
// returns it and stores keep it) without decoding the whole document: it
// scans to the value and decodes only that. It returns false when there is
// no such value or doc is not canonical JSON.
func (p Pointer) Lookup(doc []byte) (any, bool) {
	if len(doc) == 0 {
		return nil, false
	}
	t, ok := find(doc, p)
	if !ok || !t.found {
		return nil, false
	}
	return parseSpan(doc[t.start:t.end])
}

// LookupRaw is Lookup without decoding: it returns the bytes of the value
// in doc, which in a canonical document are the value's canonical
// encoding.
func (p Pointer) LookupRaw(doc []byte) ([]byte, bool) {
	if len(doc) == 0 {
		return nil, false
	}
	t, ok := find(doc, p)
	if !ok || !t.found {
		return nil, false
	}
	return doc[t.start:t.end], true
}

// isProperPrefix reports whether a is a proper prefix of b.
func (p pointer) isProperPrefix(b pointer) bool {
	if len(p) >= len(b) {
		return false
	}
	for i := range p {
		if p[i] != b[i] {
			return false
		}
	}
	return true
}

// parseIndex parses an RFC 6901 array index: "0" or a digit string without a
// leading zero. It returns -1 when tok is not one, and maxLen+1 for an
// index past maxLen, however many digits it has.
func parseIndex(tok string, maxLen int) int {
	if tok == "" || len(tok) > 1 && tok[0] == '0' {
		return -1
	}
	n := 0
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c < '0' || c > '9' {
			return -1
		}
		if n > maxLen/10 {
			n = maxLen + 1 // past maxLen, whatever follows; no overflow
		} else {
			n = n*10 + int(c-'0')
		}
	}
	if n > maxLen {
		return maxLen + 1 // out of range, but syntactically an index
	}
	return n
}
