// Package handlers serves patchd's HTTP API (API.md) with Echo v4: documents
// under collections, conditional requests with strong content-hash ETags,
// JSON Patch and Merge Patch, history, the change feed, and the operator's
// routes.
//
// Handlers translate HTTP into calls of the document service (package
// document), which decides every write, and its results and errors into
// answers. They only return errors; one error handler maps them to API.md's
// status codes and problem types (errors.go).
package handlers

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/internal/budget"
	"github.com/patchd/patchd/internal/ids"
	"github.com/patchd/patchd/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Config holds the HTTP layer's settings. The zero value is not useful; start
// from DefaultConfig.
type Config struct {
	// MaxBody is the largest request body in bytes; more is 413.
	MaxBody int64
	// Logger receives internal errors and one line per request; nil
	// discards.
	Logger *slog.Logger
	// Registry receives the Handler's Prometheus metrics, the store's
	// included; nil makes a new registry for each Handler (no global one).
	Registry *prometheus.Registry
	// Version names the build in patchd_build_info.
	Version string
	// Events tunes the change feed; the zero value takes its defaults.
	Events EventsConfig
	// UI serves the collaborative form demo at / (ui.go).
	UI bool
	// Tokens, when not nil, requires a bearer token on every request but
	// /healthz, /readyz, CORS preflights and the static files (auth.go).
	Tokens *Tokens
	// CORSOrigins lists the origins browsers may call from ("*": any);
	// empty turns CORS off (cors.go).
	CORSOrigins []string
	// Rate is the requests a second allowed per client, 0 for no limit;
	// RateBurst is how many may come at once (0: one second's worth)
	// (ratelimit.go).
	Rate      float64
	RateBurst int
	// DecodeBudget bounds the bytes of request bodies held decoded as
	// trees at once: past it, large requests wait for one another, each at
	// most OverloadWait. One client (its token, else its address) holds at
	// most a quarter of it, or one body of MaxBody if that is more: past
	// that its request is refused with 429. Zero means 8 MiB.
	DecodeBudget int64
	// HalfCloseGrace is how long a request goes on after its client closed
	// its side of the connection. net/http cancels a request's context as
	// soon as it reads the end of the client's stream, which is also what a
	// client sends that shuts down its writing side after a complete
	// request and then reads the answer: such a request is still decided
	// and answered, unless it takes longer than this. Zero means 5s.
	HalfCloseGrace time.Duration
	// OverloadWait is how long a request waits for its share of a bounded
	// resource (the decode budget) before it is answered 503 overloaded
	// with Retry-After. Zero means 1s.
	OverloadWait time.Duration
	// Backup, when not nil, serves GET /admin/backup: a consistent copy of
	// the store while it serves (a bbolt file has one; a database server
	// has its own tools).
	Backup store.Backuper
	// MaxBatch is the most writes one POST /batch may hold; zero means
	// 100.
	MaxBatch int
	// MaxBatches is the most POST /batch requests decided at once (each
	// may hold up to document.MaxBatchBytes of results; its body is read first); another waits up
	// to OverloadWait for its turn, then is answered 503 overloaded with
	// Retry-After. Zero means 4.
	MaxBatches int
	// PagesPerClient is the most listings, history pages and lists of
	// violations one client (its token, else its address) has in progress
	// at once, answers being written included; more is 429. Zero means 8.
	PagesPerClient int
	// BatchesPerClient is the same for POST /batch. Zero means 2.
	BatchesPerClient int
	// AnswerBudget bounds the bytes of answers being written of documents
	// (GET), pages (listings, history, violations) and batches that no
	// longer hold a batch turn (see MaxBatches); one client holds at most
	// a quarter of it. Zero means 64 MiB.
	AnswerBudget int64
	// ReadyCache is how long GET /readyz reuses one check of the store, so
	// that frequent probes cost one query; zero means 1s (ready.go).
	ReadyCache time.Duration
	// Streams bounds the change feed streams; the zero value takes its
	// defaults (streams.go).
	Streams StreamLimits
	// Presence keeps the presence sessions (presence.go); nil means a
	// registry in this process's memory, with DefaultPresenceLimits, which
	// CloseStreams closes. A store shared by several processes gives one
	// that they share (store.PresenceStore).
	Presence store.Presence
	// PresenceTTL is how long a session lives unless renewed; zero means
	// DefaultPresenceTTL.
	PresenceTTL time.Duration
}

// DefaultConfig returns the defaults API.md documents.
func DefaultConfig() Config {
	return Config{MaxBody: 1 << 20, UI: true, MaxBatch: 100}
}

