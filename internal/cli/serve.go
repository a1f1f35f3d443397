package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/handlers"
	"github.com/patchd/patchd/internal/connlimit"
	"github.com/patchd/patchd/internal/gctune"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// serveConfig is everything the command line sets for serve.
type serveConfig struct {
	addr            string
	db              string
	requireIfMatch  bool
	maxBody         int64
	maxDoc          int64
	maxDepth        int
	maxOps          int
	historyVersions int
	maxRebaseOps    int
	maxRebaseWork   int
	historyAge      time.Duration
	shutdownTimeout time.Duration
	logFormat       string
	logLevel        string
	ui              bool

	tokens         string
	corsOrigins    string
	rate           float64
	idempotencyTTL time.Duration
	insecureNoAuth bool

	dbTimeout        time.Duration
	idempotencyLimit int

	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	maxHeaderBytes    int64

	maxBatch                  int
	maxPagesPerClient         int
	maxBatchesPerClient       int
	maxStreams                int
	maxStreamsPerClient       int
	maxConnsPerClient         int
	maxSubscriptions          int
	maxSubscriptionsPerClient int
	maxSubscriptionsTotal     int
	tlsCert                   string
	tlsKey                    string
	presenceTTL               time.Duration
}

// serveFlags declares serve's flags into cfg.
func (m *Main) serveFlags(cfg *serveConfig) *flagSet {
	f := m.newFlagSet("serve", func(w io.Writer) {
		fmt.Fprintln(w, "Usage:")
		for _, c := range commands() {
			fmt.Fprintf(w, "  %-24s %s\n", "patchd "+c.name+" "+c.args, c.summary)
		}
		fmt.Fprintln(w, "\nWithout a command, patchd serves: the flags below are serve's.")
	})
	f.add(stringValue{&cfg.addr}, "addr", "127.0.0.1:8080", "listen address")
	f.add(stringValue{&cfg.db}, "db", "./patchd.db", "bbolt database file, or a postgres:// URL for several replicas over one PostgreSQL")
	f.add(boolValue{&cfg.requireIfMatch}, "require-if-match", "true", "answer 428 to writes to existing documents without If-Match")
	f.add(byteSize{&cfg.maxBody}, "max-body", "1MiB", "largest request body, in bytes or with a KiB/MiB suffix")
	f.add(byteSize{&cfg.maxDoc}, "max-doc", "1MiB", "largest stored document")
	f.add(intValue{&cfg.maxDepth}, "max-depth", "64", "deepest nesting of a body or document")
	f.add(intValue{&cfg.maxOps}, "max-ops", "1000", "most operations in one JSON Patch")
	f.add(intValue{&cfg.historyVersions}, "history-versions", "1000", "versions kept per document")
	f.add(durationValue{&cfg.historyAge}, "history-age", "24h", "versions younger than this are kept regardless")
	f.add(intValue{&cfg.maxRebaseOps}, "max-rebase-ops", "10000", "most concurrent ops a stale edit is rebased over; more is 412 rebase-too-far")
	f.add(intValue{&cfg.maxRebaseWork}, "max-rebase-work", "1000000", "most (edit ops x concurrent ops) one rebase may compare")
	f.add(durationValue{&cfg.shutdownTimeout}, "shutdown-timeout", "10s", "how long a shutdown waits for requests in flight")
	f.add(stringValue{&cfg.logFormat}, "log-format", "auto", "log format: auto (text on a terminal, JSON otherwise), json or text")
	f.add(stringValue{&cfg.logLevel}, "log-level", "info", "least level logged: debug, info (one line per request), warn or error")
	f.add(boolValue{&cfg.ui}, "ui", "true", "serve the collaborative form demo at /")
	f.add(stringValue{&cfg.tokens}, "tokens", "", "bearer tokens file, one a line: TOKEN ROLE [COLLECTION...] [name=NAME] (ROLE read, write or admin); without it the server serves loopback only")
	f.add(stringValue{&cfg.corsOrigins}, "cors-origins", "", "comma-separated origins allowed to call from a browser (* for any)")
	f.add(floatValue{&cfg.rate}, "rate", "0", "requests per second per client before 429, 0 for no limit")
	f.add(durationValue{&cfg.idempotencyTTL}, "idempotency-ttl", "24h", "how long the answer to a POST or PATCH with an Idempotency-Key is kept for retries")
	f.add(boolValue{&cfg.insecureNoAuth}, "insecure-no-auth", "false", "allow serving a non-loopback address without --tokens: anyone who can reach it can read and change every document")
	f.add(durationValue{&cfg.readHeaderTimeout}, "read-header-timeout", "5s", "how long a client may take to send request headers")
	f.add(durationValue{&cfg.readTimeout}, "read-timeout", "30s", "how long a client may take to send a whole request")
	f.add(durationValue{&cfg.writeTimeout}, "write-timeout", "30s", "how long a request may take from the end of its headers to the end of the answer")
	f.add(durationValue{&cfg.idleTimeout}, "idle-timeout", "2m", "how long an idle keep-alive connection is kept")
	f.add(byteSize{&cfg.maxHeaderBytes}, "max-header-bytes", "64KiB", "largest request line and headers; more is 431")
	f.add(intValue{&cfg.maxBatch}, "max-batch", "100", "most writes in one POST /batch")
	f.add(intValue{&cfg.maxPagesPerClient}, "max-pages-per-client", "8", "most listings, history pages and violation lists of one client (its token, or its IP address without --tokens) in progress at once, answers being written included; more is 429")
	f.add(intValue{&cfg.maxBatchesPerClient}, "max-batches-per-client", "2", "most POST /batch of one client in progress at once, answers being written included; more is 429")
	f.add(durationValue{&cfg.dbTimeout}, "db-timeout", "5s", "longest a request waits on the database (pooled connection, locks, retries), after which it is 503 with Retry-After; also PostgreSQL's statement and lock timeouts")
	f.add(intValue{&cfg.idempotencyLimit}, "idempotency-max-per-client", "100000", "idempotency records kept per client (token); more deletes the client's oldest")
	f.add(intValue{&cfg.maxStreams}, "max-streams", "10000", "most change feed streams open at once; more is 429")
	f.add(intValue{&cfg.maxStreamsPerClient}, "max-streams-per-client", "64", "most change feed streams of one client (its token, or its IP address without --tokens); more is 429")
	f.add(intValue{&cfg.maxConnsPerClient}, "max-conns-per-client", "256", "most connections of one IP address (IPv6: its /64): past it its oldest idle one is closed, or one whose request head is 2s late, or else the new one is answered 503")
	f.add(intValue{&cfg.maxSubscriptions}, "max-subscriptions", "1000", "most documents and collections one POST /events stream follows; more is 400")
	f.add(intValue{&cfg.maxSubscriptionsPerClient}, "max-subscriptions-per-client", "0", "most documents and collections one client (its token, or its IP address without --tokens) follows over all its streams at once (a GET .../events follows one); a stream past it is 429; 0 is 8 times --max-subscriptions, at most --max-subscriptions-total")
	f.add(intValue{&cfg.maxSubscriptionsTotal}, "max-subscriptions-total", "0", "most documents and collections the server's streams follow at once (each keeps about a kilobyte while it is open); a stream past it is 429; 0 is 200000, or --max-subscriptions when that is more")
	f.add(durationValue{&cfg.presenceTTL}, "presence-ttl", "30s", "how long a presence session lives unless its client renews it")
	f.add(stringValue{&cfg.tlsCert}, "tls-cert", "", "certificate (PEM, with its chain) to serve HTTPS and HTTP/2; needs --tls-key")
	f.add(stringValue{&cfg.tlsKey}, "tls-key", "", "private key (PEM) of --tls-cert")
	return f
}

