package handlers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/internal/budget"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// target reads and checks the collection and id of a request.
func target(c echo.Context, withID bool) (coll, id string, err error) {
	coll = c.Param("c")
	if !store.ValidName(coll) {
		return "", "", badName("collection", coll)
	}
	if withID {
		id = c.Param("id")
		if !store.ValidName(id) {
			return "", "", badName("id", id)
		}
	}
	return coll, id, nil
}

// badName is the error of a collection or id (what) that is not a name.
func badName(what, name string) error {
	return fail(ErrInvalidRequest, fmt.Sprintf("%s %q must match [A-Za-z0-9._~-]{1,128} and not be . or ..", what, name))
}

// emptyName is the error of a path no route matched whose collection,
// document id or presence session is empty (/docs//x, /docs/c/,
// /docs/c/x/presence/): not a name, 400 as for any other, rather than 404.
func emptyName(path string) error {
	rest, ok := strings.CutPrefix(path, "/docs/")
	if !ok {
		if rest, ok = strings.CutPrefix(path, "/schemas/"); !ok {
			return nil
		}
	}
	segs := strings.Split(rest, "/")
	switch {
	case segs[0] == "":
		return badName("collection", "")
	case len(segs) == 2 && segs[1] == "" && strings.HasPrefix(path, "/docs/"):
		return badName("id", "")
	case len(segs) == 4 && segs[2] == "presence" && segs[3] == "" && strings.HasPrefix(path, "/docs/"):
		return badSession("")
	}
	return nil
}

// mediaType returns the request's media type, lowercased, without
// parameters: "" when absent or unparsable, and when the request cannot be
// taken as JSON whatever its type says (see typeOf), so that each is
// refused as an unsupported media type.
func mediaType(c echo.Context) string {
	mt, why := typeOf(c.Request().Header)
	if why != "" {
		return ""
	}
	return mt
}

// typeOf returns the media type of a request or batch write with headers
// h, lowercased, and why it cannot be taken as JSON if it cannot: sent in
// two Content-Type fields (which one is meant?), or in a charset other
// than UTF-8, the only encoding of JSON between systems (RFC 8259 section
// 8.1).
func typeOf(h http.Header) (mt, why string) {
	vs := h.Values(echo.HeaderContentType)
	if len(vs) > 1 {
		return "", "send one Content-Type"
	}
	if len(vs) == 0 {
		return "", ""
	}
	mt, params, err := mime.ParseMediaType(vs[0])
	if err != nil {
		return "", ""
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return mt, "JSON is sent in UTF-8"
	}
	return mt, ""
}

// wrongType is the 415 for a body that must be sent as want (what names
// the body: "a document must be sent as"): it quotes every Content-Type sent.
func wrongType(c echo.Context, what, want string) error {
	h := c.Request().Header
	msg := fmt.Sprintf("%s %s, not %q", what, want, strings.Join(h.Values(echo.HeaderContentType), ", "))
	if _, why := typeOf(h); why != "" {
		msg += ": " + why
	}
	return fail(ErrUnsupportedMediaType, msg)
}

// readChunk is the most of a request body read at once, into a scratch
// buffer, before the body's reservation grows to hold it.
const readChunk = 32 << 10

// readBody reads the request body within the size limit. Its share of the
// decode budget (see readBodyHeld) is held until the answer is written
// (requestInfo.releases).
func (h *Handler) readBody(c echo.Context) ([]byte, error) {
	body, release, err := h.readBodyHeld(c)
	if err != nil {
		return nil, err
	}
	if o, ok := c.(*observed); ok {
		o.info.releases = append(o.info.releases, release)
	} else {
		context.AfterFunc(c.Request().Context(), release)
	}
	return body, nil
}

