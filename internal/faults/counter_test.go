package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"
)

// counterRun is the outcome of one counter run.
type counterRun struct {
	acked, unknown, refused int
	final                   int
	faults                  map[string]int
}

// TestCounter is Jepsen's counter: clients increment one number by
// reading it and writing n+1 under If-Match, retrying on 412. Every
// acknowledged increment must be in the final value, and nothing else but
// increments whose answer was lost: acked <= final <= acked + unknown.
// It runs without faults and with kill -9, pauses and cut connections.
//
// The write declares what it read, as README asks of a value computed
// from another: a JSON Patch test of the old value, or a strict PUT. (A
// plain PUT of n+1 from a stale ETag is not an increment: when another
// client has already written the same n+1, REBASE.md's exemption E1
// accepts it as a no-op.)
func TestCounter(t *testing.T) {
	needBinary(t)
	clients, each := 8, 25
	if *long {
		each = 200
	}
	for _, tc := range []struct {
		name   string
		write  string
		faults []string
	}{
		{"TestOp/NoFaults", "test", nil},
		{"TestOp/Faults", "test", []string{"kill", "pause", "cut"}},
		{"StrictPut/NoFaults", "strict", nil},
		{"StrictPut/Faults", "strict", []string{"kill", "pause", "cut"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := each
			if tc.faults != nil {
				n = 3 * each // long enough for a few faults
			}
			r := runCounter(t, clients, n, tc.write, tc.faults)
			t.Logf("COUNTER %s: %d clients, %d acknowledged increments, %d without an answer, %d refused with 412 and retried, final value %d, faults %v",
				tc.name, clients, r.acked, r.unknown, r.refused, r.final, r.faults)
			if r.final < r.acked || r.final > r.acked+r.unknown {
				t.Fatalf("final value %d outside [%d, %d]: lost or invented increments", r.final, r.acked, r.acked+r.unknown)
			}
			if len(tc.faults) == 0 && (r.unknown != 0 || r.final != clients*n) {
				t.Fatalf("without faults: %d unknown, final %d, want 0 and %d", r.unknown, r.final, clients*n)
			}
		})
	}
}

func runCounter(t *testing.T, clients, each int, write string, faults []string) counterRun {
	t.Helper()
	srv := startPatchd(t)
	px := proxied(t, srv)
	base := "http://" + px.Addr() + "/docs/counter/n"
	setup := client(10 * time.Second)
	mustCall(t, setup, "PUT", base, `{"n":0}`, 201, "Content-Type", "application/json")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		mu  sync.Mutex
		run counterRun
		wg  sync.WaitGroup
	)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client(1500 * time.Millisecond)
			lc := &linClient{base: "http://" + px.Addr(), http: c}
			for done := 0; done < each && ctx.Err() == nil; {
				r := call(ctx, c, "GET", base, "")
				if r.err != nil || r.status != 200 {
					lc.awaitServer()
					continue
				}
				var v struct{ N int }
				if err := json.Unmarshal(r.body, &v); err != nil {
					t.Errorf("GET body %q: %v", r.body, err)
					return
				}
				var w reply
				if write == "test" {
					w = call(ctx, c, "PATCH", base, fmt.Sprintf(`[{"op":"test","path":"/n","value":%d},{"op":"replace","path":"/n","value":%d}]`, v.N, v.N+1),
						"Content-Type", "application/json-patch+json", "If-Match", r.header.Get("ETag"))
				} else {
					w = call(ctx, c, "PUT", base, fmt.Sprintf(`{"n":%d}`, v.N+1),
						"Content-Type", "application/json", "If-Match", r.header.Get("ETag"), "Prefer", "handling=strict")
				}
				mu.Lock()
				switch {
				case w.err != nil:
					run.unknown++
					done++
				case w.status == 200:
					run.acked++
					done++
				case w.status == 412:
					run.refused++
				default:
					t.Errorf("PUT: %d %s", w.status, w.body)
				}
				mu.Unlock()
				if w.err != nil {
					lc.awaitServer()
				}
			}
		}()
	}
	nemDone := make(chan map[string]int, 1)
	nctx, stopNemesis := context.WithCancel(ctx)
	go func() { nemDone <- nemesis(nctx, t, srv, px, faults, uint64(time.Now().UnixNano())) }()
	wg.Wait()
	stopNemesis()
	run.faults = <-nemDone
	r := mustCall(t, setup, "GET", base, "", 200)
	var v struct{ N int }
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatal(err)
	}
	run.final = v.N
	return run
}

