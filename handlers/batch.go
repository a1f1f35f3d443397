package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// POST /batch: several writes, in order, all or none (API.md, "Batch").

// batchHeaders are the headers a write of a batch may carry, by their
// lowercase names.
var batchHeaders = map[string]string{
	"if-match":        "If-Match",
	"if-none-match":   "If-None-Match",
	"content-type":    "Content-Type",
	"prefer":          "Prefer",
	"idempotency-key": "Idempotency-Key",
}

// batchMembers are the members a write of a batch may have.
var batchMembers = map[string]bool{"method": true, "path": true, "headers": true, "body": true}

// batchResult is one write's answer in a batch's.
type batchResult struct {
	Status      int             `json:"status"`
	ETag        *string         `json:"etag"`
	Location    *string         `json:"location"`
	RebasedFrom *string         `json:"rebasedFrom"`
	Body        json.RawMessage `json:"body"`
}

func (h *Handler) batch(c echo.Context) error {
	if mediaType(c) != "application/json" {
		return wrongType(c, "a batch must be sent as", "application/json")
	}
	if c.Request().Header.Get(idempotencyHeader) != "" {
		return fail(ErrInvalidRequest, "a batch takes an Idempotency-Key per write, in its headers, not one for the whole batch")
	}
	dry, err := dryRun(c)
	if err != nil {
		return err
	}
	// The body first (bounded, and held only as it arrives): a client
	// that sends it slowly must not hold a turn meanwhile.
	body, err := h.readBody(c)
	if err != nil {
		return err
	}
	turn, err := h.batchTurn(c)
	if err != nil {
		return err
	}
	release := sync.OnceFunc(turn)
	defer release()
	lim := h.svc.Limits()
	// The bodies of the writes nest three levels down.
	v, err := patch.Parse(body, patch.Limits{MaxDepth: lim.MaxDepth + 3})
	if errors.Is(err, patch.ErrInvalidDocument) {
		if i := tooDeepWrite(body, lim.MaxDepth+3); i >= 0 {
			return &document.BatchError{Index: i, Err: fail(patch.ErrInvalidDocument,
				fmt.Sprintf("the write's body nests deeper than the limit of %d", lim.MaxDepth))}
		}
		return fail(patch.ErrInvalidDocument, fmt.Sprintf("the batch nests deeper than the limit of %d levels (--max-depth and the three of the batch around a body)", lim.MaxDepth+3))
	}
	if err != nil {
		return err
	}
	top, ok := v.(map[string]any)
	arr, ok2 := top["writes"].([]any)
	if !ok || !ok2 || len(top) != 1 {
		const shape = `a batch is {"writes": [{"method", "path", "headers", "body"}, ...]}`
		for k := range top {
			if k != "writes" {
				return fail(ErrInvalidRequest, fmt.Sprintf("unknown member %.64q: %s", k, shape))
			}
		}
		return fail(ErrInvalidRequest, shape)
	}
	maxBatch := h.cfg.MaxBatch
	if maxBatch <= 0 {
		maxBatch = 100
	}
	if len(arr) == 0 || len(arr) > maxBatch {
		return fail(ErrInvalidRequest, fmt.Sprintf("a batch holds 1 to %d writes, not %d", maxBatch, len(arr)))
	}
	ws := make([]document.Write, len(arr))
	prefs := make([]preferences, len(arr))
	keys := map[string]int{}
	for i, e := range arr {
		w, pref, key, err := h.batchWrite(c, e)
		if err == nil && key != "" {
			if j, dup := keys[key]; dup {
				err = fail(ErrInvalidRequest, fmt.Sprintf("Idempotency-Key used by write %d too: each write of a batch needs its own", j))
			}
			keys[key] = i
		}
		if err != nil {
			return &document.BatchError{Index: i, Err: err}
		}
		w.Actor, w.RequestID = principal(c).Actor, info(c).id
		ws[i], prefs[i] = w, pref
	}
	results, err := h.svc.Batch(h.serviceContext(c), ws, dry)
	if err != nil {
		return err
	}
	ri := info(c)
	out := make([]batchResult, len(results))
	for i, res := range results {
		ri.rebased = ri.rebased || res.RebasedFrom != ""
		ri.replayed = ri.replayed || res.Replayed
		out[i] = answer(res, prefs[i])
	}
	resp, err := json.Marshal(struct {
		Results []batchResult `json:"results"`
	}{out})
	if err != nil {
		return err
	}
	// The turn is given back once the batch is decided, before its answer
	// is written, so that a client that reads it slowly holds none: the
	// answer then holds its bytes of the answers' budget instead. With
	// that budget full, the turn is held until the answer is written,
	// which bounds the memory of answers no one reads.
	if held, ok := h.answers.TryAcquire(len(resp)); ok {
		defer held()
		release()
	}
	c.Response().Header().Set("Cache-Control", "no-cache")
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, resp)
}

