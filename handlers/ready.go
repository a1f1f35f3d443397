package handlers

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/store"
)

// Probes for load balancers and orchestrators: GET /healthz says the
// process serves HTTP (liveness: restart it if not); GET /readyz says it
// can also reach its store (readiness: send it traffic only then), so that
// a replica whose database is down is drained rather than answering 503s.

// Readiness checks: one ping of the store bounded by readyTimeout, reused
// by probes for the cache time.
const (
	readyTimeout      = time.Second
	defaultReadyCache = time.Second
)

// readiness is the cached result of the store's health check.
type readiness struct {
	ping  func(context.Context) error
	cache time.Duration

	mu  sync.Mutex // held during a check: concurrent probes share it
	at  time.Time  // when err was learned; zero before the first check
	err error
}

func newReadiness(ping func(context.Context) error, cache time.Duration) *readiness {
	if cache <= 0 {
		cache = defaultReadyCache
	}
	return &readiness{ping: ping, cache: cache}
}

// check returns the store's health, checking again when the last check is
// older than the cache time; fresh reports that it checked, and back that
// this check found the store answering after one that did not.
func (r *readiness) check(ctx context.Context) (fresh, back bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.at.IsZero() && time.Since(r.at) < r.cache {
		return false, false, r.err
	}
	// Not the probe's context: a probe that gives up must not record a
	// failure the store did not have.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readyTimeout)
	defer cancel()
	was := r.err
	r.err, r.at = r.ping(pctx), time.Now()
	return true, was != nil && r.err == nil, r.err
}

// readyz serves GET /readyz: 200 {"status":"ready"} while the store
// answers, 503 unavailable with Retry-After while it does not. The cause is
// logged once per check, not per probe that a cached check answers; the
// first check that finds it answering again says so.
func (h *Handler) readyz(c echo.Context) error {
	fresh, back, err := h.ready.check(c.Request().Context())
	if err != nil {
		if fresh {
			h.log.Warn("not ready: the store does not answer", "request_id", info(c).id, "err", err)
		}
		info(c).causeLogged = true
		return fail(store.ErrUnavailable, "the store does not answer: this replica should get no traffic until it does")
	}
	if back {
		h.log.Info("ready again: the store answers", "request_id", info(c).id)
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}
