package cli

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"

	"github.com/patchd/patchd/handlers"
	"github.com/patchd/patchd/internal/connlimit"
	"github.com/patchd/patchd/internal/fdlimit"
)

// streamLimits sets up the limits of change feed streams: it raises the
// soft limit of open files to the hard one, and has the handlers keep a
// reserve of descriptors for requests other than streams.
func streamLimits(cfg serveConfig, log *slog.Logger) handlers.StreamLimits {
	l := handlers.StreamLimits{
		Max:              cfg.maxStreams,
		PerClient:        cfg.maxStreamsPerClient,
		MaxSubscriptions: cfg.maxSubscriptions,

		SubscriptionsPerClient: cfg.maxSubscriptionsPerClient,
		Subscriptions:          cfg.maxSubscriptionsTotal,
	}
	limit, err := fdlimit.Raise()
	if err != nil {
		log.Warn("cannot read the limit of open files; streams are limited by --max-streams only", slog.Any("err", err))
		return l
	}
	if _, err := fdlimit.Open(); err != nil {
		log.Warn("cannot count open files; streams are limited by --max-streams only", slog.Any("err", err))
		return l
	}
	l.OpenFiles = func() (int, int, error) {
		open, err := fdlimit.Open()
		return open, limit, err
	}
	log.Info("open files", slog.Int("limit", limit))
	return l
}

// fileReserve is how many descriptors connections leave for the
// database's files, a backup's copy and the log.
const fileReserve = 64

// connLimits bounds the connections the server holds: of one client, by
// --max-conns-per-client; in all, by the limit of open files less
// fileReserve (run after streamLimits, which raises that limit).
func connLimits(cfg serveConfig, plain bool, log *slog.Logger) connlimit.Limits {
	l := connlimit.Limits{PerClient: cfg.maxConnsPerClient, Plain: plain}
	limit, err := fdlimit.Limit()
	if err != nil {
		log.Warn("cannot read the limit of open files; connections are limited per client only", slog.Any("err", err))
		return l
	}
	l.Max = max(limit-fileReserve, 1)
	return l
}

// tlsConfig loads --tls-cert and --tls-key, or returns nil when neither is
// given. Serving with it, net/http offers HTTP/2 (ALPN h2) and HTTP/1.1.
func tlsConfig(cfg serveConfig) (*tls.Config, error) {
	if cfg.tlsCert == "" && cfg.tlsKey == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s, --tls-key %s: %w", cfg.tlsCert, cfg.tlsKey, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// errTLSPair is a --tls-cert without --tls-key, or the other way round.
var errTLSPair = errors.New("--tls-cert and --tls-key go together")
