package client_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/client"
)

// TestWatchReportsReconnects: a stream that breaks again and again (a
// proxy's garbage, a 500, an event that does not parse) is reopened, and
// a Watch that asks is told each time, with why and how many attempts in
// a row have failed; a stream that worked and ended counts none.
func TestWatchReportsReconnects(t *testing.T) {
	times := newRequestTimes()
	url, _ := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch times.add() {
		case 0:
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "retry: 1\n\nevent: ready\ndata: {\"cursors\":[\"AA\"]}\n\n") // works, then ends
		case 1:
			w.WriteHeader(http.StatusInternalServerError) // a proxy's
		case 2:
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "retry: 1\n\nevent: change\ndata: {not json\n\n")
		case 3:
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "garbage\n") // ends before any event
		default:
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "retry: 1\n\nevent: ready\ndata: {\"cursors\":[\"AB\"]}\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	})
	cl := client.New(url, client.WithRetry(client.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}))
	ch := cl.Watch(testContext(t), client.Subscriptions{Collections: []client.CollectionSubscription{{Collection: "c"}}, Ready: true, Reconnects: true})
	var got []string
	for len(got) < 6 {
		ev := next(t, ch)
		switch ev.Type {
		case client.EventReady:
			got = append(got, "ready")
		case client.EventReconnect:
			if ev.Err == nil || ev.Delay <= 0 || ev.Collection != "c" {
				t.Fatalf("reconnect event %+v", ev)
			}
			got = append(got, fmt.Sprintf("reconnect %d", ev.Failures))
			var p *client.Problem
			if ev.Failures == 1 && (!errors.As(ev.Err, &p) || p.Status != http.StatusInternalServerError) {
				t.Fatalf("after the 500: %v", ev.Err)
			}
		default:
			t.Fatalf("event %+v", ev)
		}
	}
	if want := "ready,reconnect 0,reconnect 1,reconnect 2,reconnect 3,ready"; strings.Join(got, ",") != want {
		t.Fatalf("events %s, want %s", strings.Join(got, ","), want)
	}
}

// TestWatchReconnectsUnasked: without Reconnects, a Watch sends no
// reconnect events (a consumer written before them sees nothing new).
func TestWatchReconnectsUnasked(t *testing.T) {
	times := newRequestTimes()
	url, _ := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		if times.add() < 3 {
			fmt.Fprint(w, "garbage\n")
			return
		}
		fmt.Fprint(w, "retry: 1\n\nevent: ready\ndata: {\"cursors\":[\"AB\"]}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	cl := client.New(url, client.WithRetry(client.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}))
	ch := cl.Watch(testContext(t), client.Subscriptions{Collections: []client.CollectionSubscription{{Collection: "c"}}, Ready: true})
	if ev := next(t, ch); ev.Type != client.EventReady {
		t.Fatalf("event %+v, want ready", ev)
	}
}

// TestProblemRetryable: once retries run out, a 429 or 503 is found with
// errors.Is, and the Problem says how long the server asked to wait.
func TestProblemRetryable(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   error
	}{
		{http.StatusTooManyRequests, client.ErrRateLimited},
		{http.StatusServiceUnavailable, client.ErrUnavailable},
	} {
		url, _ := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(tc.status)
			fmt.Fprint(w, `{"type":"/problems/overloaded","status":503}`)
		})
		cl := client.New(url, client.WithRetry(client.RetryPolicy{Attempts: 1}))
		_, err := cl.Get(testContext(t), "c", "d")
		var p *client.Problem
		if !errors.Is(err, tc.want) || !errors.As(err, &p) || p.RetryAfter != 7*time.Second {
			t.Fatalf("%d: %v (%+v), want %v with RetryAfter 7s", tc.status, err, p, tc.want)
		}
		if errors.Is(err, client.ErrNotFound) || (tc.want == client.ErrRateLimited && errors.Is(err, client.ErrUnavailable)) {
			t.Fatalf("%d: %v matches another sentinel", tc.status, err)
		}
	}
}

