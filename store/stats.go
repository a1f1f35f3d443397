package store

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// StatsReader is implemented by stores that report their size and the
// work of their storage engine, for metrics.
type StatsReader interface {
	// Stats counts documents and versions and reads the engine's
	// statistics. It reads the whole key space, so callers should not call
	// it more often than every few seconds.
	Stats(ctx context.Context) (Stats, error)
}

var _ StatsReader = (*Bolt)(nil)

// Stats describes a store at one moment.
type Stats struct {
	// Documents is the number of current (not deleted) documents.
	Documents int64
	// Versions is the number of retained history versions, deleted
	// documents' included.
	Versions int64
	// Collections is the number of collections that hold or held a
	// document.
	Collections int64
	// FileSize is the size of the database in bytes.
	FileSize int64
	// Buckets has the page statistics of the "docs" and "hist" trees.
	Buckets map[string]BucketStats
	// Engine has the bbolt engine's counters.
	Engine EngineStats
}

// BucketStats are the page statistics of one tree of buckets.
type BucketStats struct {
	BranchPages    int64 // branch pages in use
	LeafPages      int64 // leaf pages in use
	OverflowPages  int64 // extra pages of values larger than a page
	InlineBuckets  int64 // buckets small enough to live inside their parent's page
	AllocatedBytes int64 // bytes of the pages the tree occupies
	InuseBytes     int64 // bytes of those pages actually used
	Depth          int64 // depth of the deepest page
}

// EngineStats are bbolt's own counters (DB.Stats). The Tx* fields add up
// over every transaction since the file was opened.
type EngineStats struct {
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

// Stats counts documents, versions and collections in one read
// transaction, and reads bbolt's page and transaction statistics. It walks
// every page of the file (not the values of large ones), so it costs time
// in proportion to the file's size.
func (b *Bolt) Stats(ctx context.Context) (Stats, error) {
	if err := b.enter(); err != nil {
		return Stats{}, fmt.Errorf("store: stats: %w", err)
	}
	defer b.active.Done()
	if err := ctx.Err(); err != nil {
		return Stats{}, fmt.Errorf("store: stats: %w", err)
	}
	s := Stats{Buckets: make(map[string]BucketStats, 2)}
	err := b.db.View(func(tx *bolt.Tx) error {
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
			s.Buckets[string(name)] = BucketStats{
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
		return Stats{}, fmt.Errorf("store: stats %s: %w", b.path, err)
	}
	ds := b.db.Stats()
	t := &ds.TxStats
	s.Engine = EngineStats{
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
