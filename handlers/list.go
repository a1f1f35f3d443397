package handlers

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/query"
	"github.com/patchd/patchd/store"
)

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// pageLimit reads the limit query parameter.
func pageLimit(c echo.Context) (int, error) {
	s := c.QueryParam("limit")
	if s == "" {
		return defaultPageSize, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxPageSize {
		return 0, fail(ErrInvalidRequest, fmt.Sprintf("limit must be an integer from 1 to %d", maxPageSize))
	}
	return n, nil
}

// list serves GET /docs/{c}: ids and ETags in id order, or, with include,
// where or order, a page of document.Service.Query.
func (h *Handler) list(c echo.Context) error {
	coll, _, err := target(c, false)
	if err != nil {
		return err
	}
	if err := checkPreconditionSyntax(c); err != nil {
		return err
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	q := document.ListQuery{Collection: coll, Limit: limit, After: c.QueryParam("after")}
	switch inc := c.QueryParam("include"); inc {
	case "":
	case "body":
		q.Bodies = true
	default:
		return fail(ErrInvalidRequest, fmt.Sprintf("include must be body, not %q", inc))
	}
	if q.Where, err = query.ParseWhere(c.QueryParam("where")); err != nil {
		return fail(ErrInvalidRequest, err.Error())
	}
	if s := c.QueryParam("order"); s != "" {
		o, err := query.ParseOrder(s)
		if err != nil {
			return fail(ErrInvalidRequest, err.Error())
		}
		q.Order = &o
	} else if o, ok := document.TokenOrder(q.After); ok {
		return fail(ErrInvalidRequest, fmt.Sprintf("after is the next of a page sorted by order=%s: send order=%s with it", o, o))
	} else if q.After != "" && !store.ValidName(q.After) {
		return fail(ErrInvalidRequest, "after must be a document id (the next of the previous page)")
	}
	page, err := h.svc.Query(h.serviceContext(c), q)
	if err != nil {
		return err
	}
	// Built by hand, so that each value is the document's canonical bytes
	// exactly as GET answers them.
	var b bytes.Buffer
	b.WriteString(`{"items":[`)
	for i, it := range page.Items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"etag":`)
		b.Write(patch.Canonical(it.ETag))
		b.WriteString(`,"id":`)
		b.Write(patch.Canonical(it.ID))
		b.WriteString(`,"seq":`)
		b.WriteString(strconv.FormatUint(it.Seq, 10))
		if q.Bodies {
			b.WriteString(`,"value":`)
			b.Write(it.Body)
		}
		b.WriteByte('}')
	}
	b.WriteString(`],"next":`)
	if page.Next == "" {
		b.WriteString("null")
	} else {
		b.Write(patch.Canonical(page.Next))
	}
	b.WriteString("}")
	held, err := h.holdAnswer(c, b.Len())
	if err != nil {
		return err
	}
	defer held()
	c.Response().Header().Set("Cache-Control", "no-cache")
	c.Response().Header().Set(echo.HeaderContentLength, strconv.Itoa(b.Len()))
	if c.Request().Method == http.MethodHead {
		c.Response().Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
		return c.NoContent(http.StatusOK)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, b.Bytes())
}

// historyPageBytes bounds the ops one page of history, and one read of
// history by a change feed stream, carries: a page of large versions ends
// early (next continues it), so that what a request holds does not grow
// with its limit. A page always holds one version, whatever its size.
const historyPageBytes = 1 << 20

// historyFlush is how much of a history page is rendered before it is
// sent: a page is streamed, not built whole.
const historyFlush = 64 << 10

func (h *Handler) history(c echo.Context) error {
	coll, id, err := target(c, true)
	if err != nil {
		return err
	}
	if err := checkPreconditionSyntax(c); err != nil {
		return err
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	var after uint64
	if s := c.QueryParam("after"); s != "" {
		if after, err = strconv.ParseUint(s, 10, 64); err != nil {
			return fail(ErrInvalidRequest, "after must be a version seq (a non-negative integer)")
		}
	}
	versions, more, err := h.svc.History(c.Request().Context(), coll, id, after, limit, historyPageBytes)
	if err != nil {
		return err
	}
	size := 0
	for i := range versions {
		size += len(versions[i].Ops) + 256
	}
	held, err := h.holdAnswer(c, min(size, historyPageBytes))
	if err != nil {
		return err
	}
	defer held()
	res := c.Response()
	res.Header().Set("Cache-Control", "no-cache")
	res.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	// {"next":...,"versions":[...]}: members in canonical order. The page
	// is rendered version by version and sent in pieces, each version's
	// bytes let go once rendered; a small page goes in one piece, with its
	// Content-Length. HEAD renders it too, to send the same headers.
	head := c.Request().Method == http.MethodHead
	streamed := false
	buf := make([]byte, 0, historyFlush)
	buf = append(buf, `{"next":`...)
	if more && len(versions) > 0 {
		buf = strconv.AppendUint(buf, versions[len(versions)-1].Seq, 10)
	} else {
		buf = append(buf, "null"...)
	}
	buf = append(buf, `,"versions":[`...)
	for i := range versions {
		if i > 0 {
			buf = append(buf, ',')
		}
		// Room for the version at once: it renders to at most about its
		// stored size, and growing a buffer by doubling leaves garbage.
		buf = slices.Grow(buf, len(versions[i].Ops)+256)
		if buf, err = appendVersion(buf, versions[i]); err != nil {
			err = fmt.Errorf("history %s/%s seq %d: %w", coll, id, versions[i].Seq, err)
			if !res.Committed {
				return err
			}
			// The answer has started: cut the connection, so that the
			// client sees a broken answer rather than a short one.
			h.log.Error("history: a stored version does not render; answer cut off", "err", err)
			panic(http.ErrAbortHandler)
		}
		versions[i] = store.Version{}
		if len(buf) >= historyFlush && head {
			streamed, buf = true, buf[:0] // GET sends this page without a length
		} else if len(buf) >= historyFlush {
			if !res.Committed {
				res.WriteHeader(http.StatusOK)
			}
			if _, err := res.Write(buf); err != nil {
				return nil // the client is gone; nothing to answer
			}
			buf = buf[:0]
		}
	}
	buf = append(buf, "]}"...)
	if !streamed && !res.Committed {
		res.Header().Set(echo.HeaderContentLength, strconv.Itoa(len(buf)))
	}
	if head {
		return c.NoContent(http.StatusOK)
	}
	if !res.Committed {
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, buf)
	}
	_, _ = res.Write(buf)
	return nil
}

// appendVersion appends a version as API.md's History section shows it:
// the bytes of the version's members in canonical JSON, built without
// decoding the ops' values (patch.AppendRFC6902), so that rendering a
// version of a large document costs a copy, not a tree.
func appendVersion(dst []byte, v store.Version) ([]byte, error) {
	return appendVersionOf(dst, v, nil)
}

// eventTarget is what a POST /events event adds to a version: the
// document it is of, and for a change event its cursor and, under a
// filter, whether the document matches after it.
type eventTarget struct {
	c, id  string
	cursor string // "" : none
	match  *bool  // nil: none
}

// appendVersionOf is appendVersion with t's members, when t is not nil,
// each in its canonical place.
func appendVersionOf(dst []byte, v store.Version, t *eventTarget) ([]byte, error) {
	// Members in canonical order.
	dst = append(dst, `{"actor":`...)
	dst = appendNullable(dst, v.Actor)
	dst = append(dst, `,"at":`...)
	dst = patch.AppendCanonical(dst, v.At.UTC().Format(time.RFC3339Nano))
	if t != nil {
		dst = append(dst, `,"c":`...)
		dst = patch.AppendCanonical(dst, t.c)
		if t.cursor != "" {
			dst = append(dst, `,"cursor":`...)
			dst = patch.AppendCanonical(dst, t.cursor)
		}
	}
	dst = append(dst, `,"etag":`...)
	dst = appendNullable(dst, v.ETag)
	if t != nil {
		dst = append(dst, `,"id":`...)
		dst = patch.AppendCanonical(dst, t.id)
	}
	dst = append(dst, `,"kind":`...)
	dst = patch.AppendCanonical(dst, v.Kind)
	if t != nil && t.match != nil {
		dst = append(dst, `,"match":`...)
		dst = strconv.AppendBool(dst, *t.match)
	}
	dst = append(dst, `,"ops":`...)
	dst, err := patch.AppendRFC6902(dst, v.Ops)
	if err != nil {
		return dst, err
	}
	dst = append(dst, `,"rebasedFrom":`...)
	dst = appendNullable(dst, v.RebasedFrom)
	dst = append(dst, `,"requestId":`...)
	dst = appendNullable(dst, v.RequestID)
	if v.Reverts != 0 {
		dst = append(dst, `,"reverts":`...)
		dst = strconv.AppendUint(dst, v.Reverts, 10)
	}
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, v.Seq, 10)
	return append(dst, '}'), nil
}

// appendNullable appends s as a JSON string, or null when it is empty.
func appendNullable(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "null"...)
	}
	return patch.AppendCanonical(dst, s)
}
