package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/client"
	"github.com/patchd/patchd/internal/faults"
	"github.com/patchd/patchd/store"
)

// change is what a collection subscription reports of one version.
type change struct {
	id    string
	seq   uint64
	match bool
}

func (c change) String() string { return fmt.Sprintf("%s@%d:%v", c.id, c.seq, c.match) }

// statusAt replays a document's history and returns its /status after
// each seq ("" when deleted or without one).
func statusAt(t *testing.T, cl *client.Client, c, id string) map[uint64]string {
	t.Helper()
	out := map[uint64]string{0: ""}
	status := ""
	var after uint64
	for {
		page, err := cl.History(testContext(t), c, id, client.HistoryOptions{After: after, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range page.Versions {
			for _, op := range v.Ops {
				switch {
				case op.Path == "" && op.Op == "remove":
					status = ""
				case op.Path == "":
					var d struct {
						Status string `json:"status"`
					}
					if err := json.Unmarshal(op.Value, &d); err != nil {
						t.Fatal(err)
					}
					status = d.Status
				case op.Path == "/status" && op.Op == "remove":
					status = ""
				case op.Path == "/status":
					if err := json.Unmarshal(op.Value, &status); err != nil {
						t.Fatal(err)
					}
				}
			}
			out[v.Seq] = status
		}
		if page.Next == 0 {
			return out
		}
		after = page.Next
	}
}

// wantChanges returns, per document, the changes a subscription with
// where {"/status":"open"} must report: the versions whose document is
// open before or after them.
func wantChanges(t *testing.T, cl *client.Client, c string, ids []string) map[string][]change {
	t.Helper()
	want := map[string][]change{}
	for _, id := range ids {
		st := statusAt(t, cl, c, id)
		for seq := uint64(1); ; seq++ {
			s, ok := st[seq]
			if !ok {
				break
			}
			if s == "open" || st[seq-1] == "open" {
				want[id] = append(want[id], change{id, seq, s == "open"})
			}
		}
	}
	return want
}

func TestWatchCollectionWhereAcrossRestart(t *testing.T) {
	url, restart := startServer(t)
	server := strings.TrimPrefix(url, "http://")
	ctx := testContext(t)
	writer := client.New(url, client.WithRetry(client.RetryPolicy{Attempts: 200, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond}))
	proxy, err := faults.NewProxy()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	proxy.SetTarget(server)
	watcher := client.New("http://"+proxy.Addr(), fastRetry)
	form := mustCreate(t, writer, "forms", "1", `{"n":0}`)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := watcher.Watch(wctx, client.Subscriptions{
		Docs:        []client.DocSubscription{{Collection: "forms", ID: "1"}},
		Collections: []client.CollectionSubscription{client.Collection("orders", map[string]any{"/status": "open"})},
		Ready:       true,
	})
	if ev := next(t, ch); ev.Type != client.EventSnapshot || ev.ID != "1" || ev.Seq != 1 {
		t.Fatalf("first event %+v, want the snapshot of forms/1", ev)
	}
	if ev := next(t, ch); ev.Type != client.EventReady {
		t.Fatalf("event %+v, want ready", ev)
	}

	// One writer: orders are created open or paid, change status, and
	// some are deleted; the form changes too. Two restarts happen during
	// the writes, and a third while the watcher cannot reach the server
	// and versions commit.
	ids := []string{"a", "b", "c", "d", "e"}
	statuses := []string{"open", "paid", "open", "shipped"}
	write := func(i int) error {
		id := ids[i%len(ids)]
		if i%6 == 5 {
			_, err := writer.Merge(ctx, "forms", "1", map[string]int{"n": i}, client.IfMatch("*"))
			return err
		}
		doc, err := writer.Get(ctx, "orders", id)
		if err == nil && i%7 == 6 {
			return writer.Delete(ctx, "orders", id, client.IfMatch(doc.ETag))
		}
		if errors.Is(err, client.ErrNotFound) {
			_, err = writer.Create(ctx, "orders", id, map[string]any{"status": statuses[i%len(statuses)], "i": i})
			return err
		}
		if err != nil {
			return err
		}
		_, err = writer.Merge(ctx, "orders", id, map[string]any{"status": statuses[(i/len(ids))%len(statuses)], "i": i}, client.IfMatch(doc.ETag))
		return err
	}
	const writes = 90
	for i := range writes {
		if err := write(i); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if i == writes/3 || i == 2*writes/3 {
			restart()
		}
	}
	proxy.SetTarget(deadAddr(t))
	proxy.Cut()
	for i := writes; i < writes+20; i++ {
		if err := write(i); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if i == writes+10 {
			restart()
		}
	}
	proxy.SetTarget(server)
	// The last change: once it arrives, every change before it has.
	if _, err := writer.Create(ctx, "orders", "zz-end", map[string]string{"status": "open"}); err != nil {
		t.Fatal(err)
	}

	want := wantChanges(t, writer, "orders", append(ids, "zz-end"))
	got := map[string][]change{}
	fc := newFeedChecker()
	fc.last["forms/1"] = 1
	for done := false; !done; {
		ev := next(t, ch)
		switch ev.Type {
		case client.EventReady:
		case client.EventVersion:
			fc.check(t, ev)
		case client.EventChange:
			if ev.Collection != "orders" || ev.Cursor == "" || ev.Version == nil || ev.Version.Seq != ev.Seq {
				t.Fatalf("change event %+v", ev)
			}
			got[ev.ID] = append(got[ev.ID], change{ev.ID, ev.Seq, ev.Match})
			done = ev.ID == "zz-end"
		default:
			t.Fatalf("unexpected event %+v", ev)
		}
	}
	for _, id := range append(ids, "zz-end") {
		if !slices.Equal(got[id], want[id]) {
			t.Errorf("orders/%s: changes %v, want %v", id, got[id], want[id])
		}
	}
	if len(got) != len(ids)+1 {
		t.Errorf("changes of %d documents, want %d", len(got), len(ids)+1)
	}
	// The form's versions all came, once each, in order.
	last := mustGet(t, writer, "forms", "1")
	if last.ETag == form.ETag {
		t.Fatal("the form never changed")
	}
	page, err := writer.History(ctx, "forms", "1", client.HistoryOptions{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for fc.last["forms/1"] < page.Versions[len(page.Versions)-1].Seq {
		fc.check(t, next(t, ch))
	}
	if fc.resets != 0 {
		t.Fatalf("%d resets: the stream lost its place", fc.resets)
	}
	cancel()
	closedPastReady(t, ch)
}

func TestWatchCollectionResumesAfterCursor(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	wctx, cancel := context.WithCancel(ctx)
	ch := cl.Watch(wctx, client.Subscriptions{Collections: []client.CollectionSubscription{{Collection: "c"}}, Ready: true})
	if ev := next(t, ch); ev.Type != client.EventReady {
		t.Fatalf("event %+v, want ready", ev)
	}
	a := mustCreate(t, cl, "c", "a", `{"n":1}`)
	ev := next(t, ch)
	if ev.Type != client.EventChange || ev.ID != "a" || ev.Seq != 1 || ev.ETag != a.ETag || !ev.Match || ev.Version.Kind != "put" {
		t.Fatalf("event %+v, want the create of c/a", ev)
	}
	cursor := ev.Cursor
	cancel()
	closed(t, ch)

	// Three changes while nobody watches, then resume after the cursor.
	b := mustCreate(t, cl, "c", "b", `{"n":1}`)
	if _, err := cl.Merge(ctx, "c", "a", map[string]int{"n": 2}, client.IfMatch(a.ETag)); err != nil {
		t.Fatal(err)
	}
	if err := cl.Delete(ctx, "c", "b", client.IfMatch(b.ETag)); err != nil {
		t.Fatal(err)
	}
	ch = cl.Watch(ctx, client.Subscriptions{Collections: []client.CollectionSubscription{{Collection: "c", After: cursor}}})
	for _, want := range []change{{"b", 1, true}, {"a", 2, true}, {"b", 2, false}} {
		ev := next(t, ch)
		if got := (change{ev.ID, ev.Seq, ev.Match}); ev.Type != client.EventChange || got != want {
			t.Fatalf("event %+v, want change %v", ev, want)
		}
		if want.id == "b" && want.seq == 2 && !ev.Deleted() {
			t.Fatalf("the delete of c/b: %+v", ev)
		}
	}
}

func TestWatchCollectionReset(t *testing.T) {
	url, _ := startServer(t, withBolt(func(o *store.Options) {
		o.Retention = store.Retention{Versions: 2, Age: time.Nanosecond}
	}))
	cl := client.New(url)
	ctx := testContext(t)
	doc := mustCreate(t, cl, "c", "a", `{"n":0}`)
	wctx, cancel := context.WithCancel(ctx)
	ch := cl.Watch(wctx, client.Subscriptions{Collections: []client.CollectionSubscription{{Collection: "c"}}, Ready: true})
	if ev := next(t, ch); ev.Type != client.EventReady {
		t.Fatalf("event %+v, want ready", ev)
	}
	etag := writeN(t, cl, "c", "a", doc.ETag, 1)
	ev := next(t, ch)
	if ev.Type != client.EventChange || ev.Seq != 2 {
		t.Fatalf("event %+v, want change 2", ev)
	}
	cancel()
	closed(t, ch)
	// Versions 2 to 5 are pruned: the cursor after 2 is gone.
	writeN(t, cl, "c", "a", etag, 5)
	ch = cl.Watch(ctx, client.Subscriptions{Collections: []client.CollectionSubscription{{Collection: "c", After: ev.Cursor}}})
	reset := next(t, ch)
	if reset.Type != client.EventResetCollection || reset.Collection != "c" || reset.Cursor == "" || reset.Cursor == ev.Cursor {
		t.Fatalf("event %+v, want reset-collection", reset)
	}
	page, err := cl.List(ctx, "c", client.ListOptions{})
	if err != nil || len(page.Items) != 1 || page.Items[0].Seq != 7 {
		t.Fatalf("listing %+v, %v", page, err)
	}
	writeN(t, cl, "c", "a", page.Items[0].ETag, 1)
	if ev := next(t, ch); ev.Type != client.EventChange || ev.Seq != 8 {
		t.Fatalf("event %+v, want change 8", ev)
	}
}

func TestWatchNeverWrittenDocument(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	ch := cl.Watch(ctx, client.Subscriptions{Docs: []client.DocSubscription{{Collection: "w", ID: "later"}}})
	ev := next(t, ch)
	if ev.Type != client.EventSnapshot || ev.Seq != 0 || !ev.Deleted() || ev.Value != nil {
		t.Fatalf("event %+v, want a snapshot at seq 0", ev)
	}
	mustCreate(t, cl, "w", "later", `{"n":1}`)
	if ev := next(t, ch); ev.Type != client.EventVersion || ev.Seq != 1 {
		t.Fatalf("event %+v, want version 1", ev)
	}
}

func TestWatchOneStream(t *testing.T) {
	var mu sync.Mutex
	var requests []string
	url, _ := startServer(t, withWrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/events") {
				mu.Lock()
				requests = append(requests, r.Method+" "+r.URL.Path)
				mu.Unlock()
			}
			next.ServeHTTP(w, r)
		})
	}))
	cl := client.New(url)
	ctx := testContext(t)
	for _, id := range []string{"1", "2", "3"} {
		mustCreate(t, cl, "w", id, `{}`)
	}
	ch := cl.Watch(ctx, client.Subscriptions{
		Docs:        []client.DocSubscription{{Collection: "w", ID: "1"}, {Collection: "w", ID: "2"}, {Collection: "w", ID: "3"}},
		Collections: []client.CollectionSubscription{{Collection: "x"}, {Collection: "y"}, {Collection: "x"}},
		Ready:       true,
	})
	for range 3 {
		if ev := next(t, ch); ev.Type != client.EventSnapshot {
			t.Fatalf("event %+v, want a snapshot", ev)
		}
	}
	if ev := next(t, ch); ev.Type != client.EventReady {
		t.Fatalf("event %+v, want ready", ev)
	}
	mustCreate(t, cl, "y", "1", `{}`)
	if ev := next(t, ch); ev.Type != client.EventChange || ev.Collection != "y" {
		t.Fatalf("event %+v, want the change of y/1", ev)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(requests, []string{"POST /events"}) {
		t.Fatalf("requests %q, want one POST /events", requests)
	}
}

