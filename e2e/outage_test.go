package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/patchd/patchd/store/postgres/pgtest"
)

// waitFor polls cond until it holds, failing t after 60s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ownDatabase starts a PostgreSQL server for t alone (so that t may stop
// or freeze it) and returns it with the URL of a new database on it.
func ownDatabase(t *testing.T) (*pgtest.Cluster, string) {
	t.Helper()
	c := pg.Own(t, pgtest.Options{})
	dsn, err := c.CreateDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c, dsn
}

// TestKeyedRetryAcrossReplicasAppliesOnce: a client's keyed PATCH reaches
// two replicas (it timed out on the first and retried on the second)
// while a slow write holds the document's row lock. Both answer 200 with
// the same version, one of them replayed, and the edit is applied once.
func TestKeyedRetryAcrossReplicasAppliesOnce(t *testing.T) {
	db := pg.Database(t)
	// Each replica's wait for the row lock ends after --db-timeout (a
	// 503); the two waits must overlap, so they get longer than a loaded
	// machine may take to start the second (at 5 s, a first that gave up
	// before the second began waiting would leave waitFor never seeing two).
	rs := startReplicas(t, db, 2, "--db-timeout", "25s")
	const path = "/docs/orders/o1"
	r := do(t, rs[0].URL, "PUT", path, `{"a":[]}`, "Content-Type", ctJSON)
	want(t, r, http.StatusCreated)
	etag := r.header.Get("ETag")

	ctx := context.Background()
	holder, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM documents WHERE collection = 'orders' AND id = 'o1' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	answers := make([]response, len(rs))
	errs := make([]error, len(rs))
	var wg sync.WaitGroup
	for i, rep := range rs {
		wg.Go(func() {
			answers[i], errs[i] = send(ctx, rep.URL, "PATCH", path, `[{"op":"add","path":"/a/-","value":"once"}]`,
				"Content-Type", ctPatch, "If-Match", etag, "Idempotency-Key", `"append-once-1"`)
		})
	}
	waitFor(t, "both replicas wait for the row lock", func() bool {
		var n int
		_ = holder.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		return n == 2
	})
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	replayed := 0
	for i, a := range answers {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		want(t, a, http.StatusOK)
		if a.header.Get("Idempotent-Replayed") == "true" {
			replayed++
		}
		if a.header.Get("ETag") != answers[0].header.Get("ETag") || string(a.body) != string(answers[0].body) {
			t.Fatalf("replica %d answered %s %s, replica 0 %s %s", i, a.header.Get("ETag"), a.body, answers[0].header.Get("ETag"), answers[0].body)
		}
	}
	g := do(t, rs[1].URL, "GET", path, "")
	if replayed != 1 || string(g.body) != `{"a":["once"]}` {
		t.Fatalf("%d answers replayed, document %s; want 1 and {\"a\":[\"once\"]}", replayed, g.body)
	}
}

// metricValue returns the value of the metric line that starts with
// prefix (name and labels), or -1.
func metricValue(t *testing.T, base, prefix string) float64 {
	t.Helper()
	r := do(t, base, "GET", "/metrics", "")
	for _, line := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, prefix+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return -1
}

