package postgres

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/patchd/patchd/store"
)

// Kinds of database errors: the kind label of patchd_pg_errors_total, and
// what a call does about one.
const (
	// errConnection: the database cannot be reached, closed the
	// connection, is shutting down, starting up or out of connections, or
	// is a standby that refuses writes (a failover in progress).
	errConnection = "connection"
	// errTimeout: the store's deadline passed, or the server's statement
	// or lock timeout did.
	errTimeout = "timeout"
	// errSerialization: a serialization failure or a deadlock, which the
	// server resolved by aborting this transaction.
	errSerialization = "serialization"
	// errConflict: a unique violation, met when two writes create one
	// document at once.
	errConflict = "conflict"
	// errRefused: the database refused the store's credentials (SQLSTATE
	// class 28: pg_hba.conf, a password or a role changed). No retry mends
	// it, but the operator's fix does, without a restart.
	errRefused = "refused"
	// errOther: anything else, which no retry mends.
	errOther = "other"
)

// errorKinds lists the kinds, for the metrics.
var errorKinds = []string{errConnection, errTimeout, errSerialization, errConflict, errRefused, errOther}

// errorKind classifies an error met talking to the database.
func errorKind(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch code := pgErr.Code; {
		case code == "57014", // query_canceled: statement timeout, or our cancel at the deadline
			code == "55P03": // lock_not_available: lock timeout
			return errTimeout
		case code == "40001", // serialization_failure
			code == "40P01", // deadlock_detected
			code == "CR000": // CockroachDB's retry error
			return errSerialization
		case code == "23505": // unique_violation
			return errConflict
		case code[:2] == "28": // invalid_authorization_specification, invalid_password
			return errRefused
		case code[:2] == "08", // connection_exception
			code == "57P01",                  // admin_shutdown: the server is stopping or the session was ended
			code == "57P02",                  // crash_shutdown
			code == "57P03",                  // cannot_connect_now: starting up or shutting down
			code == "57P05",                  // idle_session_timeout
			code == "25006",                  // read_only_sql_transaction: a standby, during a failover
			code[:2] == "53",                 // insufficient_resources: too many connections, disk full, out of memory
			code == "58000", code == "58030": // system_error, io_error
			return errConnection
		}
		return errOther
	}
	// A certificate that does not verify is a mistake of the
	// configuration, which no retry mends.
	var (
		certErr   *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	if errors.As(err, &certErr) || errors.As(err, &authority) || errors.As(err, &hostname) || errors.As(err, &invalid) {
		return errOther
	}
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err), errors.As(err, &netErr) && netErr.Timeout():
		return errTimeout
	case errors.As(err, &netErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, pgconn.ErrConnClosed),
		pgconn.SafeToRetry(err):
		return errConnection
	}
	// A failed connection attempt counts only for the causes above: a
	// server that refuses TLS, say, needs its configuration mended.
	var (
		conn *connError
		amb  *ambiguousError
	)
	if errors.As(err, &conn) || errors.As(err, &amb) {
		return errConnection
	}
	return errOther
}

// unavailable reports whether err is one that a retry later, or on another
// connection, may not meet: the database was unreachable or slow, not
// wrong.
func unavailable(err error) bool {
	switch errorKind(err) {
	case errConnection, errTimeout:
		return true
	}
	return false
}

// wrapUnavailable returns err wrapping store.ErrUnavailable when it is
// unavailable, otherwise err.
func wrapUnavailable(err error) error {
	if err == nil || errors.Is(err, store.ErrUnavailable) || !unavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// fail returns the error a call reports for err, met under the caller's
// ctx: ctx's own error once it is done (the caller went away, or gave up;
// nobody needs to hear why the database failed), else err, wrapping
// store.ErrUnavailable when the database was unreachable or did not answer
// within the store's deadline, or refused the store's credentials: once
// the store is open, that is the operator's to mend, and the client's to
// retry after (a start with wrong credentials ends at once instead: Open
// does not wrap it).
func (s *Store) fail(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && err != nil {
		return cerr
	}
	if err != nil && !errors.Is(err, store.ErrUnavailable) && errorKind(err) == errRefused {
		return fmt.Errorf("%w: the database refused this server's credentials: %w", store.ErrUnavailable, err)
	}
	return wrapUnavailable(err)
}

// read runs fn, a read of the database, under the store's deadline, and
// runs it again after errors that another try may not meet (a pooled
// connection the server has closed, a server restarting), with backoff,
// until the deadline. A read has no effect, so repeating it is safe. It
// returns fn's error as fail reports it; pgx.ErrNoRows is returned as it
// is.
func (s *Store) read(ctx context.Context, fn func(ctx context.Context) error) error {
	dctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	for n := 1; ; n++ {
		err := fn(dctx)
		if err == nil || errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, store.ErrCursorGone) {
			return err // the client's cursor, not the database
		}
		s.metrics.dbError(err)
		if !unavailable(err) || dctx.Err() != nil {
			return s.fail(ctx, err)
		}
		s.metrics.retries[retryRead].Add(1)
		s.log.Debug("retrying read", "attempt", n, "err", err)
		if !pause(dctx, backoff(n)) {
			return s.fail(ctx, fmt.Errorf("%w (after %d tries; last: %w)", dctx.Err(), n, err))
		}
	}
}

// Retry backoff: the n-th retry waits a random time up to
// min(retryCap, retryBase * 2^(n-1)).
const (
	retryBase = 5 * time.Millisecond
	retryCap  = 500 * time.Millisecond
)

// backoff returns the wait before retry n (from 1), with jitter.
func backoff(n int) time.Duration {
	wait := min(retryCap, retryBase<<min(n-1, 16))
	return mrand.N(wait) + time.Millisecond // #nosec G404 -- retry jitter, not a secret
}

// pause waits for d, or until ctx is done: then it reports false.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
