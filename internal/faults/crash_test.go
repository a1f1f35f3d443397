package faults

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// crashModel is what the clients of TestCrashDurability were told, and
// what must therefore hold after every crash.
type crashModel struct {
	mu sync.Mutex
	// fields acknowledged per merge-patched document (collection crash).
	fields map[string]map[string]bool
	// created: acknowledged PUTs that created a document (collection
	// crashnew), by id, with their ETag; deleted: acknowledged DELETEs;
	// maybeDeleted: DELETEs that got no answer.
	created      map[string]string
	deleted      map[string]bool
	maybeDeleted map[string]bool
	// posts: acknowledged keyed POSTs (collection crashpost), by key, with
	// their Location.
	posts map[string]string
	// appended: values acknowledged by keyed JSON Patches that append them
	// to /log of the document crashlog/<logDoc>.
	appended map[string]bool
	// pending are keyed writes that got no answer: retried after the
	// restart with the same key and request, they must apply once.
	pending []keyedWrite
	counts  crashCounts
	// served is the ETag each document was last read with through HTTP,
	// by collection/id; postKeys the key of each POSTed document read.
	served   map[string]string
	postKeys map[string]string
}

// keyedWrite is a POST or PATCH with an Idempotency-Key, as sent.
type keyedWrite struct {
	method, path, key, ifMatch, body string
	value                            string // the POST's key, or the PATCH's appended value
}

type crashCounts struct {
	acked, unknown, creates, deletes, posts, appends, retried, replayed int
}

// TestCrashDurability kills patchd with SIGKILL at random moments while
// clients write, then checks what they were told against what survived:
// writers adding unique fields to a few documents by Merge Patch, a client
// creating documents with PUT and deleting some, one creating them with
// keyed POSTs, and one appending values to an array with keyed JSON
// Patches. 20 cycles (200 with -faults.long).
//
// With the process gone, it opens the file itself: bbolt's consistency
// check must pass, every document's bytes must match its ETag and lead
// back through its retained history (document.CheckHistory), and every
// acknowledged write must be there. Then it restarts patchd and retries
// every keyed write that got no answer, with the same key and request:
// each must apply exactly once (the POST's document exists once, the
// appended value appears once), whether or not the first attempt had
// landed. Through HTTP, every document's body must hash to its ETag,
// acknowledged creations must exist and acknowledged deletions must not.
// The writers move to new documents every 10 cycles, so that the cost of
// replaying a document's whole history stays bounded.
func TestCrashDurability(t *testing.T) {
	needBinary(t)
	cycles := 20
	if *long {
		cycles = 200
	}
	const perGroup, writers = 3, 6 // documents merge-patched at a time
	srv := startPatchd(t)
	c := client(1500 * time.Millisecond)
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	m := &crashModel{fields: map[string]map[string]bool{}, created: map[string]string{}, deleted: map[string]bool{},
		maybeDeleted: map[string]bool{}, posts: map[string]string{}, appended: map[string]bool{},
		served: map[string]string{}, postKeys: map[string]string{}}
	var restarts []time.Duration
	verified := 0
	var group []string
	logDoc, logETag := "", ""
	for cycle := range cycles {
		base := "http://" + srv.Addr()
		if cycle%10 == 0 {
			group = group[:0]
			for d := range perGroup {
				id := fmt.Sprintf("g%dd%d", cycle/10, d)
				mustCall(t, c, "PUT", fmt.Sprintf("%s/docs/crash/%s", base, id), `{}`, 201, "Content-Type", "application/json")
				group = append(group, id)
				m.fields[id] = map[string]bool{}
			}
			logDoc = fmt.Sprintf("g%d", cycle/10)
			logETag = mustCall(t, c, "PUT", fmt.Sprintf("%s/docs/crashlog/%s", base, logDoc), `{"log":[]}`, 201, "Content-Type", "application/json").header.Get("ETag")
			m.appended = map[string]bool{}
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		run := func(f func()) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f()
			}()
		}
		for w := range writers {
			run(func() { m.mergePatcher(ctx, t, c, base, cycle, w, group[w%perGroup]) })
		}
		run(func() { m.creator(ctx, t, c, base, cycle, rand.New(rand.NewPCG(uint64(cycle), 1))) })
		run(func() { m.poster(ctx, t, c, base, cycle) })
		run(func() { m.appender(ctx, t, c, base, cycle, logDoc, &logETag) })
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
		verified += checkFile(t, srv.DB, group, logDoc, m)
		start := time.Now()
		if _, err := srv.Start(); err != nil {
			t.Fatalf("restart %d: %v", cycle, err)
		}
		restarts = append(restarts, time.Since(start))
		base = "http://" + srv.Addr()
		m.retry(t, c, base)
		logETag = m.checkServed(t, c, base, cycle, logDoc)
	}
	slices.Sort(restarts)
	n := m.counts
	t.Logf("CRASH: %d kill -9 cycles; %d acknowledged writes (%d merge patches, %d creating PUTs, %d DELETEs, %d keyed POSTs, %d keyed JSON Patches), %d without an answer; %d keyed writes retried after a restart (%d answered from the stored record), each applied once; %d acknowledged-field checks in the file; 0 lost; bbolt check, every body against its ETag and the history replay passed every cycle; restart median %v, max %v",
		cycles, n.acked+n.creates+n.deletes+n.posts+n.appends, n.acked, n.creates, n.deletes, n.posts, n.appends, n.unknown, n.retried, n.replayed,
		verified, restarts[len(restarts)/2].Round(time.Millisecond), restarts[len(restarts)-1].Round(time.Millisecond))
}