// Handler serves the API over a document service.
type Handler struct {
	svc     *document.Service
	cfg     Config
	log     *slog.Logger
	reqIDs  *ids.Generator // request ids, when the client sends none
	metrics *metrics
	hub     *hub
	// stopFollow stops following the store's commit notifications.
	stopFollow context.CancelFunc

	diskFull     diskFullLog     // 507s, logged once a minute
	limiter      *rateLimiter    // nil: no rate limit
	uiPaths      map[string]bool // the UI's static files (registerUI); GET and HEAD of them are not rate limited
	bodies       *budget.Budget  // decode budget of request bodies
	shares       *budget.Shares  // each client's share of bodies
	overloadWait time.Duration
	grace        time.Duration  // HalfCloseGrace
	ready        *readiness     // GET /readyz
	streams      *streamLimiter // open change feed streams
	batches      chan struct{}  // a token per POST /batch being decided (Config.MaxBatches)
	pages        *clientTurns   // per client: listings, history pages, violations in progress
	batchesOf    *clientTurns   // per client: batches in progress, answers included
	answers      *budget.Budget // documents, pages, and batch answers without their turn, being written
	answerShares *budget.Shares // per client: its documents and pages being written
	// following is true while the hub hears of the store's commits.
	following bool

	presence    store.Presence        // presence sessions
	presenceTTL time.Duration         // PresenceTTL
	ownPresence *store.MemoryPresence // the registry New made, if it did
}

