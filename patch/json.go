package patch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// Number is a JSON number kept as the literal text it was written with, so
// that 12345678901234567890123, 1e400 and -0.0 survive every path unchanged.
type Number string

// A JSON value in this package is one of: nil (null), bool, string, Number,
// []any (array) or map[string]any (object). Values are trees; no two places
// in a document share a node.

// Limits bounds the work done on untrusted input. A zero field means no limit.
type Limits struct {
	// MaxDepth is the deepest nesting of arrays and objects allowed.
	MaxDepth int
	// MaxDoc is the largest canonical document, in bytes. It also bounds
	// the total size of values copied by one JSON Patch.
	MaxDoc int
	// MaxOps is the most operations one JSON Patch may hold.
	MaxOps int
	// MaxNumber is the longest number literal Parse takes, in bytes.
	// Numbers are kept and compared exactly, at a cost that grows with
	// their length.
	MaxNumber int
}

// DefaultMaxNumber is the usual Limits.MaxNumber: room for any number a
// program writes (a float64 takes 24 bytes, a 256-bit integer 78), while
// every comparison of two numbers stays cheap.
const DefaultMaxNumber = 1024

// Parse decodes one JSON value. It rejects what the canonical form cannot
// represent faithfully: duplicate object member names, invalid UTF-8 and lone
// surrogates (all ErrInvalidJSON). Nesting deeper than lim.MaxDepth, and a
// number literal longer than lim.MaxNumber, are refused with
// ErrInvalidDocument as soon as they are seen, before the rest is read.
func Parse(data []byte, lim Limits) (any, error) {
	dec := jsontext.NewDecoder(bytes.NewBuffer(data))
	v, err := decodeValue(dec, &lim, 1)
	if err != nil {
		return nil, err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, invalidJSON(fmt.Errorf("unexpected data after the top-level value"))
	}
	return v, nil
}

func invalidJSON(err error) error {
	var se *jsontext.SyntacticError
	if errors.As(err, &se) {
		// The library's messages carry a "jsontext: " prefix and the
		// byte offset; keep both, they help the client find the problem.
		msg := strings.TrimPrefix(se.Error(), "jsontext: ")
		return &Error{Err: ErrInvalidJSON, Op: -1, Detail: msg}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return &Error{Err: ErrInvalidJSON, Op: -1, Detail: "unexpected end of JSON input"}
	}
	return &Error{Err: ErrInvalidJSON, Op: -1, Detail: err.Error()}
}

func decodeValue(dec *jsontext.Decoder, lim *Limits, depth int) (any, error) {
	switch dec.PeekKind() {
	case '{', '[':
		if lim.MaxDepth > 0 && depth > lim.MaxDepth {
			return nil, &Error{Err: ErrInvalidDocument, Op: -1,
				Detail: fmt.Sprintf("nesting is deeper than the limit of %d", lim.MaxDepth)}
		}
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, invalidJSON(err)
	}
	switch tok.Kind() {
	case 'n':
		return nil, nil
	case 't':
		return true, nil
	case 'f':
		return false, nil
	case '"':
		return tok.String(), nil
	case '0':
		n := tok.String()
		if lim.MaxNumber > 0 && len(n) > lim.MaxNumber {
			return nil, &Error{Err: ErrNumberTooLong, Op: -1,
				Detail: fmt.Sprintf("a number of %d characters (at byte %d); the limit is %d: write longer ones as strings", len(n), dec.InputOffset()-int64(len(n)), lim.MaxNumber)}
		}
		return Number(n), nil
	case '{':
		obj := make(map[string]any)
		for dec.PeekKind() != '}' {
			tok, err := dec.ReadToken()
			if err != nil {
				return nil, invalidJSON(err)
			}
			k := tok.String() // before the next read voids tok
			v, err := decodeValue(dec, lim, depth+1)
			if err != nil {
				return nil, err
			}
			obj[k] = v
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, invalidJSON(err)
		}
		return obj, nil
	case '[':
		arr := make([]any, 0, 4)
		for dec.PeekKind() != ']' {
			v, err := decodeValue(dec, lim, depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, invalidJSON(err)
		}
		return arr, nil
	}
	return nil, invalidJSON(fmt.Errorf("unexpected token %v", tok))
}

// Canonical returns the canonical encoding of v: object members sorted by
// their UTF-16 code units (RFC 8785 section 3.2.3), no insignificant white
// space, strings in their minimal escaping (RFC 8785 section 3.2.2.2) and
// numbers exactly as their literals were written. It equals what jsontext's
// Value.Canonicalize produces with raw ints and floats kept.
func Canonical(v any) []byte {
	return appendCanonical(make([]byte, 0, 256), v)
}

// AppendCanonical appends Canonical(v) to dst.
func AppendCanonical(dst []byte, v any) []byte { return appendCanonical(dst, v) }

// appendCanonical appends the canonical encoding of v to dst.
func appendCanonical(dst []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...)
	case bool:
		if v {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case string:
		// Strings here were decoded from valid UTF-8 or built from it, so
		// AppendQuote cannot fail; if it ever did, it would write U+FFFD.
		dst, _ = jsontext.AppendQuote(dst, v)
		return dst
	case Number:
		return append(dst, v...)
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendCanonical(dst, e)
		}
		return append(dst, ']')
	case map[string]any:
		dst = append(dst, '{')
		for i, k := range sortedKeys(v) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst, _ = jsontext.AppendQuote(dst, k)
			dst = append(dst, ':')
			dst = appendCanonical(dst, v[k])
		}
		return append(dst, '}')
	}
	panic(fmt.Sprintf("patch: not a JSON value: %T", v))
}

