package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/client"
	"github.com/patchd/patchd/internal/faults"
	"github.com/patchd/patchd/store"
)

// eventWait bounds the wait for one event.
const eventWait = 20 * time.Second

// next receives the next event, failing the test after eventWait or when
// the channel closes.
func next(t *testing.T, ch <-chan client.Event) client.Event {
	t.Helper()
	timer := time.NewTimer(eventWait)
	defer timer.Stop()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("event channel closed")
		}
		return ev
	case <-timer.C:
		t.Fatalf("no event within %v", eventWait)
	}
	panic("unreachable")
}

// closed waits for the channel to close, failing on any event.
func closed(t *testing.T, ch <-chan client.Event) {
	t.Helper()
	timer := time.NewTimer(eventWait)
	defer timer.Stop()
	select {
	case ev, ok := <-ch:
		if ok {
			t.Fatalf("event %+v, want the channel closed", ev)
		}
	case <-timer.C:
		t.Fatalf("channel not closed within %v", eventWait)
	}
}

// closedPastReady is closed for a Watch that asked for ready events and
// reconnected: a ready event already on its way when the context ended may
// still be delivered (a send and the cancel race); any other is a failure.
func closedPastReady(t *testing.T, ch <-chan client.Event) {
	t.Helper()
	timer := time.NewTimer(eventWait)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if ev.Type != client.EventReady {
				t.Fatalf("event %+v, want the channel closed", ev)
			}
		case <-timer.C:
			t.Fatalf("channel not closed within %v", eventWait)
		}
	}
}

// feedChecker checks that each document's events form one unbroken
// sequence: a snapshot (or a resume point), then every seq once, in order.
type feedChecker struct {
	last      map[string]uint64
	snapshots map[string]int
	resets    int
}

func newFeedChecker() *feedChecker {
	return &feedChecker{last: map[string]uint64{}, snapshots: map[string]int{}}
}

func (f *feedChecker) check(t *testing.T, ev client.Event) {
	t.Helper()
	k := ev.Collection + "/" + ev.ID
	switch ev.Type {
	case client.EventSnapshot:
		f.snapshots[k]++
		if f.snapshots[k] > 1 {
			t.Fatalf("%s: second snapshot at seq %d", k, ev.Seq)
		}
	case client.EventReset:
		f.resets++
	case client.EventVersion:
		if want := f.last[k] + 1; ev.Seq != want {
			t.Fatalf("%s: version %d after %d: skipped or repeated", k, ev.Seq, f.last[k])
		}
		if ev.Version == nil || ev.Version.Seq != ev.Seq || ev.Version.ETag != ev.ETag {
			t.Fatalf("%s: version event %+v", k, ev)
		}
	default:
		t.Fatalf("%s: unexpected event %+v", k, ev)
	}
	f.last[k] = ev.Seq
}

