// Command patchd-load drives patchd over loopback with concurrent clients
// and prints throughput, latency percentiles, status counts, 412s and
// retries per successful edit, and the edits lost (every document is read
// back at the end). In the same run it drives a no-op Echo handler and the
// naive durable references (one bbolt transaction per request doing
// evanphx Apply and SHA-256 inside it; the same through db.Batch with a
// 1 ms delay), so that results read as ratios to this machine's own
// ceiling. Samples of every run are interleaved, and the summary gives
// medians and the median of the ratios measured within each sample.
//
//	go run ./cmd/patchd-load                    # every scenario, 3 samples of 3 s
//	go run ./cmd/patchd-load -scenarios 2,3 -duration 10s
//	go run ./cmd/patchd-load -patchd ./patchd   # the real binary as the server
//	go run ./cmd/patchd-load -addr http://127.0.0.1:8080 -refs none
//
// Scenarios (README "Performance"):
//
//	1  fresh If-Match one-op JSON Patch over -docs documents of 1 KB
//	2  -clients clients on one document, each owning a field, editing from
//	   the ETag of its own last answer (the rebase path)
//	3  the same with Prefer: handling=strict and a client retry loop
//	4  conditional GET answered 304
//	5  one-op JSON Patches on -big-docs documents of 1 MB
//
// Every server runs in a process of its own (this program's serve
// subcommand, or the binary given with -patchd) unless -inproc is set, so
// that its peak resident size can be read from /proc.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/patchd/patchd/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		err = serveMain(ctx, os.Args[2:], os.Stdout)
	} else {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "patchd-load:", err)
		os.Exit(1)
	}
}

// options are the command line of a load run.
type options struct {
	addr       string
	bin        string
	inproc     bool
	scenarios  map[int]bool
	refs       []string
	clients    int
	duration   time.Duration
	samples    int
	docs       int
	bigDocs    int
	bigClients int
	readDocs   int
	retry      string
	dir        string
	cpuprofile string
	heap       string
	retention  store.Retention
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("patchd-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var scen, refs string
	fs.StringVar(&o.addr, "addr", "", "drive the patchd already serving at this URL instead of starting one")
	fs.StringVar(&o.bin, "patchd", "", "run this patchd binary as the server under test (default: the same handlers and store, in a child process)")
	fs.BoolVar(&o.inproc, "inproc", false, "serve from this process (no memory figures)")
	fs.StringVar(&scen, "scenarios", "1,2,3,4,5", "scenarios to run")
	fs.StringVar(&refs, "refs", "echo,naive,naive-batch", "references to run: echo, naive, naive-batch, naive-nosync, or none")
	fs.IntVar(&o.clients, "clients", 32, "concurrent clients (connections) of scenarios 1 to 4")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "length of one sample of one run")
	fs.IntVar(&o.samples, "samples", 3, "samples of every run, interleaved")
	fs.IntVar(&o.docs, "docs", 10000, "documents of scenario 1 (and of the references)")
	fs.IntVar(&o.bigDocs, "big-docs", 16, "1 MB documents of scenario 5")
	fs.IntVar(&o.bigClients, "big-clients", 4, "clients of scenario 5")
	fs.IntVar(&o.readDocs, "read-docs", 1000, "documents of scenario 4")
	fs.StringVar(&o.retry, "retry", "get", "scenario 3's retry after a 412: get (read the document again) or etag (resend with the 412's ETag)")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the patchd server during the measured runs (not the set-up) to this file")
	fs.StringVar(&o.heap, "heapprofile", "", "write a heap profile of the patchd server after the measured runs to this file")
	fs.IntVar(&o.retention.Versions, "history-versions", 0, "patchd's --history-versions (0: its default)")
	fs.DurationVar(&o.retention.Age, "history-age", 0, "patchd's --history-age (0: its default; a negative value: 0, keep by count only)")
	fs.StringVar(&o.dir, "dir", "", "directory for the database files (default: a temporary one, removed at the end)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	o.scenarios = map[int]bool{}
	for _, f := range strings.Split(scen, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 5 {
			return o, fmt.Errorf("-scenarios: %q is not 1 to 5", f)
		}
		o.scenarios[n] = true
	}
	if refs != "none" && refs != "" {
		for _, r := range strings.Split(refs, ",") {
			r = strings.TrimSpace(r)
			if r == kindPatchd || !slices.Contains(serverKinds, r) {
				return o, fmt.Errorf("-refs: unknown reference %q", r)
			}
			o.refs = append(o.refs, r)
		}
	}
	switch {
	case o.clients < 1 || o.bigClients < 1 || o.samples < 1 || o.duration <= 0:
		return o, errors.New("-clients, -big-clients, -samples and -duration must be positive")
	case o.docs < 1 || o.bigDocs < 1 || o.readDocs < 1:
		return o, errors.New("-docs, -big-docs and -read-docs must be positive")
	case o.retry != "get" && o.retry != "etag":
		return o, errors.New("-retry is get or etag")
	case o.clients > 999:
		return o, errors.New("-clients is at most 999")
	}
	return o, nil
}

// A job is one workload on one server: the unit that is sampled.
type job struct {
	label   string // scenario, as printed
	srv     *server
	w       workload
	clients int
	client  *client
	results []result // one per sample
}

// result is one sample of one job.
type result struct {
	okPerSec  float64
	reqPerSec float64
	p50, p99  time.Duration
	p999      time.Duration
	ok, reqs  int
	pre       int
	retries   int
	rebased   int
	errs      int
	statuses  map[int]int
	cpu       time.Duration // the server's CPU time during the sample; 0 when unknown
}

// cpuPerOK is the server's CPU time per successful request, or 0 when
// unknown.
func (r result) cpuPerOK() time.Duration {
	if r.cpu <= 0 || r.ok == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.ok)
}

