// Package handlers serves patchd's HTTP API (API.md) with Echo v4: documents
// under collections, conditional requests with strong content-hash ETags,
// JSON Patch and Merge Patch, history, and the rebase of stale edits.
//
// Handlers only return errors; one error handler maps them to API.md's
// status codes and problem types (errors.go).
package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Config holds the HTTP layer's settings. The zero value is not useful; start
// from DefaultConfig.
type Config struct {
	// RequireIfMatch answers 428 to writes to existing documents that carry
	// no If-Match.
	RequireIfMatch bool
	// MaxBody is the largest request body in bytes; more is 413.
	MaxBody int64
	// Limits bound documents and patches (depth, size, operations).
	Limits patch.Limits
	// Rebase bounds the work of one rebase.
	Rebase patch.RebaseLimits
	// Logger receives internal errors and one line per request; nil
	// discards.
	Logger *slog.Logger
	// AdminGuard, when not nil, runs before the admin routes (/metrics and
	// /admin/backup) and decides who may use them; nil leaves them open.
	// It is the one place where authentication plugs in for them.
	AdminGuard echo.MiddlewareFunc
	// Registry receives the Handler's Prometheus metrics; nil makes a new
	// registry for each Handler (no global one).
	Registry *prometheus.Registry
	// Version names the build in patchd_build_info.
	Version string
	// StatsMaxAge is how long /metrics reuses one reading of the store's
	// document counts and page statistics, which walks the whole file;
	// zero means 10s.
	StatsMaxAge time.Duration
	// Events tunes the change feed; the zero value takes its defaults.
	Events EventsConfig
	// UI serves the collaborative form demo at / (ui.go).
	UI bool
	// Tokens, when not nil, requires a bearer token on every request but
	// /healthz and CORS preflights (auth.go).
	Tokens *Tokens
	// CORSOrigins lists the origins browsers may call from ("*": any);
	// empty turns CORS off (cors.go).
	CORSOrigins []string
	// Rate is the requests a second allowed per client, 0 for no limit;
	// RateBurst is how many may come at once (0: one second's worth)
	// (ratelimit.go).
	Rate      float64
	RateBurst int
	// IdempotencyTTL is how long the answer to a write with an
	// Idempotency-Key is kept for retries (idempotency.go).
	IdempotencyTTL time.Duration
	// DecodeBudget bounds the bytes of JSON that requests hold decoded as
	// trees at once, request bodies and stored documents each: past it,
	// large requests wait for one another. Zero means 2 MiB.
	DecodeBudget int64
}

// DefaultConfig returns the defaults API.md documents.
func DefaultConfig() Config {
	return Config{
		RequireIfMatch: true,
		MaxBody:        1 << 20,
		Limits:         patch.Limits{MaxDepth: 64, MaxDoc: 1 << 20, MaxOps: 1000},
		Rebase:         patch.RebaseLimits{MaxOps: 10_000, MaxWork: 1_000_000},
		UI:             true,
		IdempotencyTTL: 24 * time.Hour,
	}
}

// Handler serves the API over a Store.
type Handler struct {
	store   store.Store
	cfg     Config
	log     *slog.Logger
	ids     *idGenerator
	reqIDs  *idGenerator // request ids, when the client sends none
	metrics *metrics
	hub     *hub
	// backend is the store as given, for what only it offers (backups);
	// store wraps it to wake change feed streams after writes.
	backend store.Store
	// stopFollow stops following the backend's commit notifications.
	stopFollow context.CancelFunc

	limiter  *rateLimiter // nil: no rate limit
	inflight *inflight

	ops   *opsCache
	trees *treeCache
	// bodies and docs are the decode budgets of request bodies and of
	// stored documents; a request takes from bodies before a document's
	// lock and from docs only under it, so the two never wait in a cycle.
	bodies, docs *budget
}

// New returns a Handler serving st.
func New(st store.Store, cfg Config) *Handler {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	backend := st
	m := newMetrics(reg, backend, cfg, log)
	hub := newHub()
	st = notifyingStore{Store: st, hub: hub} // wakes change feed streams after writes
	ctx, stop := context.WithCancel(context.Background())
	if n, ok := backend.(store.Notifier); ok {
		// A shared database (PostgreSQL) reports other replicas' commits.
		go hub.follow(ctx, n, log)
	}
	h := &Handler{store: st, cfg: cfg, log: log, ids: newIDGenerator(), reqIDs: newIDGenerator(),
		metrics: m, hub: hub, backend: backend, stopFollow: stop, inflight: &inflight{keys: map[string]struct{}{}}}
	decode := cfg.DecodeBudget
	if decode <= 0 {
		decode = 2 << 20
	}
	h.ops, h.trees = newOpsCache(opsCacheBytes), newTreeCache(treeCacheBytes)
	h.bodies, h.docs = newBudget(decode), newBudget(decode)
	if cfg.Rate > 0 {
		h.limiter = newRateLimiter(cfg.Rate, cfg.RateBurst, nil)
	}
	if h.cfg.IdempotencyTTL <= 0 {
		h.cfg.IdempotencyTTL = 24 * time.Hour
	}
	return h

}

// acceptPatch lists the patch media types PATCH accepts.
const acceptPatch = "application/json-patch+json, application/merge-patch+json"

// Echo returns a new Echo instance with every route registered and the
// error handler installed.
func (h *Handler) Echo() *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = h.errorHandler
	e.Use(h.observe)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{
		DisableStackAll:   true,
		DisablePrintStack: true,
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			h.log.Error("panic", slog.String("path", c.Request().URL.Path), slog.Any("err", err), slog.String("stack", string(stack)))
			return err
		},
	}))
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			switch c.Request().Method {
			case http.MethodGet, http.MethodHead, http.MethodOptions:
				c.Response().Header().Set("Accept-Patch", acceptPatch)
			}
			return next(c)
		}
	})
	e.Use(h.cors, h.rateLimit, h.authenticate, h.idempotency)
	h.Register(e)
	return e
}

// Register adds the API's routes to e.
func (h *Handler) Register(e *echo.Echo) {
	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/docs/:c", h.list)
	e.HEAD("/docs/:c", h.list)
	e.POST("/docs/:c", h.post)
	e.OPTIONS("/docs/:c", h.options("GET, HEAD, POST, OPTIONS"))
	e.GET("/docs/:c/:id", h.get)
	e.HEAD("/docs/:c/:id", h.get)
	e.PUT("/docs/:c/:id", h.put)
	e.PATCH("/docs/:c/:id", h.patch)
	e.DELETE("/docs/:c/:id", h.delete)
	e.OPTIONS("/docs/:c/:id", h.options("GET, HEAD, PUT, PATCH, DELETE, OPTIONS"))
	e.GET("/docs/:c/:id/history", h.history)
	e.HEAD("/docs/:c/:id/history", h.history)
	e.OPTIONS("/docs/:c/:id/history", h.options("GET, HEAD, OPTIONS"))
	h.registerOps(e)
	e.GET("/docs/:c/:id/events", h.events)
	e.OPTIONS("/docs/:c/:id/events", h.options("GET, OPTIONS"))
	if h.cfg.UI {
		h.registerUI(e)
	}
}

func (h *Handler) options(allow string) echo.HandlerFunc {
	return func(c echo.Context) error {
		hdr := c.Response().Header()
		hdr.Set("Allow", allow)
		hdr.Set("Accept-Patch", acceptPatch)
		return c.NoContent(http.StatusNoContent)
	}
}