// mergePatcher adds unique fields to one document until the server goes.
func (m *crashModel) mergePatcher(ctx context.Context, t *testing.T, c *http.Client, base string, cycle, w int, d string) {
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
		m.mu.Lock()
		switch {
		case r.err != nil:
			m.counts.unknown++
			m.mu.Unlock()
			return
		case r.status == 200:
			m.fields[d][field] = true
			m.counts.acked++
			etag = r.header.Get("ETag")
		default:
			t.Errorf("PATCH: %d %s", r.status, r.body)
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
	}
}

// creator creates documents with PUT (If-None-Match: *) and deletes every
// third one it created, until the server goes.
func (m *crashModel) creator(ctx context.Context, t *testing.T, c *http.Client, base string, cycle int, rnd *rand.Rand) {
	var mine []string
	for n := 0; ctx.Err() == nil; n++ {
		if n%3 == 2 && len(mine) > 0 {
			id := mine[0]
			mine = mine[1:]
			m.mu.Lock()
			etag := m.created[id]
			m.mu.Unlock()
			r := call(ctx, c, "DELETE", base+"/docs/crashnew/"+id, "", "If-Match", etag)
			m.mu.Lock()
			switch {
			case r.err != nil:
				m.maybeDeleted[id] = true
				m.counts.unknown++
				m.mu.Unlock()
				return
			case r.status == 204:
				m.deleted[id] = true
				m.counts.deletes++
			default:
				t.Errorf("DELETE %s: %d %s", id, r.status, r.body)
				m.mu.Unlock()
				return
			}
			m.mu.Unlock()
			continue
		}
		id := fmt.Sprintf("c%dn%d", cycle, n)
		body := fmt.Sprintf(`{"n":%d,"pad":%q}`, n, strings.Repeat("c", rnd.IntN(20<<10)))
		r := call(ctx, c, "PUT", base+"/docs/crashnew/"+id, body, "Content-Type", "application/json", "If-None-Match", "*")
		m.mu.Lock()
		switch {
		case r.err != nil:
			m.counts.unknown++
			m.mu.Unlock()
			return
		case r.status == 201:
			m.created[id] = r.header.Get("ETag")
			m.counts.creates++
			mine = append(mine, id)
		default:
			t.Errorf("PUT %s: %d %s", id, r.status, r.body)
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
	}
}

// poster creates documents with keyed POSTs until the server goes; the
// one that gets no answer is retried after the restart.
func (m *crashModel) poster(ctx context.Context, t *testing.T, c *http.Client, base string, cycle int) {
	for n := 0; ctx.Err() == nil; n++ {
		key := fmt.Sprintf("p%dn%d", cycle, n)
		kw := keyedWrite{method: "POST", path: "/docs/crashpost", key: key, body: fmt.Sprintf(`{"key":%q}`, key), value: key}
		r := kw.send(ctx, c, base)
		m.mu.Lock()
		switch {
		case r.err != nil:
			m.pending = append(m.pending, kw)
			m.counts.unknown++
			m.mu.Unlock()
			return
		case r.status == 201:
			m.posts[key] = r.header.Get("Location")
			m.counts.posts++
		default:
			t.Errorf("POST %s: %d %s", key, r.status, r.body)
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
	}
}

// appender appends values to /log of crashlog/<doc> with keyed JSON
// Patches until the server goes; the one that gets no answer is retried
// after the restart.
func (m *crashModel) appender(ctx context.Context, t *testing.T, c *http.Client, base string, cycle int, doc string, etag *string) {
	for n := 0; ctx.Err() == nil; n++ {
		v := fmt.Sprintf("v%dn%d", cycle, n)
		kw := keyedWrite{method: "PATCH", path: "/docs/crashlog/" + doc, key: "k" + v, ifMatch: *etag,
			body: fmt.Sprintf(`[{"op":"add","path":"/log/-","value":%q}]`, v), value: v}
		r := kw.send(ctx, c, base)
		m.mu.Lock()
		switch {
		case r.err != nil:
			m.pending = append(m.pending, kw)
			m.counts.unknown++
			m.mu.Unlock()
			return
		case r.status == 200:
			m.appended[v] = true
			m.counts.appends++
			*etag = r.header.Get("ETag")
		default:
			t.Errorf("PATCH %s: %d %s", v, r.status, r.body)
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
	}
}

// send sends a keyed write.
func (kw keyedWrite) send(ctx context.Context, c *http.Client, base string) reply {
	hdr := []string{"Idempotency-Key", `"` + kw.key + `"`, "Content-Type", "application/json"}
	if kw.method == "PATCH" {
		hdr = []string{"Idempotency-Key", `"` + kw.key + `"`, "Content-Type", "application/json-patch+json", "If-Match", kw.ifMatch}
	}
	return call(ctx, c, kw.method, base+kw.path, kw.body, hdr...)
}

// retry sends every keyed write that got no answer again, with the same
// key and request: each must succeed, applied once whether or not the
// first attempt landed (the checks that follow count it).
func (m *crashModel) retry(t *testing.T, c *http.Client, base string) {
	t.Helper()
	for _, kw := range m.pending {
		r := kw.send(context.Background(), c, base)
		if r.err != nil || (kw.method == "POST" && r.status != 201) || (kw.method == "PATCH" && r.status != 200) {
			t.Fatalf("retry of %s %s (key %s): %d %v %s", kw.method, kw.path, kw.key, r.status, r.err, r.body)
		}
		m.counts.retried++
		if r.header.Get("Idempotent-Replayed") == "true" {
			m.counts.replayed++
		}
		if kw.method == "POST" {
			m.posts[kw.value] = r.header.Get("Location")
		} else {
			m.appended[kw.value] = true
		}
	}
	m.pending = nil
}

// checkServed lists every document through HTTP after a restart and reads
// each one whose ETag is not the one it was last read with: its body must
// hash to its ETag (those unchanged were read so before, and checkFile has
// just checked every body in the file against its ETag), and what was
// acknowledged must hold. It returns the current ETag of the log document.
func (m *crashModel) checkServed(t *testing.T, c *http.Client, base string, cycle int, logDoc string) string {
	t.Helper()
	listed := map[string]map[string]bool{}
	logETag := ""
	for _, coll := range []string{"crash", "crashnew", "crashpost", "crashlog"} {
		listed[coll] = map[string]bool{}
		for after := ""; ; {
			r := mustCall(t, c, "GET", fmt.Sprintf("%s/docs/%s?limit=1000&after=%s", base, coll, url.QueryEscape(after)), "", 200)
			var page struct {
				Items []struct{ ID, ETag string }
				Next  *string
			}
			if err := json.Unmarshal(r.body, &page); err != nil {
				t.Fatal(err)
			}
			for _, it := range page.Items {
				listed[coll][it.ID] = true
				name := coll + "/" + it.ID
				if coll == "crashlog" && it.ID == logDoc {
					logETag = it.ETag
				}
				if m.served[name] == it.ETag {
					continue
				}
				d := mustCall(t, c, "GET", base+"/docs/"+name, "", 200)
				sum := sha256.Sum256(d.body)
				if etag := `"` + hex.EncodeToString(sum[:16]) + `"`; d.header.Get("ETag") != etag || it.ETag != etag {
					t.Fatalf("cycle %d: %s answered ETag %s (listed %s), its body hashes to %s", cycle, name, d.header.Get("ETag"), it.ETag, etag)
				}
				m.served[name] = it.ETag
				m.checkBody(t, cycle, coll, it.ID, logDoc, d.body)
			}
			if page.Next == nil {
				break
			}
			after = *page.Next
		}
	}
	for id := range m.created {
		exists := listed["crashnew"][id]
		switch {
		case m.deleted[id] && exists:
			t.Fatalf("cycle %d: crashnew/%s was deleted (acknowledged) but is there", cycle, id)
		case !m.deleted[id] && !m.maybeDeleted[id] && !exists:
			t.Fatalf("cycle %d: crashnew/%s was created (acknowledged) but is gone", cycle, id)
		}
	}
	keys := map[string]int{}
	for id, key := range m.postKeys {
		if listed["crashpost"][id] {
			keys[key]++
		}
	}
	for key, n := range keys {
		if n > 1 {
			t.Fatalf("cycle %d: the POST keyed %s created %d documents", cycle, key, n)
		}
	}
	for key, loc := range m.posts {
		if id := strings.TrimPrefix(loc, "/docs/crashpost/"); m.postKeys[id] != key || keys[key] != 1 {
			t.Fatalf("cycle %d: the POST keyed %s (at %s) is not there once (%d times)", cycle, key, loc, keys[key])
		}
	}
	if !listed["crashlog"][logDoc] {
		t.Fatalf("cycle %d: crashlog/%s is gone", cycle, logDoc)
	}
	return logETag
}

// checkBody checks what was acknowledged of one document read through
// HTTP: the merge-patched fields, the POST's key (kept for counting), the
// appended values.
func (m *crashModel) checkBody(t *testing.T, cycle int, coll, id, logDoc string, body []byte) {
	t.Helper()
	switch coll {
	case "crash":
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("cycle %d: crash/%s: %v", cycle, id, err)
		}
		for f := range m.fields[id] {
			if _, ok := doc[f]; !ok {
				t.Fatalf("cycle %d: acknowledged field %s missing from %s after restart", cycle, f, id)
			}
		}
	case "crashpost":
		var doc struct{ Key string }
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatal(err)
		}
		m.postKeys[id] = doc.Key
	case "crashlog":
		if id != logDoc {
			return
		}
		var log struct{ Log []string }
		if err := json.Unmarshal(body, &log); err != nil {
			t.Fatalf("cycle %d: crashlog/%s: %v", cycle, logDoc, err)
		}
		seen := map[string]int{}
		for _, v := range log.Log {
			if seen[v]++; seen[v] > 1 {
				t.Fatalf("cycle %d: %s appended twice", cycle, v)
			}
		}
		for v := range m.appended {
			if seen[v] != 1 {
				t.Fatalf("cycle %d: acknowledged %s appended %d times", cycle, v, seen[v])
			}
		}
	}
}

// checkFile opens a dead server's database, runs bbolt's consistency
// check, checks every document's bytes against its ETag (the store's Get
// refuses them otherwise) and every document's retained history against
// it (document.CheckHistory), replaying the whole history of the documents
// being written (replay, and the log document). It returns the number of
// acknowledged fields checked.
func checkFile(t *testing.T, path string, replay []string, logDoc string, m *crashModel) int {
	t.Helper()
	st, err := bolt.Open(path, store.Options{})
	if err != nil {
		t.Fatalf("open after kill: %v", err)
	}
	defer st.Close()
	ctx := context.Background()
	if err := st.Check(ctx); err != nil {
		t.Fatalf("bbolt check after kill: %v", err)
	}
	err = st.Dump(ctx, true, func(r *store.Record) error {
		if err := store.CheckRecord(r); err != nil {
			return err
		}
		full := (r.Collection == "crash" && slices.Contains(replay, r.ID)) || (r.Collection == "crashlog" && r.ID == logDoc)
		if !full && len(r.History) > 2 {
			return nil // an older group's document: checked when it was written
		}
		var body any
		if r.Doc != nil {
			if body, err = patch.Parse(r.Doc.Body, patch.Limits{}); err != nil {
				return fmt.Errorf("%s/%s: %w", r.Collection, r.ID, err)
			}
		}
		if err := document.CheckHistory(body, r.Doc != nil, r.History, nil); err != nil {
			return fmt.Errorf("%s/%s: %w", r.Collection, r.ID, err)
		}
		if full && (len(r.History) == 0 || r.History[0].Seq != 1) {
			return fmt.Errorf("%s/%s: history starts at seq %d, not 1", r.Collection, r.ID, r.History[0].Seq)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after kill: %v", err)
	}
	checked := 0
	for id, fields := range m.fields {
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
	}
	for id := range m.created {
		_, err := st.Get(ctx, "crashnew", id)
		switch {
		case m.deleted[id] && !errors.Is(err, store.ErrNotFound):
			t.Fatalf("crashnew/%s in the file after its acknowledged delete: %v", id, err)
		case !m.deleted[id] && !m.maybeDeleted[id] && err != nil:
			t.Fatalf("crashnew/%s in the file: %v", id, err)
		}
	}
	return checked
}
