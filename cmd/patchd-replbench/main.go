// Command patchd-replbench measures patchd over PostgreSQL with 1, 2 and 3
// replicas, beside pgbench running the same transaction shape on the same
// server, all in one run on this machine.
//
//	go run ./cmd/patchd-replbench [-duration 10s] [-clients 32] [-docs 10000]
//
// It starts a throwaway PostgreSQL server from the local installation with
// durable settings (fsync and synchronous_commit on), builds patchd, starts
// three replicas over one database and drives them over loopback:
//
//   - scenario 1: one-op JSON Patch with a fresh If-Match, spread over
//     -docs documents of about 1 KB; each client owns its own documents.
//   - scenario 2: the collaborative form: -clients clients on ONE
//     document, each owning a field and editing from the ETag it last saw
//     (the rebase path).
//
// Client c sends to replica c mod n, for n = 1, 2, 3. After each run it
// reads every touched document back and counts lost edits. Then pgbench
// runs a script of the same statements as patchd's write transaction
// (lock the row, update it, insert the version; patchd's NOTIFY hints go
// after the commit, batched, and are left out) on a random document and
// on one hot document.
//
// Every run is bounded by -duration; the whole takes about
// 8 x duration x rounds plus set-up. It exits non-zero if an edit was lost
// or a request failed (a 412 is an answer, not a failure).
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/patchd/patchd/store/postgres"
	"github.com/patchd/patchd/store/postgres/pgtest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "patchd-replbench:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	duration time.Duration
	clients  int
	docs     int
	patchd   string
	replicas int
	rounds   int
}

func run() error {
	var cfg config
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "length of each measured run")
	flag.IntVar(&cfg.clients, "clients", 32, "concurrent clients")
	flag.IntVar(&cfg.docs, "docs", 10000, "documents of scenario 1")
	flag.StringVar(&cfg.patchd, "patchd", "", "patchd binary (default: build it from this module)")
	flag.IntVar(&cfg.replicas, "replicas", 3, "most replicas measured (runs with 1..N)")
	flag.IntVar(&cfg.rounds, "rounds", 1, "rounds of every run, interleaved; the table shows medians")
	flag.Parse()
	if cfg.duration <= 0 || cfg.clients < 1 || cfg.docs < cfg.clients || cfg.replicas < 1 || cfg.rounds < 1 {
		return errors.New("need -duration > 0, -clients >= 1, -docs >= -clients, -replicas >= 1, -rounds >= 1")
	}
	ctx, stop := signalContext()
	defer stop()

	dir, err := os.MkdirTemp("", "patchd-replbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if cfg.patchd == "" {
		cfg.patchd = filepath.Join(dir, "patchd")
		fmt.Fprintln(os.Stderr, "building patchd")
		// #nosec G204 -- builds this module into our own temporary directory
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", cfg.patchd, ".").CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}

	fmt.Fprintln(os.Stderr, "starting a durable PostgreSQL server")
	cluster, err := pgtest.Start(ctx, pgtest.Options{Durable: true})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	db, err := cluster.CreateDatabase(ctx)
	if err != nil {
		return err
	}

	// The replicas: all started at once, each measured subset uses the
	// first n. Idle replicas cost nothing but idle connections.
	reps := make([]*replica, cfg.replicas)
	for i := range reps {
		if reps[i], err = startReplica(cfg.patchd, db); err != nil {
			return err
		}
		defer reps[i].stop()
	}
	h := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.clients}, Timeout: 30 * time.Second}

	fmt.Fprintf(os.Stderr, "seeding %d documents of about 1 KB\n", cfg.docs)
	etags, err := seed(ctx, h, reps[0].url, cfg.docs, cfg.clients)
	if err != nil {
		return err
	}
	if err := seedForm(ctx, h, reps[0].url, cfg.clients); err != nil {
		return err
	}

	pgdb, err := pgbenchSetup(ctx, cluster, cfg)
	if err != nil {
		return err
	}
	var (
		results []result
		pgb     []pgbenchResult
	)
	for round := 1; round <= cfg.rounds; round++ {
		for n := 1; n <= cfg.replicas; n++ {
			urls := make([]string, n)
			for i := range urls {
				urls[i] = reps[i].url
			}
			fmt.Fprintf(os.Stderr, "round %d: scenario 1, %d replica(s)\n", round, n)
			r, err := scenario1(ctx, h, urls, cfg, etags)
			if err != nil {
				return err
			}
			results = append(results, r)
			fmt.Fprintf(os.Stderr, "round %d: scenario 2, %d replica(s)\n", round, n)
			if r, err = scenario2(ctx, h, urls, cfg); err != nil {
				return err
			}
			results = append(results, r)
		}
		p, err := pgbench(ctx, cluster, pgdb, cfg)
		if err != nil {
			return err
		}
		pgb = append(pgb, p...)
	}
	report(os.Stdout, cfg, results, pgb)
	for _, r := range results {
		bad := r.errors + r.lost
		for st, n := range r.statuses {
			if st != http.StatusOK && st != http.StatusPreconditionFailed {
				bad += n
			}
		}
		if bad > 0 {
			return fmt.Errorf("scenario %d with %d replica(s): %d lost edits, %d unanswered or failed requests", r.scenario, r.replicas, r.lost, bad-r.lost)
		}
	}
	return nil
}

