package handlers

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/document"
)

// Idempotency keys (draft-ietf-httpapi-idempotency-key-header) for POST
// and PATCH: the HTTP layer reads the key and fingerprints the request; the
// document service keeps the answer with the write and replays it to a
// retry (document/idempotency.go).

// maxIdempotencyKey is the longest key accepted, in bytes.
const maxIdempotencyKey = 255

// idempotencyHeader is the request header that carries the key.
const idempotencyHeader = "Idempotency-Key"

// replayedHeader marks an answer that was replayed from a stored record.
const replayedHeader = "Idempotent-Replayed"

// sfParams matches the parameters of a structured-field item (RFC 8941,
// 3.1.2), which a key may carry and which are ignored.
var sfParams = regexp.MustCompile(`^(; *[a-z*][a-z0-9_.*-]*(=("([^"\\]|\\["\\])*"|[^;"]+))?)+$`)

// parseIdempotencyKey reads the Idempotency-Key field: a structured-field
// string ("...", RFC 8941) as the draft defines it, or, leniently, a bare
// token of visible ASCII. ok is false when the field is absent.
func parseIdempotencyKey(h http.Header) (key string, ok bool, err error) {
	vals := h.Values(idempotencyHeader)
	if len(vals) == 0 {
		return "", false, nil
	}
	bad := func(why string) error {
		return fail(ErrInvalidRequest, "Idempotency-Key: "+why)
	}
	if len(vals) > 1 {
		return "", false, bad("sent more than once")
	}
	v := strings.Trim(vals[0], " \t")
	if strings.HasPrefix(v, `"`) {
		var b strings.Builder
		i := 1
		for ; i < len(v) && v[i] != '"'; i++ {
			c := v[i]
			if c == '\\' {
				i++
				if i == len(v) || (v[i] != '"' && v[i] != '\\') {
					return "", false, bad(`only \" and \\ may be escaped`)
				}
				c = v[i]
			} else if c < 0x20 || c > 0x7e {
				return "", false, bad("the string must be printable ASCII")
			}
			b.WriteByte(c)
		}
		switch {
		case i >= len(v):
			return "", false, bad("a string must end with its closing quote")
		case i != len(v)-1 && !sfParams.MatchString(v[i+1:]):
			return "", false, bad(`after the string's closing quote only parameters may follow (;name or ;name=value, RFC 8941), not ` + fmt.Sprintf("%.64q", v[i+1:]))
		}
		key = b.String()
	} else {
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < 0x21 || c > 0x7e || c == '"' || c == ',' {
				return "", false, bad(`a key is a quoted string such as "8e03978e-40d5-43e8-bc93-6894a57f9324"`)
			}
		}
		key = v
	}
	if key == "" || len(key) > maxIdempotencyKey {
		return "", false, bad(fmt.Sprintf("a key is 1 to %d characters", maxIdempotencyKey))
	}
	return key, true, nil
}

// fingerprint hashes what makes two requests the same: method, path,
// the headers that change the outcome, and the body.
func fingerprint(r *http.Request, body []byte) string {
	return fingerprintOf(r.Method, r.URL.Path, r.Header, body)
}

// fingerprintOf is fingerprint of a request given by its parts (a write
// of a batch).
func fingerprintOf(method, path string, hdr http.Header, body []byte) string {
	h := sha256.New()
	field := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(method)
	field(path)
	for _, name := range []string{"Content-Type", "If-Match", "If-None-Match", "Prefer"} {
		field(strings.Join(hdr.Values(name), "\n"))
	}
	field(string(body))
	return hex.EncodeToString(h.Sum(nil))
}

// idempotencyKey reads the Idempotency-Key of a POST or PATCH with the
// given body: nil when there is none. The key is qualified by the client's
// principal, so that two clients' keys never collide.
func idempotencyKey(c echo.Context, body []byte) (*document.IdempotencyKey, error) {
	r := c.Request()
	key, ok, err := parseIdempotencyKey(r.Header)
	if err != nil || !ok {
		return nil, err
	}
	who := principal(c).Name
	return &document.IdempotencyKey{Key: who + "\x00" + key, Scope: who, Fingerprint: fingerprint(r, body)}, nil
}
