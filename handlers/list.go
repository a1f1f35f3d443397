package handlers

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/patch"
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

func (h *Handler) list(c echo.Context) error {
	coll, _, err := target(c, false)
	if err != nil {
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
	entries, more, err := h.svc.List(c.Request().Context(), coll, after, limit)
	if err != nil {
		return err
	}
	type item struct {
		ID   string `json:"id"`
		ETag string `json:"etag"`
	}
	resp := struct {
		Items []item  `json:"items"`
		Next  *string `json:"next"`
	}{Items: make([]item, len(entries))}
	for i, e := range entries {
		resp.Items[i] = item{ID: e.ID, ETag: e.ETag}
	}
	if more && len(entries) > 0 {
		resp.Next = &entries[len(entries)-1].ID
	}
	c.Response().Header().Set("Cache-Control", "no-cache")
	return c.JSON(http.StatusOK, resp)
}

func (h *Handler) history(c echo.Context) error {
	coll, id, err := target(c, true)
	if err != nil {
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
	versions, more, err := h.svc.History(c.Request().Context(), coll, id, after, limit)
	if err != nil {
		return err
	}
	out := make([]any, len(versions))
	for i, v := range versions {
		ops, err := patch.DecodeOps(v.Ops)
		if err != nil {
			return fmt.Errorf("history %s/%s seq %d: %w", coll, id, v.Seq, err)
		}
		out[i] = versionJSON(v, ops)
	}
	var next any
	if more && len(versions) > 0 {
		next = patch.Number(strconv.FormatUint(versions[len(versions)-1].Seq, 10))
	}
	body := patch.Canonical(map[string]any{"versions": out, "next": next})
	c.Response().Header().Set("Cache-Control", "no-cache")
	if c.Request().Method == http.MethodHead {
		c.Response().Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
		return c.NoContent(http.StatusOK)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, body)
}

// versionJSON renders a version as API.md's History section shows it. It is
// built as a patch value so that the ops' number literals stay exact.
func versionJSON(v store.Version, ops []patch.Op) map[string]any {
	m := map[string]any{
		"seq":         patch.Number(strconv.FormatUint(v.Seq, 10)),
		"etag":        nil,
		"at":          v.At.UTC().Format(time.RFC3339Nano),
		"kind":        v.Kind,
		"ops":         patch.RFC6902(ops),
		"rebasedFrom": nil,
		"actor":       nil,
		"requestId":   nil,
	}
	if v.ETag != "" {
		m["etag"] = v.ETag
	}
	if v.RebasedFrom != "" {
		m["rebasedFrom"] = v.RebasedFrom
	}
	if v.Actor != "" {
		m["actor"] = v.Actor
	}
	if v.RequestID != "" {
		m["requestId"] = v.RequestID
	}
	if v.Reverts != 0 {
		m["reverts"] = patch.Number(strconv.FormatUint(v.Reverts, 10))
	}
	return m
}
