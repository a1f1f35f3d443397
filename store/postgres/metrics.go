package postgres

import (
	"context"
	"sync/atomic"
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

// Retries counted by patchd_pg_retries_total, by op.
const (
	retryWrite = iota
	retryRead
)

// Outcomes of commits whose acknowledgment was lost, counted by
// patchd_pg_lost_commits_total.
const (
	lostCommitted    = iota // the token was found: the write had committed
	lostNotCommitted        // it had not; the write was made again
	lostUnknown             // the outcome could not be told (see ErrCommitUnknown)
)

// collector exports the store's sizes, its connection pool's state, the
// errors it met, its retries and its change feed connection.
type collector struct {
	s     *Store
	sizes store.Reading[store.Sizes]

	errors      map[string]*atomic.Int64 // by errorKind; fixed at creation
	retries     [2]atomic.Int64          // by retryWrite, retryRead
	lostCommits [3]atomic.Int64          // by lostCommitted...
	evicted     atomic.Int64             // idempotency records deleted past a scope's bound

	listenUp         atomic.Bool  // the change feed connection is listening
	listenReconnects atomic.Int64 // change feed connections lost
}

func newCollector(s *Store) *collector {
	c := &collector{s: s, sizes: store.Reading[store.Sizes]{Read: s.sizes, Timeout: countsTimeout, MaxAge: countsMaxAge, Logger: s.log},
		errors: make(map[string]*atomic.Int64, len(errorKinds))}
	for _, k := range errorKinds {
		c.errors[k] = new(atomic.Int64)
	}
	return c
}

// dbError counts an error met talking to the database.
func (c *collector) dbError(err error) {
	c.errors[errorKind(err)].Add(1)
}

// Collector returns the store's Prometheus metrics: documents, versions and
// collections (counted at most every 30 s), the connection pool's
// connections and waits, database errors by kind, retries, commits whose
// acknowledgment was lost, and the change feed connection's state.
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
	descCanceled     = desc("patchd_pg_pool_canceled_acquires_total", "Waits for a pooled connection that ended with their call's deadline or cancellation.")
	descNewConns     = desc("patchd_pg_pool_new_connections_total", "Connections the pool opened.")
	descErrors       = desc("patchd_pg_errors_total", "Errors met talking to PostgreSQL, by kind: connection (unreachable, closed, restarting, a standby), timeout, serialization (and deadlocks), conflict, other.", "kind")
	descRetries      = desc("patchd_pg_retries_total", "Transactions (op=write) and reads (op=read) run again after a retryable error.", "op")
	descLost         = desc("patchd_pg_lost_commits_total", "Commits whose acknowledgment was lost, by what checking found: committed, not_committed, unknown (answered 503).", "outcome")
	descEvicted      = desc("patchd_pg_idempotency_evicted_total", "Idempotency records deleted because their client had more than the bound.")
	descListenUp     = desc("patchd_pg_listen_up", "1 while the change feed connection listens for other replicas' commits, 0 while it reconnects.")
	descListenLost   = desc("patchd_pg_listen_reconnects_total", "Change feed connections lost (each followed by a reconnection).")
)

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	store.DescribeSizes(ch)
	for _, d := range []*prometheus.Desc{descConns, descMaxConns, descAcquires, descEmptyAcquire, descAcquireWait,
		descCanceled, descNewConns, descErrors, descRetries, descLost, descEvicted, descListenUp, descListenLost} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	ps := c.s.pool.Stat()
	gauge(descConns, float64(ps.AcquiredConns()), "acquired")
	gauge(descConns, float64(ps.IdleConns()), "idle")
	gauge(descConns, float64(ps.ConstructingConns()), "constructing")
	gauge(descMaxConns, float64(ps.MaxConns()))
	counter(descAcquires, float64(ps.AcquireCount()))
	counter(descEmptyAcquire, float64(ps.EmptyAcquireCount()))
	counter(descAcquireWait, ps.AcquireDuration().Seconds())
	counter(descCanceled, float64(ps.CanceledAcquireCount()))
	counter(descNewConns, float64(ps.NewConnsCount()))
	for _, k := range errorKinds {
		counter(descErrors, float64(c.errors[k].Load()), k)
	}
	counter(descRetries, float64(c.retries[retryWrite].Load()), "write")
	counter(descRetries, float64(c.retries[retryRead].Load()), "read")
	counter(descLost, float64(c.lostCommits[lostCommitted].Load()), "committed")
	counter(descLost, float64(c.lostCommits[lostNotCommitted].Load()), "not_committed")
	counter(descLost, float64(c.lostCommits[lostUnknown].Load()), "unknown")
	counter(descEvicted, float64(c.evicted.Load()))
	up := 0.0
	if c.listenUp.Load() {
		up = 1
	}
	gauge(descListenUp, up)
	counter(descListenLost, float64(c.listenReconnects.Load()))
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