// answer is what the write's own request would have been answered.
func answer(res document.Result, pref preferences) batchResult {
	null := json.RawMessage("null")
	if res.Doc == nil {
		return batchResult{Status: http.StatusNoContent, Body: null}
	}
	r := batchResult{Status: http.StatusOK, ETag: &res.Doc.ETag, Body: json.RawMessage(res.Doc.Body)}
	if res.RebasedFrom != "" {
		r.RebasedFrom = &res.RebasedFrom
	}
	if res.Created {
		r.Status = http.StatusCreated
		loc := "/docs/" + res.Doc.Collection + "/" + res.Doc.ID
		r.Location = &loc
	}
	if pref.minimal {
		r.Body = null
		if !res.Created {
			r.Status = http.StatusNoContent
		}
	}
	return r
}

// batchTurn waits up to OverloadWait for one of the MaxBatches turns of
// POST /batch, or answers 503 overloaded; the returned function gives the
// turn back.
func (h *Handler) batchTurn(c echo.Context) (func(), error) {
	t := time.NewTimer(h.overloadWait)
	defer t.Stop()
	select {
	case h.batches <- struct{}{}:
		return func() { <-h.batches }, nil
	case <-t.C:
		return nil, fail(ErrOverloaded, fmt.Sprintf("%d batches are being decided; retry after the Retry-After delay", cap(h.batches)))
	case <-c.Request().Context().Done():
		return nil, c.Request().Context().Err()
	}
}

