package handlers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// validName reports whether s is a valid collection or id:
// [A-Za-z0-9._~-]{1,128}, and not a dot-segment.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 128 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '~', c == '-':
		default:
			return false
		}
	}
	return true
}

// target reads and checks the collection and id of a request.
func target(c echo.Context, withID bool) (coll, id string, err error) {
	coll = c.Param("c")
	if !validName(coll) {
		return "", "", fail(ErrInvalidRequest, fmt.Sprintf("collection %q must match [A-Za-z0-9._~-]{1,128} and not be . or ..", coll))
	}
	if withID {
		id = c.Param("id")
		if !validName(id) {
			return "", "", fail(ErrInvalidRequest, fmt.Sprintf("id %q must match [A-Za-z0-9._~-]{1,128} and not be . or ..", id))
		}
	}
	return coll, id, nil
}

// mediaType returns the request's media type, lowercased, without
// parameters ("" when absent or unparsable).
func mediaType(c echo.Context) string {
	mt, _, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	if err != nil {
		return ""
	}
	return mt
}

// readBody reads the request body within the size limit.
func (h *Handler) readBody(c echo.Context) ([]byte, error) {
	r := c.Request()
	limit := h.cfg.MaxBody
	if r.ContentLength > limit {
		return nil, fail(ErrTooLarge, fmt.Sprintf("the body is %d bytes; the limit is %d", r.ContentLength, limit))
	}
	// Every body read here is decoded next: its share of the decode budget
	// is taken before it is read (when its length is known) and held until
	// the request ends.
	reserved := false
	if r.ContentLength > 0 {
		if err := h.reserveBody(r, int(r.ContentLength)); err != nil {
			return nil, err
		}
		reserved = true
	}
	var body []byte
	var err error
	if r.ContentLength > 0 {
		// net/http delivers exactly Content-Length bytes, or an error.
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(io.LimitReader(r.Body, limit+1))
	}
	if err != nil {
		return nil, fail(ErrInvalidRequest, "could not read the request body")
	}
	if int64(len(body)) > limit {
		return nil, fail(ErrTooLarge, fmt.Sprintf("the body is larger than the limit of %d bytes", limit))
	}
	if !reserved {
		if err := h.reserveBody(r, len(body)); err != nil {
			return nil, err
		}
	}
	return body, nil
}

// reserveBody takes n bytes of the body decode budget until the request
// ends.
func (h *Handler) reserveBody(r *http.Request, n int) error {
	release, err := h.bodies.acquire(r.Context(), n)
	if err != nil {
		return err
	}
	context.AfterFunc(r.Context(), release)
	return nil
}

// parseDocument parses a PUT or POST body into a document and returns it
// with its canonical bytes.
func (h *Handler) parseDocument(c echo.Context) (any, []byte, error) {
	if mt := mediaType(c); mt != "application/json" {
		return nil, nil, fail(ErrUnsupportedMediaType, fmt.Sprintf("a document must be sent as application/json, not %q", c.Request().Header.Get(echo.HeaderContentType)))
	}
	body, err := h.readBody(c)
	if err != nil {
		return nil, nil, err
	}
	doc, err := patch.Parse(body, h.cfg.Limits)
	if err != nil {
		return nil, nil, err
	}
	canonical, err := patch.CheckDocument(doc, h.cfg.Limits)
	if err != nil {
		return nil, nil, err
	}
	return doc, canonical, nil
}

// conditions are a request's parsed preconditions and preferences.
type conditions struct {
	ifMatch     tagList
	ifNoneMatch tagList
	prefer      preferences
}

func parseConditions(c echo.Context) (conditions, error) {
	var cond conditions
	var err error
	hdr := c.Request().Header
	if cond.ifMatch, err = parseTagList(hdr, "If-Match"); err != nil {
		return cond, err
	}
	if cond.ifNoneMatch, err = parseTagList(hdr, "If-None-Match"); err != nil {
		return cond, err
	}
	cond.prefer = parsePrefer(hdr)
	return cond, nil
}

// setDocHeaders sets the headers every document response carries.
func setDocHeaders(c echo.Context, etag string) {
	hdr := c.Response().Header()
	hdr.Set("ETag", etag)
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
}

