// Command patchd serves JSON documents over HTTP with strong content-hash
// ETags, JSON Patch and Merge Patch, and the rebase of stale edits. It stores
// them in an embedded bbolt file, or in PostgreSQL for several replicas.
//
//	patchd [serve] [flags]
//	patchd backup|export|import [flags]
//	patchd version
//	patchd migrate --from FILE --to postgres://...
//
// Every flag has a PATCHD_<NAME> environment variable; see --help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/patchd/patchd/handlers"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := dispatch(ctx, os.Args[1:], os.Getenv, stdio{os.Stdin, os.Stdout, os.Stderr}); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "patchd:", err)
			var ue usageError
			if errors.As(err, &ue) {
				os.Exit(2)
			}
			os.Exit(1)
		}
	}
}

// config is everything the command line sets.
type config struct {
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
	server         serverLimits
}

// serverLimits are the http.Server's defences against slow and greedy
// clients.
type serverLimits struct {
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	maxHeaderBytes    int64
}

// parseFlags reads args, with defaults from the PATCHD_* environment.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:]
	}
	fs := flag.NewFlagSet("patchd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	var errs []error
	env := func(name, def string) string {
		if v := getenv("PATCHD_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))); v != "" {
			return v
		}
		return def
	}
	str := func(p *string, name, def, usage string) {
		fs.StringVar(p, name, env(name, def), usage+" (env "+envName(name)+")")
	}
	str(&cfg.addr, "addr", "127.0.0.1:8080", "listen address")
	str(&cfg.db, "db", "./patchd.db", "bbolt database file, or a postgres:// URL for several replicas over one PostgreSQL")
	fs.Var(boolValue{&cfg.requireIfMatch}, "require-if-match", "answer 428 to writes to existing documents without If-Match (env PATCHD_REQUIRE_IF_MATCH, default true)")
	fs.Var(byteSize{&cfg.maxBody}, "max-body", "largest request body, in bytes or with a KiB/MiB suffix (env PATCHD_MAX_BODY, default 1MiB)")
	fs.Var(byteSize{&cfg.maxDoc}, "max-doc", "largest stored document (env PATCHD_MAX_DOC, default 1MiB)")
	fs.Var(intValue{&cfg.maxDepth}, "max-depth", "deepest nesting of a body or document (env PATCHD_MAX_DEPTH, default 64)")
	fs.Var(intValue{&cfg.maxOps}, "max-ops", "most operations in one JSON Patch (env PATCHD_MAX_OPS, default 1000)")
	fs.Var(intValue{&cfg.historyVersions}, "history-versions", "versions kept per document (env PATCHD_HISTORY_VERSIONS, default 1000)")
	fs.Var(durationValue{&cfg.historyAge}, "history-age", "versions younger than this are kept regardless (env PATCHD_HISTORY_AGE, default 24h)")
	fs.Var(intValue{&cfg.maxRebaseOps}, "max-rebase-ops", "most concurrent ops a stale edit is rebased over; more is 412 rebase-too-far (env PATCHD_MAX_REBASE_OPS, default 10000)")
	fs.Var(intValue{&cfg.maxRebaseWork}, "max-rebase-work", "most (edit ops x concurrent ops) one rebase may compare (env PATCHD_MAX_REBASE_WORK, default 1000000)")
	fs.Var(durationValue{&cfg.shutdownTimeout}, "shutdown-timeout", "how long a shutdown waits for requests in flight (env PATCHD_SHUTDOWN_TIMEOUT, default 10s)")
	fs.Var(stringValue{&cfg.logFormat}, "log-format", "log format: auto (text on a terminal, JSON otherwise), json or text")
	fs.Var(stringValue{&cfg.logLevel}, "log-level", "least level logged: debug, info (one line per request), warn or error")
	fs.Var(boolValue{&cfg.ui}, "ui", "serve the collaborative form demo at /")
	str(&cfg.tokens, "tokens", "", "bearer tokens file, one a line: TOKEN ROLE [COLLECTION...] (read, write or admin); without it the server serves loopback only")
	str(&cfg.corsOrigins, "cors-origins", "", "comma-separated origins allowed to call from a browser (* for any)")
	fs.Var(floatValue{&cfg.rate}, "rate", "requests per second per client before 429, 0 for no limit (env PATCHD_RATE, default 0)")
	fs.Var(durationValue{&cfg.idempotencyTTL}, "idempotency-ttl", "how long the answer to a POST or PATCH with an Idempotency-Key is kept for retries (env PATCHD_IDEMPOTENCY_TTL, default 24h)")
	fs.Var(boolValue{&cfg.insecureNoAuth}, "insecure-no-auth", "allow serving a non-loopback address without --tokens: anyone who can reach it can read and change every document (env PATCHD_INSECURE_NO_AUTH, default false)")
	fs.Var(durationValue{&cfg.server.readHeaderTimeout}, "read-header-timeout", "how long a client may take to send request headers (env PATCHD_READ_HEADER_TIMEOUT, default 5s)")
	fs.Var(durationValue{&cfg.server.readTimeout}, "read-timeout", "how long a client may take to send a whole request (env PATCHD_READ_TIMEOUT, default 30s)")
	fs.Var(durationValue{&cfg.server.writeTimeout}, "write-timeout", "how long a request may take from the end of its headers to the end of the answer (env PATCHD_WRITE_TIMEOUT, default 30s)")
	fs.Var(durationValue{&cfg.server.idleTimeout}, "idle-timeout", "how long an idle keep-alive connection is kept (env PATCHD_IDLE_TIMEOUT, default 2m)")
	fs.Var(byteSize{&cfg.server.maxHeaderBytes}, "max-header-bytes", "largest request line and headers; more is 431 (env PATCHD_MAX_HEADER_BYTES, default 64KiB)")
	defaults := map[string]string{
		"require-if-match": "true", "max-body": "1MiB", "max-doc": "1MiB", "max-depth": "64",
		"max-ops": "1000", "history-versions": "1000", "history-age": "24h", "shutdown-timeout": "10s",
		"max-rebase-ops": "10000", "max-rebase-work": "1000000",
		"log-format": "auto", "log-level": "info", "ui": "true",
		"rate": "0", "idempotency-ttl": "24h", "insecure-no-auth": "false",
		"read-header-timeout": "5s", "read-timeout": "30s", "write-timeout": "30s", "idle-timeout": "2m",
		"max-header-bytes": "64KiB",
	}
	shown := map[string]string{"addr": "127.0.0.1:8080", "db": "./patchd.db"}
	for k, v := range defaults {
		shown[k] = v
	}
	fs.Usage = serveUsage(stderr, fs, shown)
	for name, def := range defaults {
		if err := fs.Set(name, env(name, def)); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", envName(name), env(name, def), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, err
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case cfg.maxBody < 1, cfg.maxDoc < 1:
		return cfg, errors.New("--max-body and --max-doc must be positive")
	case cfg.maxDepth < 1, cfg.maxOps < 1:
		return cfg, errors.New("--max-depth and --max-ops must be positive")
	case cfg.maxRebaseOps < 1, cfg.maxRebaseWork < 1:
		return cfg, errors.New("--max-rebase-ops and --max-rebase-work must be positive")
	case cfg.historyVersions < 1:
		return cfg, errors.New("--history-versions must be at least 1")
	case cfg.historyAge < 0:
		return cfg, errors.New("--history-age must not be negative")
	case cfg.logFormat != "auto" && cfg.logFormat != "json" && cfg.logFormat != "text":
		return cfg, errors.New("--log-format must be auto, json or text")
	case cfg.logLevel != "debug" && cfg.logLevel != "info" && cfg.logLevel != "warn" && cfg.logLevel != "error":
		return cfg, errors.New("--log-level must be debug, info, warn or error")
	case cfg.rate < 0:
		return cfg, errors.New("--rate must not be negative")
	case cfg.idempotencyTTL <= 0:
		return cfg, errors.New("--idempotency-ttl must be positive")
	case cfg.server.readHeaderTimeout <= 0, cfg.server.readTimeout <= 0, cfg.server.writeTimeout <= 0, cfg.server.idleTimeout <= 0:
		return cfg, errors.New("--read-header-timeout, --read-timeout, --write-timeout and --idle-timeout must be positive")
	case cfg.server.maxHeaderBytes < 1 || cfg.server.maxHeaderBytes > 1<<30:
		return cfg, errors.New("--max-header-bytes must be from 1 to 1GiB")
	}
	return cfg, nil
}