// maxDepthFlag is the largest --max-depth: the JSON reader refuses bodies
// past 10000 levels whatever the limit, and a batch (three levels) or a
// filter nests a body deeper than the document itself.
const maxDepthFlag = 1000

// parseServe reads serve's command line, with defaults from the PATCHD_*
// environment.
func (m *Main) parseServe(args []string) (serveConfig, error) {
	var cfg serveConfig
	if err := m.serveFlags(&cfg).parse(args); err != nil {
		return cfg, err
	}
	bad := func(msg string) (serveConfig, error) { return cfg, usageError{errors.New(msg)} }
	switch {
	case cfg.maxBody < 1, cfg.maxDoc < 1:
		return bad("--max-body and --max-doc must be positive")
	case cfg.maxDepth < 1, cfg.maxOps < 1:
		return bad("--max-depth and --max-ops must be positive")
	case cfg.maxDepth > maxDepthFlag:
		return bad(fmt.Sprintf("--max-depth is at most %d (the JSON reader stops at 10000 levels, and a batch or a filter nests a body deeper)", maxDepthFlag))
	case cfg.maxRebaseOps < 1, cfg.maxRebaseWork < 1:
		return bad("--max-rebase-ops and --max-rebase-work must be positive")
	case cfg.historyVersions < 1:
		return bad("--history-versions must be at least 1")
	case cfg.historyAge < 0:
		return bad("--history-age must not be negative")
	case cfg.shutdownTimeout < 0:
		return bad("--shutdown-timeout must not be negative")
	case cfg.logFormat != "auto" && cfg.logFormat != "json" && cfg.logFormat != "text":
		return bad("--log-format must be auto, json or text")
	case cfg.logLevel != "debug" && cfg.logLevel != "info" && cfg.logLevel != "warn" && cfg.logLevel != "error":
		return bad("--log-level must be debug, info, warn or error")
	case cfg.rate < 0:
		return bad("--rate must not be negative")
	case cfg.idempotencyTTL <= 0:
		return bad("--idempotency-ttl must be positive")
	case cfg.presenceTTL < time.Second || cfg.presenceTTL > 24*time.Hour:
		return bad("--presence-ttl must be from 1s to 24h")
	case cfg.readHeaderTimeout <= 0, cfg.readTimeout <= 0, cfg.writeTimeout <= 0, cfg.idleTimeout <= 0:
		return bad("--read-header-timeout, --read-timeout, --write-timeout and --idle-timeout must be positive")
	case cfg.maxHeaderBytes < 1 || cfg.maxHeaderBytes > 1<<30:
		return bad("--max-header-bytes must be from 1 to 1GiB")
	case cfg.maxBatch < 1 || cfg.maxBatch > store.MaxManyKeys:
		return bad(fmt.Sprintf("--max-batch must be from 1 to %d", store.MaxManyKeys))
	case cfg.dbTimeout < 100*time.Millisecond:
		return bad("--db-timeout must be at least 100ms")
	case cfg.idempotencyLimit < 1:
		return bad("--idempotency-max-per-client must be at least 1")
	case cfg.maxStreams < 1, cfg.maxStreamsPerClient < 1, cfg.maxSubscriptions < 1, cfg.maxConnsPerClient < 1:
		return bad("--max-streams, --max-streams-per-client, --max-subscriptions and --max-conns-per-client must be positive")
	case cfg.maxSubscriptionsPerClient != 0 && cfg.maxSubscriptionsPerClient < cfg.maxSubscriptions,
		cfg.maxSubscriptionsTotal != 0 && cfg.maxSubscriptionsTotal < max(cfg.maxSubscriptionsPerClient, cfg.maxSubscriptions):
		return bad("--max-subscriptions-per-client must be 0 or at least --max-subscriptions, and --max-subscriptions-total 0 or at least both")
	case cfg.maxPagesPerClient < 1, cfg.maxBatchesPerClient < 1:
		return bad("--max-pages-per-client and --max-batches-per-client must be positive")
	case (cfg.tlsCert == "") != (cfg.tlsKey == ""):
		return cfg, usageError{errTLSPair}
	}
	return cfg, nil
}