// TestDatabaseRestart: PostgreSQL stops and starts again under keyed
// writes from clients that retry 503s with the same key (as patchd's
// JavaScript client does). While it is down, writes and reads are 503 with
// Retry-After, never 500; /readyz is 503 and /healthz 200; a change feed
// stream stays open. Once it is back, every edit is applied exactly once,
// the stream delivers what was written, and the replicas' metrics show the
// outage.
func TestDatabaseRestart(t *testing.T) {
	c, db := ownDatabase(t)
	rs := startReplicas(t, db, 2, "--db-timeout", "1s")
	const path = "/docs/orders/restart"
	want(t, do(t, rs[0].URL, "PUT", path, `{"a":[]}`, "Content-Type", ctJSON), http.StatusCreated)

	// A change feed stream on replica 0, read in the background.
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	req, err := http.NewRequestWithContext(sctx, "GET", rs[0].URL+path+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var seen atomic.Int64 // the highest version seq the stream delivered
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
				n, _ := strconv.ParseInt(id, 10, 64)
				seen.Store(n)
			}
		}
	}()

	// Writers append their own markers, each edit with its key, retried
	// on 503 (and on a lost answer) with the same key.
	const writers, edits = 4, 12
	var (
		wg       sync.WaitGroup
		statuses sync.Map // status -> *atomic.Int64
		failures = make(chan string, writers*edits)
		stopAt   = time.Now().Add(2 * time.Minute)
	)
	count := func(status int) {
		v, _ := statuses.LoadOrStore(status, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	progress := make(chan struct{}, writers*edits)
	for w := range writers {
		wg.Go(func() {
			for n := range edits {
				key := fmt.Sprintf(`"w%d-e%d"`, w, n)
				body := fmt.Sprintf(`[{"op":"add","path":"/a/-","value":"w%d-e%d"}]`, w, n)
				for try := 0; ; try++ {
					if time.Now().After(stopAt) {
						failures <- fmt.Sprintf("writer %d edit %d: not acknowledged within 2 minutes", w, n)
						return
					}
					r, err := send(context.Background(), rs[(w+try)%len(rs)].URL, "PATCH", path, body,
						"Content-Type", ctPatch, "If-Match", "*", "Idempotency-Key", key)
					if err != nil {
						continue // no answer: retry with the key
					}
					count(r.status)
					if r.status == http.StatusServiceUnavailable {
						if r.header.Get("Retry-After") == "" {
							failures <- fmt.Sprintf("503 without Retry-After: %s", r.body)
						}
						time.Sleep(50 * time.Millisecond) // the client's backoff
						continue
					}
					if r.status != http.StatusOK {
						failures <- fmt.Sprintf("writer %d edit %d: %d %s", w, n, r.status, r.body)
						return
					}
					progress <- struct{}{}
					break
				}
			}
		})
	}
	<-progress // writes flow
	if err := c.Down(); err != nil {
		t.Fatal(err)
	}
	// Down: reads and writes 503, /readyz 503, /healthz 200.
	for _, rep := range rs {
		r := do(t, rep.URL, "GET", path, "")
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Fatalf("GET while the database is down: %d %v %s", r.status, r.header, r.body)
		}
		waitFor(t, "/readyz says 503", func() bool { return do(t, rep.URL, "GET", "/readyz", "").status == http.StatusServiceUnavailable })
		want(t, do(t, rep.URL, "GET", "/healthz", ""), http.StatusOK)
	}
	var during int64
	if v, ok := statuses.Load(http.StatusServiceUnavailable); ok {
		during = v.(*atomic.Int64).Load()
	}
	waitFor(t, "the writers meet the outage", func() bool {
		v, ok := statuses.Load(http.StatusServiceUnavailable)
		return ok && v.(*atomic.Int64).Load() > during+int64(writers)
	})
	if err := c.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	statuses.Range(func(k, v any) bool {
		if s := k.(int); s >= 500 && s != http.StatusServiceUnavailable {
			t.Errorf("%d answers %d", v.(*atomic.Int64).Load(), s)
		}
		t.Logf("status %d: %d answers", k, v.(*atomic.Int64).Load())
		return true
	})
	// Every edit once.
	var doc struct{ A []string }
	g := do(t, rs[1].URL, "GET", path, "")
	if err := json.Unmarshal(g.body, &doc); err != nil {
		t.Fatal(err)
	}
	times := map[string]int{}
	for _, m := range doc.A {
		times[m]++
	}
	for w := range writers {
		for n := range edits {
			if m := fmt.Sprintf("w%d-e%d", w, n); times[m] != 1 {
				t.Errorf("%s applied %d times", m, times[m])
			}
		}
	}
	if len(doc.A) != writers*edits {
		t.Errorf("%d markers, want %d", len(doc.A), writers*edits)
	}
	// The stream stayed open and has every version.
	last := int64(1 + writers*edits)
	waitFor(t, fmt.Sprintf("the stream delivers version %d", last), func() bool { return seen.Load() >= last })
	select {
	case <-streamDone:
		t.Fatal("the change feed stream ended")
	default:
	}
	for _, rep := range rs {
		waitFor(t, "/readyz says 200", func() bool { return do(t, rep.URL, "GET", "/readyz", "").status == http.StatusOK })
		if v := metricValue(t, rep.URL, `patchd_pg_errors_total{kind="connection"}`); v <= 0 {
			t.Errorf("%s: patchd_pg_errors_total{kind=\"connection\"} = %v", rep.URL, v)
		}
		waitFor(t, "the change feed listens again", func() bool { return metricValue(t, rep.URL, "patchd_pg_listen_up") == 1 })
		if v := metricValue(t, rep.URL, "patchd_pg_listen_reconnects_total"); v < 1 {
			t.Errorf("%s: patchd_pg_listen_reconnects_total = %v", rep.URL, v)
		}
		if v := metricValue(t, rep.URL, "patchd_documents"); v != 1 {
			t.Errorf("%s: patchd_documents = %v, want 1", rep.URL, v)
		}
	}
}

