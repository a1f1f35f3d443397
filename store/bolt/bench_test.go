package bolt_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchd/patchd/internal/benchdoc"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
	"github.com/patchd/patchd/store/storetest"
)

// BenchmarkUpdate commits 1 KB bodies on a real bbolt file, fsync on, from
// one writer (Serial) and from 32 concurrent writers on distinct documents
// (Parallel32) or on one document (OneDoc32). The store work only: the
// UpdateFunc returns a prepared change.
//
//	go test -run='^$' -bench=Update -benchmem ./store
func BenchmarkUpdate(b *testing.B) {
	body := benchdoc.Doc(1<<10, 1)
	run := func(b *testing.B, writers int, oneDoc bool) {
		s := mustOpenBolt(b, filepath.Join(b.TempDir(), "bench.db"), store.Options{})
		ctx := context.Background()
		var next atomic.Int64
		b.ReportAllocs()
		update := func() {
			n := next.Add(1)
			id := fmt.Sprintf("d%d", n)
			if oneDoc {
				id = "hot"
			}
			ch := &store.Change{Body: append(body[:len(body):len(body)], fmt.Sprintf(" %d", n)...), Kind: store.KindPut}
			if _, err := s.Update(ctx, "bench", id, func(context.Context, *store.Document, store.History) (*store.Change, error) {
				return ch, nil
			}); err != nil {
				b.Error(err)
			}
		}
		if writers == 1 {
			for b.Loop() {
				update()
			}
			return
		}
		b.SetParallelism(writers) // GOMAXPROCS x writers goroutines
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				update()
			}
		})
	}
	b.Run("Serial", func(b *testing.B) { run(b, 1, false) })
	b.Run("Parallel32", func(b *testing.B) { run(b, 16, false) }) // 16 x GOMAXPROCS=2
	b.Run("OneDoc32", func(b *testing.B) { run(b, 16, true) })
}

// BenchmarkGetVerify reads a 1 KB and a 1 MB document with Get, which
// checks the stored bytes against their ETag (one SHA-256), and measures
// that check alone on the same bytes, iteration by iteration: verify-ns is
// its cost, get-ns that of the whole Get with it, verify-share the part of
// the Get it takes.
//
//	go test -run='^$' -bench=GetVerify -count=5 ./store/bolt
func BenchmarkGetVerify(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			s := mustOpenBolt(b, filepath.Join(b.TempDir(), "bench.db"), store.Options{})
			ctx := context.Background()
			body := benchdoc.Doc(size, 1)
			storetest.Commit(b, s, "bench", "d", &store.Change{Body: body, Kind: store.KindPut})
			var get, verify time.Duration
			b.ReportAllocs()
			for b.Loop() {
				t0 := time.Now()
				doc, err := s.Get(ctx, "bench", "d")
				t1 := time.Now()
				if err != nil {
					b.Fatal(err)
				}
				if err := store.VerifyBody(doc.Body, doc.ETag); err != nil {
					b.Fatal(err)
				}
				get, verify = get+t1.Sub(t0), verify+time.Since(t1)
			}
			b.ReportMetric(float64(get.Nanoseconds())/float64(b.N), "get-ns")
			b.ReportMetric(float64(verify.Nanoseconds())/float64(b.N), "verify-ns")
			b.ReportMetric(float64(verify)/float64(get), "verify-share")
		})
	}
}

// BenchmarkUpdateSpread is scenario 1 of cmd/patchd-load at the store: 32
// writers on random ones of 10,000 documents of 1 KB, fsync on. Besides
// the time, it reports what the commits cost the disk, figures that the
// machine's noise does not move: bbolt page writes and bytes of pages per
// write, and writes per commit. Fragmented first writes the documents at
// 8 KB, so that the file holds many free pages.
//
//	go test -run='^$' -bench=UpdateSpread -benchtime=20000x ./store/bolt
func BenchmarkUpdateSpread(b *testing.B) {
	b.Run("Fresh", func(b *testing.B) { benchSpread(b, false) })
	b.Run("Fragmented", func(b *testing.B) { benchSpread(b, true) })
}

func benchSpread(b *testing.B, fragmented bool) {
	const docs = 10000
	body := benchdoc.Doc(1<<10, 1)
	s := mustOpenBolt(b, filepath.Join(b.TempDir(), "bench.db"), store.Options{})
	ctx := context.Background()
	var commits atomic.Int64
	bolt.SetBeforeCommit(s, func(int) { commits.Add(1) })
	update := func(n int64, body []byte) {
		id := fmt.Sprintf("d%d", n%docs)
		ch := &store.Change{Body: append(body[:len(body):len(body)], fmt.Sprintf(" %d", n)...), Kind: store.KindPut}
		if _, err := s.Update(ctx, "bench", id, func(context.Context, *store.Document, store.History) (*store.Change, error) {
			return ch, nil
		}); err != nil {
			b.Error(err)
		}
	}
	fill := func(body []byte) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				for n := next.Add(1); n <= docs; n = next.Add(1) {
					update(n, body)
				}
			})
		}
		wg.Wait()
	}
	if fragmented {
		fill(benchdoc.Doc(8<<10, 1))
	}
	fill(body)
	w0, bytes0 := bolt.WriteStats(s)
	c0 := commits.Load()
	rnd := rand.New(rand.NewPCG(1, 2)) // #nosec G404 -- a benchmark's choice of documents
	var mu sync.Mutex
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism(16) // 16 x GOMAXPROCS=2
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			n := rnd.Int64N(docs)
			mu.Unlock()
			update(n+docs, body)
		}
	})
	b.StopTimer()
	w1, bytes1 := bolt.WriteStats(s)
	n := float64(b.N)
	b.ReportMetric(float64(w1-w0)/n, "pagewrites/op")
	b.ReportMetric(float64(bytes1-bytes0)/n, "pagebytes/op")
	b.ReportMetric(n/float64(commits.Load()-c0), "writes/commit")
}
