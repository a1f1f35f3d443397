// Command patchd-streambench measures patchd's change feed streams on a
// patchd process of their own, over loopback:
//
//		go run ./cmd/patchd-streambench [-samples 3] [-duration 5s] [-db URL]
//
//	  - latency: 10 POST /events streams, each following the same 100
//	    documents (1,000 subscriptions), while writers send 1,000 writes a
//	    second (one-op merge patches spread over the documents): the time
//	    from each write's answer to each stream's event for it, p50 and p99
//	    (an event that comes before the answer counts as 0). The same with
//	    10 streams that each follow the documents' collection instead.
//	  - memory: the server's resident size (VmRSS) and Go heap and stacks in
//	    use, with no streams, with 1,000 streams of one document each
//	    (GET .../events and POST /events), and with 100 streams of 100
//	    documents each: the cost of a stream and of a subscription.
//	  - write cost: 8 writers as fast as they can on 100 documents, with no
//	    stream, with 100 streams following the collection, with 100 following
//	    it with a where filter, and with 100 following one document each:
//	    throughput and p50/p99 of the writes.
//
// Runs are interleaved sample by sample; the report shows medians. patchd
// is built from this module unless -patchd names a binary; -db takes a
// postgres:// URL to measure that backend (default: a bbolt file in a
// temporary directory).
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "patchd-streambench:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	samples  int
	duration time.Duration
	patchd   string
	db       string
	docs     int
}

func run() error {
	var cfg config
	flag.IntVar(&cfg.samples, "samples", 3, "samples of every measurement, interleaved; the report shows medians")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "length of each timed run")
	flag.StringVar(&cfg.patchd, "patchd", "", "patchd binary (default: build it from this module)")
	flag.StringVar(&cfg.db, "db", "", "database: a postgres:// URL (default: a fresh bbolt file per sample)")
	flag.Parse()
	cfg.docs = 100
	dir, err := os.MkdirTemp("", "patchd-streambench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if cfg.patchd == "" {
		cfg.patchd = filepath.Join(dir, "patchd")
		out, err := exec.Command("go", "build", "-o", cfg.patchd, "github.com/patchd/patchd").CombinedOutput() // #nosec G204 -- fixed arguments
		if err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	var lat, latColl []latency
	var mems []memory
	costs := map[string][]writeCost{}
	for i := range cfg.samples {
		fmt.Fprintf(os.Stderr, "sample %d of %d\n", i+1, cfg.samples)
		for _, m := range []func() error{
			func() error { l, err := measureLatency(cfg, dir, false); lat = append(lat, l); return err },
			func() error { l, err := measureLatency(cfg, dir, true); latColl = append(latColl, l); return err },
			func() error { m, err := measureMemory(cfg, dir); mems = append(mems, m); return err },
			func() error {
				for _, kind := range writeCostKinds {
					c, err := measureWriteCost(cfg, dir, kind)
					if err != nil {
						return err
					}
					costs[kind] = append(costs[kind], c)
				}
				return nil
			},
		} {
			if err := m(); err != nil {
				return err
			}
		}
	}
	report(os.Stdout, cfg, lat, latColl, mems, costs)
	return nil
}

// server is one patchd process.
type server struct {
	cmd *exec.Cmd
	url string
	pid int
}

// start runs patchd on a fresh database (or cfg.db) on a free port.
func start(cfg config, dir string) (*server, error) {
	db := cfg.db
	if db == "" {
		f, err := os.CreateTemp(dir, "db-*")
		if err != nil {
			return nil, err
		}
		db = f.Name()
		_ = f.Close()
		_ = os.Remove(db)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	cmd := exec.Command(cfg.patchd, "--addr", addr, "--db", db, "--log-level", "warn", // #nosec G204 -- the binary we built or the one named with -patchd
		"--max-streams-per-client", "100000", "--max-conns-per-client", "100000", "--max-subscriptions", "1000")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, url: "http://" + addr, pid: cmd.Process.Pid}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := http.Get(s.url + "/healthz"); err == nil {
			_ = res.Body.Close()
			return s, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	return nil, errors.New("patchd did not start")
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Wait()
}

// client is the load's HTTP client: enough connections for every writer.
var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

// do sends one request and returns its status, ETag and the time its answer
// came.
func do(method, url, body string, hdr ...string) (int, string, time.Time, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", time.Time{}, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, "", time.Time{}, err
	}
	at := time.Now()
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return res.StatusCode, res.Header.Get("ETag"), at, nil
}

