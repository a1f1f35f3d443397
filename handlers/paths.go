package handlers

import (
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
)

// unreservedPath routes a path whose percent-escapes include unreserved
// characters (letters, digits, "-", ".", "_", "~") as the path with those
// characters written out, for they are the same (RFC 3986 section
// 6.2.2.2): /docs/c/%41bc is /docs/c/Abc. Echo routes on the path as sent
// when it holds escapes other than the default ones, and takes its
// parameters undecoded; other escapes (%2F, %20...) stay as they are, and
// the names they are in are refused.
func unreservedPath(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		u := c.Request().URL
		if u.RawPath != "" && strings.Contains(u.RawPath, "%") {
			raw := decodeUnreserved(u.RawPath)
			if raw == (&url.URL{Path: u.Path}).EscapedPath() {
				raw = "" // the default encoding: Echo routes on Path
			}
			u.RawPath = raw
		}
		return next(c)
	}
}

// decodeUnreserved writes out the percent-escapes of unreserved characters
// in the escaped path p and keeps every other byte as it is.
func decodeUnreserved(p string) string {
	var b strings.Builder
	last := 0
	for i := 0; i+2 < len(p); i++ {
		if p[i] != '%' {
			continue
		}
		hi, ok1 := unhex(p[i+1])
		lo, ok2 := unhex(p[i+2])
		if !ok1 || !ok2 {
			continue
		}
		if ch := hi<<4 | lo; unreserved(ch) {
			b.WriteString(p[last:i])
			b.WriteByte(ch)
			last = i + 3
			i += 2
		}
	}
	if last == 0 {
		return p
	}
	b.WriteString(p[last:])
	return b.String()
}

// unhex is the value of the hexadecimal digit c.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unreserved reports whether c is an unreserved character of RFC 3986.
func unreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}
