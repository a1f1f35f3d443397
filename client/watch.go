package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Subscriptions lists what Watch follows: documents and collections, all
// over one stream (POST /events).
type Subscriptions struct {
	// Docs are the documents to follow. A document listed twice is
	// followed once, as its first entry says.
	Docs []DocSubscription
	// Collections are the collections whose changes to follow. A
	// collection listed twice is followed once, as its first entry says.
	Collections []CollectionSubscription
	// Ready asks for an EventReady event each time a stream has sent the
	// snapshots and replays it had to send first.
	Ready bool
	// Presence asks for EventPresence events: for each followed document,
	// its live presence sessions at the start of each stream and whenever
	// they change (see Client.SetPresence). Collections get none, nor do
	// documents followed over per-document feeds (an older server).
	Presence bool
	// Reconnects asks for an EventReconnect event each time the stream
	// ends or cannot be opened, before Watch waits to open it again: a
	// follower that should say "reconnecting" (or give up, if it must)
	// learns of it there.
	Reconnects bool
}

// DocSubscription follows one document.
type DocSubscription struct {
	// Collection and ID name the document.
	Collection, ID string
	// After is the seq of the last version the caller has (an Event's
	// Seq): the feed resumes with the versions after it, or with a reset
	// when they are no longer in history. Zero means none: the feed starts
	// with a snapshot.
	After uint64
}

// CollectionSubscription follows the changes of a collection's documents:
// every version committed to any of them (creates, changes, deletes), as
// change events.
type CollectionSubscription struct {
	// Collection names the collection.
	Collection string
	// After is the cursor of the last change the caller has (the Cursor
	// of a change or reset-collection event, or the collection's entry
	// in the Cursors of a ready event that came after them): the feed
	// resumes right after it, with no gap and no duplicate, on any replica
	// and across restarts. "" starts at the present: that of the first
	// stream to send ready.
	After string
	// Where, when not nil, filters the changes as ListOptions.Where does
	// listings: only the changes of documents that match it before or
	// after the change are sent, and Event.Match says which.
	Where any
}

// Collection returns the subscription to a collection's changes from the
// present, filtered by where (nil: every change).
func Collection(c string, where any) CollectionSubscription {
	return CollectionSubscription{Collection: c, Where: where}
}

// EventType says what an Event reports.
type EventType string

// Event types. A consumer should ignore types it does not know: servers
// may add more.
const (
	// EventSnapshot is the document as it is when the feed starts without
	// a resume point: Seq, ETag and Value. A document never written has
	// Seq 0 and is Deleted.
	EventSnapshot EventType = "snapshot"
	// EventVersion is one committed version of a followed document, in
	// seq order, each exactly once: Seq, ETag and Version (whose Ops turn
	// the previous version into this one).
	EventVersion EventType = "version"
	// EventReset replaces the caller's copy: the versions after its resume
	// point are no longer in history (or the server never had them). Seq,
	// ETag and Value, as a snapshot.
	EventReset EventType = "reset"
	// EventChange is one version committed to a document of a followed
	// collection: Collection, ID, Seq, ETag, Version, Match and Cursor.
	// Each document's changes arrive in seq order, and every change
	// exactly once.
	EventChange EventType = "change"
	// EventResetCollection says that changes after the subscription's
	// cursor are no longer retained: list the collection again. The feed
	// goes on from Cursor, the present.
	EventResetCollection EventType = "reset-collection"
	// EventReady says that every snapshot and replay the stream had to
	// send first has been sent: what follows is live. It comes only when
	// Subscriptions.Ready asks for it, once per stream Watch opens (again
	// after each reconnection; never over per-document feeds); Collection
	// and ID are "", and Cursors holds the cursor of every collection
	// subscription, for one that has had no change to resume from.
	EventReady EventType = "ready"
	// EventPresence is the whole list of a followed document's live
	// presence sessions, in Sessions. It comes only when
	// Subscriptions.Presence asks for it (never over per-document feeds):
	// once at the start of each stream, before ready, when the document
	// has sessions or had some before that stream (then empty: a restart
	// of the server ended them), then whenever the list changes.
	EventPresence EventType = "presence"
	// EventReconnect says that the stream ended or could not be opened,
	// and that Watch opens it again after Delay, resuming where it was:
	// Err says why (the network's error, the server's answer as a
	// *Problem, an event that did not parse, an idle stream), Failures how
	// many attempts in a row have failed (0 after a stream that worked
	// and then ended, as on a server restart). It comes only when
	// Subscriptions.Reconnects asks for it; Collection and ID are set as
	// for error events (of per-document feeds, the document).
	EventReconnect EventType = "reconnect"
	// EventError ends subscriptions that cannot go on (the document never
	// existed on a server without POST /events, a malformed subscription,
	// 401, 403...): Err says why. It names the subscription in Collection
	// and ID when it ends only that one (or the Watch has only one);
	// otherwise they are "" and it ends the whole Watch. Network failures
	// and server restarts are not errors: the feed reconnects and
	// resumes.
	EventError EventType = "error"
)