// okPerCPU is the successful requests per second of the server's CPU time,
// or 0 when unknown.
func (r result) okPerCPU() float64 {
	if r.cpu <= 0 {
		return 0
	}
	return float64(r.ok) / r.cpu.Seconds()
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	if o.dir == "" {
		dir, err := os.MkdirTemp("", "patchd-load-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.dir = dir
	}

	// Servers: patchd, then the references.
	servers := map[string]*server{}
	defer func() {
		for _, s := range servers {
			if s.stop != nil {
				_ = s.stop()
			}
		}
	}()
	if o.addr != "" {
		servers[kindPatchd] = &server{kind: kindPatchd, base: strings.TrimSuffix(o.addr, "/")}
	} else {
		s, err := startServer(ctx, kindPatchd, o.dir, o.bin, o.inproc, seed{}, o.retention, o.cpuprofile != "" || o.heap != "")
		if err != nil {
			return err
		}
		servers[kindPatchd] = s
	}
	for _, r := range o.refs {
		sd := seed{coll: "s1", n: o.docs, size: 1 << 10}
		if r == kindEcho {
			sd = seed{}
		}
		s, err := startServer(ctx, r, o.dir, "", o.inproc, sd, store.Retention{}, false)
		if err != nil {
			return err
		}
		servers[r] = s
	}

	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	peaks := servers[kindPatchd].watchMemory(wctx)

	// Jobs, in the order they run within a sample.
	var jobs []*job
	add := func(label, kind string, w workload, clients int) {
		if s := servers[kind]; s != nil {
			jobs = append(jobs, &job{label: label, srv: s, w: w, clients: clients})
		}
	}
	if o.scenarios[1] {
		add("1 fresh", kindPatchd, &fresh{coll: "s1", size: 1 << 10, docs: make([]*docState, o.docs)}, o.clients)
		for _, r := range o.refs {
			add("1 fresh", r, &fresh{coll: "s1", size: 1 << 10, docs: make([]*docState, o.docs), seeded: r != kindEcho}, o.clients)
		}
	}
	if o.scenarios[2] {
		add("2 rebase", kindPatchd, &fields{doc: "rebase", clients: o.clients, size: 1 << 10}, o.clients)
	}
	if o.scenarios[3] {
		add("3 strict", kindPatchd, &fields{doc: "strict", clients: o.clients, strict: true, retry: o.retry, size: 1 << 10}, o.clients)
	}
	if o.scenarios[4] {
		add("4 304", kindPatchd, &reads{coll: "s4", size: 1 << 10, etags: make([]string, o.readDocs)}, o.clients)
		add("4 304", kindEcho, &reads{coll: "s4", size: 1 << 10, etags: make([]string, o.readDocs)}, o.clients)
	}
	if o.scenarios[5] {
		add("5 1MB", kindPatchd, &fresh{coll: "s5", size: 1000 << 10, docs: make([]*docState, o.bigDocs)}, o.bigClients)
	}

	fmt.Fprintf(stdout, "patchd-load: %d clients (scenario 5: %d), %d samples of %s, %d documents (scenario 5: %d of 1 MB); %d CPUs, load average %s\n",
		o.clients, o.bigClients, o.samples, o.duration, o.docs, o.bigDocs, runtime.NumCPU(), loadAverage())
	for _, j := range jobs {
		j.client = newClient(j.srv.base, j.clients)
		t0 := time.Now()
		if err := j.w.Setup(ctx, j.client, j.srv.kind); err != nil {
			return fmt.Errorf("set up %s on %s: %w", j.label, j.srv.kind, err)
		}
		peak, cur := j.srv.memory()
		fmt.Fprintf(stdout, "set up %-9s on %-12s in %s (server resident size %.0f MiB, peak %.0f MiB)\n",
			j.label, j.srv.kind, time.Since(t0).Round(time.Millisecond), mib(cur), mib(peak))
	}

	var profiled chan error
	if (o.cpuprofile != "" || o.heap != "") && (o.bin != "" || o.inproc || o.addr != "") {
		return errors.New("-cpuprofile and -heapprofile need the server this program starts (not -patchd, -inproc or -addr)")
	}
	if o.cpuprofile != "" {
		profiled = make(chan error, 1)
		secs := int((o.duration*time.Duration(o.samples*len(jobs)) + time.Second - 1) / time.Second)
		go func() {
			profiled <- fetchProfile(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", servers[kindPatchd].base, secs), o.cpuprofile)
		}()
	}
	for s := range o.samples {
		for _, j := range jobs {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r := runJob(ctx, j, o.duration)
			j.results = append(j.results, r)
			fmt.Fprintf(stdout, "sample %d  %-9s %-12s %8.0f ok/s  p50 %-8s p99 %-8s p999 %-8s 412/ok %.2f  retries/ok %.2f  cpu/ok %-7s errors %d  %s\n",
				s+1, j.label, j.srv.kind, r.okPerSec, ms(r.p50), ms(r.p99), ms(r.p999),
				ratio(float64(r.pre), float64(r.ok)), ratio(float64(r.retries), float64(r.ok)), us(r.cpuPerOK()), r.errs, statusString(r.statuses))
		}
		if p := servers[kindPatchd]; p.db != "" {
			peak, _ := p.memory()
			fmt.Fprintf(stdout, "sample %d  patchd: peak RSS %.0f MiB, database file %.1f MiB\n", s+1, mib(peak), mib(p.fileSize()))
		}
	}

	if profiled != nil {
		if err := <-profiled; err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		fmt.Fprintf(stdout, "wrote the CPU profile of patchd to %s\n", o.cpuprofile)
	}
	if o.heap != "" {
		if err := fetchProfile(ctx, servers[kindPatchd].base+"/debug/pprof/heap", o.heap); err != nil {
			return fmt.Errorf("heap profile: %w", err)
		}
		fmt.Fprintf(stdout, "wrote the heap profile of patchd to %s\n", o.heap)
	}

	// Read everything back.
	lost := map[*job]int{}
	checked := map[*job]string{}
	for _, j := range jobs {
		n, what, err := j.w.Verify(ctx, j.client)
		if err != nil {
			return fmt.Errorf("verify %s on %s: %w", j.label, j.srv.kind, err)
		}
		lost[j], checked[j] = n, what
	}
	fmt.Fprintf(stdout, "load average at the end: %s\n", loadAverage())
	if err := printSummary(stdout, o, jobs, servers, lost, checked, peaks); err != nil {
		return fmt.Errorf("print summary: %w", err)
	}
	var bad []string
	for _, j := range jobs {
		errs := sum(j, func(r result) int { return r.errs + r.statuses[http.StatusInternalServerError] })
		if lost[j] > 0 || errs > 0 {
			bad = append(bad, fmt.Sprintf("%s on %s: %d lost, %d errors", j.label, j.srv.kind, lost[j], errs))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("edits lost or errors: %s", strings.Join(bad, "; "))
	}
	return nil
}

// loadAverage returns the machine's 1, 5 and 15 minute load averages, or
// "unknown": other work on the machine skews every figure.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// fetchProfile saves a profile from the server's pprof endpoint url.
func fetchProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", res.StatusCode)
	}
	f, err := os.Create(path) // #nosec G304 G703 -- the operator names the profile file on the command line
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		_ = f.Close() // the copy's error is the one to report
		return err
	}
	return f.Close()
}