func envName(flag string) string {
	return "PATCHD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// run serves until ctx ends. If ready is not nil, it receives the listening
// address once the server accepts connections.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, ready chan<- string) error {
	cfg, err := parseFlags(args, getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	log := newLogger(cfg.logFormat, cfg.logLevel, stderr)
	age := cfg.historyAge
	if age == 0 {
		age = time.Nanosecond // the store reads 0 as its default; 0 here means no age guarantee
	}
	st, err := openStore(ctx, cfg.db, store.Retention{Versions: cfg.historyVersions, Age: age}, log.With("component", "store"))
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("close store", slog.Any("err", err))
		}
	}()

	hcfg := handlers.DefaultConfig()
	hcfg.RequireIfMatch = cfg.requireIfMatch
	hcfg.MaxBody = cfg.maxBody
	hcfg.Limits = patch.Limits{MaxDepth: cfg.maxDepth, MaxDoc: int(cfg.maxDoc), MaxOps: cfg.maxOps}
	hcfg.Rebase = patch.RebaseLimits{MaxOps: cfg.maxRebaseOps, MaxWork: cfg.maxRebaseWork}
	hcfg.Logger = log.With("component", "http")
	hcfg.Version = version()
	hcfg.UI = cfg.ui
	if err := securityConfig(&hcfg, cfg); err != nil {
		return err
	}
	h := handlers.New(st, hcfg)
	e := h.Echo()

	ln, err := listen(cfg, log)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           e,
		ReadHeaderTimeout: cfg.server.readHeaderTimeout,
		ReadTimeout:       cfg.server.readTimeout,
		WriteTimeout:      cfg.server.writeTimeout,
		IdleTimeout:       cfg.server.idleTimeout,
		MaxHeaderBytes:    int(cfg.server.maxHeaderBytes),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Change feed streams never go idle: end them when shutdown starts.
	srv.RegisterOnShutdown(h.CloseStreams)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving", slog.String("addr", ln.Addr().String()), slog.String("db", redactDB(cfg.db)), slog.String("version", version()))
	if ready != nil {
		ready <- ln.Addr().String()
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

// Flag values that parse like the documented defaults.

type boolValue struct{ p *bool }

func (v boolValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatBool(*v.p)
}
func (v boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("not a boolean")
	}
	*v.p = b
	return nil
}
func (v boolValue) IsBoolFlag() bool { return true }

type intValue struct{ p *int }

func (v intValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.Itoa(*v.p)
}
func (v intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not an integer")
	}
	*v.p = n
	return nil
}

type floatValue struct{ p *float64 }

func (v floatValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}
func (v floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return errors.New("not a number")
	}
	*v.p = f
	return nil
}

type durationValue struct{ p *time.Duration }

func (v durationValue) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.String()
}
func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration like 24h or 90m")
	}
	*v.p = d
	return nil
}

// byteSize parses a byte count: digits, optionally followed by K, KB, KiB,
// M, MB, MiB, G, GB or GiB (all powers of 1024).
type byteSize struct{ p *int64 }

func (v byteSize) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatInt(*v.p, 10)
}
func (v byteSize) Set(s string) error {
	num := strings.TrimRight(s, "KMGiBkmgb ")
	unit := strings.ToUpper(strings.TrimSpace(s[len(num):]))
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil {
		return errors.New("not a byte size like 1048576 or 1MiB")
	}
	mult := map[string]int64{"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10,
		"M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30}[unit]
	if mult == 0 {
		return fmt.Errorf("unknown unit %q", unit)
	}
	*v.p = n * mult
	return nil
}