// Event is one event of Watch.
type Event struct {
	// Type says what the event reports.
	Type EventType
	// Collection and ID name the document (for reset-collection, only
	// Collection is set).
	Collection, ID string
	// Seq is the version the event brings the caller to; pass the last
	// one received as DocSubscription.After to resume later.
	Seq uint64
	// ETag is that version's ETag; "" when the document is deleted.
	ETag string
	// Value is the document, for snapshot and reset; nil when it is
	// deleted.
	Value json.RawMessage
	// Version is the committed version, for version and change events.
	Version *Version
	// Cursor, for change and reset-collection events, is the position
	// in the collection's change log just after the event: pass the last
	// one received as CollectionSubscription.After to resume later.
	Cursor string
	// Cursors, for ready events, maps the name of each followed
	// collection to its cursor at that point of the stream: at or after
	// the last change or reset-collection event sent for it. A
	// collection that has had no change since ready can resume from it
	// (CollectionSubscription.After) without a gap.
	Cursors map[string]string
	// Match, for change events, reports whether the document matches the
	// subscription's Where after the change: true when it entered or
	// stayed in the filtered set, false when it left it (a delete
	// included). Without Where, it is false for deletes only.
	Match bool
	// Sessions, for presence events, are the document's live presence
	// sessions, in session order; empty when the last one has ended.
	Sessions []PresenceSession
	// Err is why the subscription ended, for error events, and why the
	// stream is reopened, for reconnect events.
	Err error
	// Delay, for reconnect events, is how long Watch waits before it
	// opens the stream again; Failures is how many attempts in a row have
	// failed.
	Delay    time.Duration
	Failures int
}

// Deleted reports whether the event leaves the document deleted.
func (e Event) Deleted() bool {
	switch e.Type {
	case EventSnapshot, EventReset, EventVersion, EventChange:
		return e.ETag == ""
	}
	return false
}

