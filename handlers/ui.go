package handlers

import (
	"io/fs"
	"net/http"
	"path"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/web"
)

// registerUI serves the collaborative form demo: the page at /, its files
// under /ui/, and the JavaScript client it imports under /ui/client/.
func (h *Handler) registerUI(e *echo.Echo) {
	demo, client := newUIFiles(web.Demo()), newUIFiles(web.Client())
	h.uiPaths = map[string]bool{"/": true}
	for name := range demo {
		h.uiPaths["/ui/"+name] = true
	}
	for name := range client {
		h.uiPaths["/ui/client/"+name] = true
	}
	getHead(e, "/", func(c echo.Context) error { return demo.serve(c, "index.html") })
	getHead(e, "/ui/client/:file", func(c echo.Context) error { return client.serve(c, c.Param("file")) })
	getHead(e, "/ui/:file", func(c echo.Context) error { return demo.serve(c, c.Param("file")) })
}

// uiFile is an embedded file with its strong ETag.
type uiFile struct {
	body []byte
	etag string
}

// uiFiles are the files of one embedded directory, read once.
type uiFiles map[string]uiFile

func newUIFiles(fsys fs.FS) uiFiles {
	files := uiFiles{}
	entries, _ := fs.ReadDir(fsys, ".")
	for _, e := range entries {
		if b, err := fs.ReadFile(fsys, e.Name()); err == nil && !e.IsDir() && contentType(e.Name()) != "" {
			files[e.Name()] = uiFile{body: b, etag: store.ETagOf(b)}
		}
	}
	return files
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
	case ".svg":
		return "image/svg+xml"
	}
	return ""
}

// serve answers one embedded file, or 404. Browsers revalidate it on every
// load (no-cache) with its ETag, answered 304 while it is unchanged.
func (files uiFiles) serve(c echo.Context, name string) error {
	f, ok := files[name]
	if !ok {
		return echo.ErrNotFound
	}
	hdr := c.Response().Header()
	hdr.Del("Accept-Patch")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("ETag", f.etag)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	// A malformed If-None-Match is ignored: the file is served.
	if inm, err := document.ParseETagList("If-None-Match", c.Request().Header.Values("If-None-Match")); err == nil && inm.MatchWeak(f.etag) {
		return c.NoContent(http.StatusNotModified)
	}
	hdr.Set(echo.HeaderContentLength, strconv.Itoa(len(f.body))) // a HEAD answer carries it too
	return c.Blob(http.StatusOK, contentType(name), f.body)
}
