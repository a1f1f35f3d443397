package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/patchd/patchd/handlers"
)

// loadTokens reads the --tokens file, if one is given.
func loadTokens(path string) (*handlers.Tokens, error) {
	if path == "" {
		return nil, nil
	}
	t, err := handlers.LoadTokens(path)
	if err != nil {
		return nil, fmt.Errorf("--tokens: %w", err)
	}
	return t, nil
}

// errInsecure refuses to serve a non-loopback address without tokens.
var errInsecure = errors.New("refusing to serve a non-loopback address without --tokens; give a tokens file, or --insecure-no-auth to serve everyone without authentication")

// listen opens the listening socket. Without a tokens file it must be on
// a loopback address unless --insecure-no-auth says otherwise, and it
// says so in the log either way.
func listen(cfg serveConfig, log *slog.Logger) (net.Listener, error) {
	if cfg.tokens != "" {
		if fi, err := os.Stat(cfg.tokens); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("the tokens file can be read by other users; chmod 600 it", slog.String("path", cfg.tokens))
		}
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return nil, err
	}
	if cfg.tokens != "" {
		log.Info("authentication on: every request but /healthz, /readyz, preflights and the static files needs a bearer token")
		return ln, nil
	}
	if loopback(ln.Addr()) {
		log.Warn("no --tokens: authentication is off, so serving on the loopback address only", slog.String("addr", ln.Addr().String()))
		return ln, nil
	}
	if !cfg.insecureNoAuth {
		_ = ln.Close()
		return nil, fmt.Errorf("--addr %s: %w", cfg.addr, errInsecure)
	}
	log.Warn("--insecure-no-auth: serving a non-loopback address without authentication; anyone who can reach it can read and change every document",
		slog.String("addr", ln.Addr().String()))
	return ln, nil
}

// loopback reports whether a listening address accepts only loopback
// connections.
func loopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