func (h *Handler) get(c echo.Context) error {
	coll, id, err := target(c, true)
	if err != nil {
		return err
	}
	cond, err := parseConditions(c)
	if err != nil {
		return err
	}
	if er, ok := h.backend.(etagReader); ok && (cond.ifMatch.present || cond.ifNoneMatch.present) {
		// Decide 412 and 304 from the ETag alone; read the body only to
		// send it. Errors (a missing document) are Get's to report.
		if etag, err := er.ETag(c.Request().Context(), coll, id); err == nil {
			if done, err := readPrecondition(c, cond, etag); done || err != nil {
				return err
			}
		}
	}
	doc, err := h.store.Get(c.Request().Context(), coll, id)
	if err != nil {
		return err
	}
	if done, err := readPrecondition(c, cond, doc.ETag); done || err != nil {
		return err
	}
	setDocHeaders(c, doc.ETag)
	c.Response().Header().Set(echo.HeaderContentLength, strconv.Itoa(len(doc.Body)))
	if c.Request().Method == http.MethodHead {
		return c.NoContent(http.StatusOK)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, doc.Body)
}

// etagReader is implemented by stores that read a document's ETag without
// its body (store.Bolt does). It returns an error wrapping
// store.ErrNotFound if the document does not exist.
type etagReader interface {
	ETag(ctx context.Context, collection, id string) (string, error)
}

// readPrecondition evaluates a GET's or HEAD's preconditions against the
// current ETag (RFC 9110 section 13.2.2: If-Match, then If-None-Match). It
// returns the 412, or answers 304 and reports done.
func readPrecondition(c echo.Context, cond conditions, etag string) (done bool, err error) {
	if cond.ifMatch.present && !cond.ifMatch.matchStrong(etag) {
		return true, &preconditionError{err: fail(ErrPreconditionFailed, "If-Match does not match the current ETag"), current: etag}
	}
	if cond.ifNoneMatch.present && cond.ifNoneMatch.matchWeak(etag) {
		setDocHeaders(c, etag)
		c.Response().Header().Del(echo.HeaderContentType)
		return true, c.NoContent(http.StatusNotModified)
	}
	return false, nil
}

// edit is a client's change to one document.
type edit struct {
	kind string // store.KindPut, KindJSONPatch or KindMergePatch
	// apply applies the change to doc (a tree it may modify) and returns
	// the result and the normalized ops. It may be called more than once.
	apply func(doc any) (any, []patch.Op, error)
	// create is the new document when the target does not exist (PUT);
	// nil means the write needs an existing document.
	create any
	// body is the canonical encoding of create, when set.
	body []byte
	// canonical, when set, applies the change to the canonical bytes of
	// the current version without decoding them, and returns the new
	// canonical bytes (checked against the limits) and the normalized ops;
	// ok is false when it cannot, and apply is used instead.
	canonical func(cur []byte) (body []byte, ops []patch.Op, ok bool)
}

// outcome reports what a write did, for the response.
type outcome struct {
	created     bool
	rebasedFrom string // the client's ETag when the edit was rebased
}

func (h *Handler) put(c echo.Context) error {
	coll, id, err := target(c, true)
	if err != nil {
		return err
	}
	doc, canonical, err := h.parseDocument(c)
	if err != nil {
		return err
	}
	body := doc.(map[string]any)
	e := edit{
		kind:   store.KindPut,
		create: doc,
		body:   canonical,
		apply: func(cur any) (any, []patch.Op, error) {
			if m, ok := cur.(map[string]any); ok {
				return body, patch.Diff(m, body), nil
			}
			return body, []patch.Op{{Kind: patch.OpRoot, Value: body, Old: cur, HadOld: true}}, nil
		},
	}
	return h.write(c, coll, id, e)
}

func (h *Handler) patch(c echo.Context) error {
	coll, id, err := target(c, true)
	if err != nil {
		return err
	}
	mt := mediaType(c)
	if mt != "application/json-patch+json" && mt != "application/merge-patch+json" {
		return fail(ErrUnsupportedMediaType, fmt.Sprintf("PATCH takes %s, not %q", acceptPatch, c.Request().Header.Get(echo.HeaderContentType)))
	}
	body, err := h.readBody(c)
	if err != nil {
		return err
	}
	var e edit
	if mt == "application/json-patch+json" {
		ops, err := patch.ParseJSONPatch(body, h.cfg.Limits)
		if err != nil {
			return err
		}
		e = edit{kind: store.KindJSONPatch, apply: func(doc any) (any, []patch.Op, error) {
			return patch.Apply(doc, ops, h.cfg.Limits)
		}, canonical: func(cur []byte) ([]byte, []patch.Op, bool) {
			return patch.ApplyCanonical(cur, ops, h.cfg.Limits)
		}}
	} else {
		mp, err := patch.Parse(body, h.cfg.Limits)
		if err != nil {
			return err
		}
		e = edit{kind: store.KindMergePatch, apply: func(doc any) (any, []patch.Op, error) {
			res, ops := patch.MergePatch(doc, mp)
			return res, ops, nil
		}}
	}
	return h.write(c, coll, id, e)
}