func TestWatchFollowsDocuments(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	d1 := mustCreate(t, cl, "w", "1", `{"n":0}`)
	d2 := mustCreate(t, cl, "w", "2", `{"n":0}`)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := cl.Watch(wctx, client.Subscriptions{Docs: []client.DocSubscription{
		{Collection: "w", ID: "1"}, {Collection: "w", ID: "2"}, {Collection: "w", ID: "1"}, // listed twice: followed once
	}})
	fc := newFeedChecker()
	for range 2 {
		ev := next(t, ch)
		fc.check(t, ev)
		want := map[string]string{"1": d1.ETag, "2": d2.ETag}[ev.ID]
		if ev.Type != client.EventSnapshot || ev.Seq != 1 || ev.ETag != want || string(ev.Value) != `{"n":0}` {
			t.Fatalf("first event %+v, want the snapshot", ev)
		}
	}

	p, err := cl.Patch(ctx, "w", "1", []client.Op{{Op: "replace", Path: "/n", Value: json.RawMessage(`1`)}}, client.IfMatch(d1.ETag))
	if err != nil {
		t.Fatal(err)
	}
	ev := next(t, ch)
	fc.check(t, ev)
	if ev.ID != "1" || ev.Seq != 2 || ev.ETag != p.ETag || ev.Version.Kind != "json-patch" || ev.Deleted() {
		t.Fatalf("event %+v, want version 2 of w/1", ev)
	}
	if got, _ := json.Marshal(ev.Version.Ops); string(got) != `[{"op":"replace","path":"/n","value":1}]` {
		t.Fatalf("ops %s", got)
	}
	if err := cl.Delete(ctx, "w", "1", client.IfMatch(p.ETag)); err != nil {
		t.Fatal(err)
	}
	ev = next(t, ch)
	fc.check(t, ev)
	if ev.ID != "1" || ev.Seq != 3 || !ev.Deleted() || ev.Version.Kind != "delete" {
		t.Fatalf("event %+v, want the delete of w/1", ev)
	}
	if _, err := cl.Merge(ctx, "w", "2", map[string]int{"n": 5}, client.IfMatch(d2.ETag)); err != nil {
		t.Fatal(err)
	}
	ev = next(t, ch)
	fc.check(t, ev)
	if ev.ID != "2" || ev.Seq != 2 || ev.Version.Kind != "merge-patch" {
		t.Fatalf("event %+v, want version 2 of w/2", ev)
	}

	// A deleted document's feed starts with a snapshot saying so.
	dctx, dcancel := context.WithCancel(ctx)
	defer dcancel()
	dch := cl.Watch(dctx, client.Subscriptions{Docs: []client.DocSubscription{{Collection: "w", ID: "1"}}})
	if ev := next(t, dch); ev.Type != client.EventSnapshot || ev.Seq != 3 || !ev.Deleted() || ev.Value != nil {
		t.Fatalf("snapshot of a deleted document: %+v", ev)
	}
	dcancel()
	closed(t, dch)

	cancel()
	closed(t, ch)
}

func TestWatchResumesAfter(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	doc := mustCreate(t, cl, "w", "r", `{"n":1}`)
	for i := 2; i <= 6; i++ {
		var err error
		if doc, err = cl.Merge(ctx, "w", "r", map[string]int{"n": i}, client.IfMatch(doc.ETag)); err != nil {
			t.Fatal(err)
		}
	}
	ch := cl.Watch(ctx, client.Subscriptions{Docs: []client.DocSubscription{{Collection: "w", ID: "r", After: 3}}})
	fc := newFeedChecker()
	fc.last["w/r"] = 3
	for range 3 { // versions 4, 5 and 6
		fc.check(t, next(t, ch))
	}
	if _, err := cl.Merge(ctx, "w", "r", map[string]int{"n": 7}, client.IfMatch(doc.ETag)); err != nil {
		t.Fatal(err)
	}
	fc.check(t, next(t, ch))
	if fc.last["w/r"] != 7 {
		t.Fatalf("last seq %d, want 7", fc.last["w/r"])
	}
}

func TestWatchReset(t *testing.T) {
	url, _ := startServer(t, withBolt(func(o *store.Options) {
		o.Retention = store.Retention{Versions: 3, Age: time.Nanosecond}
	}))
	cl := client.New(url)
	ctx := testContext(t)
	doc := mustCreate(t, cl, "w", "p", `{"n":1}`)
	for i := 2; i <= 10; i++ {
		var err error
		if doc, err = cl.Merge(ctx, "w", "p", map[string]int{"n": i}, client.IfMatch(doc.ETag)); err != nil {
			t.Fatal(err)
		}
	}
	// Versions 2 to 7 are pruned: resuming after 1 gives a reset.
	ch := cl.Watch(ctx, client.Subscriptions{Docs: []client.DocSubscription{{Collection: "w", ID: "p", After: 1}}})
	ev := next(t, ch)
	if ev.Type != client.EventReset || ev.Seq != 10 || ev.ETag != doc.ETag || string(ev.Value) != `{"n":10}` {
		t.Fatalf("event %+v, want a reset to seq 10", ev)
	}
	if _, err := cl.Merge(ctx, "w", "p", map[string]int{"n": 11}, client.IfMatch(doc.ETag)); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Type != client.EventVersion || ev.Seq != 11 {
		t.Fatalf("event %+v, want version 11", ev)
	}
}