// seed creates the documents d0..d(n-1) of collection c.
func seed(s *server, c string, n int) error {
	for i := range n {
		st, _, _, err := do("PUT", fmt.Sprintf("%s/docs/%s/d%d", s.url, c, i), `{"n":0,"status":"open","pad":"`+strings.Repeat("x", 200)+`"}`, "Content-Type", "application/json")
		if err != nil || st != http.StatusCreated {
			return fmt.Errorf("seed: %d %v", st, err)
		}
	}
	return nil
}

// stream is one open stream that records the events it reads.
type stream struct {
	conn net.Conn
	mu   sync.Mutex
	seen map[string]time.Time // "id etag" -> when the event was read
	read atomic.Int64         // events read
}

// open sends method path body on a connection of its own and, once the
// answer is 200, reads its events in the background.
func open(s *server, method, path, body string, record bool) (*stream, error) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", method, path, len(body), body)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		_ = conn.Close()
		return nil, fmt.Errorf("%s %s: %d", method, path, res.StatusCode)
	}
	st := &stream{conn: conn, seen: map[string]time.Time{}}
	events := bufio.NewReader(res.Body) // chunked: read through the response
	go func() {
		for {
			line, err := events.ReadBytes('\n')
			if err != nil {
				return
			}
			if !record || !strings.HasPrefix(string(line), "data: ") {
				continue
			}
			now := time.Now()
			var ev struct{ ID, ETag string }
			if json.Unmarshal(line[6:], &ev) != nil || ev.ETag == "" {
				continue
			}
			st.read.Add(1)
			st.mu.Lock()
			st.seen[ev.ID+" "+ev.ETag] = now
			st.mu.Unlock()
		}
	}()
	return st, nil
}

// latency is one latency run's result.
type latency struct {
	p50, p99 time.Duration
	events   int
	writes   int
}

