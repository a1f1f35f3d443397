package handlers

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/store"
)

// Errors of authentication and authorization.
var (
	// ErrUnauthorized: the request carries no bearer token, or one that is
	// not in the tokens file (401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the token is valid but its role or collection scope
	// does not allow the request (403).
	ErrForbidden = errors.New("forbidden")
	// ErrTokensFile: the tokens file is malformed. Its messages name the
	// line, never the token.
	ErrTokensFile = errors.New("invalid tokens file")
)

// Role is what a token may do.
type Role int

// Roles, weakest first: each includes the ones before it.
const (
	// RoleRead may read documents, listings and history.
	RoleRead Role = iota + 1
	// RoleWrite may also create, change and delete documents.
	RoleWrite
	// RoleAdmin may also use every route outside /docs (metrics, backups).
	RoleAdmin
)

// String returns the role's name in the tokens file.
func (r Role) String() string {
	switch r {
	case RoleRead:
		return "read"
	case RoleWrite:
		return "write"
	case RoleAdmin:
		return "admin"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// minTokenLen is the shortest token the tokens file accepts: a token is a
// password, and a short one can be guessed.
const minTokenLen = 16

// Tokens is a parsed tokens file. It keeps only SHA-256 digests of the
// tokens, and compares them in constant time.
type Tokens struct {
	entries []tokenEntry
}

// tokenEntry is one line of the tokens file.
type tokenEntry struct {
	digest      [sha256.Size]byte
	role        Role
	collections []string // nil: every collection
	principal   string   // a stable, non-secret name: "t" + hex of the first 8 digest bytes
	actor       string   // name= in the file, else "token:" + hex of the first 4 digest bytes
}

// Principal is the authenticated client of a request.
type Principal struct {
	// Name is a stable, non-secret identifier of the token (derived from
	// its hash), or "" when authentication is off.
	Name string
	// Role is the token's role; RoleAdmin when authentication is off.
	Role Role
	// Collections limits the token to these collections; nil means all.
	Collections []string
	// Actor is what history records as the author of the token's writes:
	// its name= in the tokens file, else "token:" and the first 8 hex
	// digits of the token's SHA-256; "" when authentication is off.
	Actor string
}

// allows reports whether p may use collection coll with role need.
func (p Principal) allows(need Role, coll string) bool {
	if p.Role < need {
		return false
	}
	return p.Collections == nil || slices.Contains(p.Collections, coll)
}

// LoadTokens reads a tokens file: one token a line, `TOKEN ROLE
// [COLLECTION...] [name=NAME]`, with blank lines and lines starting with #
// ignored. ROLE is read, write or admin; NAME, which history records as
// the author of the token's writes, is spelled like an id. Errors wrap
// ErrTokensFile (or the file system's error) and name the line, never the
// token.
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path) // #nosec G304 -- the operator names the tokens file on the command line
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	defer f.Close()
	return ParseTokens(f)
}

// ParseTokens parses the tokens file format described at LoadTokens.
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{}
	seen := map[[sha256.Size]byte]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: line %d: %s", ErrTokensFile, line, fmt.Sprintf(format, args...))
		}
		if len(fields) < 2 {
			return nil, bad("want TOKEN ROLE [COLLECTION...] [name=NAME]")
		}
		tok := fields[0]
		if len(tok) < minTokenLen {
			return nil, bad("the token is shorter than %d characters", minTokenLen)
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; c < 0x21 || c > 0x7e {
				return nil, bad("the token must be printable ASCII")
			}
		}
		var role Role
		switch fields[1] {
		case "read":
			role = RoleRead
		case "write":
			role = RoleWrite
		case "admin":
			role = RoleAdmin
		default:
			return nil, bad("role %q is not read, write or admin", fields[1])
		}
		e := tokenEntry{digest: sha256.Sum256([]byte(tok)), role: role}
		if prev, dup := seen[e.digest]; dup {
			return nil, bad("the same token as line %d", prev)
		}
		seen[e.digest] = line
		for _, coll := range fields[2:] {
			if name, ok := strings.CutPrefix(coll, "name="); ok {
				if e.actor != "" {
					return nil, bad("name= given twice")
				}
				if !store.ValidName(name) {
					return nil, bad("name %q must match [A-Za-z0-9._~-]{1,128}", name)
				}
				e.actor = name
				continue
			}
			if !store.ValidName(coll) {
				return nil, bad("collection %q must match [A-Za-z0-9._~-]{1,128}", coll)
			}
			e.collections = append(e.collections, coll)
		}
		e.principal = "t" + hex.EncodeToString(e.digest[:8])
		if e.actor == "" {
			e.actor = "token:" + hex.EncodeToString(e.digest[:4])
		}
		t.entries = append(t.entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: line %d: %v", ErrTokensFile, line+1, err)
	}
	if len(t.entries) == 0 {
		return nil, fmt.Errorf("%w: no tokens", ErrTokensFile)
	}
	return t, nil
}

// Len returns the number of tokens.
func (t *Tokens) Len() int { return len(t.entries) }