// New returns a Handler serving svc.
func New(svc *document.Service, cfg Config) *Handler {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	hub := newHub()
	ctx, stop := context.WithCancel(context.Background())
	h := &Handler{svc: svc, cfg: cfg, log: log, reqIDs: ids.New(),
		metrics: newMetrics(reg, svc, cfg, log, hub.count), hub: hub, stopFollow: stop}
	// Every backend reports its commits, other replicas' included: they
	// wake the change feed streams of the documents written. Subscribing
	// here, before any request, misses none.
	if events, err := svc.Subscribe(ctx); err != nil {
		log.Warn("change feed: cannot follow the store's commits; streams catch up at each heartbeat", slog.Any("err", err))
	} else {
		h.following = true
		go hub.follow(events)
	}
	h.presence, h.presenceTTL = cfg.Presence, cfg.PresenceTTL
	if h.presence == nil {
		h.ownPresence = store.NewMemoryPresence(DefaultPresenceLimits, nil)
		h.presence = h.ownPresence
	}
	if h.presenceTTL <= 0 {
		h.presenceTTL = DefaultPresenceTTL
	}
	if events, err := h.presence.WatchPresence(ctx); err != nil {
		log.Warn("presence: cannot follow sessions; streams send presence events only when they look again", slog.Any("err", err))
	} else {
		go hub.followPresence(events)
	}
	h.streams = newStreamLimiter(cfg.Streams, h.metrics.reg)
	decode := cfg.DecodeBudget
	if decode <= 0 {
		decode = 8 << 20
	}
	h.bodies = budget.New(decode)
	h.shares = budget.NewShares(max(decode/4, min(cfg.MaxBody, decode)))
	h.grace = cfg.HalfCloseGrace
	if h.grace <= 0 {
		h.grace = 5 * time.Second
	}
	h.batches = make(chan struct{}, cmp.Or(max(cfg.MaxBatches, 0), 4))
	h.answers = budget.New(cmp.Or(max(cfg.AnswerBudget, 0), 64<<20))
	h.answerShares = budget.NewShares(h.answers.Capacity() / 4)
	h.pages = newClientTurns("pages (listings, history, violations)", "--max-pages-per-client", cmp.Or(max(cfg.PagesPerClient, 0), pageTurns))
	h.batchesOf = newClientTurns("batches", "--max-batches-per-client", cmp.Or(max(cfg.BatchesPerClient, 0), batchTurns))
	h.overloadWait = cfg.OverloadWait
	if h.overloadWait <= 0 {
		h.overloadWait = time.Second
	}
	h.ready = newReadiness(svc.Ping, cfg.ReadyCache)
	if cfg.Rate > 0 {
		h.limiter = newRateLimiter(cfg.Rate, cfg.RateBurst, nil)
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
	e.Pre(unreservedPath)
	e.Use(h.observe)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{
		DisableStackAll:   true,
		DisablePrintStack: true,
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			h.log.Error("panic", slog.String("request_id", info(c).id), slog.String("path", c.Request().URL.Path), slog.Any("err", err), slog.String("stack", string(stack)))
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
	e.Use(h.cors, checkQuery, h.rateLimit, h.authenticate)
	h.Register(e)
	return e
}

// valuedParams are the query parameters of the API that name something (a
// filter, an order, a page size, a mode), which an empty value does not.
// An empty after is the first page, as a client that pages with
// after=<next> starts.
var valuedParams = map[string]bool{"where": true, "order": true, "include": true, "limit": true, "dryRun": true}

// checkQuery answers 400 to a query string that does not parse (a bad
// percent-escape, a raw ";"), that gives a parameter twice, or that gives
// a parameter of the API an empty value (where= is not "no filter"). Echo's
// QueryParam drops what it cannot parse, so that ?dryRun=true; would be a
// real write and ?where=%ZZ an unfiltered listing.
func checkQuery(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		raw := c.Request().URL.RawQuery
		if raw == "" {
			return next(c)
		}
		q, err := url.ParseQuery(raw)
		if err != nil {
			return fail(ErrInvalidRequest, fmt.Sprintf("the query string does not parse: %v", err))
		}
		for name, vs := range q {
			if len(vs) > 1 {
				return fail(ErrInvalidRequest, fmt.Sprintf("query parameter %q is given %d times; give it once", name, len(vs)))
			}
			if vs[0] == "" && valuedParams[name] {
				return fail(ErrInvalidRequest, fmt.Sprintf("query parameter %q is empty; give it a value or leave it out", name))
			}
		}
		return next(c)
	}
}

// getHead routes GET and HEAD of path to fn, as RFC 9110 (section 9.1)
// asks of every resource with a GET: net/http sends a HEAD answer's
// headers and drops its body.
func getHead(e *echo.Echo, path string, fn echo.HandlerFunc) {
	e.GET(path, fn)
	e.HEAD(path, fn)
}

// Register adds the API's routes to e.
func (h *Handler) Register(e *echo.Echo) {
	getHead(e, "/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	getHead(e, "/readyz", h.readyz)
	e.GET("/docs/:c", h.inTurn(h.pages, h.list))
	e.HEAD("/docs/:c", h.inTurn(h.pages, h.list))
	e.POST("/docs/:c", h.post)
	e.OPTIONS("/docs/:c", h.options("GET, HEAD, POST, OPTIONS"))
	e.GET("/docs/:c/:id", h.get)
	e.HEAD("/docs/:c/:id", h.get)
	e.PUT("/docs/:c/:id", h.put)
	e.PATCH("/docs/:c/:id", h.patch)
	e.DELETE("/docs/:c/:id", h.delete)
	e.OPTIONS("/docs/:c/:id", h.options("GET, HEAD, PUT, PATCH, DELETE, OPTIONS"))
	e.GET("/docs/:c/:id/history", h.inTurn(h.pages, h.history))
	e.HEAD("/docs/:c/:id/history", h.inTurn(h.pages, h.history))
	e.OPTIONS("/docs/:c/:id/history", h.options("GET, HEAD, OPTIONS"))
	h.registerOps(e)
	e.GET("/docs/:c/:id/events", h.events)
	e.OPTIONS("/docs/:c/:id/events", h.options("GET, OPTIONS"))
	e.POST("/docs/:c/:id/revert", h.revert)
	e.OPTIONS("/docs/:c/:id/revert", h.options("POST, OPTIONS"))
	e.POST("/batch", h.inTurn(h.batchesOf, h.batch))
	e.OPTIONS("/batch", h.options("POST, OPTIONS"))
	e.GET("/schemas/:c", h.getSchema)
	e.HEAD("/schemas/:c", h.getSchema)
	e.PUT("/schemas/:c", h.putSchema)
	e.DELETE("/schemas/:c", h.deleteSchema)
	e.OPTIONS("/schemas/:c", h.options("GET, HEAD, PUT, DELETE, OPTIONS"))
	e.GET("/schemas/:c/violations", h.inTurn(h.pages, h.violations))
	e.HEAD("/schemas/:c/violations", h.inTurn(h.pages, h.violations))
	e.OPTIONS("/schemas/:c/violations", h.options("GET, HEAD, OPTIONS"))
	e.GET("/docs/:c/:id/presence", h.getPresence)
	e.HEAD("/docs/:c/:id/presence", h.getPresence)
	e.OPTIONS("/docs/:c/:id/presence", h.options("GET, HEAD, OPTIONS"))
	e.PUT("/docs/:c/:id/presence/:session", h.putPresence)
	e.DELETE("/docs/:c/:id/presence/:session", h.deletePresence)
	e.OPTIONS("/docs/:c/:id/presence/:session", h.options("PUT, DELETE, OPTIONS"))
	e.POST("/events", h.eventsMany)
	e.OPTIONS("/events", h.options("POST, OPTIONS"))
	if h.cfg.UI {
		h.registerUI(e)
	}
}

func (h *Handler) options(allow string) echo.HandlerFunc {
	return func(c echo.Context) error {
		// The names of the path are checked as for every other method.
		var err error
		switch names := c.ParamNames(); {
		case slices.Contains(names, "session"):
			_, _, _, err = presenceTarget(c)
		case slices.Contains(names, "c"):
			_, _, err = target(c, slices.Contains(names, "id"))
		}
		if err != nil {
			return err
		}
		hdr := c.Response().Header()
		hdr.Set("Allow", allow)
		hdr.Set("Accept-Patch", acceptPatch)
		return c.NoContent(http.StatusNoContent)
	}
}
