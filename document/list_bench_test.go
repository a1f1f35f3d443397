//go:build unix

package document_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/query"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
	"github.com/patchd/patchd/store/postgres"
	"github.com/patchd/patchd/store/postgres/pgtest"
)

// listDocs sizes the collection of BenchmarkListFilteredOrdered: small by
// default, so that CI's one iteration of every benchmark stays quick;
// README's figure is measured with -list.docs=100000.
var listDocs = flag.Int("list.docs", 2000, "documents of 1 KB in BenchmarkListFilteredOrdered's collection")

// BenchmarkListFilteredOrdered measures the first page of a filtered,
// ordered listing with bodies (where {"/status":"open"}, a quarter of the
// documents; order -/total; limit 100) over a collection of -list.docs
// documents of 1 KB, on a bbolt file (fsync on) and on PostgreSQL. There
// is no index: every page reads the whole collection. Besides ns/op it
// reports the median page time, ms/page-p50, and the process's CPU time
// per page, cpu-ms/page, which a busy machine inflates less than the
// wall-clock figures.
func BenchmarkListFilteredOrdered(b *testing.B) {
	ctx := context.Background()
	b.Run("bolt", func(b *testing.B) {
		st, err := bolt.Open(filepath.Join(b.TempDir(), "patchd.db"), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		benchListFilteredOrdered(ctx, b, st)
	})
	b.Run("postgres", func(b *testing.B) {
		var pg pgtest.Env
		c := pg.Own(b, pgtest.Options{})
		dsn, err := c.CreateDatabase(ctx)
		if err != nil {
			b.Fatal(err)
		}
		// The fixture writes ten thousand documents a transaction.
		st, err := postgres.Open(ctx, dsn, postgres.Options{Options: store.Options{Timeout: 10 * time.Minute}})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		benchListFilteredOrdered(ctx, b, st)
	})
}

func benchListFilteredOrdered(ctx context.Context, b *testing.B, st store.Store) {
	start := time.Now()
	fillOrders(ctx, b, st, *listDocs)
	b.Logf("%d documents written in %v", *listDocs, time.Since(start).Round(time.Millisecond))
	svc := document.New(st, document.DefaultConfig())
	where, err := query.ParseWhere(`{"/status":"open"}`)
	if err != nil {
		b.Fatal(err)
	}
	order, err := query.ParseOrder("-/total")
	if err != nil {
		b.Fatal(err)
	}
	q := document.ListQuery{Collection: "orders", Where: where, Order: &order, Limit: 100, Bodies: true}
	times := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for b.Loop() {
		t0 := time.Now()
		page, err := svc.Query(ctx, q)
		times = append(times, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		if want := min(100, *listDocs/4); len(page.Items) != want {
			b.Fatalf("%d items, want %d", len(page.Items), want)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(time.Millisecond)/float64(len(times)), "cpu-ms/page")
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2])/float64(time.Millisecond), "ms/page-p50")
}

// fillOrders writes n order documents of about 1 KB, ten thousand to a
// transaction: a quarter of them open, totals random.
func fillOrders(ctx context.Context, b *testing.B, st store.Store, n int) {
	rng := rand.New(rand.NewPCG(1, 2))
	statuses := []string{"open", "paid", "shipped", "cancelled"}
	pad := strings.Repeat("x", 860)
	for from := 0; from < n; from += store.MaxManyKeys {
		keys := make([]store.Key, min(store.MaxManyKeys, n-from))
		changes := make([]store.DocChange, len(keys))
		for i := range keys {
			id := fmt.Sprintf("%08d", from+i)
			keys[i] = store.Key{Collection: "orders", ID: id}
			v, err := patch.Parse(fmt.Appendf(nil,
				`{"customer":"customer-%d","lines":[{"sku":"A-%d","qty":%d}],"note":"%s","status":"%s","total":%d.%02d}`,
				rng.IntN(5000), rng.IntN(900), 1+rng.IntN(9), pad, statuses[(from+i)%len(statuses)], rng.IntN(100000), rng.IntN(100)), patch.Limits{})
			if err != nil {
				b.Fatal(err)
			}
			body := patch.Canonical(v)
			ops := fmt.Appendf(nil, `[{"op":"add","path":"","value":%s}]`, body)
			changes[i] = store.DocChange{Doc: i, Change: &store.Change{Body: body, Kind: store.KindPut, Ops: ops}}
		}
		_, err := st.UpdateMany(ctx, keys, func(context.Context, []store.Locked) (*store.ManyChange, error) {
			return &store.ManyChange{Changes: changes}, nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// cpuTime returns the CPU time the process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
