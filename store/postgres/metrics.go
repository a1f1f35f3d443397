package postgres

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// countsMaxAge is how long the collector reuses one count of documents,
// versions and collections: counting reads whole tables.
const countsMaxAge = 30 * time.Second

// countsTimeout bounds one count, so that a scrape never waits long on a
// busy database; past it, the previous counts are reported.
const countsTimeout = 5 * time.Second

// collector exports the store's sizes and its connection pool's state.
type collector struct {
	s *Store

	mu                          sync.Mutex
	at                          time.Time
	docs, versions, collections int64
	ok                          bool
}

func newCollector(s *Store) *collector { return &collector{s: s} }

// Collector returns the store's Prometheus metrics: documents, versions and
// collections (counted at most every 30 s), and the connection pool's
// connections and waits.
func (s *Store) Collector() prometheus.Collector { return s.metrics }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descDocuments    = desc("patchd_documents", "Current (not deleted) documents.")
	descVersions     = desc("patchd_history_versions", "Retained history versions, deleted documents' included.")
	descCollections  = desc("patchd_collections", "Collections that hold or held a document.")
	descStatsAge     = desc("patchd_store_stats_age_seconds", "Age of the store statistics this scrape reports.")
	descConns        = desc("patchd_pg_pool_connections", "Connections of the pool, by state (acquired, idle, constructing).", "state")
	descMaxConns     = desc("patchd_pg_pool_max_connections", "Most connections the pool opens.")
	descAcquires     = desc("patchd_pg_pool_acquires_total", "Connections taken from the pool.")
	descEmptyAcquire = desc("patchd_pg_pool_empty_acquires_total", "Acquires that had to wait for a connection.")
	descAcquireWait  = desc("patchd_pg_pool_acquire_wait_seconds_total", "Time spent waiting for a pooled connection.")
)

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDocuments, descVersions, descCollections, descStatsAge,
		descConns, descMaxConns, descAcquires, descEmptyAcquire, descAcquireWait} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	ps := c.s.pool.Stat()
	gauge(descConns, float64(ps.AcquiredConns()), "acquired")
	gauge(descConns, float64(ps.IdleConns()), "idle")
	gauge(descConns, float64(ps.ConstructingConns()), "constructing")
	gauge(descMaxConns, float64(ps.MaxConns()))
	counter(descAcquires, float64(ps.AcquireCount()))
	counter(descEmptyAcquire, float64(ps.EmptyAcquireCount()))
	counter(descAcquireWait, ps.AcquireDuration().Seconds())

	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ok || time.Since(c.at) >= countsMaxAge {
		if err := c.count(); err != nil {
			c.s.log.Warn("store statistics", slog.Any("err", err))
		}
	}
	if !c.ok {
		return
	}
	gauge(descDocuments, float64(c.docs))
	gauge(descVersions, float64(c.versions))
	gauge(descCollections, float64(c.collections))
	gauge(descStatsAge, time.Since(c.at).Seconds())
}

// count reads the sizes; c.mu is held.
func (c *collector) count() error {
	if err := c.s.enter(context.Background(), "stats"); err != nil {
		return err
	}
	defer c.s.gate.Leave()
	ctx, cancel := context.WithTimeout(context.Background(), countsTimeout)
	defer cancel()
	var docs, versions, collections int64
	err := c.s.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM documents WHERE NOT deleted),
		(SELECT count(*) FROM document_versions),
		(SELECT count(DISTINCT collection) FROM documents WHERE seq > 0)`).Scan(&docs, &versions, &collections)
	if err != nil {
		return err
	}
	c.docs, c.versions, c.collections, c.at, c.ok = docs, versions, collections, time.Now(), true
	return nil
}