func (h *Handler) post(c echo.Context) error {
	coll, _, err := target(c, false)
	if err != nil {
		return err
	}
	doc, canonical, err := h.parseDocument(c)
	if err != nil {
		return err
	}
	id := h.ids.next()
	e := edit{kind: store.KindPut, create: doc, body: canonical, apply: func(any) (any, []patch.Op, error) {
		return nil, nil, fail(ErrPreconditionFailed, "a document with the generated id exists")
	}}
	// Preconditions of a POST apply to the collection, which has no
	// representation: patchd ignores them.
	c.Request().Header.Del("If-Match")
	c.Request().Header.Del("If-None-Match")
	return h.write(c, coll, id, e)
}

// write runs a PUT, PATCH or POST through the store: it evaluates the
// preconditions against the current version, applies the edit directly or
// rebases it from the version the client named, and answers.
func (h *Handler) write(c echo.Context, coll, id string, e edit) error {
	cond, err := parseConditions(c)
	if err != nil {
		return err
	}
	if cond.prefer.strict {
		// Said on every answer, 412 included: rebase was off for this request.
		c.Response().Header().Set("Preference-Applied", "handling=strict")
	}
	ctx := c.Request().Context()
	if cond.fastDecidable() {
		// A 412 or 428 that the current ETag decides is answered without
		// the document lock or the body; anything else is decided again
		// under the lock.
		if er, ok := h.backend.(etagReader); ok {
			if etag, err := er.ETag(ctx, coll, id); err == nil {
				if _, err := h.writePrecondition(cond, etag); err != nil {
					return err
				}
			}
		}
	}
	var out outcome
	doc, err := h.store.Update(ctx, coll, id, h.remember(c, coll, id, cond, &out, func(ctx context.Context, cur *store.Document, hist store.History) (*store.Change, error) {
		out = outcome{}
		noteBefore(c, cur)
		if cur == nil {
			return h.create(cond, e, &out)
		}
		return h.change(ctx, cur, hist, cond, e, &out)
	}))
	if err != nil {
		return err
	}
	return h.respondWrite(c, coll, id, doc, cond, out)
}

// create decides a write to a document that does not exist.
func (h *Handler) create(cond conditions, e edit, out *outcome) (*store.Change, error) {
	if e.create == nil {
		return nil, fail(store.ErrNotFound, "no such document")
	}
	if cond.ifMatch.present {
		// If-Match is false when there is no current representation.
		return nil, &preconditionError{err: fail(ErrPreconditionFailed, "If-Match given but the document does not exist")}
	}
	body := e.body
	if body == nil {
		body = patch.Canonical(e.create)
	}
	out.created = true
	return &store.Change{Body: body, Kind: e.kind, Ops: patch.EncodeCreate(body)}, nil
}

// change decides a write to an existing document.
func (h *Handler) change(ctx context.Context, cur *store.Document, hist store.History, cond conditions, e edit, out *outcome) (*store.Change, error) {
	stale, err := h.writePrecondition(cond, cur.ETag)
	if err != nil {
		return nil, err
	}
	if stale {
		return h.rebase(ctx, cur, hist, cond, e, out)
	}
	if e.canonical != nil {
		if body, ops, ok := e.canonical(cur.Body); ok {
			return commitCanonical(cur, body, ops, e.kind, "")
		}
	}
	conditional := cond.ifMatch.present && !cond.ifMatch.any
	release, err := h.docs.acquire(ctx, len(cur.Body))
	if err != nil {
		return nil, err
	}
	defer release()
	doc, err := h.decode(cur)
	if err != nil {
		return nil, err
	}
	result, ops, err := e.apply(doc)
	if err != nil {
		if !conditional && errors.Is(err, patch.ErrPatchFailed) {
			return nil, fail(ErrPatchConflict, err.Error())
		}
		return nil, err
	}
	if e.body != nil {
		// A PUT's result is its body, whose canonical bytes are known.
		h.trees.put(cur.Collection, cur.ID, e.body, result)
		return commitCanonical(cur, e.body, ops, e.kind, "")
	}
	return h.commit(cur, result, ops, e.kind, "")
}

