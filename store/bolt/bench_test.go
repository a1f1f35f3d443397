package bolt_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchd/patchd/internal/benchdoc"
	"github.com/patchd/patchd/store"
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