func TestWatchFallsBackToDocumentFeeds(t *testing.T) {
	url, _ := startServer(t, withWrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/events" {
				w.Header().Set("Allow", "OPTIONS")
				http.Error(w, "no such route here", http.StatusMethodNotAllowed)
				return
			}
			next.ServeHTTP(w, r)
		})
	}))
	cl := client.New(url)
	ctx := testContext(t)
	doc := mustCreate(t, cl, "w", "1", `{"n":0}`)
	ch := cl.Watch(ctx, client.Subscriptions{
		Docs:        []client.DocSubscription{{Collection: "w", ID: "1"}},
		Collections: []client.CollectionSubscription{{Collection: "w"}},
		Ready:       true,
	})
	var snap, unsupported bool
	for range 2 {
		switch ev := next(t, ch); {
		case ev.Type == client.EventSnapshot && ev.ID == "1" && ev.Seq == 1:
			snap = true
		case ev.Type == client.EventError && ev.Collection == "w" && ev.ID == "" && errors.Is(ev.Err, client.ErrUnsupported):
			unsupported = true
		default:
			t.Fatalf("event %+v", ev)
		}
	}
	if !snap || !unsupported {
		t.Fatalf("snapshot %v, unsupported %v", snap, unsupported)
	}
	writeN(t, cl, "w", "1", doc.ETag, 1)
	if ev := next(t, ch); ev.Type != client.EventVersion || ev.Seq != 2 {
		t.Fatalf("event %+v, want version 2", ev)
	}

	// The per-document feed of a document that never existed is a 404.
	ch = cl.Watch(ctx, client.Subscriptions{Docs: []client.DocSubscription{{Collection: "w", ID: "nothing"}}})
	if ev := next(t, ch); ev.Type != client.EventError || !errors.Is(ev.Err, client.ErrNotFound) || ev.ID != "nothing" {
		t.Fatalf("event %+v (%v), want not found", ev, ev.Err)
	}
	closed(t, ch)
}

func TestWatchHonoursRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var attempts []time.Time
	url, _ := startServer(t, withWrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/events" {
				mu.Lock()
				attempts = append(attempts, time.Now())
				n := len(attempts)
				mu.Unlock()
				if n == 1 {
					w.Header().Set("Retry-After", "1")
					w.Header().Set("Content-Type", "application/problem+json")
					w.WriteHeader(http.StatusServiceUnavailable)
					fmt.Fprint(w, `{"type":"/problems/overloaded","status":503}`)
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}))
	cl := client.New(url, fastRetry)
	ctx := testContext(t)
	ch := cl.Watch(ctx, client.Subscriptions{Collections: []client.CollectionSubscription{{Collection: "c"}}, Ready: true})
	if ev := next(t, ch); ev.Type != client.EventReady {
		t.Fatalf("event %+v, want ready", ev)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != 2 {
		t.Fatalf("%d attempts, want 2", len(attempts))
	}
	if d := attempts[1].Sub(attempts[0]); d < 900*time.Millisecond {
		t.Fatalf("retried after %v: Retry-After (1s) was not waited for", d)
	}
}

func TestWatchBadSubscriptions(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	// A where the server refuses ends the Watch: one error, naming the
	// collection of the only subscription.
	ch := cl.Watch(ctx, client.Subscriptions{Collections: []client.CollectionSubscription{{Collection: "c", Where: map[string]any{"/n": map[string]any{"bogus": 1}}}}})
	ev := next(t, ch)
	var p *client.Problem
	if ev.Type != client.EventError || ev.Collection != "c" || !errors.As(ev.Err, &p) || p.Status != 400 {
		t.Fatalf("event %+v (%v), want a 400", ev, ev.Err)
	}
	closed(t, ch)
	// A collection without a name ends that subscription only.
	mustCreate(t, cl, "c", "a", `{}`)
	ch = cl.Watch(ctx, client.Subscriptions{
		Docs:        []client.DocSubscription{{Collection: "c", ID: "a"}},
		Collections: []client.CollectionSubscription{{Collection: ""}},
	})
	if ev := next(t, ch); ev.Type != client.EventError || ev.Collection != "" || !strings.Contains(ev.Err.Error(), "empty") {
		t.Fatalf("event %+v (%v), want the error of the empty name", ev, ev.Err)
	}
	if ev := next(t, ch); ev.Type != client.EventSnapshot || ev.ID != "a" {
		t.Fatalf("event %+v, want the snapshot of c/a", ev)
	}
}