// Watch follows documents and collections and sends their events on the
// returned channel, over one stream (POST /events): for each document a
// snapshot (or, with After, the versions since), then every version as it
// is committed, in order; for each collection every change from its
// cursor (or the present); with Subscriptions.Presence, each document's
// presence sessions as they change; a ready event once the snapshots and
// replays are sent. When the stream breaks (the network, a server restart, an
// idle stream), Watch reconnects with the retry policy's backoff (or the
// server's hint: Retry-After on a 429 or 503, up to the policy's
// MaxRetryAfter; the SSE retry delay after a stream that was open, up to
// MaxDelay, and longer after each stream in a row that failed: ended
// before its first event, or sent one that is malformed), never sooner
// than the policy's BaseDelay (a 500, a proxy's or the server's, is
// retried as a failed stream is, up to five in a row: then the Watch
// ends with an error event), and resumes each document after the last version
// and each collection after the last cursor it sent, so that no version
// or change is skipped or sent twice; a resume point past the retained
// history gives a reset or reset-collection event.
//
// The server refuses (400) a stream of more subscriptions than its
// --max-subscriptions (1000 by default), and one whose Where it cannot
// parse: a refused stream ends the Watch with one error event, as 401 and
// 403 do.
//
// A server that answers POST /events with 404 or 405 (one older than the
// route) gets one change feed per document instead (GET
// /docs/{c}/{id}/events), with the same guarantees; its collection
// subscriptions end with an error event wrapping ErrUnsupported.
//
// Events of one document arrive in seq order; those of different documents
// interleave. The channel is unbuffered: a consumer that does not keep up
// slows the stream down and loses nothing. It is closed when ctx ends, or
// when every subscription has ended with an error event. Cancel ctx to
// stop; Watch's goroutines then end without the channel being drained.
func (cl *Client) Watch(ctx context.Context, subs Subscriptions) <-chan Event {
	out := make(chan Event)
	f := &eventsFeed{cl: cl, out: out, docs: map[[2]string]*docState{}, colls: map[string]*collState{}, ready: subs.Ready, presence: subs.Presence, reconnects: subs.Reconnects}
	var bad []Event
	for _, s := range subs.Docs {
		k := [2]string{s.Collection, s.ID}
		if f.docs[k] != nil {
			continue
		}
		if err := cl.checkWatched(s.Collection, s.ID, true); err != nil {
			bad = append(bad, Event{Type: EventError, Collection: s.Collection, ID: s.ID, Err: err})
			continue
		}
		d := &docState{sub: s, last: s.After, started: s.After > 0}
		f.docs[k] = d
		f.docOrder = append(f.docOrder, d)
	}
	for _, s := range subs.Collections {
		if f.colls[s.Collection] != nil {
			continue
		}
		err := cl.checkWatched(s.Collection, "", false)
		var where json.RawMessage
		if err == nil && s.Where != nil {
			where, err = encodeJSON(s.Where)
		}
		if err != nil {
			bad = append(bad, Event{Type: EventError, Collection: s.Collection, Err: err})
			continue
		}
		c := &collState{sub: s, where: where, cursor: s.After}
		f.colls[s.Collection] = c
		f.collOrder = append(f.collOrder, c)
	}
	go func() {
		defer close(out)
		for _, ev := range bad {
			if !f.deliver(ctx, ev) {
				return
			}
		}
		if len(f.docOrder)+len(f.collOrder) > 0 {
			f.run(ctx)
		}
	}()
	return out
}

// docState is where a document subscription of an eventsFeed stands.
type docState struct {
	sub     DocSubscription
	last    uint64 // the seq of the last event sent
	started bool   // an event was sent (or After given): resume after last
	// sessions is the number of presence sessions last sent; present
	// reports that this stream sent the document's list before ready.
	sessions int
	present  bool
}

// collState is where a collection subscription of an eventsFeed stands.
type collState struct {
	sub    CollectionSubscription
	where  json.RawMessage // sub.Where's JSON; nil: none
	cursor string          // after the last change sent; "": the present
}

// eventsFeed follows every subscription of a Watch over POST /events.
type eventsFeed struct {
	cl         *Client
	out        chan<- Event
	docs       map[[2]string]*docState
	colls      map[string]*collState
	docOrder   []*docState
	collOrder  []*collState
	ready      bool // send EventReady
	presence   bool // ask for presence events
	reconnects bool // send EventReconnect
}

// checkWatched is checkNames for a subscription, which also fails on a
// name the server refuses (1 to 128 of A-Z, a-z, 0-9, ".", "_", "~" and
// "-", not "." or ".."): refused by the server, it would end the stream
// of every subscription, not its own.
func (cl *Client) checkWatched(coll, id string, withID bool) error {
	if err := cl.checkNames(coll, id, withID); err != nil {
		return err
	}
	names := []string{coll}
	if withID {
		names = append(names, id)
	}
	for _, n := range names {
		if !validName(n) {
			return fmt.Errorf("patchd: %q is not a collection or document name (1 to 128 of A-Z a-z 0-9 . _ ~ -, not . or ..)", n)
		}
	}
	return nil
}