// sortedKeys returns the keys of m in canonical (UTF-16 code unit) order.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareUTF16)
	return keys
}

// compareUTF16 orders strings by their UTF-16 code units, as RFC 8785 asks.
// It differs from byte order only when a supplementary-plane character meets
// one in U+E000..U+FFFF.
func compareUTF16(a, b string) int {
	for i, j := 0, 0; ; {
		if i == len(a) || j == len(b) {
			return (len(a) - i) - (len(b) - j)
		}
		if a[i] < utf8.RuneSelf && b[j] < utf8.RuneSelf {
			if a[i] != b[j] {
				return int(a[i]) - int(b[j])
			}
			i, j = i+1, j+1
			continue
		}
		ra, na := utf8.DecodeRuneInString(a[i:])
		rb, nb := utf8.DecodeRuneInString(b[j:])
		if ra != rb {
			if ra >= 0x10000 && rb >= 0x10000 {
				return int(ra - rb) // same order as their surrogate pairs
			}
			return int(firstUnit(ra)) - int(firstUnit(rb))
		}
		i, j = i+na, j+nb
	}
}

// firstUnit is the first UTF-16 code unit of r.
func firstUnit(r rune) rune {
	if r >= 0x10000 {
		hi, _ := utf16.EncodeRune(r)
		return hi
	}
	return r
}

// Clone returns a deep copy of v.
func Clone(v any) any {
	switch v := v.(type) {
	case []any:
		c := make([]any, len(v))
		for i, e := range v {
			c[i] = Clone(e)
		}
		return c
	case map[string]any:
		c := make(map[string]any, len(v))
		for k, e := range v {
			c[k] = Clone(e)
		}
		return c
	}
	return v
}