// signalContext is canceled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// replica is one patchd process.
type replica struct {
	cmd *exec.Cmd
	url string
}

// startReplica runs patchd over db on a free loopback port.
func startReplica(bin, db string) (*replica, error) {
	cmd := exec.Command(bin, "--addr", "127.0.0.1:0", "--db", db) // #nosec G204 -- the patchd binary we built or the operator named with -patchd
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		var line struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" {
			go io.Copy(io.Discard, stderr)
			return &replica{cmd: cmd, url: "http://" + line.Addr}, nil
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil, errors.New("patchd did not start")
}

// stop ends the replica.
func (r *replica) stop() {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	_ = r.cmd.Wait()
}

// do sends one request and reads the answer.
func do(ctx context.Context, h *http.Client, method, url, body string, hdr ...string) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := h.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, b, err
}

// pad is the filler that makes documents about 1 KB.
var pad = strings.Repeat("x", 1000)

// seed creates the scenario 1 documents and returns their ETags.
func seed(ctx context.Context, h *http.Client, base string, docs, clients int) ([]string, error) {
	etags := make([]string, docs)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for c := range clients {
		wg.Go(func() {
			for i := c; i < docs; i += clients {
				st, hdr, b, err := do(ctx, h, "PUT", fmt.Sprintf("%s/docs/bench/d%05d", base, i),
					fmt.Sprintf(`{"n":0,"pad":%q}`, pad), "Content-Type", "application/json")
				if err == nil && st != http.StatusCreated {
					err = fmt.Errorf("seed d%05d: %d %s", i, st, b)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				etags[i] = hdr.Get("ETag")
			}
		})
	}
	wg.Wait()
	return etags, errors.Join(errs...)
}

// seedForm creates the scenario 2 document.
func seedForm(ctx context.Context, h *http.Client, base string, clients int) error {
	fields := make([]string, clients)
	for i := range fields {
		fields[i] = fmt.Sprintf(`"f%02d":0`, i)
	}
	st, _, b, err := do(ctx, h, "PUT", base+"/docs/bench/form", "{"+strings.Join(fields, ",")+"}", "Content-Type", "application/json")
	if err == nil && st != http.StatusCreated {
		err = fmt.Errorf("seed form: %d %s", st, b)
	}
	return err
}

// result is one measured run.
type result struct {
	scenario, replicas int
	ok                 int             // edits acknowledged
	statuses           map[int]int     // every answer by status
	errors             int             // requests without an answer
	lost               int             // acknowledged edits not found after the run
	elapsed            time.Duration   // of the whole run
	refusal            string          // the first answer other than 200, if any
	latencies          []time.Duration // of acknowledged edits
}

// percentile returns the p-th percentile latency.
func (r *result) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)-1, int(p*float64(len(r.latencies))))]
}

// collect merges per-client results.
type collect struct {
	mu sync.Mutex
	r  result
}

