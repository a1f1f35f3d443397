package handlers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/store"
)

// Idempotency keys (draft-ietf-httpapi-idempotency-key-header) for POST
// and PATCH: the first request with a key is applied and its answer is
// stored with the write, in the same transaction; a retry with the same
// key and the same request gets that answer again without being applied
// twice.
var (
	// ErrIdempotencyKeyReused: the key was used before with a different
	// request (422).
	ErrIdempotencyKeyReused = errors.New("idempotency key reused for a different request")
	// ErrIdempotencyKeyInUse: a request with the same key is still being
	// processed (409).
	ErrIdempotencyKeyInUse = errors.New("idempotency key in use")
)

// maxIdempotencyKey is the longest key accepted, in bytes.
const maxIdempotencyKey = 255

// idempotencyHeader is the request header that carries the key.
const idempotencyHeader = "Idempotency-Key"

// replayedHeader marks an answer that was replayed from a stored record.
const replayedHeader = "Idempotent-Replayed"

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
		if i != len(v)-1 {
			return "", false, bad("a string must end with its closing quote")
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

// inflight is the set of idempotency keys whose first request is being
// processed.
type inflight struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

// take adds key, or reports false if it is there already.
func (f *inflight) take(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, busy := f.keys[key]; busy {
		return false
	}
	f.keys[key] = struct{}{}
	return true
}

// release removes key.
func (f *inflight) release(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.keys, key)
}

// idemKey is the echo.Context key of the request's *idemRequest.
const idemKey = "patchd.idempotency"

// idemRequest is a write that carries an idempotency key.
type idemRequest struct {
	key         string // the store key: principal, NUL, the client's key
	fingerprint string
}

// idemAnswer is what a record stores: enough to answer the retry exactly
// as the first request was answered.
type idemAnswer struct {
	Fingerprint string `json:"fp"`
	Collection  string `json:"c"`
	ID          string `json:"id"`
	Created     bool   `json:"created,omitempty"`
	RebasedFrom string `json:"rebasedFrom,omitempty"`
	ETag        string `json:"etag"`
	Body        []byte `json:"body,omitempty"`
}

// fingerprint hashes what makes two requests the same: method, path,
// the headers that change the outcome, and the body.
func fingerprint(r *http.Request, body []byte) string {
	h := sha256.New()
	field := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(r.Method)
	field(r.URL.Path)
	for _, name := range []string{"Content-Type", "If-Match", "If-None-Match", "Prefer"} {
		field(strings.Join(r.Header.Values(name), "\n"))
	}
	field(string(body))
	return hex.EncodeToString(h.Sum(nil))
}

// idempotency is the middleware that implements idempotency keys for POST
// and PATCH on documents. Other methods ignore the field, as the draft
// allows for methods that are idempotent already.
func (h *Handler) idempotency(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if (r.Method != http.MethodPost && r.Method != http.MethodPatch) || !strings.HasPrefix(c.Path(), "/docs/:c") || c.Param("c") == "" {
			return next(c)
		}
		key, ok, err := parseIdempotencyKey(r.Header)
		if err != nil {
			return err
		}
		if !ok {
			return next(c)
		}
		key = principal(c).Name + "\x00" + key
		if !h.inflight.take(key) {
			return fail(ErrIdempotencyKeyInUse, "a request with this Idempotency-Key is still being processed; retry later")
		}
		defer h.inflight.release(key)
		body, err := h.readBody(c)
		if err != nil {
			return err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		req := &idemRequest{key: key, fingerprint: fingerprint(r, body)}
		rec, err := h.store.Idempotency(r.Context(), key)
		switch {
		case errors.Is(err, store.ErrNotFound):
			c.Set(idemKey, req)
			return next(c)
		case err != nil:
			return err
		}
		var ans idemAnswer
		if err := json.Unmarshal(rec.Value, &ans); err != nil {
			return fmt.Errorf("idempotency record: %w", err)
		}
		if ans.Fingerprint != req.fingerprint {
			return fail(ErrIdempotencyKeyReused, "this Idempotency-Key was used for a different request; use a new key for a new request")
		}
		cond, err := parseConditions(c)
		if err != nil {
			return err
		}
		c.Response().Header().Set(replayedHeader, "true")
		doc := &store.Document{Collection: ans.Collection, ID: ans.ID, ETag: ans.ETag, Body: ans.Body}
		return h.respondWrite(c, ans.Collection, ans.ID, doc, cond, outcome{created: ans.Created, rebasedFrom: ans.RebasedFrom})
	}
}

// remember wraps the UpdateFunc of a write so that, when the request
// carries an idempotency key, the change it commits carries the record of
// its answer.
func (h *Handler) remember(c echo.Context, coll, id string, cond conditions, out *outcome, fn store.UpdateFunc) store.UpdateFunc {
	req, _ := c.Get(idemKey).(*idemRequest)
	if req == nil {
		return fn
	}
	return func(ctx context.Context, cur *store.Document, hist store.History) (*store.Change, error) {
		ch, err := fn(ctx, cur, hist)
		if err != nil || ch == nil || ch.Body == nil {
			return ch, err
		}
		ans := idemAnswer{Fingerprint: req.fingerprint, Collection: coll, ID: id,
			Created: out.created, RebasedFrom: out.rebasedFrom, ETag: store.ETagOf(ch.Body)}
		if !cond.prefer.minimal {
			ans.Body = ch.Body
		}
		val, err := json.Marshal(ans)
		if err != nil {
			return nil, fmt.Errorf("idempotency record: %w", err)
		}
		ch.Idempotency = &store.IdempotencyRecord{Key: req.key, Value: val, Expires: time.Now().Add(h.cfg.IdempotencyTTL)}
		return ch, nil
	}
}