// identical reports whether a and b have the same canonical encoding: the
// same structure, the same strings and the same number literals.
func identical(a, b any) bool {
	switch a := a.(type) {
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !identical(a[i], b[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			bv, ok := b[k]
			if !ok || !identical(av, bv) {
				return false
			}
		}
		return true
	}
	return a == b
}

// Equal reports whether a and b are equal as RFC 6902 section 4.6 defines it
// for the test operation: like identical, except that numbers are compared
// by their mathematical value (1, 1.0 and 10e-1 are equal).
func Equal(a, b any) bool {
	switch a := a.(type) {
	case Number:
		b, ok := b.(Number)
		return ok && numbersEqual(string(a), string(b))
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !Equal(a[i], b[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			bv, ok := b[k]
			if !ok || !Equal(av, bv) {
				return false
			}
		}
		return true
	}
	return a == b
}

// numbersEqual compares two valid JSON number literals by value, exactly,
// without converting through float64 and without expanding exponents.
func numbersEqual(a, b string) bool {
	if a == b {
		return true
	}
	na, nb := normNumber(a), normNumber(b)
	return na == nb
}

// NumberKey returns a string that two valid JSON number literals share
// exactly when they are equal by value, as Equal compares them (1, 1.0 and
// 10e-1 share one): a key for sets of numbers.
func NumberKey(n Number) string {
	d := normNumber(string(n))
	sign := "+"
	if d.neg {
		sign = "-"
	}
	return sign + d.digits + "e" + d.exp
}

// Uint64 returns the value of a valid JSON number literal that is a
// positive integer, however it is written (2, 2.0, 20e-1 and 0.2e1 are 2).
// ok is false for zero, negative and fractional values; overflow is true,
// with ok, for a positive integer past math.MaxUint64.
func Uint64(n Number) (v uint64, ok, overflow bool) {
	d := normNumber(string(n))
	if d.digits == "" || d.neg || strings.HasPrefix(d.exp, "-") {
		return 0, false, false
	}
	if compareDecimalInts(d.exp, strconv.Itoa(len(d.digits)-1)) < 0 {
		return 0, false, false // digits after the decimal point
	}
	if len(d.exp) > 2 { // the leading digit's exponent is 100 or more
		return 0, true, true
	}
	e, _ := strconv.Atoi(d.exp)
	v, err := strconv.ParseUint(d.digits+strings.Repeat("0", e-(len(d.digits)-1)), 10, 64)
	if err != nil {
		return 0, true, true
	}
	return v, true, false
}

// CompareNumbers compares two valid JSON number literals by their
// mathematical value, exactly, without converting through float64 and
// without expanding exponents: it returns -1 when a < b, 0 when they are
// equal (1, 1.0 and 10e-1 are), and +1 when a > b.
func CompareNumbers(a, b Number) int {
	if a == b {
		return 0
	}
	na, nb := normNumber(string(a)), normNumber(string(b))
	sign := func(d decimal) int {
		switch {
		case d.digits == "":
			return 0
		case d.neg:
			return -1
		}
		return 1
	}
	sa, sb := sign(na), sign(nb)
	if sa != sb || sa == 0 {
		return cmpInt(sa, sb)
	}
	// Same sign, both non-zero: the larger exponent of the leading digit
	// is the larger magnitude; then the digits decide.
	c := compareDecimalInts(na.exp, nb.exp)
	if c == 0 {
		c = strings.Compare(na.digits, nb.digits)
	}
	return c * sa
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compareDecimalInts compares two integers written in canonical decimal
// (as addDecimal returns them: an optional "-", no leading zeros).
func compareDecimalInts(a, b string) int {
	an, bn := strings.HasPrefix(a, "-"), strings.HasPrefix(b, "-")
	a, b = strings.TrimLeft(strings.TrimPrefix(a, "-"), "0"), strings.TrimLeft(strings.TrimPrefix(b, "-"), "0")
	if a == "" {
		an = false
	}
	if b == "" {
		bn = false
	}
	if an != bn {
		if an {
			return -1
		}
		return 1
	}
	c := cmpInt(len(a), len(b))
	if c == 0 {
		c = strings.Compare(a, b)
	}
	if an {
		return -c
	}
	return c
}

type decimal struct {
	neg    bool
	digits string // significant digits, no leading or trailing zeros; "" for zero
	exp    string // decimal exponent of the first digit, as a canonical integer
}

// normNumber turns a JSON number literal into sign, significant digits and
// the exponent of the leading digit, so that equal values compare equal.
// Exponents are handled as decimal strings so that 1e999999999999 costs no
// more than its length.
func normNumber(s string) decimal {
	var d decimal
	if s != "" && s[0] == '-' {
		d.neg = true
		s = s[1:]
	}
	mant, exp, _ := strings.Cut(strings.ToLower(s), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	all := intPart + frac
	lead := len(all) - len(strings.TrimLeft(all, "0"))
	d.digits = strings.TrimRight(all[lead:], "0")
	if d.digits == "" {
		return decimal{} // every zero is the same value, -0 included
	}
	// value = 0.<all> * 10^(len(intPart)+exp); the first significant digit
	// sits at position lead, so its exponent is len(intPart)-lead-1+exp.
	d.exp = addDecimal(exp, len(intPart)-lead-1)
	return d
}

// addDecimal adds a small integer to an integer written in decimal (with an
// optional sign) and returns the canonical decimal text of the sum.
func addDecimal(s string, n int) string {
	neg := false
	switch {
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	}
	s = strings.TrimLeft(s, "0")
	if len(s) <= 15 {
		v := 0
		for _, c := range s {
			v = v*10 + int(c-'0')
		}
		if neg {
			v = -v
		}
		return fmt.Sprint(v + n)
	}
	// |s| > 10^15 dwarfs n (bounded by the literal's length, far below
	// 10^15), but the exact value still matters: add digit by digit.
	digits := []byte(s)
	if neg {
		n = -n
	}
	carry := n
	for i := len(digits) - 1; i >= 0 && carry != 0; i-- {
		v := int(digits[i]-'0') + carry
		carry = 0
		for v < 0 {
			v += 10
			carry--
		}
		carry += v / 10
		digits[i] = byte('0' + v%10)
	}
	out := strings.TrimLeft(string(digits), "0")
	if carry > 0 {
		out = fmt.Sprint(carry) + out
	}
	if neg {
		return "-" + out
	}
	return out
}

// depth returns the nesting depth of v: 0 for a scalar, 1 for an empty or
// flat container. It stops counting past limit.
func depth(v any, limit int) int {
	switch v := v.(type) {
	case []any:
		best := 0
		for _, e := range v {
			if d := depth(e, limit); d > best {
				best = d
				if best > limit {
					break
				}
			}
		}
		return best + 1
	case map[string]any:
		best := 0
		for _, e := range v {
			if d := depth(e, limit); d > best {
				best = d
				if best > limit {
					break
				}
			}
		}
		return best + 1
	}
	return 0
}

// size estimates the canonical size of v in bytes (exact except for strings
// that need escaping, which it undercounts slightly). It is used to bound
// copies before they are made.
func size(v any) int {
	switch v := v.(type) {
	case nil:
		return 4
	case bool:
		if v {
			return 4
		}
		return 5
	case string:
		return len(v) + 2
	case Number:
		return len(v)
	case []any:
		n := 2
		for _, e := range v {
			n += size(e) + 1
		}
		return n
	case map[string]any:
		n := 2
		for k, e := range v {
			n += len(k) + 4 + size(e)
		}
		return n
	}
	return 0
}