// validName reports whether the server takes s as a collection or id.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 128 || s == "." || s == ".." {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '~' || c == '-') {
			return false
		}
	}
	return true
}

// errFallback ends the POST /events feed of a server that lacks the route.
var errFallback = errors.New("patchd: POST /events not served")

// deliver sends ev unless ctx ends first.
func (f *eventsFeed) deliver(ctx context.Context, ev Event) bool {
	select {
	case f.out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// run connects and reconnects until ctx ends or the subscriptions fail
// for good.
func (f *eventsFeed) run(ctx context.Context) {
	var notify func(Event) bool
	if f.reconnects {
		notify = func(ev Event) bool { return f.deliver(ctx, f.named(ev)) }
	}
	err := reconnect(ctx, f.cl, f.stream, notify)
	if ctx.Err() != nil {
		return
	}
	if errors.Is(err, errFallback) {
		f.fallback(ctx)
		return
	}
	f.deliver(ctx, f.named(Event{Type: EventError, Err: err}))
}

// named sets ev's Collection and ID when the Watch follows one document
// or one collection: an event about the whole stream is then about it.
func (f *eventsFeed) named(ev Event) Event {
	switch {
	case len(f.docOrder) == 1 && len(f.collOrder) == 0:
		ev.Collection, ev.ID = f.docOrder[0].sub.Collection, f.docOrder[0].sub.ID
	case len(f.docOrder) == 0 && len(f.collOrder) == 1:
		ev.Collection = f.collOrder[0].sub.Collection
	}
	return ev
}

// fallback follows the documents over their own feeds, and ends the
// collection subscriptions with ErrUnsupported.
func (f *eventsFeed) fallback(ctx context.Context) {
	var wg sync.WaitGroup
	for _, d := range f.docOrder {
		sub := d.sub
		sub.After = d.last
		w := &docFeed{cl: f.cl, sub: sub, out: f.out, last: d.last, reconnects: f.reconnects}
		wg.Go(func() { w.run(ctx) })
	}
	for _, c := range f.collOrder {
		err := fmt.Errorf("patchd: following collection %s needs POST /events: %w", c.sub.Collection, ErrUnsupported)
		if !f.deliver(ctx, Event{Type: EventError, Collection: c.sub.Collection, Err: err}) {
			break
		}
	}
	wg.Wait()
}

// reconnect calls stream until ctx ends or it fails for good (a
// *permanentError, whose error it returns), waiting between attempts as
// the retry policy or the server says, and never less than the policy's
// BaseDelay: after a Retry-After, as long as it says, up to
// MaxRetryAfter; after a stream that worked, the stream's retry delay
// (capped by MaxDelay); after one that failed (a *streamFault), at
// least as long, and longer with each failure in a row, as after a
// failure to connect, which takes the policy's backoff. Before each wait
// it passes an EventReconnect to notify, unless notify is nil; notify
// returns false when ctx has ended.
func reconnect(ctx context.Context, cl *Client, stream func(ctx context.Context, hint *time.Duration) (opened bool, wait time.Duration, err error), notify func(Event) bool) error {
	p := cl.retry
	failures, faults := 0, 0
	hint := 2 * time.Second
	for {
		opened, wait, err := stream(ctx, &hint)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return perm.err
		}
		// A 500 may be a proxy's passing fault, or the server's lasting
		// one (a damaged document): a few in a row are tried again.
		var prob *Problem
		if errors.As(err, &prob) && prob.Status == http.StatusInternalServerError {
			if faults++; faults >= maxServerFaults {
				return err
			}
		} else {
			faults = 0
		}
		var fault *streamFault
		h := min(hint, p.MaxDelay)
		serverDelay := h/2 + time.Duration(float64(h/2)*jitter())
		switch {
		case wait > 0:
			wait = min(wait, p.MaxRetryAfter) // the server said when (Retry-After)
		case opened && errors.As(err, &fault):
			wait = max(serverDelay, p.growing(failures))
			failures++
		case opened:
			failures = 0
			wait = serverDelay
		default:
			wait = p.delay(failures)
			failures++
		}
		wait = max(wait, p.BaseDelay)
		if notify != nil && !notify(Event{Type: EventReconnect, Err: err, Delay: wait, Failures: failures}) {
			return ctx.Err()
		}
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// body returns the POST /events request that resumes every subscription.
func (f *eventsFeed) body() ([]byte, error) {
	type docJSON struct {
		C     string  `json:"c"`
		ID    string  `json:"id"`
		After *uint64 `json:"after,omitempty"`
	}
	type collJSON struct {
		C     string          `json:"c"`
		After string          `json:"after,omitempty"`
		Where json.RawMessage `json:"where,omitempty"`
	}
	var req struct {
		Docs        []docJSON  `json:"docs,omitempty"`
		Collections []collJSON `json:"collections,omitempty"`
		Presence    bool       `json:"presence,omitempty"`
	}
	req.Presence = f.presence
	for _, d := range f.docOrder {
		j := docJSON{C: d.sub.Collection, ID: d.sub.ID}
		if d.started {
			j.After = &d.last
		}
		req.Docs = append(req.Docs, j)
	}
	for _, c := range f.collOrder {
		req.Collections = append(req.Collections, collJSON{C: c.sub.Collection, After: c.cursor, Where: c.where})
	}
	return encodeJSON(&req)
}

// stream opens POST /events once and reads it until it ends; see
// docFeed.stream.
func (f *eventsFeed) stream(ctx context.Context, hint *time.Duration) (opened bool, wait time.Duration, err error) {
	for _, d := range f.docOrder {
		d.present = false
	}
	body, err := f.body()
	if err != nil {
		return false, 0, &permanentError{err}
	}
	c := &call{method: http.MethodPost, path: "/events", body: body, header: http.Header{
		"Accept": {"text/event-stream"}, "Cache-Control": {"no-cache"}, "Content-Type": {"application/json"},
	}}
	return readStream(ctx, f.cl, c, hint, func(a *answer) error {
		if a.status == http.StatusNotFound || a.status == http.StatusMethodNotAllowed {
			return errFallback
		}
		return f.cl.fail(a, "", "")
	}, f.handle)
}

// handle checks one event's place and sends it on.
func (f *eventsFeed) handle(ctx context.Context, ev sseEvent) error {
	var names struct {
		C  string `json:"c"`
		ID string `json:"id"`
	}
	switch ev.name {
	case "snapshot", "reset", "version":
		if err := json.Unmarshal(ev.data, &names); err != nil {
			return fmt.Errorf("patchd: %s event: %w", ev.name, err)
		}
		d := f.docs[[2]string{names.C, names.ID}]
		if d == nil {
			return fmt.Errorf("patchd: %s event of %s/%s, which was not asked for", ev.name, names.C, names.ID)
		}
		out, err := docEvent(ev, d.last, d.started)
		if out == nil || err != nil {
			return err
		}
		out.Collection, out.ID = d.sub.Collection, d.sub.ID
		if !f.deliver(ctx, *out) {
			return context.Cause(ctx)
		}
		d.last, d.started = out.Seq, true
	case "change":
		var d struct {
			Version
			C      string `json:"c"`
			ID     string `json:"id"`
			Cursor string `json:"cursor"`
			Match  *bool  `json:"match"`
		}
		if err := json.Unmarshal(ev.data, &d); err != nil {
			return fmt.Errorf("patchd: change event: %w", err)
		}
		c := f.colls[d.C]
		if c == nil || d.Cursor == "" {
			return fmt.Errorf("patchd: change event of collection %q, cursor %q: not asked for", d.C, d.Cursor)
		}
		v := d.Version
		out := Event{Type: EventChange, Collection: d.C, ID: d.ID, Seq: v.Seq, ETag: v.ETag, Version: &v, Cursor: d.Cursor, Match: v.ETag != ""}
		if d.Match != nil {
			out.Match = *d.Match
		}
		if !f.deliver(ctx, out) {
			return context.Cause(ctx)
		}
		c.cursor = d.Cursor
	case "presence":
		var d struct {
			C        string            `json:"c"`
			ID       string            `json:"id"`
			Sessions []PresenceSession `json:"sessions"`
		}
		if err := json.Unmarshal(ev.data, &d); err != nil {
			return fmt.Errorf("patchd: presence event: %w", err)
		}
		doc := f.docs[[2]string{d.C, d.ID}]
		if !f.presence || doc == nil {
			return fmt.Errorf("patchd: presence event of %s/%s, which was not asked for", d.C, d.ID)
		}
		if d.Sessions == nil {
			d.Sessions = []PresenceSession{}
		}
		doc.sessions, doc.present = len(d.Sessions), true
		if !f.deliver(ctx, Event{Type: EventPresence, Collection: d.C, ID: d.ID, Sessions: d.Sessions}) {
			return context.Cause(ctx)
		}
	case "reset-collection":
		var d struct {
			C      string `json:"c"`
			Cursor string `json:"cursor"`
		}
		if err := json.Unmarshal(ev.data, &d); err != nil {
			return fmt.Errorf("patchd: reset-collection event: %w", err)
		}
		c := f.colls[d.C]
		if c == nil || d.Cursor == "" {
			return fmt.Errorf("patchd: reset-collection event of collection %q, cursor %q: not asked for", d.C, d.Cursor)
		}
		if !f.deliver(ctx, Event{Type: EventResetCollection, Collection: d.C, Cursor: d.Cursor}) {
			return context.Cause(ctx)
		}
		c.cursor = d.Cursor
	case "ready":
		var d struct {
			Cursors []string `json:"cursors"`
		}
		if err := json.Unmarshal(ev.data, &d); err != nil {
			return fmt.Errorf("patchd: ready event: %w", err)
		}
		if len(d.Cursors) != len(f.collOrder) {
			return fmt.Errorf("patchd: ready event with %d cursors for %d collections", len(d.Cursors), len(f.collOrder))
		}
		// Each cursor is at or after the last change sent before ready:
		// a collection without a change since resumes from it.
		cursors := make(map[string]string, len(f.collOrder))
		for i, c := range f.collOrder {
			if d.Cursors[i] != "" {
				c.cursor = d.Cursors[i]
			}
			if c.cursor != "" {
				cursors[c.sub.Collection] = c.cursor
			}
		}
		// The server sends a document's sessions at the start only when
		// it has some: one that had some before this stream (a restart
		// ended them) has none now, and says so.
		for _, doc := range f.docOrder {
			if f.presence && !doc.present && doc.sessions > 0 {
				doc.sessions = 0
				if !f.deliver(ctx, Event{Type: EventPresence, Collection: doc.sub.Collection, ID: doc.sub.ID, Sessions: []PresenceSession{}}) {
					return context.Cause(ctx)
				}
			}
			doc.present = true
		}
		if f.ready && !f.deliver(ctx, Event{Type: EventReady, Cursors: cursors}) {
			return context.Cause(ctx)
		}
	}
	return nil
}

// docEvent decodes a snapshot, reset or version event of a document whose
// last event sent had seq last (started: one was sent). It returns nil
// for a version sent already, and errGap for one that skips a version.
func docEvent(ev sseEvent, last uint64, started bool) (*Event, error) {
	switch ev.name {
	case "snapshot", "reset":
		var d struct {
			Seq   uint64          `json:"seq"`
			ETag  *string         `json:"etag"`
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(ev.data, &d); err != nil {
			return nil, fmt.Errorf("patchd: change feed %s event: %w", ev.name, err)
		}
		out := &Event{Type: EventType(ev.name), Seq: d.Seq}
		if d.ETag != nil {
			out.ETag = *d.ETag
		}
		if string(d.Value) != "null" {
			out.Value = d.Value
		}
		return out, nil // a reset may go back (another database)
	case "version":
		var v Version
		if err := json.Unmarshal(ev.data, &v); err != nil {
			return nil, fmt.Errorf("patchd: change feed version event: %w", err)
		}
		if started && v.Seq <= last {
			return nil, nil // sent already
		}
		if started && v.Seq != last+1 {
			return nil, errGap // reconnect: the server replays from last or resets
		}
		return &Event{Type: EventVersion, Seq: v.Seq, ETag: v.ETag, Version: &v}, nil
	}
	return nil, nil
}

// docFeed follows one document's own change feed (GET
// /docs/{c}/{id}/events), for servers without POST /events.
type docFeed struct {
	cl         *Client
	sub        DocSubscription
	out        chan<- Event
	last       uint64 // the seq of the last event sent; 0: none yet
	reconnects bool   // send EventReconnect
}

// permanentError ends a subscription.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// streamFault ends a stream that failed once open: one that ended before
// any event, or whose event could not be handled (malformed, not asked
// for, out of sequence). Streams that fail in a row are reopened after a
// growing delay.
type streamFault struct{ err error }

func (e *streamFault) Error() string { return e.err.Error() }
func (e *streamFault) Unwrap() error { return e.err }

// maxServerFaults is how many 500 answers in a row end a Watch.
const maxServerFaults = 5

// errIdle ends a stream on which nothing arrived for the idle timeout.
var errIdle = errors.New("patchd: change feed idle")

// errGap ends a stream that skipped a version.
var errGap = errors.New("patchd: change feed skipped a version")

// run connects and reconnects until ctx ends or the subscription fails
// for good.
func (f *docFeed) run(ctx context.Context) {
	var notify func(Event) bool
	if f.reconnects {
		notify = func(ev Event) bool { return f.send(ctx, ev) }
	}
	err := reconnect(ctx, f.cl, f.stream, notify)
	if ctx.Err() != nil {
		return
	}
	f.send(ctx, Event{Type: EventError, Err: err})
}

// send delivers ev unless ctx ends first.
func (f *docFeed) send(ctx context.Context, ev Event) bool {
	ev.Collection, ev.ID = f.sub.Collection, f.sub.ID
	select {
	case f.out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// stream opens the feed once and reads it until it ends. opened reports
// that the server answered with a stream; wait, when not zero, is how long
// the server asked to wait before the next attempt.
func (f *docFeed) stream(ctx context.Context, hint *time.Duration) (opened bool, wait time.Duration, err error) {
	h := http.Header{"Accept": {"text/event-stream"}, "Cache-Control": {"no-cache"}}
	if f.last > 0 {
		h.Set("Last-Event-ID", strconv.FormatUint(f.last, 10))
	}
	c := &call{method: http.MethodGet, path: docPath(f.sub.Collection, f.sub.ID) + "/events", header: h}
	return readStream(ctx, f.cl, c, hint, func(a *answer) error {
		return f.cl.fail(a, f.sub.Collection, f.sub.ID)
	}, f.handle)
}

// handle checks one event's place in the sequence and sends it on.
func (f *docFeed) handle(ctx context.Context, ev sseEvent) error {
	out, err := docEvent(ev, f.last, f.last > 0)
	if out == nil || err != nil {
		return err
	}
	if !f.send(ctx, *out) {
		return context.Cause(ctx)
	}
	f.last = out.Seq
	return nil
}

// readStream sends c once and reads the event stream it answers until it
// ends, passing each event to handle. An answer other than a stream is
// turned into an error by fail: retried when the status is, else
// permanent. opened reports that the server answered with a stream; wait,
// when not zero, is how long the server asked to wait before the next
// attempt (Retry-After); *hint becomes the stream's retry delay.
func readStream(ctx context.Context, cl *Client, c *call, hint *time.Duration, fail func(*answer) error, handle func(context.Context, sseEvent) error) (opened bool, wait time.Duration, err error) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := cl.request(sctx, c)
	if err != nil {
		return false, 0, &permanentError{err}
	}
	idle := time.AfterFunc(cl.idle, func() { cancel(errIdle) })
	defer idle.Stop()
	res, err := cl.hc.Do(req)
	if err != nil {
		return false, 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, err := cl.readBody(c, res)
		if errors.Is(err, ErrResponseTooLarge) {
			return false, 0, &permanentError{err}
		}
		if err != nil {
			return false, 0, err
		}
		a := &answer{status: res.StatusCode, header: res.Header, body: body}
		if retryable(a) {
			d, _ := retryAfter(res.Header)
			return false, d, fail(a)
		}
		if a.status == http.StatusInternalServerError {
			// A proxy's passing fault, say (patchd answers 503 for what a
			// client may retry): a follower outlasts a few (reconnect).
			return false, 0, fail(a)
		}
		return false, 0, &permanentError{fail(a)}
	}
	if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); mt != "text/event-stream" {
		return false, 0, &permanentError{fmt.Errorf("patchd: %s: answered %q, not an event stream", c, mt)}
	}
	r := &sseReader{r: bufio.NewReaderSize(res.Body, 64<<10), touch: func() { idle.Reset(cl.idle) }}
	for handled := false; ; handled = true {
		ev, err := r.next()
		if r.retry > 0 {
			*hint = r.retry
		}
		if err != nil {
			if cause := context.Cause(sctx); cause != nil && ctx.Err() == nil {
				err = cause // the idle timer
			}
			if !handled {
				err = &streamFault{err}
			}
			return true, 0, err
		}
		// A consumer that is slow to take the event does not make the
		// stream idle.
		idle.Stop()
		if err := handle(ctx, ev); err != nil {
			return true, 0, &streamFault{err}
		}
		idle.Reset(cl.idle)
	}
}

// sseEvent is one dispatched Server-Sent Event.
type sseEvent struct {
	name string
	data []byte
}

// maxEventBytes bounds one event's data: documents are bounded by the
// server's --max-doc (1 MiB by default).
const maxEventBytes = 64 << 20

// sseReader parses a text/event-stream (the HTML standard's rules for the
// fields event, data and retry; comments and other fields are skipped).
type sseReader struct {
	r     *bufio.Reader
	touch func() // called for every line: the stream is alive
	retry time.Duration
	line  []byte
}

// next returns the next event that has data.
func (s *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	var data bytes.Buffer
	hasData := false
	for {
		line, err := s.readLine()
		if err != nil {
			return sseEvent{}, err
		}
		s.touch()
		if len(line) == 0 {
			if hasData {
				ev.data = bytes.TrimSuffix(data.Bytes(), []byte("\n"))
				if ev.name == "" {
					ev.name = "message"
				}
				return ev, nil
			}
			ev = sseEvent{}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			ev.name = string(value)
		case "data":
			if data.Len()+len(value) > maxEventBytes {
				return sseEvent{}, fmt.Errorf("patchd: change feed event over %d bytes", maxEventBytes)
			}
			data.Write(value)
			data.WriteByte('\n')
			hasData = true
		case "retry":
			if ms, err := strconv.ParseUint(string(value), 10, 32); err == nil {
				s.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}

// readLine returns one line without its end (LF or CRLF), bounded by
// maxEventBytes. The slice is valid until the next call.
func (s *sseReader) readLine() ([]byte, error) {
	s.line = s.line[:0]
	for {
		chunk, err := s.r.ReadSlice('\n')
		s.line = append(s.line, chunk...)
		if len(s.line) > maxEventBytes+16 {
			return nil, fmt.Errorf("patchd: change feed line over %d bytes", maxEventBytes)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return bytes.TrimSuffix(bytes.TrimSuffix(s.line, []byte("\n")), []byte("\r")), nil
	}
}