// decode returns the current version as a tree the caller owns: from the
// tree cache, or decoded.
func (h *Handler) decode(cur *store.Document) (any, error) {
	if doc := h.trees.take(cur.Collection, cur.ID, cur.ETag); doc != nil {
		return doc, nil
	}
	doc, err := patch.Parse(cur.Body, patch.Limits{})
	if err != nil {
		return nil, fmt.Errorf("stored document %s/%s: %w", cur.Collection, cur.ID, err)
	}
	return doc, nil
}

// fastDecidable reports whether a write's preconditions may be refused from
// the current ETag alone: If-None-Match, a missing If-Match, or strict.
func (cond conditions) fastDecidable() bool {
	return cond.ifNoneMatch.present || !cond.ifMatch.present || cond.prefer.strict
}

// writePrecondition evaluates the preconditions of a PUT, PATCH or POST
// against the current ETag of an existing document (RFC 9110 section
// 13.2.2). It returns the 412 or 428 they call for, or reports whether
// If-Match names an older version: the edit is then rebased.
func (h *Handler) writePrecondition(cond conditions, etag string) (stale bool, err error) {
	precondition := func(detail string) error {
		return &preconditionError{err: fail(ErrPreconditionFailed, detail), current: etag}
	}
	// Step 1: If-Match (strong).
	stale = cond.ifMatch.present && !cond.ifMatch.matchStrong(etag)
	// Step 3: If-None-Match (weak), evaluated against the current version.
	if cond.ifNoneMatch.present && cond.ifNoneMatch.matchWeak(etag) {
		if cond.ifNoneMatch.any {
			return false, precondition("If-None-Match: * and the document exists")
		}
		return false, precondition("If-None-Match matches the current ETag")
	}
	if !cond.ifMatch.present && h.cfg.RequireIfMatch {
		return false, &preconditionError{err: fail(ErrPreconditionRequired, "writes to an existing document need If-Match with its current ETag"), current: etag}
	}
	if stale && cond.prefer.strict {
		client := ""
		if sent := cond.ifMatch.strongTags(); len(sent) > 0 {
			client = sent[0]
		}
		return false, &preconditionError{err: fail(ErrPreconditionFailed, "If-Match does not match the current ETag, and Prefer: handling=strict turns rebase off"), current: etag, base: client}
	}
	return stale, nil
}

// rebase handles a stale If-Match.
func (h *Handler) rebase(ctx context.Context, cur *store.Document, hist store.History, cond conditions, e edit, out *outcome) (*store.Change, error) {
	sent := cond.ifMatch.strongTags()
	client := ""
	if len(sent) > 0 {
		client = sent[0]
	}
	base, later, err := hist.Since(ctx, sent)
	if errors.Is(err, store.ErrBaseUnknown) {
		return nil, &preconditionError{err: fail(store.ErrBaseUnknown, "If-Match names no version in the retained history; read the document again and resend the edit"), current: cur.ETag, base: client}
	}
	if err != nil {
		return nil, err
	}
	since := make([]patch.Committed, len(later))
	for i, v := range later {
		ops, err := h.ops.decode(cur.Collection, cur.ID, v)
		if err != nil {
			return nil, fmt.Errorf("history %s/%s seq %d: %w", cur.Collection, cur.ID, v.Seq, err)
		}
		since[i] = patch.Committed{Seq: v.Seq, Ops: ops}
	}
	release, err := h.docs.acquire(ctx, 2*len(cur.Body)) // the current version and the base
	if err != nil {
		return nil, err
	}
	defer release()
	doc, err := h.decode(cur)
	if err != nil {
		return nil, err
	}
	result, ops, err := patch.RebaseOnto(doc, since, e.apply, h.cfg.Rebase)
	if errors.Is(err, patch.ErrConflict) || errors.Is(err, patch.ErrRebaseTooFar) || errors.Is(err, patch.ErrRebaseApplyFailed) {
		return nil, &preconditionError{err: err, current: cur.ETag, base: base.ETag}
	}
	if err != nil {
		return nil, err // the edit does not apply to its own base: 422 as is
	}
	out.rebasedFrom = base.ETag
	return h.commit(cur, result, ops, e.kind, base.ETag)
}

