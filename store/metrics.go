package store

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Sizes are the counts that every backend's metrics report.
type Sizes struct {
	// Documents is the number of current (not deleted) documents.
	Documents int64
	// Versions is the number of retained history versions, deleted
	// documents' included.
	Versions int64
	// Collections is the number of collections that hold or held a
	// document.
	Collections int64
}

var (
	descDocuments   = prometheus.NewDesc("patchd_documents", "Current (not deleted) documents.", nil, nil)
	descVersions    = prometheus.NewDesc("patchd_history_versions", "Retained history versions, deleted documents' included.", nil, nil)
	descCollections = prometheus.NewDesc("patchd_collections", "Collections that hold or held a document.", nil, nil)
	descStatsAge    = prometheus.NewDesc("patchd_store_stats_age_seconds", "Age of the store statistics this scrape reports.", nil, nil)
)

// DescribeSizes sends the descriptors CollectSizes uses.
func DescribeSizes(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDocuments, descVersions, descCollections, descStatsAge} {
		ch <- d
	}
}

// CollectSizes sends s, read at at, as patchd_documents,
// patchd_history_versions, patchd_collections and
// patchd_store_stats_age_seconds.
func CollectSizes(ch chan<- prometheus.Metric, s Sizes, at time.Time) {
	for d, v := range map[*prometheus.Desc]float64{descDocuments: float64(s.Documents), descVersions: float64(s.Versions),
		descCollections: float64(s.Collections), descStatsAge: time.Since(at).Seconds()} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
}

// Reading keeps the result of an expensive read (statistics that walk a
// whole file or table) for MaxAge, so that frequent scrapes cost one read.
type Reading[T any] struct {
	// Read reads afresh; Timeout bounds it (zero: no bound).
	Read    func(ctx context.Context) (T, error)
	Timeout time.Duration
	MaxAge  time.Duration
	// Logger is told when a read fails; the previous result is kept.
	Logger *slog.Logger

	mu   sync.Mutex
	at   time.Time
	last T
	ok   bool
}

// Get returns the latest result and when it was read, reading afresh when
// it is older than MaxAge; ok is false until a read has succeeded.
func (r *Reading[T]) Get() (v T, at time.Time, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.ok || time.Since(r.at) >= r.MaxAge {
		ctx, cancel := context.Background(), func() {}
		if r.Timeout > 0 {
			ctx, cancel = context.WithTimeout(ctx, r.Timeout)
		}
		v, err := r.Read(ctx)
		cancel()
		switch {
		case err == nil:
			r.last, r.at, r.ok = v, time.Now(), true
		case r.Logger != nil:
			r.Logger.Warn("store statistics", slog.Any("err", err))
		}
	}
	return r.last, r.at, r.ok
}