// measureLatency runs 10 streams of 100 documents (or of their
// collection) under 1,000 writes a second.
func measureLatency(cfg config, dir string, collection bool) (latency, error) {
	s, err := start(cfg, dir)
	if err != nil {
		return latency{}, err
	}
	defer s.stop()
	if err := seed(s, "lat", cfg.docs); err != nil {
		return latency{}, err
	}
	var subs []string
	for i := range cfg.docs {
		subs = append(subs, fmt.Sprintf(`{"c":"lat","id":"d%d","after":1}`, i))
	}
	body := `{"docs":[` + strings.Join(subs, ",") + `]}`
	if collection {
		body = `{"collections":[{"c":"lat"}]}`
	}
	var streams []*stream
	for range 10 {
		st, err := open(s, "POST", "/events", body, true)
		if err != nil {
			return latency{}, err
		}
		defer st.conn.Close()
		streams = append(streams, st)
	}
	time.Sleep(200 * time.Millisecond) // let the streams reach ready
	// 10 writers, each 100 writes a second, paced.
	const writers, perWriter = 10, 100
	var (
		mu   sync.Mutex
		acks = map[string]time.Time{}
		wg   sync.WaitGroup
	)
	end := time.Now().Add(cfg.duration)
	for w := range writers {
		wg.Go(func() {
			tick := time.NewTicker(time.Second / perWriter)
			defer tick.Stop()
			for n := 0; time.Now().Before(end); n++ {
				<-tick.C
				id := fmt.Sprintf("d%d", (w*perWriter+n)%cfg.docs)
				st, etag, at, err := do("PATCH", s.url+"/docs/lat/"+id, fmt.Sprintf(`{"n":%d}`, w*1_000_000+n),
					"Content-Type", "application/merge-patch+json", "If-Match", "*")
				if err != nil || st != http.StatusOK {
					continue
				}
				mu.Lock()
				acks[id+" "+etag] = at
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// Wait for the streams to catch up (bounded).
	want := int64(len(acks))
	deadline := time.Now().Add(30 * time.Second)
	for _, st := range streams {
		for st.read.Load() < want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	var ds []time.Duration
	for _, st := range streams {

		st.mu.Lock()
		for k, at := range acks {
			if seen, ok := st.seen[k]; ok {
				ds = append(ds, max(0, seen.Sub(at)))
			}
		}
		st.mu.Unlock()
	}
	slices.Sort(ds)
	if len(ds) == 0 {
		return latency{}, errors.New("no events")
	}
	return latency{p50: ds[len(ds)/2], p99: ds[len(ds)*99/100], events: len(ds), writes: len(acks)}, nil
}

// memory is one memory run's result, in bytes.
type memory struct {
	base, getStreams, postStreams, manySubs procMem
}

// procMem is the server's resident size and Go memory in use.
type procMem struct {
	rss, goInUse int64
}

// measure reads the server's memory after letting it settle.
func (s *server) measure() (procMem, error) {
	time.Sleep(500 * time.Millisecond)
	var m procMem
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return m, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			m.rss = kb << 10
		}
	}
	res, err := http.Get(s.url + "/metrics")
	if err != nil {
		return m, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		for _, name := range []string{"go_memstats_heap_inuse_bytes ", "go_memstats_stack_inuse_bytes "} {
			if v, ok := strings.CutPrefix(sc.Text(), name); ok {
				f, _ := strconv.ParseFloat(v, 64)
				m.goInUse += int64(f)
			}
		}
	}
	return m, sc.Err()
}

// measureMemory opens 1,000 streams of one document (each route), then
// 100 streams of 100 documents, on a fresh server each time.
func measureMemory(cfg config, dir string) (memory, error) {
	var out memory
	for step, f := range []func(s *server) ([]*stream, error){
		func(*server) ([]*stream, error) { return nil, nil },
		func(s *server) ([]*stream, error) { return openMany(s, 1000, "GET", "/docs/mem/d0/events", "") },
		func(s *server) ([]*stream, error) {
			return openMany(s, 1000, "POST", "/events", `{"docs":[{"c":"mem","id":"d0"}]}`)
		},
		func(s *server) ([]*stream, error) {
			var subs []string
			for i := range cfg.docs {
				subs = append(subs, fmt.Sprintf(`{"c":"mem","id":"d%d"}`, i))
			}
			return openMany(s, 100, "POST", "/events", `{"docs":[`+strings.Join(subs, ",")+`]}`)
		},
	} {
		s, err := start(cfg, dir)
		if err != nil {
			return out, err
		}
		if err := seed(s, "mem", cfg.docs); err != nil {
			s.stop()
			return out, err
		}
		streams, err := f(s)
		if err != nil {
			s.stop()
			return out, err
		}
		m, err := s.measure()
		for _, st := range streams {
			_ = st.conn.Close()
		}
		s.stop()
		if err != nil {
			return out, err
		}
		*[]*procMem{&out.base, &out.getStreams, &out.postStreams, &out.manySubs}[step] = m
	}
	return out, nil
}

func openMany(s *server, n int, method, path, body string) ([]*stream, error) {
	var out []*stream
	for range n {
		st, err := open(s, method, path, body, false)
		if err != nil {
			for _, o := range out {
				_ = o.conn.Close()
			}
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// writeCostKinds are the write-cost runs: what follows the writes.
var writeCostKinds = []string{"none", "collection x100", "collection+where x100", "document x100"}

// writeCost is one write-cost run's result.
type writeCost struct {
	perSec   float64
	p50, p99 time.Duration
}

// measureWriteCost runs 8 writers as fast as they can with 100 streams of
// one kind open.
func measureWriteCost(cfg config, dir, kind string) (writeCost, error) {
	s, err := start(cfg, dir)
	if err != nil {
		return writeCost{}, err
	}
	defer s.stop()
	if err := seed(s, "wc", cfg.docs); err != nil {
		return writeCost{}, err
	}
	for i := range 100 {
		var body string
		switch kind {
		case "none":
			continue
		case "collection x100":
			body = `{"collections":[{"c":"wc"}]}`
		case "collection+where x100":
			body = `{"collections":[{"c":"wc","where":{"/status":"open","/n":{"ge":0}}}]}`
		case "document x100":
			body = fmt.Sprintf(`{"docs":[{"c":"wc","id":"d%d"}]}`, i%cfg.docs)
		}
		st, err := open(s, "POST", "/events", body, false)
		if err != nil {
			return writeCost{}, err
		}
		defer st.conn.Close()
	}
	const writers = 8
	var (
		mu sync.Mutex
		ds []time.Duration
		wg sync.WaitGroup
	)
	begin := time.Now()
	end := begin.Add(cfg.duration)
	for w := range writers {
		wg.Go(func() {
			for n := 0; time.Now().Before(end); n++ {
				id := fmt.Sprintf("d%d", (w*7919+n)%cfg.docs)
				t0 := time.Now()
				st, _, at, err := do("PATCH", s.url+"/docs/wc/"+id, fmt.Sprintf(`{"n":%d}`, n), "Content-Type", "application/merge-patch+json", "If-Match", "*")
				if err != nil || st != http.StatusOK {
					continue
				}
				mu.Lock()
				ds = append(ds, at.Sub(t0))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	slices.Sort(ds)
	if len(ds) == 0 {
		return writeCost{}, errors.New("no writes")
	}
	return writeCost{perSec: float64(len(ds)) / elapsed.Seconds(), p50: ds[len(ds)/2], p99: ds[len(ds)*99/100]}, nil
}

// median returns the median of xs by key.
func median[T any](xs []T, key func(T) float64) float64 {
	vs := make([]float64, len(xs))
	for i, x := range xs {
		vs[i] = key(x)
	}
	slices.Sort(vs)
	return vs[len(vs)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func report(w io.Writer, cfg config, lat, latColl []latency, mems []memory, costs map[string][]writeCost) {
	backend := "bbolt"
	if cfg.db != "" {
		backend = "PostgreSQL"
	}
	fmt.Fprintf(w, "patchd-streambench: %s, %d samples of %v, medians\n\n", backend, cfg.samples, cfg.duration)
	fmt.Fprintln(w, "| delivery, write answer to event | p50 ms | p99 ms | events of writes |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, r := range []struct {
		name string
		xs   []latency
	}{{"10 streams x 100 documents (1,000 subscriptions), 1,000 writes/s", lat}, {"10 streams x 1 collection of the 100 documents, 1,000 writes/s", latColl}} {
		fmt.Fprintf(w, "| %s | %.2f | %.2f | %.0f of %.0f x 10 |\n", r.name,
			median(r.xs, func(l latency) float64 { return ms(l.p50) }),
			median(r.xs, func(l latency) float64 { return ms(l.p99) }),
			median(r.xs, func(l latency) float64 { return float64(l.events) }),
			median(r.xs, func(l latency) float64 { return float64(l.writes) }))
	}
	kb := func(f func(memory) int64) float64 {
		return median(mems, func(m memory) float64 { return float64(f(m)) / 1024 })
	}
	fmt.Fprintln(w, "\n| memory | resident KB | Go heap+stacks KB |")
	fmt.Fprintln(w, "|---|---|---|")
	fmt.Fprintf(w, "| per GET .../events stream (1,000 streams) | %.1f | %.1f |\n",
		kb(func(m memory) int64 { return (m.getStreams.rss - m.base.rss) / 1000 }),
		kb(func(m memory) int64 { return (m.getStreams.goInUse - m.base.goInUse) / 1000 }))
	fmt.Fprintf(w, "| per POST /events stream of 1 document (1,000 streams) | %.1f | %.1f |\n",
		kb(func(m memory) int64 { return (m.postStreams.rss - m.base.rss) / 1000 }),
		kb(func(m memory) int64 { return (m.postStreams.goInUse - m.base.goInUse) / 1000 }))
	fmt.Fprintf(w, "| per further subscription (100 streams x 100 documents) | %.2f | %.2f |\n",
		kb(func(m memory) int64 {
			return (m.manySubs.rss - m.base.rss - 100*(m.postStreams.rss-m.base.rss)/1000) / (100 * 99)
		}),
		kb(func(m memory) int64 {
			return (m.manySubs.goInUse - m.base.goInUse - 100*(m.postStreams.goInUse-m.base.goInUse)/1000) / (100 * 99)
		}))
	fmt.Fprintln(w, "\n| 8 writers on 100 documents, with | writes/s | vs none | p50 ms | p99 ms |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, kind := range writeCostKinds {
		cs := costs[kind]
		// The ratio to the run without streams of the same sample, so that
		// the machine's load cancels out.
		ratios := make([]float64, len(cs))
		for i, c := range cs {
			ratios[i] = c.perSec / costs["none"][i].perSec
		}
		fmt.Fprintf(w, "| %s | %.0f | %.2f | %.2f | %.2f |\n", kind,
			median(cs, func(c writeCost) float64 { return c.perSec }),
			median(ratios, func(r float64) float64 { return r }),
			median(cs, func(c writeCost) float64 { return ms(c.p50) }),
			median(cs, func(c writeCost) float64 { return ms(c.p99) }))
	}
}