// batchWrite reads one write of a batch into a document.Write, with its
// preferences and its idempotency key ("" for none), and checks that the
// token may make it.
func (h *Handler) batchWrite(c echo.Context, e any) (document.Write, preferences, string, error) {
	var w document.Write
	bad := func(format string, args ...any) (document.Write, preferences, string, error) {
		return w, preferences{}, "", fail(ErrInvalidRequest, fmt.Sprintf(format, args...))
	}
	m, ok := e.(map[string]any)
	if !ok {
		return bad(`a write is an object {"method", "path", "headers", "body"}`)
	}
	for k := range m {
		if !batchMembers[k] {
			return bad("unknown member %q: a write has method, path, headers and body", k)
		}
	}
	method, _ := m["method"].(string)
	path, ok := m["path"].(string)
	if !ok {
		return bad(`"path" must be a string such as "/docs/orders/42"`)
	}
	hdr := http.Header{}
	if raw, ok := m["headers"]; ok {
		hm, ok := raw.(map[string]any)
		if !ok {
			return bad(`"headers" must be an object of strings`)
		}
		for name, v := range hm {
			canon, known := batchHeaders[strings.ToLower(name)]
			if !known {
				return bad("header %q: a write of a batch takes If-Match, If-None-Match, Content-Type, Prefer and Idempotency-Key", name)
			}
			s, ok := v.(string)
			if !ok {
				return bad("header %q must be a string", name)
			}
			if hdr.Get(canon) != "" {
				return bad("header %s given twice", canon)
			}
			hdr.Set(canon, s)
		}
	}

	// The route: method and path, as the API's own (escaped unreserved
	// characters are the characters, as in a request's path).
	path = decodeUnreserved(path)
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	switch {
	case path == "/batch":
		return bad("a batch cannot hold a batch")
	case !strings.HasPrefix(path, "/docs/") || len(segs) < 2 || len(segs) > 4 || (len(segs) == 4 && segs[3] != "revert"):
		return bad("path %q: a write of a batch goes to /docs/{c}, /docs/{c}/{id} or /docs/{c}/{id}/revert", path)
	}
	w.Collection = segs[1]
	if len(segs) > 2 {
		w.ID = segs[2]
	}
	var validErr error
	switch {
	case !store.ValidName(w.Collection):
		validErr = badName("collection", w.Collection)
	case len(segs) > 2 && !store.ValidName(w.ID):
		validErr = badName("id", w.ID)
	}
	if validErr != nil {
		return w, preferences{}, "", validErr
	}
	ct := ""
	if v := hdr.Get("Content-Type"); v != "" {
		if _, _, err := mime.ParseMediaType(v); err != nil {
			return w, preferences{}, "", fail(ErrUnsupportedMediaType, fmt.Sprintf("Content-Type %q does not parse", v))
		}
		mt, why := typeOf(hdr)
		if why != "" {
			return w, preferences{}, "", fail(ErrUnsupportedMediaType, fmt.Sprintf("Content-Type %q: %s", v, why))
		}
		ct = mt
	}
	needJSON := func(what string) error {
		if ct != "" && ct != "application/json" {
			return fail(ErrUnsupportedMediaType, fmt.Sprintf("%s is sent as application/json, not %q", what, hdr.Get("Content-Type")))
		}
		hdr.Set("Content-Type", "application/json") // the default in a batch
		return nil
	}
	var err error
	switch {
	case method == http.MethodPut && len(segs) == 3:
		w.Kind, err = document.Put, needJSON("a document")
	case method == http.MethodPost && len(segs) == 2:
		w.Kind, err = document.Post, needJSON("a document")
	case method == http.MethodPost && len(segs) == 4:
		w.Kind, err = document.Revert, needJSON("a revert")
	case method == http.MethodPatch && len(segs) == 3:
		switch ct {
		case "application/json-patch+json":
			w.Kind = document.JSONPatch
		case "application/merge-patch+json":
			w.Kind = document.MergePatch
		default:
			err = fail(ErrUnsupportedMediaType, fmt.Sprintf("PATCH takes %s, not %q", acceptPatch, hdr.Get("Content-Type")))
		}
	case method == http.MethodDelete && len(segs) == 3:
		w.Kind = document.Delete
	case method == http.MethodPut || method == http.MethodPost || method == http.MethodPatch || method == http.MethodDelete:
		return bad("%s %s: no such route (documents: PUT, PATCH and DELETE /docs/{c}/{id}, POST /docs/{c}, POST /docs/{c}/{id}/revert)", method, path)
	default:
		return bad("method %q: a write of a batch is PUT, POST, PATCH or DELETE", method)
	}
	if err != nil {
		return w, preferences{}, "", err
	}
	if p := principal(c); !p.allows(RoleWrite, w.Collection) {
		return w, preferences{}, "", forbidden(c, fmt.Sprintf("a %s token for %s may not write to collection %q", p.Role, scopeText(p), w.Collection))
	}

	// The body, as its own request would send it.
	raw, hasBody := m["body"]
	switch {
	case w.Kind == document.Delete && raw != nil:
		return bad("a DELETE has no body")
	case w.Kind != document.Delete && (!hasBody || raw == nil):
		return bad(`a %s needs a "body"`, method)
	case w.Kind != document.Delete:
		w.Body = patch.Canonical(raw)
	}
	if w.Kind == document.Revert {
		if w.Revert, err = revertSeq(w.Body, h.svc.Limits()); err != nil {
			return w, preferences{}, "", err
		}
	}
	var pref preferences
	if w.Pre.IfMatch, err = document.ParseETagList("If-Match", hdr.Values("If-Match")); err != nil {
		return w, preferences{}, "", err
	}
	if w.Pre.IfNoneMatch, err = document.ParseETagList("If-None-Match", hdr.Values("If-None-Match")); err != nil {
		return w, preferences{}, "", err
	}
	pref = parsePrefer(hdr)
	w.Pre.Strict, w.Minimal = pref.strict, pref.minimal
	key, ok, err := parseIdempotencyKey(hdr)
	if err != nil {
		return w, preferences{}, "", err
	}
	if ok && (w.Kind == document.Post || w.Kind == document.JSONPatch || w.Kind == document.MergePatch || w.Kind == document.Revert) {
		w.Idempotency = &document.IdempotencyKey{Key: principal(c).Name + "\x00" + key, Fingerprint: fingerprintOf(method, path, hdr, w.Body)}
	}
	return w, pref, key, nil
}

// tooDeepWrite returns the index in the writes array of the first write
// whose value nests deeper than limit (counting from the batch's outer
// object), or -1. It reads tokens one at a time: a body refused for its
// depth is never built.
func tooDeepWrite(body []byte, limit int) int {
	dec := jsontext.NewDecoder(bytes.NewBuffer(body))
	depth, index := 0, -1
	for {
		k := dec.PeekKind()
		if k == 0 {
			return -1 // the end, or not JSON: Parse says what is wrong
		}
		switch k {
		case '{', '[':
			if depth == 2 {
				index++ // a write begins
			}
			depth++
			if depth > limit {
				return index
			}
		case '}', ']':
			depth--
		default:
			if depth == 2 {
				index++
			}
		}
		if _, err := dec.ReadToken(); err != nil {
			return -1
		}
	}
}