func (c *collect) add(status int, body []byte, err error, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.r.errors++
		return
	}
	if status != http.StatusOK && c.r.refusal == "" {
		c.r.refusal = fmt.Sprintf("%d %s", status, body)
	}
	c.r.statuses[status]++
	if status == http.StatusOK {
		c.r.ok++
		c.r.latencies = append(c.r.latencies, d)
	}
}

// scenario1 runs one-op patches with fresh ETags over the documents; client
// c owns documents c, c+clients, ...
func scenario1(ctx context.Context, h *http.Client, urls []string, cfg config, etags []string) (result, error) {
	col := &collect{r: result{scenario: 1, replicas: len(urls), statuses: map[int]int{}}}
	last := make([]int, len(etags)) // the n acknowledged last, per document
	cur := make([]int, len(etags))  // the n of each document as its owner knows it
	if err := readNs(ctx, h, urls[0], cur, etags); err != nil {
		return result{}, err
	}
	copy(last, cur)
	rctx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range cfg.clients {
		base := urls[c%len(urls)]
		wg.Go(func() {
			var owned []int
			for i := c; i < len(etags); i += cfg.clients {
				owned = append(owned, i)
			}
			for k := 0; rctx.Err() == nil; k++ {
				i := owned[k%len(owned)]
				n := cur[i] + 1
				t0 := time.Now()
				st, hdr, body, err := do(rctx, h, "PATCH", fmt.Sprintf("%s/docs/bench/d%05d", base, i),
					fmt.Sprintf(`[{"op":"replace","path":"/n","value":%d}]`, n),
					"Content-Type", "application/json-patch+json", "If-Match", etags[i])
				if rctx.Err() != nil {
					return // the run ended during the request: not counted
				}
				col.add(st, body, err, time.Since(t0))
				if err == nil && st == http.StatusOK {
					etags[i], cur[i], last[i] = hdr.Get("ETag"), n, n
				}
			}
		})
	}
	wg.Wait()
	col.r.elapsed = time.Since(start)
	// A request cut by the end of the run may have committed unseen:
	// only acknowledged values count.
	got := make([]int, len(etags))
	if err := readNs(ctx, h, urls[len(urls)-1], got, etags); err != nil {
		return result{}, err
	}
	for i := range got {
		if got[i] < last[i] {
			col.r.lost += last[i] - got[i]
		}
	}
	slices.Sort(col.r.latencies)
	return col.r, nil
}