func TestWatchErrors(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	tests := []struct {
		name string
		sub  client.DocSubscription
		want func(error) bool
	}{
		{name: "BadName", sub: client.DocSubscription{Collection: "w", ID: "a b"},
			want: func(err error) bool { return err != nil && strings.Contains(err.Error(), `"a b"`) }},
		{name: "EmptyID", sub: client.DocSubscription{Collection: "w"},
			want: func(err error) bool { return err != nil && strings.Contains(err.Error(), "empty") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch := cl.Watch(ctx, client.Subscriptions{Docs: []client.DocSubscription{tc.sub}})
			ev := next(t, ch)
			if ev.Type != client.EventError || !tc.want(ev.Err) || ev.Collection != tc.sub.Collection || ev.ID != tc.sub.ID {
				t.Fatalf("event %+v (%v), not the error expected", ev, ev.Err)
			}
			closed(t, ch)
		})
	}
	closed(t, cl.Watch(ctx, client.Subscriptions{}))
	// A name the server would refuse ends its own subscription only, not
	// the stream of the others.
	ch := cl.Watch(ctx, client.Subscriptions{Docs: []client.DocSubscription{{Collection: "w", ID: "fine"}, {Collection: "bad name", ID: "x"}}})
	got := map[client.EventType]client.Event{}
	for range 2 {
		ev := next(t, ch)
		got[ev.Type] = ev
	}
	if e, s := got[client.EventError], got[client.EventSnapshot]; e.Collection != "bad name" || e.Err == nil || s.ID != "fine" {
		t.Fatalf("events %+v", got)
	}
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// writeN merges n new values into c/id from etag, directly, and returns
// the last ETag.
func writeN(t *testing.T, cl *client.Client, c, id, etag string, n int) string {
	t.Helper()
	for range n {
		doc, err := cl.Merge(testContext(t), c, id, map[string]string{"w": etag}, client.IfMatch(etag))
		if err != nil {
			t.Fatal(err)
		}
		etag = doc.ETag
	}
	return etag
}

func TestWatchResumesAfterCut(t *testing.T) {
	url, _ := startServer(t)
	direct := client.New(url)
	proxy, err := faults.NewProxy()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	server := strings.TrimPrefix(url, "http://")
	proxy.SetTarget(server)
	watcher := client.New("http://"+proxy.Addr(), fastRetry)
	ctx := testContext(t)
	etag := mustCreate(t, direct, "w", "cut", `{"n":0}`).ETag

	ch := watcher.Watch(ctx, client.Subscriptions{Docs: []client.DocSubscription{{Collection: "w", ID: "cut"}}})
	fc := newFeedChecker()
	fc.check(t, next(t, ch))
	etag = writeN(t, direct, "w", "cut", etag, 1)
	fc.check(t, next(t, ch))

	// Cut the stream and keep the watcher away while ten versions commit.
	proxy.SetTarget(deadAddr(t))
	if n := proxy.Cut(); n < 1 {
		t.Fatalf("cut %d connections, want the stream's", n)
	}
	etag = writeN(t, direct, "w", "cut", etag, 10)
	proxy.SetTarget(server)
	for fc.last["w/cut"] < 12 {
		fc.check(t, next(t, ch))
	}
	writeN(t, direct, "w", "cut", etag, 1)
	if fc.check(t, next(t, ch)); fc.last["w/cut"] != 13 {
		t.Fatalf("last seq %d, want 13", fc.last["w/cut"])
	}
}

func TestWatchAcrossRestart(t *testing.T) {
	url, restart := startServer(t)
	server := strings.TrimPrefix(url, "http://")
	ctx := testContext(t)
	writer := client.New(url, client.WithRetry(client.RetryPolicy{Attempts: 200, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond}))
	ids := []string{"a", "b", "c"}
	for _, id := range ids {
		mustCreate(t, writer, "restart", id, `{"i":0}`)
	}
	proxy, err := faults.NewProxy()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	proxy.SetTarget(server)
	watcher := client.New("http://"+proxy.Addr(), fastRetry)
	var subs client.Subscriptions
	for _, id := range ids {
		subs.Docs = append(subs.Docs, client.DocSubscription{Collection: "restart", ID: id})
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := watcher.Watch(wctx, subs)
	fc := newFeedChecker()
	for range ids {
		fc.check(t, next(t, ch))
	}

	// Phase 1: a writer goes on through two restarts, retrying what fails.
	const writes = 90
	progress := make(chan int, writes)
	writerDone := make(chan error, 1)
	go func() {
		defer close(progress)
		for i := 1; i <= writes; i++ {
			if _, err := writer.Merge(ctx, "restart", ids[i%len(ids)], map[string]int{"i": i}, client.IfMatch("*")); err != nil {
				writerDone <- fmt.Errorf("write %d: %w", i, err)
				return
			}
			progress <- i
		}
		writerDone <- nil
	}()
	for i := range progress {
		if i == writes/3 || i == 2*writes/3 {
			restart()
		}
	}
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}

	// Phase 2: versions commit while the server is down for the watcher
	// (the proxy leads nowhere) and across a restart.
	proxy.SetTarget(deadAddr(t))
	proxy.Cut()
	restart()
	for _, id := range ids {
		doc := mustGet(t, writer, "restart", id)
		writeN(t, writer, "restart", id, doc.ETag, 5)
	}
	proxy.SetTarget(server)

	want := map[string]uint64{}
	for _, id := range ids {
		page, err := writer.History(ctx, "restart", id, client.HistoryOptions{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		want["restart/"+id] = page.Versions[len(page.Versions)-1].Seq
	}
	caughtUp := func() bool {
		for k, seq := range want {
			if fc.last[k] < seq {
				return false
			}
		}
		return true
	}
	for n := 0; !caughtUp(); n++ {
		if n > writes+3*5+10 {
			t.Fatalf("more events than versions: %v, want %v", fc.last, want)
		}
		fc.check(t, next(t, ch))
	}
	if fc.resets != 0 {
		t.Fatalf("%d resets: the feed lost its place", fc.resets)
	}
	for k, seq := range want {
		if fc.last[k] != seq {
			t.Fatalf("%s: last seq %d, want %d", k, fc.last[k], seq)
		}
	}
	cancel()
	closed(t, ch)
}

func TestWatchIdleTimeout(t *testing.T) {
	opened := make(chan struct{}, 100)
	url, _ := startServer(t, withWrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/events") {
				select {
				case opened <- struct{}{}:
				default:
				}
			}
			next.ServeHTTP(w, r)
		})
	}))
	ctx := testContext(t)
	cl := client.New(url, fastRetry, client.WithIdleTimeout(30*time.Millisecond))
	doc := mustCreate(t, cl, "w", "idle", `{"n":0}`)
	ch := cl.Watch(ctx, client.Subscriptions{Docs: []client.DocSubscription{{Collection: "w", ID: "idle"}}})
	fc := newFeedChecker()
	fc.check(t, next(t, ch))
	// The server's heartbeat comes every 15s: the stream goes idle, and
	// the client reopens it, three times.
	timer := time.NewTimer(eventWait)
	defer timer.Stop()
	for range 3 {
		select {
		case <-opened:
		case <-timer.C:
			t.Fatal("the idle stream was not reopened")
		}
	}
	writeN(t, cl, "w", "idle", doc.ETag, 1)
	if fc.check(t, next(t, ch)); fc.last["w/idle"] != 2 {
		t.Fatalf("last seq %d, want 2", fc.last["w/idle"])
	}
}