// TestFrozenDatabase: PostgreSQL stops answering (SIGSTOP) while a keyed
// PATCH is sent. The answer is 503 with Retry-After after about
// --db-timeout, not a connection closed after half a minute; once the
// database resumes, a retry with the same key is applied once (or replays
// the first, had it committed).
func TestFrozenDatabase(t *testing.T) {
	c, db := ownDatabase(t)
	rep := startReplica(t, db) // --db-timeout 5s, the default
	const path = "/docs/orders/frozen"
	want(t, do(t, rep.URL, "PUT", path, `{"a":[]}`, "Content-Type", ctJSON), http.StatusCreated)
	if err := c.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Thaw() })
	hdr := []string{"Content-Type", ctPatch, "If-Match", "*", "Idempotency-Key", `"frozen-1"`}
	const op = `[{"op":"add","path":"/a/-","value":"once"}]`
	start := time.Now()
	r := do(t, rep.URL, "PATCH", path, op, hdr...)
	took := time.Since(start)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("PATCH to a frozen database: %d %v %s", r.status, r.header, r.body)
	}
	t.Logf("answered 503 after %v", took.Round(time.Millisecond))
	want(t, do(t, rep.URL, "GET", "/healthz", ""), http.StatusOK)
	if r := do(t, rep.URL, "GET", "/readyz", ""); r.status != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with a frozen database: %d", r.status)
	}
	if err := c.Thaw(); err != nil {
		t.Fatal(err)
	}
	var again response
	waitFor(t, "the retry is answered 200", func() bool {
		again = do(t, rep.URL, "PATCH", path, op, hdr...)
		return again.status == http.StatusOK
	})
	if g := do(t, rep.URL, "GET", path, ""); string(g.body) != `{"a":["once"]}` {
		t.Fatalf("document %s, want the edit once", g.body)
	}
}

// TestReplicaStartsBeforeDatabase: a replica started while PostgreSQL is
// down waits for it, saying so in its log, and serves once it is up,
// instead of exiting.
func TestReplicaStartsBeforeDatabase(t *testing.T) {
	c, db := ownDatabase(t)
	if err := c.Down(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--addr", "127.0.0.1:0", "--db", db)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	exited := make(chan struct{}) // closed once cmd has exited; exitErr is set then
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
		exitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	next := func(what string, match func(string) bool) string {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					<-exited
					t.Fatalf("patchd exited before %s: %v", what, exitErr)
				}
				if match(l) {
					return l
				}
			case <-timeout:
				t.Fatalf("no log line %s within 60s", what)
			}
		}
	}
	listening := next("saying it listens", func(l string) bool { return strings.Contains(l, `"msg":"listening`) })
	next("saying it waits for the database", func(l string) bool { return strings.Contains(l, "database unavailable; trying again") })
	// Meanwhile it answers at once: alive, not ready, and 503 with
	// Retry-After for the API (not a connection left hanging).
	early := regexp.MustCompile(`"addr":"([^"]+)"`).FindStringSubmatch(listening)
	if early == nil {
		t.Fatalf("listening line %s", listening)
	}
	ctx2, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, r := range []struct {
		method, path string
		status       int
	}{{"GET", "/healthz", http.StatusOK}, {"GET", "/readyz", http.StatusServiceUnavailable}, {"PUT", "/docs/c/d", http.StatusServiceUnavailable}} {
		res, err := send(ctx2, "http://"+early[1], r.method, r.path, `{}`, "Content-Type", ctJSON)
		if err != nil {
			t.Fatalf("%s %s while the database is down: %v", r.method, r.path, err)
		}
		if res.status != r.status || (r.status == http.StatusServiceUnavailable &&
			(res.header.Get("Retry-After") == "" || !strings.Contains(string(res.body), `"type":"/problems/unavailable"`))) {
			t.Fatalf("%s %s while the database is down: %d %v %s", r.method, r.path, res.status, res.header, res.body)
		}
	}
	if err := c.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	serving := next("saying it serves", func(l string) bool { return strings.Contains(l, `"msg":"serving"`) })
	addr := regexp.MustCompile(`"addr":"([^"]+)"`).FindStringSubmatch(serving)
	if addr == nil {
		t.Fatalf("serving line %s", serving)
	}
	base := "http://" + addr[1]
	want(t, do(t, base, "PUT", "/docs/c/d", `{}`, "Content-Type", ctJSON), http.StatusCreated)
	want(t, do(t, base, "GET", "/readyz", ""), http.StatusOK)
}