// readNs reads the "n" and the ETag of every scenario 1 document.
func readNs(ctx context.Context, h *http.Client, base string, ns []int, etags []string) error {
	const workers = 16
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(ns); i += workers {
				st, hdr, b, err := do(ctx, h, "GET", fmt.Sprintf("%s/docs/bench/d%05d", base, i), "")
				var v struct{ N int }
				if err == nil && st != http.StatusOK {
					err = fmt.Errorf("GET d%05d: %d", i, st)
				}
				if err == nil {
					err = json.Unmarshal(b, &v)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				ns[i], etags[i] = v.N, hdr.Get("ETag")
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// scenario2 runs the collaborative form: client c sets field fNN from the
// ETag it last saw, which is stale whenever others committed meanwhile.
func scenario2(ctx context.Context, h *http.Client, urls []string, cfg config) (result, error) {
	col := &collect{r: result{scenario: 2, replicas: len(urls), statuses: map[int]int{}}}
	// The values and the ETag clients start from, read together: a
	// request cut by the end of the previous run may have committed since.
	st, hdr, b, err := do(ctx, h, "GET", urls[0]+"/docs/bench/form", "")
	if err != nil || st != http.StatusOK {
		return result{}, fmt.Errorf("GET form: %d %v", st, err)
	}
	start := hdr.Get("ETag")
	var before map[string]int
	if err := json.Unmarshal(b, &before); err != nil {
		return result{}, err
	}
	last := make([]int, cfg.clients)
	rctx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	t := time.Now()
	var wg sync.WaitGroup
	for c := range cfg.clients {
		base := urls[c%len(urls)]
		field := fmt.Sprintf("f%02d", c)
		last[c] = before[field]
		wg.Go(func() {
			etag := start
			for rctx.Err() == nil {
				n := last[c] + 1
				t0 := time.Now()
				st, hdr, body, err := do(rctx, h, "PATCH", base+"/docs/bench/form", fmt.Sprintf(`{%q:%d}`, field, n),
					"Content-Type", "application/merge-patch+json", "If-Match", etag)
				if rctx.Err() != nil {
					return
				}
				col.add(st, body, err, time.Since(t0))
				if err == nil && st == http.StatusOK {
					etag, last[c] = hdr.Get("ETag"), n
				} else if err == nil && st == http.StatusPreconditionFailed {
					etag = hdr.Get("ETag")
				}
			}
		})
	}
	wg.Wait()
	col.r.elapsed = time.Since(t)
	st, _, b, err = do(ctx, h, "GET", urls[len(urls)-1]+"/docs/bench/form", "")
	if err != nil || st != http.StatusOK {
		return result{}, fmt.Errorf("GET form: %d %v", st, err)
	}
	var after map[string]int
	if err := json.Unmarshal(b, &after); err != nil {
		return result{}, err
	}
	for c := range cfg.clients {
		if got := after[fmt.Sprintf("f%02d", c)]; got < last[c] {
			col.r.lost += last[c] - got
		}
	}
	slices.Sort(col.r.latencies)
	return col.r, nil
}

// pgbenchResult is pgbench's throughput for one script.
type pgbenchResult struct {
	name string
	tps  float64
}

// pgbenchSetup makes a database with patchd's schema and -docs documents
// of about 1 KB for pgbench, and returns its URL.
func pgbenchSetup(ctx context.Context, c *pgtest.Cluster, cfg config) (string, error) {
	db, err := c.CreateDatabase(ctx)
	if err != nil {
		return "", err
	}
	st, err := postgres.Open(ctx, db, postgres.Options{}) // creates the schema
	if err != nil {
		return "", err
	}
	if err := st.Close(); err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return "", err
	}
	_, err = conn.Exec(ctx, fmt.Sprintf(`
		INSERT INTO documents (collection, id, seq, etag, body, deleted, updated_ns)
		SELECT 'bench', 'd' || i, 1, decode(md5(i::text), 'hex'),
		       convert_to('{"n":0,"pad":"' || repeat('x', 1000) || '"}', 'UTF8'), false, 0
		FROM generate_series(1, %d) AS i;
		INSERT INTO document_versions (collection, id, seq, etag, kind, ops, rebased_from, token, at_ns)
		SELECT collection, id, 1, etag, 'put', '\x5b5d'::bytea, '', '\x00'::bytea, 0 FROM documents`, cfg.docs))
	if err == nil {
		_, err = conn.Exec(ctx, `VACUUM ANALYZE`)
	}
	return db, errors.Join(err, conn.Close(ctx))
}

// pgbench runs the write transaction's statements with pgbench on db, on a
// random document of -docs and on one hot document, with -clients clients.
func pgbench(ctx context.Context, c *pgtest.Cluster, db string, cfg config) ([]pgbenchResult, error) {
	bin := filepath.Join(c.BinDir(), "pgbench")
	if c.BinDir() == "" {
		p, err := exec.LookPath("pgbench")
		if err != nil {
			return nil, errors.New("pgbench not found")
		}
		bin = p
	}
	// The statements of one patchd write, as in store/postgres/update.go.
	script := func(id string) string {
		return id + `
BEGIN;
SELECT seq, etag, body, deleted, updated_ns FROM documents WHERE collection = 'bench' AND id = :id FOR UPDATE;
UPDATE documents SET seq = seq + 1, etag = etag, body = body, deleted = false, updated_ns = updated_ns + 1 WHERE collection = 'bench' AND id = :id;
INSERT INTO document_versions (collection, id, seq, etag, kind, ops, rebased_from, token, at_ns)
  SELECT collection, id, seq, etag, 'json-patch', convert_to('[{"op":"replace","path":"/n","value":1}]', 'UTF8'), '', '\x00112233445566778899aabbccddeeff'::bytea, updated_ns
  FROM documents WHERE collection = 'bench' AND id = :id;
COMMIT;
`
	}
	var out []pgbenchResult
	for _, s := range []struct{ name, id string }{
		{"scenario 1 shape: a random document of " + fmt.Sprint(cfg.docs), fmt.Sprintf(`\set n random(1, %d)`, cfg.docs)},
		{"scenario 2 shape: one hot document", `\set n 1`},
	} {
		f := filepath.Join(os.TempDir(), fmt.Sprintf("patchd-pgbench-%d.sql", os.Getpid()))
		sql := strings.ReplaceAll(script(s.id), ":id", "('d' || :n)")
		if err := os.WriteFile(f, []byte(sql), 0o600); err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "pgbench, %s\n", s.name)
		// #nosec G204 -- PostgreSQL's pgbench, from the cluster's BinDir or PATH, on our own script
		cmd := exec.CommandContext(ctx, bin, "-n", "-f", f, "-c", fmt.Sprint(cfg.clients), "-j", "2",
			"-T", fmt.Sprint(max(1, int(cfg.duration.Seconds()))), "-d", db)
		b, err := cmd.CombinedOutput()
		_ = os.Remove(f) // a leftover script in the temporary directory is harmless; pgbench's outcome is what counts
		if err != nil {
			return nil, fmt.Errorf("pgbench: %v\n%s", err, b)
		}
		m := regexp.MustCompile(`tps = ([0-9.]+)`).FindSubmatch(b)
		if m == nil {
			return nil, fmt.Errorf("pgbench printed no tps:\n%s", b)
		}
		var tps float64
		if _, err := fmt.Sscan(string(m[1]), &tps); err != nil {
			return nil, fmt.Errorf("pgbench tps %q: %w", m[1], err)
		}
		out = append(out, pgbenchResult{name: s.name, tps: tps})
	}
	return out, nil
}

// report prints the results as a Markdown table: per scenario and
// replica count, the run with the median throughput (and its latencies
// and counts); pgbench's median tps per script.
func report(w io.Writer, cfg config, rs []result, pgb []pgbenchResult) {
	fmt.Fprintf(w, "%d clients, %s per run, %d round(s), scenario 1 over %d documents of ~1 KB; durable PostgreSQL (fsync on)\n\n",
		cfg.clients, cfg.duration, cfg.rounds, cfg.docs)
	fmt.Fprintln(w, "| scenario | replicas | edits/s (median) | p50 ms | p99 ms | 200 | 412 | other | no answer | lost |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	rate := func(r result) float64 { return float64(r.ok) / r.elapsed.Seconds() }
	for _, sc := range []int{1, 2} {
		for n := 1; n <= cfg.replicas; n++ {
			var runs []result
			for _, r := range rs {
				if r.scenario == sc && r.replicas == n {
					runs = append(runs, r)
				}
			}
			slices.SortFunc(runs, func(a, b result) int { return cmp.Compare(rate(a), rate(b)) })
			r := runs[len(runs)/2]
			other := 0
			for st, k := range r.statuses {
				if st != 200 && st != 412 {
					other += k
				}
			}
			lost := 0
			for _, x := range runs {
				lost += x.lost
			}
			fmt.Fprintf(w, "| %d | %d | %.0f | %.1f | %.1f | %d | %d | %d | %d | %d |\n", sc, n,
				rate(r), ms(r.percentile(0.5)), ms(r.percentile(0.99)),
				r.statuses[200], r.statuses[412], other, r.errors, lost)
		}
	}
	fmt.Fprintln(w)
	for _, r := range rs {
		if r.refusal != "" {
			fmt.Fprintf(w, "first refusal in scenario %d with %d replica(s): %.300s\n", r.scenario, r.replicas, r.refusal)
		}
	}
	names := []string{}
	for _, p := range pgb {
		if !slices.Contains(names, p.name) {
			names = append(names, p.name)
		}
	}
	for _, name := range names {
		var tps []float64
		for _, p := range pgb {
			if p.name == name {
				tps = append(tps, p.tps)
			}
		}
		slices.Sort(tps)
		fmt.Fprintf(w, "pgbench, the same transaction (%s): %.0f tps (median)\n", name, tps[len(tps)/2])
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