// plainBody refuses a body with a content coding: RFC 9110 section
// 15.5.16 makes one the server does not decode a 415, not a body that
// fails to parse.
// Every field line counts: together they are one list.
func plainBody(r *http.Request) error {
	for _, line := range r.Header.Values(echo.HeaderContentEncoding) {
		for coding := range strings.SplitSeq(line, ",") {
			if coding = strings.TrimSpace(coding); coding != "" && !strings.EqualFold(coding, "identity") {
				return fail(ErrUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q: request bodies are taken without a content coding", coding))
			}
		}
	}
	return nil
}

// readBodyHeld reads the request body within the size limit and returns it
// with the release of its share of the decode budget. Every body read here
// is decoded next, so it takes its share: the bytes it has received,
// reserved as they arrive, so that a client that sends slowly holds no
// more of the budget than it has sent (nor memory: the body grows as it
// comes). A body that cannot get its share within Config.OverloadWait is
// refused with 503 overloaded and Retry-After, rather than waiting. A
// stream, which outlives its body by far, releases the share once the body
// is parsed.
func (h *Handler) readBodyHeld(c echo.Context) (_ []byte, release func(), err error) {
	r := c.Request()
	if err := plainBody(r); err != nil {
		return nil, nil, err
	}
	limit := h.cfg.MaxBody
	if r.ContentLength > limit {
		return nil, nil, fail(ErrTooLarge, fmt.Sprintf("the body is %d bytes; the limit is %d", r.ContentLength, limit))
	}
	if r.ContentLength == 0 {
		return []byte{}, func() {}, nil
	}
	if r.ContentLength > 0 && r.ContentLength < budget.Min {
		// Too small to count against the budget: read it whole.
		// net/http delivers exactly Content-Length bytes, or an error.
		body := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, nil, bodyFailed(c, err)
		}
		return body, func() {}, nil
	}
	// The client's share of the budget (see Config.DecodeBudget): what
	// this body has taken of it, given back with the reservation.
	client := clientOf(c, h.cfg.Tokens != nil)
	var mine int64
	res := h.bodies.Reserve()
	done := false // set on the way out with the body: its release gives both back
	defer func() {
		if !done { // an error, or a panic on its way up
			res.Release()
			h.shares.Give(client, mine)
		}
	}()
	chunk := int64(readChunk)
	if r.ContentLength > 0 {
		chunk = min(r.ContentLength, chunk)
	}
	scratch := make([]byte, chunk)
	body := []byte{}
	for {
		n, err := r.Body.Read(scratch)
		if n > 0 {
			if int64(len(body)+n) > limit {
				return nil, nil, fail(ErrTooLarge, fmt.Sprintf("the body is larger than the limit of %d bytes", limit))
			}
			if total := min(int64(len(body)+n), h.bodies.Capacity()); total >= budget.Min && total > mine {
				if !h.shares.Take(client, total-mine) {
					c.Response().Header().Set(echo.HeaderRetryAfter, "1")
					return nil, nil, fail(ErrRateLimited, fmt.Sprintf("this client is sending %d bytes of request bodies at once already, its share of what the server decodes at a time; retry after 1 s", h.shares.Max()))
				}
				mine = total
			}
			if err := h.reserve(c, res, len(body)+n); err != nil {
				return nil, nil, err
			}
			body = append(body, scratch[:n]...)
		}
		if err == io.EOF {
			done = true
			return body, sync.OnceFunc(func() {
				res.Release()
				h.shares.Give(client, mine)
			}), nil
		}
		if err != nil {
			return nil, nil, bodyFailed(c, err)
		}
	}
}

// bodyAnswerTime is how long the answer to a body that stopped arriving
// may take to write.
const bodyAnswerTime = 5 * time.Second

// bodyFailed is the error of a body that could not be read. When it did
// not arrive in time (the server's read timeout), the write deadline,
// which passes about when the read deadline does, is moved on a little,
// so that the client gets its answer rather than a closed connection.
func bodyFailed(c echo.Context, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		_ = http.NewResponseController(c.Response().Writer).SetWriteDeadline(time.Now().Add(bodyAnswerTime))
		return fail(ErrInvalidRequest, "the request body did not arrive in time (the server's read timeout)")
	}
	return fail(ErrInvalidRequest, "could not read the request body")
}

// reserve grows a request's reservation of the decode budget to n bytes,
// waiting at most Config.OverloadWait: past it, the request is refused with
// 503 overloaded (and Retry-After).
func (h *Handler) reserve(c echo.Context, res *budget.Reservation, n int) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), h.overloadWait)
	defer cancel()
	err := res.Grow(ctx, n)
	if err == nil || c.Request().Context().Err() != nil {
		return err // nil, or the client is gone
	}
	c.Response().Header().Set(echo.HeaderRetryAfter, "1")
	return fail(ErrOverloaded, "the server is decoding as many request bodies as it may at once; retry after 1 s")
}

// preconditions reads a write's If-Match, If-None-Match and Prefer.
func preconditions(c echo.Context) (document.Preconditions, preferences, error) {
	hdr := c.Request().Header
	var (
		pre document.Preconditions
		err error
	)
	if pre.IfMatch, err = document.ParseETagList("If-Match", hdr.Values("If-Match")); err != nil {
		return pre, preferences{}, err
	}
	if pre.IfNoneMatch, err = document.ParseETagList("If-None-Match", hdr.Values("If-None-Match")); err != nil {
		return pre, preferences{}, err
	}
	prefer := parsePrefer(hdr)
	pre.Strict = prefer.strict
	return pre, prefer, nil
}