func TestWatchCollectionCutBeforeAnyChange(t *testing.T) {
	url, _ := startServer(t)
	server := strings.TrimPrefix(url, "http://")
	direct := client.New(url)
	proxy, err := faults.NewProxy()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	proxy.SetTarget(server)
	watcher := client.New("http://"+proxy.Addr(), fastRetry)
	ctx := testContext(t)
	ch := watcher.Watch(ctx, client.Subscriptions{Collections: []client.CollectionSubscription{{Collection: "q"}}, Ready: true})
	if ev := next(t, ch); ev.Type != client.EventReady {
		t.Fatalf("event %+v, want ready", ev)
	}
	// No change has come yet: the stream resumes from ready's cursor,
	// not from the present of its reconnection.
	proxy.SetTarget(deadAddr(t))
	if n := proxy.Cut(); n < 1 {
		t.Fatalf("cut %d connections, want the stream's", n)
	}
	for _, id := range []string{"a", "b", "c"} {
		mustCreate(t, direct, "q", id, `{}`)
	}
	proxy.SetTarget(server)
	for _, id := range []string{"a", "b", "c"} {
		ev := next(t, ch)
		if ev.Type == client.EventReady {
			ev = next(t, ch)
		}
		if ev.Type != client.EventChange || ev.ID != id || ev.Seq != 1 {
			t.Fatalf("event %+v, want the create of q/%s", ev, id)
		}
	}
}

