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

// corsAllowed reports whether origin may call, given the allowed origins,
// and the value of Access-Control-Allow-Origin to answer with.
func corsAllowed(origins []string, origin string) (string, bool) {
	if origin == "" || len(origins) == 0 {
		return "", false
	}
	if slices.Contains(origins, "*") {
		return "*", true
	}
	if slices.Contains(origins, strings.ToLower(origin)) {
		return origin, true
	}
	return "", false
}

// setCORS adds to hdr the CORS response headers r gets from a server that
// allows origins, and reports whether r is a preflight of an allowed origin,
// which the caller answers with 204 and nothing else.
func setCORS(origins []string, r *http.Request, hdr http.Header) (preflight bool) {
	if len(origins) == 0 {
		return false
	}
	if !slices.Contains(origins, "*") {
		hdr.Add(echo.HeaderVary, echo.HeaderOrigin)
	}
	allow, ok := corsAllowed(origins, r.Header.Get(echo.HeaderOrigin))
	if !ok {
		return false
	}
	hdr.Set(echo.HeaderAccessControlAllowOrigin, allow)
	if isPreflight(r) {
		hdr.Set(echo.HeaderAccessControlAllowMethods, corsAllowMethods)
		hdr.Set(echo.HeaderAccessControlAllowHeaders, corsAllowHeaders)
		hdr.Set(echo.HeaderAccessControlMaxAge, corsMaxAge)
		return true
	}
	hdr.Set(echo.HeaderAccessControlExposeHeaders, corsExposeHeaders)
	return false
}

// cors answers preflights from allowed origins itself (no token needed)
// and adds the CORS response headers to every other request from one.
// Requests from other origins get no CORS headers, so browsers refuse
// them; other clients are unaffected.
func (h *Handler) cors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if setCORS(h.cfg.CORSOrigins, c.Request(), c.Response().Header()) {
			return c.NoContent(http.StatusNoContent)
		}
		return next(c)
	}
}
