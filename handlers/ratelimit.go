package handlers

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// ErrRateLimited: the client sent more requests than --rate allows (429).
var ErrRateLimited = errors.New("rate limited")

// maxRateClients bounds the clients tracked at once. Past it, clients
// whose buckets have refilled are forgotten (they would start full again
// anyway); if none has, the map is cleared, which errs towards letting
// requests through rather than growing without bound.
const maxRateClients = 100_000

// rateLimiter is a token bucket per client: each holds up to burst
// tokens, refills at rate tokens a second, and a request takes one.
type rateLimiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

// bucket is one client's tokens as of last.
type bucket struct {
	tokens float64
	last   time.Time
}

// newRateLimiter returns a limiter of rate requests a second with the
// given burst (at least 1).
func newRateLimiter(rate float64, burst int, now func() time.Time) *rateLimiter {
	if burst < 1 {
		burst = int(math.Max(1, math.Ceil(rate)))
	}
	if now == nil {
		now = time.Now
	}
	return &rateLimiter{rate: rate, burst: float64(burst), now: now, buckets: map[string]*bucket{}}
}

// allow takes a token from key's bucket. When there is none it returns
// false and how long until there is one.
func (l *rateLimiter) allow(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxRateClients {
			l.sweep(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = math.Min(l.burst, b.tokens+elapsed*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}

// sweep forgets the clients whose buckets are full by now.
func (l *rateLimiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= maxRateClients {
		clear(l.buckets)
	}
}

// clientKey names the client of a request for rate limiting: its IP
// address as the connection shows it (forwarding headers are not trusted),
// and for IPv6 its /64 network, which one client usually holds whole.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// rateLimit is the middleware that answers 429 with Retry-After to a
// client over its rate. The probes /healthz and /readyz, and GET and HEAD
// of the UI's static files (h.uiPaths), are not limited: they cost no more
// than a probe, and a browser restoring ten tabs asks for a dozen files
// each.
func (h *Handler) rateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if path := r.URL.Path; h.limiter == nil || path == "/healthz" || path == "/readyz" ||
			(h.uiPaths[path] && (r.Method == http.MethodGet || r.Method == http.MethodHead)) {
			return next(c)
		}
		ok, wait := h.limiter.allow(clientKey(c.Request()))
		if ok {
			return next(c)
		}
		secs := int(math.Ceil(wait.Seconds()))
		if secs < 1 {
			secs = 1
		}
		c.Response().Header().Set(echo.HeaderRetryAfter, strconv.Itoa(secs))
		return fail(ErrRateLimited, fmt.Sprintf("more than %g requests a second from this client; retry after %d s", h.limiter.rate, secs))
	}
}
