package handlers

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// StreamLimits bound the change feed streams, POST /events and
// GET /docs/{c}/{id}/events alike. Zero fields take the defaults noted.
type StreamLimits struct {
	// Max is the most streams open at once. Default 10000.
	Max int
	// PerClient is the most streams one client may hold open: a client is
	// its token with --tokens, else its IP address (an IPv6 client its
	// /64). Default 64.
	PerClient int
	// MaxSubscriptions is the most documents and collections one
	// POST /events may follow. Default 1000.
	MaxSubscriptions int
	// SubscriptionsPerClient is the most documents and collections one
	// client follows over all its streams at once (a GET .../events
	// follows one): what a stream keeps of each lives as long as it does,
	// about a kilobyte. Default 8 times MaxSubscriptions, at most
	// Subscriptions.
	SubscriptionsPerClient int
	// Subscriptions is the most the server's streams follow at once.
	// Default 200000, or MaxSubscriptions when that is more.
	Subscriptions int
	// OpenFiles, when not nil, returns the file descriptors the process
	// has open and the most it may open; a new stream is refused (503
	// overloaded) when fewer than FileReserve would be left, so that
	// ordinary requests are always served.
	OpenFiles func() (open, limit int, err error)
	// FileReserve is the descriptors kept for everything but streams.
	// Default: an eighth of the limit, at least 64 and at most 1024.
	FileReserve int
}

func (l StreamLimits) withDefaults() StreamLimits {
	if l.Max <= 0 {
		l.Max = 10000
	}
	if l.PerClient <= 0 {
		l.PerClient = 64
	}
	if l.MaxSubscriptions <= 0 {
		l.MaxSubscriptions = 1000
	}
	if l.Subscriptions <= 0 {
		l.Subscriptions = max(200000, l.MaxSubscriptions)
	}
	if l.SubscriptionsPerClient <= 0 {
		l.SubscriptionsPerClient = l.Subscriptions
		if l.MaxSubscriptions <= l.Subscriptions/8 {
			l.SubscriptionsPerClient = 8 * l.MaxSubscriptions
		}
	}
	return l
}

// streamRetryAfter is the Retry-After of a refused stream, in seconds.
const streamRetryAfter = 5

// streamLimiter counts the open streams and what they follow, in all and
// per client.
type streamLimiter struct {
	cfg StreamLimits

	mu       sync.Mutex
	total    int
	byClient map[string]int
	subs     int            // documents and collections the open streams follow
	subsOf   map[string]int // the same per client

	refused *prometheus.CounterVec
}

func newStreamLimiter(cfg StreamLimits, reg *prometheus.Registry) *streamLimiter {
	l := &streamLimiter{cfg: cfg.withDefaults(), byClient: map[string]int{}, subsOf: map[string]int{}}
	l.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "patchd_streams_refused_total",
		Help: "Change feed streams refused, by reason: streams (--max-streams), client (--max-streams-per-client), subscriptions (--max-subscriptions-total), client-subscriptions (--max-subscriptions-per-client), files (file descriptors kept for other requests).",
	}, []string{"reason"})
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "patchd_streams",
		Help: "Change feed streams open (GET .../events and POST /events).",
	}, func() float64 {
		l.mu.Lock()
		defer l.mu.Unlock()
		return float64(l.total)
	})
	for _, r := range []string{"streams", "client", "subscriptions", "client-subscriptions", "files"} {
		l.refused.WithLabelValues(r)
	}
	reg.MustRegister(l.refused, open)
	return l
}

// admit counts a new stream of client that follows subs documents and
// collections, or refuses it with ErrRateLimited (a limit on streams or on
// what they follow) or ErrOverloaded (too few file descriptors left). The
// returned function ends the stream's count.
func (l *streamLimiter) admit(client string, subs int) (func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.total >= l.cfg.Max:
		l.refused.WithLabelValues("streams").Inc()
		return nil, fail(ErrRateLimited, fmt.Sprintf("the server has %d streams open, its most (--max-streams); retry after %d s", l.total, streamRetryAfter))
	case l.byClient[client] >= l.cfg.PerClient:
		l.refused.WithLabelValues("client").Inc()
		return nil, fail(ErrRateLimited, fmt.Sprintf("this client has %d streams open, its most (--max-streams-per-client); close one, or follow several documents over one POST /events", l.byClient[client]))
	case l.subsOf[client]+subs > l.cfg.SubscriptionsPerClient:
		l.refused.WithLabelValues("client-subscriptions").Inc()
		return nil, fail(ErrRateLimited, fmt.Sprintf("this client's streams follow %d documents and collections; %d more would pass its most, %d (--max-subscriptions-per-client); close a stream first", l.subsOf[client], subs, l.cfg.SubscriptionsPerClient))
	case l.subs+subs > l.cfg.Subscriptions:
		l.refused.WithLabelValues("subscriptions").Inc()
		return nil, fail(ErrRateLimited, fmt.Sprintf("the server's streams follow %d documents and collections; %d more would pass its most, %d (--max-subscriptions-total); retry after %d s", l.subs, subs, l.cfg.Subscriptions, streamRetryAfter))
	}
	if l.cfg.OpenFiles != nil {
		if open, limit, err := l.cfg.OpenFiles(); err == nil && limit > 0 && limit-open < l.reserve(limit) {
			l.refused.WithLabelValues("files").Inc()
			return nil, fail(ErrOverloaded, fmt.Sprintf("%d of %d file descriptors are in use; the rest are kept for requests other than streams; retry after %d s", open, limit, streamRetryAfter))
		}
	}
	l.total++
	l.byClient[client]++
	l.subs += subs
	l.subsOf[client] += subs
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.total--
			if l.byClient[client]--; l.byClient[client] <= 0 {
				delete(l.byClient, client)
			}
			l.subs -= subs
			if l.subsOf[client] -= subs; l.subsOf[client] <= 0 {
				delete(l.subsOf, client)
			}
		})
	}, nil
}

// reserve is how many of limit descriptors streams must leave free.
func (l *streamLimiter) reserve(limit int) int {
	if l.cfg.FileReserve > 0 {
		return l.cfg.FileReserve
	}
	return min(max(limit/8, 64), 1024)
}

// admitStream admits a stream for the request that follows subs documents
// and collections, or answers why not: 429 or 503 with Retry-After. A
// refused HTTP/1 connection is closed after the answer, so that a client
// that keeps opening streams holds no descriptor.
func (h *Handler) admitStream(c echo.Context, subs int) (func(), error) {
	client := clientKey(c.Request())
	if h.cfg.Tokens != nil {
		if p := principal(c); p.Name != "" {
			client = "token " + p.Name
		}
	}
	release, err := h.streams.admit(client, subs)
	if err != nil {
		hdr := c.Response().Header()
		hdr.Set(echo.HeaderRetryAfter, strconv.Itoa(streamRetryAfter))
		if c.Request().ProtoMajor == 1 {
			hdr.Set("Connection", "close")
		}
		return nil, err
	}
	return release, nil
}