// TestFailover: PostgreSQL with a synchronous streaming standby, the
// replicas' URL listing both servers with target_session_attrs=read-write.
// The primary stops under keyed writes and, once the clients have met the
// outage, the standby is promoted: the replicas move to it by themselves,
// answering 503 (never 500) in between, and every edit is there, exactly
// once.
func TestFailover(t *testing.T) {
	primary := pg.Own(t, pgtest.Options{TCP: true, Settings: map[string]string{"synchronous_commit": "on"}})
	ctx := context.Background()
	dsn, err := primary.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	standby, err := primary.Standby(ctx, pgtest.Options{Settings: map[string]string{"synchronous_commit": "on"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(standby.Stop)
	// Commits wait for the standby from now on: an acknowledged write
	// survives the primary.
	admin, err := pgx.Connect(ctx, primary.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`ALTER SYSTEM SET synchronous_standby_names = '*'`, `SELECT pg_reload_conf()`} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	admin.Close(ctx)
	name := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	db := fmt.Sprintf("postgres://postgres@%s,%s/%s?sslmode=disable&target_session_attrs=read-write", primary.Addr(), standby.Addr(), name)
	rs := startReplicas(t, db, 2, "--db-timeout", "2s")
	const path = "/docs/orders/failover"
	want(t, do(t, rs[0].URL, "PUT", path, `{"a":[]}`, "Content-Type", ctJSON), http.StatusCreated)

	const writers, edits = 4, 15
	var (
		wg       sync.WaitGroup
		acked    atomic.Int64
		statuses sync.Map // status -> *atomic.Int64
		failures = make(chan string, writers*edits)
		stopAt   = time.Now().Add(2 * time.Minute)
	)
	for w := range writers {
		wg.Go(func() {
			for n := range edits {
				key := fmt.Sprintf(`"f-w%d-e%d"`, w, n)
				body := fmt.Sprintf(`[{"op":"add","path":"/a/-","value":"w%d-e%d"}]`, w, n)
				for try := 0; ; try++ {
					if time.Now().After(stopAt) {
						failures <- fmt.Sprintf("writer %d edit %d: not acknowledged within 2 minutes", w, n)
						return
					}
					r, err := send(context.Background(), rs[(w+try)%len(rs)].URL, "PATCH", path, body,
						"Content-Type", ctPatch, "If-Match", "*", "Idempotency-Key", key)
					if err != nil {
						continue
					}
					v, _ := statuses.LoadOrStore(r.status, new(atomic.Int64))
					v.(*atomic.Int64).Add(1)
					if r.status == http.StatusServiceUnavailable {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					if r.status != http.StatusOK {
						failures <- fmt.Sprintf("writer %d edit %d: %d %s", w, n, r.status, r.body)
						return
					}
					acked.Add(1)
					break
				}
			}
		})
	}
	waitFor(t, "some edits are acknowledged", func() bool { return acked.Load() >= writers })
	start := time.Now()
	if err := primary.Down(); err != nil {
		t.Fatal(err)
	}
	before := acked.Load()
	t.Logf("primary down after %v", time.Since(start))
	// The standby is promoted once the writers have met the outage, as a
	// failover manager takes a while to decide.
	waitFor(t, "the writers get 503s", func() bool {
		v, ok := statuses.Load(http.StatusServiceUnavailable)
		return ok && v.(*atomic.Int64).Load() >= writers
	})
	if err := standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("standby promoted after %v", time.Since(start))
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	statuses.Range(func(k, v any) bool {
		if s := k.(int); s >= 500 && s != http.StatusServiceUnavailable {
			t.Errorf("%d answers %d", v.(*atomic.Int64).Load(), s)
		}
		t.Logf("status %d: %d answers", k, v.(*atomic.Int64).Load())
		return true
	})
	var doc struct{ A []string }
	if err := json.Unmarshal(do(t, rs[1].URL, "GET", path, "").body, &doc); err != nil {
		t.Fatal(err)
	}
	times := map[string]int{}
	for _, m := range doc.A {
		times[m]++
	}
	for w := range writers {
		for n := range edits {
			if m := fmt.Sprintf("w%d-e%d", w, n); times[m] != 1 {
				t.Errorf("%s applied %d times", m, times[m])
			}
		}
	}
	t.Logf("%d edits, %d acknowledged before the primary stopped", writers*edits, before)
}
