package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// linConfig sizes one recorded history.
type linConfig struct {
	clients  int
	docs     int
	opsEach  int           // most operations per client
	duration time.Duration // longest run
	faults   []string      // "kill", "pause", "cut"; one is injected every 150-500 ms
	seed     uint64
}

// linStats sums up the histories a test checked.
type linStats struct {
	histories, ops, unknown, faults int
	faultsBy                        map[string]int
	checkTime                       time.Duration
}

// recorder collects a history with monotonic call and return times.
type recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

func (r *recorder) now() int64 { return time.Since(r.start).Nanoseconds() }

// unknownReturn is the return time of a request that got no answer: it
// may take effect at any time after its call.
const unknownReturn = int64(1) << 62

func (r *recorder) add(client int, in input, call int64, out output) {
	ret := r.now()
	if out.Status == 0 {
		ret = unknownReturn
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// seenVersion is a version of a document a client was told about.
type seenVersion struct {
	etag string
	doc  fields
}

// linClient is one client of the history: it remembers the versions it
// saw, and edits from the newest or an older one.
type linClient struct {
	id   int
	base string
	http *http.Client
	rnd  *rand.Rand
	rec  *recorder
	seen map[int][]seenVersion // per document, oldest first; nil entry after a 404
	gone map[int]bool          // the last answer about the document was 404
	n    int
}

func (c *linClient) unique() string {
	c.n++
	return fmt.Sprintf("c%dn%d", c.id, c.n)
}

func (c *linClient) remember(doc int, etag string, f fields) {
	s := append(c.seen[doc], seenVersion{etag, f})
	if len(s) > 6 {
		s = s[len(s)-6:]
	}
	c.seen[doc] = s
	c.gone[doc] = false
}

// pick chooses the version to edit from: mostly the newest seen, often an
// older one (a stale edit), rarely one that never existed.
func (c *linClient) pick(doc int) (seenVersion, bool) {
	s := c.seen[doc]
	if len(s) == 0 {
		return seenVersion{}, false
	}
	switch r := c.rnd.IntN(100); {
	case r < 3:
		return seenVersion{etag: `"0000000000000000000000000000bad0"`, doc: s[len(s)-1].doc}, true
	case r < 35:
		return s[c.rnd.IntN(len(s))], true
	}
	return s[len(s)-1], true
}

// next makes one request and records it.
func (c *linClient) next(ctx context.Context) {
	doc := c.rnd.IntN(len(c.seen) + 0)
	url := fmt.Sprintf("%s/docs/lin/d%d", c.base, doc)
	in := input{Doc: doc}
	var method, body string
	var hdr []string
	v, known := c.pick(doc)
	r := c.rnd.IntN(100)
	switch {
	case r < 35 || (!known && !c.gone[doc]):
		in.Op, method = opGet, "GET"
	case !known || (c.gone[doc] && r < 90) || r < 37:
		in.Op, method = opCreate, "PUT"
		for i := range in.Base {
			in.Base[i] = c.unique()
		}
		body, hdr = in.Base.canonical(), []string{"Content-Type", "application/json", "If-None-Match", "*"}
	case r < 60:
		in.Op, method, in.IfMatch = opMerge, "PATCH", v.etag
		in.Set = map[int]string{c.rnd.IntN(nFields): c.unique()}
		in.Strict = c.rnd.IntN(10) == 0
		m := map[string]string{}
		for i, val := range in.Set {
			m[fmt.Sprintf("f%d", i)] = val
		}
		b, _ := json.Marshal(m)
		body, hdr = string(b), []string{"Content-Type", "application/merge-patch+json", "If-Match", v.etag}
		if in.Strict {
			hdr = append(hdr, "Prefer", "handling=strict")
		}
	case r < 80:
		in.Op, method, in.IfMatch = opJSON, "PATCH", v.etag
		k := c.rnd.IntN(nFields)
		in.Set = map[int]string{k: c.unique()}
		var ops []string
		if c.rnd.IntN(3) == 0 {
			j := c.rnd.IntN(nFields)
			in.Reads = map[int]string{j: v.doc[j]}
			ops = append(ops, fmt.Sprintf(`{"op":"test","path":"/f%d","value":%q}`, j, v.doc[j]))
		}
		ops = append(ops, fmt.Sprintf(`{"op":"replace","path":"/f%d","value":%q}`, k, in.Set[k]))
		body, hdr = "["+strings.Join(ops, ",")+"]", []string{"Content-Type", "application/json-patch+json", "If-Match", v.etag}
	case r < 97:
		in.Op, method, in.IfMatch, in.Base = opPut, "PUT", v.etag, v.doc
		in.Set = map[int]string{c.rnd.IntN(nFields): c.unique(), c.rnd.IntN(nFields): c.unique()}
		full := v.doc
		for i, val := range in.Set {
			full[i] = val
		}
		body, hdr = full.canonical(), []string{"Content-Type", "application/json", "If-Match", v.etag}
	default:
		latest := c.seen[doc][len(c.seen[doc])-1].etag
		in.Op, method, in.IfMatch = opDelete, "DELETE", latest
		hdr = []string{"If-Match", latest}
	}
	call := c.rec.now()
	rep := doCall(ctx, c.http, method, url, body, hdr...)
	out := output{Status: rep.status}
	if rep.err != nil {
		out.Status = 0
	}
	switch {
	case out.Status >= 400:
		out.Problem = rep.problem()
		if out.Problem == "" {
			out.Problem = fmt.Sprintf("not a problem body: %q %v", rep.body, rep.header)
		}
	case out.Status == 200 || out.Status == 201:
		out.ETag = rep.header.Get("ETag")
		out.RebasedFrom = rep.header.Get("Rebased-From")
		f, ok := parseFields(rep.body)
		if !ok {
			out.ETag = "malformed body " + string(rep.body)
		}
		out.Body = f
		c.remember(doc, out.ETag, f)
	case out.Status == 204:
		c.gone[doc] = true
	}
	if out.Status == 404 {
		c.gone[doc] = true
	}
	if out.Status == 0 && in.Op == opGet {
		// A read without an answer constrains nothing: leave it out.
	} else {
		c.rec.add(c.id, in, call, out)
	}
	if out.Status == 0 {
		c.awaitServer()
	}
}

// awaitServer waits, after a request got no answer, until the server
// answers again, so that a fault leaves each client at most one request
// without an answer.
func (c *linClient) awaitServer() {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		r := call(context.Background(), c.http, "GET", c.base+"/healthz", "")
		if r.err == nil && r.status == 200 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// doCall is call, with a context of its own per request.
func doCall(ctx context.Context, c *http.Client, method, url, body string, hdr ...string) reply {
	return call(ctx, c, method, url, body, hdr...)
}

// runHistory records one history against a fresh server, injecting
// faults, and checks it.
func runHistory(t *testing.T, cfg linConfig, st *linStats) {
	t.Helper()
	srv := startPatchd(t)
	px := proxied(t, srv)
	base := "http://" + px.Addr()

	rec := &recorder{start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.duration)
	defer cancel()
	var wg sync.WaitGroup
	for i := range cfg.clients {
		c := &linClient{id: i, base: base, http: client(1500 * time.Millisecond), rec: rec,
			rnd: rand.New(rand.NewPCG(cfg.seed, uint64(i))), seen: map[int][]seenVersion{}, gone: map[int]bool{}}
		for d := range cfg.docs {
			c.seen[d] = nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < cfg.opsEach && ctx.Err() == nil; n++ {
				c.next(context.Background())
			}
		}()
	}
	nemDone := make(chan map[string]int, 1)
	go func() { nemDone <- nemesis(ctx, t, srv, px, cfg.faults, cfg.seed) }()
	wg.Wait()
	cancel()
	faults := <-nemDone
	if t.Failed() {
		return
	}
	// Final reads, after every fault, anchor the end state.
	final := &linClient{id: cfg.clients, base: base, http: client(10 * time.Second), rec: rec,
		rnd: rand.New(rand.NewPCG(cfg.seed, 99)), seen: map[int][]seenVersion{}, gone: map[int]bool{}}
	for d := range cfg.docs {
		call := rec.now()
		rep := call2(final, d)
		if rep.err != nil {
			t.Fatalf("final read of d%d: %v", d, rep.err)
		}
		out := output{Status: rep.status, Problem: rep.problem()}
		if rep.status == 200 {
			out.ETag = rep.header.Get("ETag")
			out.Body, _ = parseFields(rep.body)
		}
		rec.add(final.id, input{Op: opGet, Doc: d}, call, out)
	}

	unknown := 0
	outcomes := map[string]int{}
	for _, op := range rec.ops {
		in, out := op.Input.(input), op.Output.(output)
		if out.Status == 0 {
			unknown++
		}
		key := fmt.Sprintf("%s:%d", in.Op, out.Status)
		if out.Problem != "" {
			key += "/" + out.Problem
		}
		if out.RebasedFrom != "" {
			key += "/rebased"
		}
		outcomes[key]++
	}
	if testing.Verbose() {
		t.Logf("outcomes: %v", outcomes)
	}
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(model.ToModel(), rec.ops, 3*time.Minute)
	took := time.Since(start)
	st.histories++
	st.ops += len(rec.ops)
	st.unknown += unknown
	st.checkTime += took
	for f, n := range faults {
		st.faults += n
		st.faultsBy[f] += n
	}
	t.Logf("history: %d ops (%d unknown), faults %v, checked in %v: %s", len(rec.ops), unknown, faults, took.Round(time.Millisecond), res)
	if res != porcupine.Ok {
		path := filepath.Join(os.TempDir(), fmt.Sprintf("patchd-lin-%d.html", time.Now().UnixNano()))
		if err := porcupine.VisualizePath(model.ToModel(), info, path); err == nil {
			t.Logf("visualization: %s", path)
		}
		if res == porcupine.Illegal {
			dumpIllegal(t, rec.ops, strings.TrimSuffix(path, ".html")+".txt")
		}
		t.Fatalf("history is %s", res)
	}
}

// call2 reads document d for the final anchor.
func call2(c *linClient, d int) reply {
	return call(context.Background(), c.http, "GET", fmt.Sprintf("%s/docs/lin/d%d", c.base, d), "")
}

// TestLinearizable records concurrent histories of 16 clients editing 8
// documents (GET, create, PUT, JSON Patch with and without test, Merge
// Patch, strict and rebased, DELETE; fresh and stale If-Match; unique
// values) against a real patchd, with no faults and with kill -9 and
// restart, SIGSTOP and SIGCONT, and connections cut mid-request, and
// checks each with porcupine against the model. Requests that got no
// answer may or may not have taken effect.
func TestLinearizable(t *testing.T) {
	needBinary(t)
	runs, dur, opsEach := 1, 4*time.Second, 120
	if *long {
		runs, dur, opsEach = 5, 20*time.Second, 600
	}
	total := &linStats{faultsBy: map[string]int{}}
	for _, tc := range []struct {
		name   string
		faults []string
	}{
		{"NoFaults", nil},
		{"Kill", []string{"kill"}},
		{"Pause", []string{"pause"}},
		{"Cut", []string{"cut"}},
		{"All", []string{"kill", "pause", "cut"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range runs {
				runHistory(t, linConfig{clients: 16, docs: 8, opsEach: opsEach, duration: dur, faults: tc.faults,
					seed: uint64(time.Now().UnixNano()) + uint64(i)}, total)
			}
		})
	}
	t.Logf("LINEARIZABILITY: %d histories, %d operations (%d without an answer), %d faults %v, checked in %v total; 0 violations",
		total.histories, total.ops, total.unknown, total.faults, total.faultsBy, total.checkTime.Round(time.Millisecond))
}

// dumpIllegal writes, for each document whose history alone is not
// linearizable, its operations in call order, to help find the cause.
func dumpIllegal(t *testing.T, ops []porcupine.Operation, path string) {
	t.Helper()
	m := model
	m.Partition = nil
	var b strings.Builder
	for _, part := range model.Partition(ops) {
		if porcupine.CheckOperationsTimeout(m.ToModel(), part, time.Minute) != porcupine.Illegal {
			continue
		}
		sorted := append([]porcupine.Operation(nil), part...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i].Call < sorted[j].Call })
		// The shortest prefix (in time) that is already illegal: ops
		// still pending at its end count as unanswered.
		prefix := func(end int64) []porcupine.Operation {
			var out []porcupine.Operation
			for _, op := range sorted {
				switch {
				case op.Return <= end:
					out = append(out, op)
				case op.Call <= end:
					op.Output, op.Return = output{}, unknownReturn
					out = append(out, op)
				}
			}
			return out
		}
		var ends []int64
		for _, op := range sorted {
			if op.Return != unknownReturn {
				ends = append(ends, op.Return)
			}
		}
		sort.Slice(ends, func(i, j int) bool { return ends[i] < ends[j] })
		cut := sort.Search(len(ends), func(i int) bool {
			return porcupine.CheckOperationsTimeout(m.ToModel(), prefix(ends[i]), time.Minute) == porcupine.Illegal
		})
		if cut < len(ends) {
			fmt.Fprintf(&b, "shortest illegal prefix ends at %d\n", ends[cut])
			sorted = prefix(ends[cut])
		}
		for _, op := range sorted {
			ret := fmt.Sprint(op.Return)
			if op.Return == unknownReturn {
				ret = "?"
			}
			fmt.Fprintf(&b, "client %2d [%d, %s] %s\n", op.ClientId, op.Call, ret, model.DescribeOperation(op.Input, op.Output))
		}
		b.WriteString("\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err == nil {
		t.Logf("illegal documents: %s", path)
	}
}
