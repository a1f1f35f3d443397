package handlers_test

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// bigVersions writes n versions of a document of about size bytes, each
// replacing the whole document (so that each stores the old body and the
// new, as a PUT does), straight into st.
func bigVersions(tb testing.TB, st store.Store, c, id string, n, size int) {
	tb.Helper()
	for i := range n {
		// Canonical bodies, and their ops spliced as EncodeOps writes them.
		body := []byte(fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat(string(rune('a'+i%26)), size)))
		_, err := st.Update(context.Background(), c, id, func(_ context.Context, cur *store.Document, _ store.History) (*store.Change, error) {
			if cur == nil {
				return &store.Change{Body: body, Kind: store.KindPut, Ops: patch.EncodeCreate(body)}, nil
			}
			ops := slices.Concat([]byte(`[{"h":true,"k":"root","o":`), cur.Body, []byte(`,"p":[],"v":`), body, []byte(`}]`))
			return &store.Change{Body: body, Kind: store.KindPut, Ops: ops}, nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// TestHistoryPagesByBytes: a page of history holds what its count allows
// only while its versions stay under a byte bound; a page of large versions
// ends early and next continues it, so that every version is still read,
// once and in order. The change feed replays them all too.
func TestHistoryPagesByBytes(t *testing.T) {
	t.Parallel()
	s := startServerAt(t, filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	// Versions of 300 KB documents, each but the first storing 600 KB of
	// ops (the old body and the new): two fit in a page of 1 MiB.
	const n, size = 8, 300 << 10
	bigVersions(t, s.store, "c", "big", n, size)
	var seqs []uint64
	pages := 0
	for after := uint64(0); ; {
		if pages++; pages > n { // a page holds at least one version
			t.Fatalf("more than %d pages for %d versions", n, n)
		}
		r := s.do(t, "GET", fmt.Sprintf("/docs/c/big/history?limit=1000&after=%d", after), nil, "")
		expect(t, r, 200, "")
		if len(r.body) > 2<<20 {
			t.Fatalf("a page of %d bytes", len(r.body))
		}
		var page struct {
			Versions []struct {
				Seq uint64
				Ops []struct{ Value map[string]any }
			}
			Next *uint64
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		for _, v := range page.Versions {
			seqs = append(seqs, v.Seq)
			if len(v.Ops) != 1 || len(v.Ops[0].Value["pad"].(string)) != size {
				t.Fatalf("version %d: ops %d", v.Seq, len(v.Ops))
			}
		}
		if page.Next == nil {
			break
		}
		if len(page.Versions) == 0 || *page.Next != page.Versions[len(page.Versions)-1].Seq {
			t.Fatalf("page after %d: next %d, versions %d", after, *page.Next, len(page.Versions))
		}
		after = *page.Next
	}
	if pages < n/2 {
		t.Fatalf("%d versions of %d bytes came in %d pages, want %d or more", n, size, pages, n/2)
	}
	if len(seqs) != n || seqs[0] != 1 || seqs[n-1] != n {
		t.Fatalf("versions read: %v", seqs)
	}

	// The feed replays every version from after=0, in order.
	req, _ := http.NewRequest("GET", s.URL+"/docs/c/big/events?after=0", nil)
	res, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var ids []string
	for sc.Scan() && len(ids) < n {
		if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
			ids = append(ids, id)
		}
	}
	if got := strings.Join(ids, ","); got != "1,2,3,4,5,6,7,8" {
		t.Fatalf("the feed replayed %s", got)
	}
}

var historyVersions = flag.Int("history.versions", 41, "versions of the 900 KB document BenchmarkHistoryLargeVersions reads (401 for the figure in README)")

// BenchmarkHistoryLargeVersions: four clients at once read the history of
// a document with 41 versions of 900 KB each (-history.versions=401 for
// the figure in README; each version replaces the whole document) with
// limit=1000, and four replay its change feed from the start to its 20th
// version. It
// reports the peak of the heap in use while they run (peak-heap-MiB, the
// Go heap's live and unswept objects, sampled every millisecond) and fails
// past 64 MiB: a page is bounded by bytes as well as by count and streamed,
// and a version is rendered without decoding it into a tree.
func BenchmarkHistoryLargeVersions(b *testing.B) {
	st, err := bolt.Open(filepath.Join(b.TempDir(), "bench.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	h := newHandler(st, newConfig())
	srv := httptest.NewServer(h.Echo())
	// Closed when this round ends, not when the benchmark does: a round
	// of -benchtime=3x must not count the heap of the round of 1 before.
	defer func() {
		h.CloseStreams()
		srv.Close()
		st.Close()
	}()
	bigVersions(b, st, "c", "big", *historyVersions, 900<<10)
	client := srv.Client()
	history := func() error {
		res, err := client.Get(srv.URL + "/docs/c/big/history?limit=1000")
		if err != nil {
			return err
		}
		defer res.Body.Close()
		if res.StatusCode != 200 {
			return fmt.Errorf("history: %d", res.StatusCode)
		}
		_, err = io.Copy(io.Discard, res.Body)
		return err
	}
	feed := func() error {
		res, err := client.Get(srv.URL + "/docs/c/big/events?after=0")
		if err != nil {
			return err
		}
		defer res.Body.Close()
		// Until the 20th version: enough to replay several reads of
		// history. Lines are read in pieces, as a browser does.
		r := bufio.NewReaderSize(res.Body, 64<<10)
		long := false
		for {
			line, err := r.ReadSlice('\n')
			switch {
			case err == bufio.ErrBufferFull:
				long = true
				continue
			case err != nil:
				return fmt.Errorf("the feed ended early: %w", err)
			}
			if !long && string(line) == "id: 20\n" {
				return nil
			}
			long = false
		}
	}
	runtime.GC()
	base := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	b.ResetTimer()
	for range b.N {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for _, f := range []func() error{history, history, history, history, feed, feed, feed, feed} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := f(); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	close(stop)
	<-sampled
	mib := float64(peak.Load()) / (1 << 20)
	b.ReportMetric(mib, "peak-heap-MiB")
	b.ReportMetric(float64(base[0].Value.Uint64())/(1<<20), "start-heap-MiB")
	if mib > 64 {
		b.Fatalf("peak heap %.1f MiB, over the 64 MiB target", mib)
	}
}