// TestFieldCounters edits one document from stale ETags through rebase:
// each client owns one field and sets it to 1, 2, 3... with a merge
// patch, always naming the ETag of its own previous answer, which other
// clients' writes have made stale. Disjoint fields never conflict, so
// every write must succeed, most of them rebased. Each write carries an
// Idempotency-Key, and a write whose answer was lost to a fault is sent
// again with the same key until it gets one: applied once, whether the
// first attempt had landed or not. So the final document must hold every
// client's last value exactly.
func TestFieldCounters(t *testing.T) {
	needBinary(t)
	clients, each := 8, 30
	if *long {
		each = 120
	}
	for _, tc := range []struct {
		name   string
		faults []string
	}{
		{"NoFaults", nil},
		{"Faults", []string{"kill", "pause", "cut"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			each := each
			if tc.faults != nil {
				each *= 4 // long enough for a few faults
			}
			srv := startPatchd(t)
			px := proxied(t, srv)
			url := "http://" + px.Addr() + "/docs/counter/fields"
			setup := client(10 * time.Second)
			etag0 := mustCall(t, setup, "PUT", url, `{}`, 201, "Content-Type", "application/json").header.Get("ETag")

			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			lastAcked := make([]int, clients)
			var mu sync.Mutex
			acked, rebased, retries, replayed, inUse := 0, 0, 0, 0, 0
			var wg sync.WaitGroup
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := client(1500 * time.Millisecond)
					lc := &linClient{base: "http://" + px.Addr(), http: c}
					etag := etag0
					for k := 1; k <= each && ctx.Err() == nil; k++ {
						key := fmt.Sprintf(`"c%d-%d"`, i, k)
						for attempt := 0; ctx.Err() == nil; attempt++ {
							w := call(ctx, c, "PATCH", url, fmt.Sprintf(`{"c%d":%d}`, i, k),
								"Content-Type", "application/merge-patch+json", "If-Match", etag, "Idempotency-Key", key)
							mu.Lock()
							if attempt > 0 {
								retries++
							}
							done := true
							switch {
							case w.err != nil:
								done = false
							case w.status == 409 && w.problem() == "idempotency-key-in-use":
								inUse++
								done = false
							case w.status == 200:
								acked++
								lastAcked[i] = k
								etag = w.header.Get("ETag")
								if w.header.Get("Rebased-From") != "" {
									rebased++
								}
								if w.header.Get("Idempotent-Replayed") == "true" {
									replayed++
								}
							default:
								t.Errorf("client %d write %d: %d %s (disjoint edits must rebase)", i, k, w.status, w.body)
							}
							mu.Unlock()
							if done {
								break
							}
							lc.awaitServer()
						}
					}
				}()
			}
			nemDone := make(chan map[string]int, 1)
			nctx, stopNemesis := context.WithCancel(ctx)
			go func() { nemDone <- nemesis(nctx, t, srv, px, tc.faults, uint64(time.Now().UnixNano())) }()
			wg.Wait()
			stopNemesis()
			faults := <-nemDone
			r := mustCall(t, setup, "GET", url, "", 200)
			var final map[string]int
			if err := json.Unmarshal(r.body, &final); err != nil {
				t.Fatal(err)
			}
			lost := 0
			for i := range clients {
				if got := final[fmt.Sprintf("c%d", i)]; got != each || lastAcked[i] != each {
					lost++
					t.Errorf("field c%d = %d, last acknowledged %d, want %d", i, got, lastAcked[i], each)
				}
			}
			t.Logf("FIELD COUNTERS %s: %d clients, %d acknowledged writes (%d rebased, %.0f%%), %d retries with the same Idempotency-Key (%d answered from the stored record, %d while still in flight), faults %v, fields lost %d",
				tc.name, clients, acked, rebased, 100*float64(rebased)/float64(max(acked, 1)), retries, replayed, inUse, faults, lost)
		})
	}
}
