package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchd/patchd/patch"
)

// loadTimeout is the --db-timeout of the replicas of the load tests: they
// test what is committed under contention and faults, not deadlines, and
// 32 clients on one document of a loaded machine can wait for its row lock
// longer than the default 5s (which is a 503).
var loadTimeout = []string{"--db-timeout", "30s"}

const (
	ctJSON  = "application/json"
	ctPatch = "application/json-patch+json"
	ctMerge = "application/merge-patch+json"
)

// TestHandlerSuitesOverReplicas runs the core and rebase HTTP test suites
// (package handlers) with every test served by three replicas over one
// PostgreSQL database, each request going to the next replica in turn.
func TestHandlerSuitesOverReplicas(t *testing.T) {
	c := pg.Cluster(t)
	if testing.Short() {
		t.Skip("runs the handlers suite in a child go test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The core and rebase suites (handlers/api_test.go, rebase_test.go),
	// schemas, dry runs, revert, batches and actors (writes_test.go): a
	// schema put through one replica is enforced by the next, a batch is
	// one PostgreSQL transaction; and the change feed of many
	// subscriptions and the listing (subscriptions_test.go, list_test.go).
	// The rest of the package tests bbolt-specific parts.
	suites := "^(TestDocumentLifecycle|TestNumbersKeepTheirLiterals|TestErrorTable|TestPreconditions|TestOptionsAndAllow|" +
		"TestPostAndList|TestRestartKeepsEverything|TestLimits|TestRebaseTooFar|TestRebaseCasesOverHTTP|TestCollaborativeForm|TestContestedFields|" +
		"TestSchemaRefusals|TestSchemas|TestWriteSkewPlanSeats|TestDryRunLeavesNoTrace|TestRevert|TestBatch|TestBatchAuthorization|TestActors|" +
		"TestEventsMany.*|TestStreamLimits|TestPresence(Lifecycle|Errors|Actor|Events|Expires)|TestList(BodiesAndWhere|BodiesBounded|Order))$"
	args := []string{"test", "-count=1", "-v", "-run", suites}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./handlers")...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "PATCHD_TEST_POSTGRES="+c.AdminURL(), "PATCHD_TEST_REPLICAS=3")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test ./handlers over replicas: %v\n%s", err, out)
	}
	served := strings.Count(string(out), "serving over 3 PostgreSQL replicas")
	passed := strings.Count(string(out), "\n--- PASS: Test") // top-level tests
	if served < 10 || passed < 10 || strings.Contains(string(out), "--- SKIP") {
		t.Fatalf("the suite did not run over replicas (%d servers, %d tests passed):\n%s", served, passed, out)
	}
	t.Logf("%d handler tests passed over 3 replicas", passed)
}

// rebaseCase is one record of testdata/rebase/cases.json.
type rebaseCase struct {
	Name   string `json:"name"`
	Base   json.RawMessage
	Theirs []struct {
		Kind string          `json:"kind"`
		Body json.RawMessage `json:"body"`
	} `json:"theirs"`
	Mine struct {
		Kind string          `json:"kind"`
		Body json.RawMessage `json:"body"`
	} `json:"mine"`
	IfMatch string `json:"ifMatch"`
	Want    struct {
		Outcome   string          `json:"outcome"`
		Doc       json.RawMessage `json:"doc"`
		Conflicts []struct {
			ClientPath     string `json:"clientPath"`
			ConcurrentPath string `json:"concurrentPath"`
		} `json:"conflicts"`
	} `json:"want"`
}

// edit sends one edit of a case.
func edit(t *testing.T, base, path, kind string, body []byte, ifMatch string) response {
	t.Helper()
	h := []string{}
	if ifMatch != "" {
		h = append(h, "If-Match", ifMatch)
	}
	switch kind {
	case "json-patch":
		return do(t, base, "PATCH", path, string(body), append(h, "Content-Type", ctPatch)...)
	case "merge-patch":
		return do(t, base, "PATCH", path, string(body), append(h, "Content-Type", ctMerge)...)
	case "put":
		return do(t, base, "PUT", path, string(body), append(h, "Content-Type", ctJSON)...)
	}
	t.Fatalf("unknown kind %q", kind)
	return response{}
}