func newClient(base string, conns int) *client {
	tr := &http.Transport{
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &client{http: &http.Client{Transport: tr, Timeout: 30 * time.Second}, base: base}
}

// runJob runs one sample of a job.
func runJob(ctx context.Context, j *job, d time.Duration) result {
	rctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	recs := make([]*recorder, j.clients)
	var wg sync.WaitGroup
	cpu0, cpuKnown := j.srv.cpu()
	start := time.Now()
	for i := range j.clients {
		recs[i] = newRecorder()
		wg.Go(func() { j.w.Client(rctx, j.client, i, recs[i]) })
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	var (
		r   = result{statuses: map[int]int{}}
		lat []time.Duration
	)
	if cpu1, ok := j.srv.cpu(); ok && cpuKnown {
		r.cpu = cpu1 - cpu0
	}
	for _, rc := range recs {
		lat = append(lat, rc.lat...)
		r.ok += rc.ok
		r.pre += rc.pre
		r.retries += rc.retries
		r.rebased += rc.rebased
		r.errs += rc.errs
		for k, v := range rc.status {
			r.statuses[k] += v
		}
	}
	r.reqs = len(lat)
	r.okPerSec = float64(r.ok) / elapsed
	r.reqPerSec = float64(r.reqs) / elapsed
	slices.Sort(lat)
	r.p50, r.p99, r.p999 = pct(lat, 0.50), pct(lat, 0.99), pct(lat, 0.999)
	return r
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p + 0.5)
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

// us prints a CPU time per request in microseconds, "-" when unknown.
func us(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fus", float64(d)/float64(time.Microsecond))
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func statusString(m map[int]int) string {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%d:%d ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

// printSummary prints the medians of every job and the target ratios, each
// the median of the ratios measured within one sample.
func printSummary(w io.Writer, o options, jobs []*job, servers map[string]*server, lost map[*job]int, checked map[*job]string, peaks *memPeaks) error {
	fmt.Fprintf(w, "\nmedians of %d samples of %s\n", o.samples, o.duration)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tserver\tok/s\treq/s\tp50\tp99\tp999\t412/ok\tretries/ok\tcpu/ok\trebased\terrors\tlost\t")
	med := func(j *job, f func(result) float64) float64 {
		xs := make([]float64, len(j.results))
		for i, r := range j.results {
			xs[i] = f(r)
		}
		return median(xs)
	}
	for _, j := range jobs {
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.2fms\t%.2fms\t%.2fms\t%.2f\t%.2f\t%s\t%d\t%d\t%d\t\n", j.label, j.srv.kind,
			med(j, func(r result) float64 { return r.okPerSec }),
			med(j, func(r result) float64 { return r.reqPerSec }),
			med(j, func(r result) float64 { return float64(r.p50) / 1e6 }),
			med(j, func(r result) float64 { return float64(r.p99) / 1e6 }),
			med(j, func(r result) float64 { return float64(r.p999) / 1e6 }),
			med(j, func(r result) float64 { return ratio(float64(r.pre), float64(r.ok)) }),
			med(j, func(r result) float64 { return ratio(float64(r.retries), float64(r.ok)) }),
			us(time.Duration(med(j, func(r result) float64 { return float64(r.cpuPerOK()) }))),
			sum(j, func(r result) int { return r.rebased }),
			sum(j, func(r result) int { return r.errs }),
			lost[j])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, j := range jobs {
		fmt.Fprintf(w, "read back %s on %s: %s, %d lost\n", j.label, j.srv.kind, checked[j], lost[j])
	}

	find := func(label, kind string) *job {
		for _, j := range jobs {
			if j.label == label && j.srv.kind == kind {
				return j
			}
		}
		return nil
	}
	// sampleRatio is the median over samples of a/b measured in the same
	// sample.
	sampleRatio := func(a, b *job) float64 {
		xs := make([]float64, len(a.results))
		for i := range a.results {
			xs[i] = ratio(a.results[i].okPerSec, b.results[i].okPerSec)
		}
		return median(xs)
	}
	// cpuRatio is the same for successful requests per second of the
	// server's CPU: what the throughput ratio would be if each server had
	// the cores to itself, little moved by other work on the machine. Zero
	// when a sample's CPU time is unknown.
	cpuRatio := func(a, b *job) float64 {
		xs := make([]float64, len(a.results))
		for i := range a.results {
			ra, rb := a.results[i].okPerCPU(), b.results[i].okPerCPU()
			if ra == 0 || rb == 0 {
				return 0
			}
			xs[i] = ratio(ra, rb)
		}
		return median(xs)
	}
	fmt.Fprintf(w, "\ntargets (median of same-sample ratios)\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	s1 := find("1 fresh", kindPatchd)
	if nb := find("1 fresh", kindNaiveBatch); s1 != nil && nb != nil {
		r := sampleRatio(s1, nb)
		fmt.Fprintf(tw, "scenario 1 / naive-batch throughput\t%.2f\t>= 1.50\t%s\n", r, verdict(r >= 1.5))
		if c := cpuRatio(s1, nb); c > 0 {
			fmt.Fprintf(tw, "  edits per second of server CPU, / naive-batch's\t%.2f\t(information)\t\n", c)
		}
	}
	if ns := find("1 fresh", kindNaiveNoSync); s1 != nil && ns != nil {
		r := sampleRatio(s1, ns)
		fmt.Fprintf(tw, "scenario 1 / naive-nosync throughput (not durable)\t%.2f\t>= 0.90\t%s\n", r, verdict(r >= 0.9))
		if c := cpuRatio(s1, ns); c > 0 {
			fmt.Fprintf(tw, "  edits per second of server CPU, / naive-nosync's\t%.2f\t(information)\t\n", c)
		}
	}
	if nv := find("1 fresh", kindNaive); s1 != nil && nv != nil {
		fmt.Fprintf(tw, "scenario 1 / naive throughput\t%.2f\t(information)\t\n", sampleRatio(s1, nv))
	}
	if e1 := find("1 fresh", kindEcho); s1 != nil && e1 != nil {
		fmt.Fprintf(tw, "scenario 1 / no-op Echo throughput\t%.2f\t(information)\t\n", sampleRatio(s1, e1))
	}
	if s1 != nil {
		p99 := med(s1, func(r result) float64 { return float64(r.p99) / 1e6 })
		errs := sum(s1, func(r result) int { return r.errs + r.statuses[500] })
		fmt.Fprintf(tw, "scenario 1 p99\t%.2fms\t< 10ms\t%s\n", p99, verdict(p99 < 10))
		fmt.Fprintf(tw, "scenario 1 errors (transport and 5xx)\t%d\t0\t%s\n", errs, verdict(errs == 0))
	}
	s2, s3 := find("2 rebase", kindPatchd), find("3 strict", kindPatchd)
	if s2 != nil {
		pre := sum(s2, func(r result) int { return r.pre })
		fmt.Fprintf(tw, "scenario 2 lost edits\t%d\t0\t%s\n", lost[s2], verdict(lost[s2] == 0))
		fmt.Fprintf(tw, "scenario 2 412s\t%d\t0\t%s\n", pre, verdict(pre == 0))
	}
	if s2 != nil && s1 != nil {
		r := sampleRatio(s2, s1)
		fmt.Fprintf(tw, "scenario 2 / scenario 1 throughput\t%.2f\t>= 1.00\t%s\n", r, verdict(r >= 1))
	}
	if s2 != nil && s3 != nil {
		r := sampleRatio(s2, s3)
		fmt.Fprintf(tw, "scenario 2 / scenario 3 successful edits\t%.1f\t>= 10\t%s\n", r, verdict(r >= 10))
	}
	if s4, e4 := find("4 304", kindPatchd), find("4 304", kindEcho); s4 != nil && e4 != nil {
		r := sampleRatio(s4, e4)
		fmt.Fprintf(tw, "scenario 4 / no-op Echo throughput\t%.2f\t>= 0.85\t%s\n", r, verdict(r >= 0.85))
	}
	if p := servers[kindPatchd]; p.pid != 0 {
		peak, _ := p.memory()
		anon, file := peaks.get()
		fmt.Fprintf(tw, "patchd peak resident size (VmHWM)\t%.0f MiB\t< 200 MiB\t%s\n", mib(peak), verdict(mib(peak) < 200))
		fmt.Fprintf(tw, "  of which at most: heap and stacks (RssAnon)\t%.0f MiB\t\t\n", mib(anon))
		fmt.Fprintf(tw, "  of which at most: mapped file pages (RssFile)\t%.0f MiB\t\t\n", mib(file))
		fmt.Fprintf(tw, "patchd database file\t%.1f MiB\t\t\n", mib(p.fileSize()))
	}
	return tw.Flush()
}

func sum(j *job, f func(result) int) int {
	n := 0
	for _, r := range j.results {
		n += f(r)
	}
	return n
}
