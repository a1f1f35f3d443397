package bolt_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/patchd/patchd/internal/benchdoc"
	"github.com/patchd/patchd/store"
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
