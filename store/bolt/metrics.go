package bolt

import (
	"context"
	"fmt"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/prometheus/client_golang/prometheus"

	bbolt "go.etcd.io/bbolt"
)

// stats describes a store at one moment.
type stats struct {
	store.Sizes
	// FileSize is the size of the database in bytes.
	FileSize int64
	// Buckets has the page statistics of the "docs" and "hist" trees.
	Buckets map[string]bucketStats
	// Engine has the bbolt engine's counters.
	Engine engineStats
}

// bucketStats are the page statistics of one tree of buckets.
type bucketStats struct {
	BranchPages    int64 // branch pages in use
	LeafPages      int64 // leaf pages in use
	OverflowPages  int64 // extra pages of values larger than a page
	InlineBuckets  int64 // buckets small enough to live inside their parent's page
	AllocatedBytes int64 // bytes of the pages the tree occupies
	InuseBytes     int64 // bytes of those pages actually used
	Depth          int64 // depth of the deepest page
}

// engineStats are bbolt's own counters (DB.Stats). The Tx* fields add up
// over every transaction since the file was opened.
type engineStats struct {
	FreePages        int64 // pages on the freelist
	PendingPages     int64 // pages freed but still visible to open readers
	FreeBytes        int64 // bytes in free pages
	FreelistBytes    int64 // bytes the freelist itself takes
	ReadTxStarted    int64 // read transactions started
	ReadTxOpen       int64 // read transactions open now
	TxPagesAllocated int64 // page allocations
	TxPageAllocBytes int64 // bytes allocated for pages
	TxCursors        int64 // cursors created
	TxNodes          int64 // node allocations
	TxNodeDerefs     int64 // node dereferences
	TxRebalances     int64 // node rebalances
	TxRebalanceTime  time.Duration
	TxSplits         int64 // node splits
	TxSpills         int64 // nodes spilled to pages
	TxSpillTime      time.Duration
	TxPagesWritten   int64 // pages written to the file
	TxWriteTime      time.Duration
}

// stats counts documents, versions and collections in one read
// transaction, and reads bbolt's page and transaction statistics. It walks
// every page of the file (not the values of large ones), so it costs time
// in proportion to the file's size.
func (b *Store) stats(ctx context.Context) (stats, error) {
	if err := b.gate.Enter(ctx, "stats"); err != nil {
		return stats{}, err
	}
	defer b.gate.Leave()
	s := stats{Buckets: make(map[string]bucketStats, 2)}
	err := b.view(func(tx *bbolt.Tx) error {
		s.FileSize = tx.Size()
		for _, name := range [][]byte{bucketDocs, bucketHist} {
			bs := tx.Bucket(name).Stats()
			// The parent's KeyN counts each collection bucket as a key.
			keys := int64(bs.KeyN - (bs.BucketN - 1))
			if string(name) == string(bucketDocs) {
				s.Documents = keys
			} else {
				s.Versions = keys
				s.Collections = int64(bs.BucketN - 1)
			}
			s.Buckets[string(name)] = bucketStats{
				BranchPages:    int64(bs.BranchPageN),
				LeafPages:      int64(bs.LeafPageN),
				OverflowPages:  int64(bs.BranchOverflowN + bs.LeafOverflowN),
				InlineBuckets:  int64(bs.InlineBucketN),
				AllocatedBytes: int64(bs.BranchAlloc + bs.LeafAlloc),
				InuseBytes:     int64(bs.BranchInuse + bs.LeafInuse + bs.InlineBucketInuse),
				Depth:          int64(bs.Depth),
			}
		}
		return nil
	})
	if err != nil {
		return stats{}, fmt.Errorf("store: stats %s: %w", b.path, err)
	}
	ds := b.db.Stats()
	t := &ds.TxStats
	s.Engine = engineStats{
		FreePages:        int64(ds.FreePageN),
		PendingPages:     int64(ds.PendingPageN),
		FreeBytes:        int64(ds.FreeAlloc),
		FreelistBytes:    int64(ds.FreelistInuse),
		ReadTxStarted:    int64(ds.TxN),
		ReadTxOpen:       int64(ds.OpenTxN),
		TxPagesAllocated: t.GetPageCount(),
		TxPageAllocBytes: t.GetPageAlloc(),
		TxCursors:        t.GetCursorCount(),
		TxNodes:          t.GetNodeCount(),
		TxNodeDerefs:     t.GetNodeDeref(),
		TxRebalances:     t.GetRebalance(),
		TxRebalanceTime:  t.GetRebalanceTime(),
		TxSplits:         t.GetSplit(),
		TxSpills:         t.GetSpill(),
		TxSpillTime:      t.GetSpillTime(),
		TxPagesWritten:   t.GetWrite(),
		TxWriteTime:      t.GetWriteTime(),
	}
	return s, nil
}

// statsMaxAge is how long the collector reuses one reading of the store's
// statistics, which walks every page of the file.
const statsMaxAge = 10 * time.Second

// collector exports the store's statistics to Prometheus, read at most
// once per statsMaxAge.
type collector struct {
	stats store.Reading[stats]
	b     *Store
}

func newCollector(b *Store) *collector {
	return &collector{stats: store.Reading[stats]{Read: b.stats, MaxAge: statsMaxAge, Logger: b.log}, b: b}
}

// Collector returns the store's Prometheus metrics: documents, versions and
// collections, and bbolt's page and transaction statistics.
func (b *Store) Collector() prometheus.Collector { return b.metrics }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
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
	descCorrupt     = desc("patchd_store_corrupt_reads_total", "Reads refused because a stored document's bytes did not match its ETag.")
)

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	store.DescribeSizes(ch)
	for _, d := range []*prometheus.Desc{descFileSize, descPages, descBucketBytes, descInline, descDepth, descFreePages,
		descPending, descFreeBytes, descFreelist, descReadTx, descOpenReadTx, descTxCounters, descTxAllocB, descTxSeconds, descCorrupt} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descCorrupt, prometheus.CounterValue, float64(c.b.corruptReads.Load()))
	st, at, ok := c.stats.Get()
	if !ok {
		return
	}
	store.CollectSizes(ch, st.Sizes, at)
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
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
}