// TestVersionWhoAndWhy: a version reports the request that made it and,
// for a revert, the version it undid, as history records them.
func TestVersionWhoAndWhy(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	d, err := cl.Create(ctx, "v", "a", map[string]int{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	d, err = cl.Merge(ctx, "v", "a", map[string]int{"n": 2}, client.IfMatch(d.ETag))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/docs/v/a/revert", bytes.NewReader([]byte(`{"seq":2}`)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", "undo-42")
	req.Header.Set("If-Match", d.ETag)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("revert: %s", res.Status)
	}
	h, err := cl.History(ctx, "v", "a", client.HistoryOptions{})
	if err != nil || len(h.Versions) != 3 {
		t.Fatalf("history %+v, %v", h, err)
	}
	v := h.Versions[2]
	if v.Kind != "revert" || v.Reverts != 2 || v.RequestID != "undo-42" || v.Actor != "" || h.Versions[1].Reverts != 0 || h.Versions[1].RequestID == "" {
		t.Fatalf("versions %+v", h.Versions)
	}
}

// TestRevert: Revert undoes one version, rebased over the later ones; a
// later write of the same member is a conflict, the create cannot be
// reverted, and reverting the newest delete brings the document back.
func TestRevert(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	d, err := cl.Create(ctx, "rv", "a", map[string]int{"n": 1, "m": 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []map[string]int{{"n": 2}, {"m": 2}} {
		if d, err = cl.Merge(ctx, "rv", "a", p, client.IfMatch(d.ETag)); err != nil {
			t.Fatal(err)
		}
	}
	d, err = cl.Revert(ctx, "rv", "a", 2, client.IfMatch(d.ETag))
	if err != nil || string(d.Value) != `{"m":2,"n":1}` || d.RebasedFrom == "" || d.Created {
		t.Fatalf("revert of 2: %+v, %v", d, err)
	}
	if d, err = cl.Merge(ctx, "rv", "a", map[string]int{"m": 3}, client.IfMatch(d.ETag)); err != nil {
		t.Fatal(err)
	}
	var ce *client.ConflictError
	if _, err := cl.Revert(ctx, "rv", "a", 3, client.IfMatch(d.ETag)); !errors.As(err, &ce) || len(ce.Paths()) != 1 || ce.Paths()[0] != "/m" {
		t.Fatalf("revert of 3 after a later write of /m: %v", err)
	}
	var p *client.Problem
	if _, err := cl.Revert(ctx, "rv", "a", 1, client.IfMatch(d.ETag)); !errors.As(err, &p) || p.Status != 422 || p.Name() != "cannot-revert" {
		t.Fatalf("revert of the create: %v", err)
	}
	if err := cl.Delete(ctx, "rv", "a", client.IfMatch(d.ETag)); err != nil {
		t.Fatal(err)
	}
	d, err = cl.Revert(ctx, "rv", "a", 6) // a deleted document has no version to match
	if err != nil || !d.Created || string(d.Value) != `{"m":3,"n":1}` {
		t.Fatalf("revert of the delete: %+v, %v", d, err)
	}
	h, err := cl.History(ctx, "rv", "a", client.HistoryOptions{})
	if err != nil || len(h.Versions) != 7 || h.Versions[6].Kind != "revert" || h.Versions[6].Reverts != 6 {
		t.Fatalf("history %+v, %v", h, err)
	}
}

// TestInsert: Insert creates under an id the server picks; the same
// idempotency key gives the same document again, a dry run stores
// nothing, and IfMatch on a new document is refused.
func TestInsert(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	a, err := cl.Insert(ctx, "ins", map[string]int{"n": 1})
	if err != nil || a.ID == "" || a.Collection != "ins" || !a.Created || string(a.Value) != `{"n":1}` {
		t.Fatalf("Insert: %+v, %v", a, err)
	}
	if got, err := cl.Get(ctx, "ins", a.ID); err != nil || got.ETag != a.ETag {
		t.Fatalf("Get of the inserted: %+v, %v", got, err)
	}
	b, err := cl.Insert(ctx, "ins", map[string]int{"n": 2}, client.IdempotencyKey("once"))
	if err != nil || b.ID == a.ID {
		t.Fatalf("second Insert: %+v, %v", b, err)
	}
	again, err := cl.Insert(ctx, "ins", map[string]int{"n": 2}, client.IdempotencyKey("once"))
	if err != nil || again.ID != b.ID || !again.Replayed {
		t.Fatalf("Insert with the same key: %+v, %v; want %s replayed", again, err, b.ID)
	}
	if _, err := cl.Insert(ctx, "ins", map[string]int{"n": 3}, client.DryRun()); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if page, err := cl.List(ctx, "ins", client.ListOptions{}); err != nil || len(page.Items) != 2 {
		t.Fatalf("after a dry run: %+v, %v; want the 2 inserted", page, err)
	}
	var pe *client.PreconditionError
	if _, err := cl.Insert(ctx, "ins", map[string]int{"n": 4}, client.IfMatch(a.ETag)); !errors.As(err, &pe) {
		t.Fatalf("Insert with IfMatch: %v", err)
	}
}

// TestBatch: a batch applies its writes in order, each seeing the ones
// before it, and answers one document per write; a refused write refuses
// it all, with the write's own error and index; a dry run writes nothing.
func TestBatch(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	a, err := cl.Create(ctx, "b", "a", map[string]int{"n": 1, "m": 1})
	if err != nil {
		t.Fatal(err)
	}
	docs, err := cl.Batch(ctx, []client.BatchWrite{
		client.BatchMerge("b", "a", map[string]int{"n": 2}, client.IfMatch(a.ETag)),
		client.BatchMerge("b", "a", map[string]int{"m": 2}, client.IfMatch(a.ETag)), // rebased over the first
		client.BatchInsert("b", map[string]string{"kind": "new"}),
		client.BatchPut("b", "c", map[string]int{"x": 1}),
		client.BatchDelete("b", "c", client.IfMatch("*")),
		client.BatchRevert("b", "a", 2, client.IfMatch("*")),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 6 || string(docs[1].Value) != `{"m":2,"n":2}` || docs[1].RebasedFrom != a.ETag ||
		docs[2].ID == "" || !docs[2].Created || string(docs[2].Value) != `{"kind":"new"}` ||
		!docs[3].Created || docs[4] != nil || string(docs[5].Value) != `{"m":2,"n":1}` {
		t.Fatalf("results %+v", docs)
	}
	if got, err := cl.Get(ctx, "b", docs[2].ID); err != nil || got.ETag != docs[2].ETag {
		t.Fatalf("the inserted document: %+v, %v", got, err)
	}
	cur := docs[5]
	// A conflict in the third write refuses the batch: nothing written.
	_, err = cl.Batch(ctx, []client.BatchWrite{
		client.BatchMerge("b", "a", map[string]int{"z": 1}, client.IfMatch(cur.ETag)),
		client.BatchMerge("b", "a", map[string]int{"y": 1}, client.IfMatch(cur.ETag)),
		client.BatchMerge("b", "a", map[string]int{"n": 9}, client.IfMatch(a.ETag)), // n changed since a
	})
	var be *client.BatchError
	var ce *client.ConflictError
	if !errors.As(err, &be) || be.Index != 2 || !errors.As(err, &ce) || len(ce.Paths()) != 1 || ce.Paths()[0] != "/n" || !errors.Is(err, client.ErrPreconditionFailed) {
		t.Fatalf("a batch with a conflicting write: %v", err)
	}
	if got, err := cl.Get(ctx, "b", "a"); err != nil || got.ETag != cur.ETag {
		t.Fatalf("a refused batch wrote: %+v, %v", got, err)
	}
	// A dry run answers, and writes nothing.
	dry, err := cl.Batch(ctx, []client.BatchWrite{client.BatchMerge("b", "a", map[string]int{"n": 5}, client.IfMatch(cur.ETag))}, client.DryRun())
	if err != nil || string(dry[0].Value) != `{"m":2,"n":5}` {
		t.Fatalf("dry run: %+v, %v", dry, err)
	}
	if got, _ := cl.Get(ctx, "b", "a"); got.ETag != cur.ETag {
		t.Fatal("a dry run wrote")
	}
	// Options that do not apply are refused before anything is sent.
	if _, err := cl.Batch(ctx, []client.BatchWrite{client.BatchPatch("b", "a", []client.Op{}, client.DryRun())}); err == nil {
		t.Fatal("DryRun on a write of a batch was accepted")
	}
	if _, err := cl.Batch(ctx, []client.BatchWrite{client.BatchPut("b", "d", 1)}, client.IfMatch("*")); err == nil {
		t.Fatal("IfMatch on a whole batch was accepted")
	}
}

// TestSchemas: a schema is put, read, replaced under IfMatch and deleted;
// a write that breaks it is a 422 whose SchemaErrors say where; the
// documents written before it that break it are listed.
func TestSchemas(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	if _, err := cl.Create(ctx, "sc", "old", map[string]any{"name": 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Schema(ctx, "sc"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("no schema yet: %v", err)
	}
	s, err := cl.PutSchema(ctx, "sc", map[string]any{"properties": map[string]any{"name": map[string]string{"type": "string"}}})
	if err != nil || !s.Created || s.Collection != "sc" {
		t.Fatalf("PutSchema: %+v, %v", s, err)
	}
	if got, err := cl.Schema(ctx, "sc"); err != nil || got.ETag != s.ETag {
		t.Fatalf("Schema: %+v, %v", got, err)
	}
	_, err = cl.Create(ctx, "sc", "new", map[string]any{"name": 2})
	var p *client.Problem
	if !errors.As(err, &p) || p.Status != 422 || len(p.SchemaErrors()) != 1 || p.SchemaErrors()[0].InstancePath != "/name" || p.SchemaErrors()[0].Keyword != "type" {
		t.Fatalf("a write that breaks the schema: %v (%+v)", err, p)
	}
	page, err := cl.Violations(ctx, "sc", "", 0)
	if err != nil || len(page.Items) != 1 || page.Items[0].ID != "old" || page.Items[0].Errors[0].InstancePath != "/name" || page.Next != "" {
		t.Fatalf("Violations: %+v, %v", page, err)
	}
	var pe *client.PreconditionError
	if _, err := cl.PutSchema(ctx, "sc", map[string]any{}, client.IfMatch(`"stale"`)); !errors.As(err, &pe) && !errors.Is(err, client.ErrPreconditionFailed) {
		t.Fatalf("a stale IfMatch: %v", err)
	}
	if _, err := cl.PutSchema(ctx, "sc", map[string]any{"type": 7}, client.IfMatch(s.ETag)); !errors.As(err, &p) || p.Name() != "invalid-schema" {
		t.Fatalf("a schema that does not compile: %v", err)
	}
	if err := cl.DeleteSchema(ctx, "sc", client.IfMatch(s.ETag)); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Create(ctx, "sc", "new", map[string]any{"name": 2}); err != nil {
		t.Fatalf("a write once the schema is gone: %v", err)
	}
}

// TestWatchEndsOnLastingServerErrors: 500s that go on (a damaged
// document) end the Watch with an error event after a few, rather than
// retrying without end.
func TestWatchEndsOnLastingServerErrors(t *testing.T) {
	url, count := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	cl := client.New(url, client.WithRetry(client.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}))
	ch := cl.Watch(testContext(t), client.Subscriptions{Docs: []client.DocSubscription{{Collection: "c", ID: "d"}}})
	ev := next(t, ch)
	var p *client.Problem
	if ev.Type != client.EventError || !errors.As(ev.Err, &p) || p.Status != http.StatusInternalServerError {
		t.Fatalf("event %+v, want an error event with the 500", ev)
	}
	closed(t, ch)
	if n := count.Load(); n != 5 {
		t.Fatalf("%d requests, want 5", n)
	}
}
