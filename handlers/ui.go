package handlers

import (
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/web"
)

// registerUI serves the collaborative form demo: the page at /, its files
// under /ui/, and the JavaScript client it imports under /ui/client/.
func (h *Handler) registerUI(e *echo.Echo) {
	demo, client := web.Demo(), web.Client()
	getHead(e, "/", func(c echo.Context) error { return serveFile(c, demo, "index.html") })
	getHead(e, "/ui/client/:file", func(c echo.Context) error { return serveFile(c, client, c.Param("file")) })
	getHead(e, "/ui/:file", func(c echo.Context) error { return serveFile(c, demo, c.Param("file")) })
}

// contentType gives the type of the only files the UI serves, or "".
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".ts":
		return "text/plain; charset=utf-8"
	}
	return ""
}

// serveFile answers one embedded file, or 404.
func serveFile(c echo.Context, fsys fs.FS, name string) error {
	ct := contentType(name)
	b, err := fs.ReadFile(fsys, name)
	if ct == "" || err != nil || strings.Contains(name, "/") {
		return echo.ErrNotFound
	}
	hdr := c.Response().Header()
	hdr.Del("Accept-Patch")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	return c.Blob(http.StatusOK, ct, b)
}
