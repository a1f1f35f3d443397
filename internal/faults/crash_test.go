package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// TestCrashDurability kills patchd with SIGKILL at random moments while
// writers add unique fields to a few documents, then, with the process
// gone, opens the file itself: bbolt's consistency check must pass, every
// acknowledged field must be there, and each document's history must be
// intact (seqs 1..n without gaps, and replaying every version's ops from
// nothing gives each version's ETag and the current body). Then it
// restarts patchd and checks the same through HTTP. 20 cycles (200 with
// -faults.long). The writers move to new documents every 10 cycles, so
// that the cost of replaying a document's whole history stays bounded;
// every acknowledged field of every document is checked after every
// crash.
func TestCrashDurability(t *testing.T) {
	needBinary(t)
	cycles := 20
	if *long {
		cycles = 200
	}
	const perGroup, writers = 3, 6 // documents written at a time
	srv := startPatchd(t)
	c := client(1500 * time.Millisecond)
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	acked := map[string]map[string]bool{} // per document id, the fields acknowledged
	var restarts []time.Duration
	totalAcked, totalUnknown, verified := 0, 0, 0
	var group []string
	for cycle := range cycles {
		base := "http://" + srv.Addr()
		if cycle%10 == 0 {
			group = group[:0]
			for d := range perGroup {
				id := fmt.Sprintf("g%dd%d", cycle/10, d)
				mustCall(t, c, "PUT", fmt.Sprintf("%s/docs/crash/%s", base, id), `{}`, 201, "Content-Type", "application/json")
				group = append(group, id)
				acked[id] = map[string]bool{}
			}
		}
		var mu sync.Mutex
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := group[w%perGroup]
				url := fmt.Sprintf("%s/docs/crash/%s", base, d)
				etag := ""
				for n := 0; ctx.Err() == nil; n++ {
					if etag == "" {
						r := call(ctx, c, "GET", url, "")
						if r.err != nil || r.status != 200 {
							return // the server is gone
						}
						etag = r.header.Get("ETag")
					}
					field := fmt.Sprintf("k%dw%dn%d", cycle, w, n)
					r := call(ctx, c, "PATCH", url, fmt.Sprintf(`{%q:%d}`, field, n),
						"Content-Type", "application/merge-patch+json", "If-Match", etag)
					switch {
					case r.err != nil:
						mu.Lock()
						totalUnknown++
						mu.Unlock()
						return
					case r.status == 200:
						mu.Lock()
						acked[d][field] = true
						totalAcked++
						mu.Unlock()
						etag = r.header.Get("ETag")
					default:
						t.Errorf("PATCH: %d %s", r.status, r.body)
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(50+rnd.IntN(450)) * time.Millisecond) // the moment to crash at
		if err := srv.Kill(); err != nil {
			t.Fatal(err)
		}
		cancel()
		wg.Wait()
		if t.Failed() {
			return
		}
		// The process is gone: check the file directly.
		verified += checkFile(t, srv.DB, group, acked)
		start := time.Now()
		if _, err := srv.Start(); err != nil {
			t.Fatalf("restart %d: %v", cycle, err)
		}
		restarts = append(restarts, time.Since(start))
		for d := range acked {
			r := mustCall(t, c, "GET", fmt.Sprintf("http://%s/docs/crash/%s", srv.Addr(), d), "", 200)
			var body map[string]any
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatal(err)
			}
			for f := range acked[d] {
				if _, ok := body[f]; !ok {
					t.Fatalf("cycle %d: acknowledged field %s missing from %s after restart", cycle, f, d)
				}
			}
		}
	}
	slices.Sort(restarts)
	t.Logf("CRASH: %d kill -9 cycles, %d acknowledged writes (%d without an answer), %d acknowledged-write checks after restarts, 0 lost; bbolt check and the history replay of the documents being written passed every cycle; restart median %v, max %v",
		cycles, totalAcked, totalUnknown, verified, restarts[len(restarts)/2].Round(time.Millisecond), restarts[len(restarts)-1].Round(time.Millisecond))
}

// checkFile opens a dead server's database, runs bbolt's consistency
// check, checks every document for its acknowledged fields, and replays
// the whole history of the documents in replay. It returns the number of
// acknowledged fields checked.
func checkFile(t *testing.T, path string, replay []string, acked map[string]map[string]bool) int {
	t.Helper()
	st, err := bolt.Open(path, store.Options{})
	if err != nil {
		t.Fatalf("open after kill: %v", err)
	}
	defer st.Close()
	if err := st.Check(context.Background()); err != nil {
		t.Fatalf("bbolt check after kill: %v", err)
	}
	ctx := context.Background()
	checked := 0
	for id, fields := range acked {
		doc, err := st.Get(ctx, "crash", id)
		if err != nil {
			t.Fatalf("%s after kill: %v", id, err)
		}
		var body map[string]any
		if err := json.Unmarshal(doc.Body, &body); err != nil {
			t.Fatal(err)
		}
		for f := range fields {
			if _, ok := body[f]; !ok {
				t.Fatalf("acknowledged field %s missing from %s in the file", f, id)
			}
			checked++
		}
		if !slices.Contains(replay, id) {
			continue
		}
		vs, _, err := st.History(ctx, "crash", id, 0, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		sort.Slice(vs, func(i, j int) bool { return vs[i].Seq < vs[j].Seq })
		if len(vs) == 0 || vs[len(vs)-1].Seq != doc.Seq || vs[len(vs)-1].ETag != doc.ETag {
			t.Fatalf("%s: document is seq %d %s, history ends elsewhere", id, doc.Seq, doc.ETag)
		}
		// Undo the versions from the newest: each must lead to the state its
		// predecessor names, and the first to no document at all.
		cur, err := patch.Parse(doc.Body, patch.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		exists := true
		for i := len(vs) - 1; i >= 0; i-- {
			v := vs[i]
			if v.Seq != uint64(i+1) {
				t.Fatalf("%s: version %d has seq %d", id, i+1, v.Seq)
			}
			if got := store.ETagOf(patch.Canonical(cur)); exists && got != v.ETag {
				t.Fatalf("%s seq %d: history reverts to %s, version says %s", id, v.Seq, got, v.ETag)
			}
			ops, err := patch.DecodeOps(v.Ops)
			if err != nil {
				t.Fatalf("%s seq %d: %v", id, v.Seq, err)
			}
			if cur, exists, err = patch.Revert(cur, ops); err != nil {
				t.Fatalf("%s seq %d: reverting history: %v", id, v.Seq, err)
			}
		}
		if exists {
			t.Fatalf("%s: reverting every version leaves %s, not nothing", id, patch.Canonical(cur))
		}
	}
	return checked
}