// Waits between attempts to open a store whose database is unreachable.
const (
	openRetryMin = 250 * time.Millisecond
	openRetryMax = 5 * time.Second
)

// openStore opens the store at location. While its database cannot be
// reached (it is starting, restarting, or not there yet, as when services
// start together), it tries again with backoff, saying so in the log,
// until ctx ends; any other failure ends it at once.
func openStore(ctx context.Context, location string, opts store.Options, log *slog.Logger) (store.Store, error) {
	wait := openRetryMin
	for attempt := 1; ; attempt++ {
		st, err := store.Open(ctx, location, opts)
		if err == nil || !errors.Is(err, store.ErrUnavailable) || ctx.Err() != nil {
			return st, err
		}
		log.Warn("database unavailable; trying again", slog.String("db", store.Redact(location)),
			slog.Int("attempt", attempt), slog.Duration("in", wait), slog.Any("err", err))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (gave up waiting: %w)", err, ctx.Err())
		}
		wait = min(2*wait, openRetryMax)
	}
}

// serve runs the server until ctx ends: it binds the address first, so
// that a port in use costs nothing, then opens the store, and on shutdown
// waits for the requests in flight before it closes the store.
func (m *Main) serve(ctx context.Context, args []string) error {
	cfg, err := m.parseServe(args)
	if err != nil {
		return err
	}
	log := newLogger(cfg.logFormat, cfg.logLevel, m.Stderr)
	if m.Getenv("GOGC") == "" { // an operator's GOGC is kept as it is
		gcCtx, stopGC := context.WithCancel(ctx)
		defer stopGC()
		go gctune.Run(gcCtx, gctune.DefaultHeadroom, time.Second/4)
	}
	tokens, err := loadTokens(cfg.tokens)
	if err != nil {
		return err
	}
	tlsCfg, err := tlsConfig(cfg)
	if err != nil {
		return err
	}
	ln, err := listen(cfg, log)
	if err != nil {
		return err
	}
	defer ln.Close()

	// Requests are answered from the start: while the store opens (a
	// database not reachable yet, a log to replay), by handlers.Starting;
	// then by the API.
	var serving atomic.Pointer[http.Handler]
	starting := handlers.Starting(handlers.ParseOrigins(cfg.corsOrigins))
	serving.Store(&starting)
	cl := connlimit.New(ln, connLimits(cfg, tlsCfg == nil, log))
	srv := &http.Server{
		ConnState:         cl.ConnState,
		ConnContext:       cl.ConnContext,
		Handler:           cl.Handler(handlers.HTTP1Only(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*serving.Load()).ServeHTTP(w, r) }))),
		ReadHeaderTimeout: cfg.readHeaderTimeout,
		ReadTimeout:       cfg.readTimeout,
		WriteTimeout:      cfg.writeTimeout,
		IdleTimeout:       cfg.idleTimeout,
		MaxHeaderBytes:    int(cfg.maxHeaderBytes),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig:         tlsCfg,
	}
	errc := make(chan error, 1)
	scheme := "http"
	if tlsCfg != nil {
		// The certificate is in TLSConfig; net/http adds HTTP/2 (h2).
		scheme = "https"
		go func() { errc <- srv.ServeTLS(cl, "", "") }()
	} else {
		go func() { errc <- srv.Serve(cl) }()
	}
	defer srv.Close() // a start that fails, and what a shutdown leaves
	log.Info("listening; answering 503 until the store is open", slog.String("addr", ln.Addr().String()), slog.String("scheme", scheme))

	age := cfg.historyAge
	if age == 0 {
		age = -1 // 0 means no age guarantee; the store reads 0 as its default
	}
	st, err := openStore(ctx, cfg.db, store.Options{
		Retention:           store.Retention{Versions: cfg.historyVersions, Age: age},
		Logger:              log,
		Timeout:             cfg.dbTimeout,
		IdempotencyPerScope: cfg.idempotencyLimit,
		// A stale edit whose base is further behind than this many bytes
		// of changes is 412 rebase-too-far rather than read and decoded.
		MaxHistoryRead: int(min(8*cfg.maxDoc, 1<<30)),
	}, log)
	if errors.Is(err, bolt.ErrWALRefused) {
		return fmt.Errorf("--db %s: %w\n(restore a backup, or move the log away to open the file as it is, without the writes the log holds)",
			store.Redact(cfg.db), err)
	}
	if errors.Is(err, store.ErrCorrupt) {
		return fmt.Errorf("--db %s: %w\n(patchd check --db %s lists the damage; restore a backup, or move the file away to start a new database)",
			store.Redact(cfg.db), err, store.Redact(cfg.db))
	}
	if err != nil {
		return fmt.Errorf("--db %s: %w", store.Redact(cfg.db), err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("close store", slog.Any("err", err))
		}
	}()

	dcfg := document.DefaultConfig()
	dcfg.RequireIfMatch = cfg.requireIfMatch
	dcfg.Limits = patch.Limits{MaxDepth: cfg.maxDepth, MaxDoc: int(cfg.maxDoc), MaxOps: cfg.maxOps, MaxNumber: patch.DefaultMaxNumber}
	dcfg.Rebase = patch.RebaseLimits{MaxOps: cfg.maxRebaseOps, MaxWork: cfg.maxRebaseWork}
	dcfg.IdempotencyTTL = cfg.idempotencyTTL
	dcfg.ReplayBytes = int(min(8*cfg.maxDoc, 1<<30)) // as the store's MaxHistoryRead
	dcfg.Logger = log.With("component", "document")
	svc := document.New(st, dcfg)

	hcfg := handlers.DefaultConfig()
	hcfg.MaxBody = cfg.maxBody
	hcfg.Logger = log.With("component", "http")
	hcfg.Version = version()
	hcfg.UI = cfg.ui
	hcfg.Tokens = tokens
	hcfg.CORSOrigins = handlers.ParseOrigins(cfg.corsOrigins)
	hcfg.Rate = cfg.rate
	hcfg.MaxBatch = cfg.maxBatch
	hcfg.PagesPerClient = cfg.maxPagesPerClient
	hcfg.BatchesPerClient = cfg.maxBatchesPerClient
	if b, ok := st.(store.Backuper); ok {
		hcfg.Backup = b
	}
	hcfg.Streams = streamLimits(cfg, log)
	hcfg.PresenceTTL = cfg.presenceTTL
	if ps, ok := st.(store.PresenceStore); ok {
		hcfg.Presence = ps.Presence(handlers.DefaultPresenceLimits)
	}
	h := handlers.New(svc, hcfg)

	// Change feed streams never go idle: end them when shutdown starts.
	srv.RegisterOnShutdown(h.CloseStreams)
	api := http.Handler(h.Echo())
	serving.Store(&api)
	log.Info("serving", slog.String("addr", ln.Addr().String()), slog.String("scheme", scheme), slog.String("db", store.Redact(cfg.db)), slog.String("version", version()))
	if m.Ready != nil {
		m.Ready <- ln.Addr().String()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	// Shutdown stops accepting, then waits for requests in flight, writes
	// included; the store closes after it (deferred above).
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close() // ends what is left, a long backup stream included, so the store can close
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