// canonical returns the canonical form of a JSON text.
func canonical(t *testing.T, raw []byte) string {
	t.Helper()
	v, err := patch.Parse(raw, patch.Limits{})
	if err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return string(patch.Canonical(v))
}

// TestRebaseCasesAcrossReplicas runs every rebase case through three
// patchd processes, each request of a case to a different replica than
// the one before: the base, each concurrent version, the client's stale
// edit, and the reads that check the outcome.
func TestRebaseCasesAcrossReplicas(t *testing.T) {
	db := pg.Database(t)
	rs := startReplicas(t, db, 3)
	data, err := os.ReadFile(filepath.Join("..", "testdata", "rebase", "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []rebaseCase
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 36 {
		t.Fatalf("only %d cases", len(cases))
	}
	n := 0
	next := func() string { n++; return rs[n%len(rs)].URL }
	for i, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			path := fmt.Sprintf("/docs/rebase/case%d", i)
			r := do(t, next(), "PUT", path, string(tc.Base), "Content-Type", ctJSON)
			want(t, r, http.StatusCreated)
			base := r.header.Get("ETag")
			cur := base
			for k, q := range tc.Theirs {
				r := edit(t, next(), path, q.Kind, q.Body, cur)
				want(t, r, http.StatusOK)
				if r.header.Get("Rebased-From") != "" {
					t.Fatalf("theirs[%d] was rebased", k)
				}
				cur = r.header.Get("ETag")
			}
			before := do(t, next(), "GET", path, "")
			ifMatch := base
			switch tc.IfMatch {
			case "current":
				ifMatch = cur
			case "*":
				ifMatch = "*"
			}
			r = edit(t, next(), path, tc.Mine.Kind, tc.Mine.Body, ifMatch)
			after := do(t, next(), "GET", path, "")
			switch tc.Want.Outcome {
			case "ok":
				want(t, r, http.StatusOK)
				if got, w := string(r.body), canonical(t, tc.Want.Doc); got != w {
					t.Fatalf("doc=%s\nwant %s", got, w)
				}
				if string(after.body) != string(r.body) || after.header.Get("ETag") != r.header.Get("ETag") {
					t.Fatalf("another replica reads %s %s, the write answered %s %s",
						after.body, after.header.Get("ETag"), r.body, r.header.Get("ETag"))
				}
				rebased := ifMatch == base && base != cur
				if got := r.header.Get("Rebased-From"); rebased && got != base || !rebased && got != "" {
					t.Fatalf("Rebased-From=%q (base %s, current %s)", got, base, cur)
				}
			case "noop", "conflict", "patch-failed":
				status := map[string]int{"noop": 200, "conflict": 412, "patch-failed": 422}[tc.Want.Outcome]
				want(t, r, status)
				if after.header.Get("ETag") != cur || string(after.body) != string(before.body) {
					t.Fatalf("document changed: %s -> %s", before.body, after.body)
				}
				if tc.Want.Outcome != "conflict" {
					return
				}
				var p struct {
					Type      string `json:"type"`
					Conflicts []struct {
						ClientPath     string `json:"clientPath"`
						ConcurrentPath string `json:"concurrentPath"`
					} `json:"conflicts"`
				}
				if err := json.Unmarshal(r.body, &p); err != nil {
					t.Fatal(err)
				}
				if p.Type != "/problems/rebase-conflict" || fmt.Sprint(p.Conflicts) != fmt.Sprint(tc.Want.Conflicts) {
					t.Fatalf("412 %s, want conflicts %v", r.body, tc.Want.Conflicts)
				}
			default:
				t.Fatalf("unknown outcome %q", tc.Want.Outcome)
			}
		})
	}
}

// formDoc is a document of n fields f00.. all "v0".
func formDoc(n int) string {
	fields := make([]string, n)
	for i := range fields {
		fields[i] = fmt.Sprintf(`"f%02d":"v0"`, i)
	}
	return "{" + strings.Join(fields, ",") + "}"
}