// checkPreconditionSyntax refuses malformed If-Match and If-None-Match
// headers (400) on the routes whose answers carry no ETag (listings,
// history, streams), which do not evaluate them otherwise.
func checkPreconditionSyntax(c echo.Context) error {
	_, _, err := preconditions(c)
	return err
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
	pre, _, err := preconditions(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if pre.IfMatch.Present || pre.IfNoneMatch.Present {
		// Decide 412 and 304 from the ETag alone; read the body only to
		// send it. Errors (a missing document) are Get's to report.
		if etag, err := h.svc.ETag(ctx, coll, id); err == nil {
			if done, err := readPrecondition(c, pre, etag); done || err != nil {
				return err
			}
		}
	}
	doc, err := h.svc.Get(ctx, coll, id)
	if err != nil {
		return err
	}
	if done, err := readPrecondition(c, pre, doc.ETag); done || err != nil {
		return err
	}
	held, err := h.holdAnswer(c, len(doc.Body))
	if err != nil {
		return err
	}
	defer held()
	noteRead(c, doc.ETag)
	setDocHeaders(c, doc.ETag)
	c.Response().Header().Set(echo.HeaderContentLength, strconv.Itoa(len(doc.Body)))
	if c.Request().Method == http.MethodHead {
		return c.NoContent(http.StatusOK)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, doc.Body)
}

// readPrecondition evaluates a GET's or HEAD's preconditions against the
// current ETag (RFC 9110 section 13.2.2: If-Match, then If-None-Match). It
// returns the 412, or answers 304 and reports done.
func readPrecondition(c echo.Context, pre document.Preconditions, etag string) (done bool, err error) {
	if pre.IfMatch.Present && !pre.IfMatch.MatchStrong(etag) {
		return true, &document.PreconditionError{Err: fail(document.ErrPreconditionFailed, "If-Match does not match the current ETag"), Current: etag}
	}
	if pre.IfNoneMatch.Present && pre.IfNoneMatch.MatchWeak(etag) {
		noteRead(c, etag)
		setDocHeaders(c, etag)
		c.Response().Header().Del(echo.HeaderContentType)
		return true, c.NoContent(http.StatusNotModified)
	}
	return false, nil
}

func (h *Handler) put(c echo.Context) error {
	return h.write(c, document.Put, true)
}

func (h *Handler) post(c echo.Context) error {
	return h.write(c, document.Post, false)
}

func (h *Handler) patch(c echo.Context) error {
	switch mediaType(c) {
	case "application/json-patch+json":
		return h.write(c, document.JSONPatch, true)
	case "application/merge-patch+json":
		return h.write(c, document.MergePatch, true)
	}
	if _, _, err := target(c, true); err != nil {
		return err
	}
	return wrongType(c, "PATCH takes", acceptPatch)
}

func (h *Handler) delete(c echo.Context) error {
	return h.write(c, document.Delete, true)
}

// write translates a PUT, POST, PATCH or DELETE into a document.Write,
// has the service decide it, and answers with its result.
func (h *Handler) write(c echo.Context, kind document.Kind, withID bool) error {
	coll, id, err := target(c, withID)
	if err != nil {
		return err
	}
	if (kind == document.Put || kind == document.Post) && mediaType(c) != "application/json" {
		return wrongType(c, "a document must be sent as", "application/json")
	}
	w := document.Write{Kind: kind, Collection: coll, ID: id}
	if kind != document.Delete {
		if w.Body, err = h.readBody(c); err != nil {
			return err
		}
	}
	if kind == document.Post || kind == document.JSONPatch || kind == document.MergePatch {
		if w.Idempotency, err = idempotencyKey(c, w.Body); err != nil {
			return err
		}
	}
	// On a POST, If-Match with ETags is false (the service says so) and
	// If-Match: * and If-None-Match hold: the new id exists nowhere yet.
	var prefer preferences
	if w.Pre, prefer, err = preconditions(c); err != nil {
		return err
	}
	if prefer.strict {
		// Said on every answer, 412 included: rebase was off for this request.
		c.Response().Header().Set("Preference-Applied", "handling=strict")
	}
	w.Minimal = prefer.minimal
	if w.DryRun, err = dryRun(c); err != nil {
		return err
	}
	w.Actor, w.RequestID = principal(c).Actor, info(c).id
	res, err := h.svc.Write(h.serviceContext(c), w)
	noteResult(c, res)
	if err != nil {
		return err
	}
	return respondWrite(c, res, prefer)
}

// dryRun reads the dryRun query parameter: true runs a write without
// writing anything. It marks the request as one, for the log and the
// metrics.
func dryRun(c echo.Context) (bool, error) {
	vs, ok := c.QueryParams()["dryRun"]
	if !ok {
		return false, nil
	}
	switch vs[0] { // once: checkQuery refuses a parameter given twice
	case "false":
		return false, nil
	case "true":
		info(c).dryRun = true
		return true, nil
	}
	return false, fail(ErrInvalidRequest, fmt.Sprintf("dryRun must be true or false, not %q", vs[0]))
}

// noDryRun refuses dryRun on a write that has no dry run (presence), so
// that a client asking for one never gets a real change instead.
func noDryRun(c echo.Context, what string) error {
	vs, ok := c.QueryParams()["dryRun"]
	switch {
	case !ok || vs[0] == "false":
		return nil
	case vs[0] != "true":
		return fail(ErrInvalidRequest, fmt.Sprintf("dryRun must be true or false, not %q", vs[0]))
	}
	return fail(ErrInvalidRequest, "dryRun does not apply to "+what+": it writes no document version; send it without dryRun")
}

// revert serves POST /docs/{c}/{id}/revert: undo the version {"seq": K}.
func (h *Handler) revert(c echo.Context) error {
	coll, id, err := target(c, true)
	if err != nil {
		return err
	}
	if mediaType(c) != "application/json" {
		return wrongType(c, "a revert is sent as", "application/json")
	}
	body, err := h.readBody(c)
	if err != nil {
		return err
	}
	k, err := revertSeq(body, h.svc.Limits())
	if err != nil {
		return err
	}
	w := document.Write{Kind: document.Revert, Collection: coll, ID: id, Revert: k}
	if w.Idempotency, err = idempotencyKey(c, body); err != nil {
		return err
	}
	var prefer preferences
	if w.Pre, prefer, err = preconditions(c); err != nil {
		return err
	}
	if prefer.strict {
		c.Response().Header().Set("Preference-Applied", "handling=strict")
	}
	w.Minimal = prefer.minimal
	if w.DryRun, err = dryRun(c); err != nil {
		return err
	}
	w.Actor, w.RequestID = principal(c).Actor, info(c).id
	res, err := h.svc.Write(h.serviceContext(c), w)
	noteResult(c, res)
	if err != nil {
		return err
	}
	return respondWrite(c, res, prefer)
}

// revertSeq reads the body of a revert: {"seq": K}, K a positive integer
// (written in any form JSON allows: 2, 2.0 or 20e-1).
func revertSeq(body []byte, lim patch.Limits) (uint64, error) {
	bad := fail(ErrInvalidRequest, `a revert's body is {"seq": K}, K the seq of the version to undo (a positive integer)`)
	v, err := patch.Parse(body, lim)
	if errors.Is(err, patch.ErrInvalidDocument) {
		// Valid JSON past the limits of a document (nested too deep, a
		// number too long) is no {"seq": K} either, and no document.
		return 0, bad
	}
	if err != nil {
		return 0, err
	}
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return 0, bad
	}
	n, ok := m["seq"].(patch.Number)
	if !ok {
		return 0, bad
	}
	// JSON does not tell 2 from 2.0: any form of a positive integer is K.
	k, ok, overflow := patch.Uint64(n)
	switch {
	case !ok:
		return 0, bad
	case overflow:
		// A positive integer past any seq a document reaches: a version
		// never reached, as any K beyond the newest is.
		return math.MaxUint64, nil
	}
	return k, nil
}