// lookup finds the entry of a presented token. It hashes the token and
// compares the digest with every entry's in constant time, without
// stopping at a match, so that the time taken says nothing about which
// token, or which prefix of one, is valid.
func (t *Tokens) lookup(token string) (tokenEntry, bool) {
	d := sha256.Sum256([]byte(token))
	found := -1
	for i := range t.entries {
		if subtle.ConstantTimeCompare(d[:], t.entries[i].digest[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return tokenEntry{}, false
	}
	return t.entries[found], true
}

// principalKey is the echo.Context key of the request's Principal.
const principalKey = "patchd.principal"

// principal returns the authenticated client of the request.
func principal(c echo.Context) Principal {
	if p, ok := c.Get(principalKey).(Principal); ok {
		return p
	}
	return Principal{Role: RoleAdmin}
}

// isPreflight reports whether r is a CORS preflight request.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}

// bearer returns the token of an Authorization: Bearer field.
func bearer(r *http.Request) (string, bool) {
	vals := r.Header.Values(echo.HeaderAuthorization)
	if len(vals) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// need returns the role a request needs and the collection it concerns
// ("" when none). ok is false for requests that need no token.
func need(c echo.Context) (role Role, coll string, ok bool) {
	r := c.Request()
	route := c.Path()
	switch {
	case r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || isPreflight(r):
		// Probes, and preflights, which carry no credentials.
		return 0, "", false
	case route == "/openapi.json" || route == "/" || strings.HasPrefix(route, "/ui/"):
		// Static files: the API's description and the demo page with its
		// client, which hold no data (the demo's requests need tokens).
		return 0, "", false
	case route == "" || (strings.HasPrefix(route, "/docs/:c") && c.Param("c") == ""):
		// No route, or a method the route does not have (echo leaves the
		// parameters empty then): any valid token may learn that.
		return RoleRead, "", true
	case route == "/events":
		// Any read token may open a stream; each of its subscriptions is
		// checked against the token's collections (subscriptions.go).
		return RoleRead, "", true
	case strings.HasPrefix(route, "/docs/:c"):
		coll := c.Param("c")
		if !store.ValidName(coll) {
			// No collection: the role alone, and the handler's 400 for the
			// name, as for every token.
			coll = ""
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			return RoleRead, coll, true
		}
		return RoleWrite, coll, true
	case route == "/batch":
		// Any write token; each write of the batch is then checked against
		// its own collection (batch.go).
		if r.Method != http.MethodPost { // OPTIONS, or a 405
			return RoleRead, "", true
		}
		return RoleWrite, "", true
	}
	// Every other route (metrics, admin) is for unscoped admin tokens.
	return RoleAdmin, "", true
}

// identify returns the principal of the request's bearer token, or an
// error wrapping ErrUnauthorized (with WWW-Authenticate set).
func (h *Handler) identify(c echo.Context) (Principal, error) {
	hdr := c.Response().Header()
	tok, present := bearer(c.Request())
	if !present {
		hdr.Set(echo.HeaderWWWAuthenticate, `Bearer realm="patchd"`)
		return Principal{}, fail(ErrUnauthorized, "this server needs Authorization: Bearer TOKEN")
	}
	e, found := h.cfg.Tokens.lookup(tok)
	if !found {
		hdr.Set(echo.HeaderWWWAuthenticate, `Bearer realm="patchd", error="invalid_token"`)
		return Principal{}, fail(ErrUnauthorized, "the bearer token is not valid")
	}
	return Principal{Name: e.principal, Role: e.role, Collections: e.collections, Actor: e.actor}, nil
}

// forbidden returns an error wrapping ErrForbidden (with WWW-Authenticate
// set).
func forbidden(c echo.Context, detail string) error {
	c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="patchd", error="insufficient_scope"`)
	return fail(ErrForbidden, detail)
}

// authenticate is the middleware that enforces the tokens file: the probes
// /healthz and /readyz, CORS preflights and the static files (the API's
// description, the demo and its client, which hold no data) are open, /docs
// needs read (GET, HEAD, OPTIONS) or
// write (other methods) on the collection, and every other route an admin
// token without a collection scope. Without tokens it lets every request
// through.
func (h *Handler) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if h.cfg.Tokens == nil {
			return next(c)
		}
		role, coll, ok := need(c)
		if !ok {
			return next(c)
		}
		p, err := h.identify(c)
		if err != nil {
			return err
		}
		c.Set(principalKey, p)
		switch {
		case coll != "" && !p.allows(role, coll):
			return forbidden(c, fmt.Sprintf("a %s token for %s may not %s collection %q", p.Role, scopeText(p), verb(role), coll))
		case coll == "" && role < RoleAdmin && p.Role < role:
			return forbidden(c, fmt.Sprintf("a %s token may not %s documents", p.Role, verb(role)))
		case role == RoleAdmin && (p.Role != RoleAdmin || p.Collections != nil):
			return forbidden(c, "this route needs an admin token without a collection scope")
		}
		return next(c)
	}
}

// scopeText describes a principal's collection scope.
func scopeText(p Principal) string {
	if p.Collections == nil {
		return "every collection"
	}
	return strings.Join(p.Collections, ", ")
}

// verb says what a role is needed for.
func verb(r Role) string {
	if r == RoleRead {
		return "read"
	}
	return "write to"
}
