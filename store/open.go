package store

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults of Options, declared once for every backend.
const (
	DefaultRetentionVersions = 1000
	DefaultRetentionAge      = 24 * time.Hour
	DefaultLockTimeout       = time.Second
	DefaultTimeout           = 5 * time.Second
	// DefaultIdempotencyPerScope bounds the live idempotency records of
	// one scope (one client).
	DefaultIdempotencyPerScope = 100_000
	// DefaultMaxHistoryRead bounds the bytes of ops of the versions one
	// History.Since or SinceSeq returns after its base.
	DefaultMaxHistoryRead = 8 << 20
)

// Options configures a store, whatever its backend. The zero value is
// usable: WithDefaults fills in what is left zero.
type Options struct {
	// Retention bounds each document's history. A zero Versions means
	// DefaultRetentionVersions; a zero Age means DefaultRetentionAge (a
	// negative Age keeps no version for its age).
	Retention Retention
	// Now returns the commit time of a version. Nil means time.Now.
	Now func() time.Time
	// Logger receives debug events and warnings. Nil discards them.
	Logger *slog.Logger
	// ReadOnly opens an existing store for reading only (exports, backups,
	// checks): it is never created, and writes return ErrReadOnly.
	ReadOnly bool
	// LockTimeout is how long to wait for a store another process holds
	// for itself (an embedded file), before failing with an error wrapping
	// ErrLocked. Zero means DefaultLockTimeout.
	LockTimeout time.Duration
	// Timeout bounds how long one call waits on the database, a wait for
	// a pooled connection, locks and retries included; past it the call
	// fails with an error wrapping ErrUnavailable. A database server also
	// gets it as its statement and lock timeouts; an embedded file bounds
	// with it the wait for a document's lock. Zero means DefaultTimeout.
	Timeout time.Duration
	// IdempotencyPerScope is how many live idempotency records one
	// IdempotencyRecord.Scope keeps: a record written beyond it deletes the
	// scope's oldest ones. An embedded file keeps the bound exactly; a
	// database server shared by replicas enforces it after every
	// IdempotencyPerScope/8 records a replica writes for the scope, so a
	// scope may briefly hold that many more per replica. Zero means
	// DefaultIdempotencyPerScope; a negative value, no bound.
	IdempotencyPerScope int
	// MaxHistoryRead bounds the bytes of the versions after the base that
	// one History.Since or SinceSeq returns (a stale edit is rebased over
	// them; a backend counts their ops, or their stored form, ops and a few
	// dozen bytes of metadata each): past it, they fail with
	// ErrHistoryTooLarge without decoding them, unless the base is unknown
	// (ErrBaseUnknown). Zero means DefaultMaxHistoryRead.
	MaxHistoryRead int
}

// WithDefaults returns o with every zero field set to its default.
func (o Options) WithDefaults() Options {
	if o.Retention.Versions <= 0 {
		o.Retention.Versions = DefaultRetentionVersions
	}
	if o.Retention.Age == 0 {
		o.Retention.Age = DefaultRetentionAge
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxHistoryRead <= 0 {
		o.MaxHistoryRead = DefaultMaxHistoryRead
	}
	if o.IdempotencyPerScope == 0 {
		o.IdempotencyPerScope = DefaultIdempotencyPerScope
	}
	return o
}

// Opener opens a store of one backend. url is what was given to Open: a
// URL of a scheme the backend registered, or, for the backend registered
// for plain paths, a file path.
type Opener func(ctx context.Context, url string, opts Options) (Store, error)

// Backends register themselves by scheme in an init function, the way
// database/sql drivers do, so that the program that opens a store names no
// backend: importing a backend's package for its side effect makes its
// scheme available.
var (
	registryMu sync.RWMutex
	registry   = map[string]Opener{}
)

// PathScheme is the scheme under which the backend that takes plain file
// paths registers (a location without "scheme://" is a path).
const PathScheme = "file"

// Register makes a backend available to Open for locations of the given
// scheme ("postgres" for postgres://...; PathScheme for file paths and
// file:// URLs). It panics if the scheme is registered twice, a mistake of
// the program rather than of its input.
func Register(scheme string, open Opener) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[scheme]; dup {
		panic("store: Register called twice for scheme " + scheme)
	}
	registry[scheme] = open
}

// Schemes returns the registered schemes, sorted.
func Schemes() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]string, 0, len(registry))
	for s := range registry {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Scheme returns the scheme of a store location: the part before "://",
// lowercased, or PathScheme for a plain path.
func Scheme(location string) string {
	scheme, _, ok := strings.Cut(location, "://")
	if !ok || scheme == "" || strings.ContainsAny(scheme, "/\\.") {
		return PathScheme
	}
	return strings.ToLower(scheme)
}

// Open opens the store at location with the backend registered for its
// scheme (see Scheme): a path or file:// URL for an embedded file, a
// postgres:// URL for PostgreSQL.
func Open(ctx context.Context, location string, opts Options) (Store, error) {
	scheme := Scheme(location)
	registryMu.RLock()
	open := registry[scheme]
	registryMu.RUnlock()
	if open == nil {
		return nil, fmt.Errorf("store: no backend for %q locations (have %s)", scheme, strings.Join(Schemes(), ", "))
	}
	return open(ctx, location, opts.WithDefaults())
}

// Redact returns a store location fit for logs: a URL's password, in its
// user part or as a password or sslpassword parameter, is replaced; a path
// is returned as it is.
func Redact(location string) string {
	if Scheme(location) == PathScheme && !strings.HasPrefix(location, "file://") {
		return location
	}
	u, err := url.Parse(location)
	if err != nil {
		return Scheme(location) + "://(unparsable URL)"
	}
	u.RawQuery = redactQuery(u.RawQuery)
	return u.Redacted()
}

// redactQuery replaces the values of the password and sslpassword
// parameters of a raw query, leaving every other byte as it was. It splits
// on '&' alone, as libpq and pgx do (Go's url.ParseQuery would drop a pair
// holding a ';', password included).
func redactQuery(raw string) string {
	if raw == "" {
		return raw
	}
	pairs := strings.Split(raw, "&")
	for i, pair := range pairs {
		name, _, _ := strings.Cut(pair, "=")
		key := name
		if k, err := url.QueryUnescape(name); err == nil {
			key = k
		}
		if key == "password" || key == "sslpassword" {
			pairs[i] = name + "=xxxxx"
		}
	}
	return strings.Join(pairs, "&")
}
