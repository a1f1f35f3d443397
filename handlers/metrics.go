package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// defaultStatsMaxAge is how long /metrics reuses one reading of the store's
// statistics, which walks the whole file.
const defaultStatsMaxAge = 10 * time.Second

// metrics are one Handler's Prometheus metrics, in its own registry.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	problems *prometheus.CounterVec
	rebases  *prometheus.CounterVec
	replays  prometheus.Counter
	handler  http.Handler // serves reg
}

// rebaseOutcomes maps the answers to a stale If-Match to the outcome label
// of patchd_rebases_total.
var rebaseOutcomes = map[string]string{
	"rebase-conflict":     "conflict",
	"base-unknown":        "base-unknown",
	"rebase-too-far":      "too-far",
	"rebase-apply-failed": "apply-failed",
}

// newMetrics registers the HTTP, rebase and store metrics in reg.
func newMetrics(reg *prometheus.Registry, st store.Store, cfg Config, log *slog.Logger) *metrics {
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
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "patchd_build_info",
		Help:        "Always 1; the labels name the build.",
		ConstLabels: prometheus.Labels{"version": cfg.Version, "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	reg.MustRegister(m.requests, m.duration, m.problems, m.rebases, m.replays, buildInfo,
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
	if sr, ok := st.(store.StatsReader); ok {
		maxAge := cfg.StatsMaxAge
		if maxAge <= 0 {
			maxAge = defaultStatsMaxAge
		}
		reg.MustRegister(&storeCollector{src: sr, maxAge: maxAge, log: log})
	}
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

// storeCollector exports a store's Stats, read at most once per maxAge.
type storeCollector struct {
	src    store.StatsReader
	maxAge time.Duration
	log    *slog.Logger

	mu   sync.Mutex
	at   time.Time
	last store.Stats
	ok   bool
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descDocuments   = desc("patchd_documents", "Current (not deleted) documents.")
	descVersions    = desc("patchd_history_versions", "Retained history versions, deleted documents' included.")
	descCollections = desc("patchd_collections", "Collections that hold or held a document.")
	descFileSize    = desc("patchd_bolt_file_size_bytes", "Size of the bbolt database.")
	descPages       = desc("patchd_bolt_pages", "Pages of a tree of buckets, by type (branch, leaf, overflow).", "bucket", "type")
	descBucketBytes = desc("patchd_bolt_bucket_bytes", "Bytes of a tree of buckets: allocated pages and the part in use.", "bucket", "state")
	descInline      = desc("patchd_bolt_inline_buckets", "Buckets stored inside their parent's page.", "bucket")
	descDepth       = desc("patchd_bolt_tree_depth", "Depth of the deepest page of a tree of buckets.", "bucket")
	descFreePages   = desc("patchd_bolt_free_pages", "Pages on the freelist.")
	descPending     = desc("patchd_bolt_pending_pages", "Pages freed but still visible to open read transactions.")
	descFreeBytes   = desc("patchd_bolt_free_bytes", "Bytes in free pages.")
	descFreelist    = desc("patchd_bolt_freelist_bytes", "Bytes the freelist itself takes.")
	descReadTx      = desc("patchd_bolt_read_tx_total", "Read transactions started.")
	descOpenReadTx  = desc("patchd_bolt_open_read_tx", "Read transactions open now.")
	descTxCounters  = desc("patchd_bolt_tx_operations_total", "bbolt transaction counters, by operation: page_alloc, cursor, node, node_deref, rebalance, split, spill, page_write.", "op")
	descTxAllocB    = desc("patchd_bolt_tx_page_alloc_bytes_total", "Bytes allocated for pages by transactions.")
	descTxSeconds   = desc("patchd_bolt_tx_seconds_total", "Time transactions spent, by phase: rebalance, spill, write.", "phase")
	descStatsAge    = desc("patchd_store_stats_age_seconds", "Age of the store statistics this scrape reports.")
)

func (s *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDocuments, descVersions, descCollections, descFileSize,
		descPages, descBucketBytes, descInline, descDepth, descFreePages, descPending, descFreeBytes,
		descFreelist, descReadTx, descOpenReadTx, descTxCounters, descTxAllocB, descTxSeconds, descStatsAge} {
		ch <- d
	}
}

func (s *storeCollector) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	if !s.ok || time.Since(s.at) >= s.maxAge {
		st, err := s.src.Stats(context.Background())
		if err != nil {
			s.log.Warn("store statistics", slog.Any("err", err))
		} else {
			s.last, s.at, s.ok = st, time.Now(), true
		}
	}
	st, at, ok := s.last, s.at, s.ok
	s.mu.Unlock()
	if !ok {
		return
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descDocuments, st.Documents)
	gauge(descVersions, st.Versions)
	gauge(descCollections, st.Collections)
	gauge(descFileSize, st.FileSize)
	for name, b := range st.Buckets {
		gauge(descPages, b.BranchPages, name, "branch")
		gauge(descPages, b.LeafPages, name, "leaf")
		gauge(descPages, b.OverflowPages, name, "overflow")
		gauge(descBucketBytes, b.AllocatedBytes, name, "allocated")
		gauge(descBucketBytes, b.InuseBytes, name, "inuse")
		gauge(descInline, b.InlineBuckets, name)
		gauge(descDepth, b.Depth, name)
	}
	e := st.Engine
	gauge(descFreePages, e.FreePages)
	gauge(descPending, e.PendingPages)
	gauge(descFreeBytes, e.FreeBytes)
	gauge(descFreelist, e.FreelistBytes)
	counter(descReadTx, float64(e.ReadTxStarted))
	gauge(descOpenReadTx, e.ReadTxOpen)
	for op, v := range map[string]int64{"page_alloc": e.TxPagesAllocated, "cursor": e.TxCursors, "node": e.TxNodes,
		"node_deref": e.TxNodeDerefs, "rebalance": e.TxRebalances, "split": e.TxSplits, "spill": e.TxSpills, "page_write": e.TxPagesWritten} {
		counter(descTxCounters, float64(v), op)
	}
	counter(descTxAllocB, float64(e.TxPageAllocBytes))
	counter(descTxSeconds, e.TxRebalanceTime.Seconds(), "rebalance")
	counter(descTxSeconds, e.TxSpillTime.Seconds(), "spill")
	counter(descTxSeconds, e.TxWriteTime.Seconds(), "write")
	ch <- prometheus.MustNewConstMetric(descStatsAge, prometheus.GaugeValue, time.Since(at).Seconds())
}