// respondWrite answers a committed, unchanged or replayed write.
func respondWrite(c echo.Context, res document.Result, prefer preferences) error {
	if res.Doc == nil { // a delete
		return c.NoContent(http.StatusNoContent)
	}
	doc := res.Doc
	setDocHeaders(c, doc.ETag)
	hdr := c.Response().Header()
	if res.RebasedFrom != "" {
		hdr.Set("Rebased-From", res.RebasedFrom)
	}
	if res.Replayed {
		hdr.Set(replayedHeader, "true")
	}
	if applied := prefer.applied(); applied != "" {
		hdr.Set("Preference-Applied", applied)
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
		hdr.Set(echo.HeaderLocation, "/docs/"+doc.Collection+"/"+doc.ID)
	}
	if prefer.minimal {
		hdr.Del(echo.HeaderContentType)
		if res.Created {
			return c.NoContent(http.StatusCreated)
		}
		return c.NoContent(http.StatusNoContent)
	}
	return c.Blob(status, echo.MIMEApplicationJSON, doc.Body)
}

// serviceContext is the request's context for the document service,
// naming its client, so that clients take turns where requests wait for
// the same work (a schema's validations, the pages that read a whole
// collection).
func (h *Handler) serviceContext(c echo.Context) context.Context {
	return document.WithClient(c.Request().Context(), clientOf(c, h.cfg.Tokens != nil))
}
