package handlers

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/store"
)

// Schemas: PUT, GET, HEAD and DELETE /schemas/{c}, and GET
// /schemas/{c}/violations, for admin tokens (auth.go). A schema is kept and
// answered like a document: ETag, preconditions, 201 or 200, 204.

// schemaPath returns the path of a collection's schema.
func schemaPath(coll string) string { return "/schemas/" + coll }

func (h *Handler) putSchema(c echo.Context) error {
	coll, _, err := target(c, false)
	if err != nil {
		return err
	}
	if mediaType(c) != "application/json" {
		return wrongType(c, "a schema must be sent as", "application/json")
	}
	return h.writeSchema(c, document.Write{Kind: document.Put, Collection: coll})
}

func (h *Handler) deleteSchema(c echo.Context) error {
	coll, _, err := target(c, false)
	if err != nil {
		return err
	}
	return h.writeSchema(c, document.Write{Kind: document.Delete, Collection: coll})
}

// writeSchema has the service put or delete a schema and answers as for a
// document.
func (h *Handler) writeSchema(c echo.Context, w document.Write) error {
	var err error
	if w.Kind == document.Put {
		if w.Body, err = h.readBody(c); err != nil {
			return err
		}
	}
	var prefer preferences
	if w.Pre, prefer, err = preconditions(c); err != nil {
		return err
	}
	w.Minimal = prefer.minimal
	if w.DryRun, err = dryRun(c); err != nil {
		return err
	}
	w.Actor, w.RequestID = principal(c).Actor, info(c).id
	res, err := h.svc.WriteSchema(c.Request().Context(), w)
	noteResult(c, res)
	if err != nil {
		return err
	}
	if res.Doc == nil {
		return c.NoContent(http.StatusNoContent)
	}
	setDocHeaders(c, res.Doc.ETag)
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
		c.Response().Header().Set(echo.HeaderLocation, schemaPath(w.Collection))
	}
	if prefer.minimal {
		c.Response().Header().Set("Preference-Applied", "return=minimal")
		c.Response().Header().Del(echo.HeaderContentType)
		if res.Created {
			return c.NoContent(http.StatusCreated)
		}
		return c.NoContent(http.StatusNoContent)
	}
	return c.Blob(status, echo.MIMEApplicationJSON, res.Doc.Body)
}

func (h *Handler) getSchema(c echo.Context) error {
	coll, _, err := target(c, false)
	if err != nil {
		return err
	}
	pre, _, err := preconditions(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if pre.IfMatch.Present || pre.IfNoneMatch.Present {
		if etag, err := h.svc.SchemaETag(ctx, coll); err == nil {
			if done, err := readPrecondition(c, pre, etag); done || err != nil {
				return err
			}
		}
	}
	doc, err := h.svc.Schema(ctx, coll)
	if err != nil {
		return err
	}
	if done, err := readPrecondition(c, pre, doc.ETag); done || err != nil {
		return err
	}
	noteRead(c, doc.ETag)
	setDocHeaders(c, doc.ETag)
	c.Response().Header().Set(echo.HeaderContentLength, strconv.Itoa(len(doc.Body)))
	if c.Request().Method == http.MethodHead {
		return c.NoContent(http.StatusOK)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, doc.Body)
}

// violations serves GET /schemas/{c}/violations: the documents of the
// collection that break its schema, paged by id.
func (h *Handler) violations(c echo.Context) error {
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
	after := c.QueryParam("after")
	if after != "" && !store.ValidName(after) {
		return fail(ErrInvalidRequest, "after must be a document id")
	}
	vs, next, err := h.svc.Violations(h.serviceContext(c), coll, after, limit)
	if err != nil {
		return err
	}
	resp := struct {
		Items []document.Violation `json:"items"`
		Next  *string              `json:"next"`
	}{Items: vs}
	if next != "" {
		resp.Next = &next
	}
	body, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	held, err := h.holdAnswer(c, len(body))
	if err != nil {
		return err
	}
	defer held()
	c.Response().Header().Set("Cache-Control", "no-cache")
	c.Response().Header().Set(echo.HeaderContentLength, strconv.Itoa(len(body)))
	if c.Request().Method == http.MethodHead {
		c.Response().Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
		return c.NoContent(http.StatusOK)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, body)
}