// historyETags returns the ETag of every version of a document.
func historyETags(t *testing.T, base, path string) []string {
	t.Helper()
	var all []string
	after := 0
	for {
		r := do(t, base, "GET", fmt.Sprintf("%s/history?after=%d&limit=1000", path, after), "")
		want(t, r, http.StatusOK)
		var h struct {
			Versions []struct {
				Seq  int     `json:"seq"`
				ETag *string `json:"etag"`
			} `json:"versions"`
			Next *int `json:"next"`
		}
		if err := json.Unmarshal(r.body, &h); err != nil {
			t.Fatal(err)
		}
		for _, v := range h.Versions {
			e := ""
			if v.ETag != nil {
				e = *v.ETag
			}
			all = append(all, e)
			after = v.Seq
		}
		if h.Next == nil || len(h.Versions) == 0 {
			return all
		}
	}
}

// TestCollaborativeFormAcrossReplicas: 32 clients, each owning one field
// of one document and each on a random replica, edit from the ETag they
// last saw. Every edit commits (rebased when stale), none is refused, and
// every field ends with its owner's last value.
func TestCollaborativeFormAcrossReplicas(t *testing.T) {
	db := pg.Database(t)
	rs := startReplicas(t, db, 3, loadTimeout...)
	const clients, edits = 32, 10
	const path = "/docs/forms/shared"
	r := do(t, rs[0].URL, "PUT", path, formDoc(clients), "Content-Type", ctJSON)
	want(t, r, http.StatusCreated)
	start := r.header.Get("ETag")
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	var (
		wg       sync.WaitGroup
		rebased  atomic.Int32
		failures = make(chan string, clients*edits)
	)
	for i := range clients {
		base := rs[rng.IntN(len(rs))].URL
		wg.Go(func() {
			etag := start
			for n := 1; n <= edits; n++ {
				var r response
				if i%2 == 0 {
					r = edit(t, base, path, "json-patch", fmt.Appendf(nil, `[{"op":"replace","path":"/f%02d","value":"v%d"}]`, i, n), etag)
				} else {
					r = edit(t, base, path, "merge-patch", fmt.Appendf(nil, `{"f%02d":"v%d"}`, i, n), etag)
				}
				if r.status != http.StatusOK {
					failures <- fmt.Sprintf("client %d edit %d: %d %s", i, n, r.status, r.body)
					return
				}
				if r.header.Get("Rebased-From") != "" {
					rebased.Add(1)
				}
				etag = r.header.Get("ETag")
			}
		})
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	for _, rep := range rs {
		var doc map[string]string
		if err := json.Unmarshal(do(t, rep.URL, "GET", path, "").body, &doc); err != nil {
			t.Fatal(err)
		}
		for i := range clients {
			if got, w := doc[fmt.Sprintf("f%02d", i)], fmt.Sprintf("v%d", edits); got != w {
				t.Errorf("replica %s: f%02d=%q, want %q", rep.URL, i, got, w)
			}
		}
	}
	if n := len(historyETags(t, rs[1].URL, path)); n != 1+clients*edits {
		t.Errorf("history has %d versions, want %d", n, 1+clients*edits)
	}
	t.Logf("%d edits, %d of them rebased", clients*edits, rebased.Load())
}

// TestKillReplicaUnderLoad: clients edit one document through random
// replicas while one replica is killed with SIGKILL and later restarted.
// No acknowledged write is lost: each acknowledged version is in history,
// and each field ends at or after its owner's last acknowledged value.
func TestKillReplicaUnderLoad(t *testing.T) {
	db := pg.Database(t)
	rs := startReplicas(t, db, 3, loadTimeout...)
	var live atomic.Pointer[[]string] // base URLs the clients use
	setLive := func(urls ...string) { live.Store(&urls) }
	setLive(rs[0].URL, rs[1].URL, rs[2].URL)

	const clients, edits = 16, 40
	const path = "/docs/forms/killed"
	r := do(t, rs[0].URL, "PUT", path, formDoc(clients), "Content-Type", ctJSON)
	want(t, r, http.StatusCreated)
	start := r.header.Get("ETag")

	type ack struct {
		etag string
		n    int
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		acked    = make([][]ack, clients)
		total    atomic.Int32
		lost     atomic.Int32 // requests without an answer
		failures []string
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// current reads the document's ETag from a live replica.
	current := func(rng *rand.Rand) string {
		for ctx.Err() == nil {
			urls := *live.Load()
			g, err := send(ctx, urls[rng.IntN(len(urls))], "GET", path, "")
			if err == nil && g.status == http.StatusOK {
				return g.header.Get("ETag")
			}
		}
		return ""
	}
	for i := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			etag := start
			unanswered := false // the previous request got no answer
			for n := 1; n <= edits && ctx.Err() == nil; n++ {
				urls := *live.Load()
				base := urls[rng.IntN(len(urls))]
				body := fmt.Sprintf(`{"f%02d":"v%d"}`, i, n)
				r, err := send(ctx, base, "PATCH", path, body, "Content-Type", ctMerge, "If-Match", etag)
				if err != nil {
					// No answer: the write may or may not have committed.
					// Read the current version elsewhere and go on.
					lost.Add(1)
					etag, unanswered = current(rng), true
					continue
				}
				if r.status == http.StatusPreconditionFailed && unanswered && strings.Contains(string(r.body), fmt.Sprintf(`"concurrentPath":"/f%02d"`, i)) {
					// The write without an answer committed after the
					// read that followed it (its replica was killed with
					// the commit sent): this edit of the same field is
					// a conflict with it. Read again and go on.
					etag, unanswered = current(rng), false
					continue
				}
				unanswered = false
				if r.status != http.StatusOK {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("client %d edit %d via %s: %d %s", i, n, base, r.status, r.body))
					mu.Unlock()
					return
				}
				etag = r.header.Get("ETag")
				mu.Lock()
				acked[i] = append(acked[i], ack{etag: etag, n: n})
				mu.Unlock()
				total.Add(1)
			}
		})
	}

	// Kill replica 1 once a quarter of the edits are acknowledged; the
	// clients move to the others as they notice. Restart it at three
	// quarters and send it traffic again.
	waitFor := func(n int32) {
		for total.Load() < n && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(clients * edits / 4)
	rs[1].kill()
	t.Logf("killed replica 1 after %d acknowledged edits", total.Load())
	setLive(rs[0].URL, rs[2].URL, rs[1].URL) // a while still trying the dead one
	time.Sleep(50 * time.Millisecond)
	setLive(rs[0].URL, rs[2].URL)
	waitFor(clients * edits * 3 / 4)
	restarted := startReplica(t, db, loadTimeout...)
	setLive(rs[0].URL, rs[2].URL, restarted.URL)
	t.Logf("restarted replica 1 after %d acknowledged edits", total.Load())
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("load did not finish within 2 minutes")
	}
	for _, f := range failures {
		t.Error(f)
	}

	history := historyETags(t, restarted.URL, path)
	inHistory := make(map[string]bool, len(history))
	for _, e := range history {
		inHistory[e] = true
	}
	var final map[string]string
	g := do(t, rs[2].URL, "GET", path, "")
	if err := json.Unmarshal(g.body, &final); err != nil {
		t.Fatal(err)
	}
	for i, as := range acked {
		for _, a := range as {
			if !inHistory[a.etag] {
				t.Errorf("client %d: acknowledged edit %d (%s) is not in history", i, a.n, a.etag)
			}
		}
		if len(as) == 0 {
			continue
		}
		var got int
		fmt.Sscanf(final[fmt.Sprintf("f%02d", i)], "v%d", &got)
		if last := as[len(as)-1].n; got < last {
			t.Errorf("client %d: field at v%d, but v%d was acknowledged", i, got, last)
		}
	}
	// Every replica agrees on the current version.
	for _, u := range []string{rs[0].URL, rs[2].URL, restarted.URL} {
		if e := do(t, u, "GET", path, "").header.Get("ETag"); e != g.header.Get("ETag") {
			t.Errorf("replica %s reads %s, another %s", u, e, g.header.Get("ETag"))
		}
	}
	t.Logf("%d edits acknowledged, %d without answer, %d versions", total.Load(), lost.Load(), len(history))
}

