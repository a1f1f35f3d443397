package handlers

import (
	"log/slog"
	"net/http"
	"runtime"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/document"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are one Handler's Prometheus metrics, in its own registry.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	problems *prometheus.CounterVec
	rebases  *prometheus.CounterVec
	replays  prometheus.Counter
	// feedRetries counts change feed reads tried again after a failure.
	feedRetries prometheus.Counter
	handler     http.Handler // serves reg
}

// rebaseOutcomes maps the answers to a stale If-Match to the outcome label
// of patchd_rebases_total.
var rebaseOutcomes = map[string]string{
	"rebase-conflict":     "conflict",
	"base-unknown":        "base-unknown",
	"rebase-too-far":      "too-far",
	"rebase-apply-failed": "apply-failed",
}

// newMetrics registers the HTTP, rebase, change feed and store metrics in
// reg; the store's are its backend's own collector. streams counts the
// open change feed streams.
func newMetrics(reg *prometheus.Registry, svc *document.Service, cfg Config, log *slog.Logger, streams func() int) *metrics {
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchd_http_requests_total",
			Help: "HTTP requests answered, by route template, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "patchd_http_request_duration_seconds",
			Help:    "Time from receiving a request to the end of its answer, by route template and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
		problems: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchd_http_problems_total",
			Help: "Error answers by status and problem type (412 and 428 included).",
		}, []string{"status", "type"}),
		rebases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchd_rebases_total",
			Help: "Writes with a stale If-Match, by outcome: rebased (committed), conflict, base-unknown, too-far, apply-failed.",
		}, []string{"outcome"}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchd_idempotent_replays_total",
			Help: "Answers replayed for a repeated idempotency key.",
		}),
		feedRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchd_feed_read_retries_total",
			Help: "Change feed reads tried again after the store failed them (the stream stays open).",
		}),
	}
	feedStreams := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "patchd_feed_streams",
		Help: "Open change feed streams.",
	}, func() float64 { return float64(streams()) })
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "patchd_build_info",
		Help:        "Always 1; the labels name the build.",
		ConstLabels: prometheus.Labels{"version": cfg.Version, "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	reg.MustRegister(m.requests, m.duration, m.problems, m.rebases, m.replays, m.feedRetries, feedStreams, buildInfo, svc.Collector(),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, o := range rebaseOutcomes { // every outcome shows, at 0 at first
		m.rebases.WithLabelValues(o)
	}
	m.rebases.WithLabelValues("rebased")
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		ErrorLog:          promLogger{log},
		EnableOpenMetrics: true,
	})
	return m
}

// observe counts one answered request.
func (m *metrics) observe(x exchange) {
	route := x.route
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, x.method, statusLabel(x.status)).Inc()
	m.duration.WithLabelValues(route, x.method).Observe(x.duration.Seconds())
	if x.problem != "" && x.status >= 400 {
		m.problems.WithLabelValues(statusLabel(x.status), x.problem).Inc()
	}
	if x.dryRun {
		return // nothing was written: no metric of writes
	}
	if x.rebased {
		m.rebases.WithLabelValues("rebased").Inc()
	} else if o, ok := rebaseOutcomes[x.problem]; ok {
		m.rebases.WithLabelValues(o).Inc()
	}
	if x.replayed {
		m.replays.Inc()
	}
}

// statusLabel is strconv.Itoa without an allocation for the statuses
// patchd answers.
func statusLabel(status int) string {
	switch status {
	case 200:
		return "200"
	case 201:
		return "201"
	case 204:
		return "204"
	case 304:
		return "304"
	case 400:
		return "400"
	case 404:
		return "404"
	case 412:
		return "412"
	case 428:
		return "428"
	}
	return strconv.Itoa(status)
}

// serveMetrics answers GET /metrics in the Prometheus text format (or
// OpenMetrics when asked for).
func (h *Handler) serveMetrics(c echo.Context) error {
	h.metrics.handler.ServeHTTP(c.Response(), c.Request())
	return nil
}

// promLogger adapts the Handler's logger to promhttp.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) { l.log.Warn("metrics", slog.Any("err", v)) }
