package handlers

import (
	"bytes"
	_ "embed"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
)

// openapiJSON is the OpenAPI 3.1 description of the HTTP API, served at
// /openapi.json. The tests check real answers against it, so that it
// cannot drift from the code.
//
//go:embed openapi.json
var openapiJSON []byte

// OpenAPI returns a copy of the OpenAPI 3.1 description of the HTTP API.
func OpenAPI() []byte { return bytes.Clone(openapiJSON) }

func (h *Handler) openapi(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-cache")
	// Its length up front: a HEAD answer carries it too.
	c.Response().Header().Set(echo.HeaderContentLength, strconv.Itoa(len(openapiJSON)))
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openapiJSON)
}