func TestWatchReadyCursorResumes(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	mustCreate(t, cl, "other", "x", `{}`) // a change in another collection
	wctx, cancel := context.WithCancel(ctx)
	ch := cl.Watch(wctx, client.Subscriptions{
		Collections: []client.CollectionSubscription{{Collection: "c"}, {Collection: "other"}},
		Ready:       true,
	})
	ready := next(t, ch)
	if ready.Type != client.EventReady || len(ready.Cursors) != 2 || ready.Cursors["c"] == "" || ready.Cursors["other"] == "" {
		t.Fatalf("event %+v, want ready with the cursors of c and other", ready)
	}
	cancel()
	closed(t, ch)

	// A change while nobody watches: resuming from ready's cursor gets it.
	mustCreate(t, cl, "c", "a", `{"n":1}`)
	ch = cl.Watch(ctx, client.Subscriptions{Collections: []client.CollectionSubscription{{Collection: "c", After: ready.Cursors["c"]}}, Ready: true})
	ev := next(t, ch)
	if ev.Type != client.EventChange || ev.ID != "a" || ev.Seq != 1 {
		t.Fatalf("event %+v, want the create of c/a", ev)
	}
	// Ready's cursor is at or after the change sent before it.
	if r := next(t, ch); r.Type != client.EventReady || r.Cursors["c"] == "" || r.Cursors["c"] == ready.Cursors["c"] {
		t.Fatalf("event %+v, want ready with c's cursor past %q", r, ready.Cursors["c"])
	}
}
