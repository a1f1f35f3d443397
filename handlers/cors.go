package handlers

import (
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
)

// CORS (the Fetch standard's cross-origin protocol) for browser front ends.
const (
	// corsAllowMethods are the methods a preflight allows.
	corsAllowMethods = "GET, HEAD, PUT, POST, PATCH, DELETE, OPTIONS"
	// corsAllowHeaders are the request headers a preflight allows. They are
	// listed by name: a "*" would not cover Authorization.
	corsAllowHeaders = "Authorization, Content-Type, If-Match, If-None-Match, Prefer, Idempotency-Key"
	// corsExposeHeaders are the response headers a page may read.
	corsExposeHeaders = "ETag, Location, Rebased-From, Preference-Applied, Accept-Patch, Retry-After, Idempotent-Replayed"
	// corsMaxAge is how long, in seconds, a browser may cache a preflight.
	corsMaxAge = "600"
)

// ParseOrigins splits the --cors-origins list: comma-separated origins
// such as https://app.example.com, or "*" for any. Origins are compared
// case-insensitively and without a trailing slash.
func ParseOrigins(list string) []string {
	var out []string
	for _, o := range strings.Split(list, ",") {
		o = strings.ToLower(strings.TrimRight(strings.TrimSpace(o), "/"))
		if o != "" && !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out
}

// corsAllowed reports whether origin may call, and the value of
// Access-Control-Allow-Origin to answer with.
func (h *Handler) corsAllowed(origin string) (string, bool) {
	if origin == "" || len(h.cfg.CORSOrigins) == 0 {
		return "", false
	}
	if slices.Contains(h.cfg.CORSOrigins, "*") {
		return "*", true
	}
	if slices.Contains(h.cfg.CORSOrigins, strings.ToLower(origin)) {
		return origin, true
	}
	return "", false
}

// cors answers preflights from allowed origins itself (no token needed)
// and adds the CORS response headers to every other request from one.
// Requests from other origins get no CORS headers, so browsers refuse
// them; other clients are unaffected.
func (h *Handler) cors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if len(h.cfg.CORSOrigins) == 0 {
			return next(c)
		}
		r := c.Request()
		hdr := c.Response().Header()
		if !slices.Contains(h.cfg.CORSOrigins, "*") {
			hdr.Add(echo.HeaderVary, echo.HeaderOrigin)
		}
		allow, ok := h.corsAllowed(r.Header.Get(echo.HeaderOrigin))
		if !ok {
			return next(c)
		}
		hdr.Set(echo.HeaderAccessControlAllowOrigin, allow)
		if isPreflight(r) {
			hdr.Set(echo.HeaderAccessControlAllowMethods, corsAllowMethods)
			hdr.Set(echo.HeaderAccessControlAllowHeaders, corsAllowHeaders)
			hdr.Set(echo.HeaderAccessControlMaxAge, corsMaxAge)
			return c.NoContent(http.StatusNoContent)
		}
		hdr.Set(echo.HeaderAccessControlExposeHeaders, corsExposeHeaders)
		return next(c)
	}
}