// TestMigrateFromBolt: a bbolt server's documents, copied with patchd
// migrate, are served by replicas over PostgreSQL with the same bodies,
// ETags and histories; a second migrate finds everything there; a stale
// edit rebases over the copied history.
func TestMigrateFromBolt(t *testing.T) {
	db := pg.Database(t)
	file := filepath.Join(t.TempDir(), "patchd.db")
	single := startReplica(t, file)
	base := single.URL
	want(t, do(t, base, "PUT", "/docs/forms/a", `{"name":"Ann","n":1e400,"tags":["x"]}`, "Content-Type", ctJSON), 201)
	e1 := do(t, base, "GET", "/docs/forms/a", "").header.Get("ETag")
	r := do(t, base, "PATCH", "/docs/forms/a", `{"name":"Anne"}`, "Content-Type", ctMerge, "If-Match", e1)
	want(t, r, 200)
	want(t, do(t, base, "PUT", "/docs/notes/gone", `{}`, "Content-Type", ctJSON), 201)
	e := do(t, base, "GET", "/docs/notes/gone", "").header.Get("ETag")
	want(t, do(t, base, "DELETE", "/docs/notes/gone", "", "If-Match", e), 204)
	for i := range 50 {
		want(t, do(t, base, "PUT", fmt.Sprintf("/docs/notes/n%02d", i), fmt.Sprintf(`{"i":%d}`, i), "Content-Type", ctJSON), 201)
	}
	// A keyed edit whose client will retry it after the migration.
	n00 := do(t, base, "GET", "/docs/notes/n00", "").header.Get("ETag")
	keyed := []string{"Content-Type", ctMerge, "If-Match", n00, "Idempotency-Key", `"before-migrate"`}
	first := do(t, base, "PATCH", "/docs/notes/n00", `{"edited":true}`, keyed...)
	want(t, first, 200)
	paths := []string{"/docs/forms/a", "/docs/notes/gone", "/docs/notes/n00", "/docs/notes/n49"}
	type state struct {
		status  int
		etag    string
		body    string
		history string
	}
	read := func(base string) map[string]state {
		m := map[string]state{}
		for _, p := range paths {
			g := do(t, base, "GET", p, "")
			h := do(t, base, "GET", p+"/history", "")
			m[p] = state{g.status, g.header.Get("ETag"), string(g.body), string(h.body)}
		}
		return m
	}
	before := read(base)
	single.stop(t)

	migrate := func() (string, error) {
		out, err := exec.Command(bin, "migrate", "--from", file, "--to", db).CombinedOutput()
		return string(out), err
	}
	out, err := migrate()
	if err != nil || !strings.Contains(out, "done: 52 documents (52 copied now, 0 already there), 55 versions; every ETag verified; 1 idempotency keys (1 copied now)") ||
		!strings.Contains(out, "copy: 52/52 documents") || !strings.Contains(out, "verify: 52/52 documents") {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	// Run again (as after an interruption): nothing left to copy.
	if out, err := migrate(); err != nil || !strings.Contains(out, "(0 copied now, 52 already there)") || !strings.Contains(out, "1 idempotency keys (0 copied now)") {
		t.Fatalf("second migrate: %v\n%s", err, out)
	}
	rs := startReplicas(t, db, 2)
	for i, rep := range rs {
		if after := read(rep.URL); !slices.Equal(keysOf(after), keysOf(before)) || fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("replica %d after migrate:\n%v\nbefore:\n%v", i, after, before)
		}
	}
	// The keyed edit's retry is answered from its record, not applied
	// again.
	again := do(t, rs[0].URL, "PATCH", "/docs/notes/n00", `{"edited":true}`, keyed...)
	want(t, again, 200)
	if again.header.Get("Idempotent-Replayed") != "true" || again.header.Get("ETag") != first.header.Get("ETag") || string(again.body) != string(first.body) {
		t.Fatalf("retry after migrate: %v %s, first %v %s", again.header, again.body, first.header, first.body)
	}
	if n := len(historyETags(t, rs[1].URL, "/docs/notes/n00")); n != 2 {
		t.Fatalf("notes/n00 has %d versions after the retry, want 2", n)
	}
	// A stale edit from the first version rebases over copied history.
	r = do(t, rs[1].URL, "PATCH", "/docs/forms/a", `{"tags":["x","y"]}`, "Content-Type", ctMerge, "If-Match", e1)
	want(t, r, 200)
	if r.header.Get("Rebased-From") != e1 || string(r.body) != `{"n":1e400,"name":"Anne","tags":["x","y"]}` {
		t.Fatalf("rebased edit: %s %v", r.body, r.header)
	}
	// The copy no longer matches the database: migrate refuses to
	// overwrite, and says why.
	if out, err := migrate(); err == nil || !strings.Contains(out, "exists with another state") {
		t.Fatalf("migrate over a changed database: %v\n%s", err, out)
	}
}

// keysOf returns the sorted keys of m.
func keysOf[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
