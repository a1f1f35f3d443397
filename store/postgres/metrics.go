package postgres

import (
	"context"
	"time"

	"github.com/patchd/patchd/store"
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
	s     *Store
	sizes store.Reading[store.Sizes]
}

func newCollector(s *Store) *collector {
	return &collector{s: s, sizes: store.Reading[store.Sizes]{Read: s.sizes, Timeout: countsTimeout, MaxAge: countsMaxAge, Logger: s.log}}
}

// Collector returns the store's Prometheus metrics: documents, versions and
// collections (counted at most every 30 s), and the connection pool's
// connections and waits.
func (s *Store) Collector() prometheus.Collector { return s.metrics }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descConns        = desc("patchd_pg_pool_connections", "Connections of the pool, by state (acquired, idle, constructing).", "state")
	descMaxConns     = desc("patchd_pg_pool_max_connections", "Most connections the pool opens.")
	descAcquires     = desc("patchd_pg_pool_acquires_total", "Connections taken from the pool.")
	descEmptyAcquire = desc("patchd_pg_pool_empty_acquires_total", "Acquires that had to wait for a connection.")
	descAcquireWait  = desc("patchd_pg_pool_acquire_wait_seconds_total", "Time spent waiting for a pooled connection.")
)

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	store.DescribeSizes(ch)
	for _, d := range []*prometheus.Desc{descConns, descMaxConns, descAcquires, descEmptyAcquire, descAcquireWait} {
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
	if sizes, at, ok := c.sizes.Get(); ok {
		store.CollectSizes(ch, sizes, at)
	}
}

// sizes counts documents, versions and collections.
func (s *Store) sizes(ctx context.Context) (store.Sizes, error) {
	if err := s.gate.Enter(ctx, "stats"); err != nil {
		return store.Sizes{}, err
	}
	defer s.gate.Leave()
	var z store.Sizes
	err := s.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM documents WHERE NOT deleted),
		(SELECT count(*) FROM document_versions),
		(SELECT count(DISTINCT collection) FROM documents WHERE seq > 0)`).Scan(&z.Documents, &z.Versions, &z.Collections)
	return z, err
}