// commitCanonical turns checked canonical bytes into a change; nil when
// they equal the current version.
func commitCanonical(cur *store.Document, body []byte, ops []patch.Op, kind, rebasedFrom string) (*store.Change, error) {
	if bytes.Equal(body, cur.Body) {
		return nil, nil
	}
	return &store.Change{Body: body, Kind: kind, Ops: patch.EncodeOps(ops), RebasedFrom: rebasedFrom}, nil
}

// commit checks the result and turns it into a change; nil when it equals
// the current version. It keeps the result's tree for the next write.
func (h *Handler) commit(cur *store.Document, result any, ops []patch.Op, kind, rebasedFrom string) (*store.Change, error) {
	body, err := patch.CheckDocument(result, h.cfg.Limits)
	if err != nil {
		return nil, err
	}
	h.trees.put(cur.Collection, cur.ID, body, result)
	if bytes.Equal(body, cur.Body) {
		return nil, nil
	}
	return &store.Change{Body: body, Kind: kind, Ops: patch.EncodeOps(ops), RebasedFrom: rebasedFrom}, nil
}

// respondWrite answers a committed (or no-op) write.
func (h *Handler) respondWrite(c echo.Context, coll, id string, doc *store.Document, cond conditions, out outcome) error {
	if doc == nil {
		return fail(store.ErrNotFound, "no such document")
	}
	setDocHeaders(c, doc.ETag)
	hdr := c.Response().Header()
	if out.rebasedFrom != "" {
		hdr.Set("Rebased-From", out.rebasedFrom)
	}
	if applied := cond.prefer.applied(); applied != "" {
		hdr.Set("Preference-Applied", applied)
	}
	status := http.StatusOK
	if out.created {
		status = http.StatusCreated
		hdr.Set(echo.HeaderLocation, "/docs/"+coll+"/"+id)
	}
	if cond.prefer.minimal {
		hdr.Del(echo.HeaderContentType)
		if out.created {
			return c.NoContent(http.StatusCreated)
		}
		return c.NoContent(http.StatusNoContent)
	}
	return c.Blob(status, echo.MIMEApplicationJSON, doc.Body)
}

func (h *Handler) delete(c echo.Context) error {
	coll, id, err := target(c, true)
	if err != nil {
		return err
	}
	cond, err := parseConditions(c)
	if err != nil {
		return err
	}
	if cond.prefer.strict {
		c.Response().Header().Set("Preference-Applied", "handling=strict")
	}
	if er, ok := h.backend.(etagReader); ok {
		// Every precondition of a DELETE is decided by the ETag: refuse
		// without the document lock when it says no.
		if etag, err := er.ETag(c.Request().Context(), coll, id); err == nil {
			if err := h.deletePrecondition(cond, etag); err != nil {
				return err
			}
		}
	}
	_, err = h.store.Update(c.Request().Context(), coll, id, func(ctx context.Context, cur *store.Document, _ store.History) (*store.Change, error) {
		noteBefore(c, cur)
		if cur == nil {
			return nil, fail(store.ErrNotFound, "no such document")
		}
		if err := h.deletePrecondition(cond, cur.ETag); err != nil {
			return nil, err
		}
		return &store.Change{Kind: store.KindDelete, Ops: patch.EncodeDelete(cur.Body)}, nil
	})
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// deletePrecondition evaluates a DELETE's preconditions against the
// current ETag; DELETE is never rebased.
func (h *Handler) deletePrecondition(cond conditions, etag string) error {
	precondition := func(sentinel error, detail string) error {
		return &preconditionError{err: fail(sentinel, detail), current: etag}
	}
	switch {
	case cond.ifMatch.present && !cond.ifMatch.matchStrong(etag):
		return precondition(ErrPreconditionFailed, "If-Match does not match the current ETag (DELETE is never rebased)")
	case cond.ifNoneMatch.present && cond.ifNoneMatch.matchWeak(etag):
		return precondition(ErrPreconditionFailed, "If-None-Match matches the current ETag")
	case !cond.ifMatch.present && h.cfg.RequireIfMatch:
		return precondition(ErrPreconditionRequired, "deleting a document needs If-Match with its current ETag")
	}
	return nil
}
