package handlers

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/query"
	"github.com/patchd/patchd/store"
)

// POST /events: one Server-Sent-Events stream for many document and
// collection subscriptions (API.md, "One stream, many documents and
// collections"). The stream is stateless: every subscription names where it
// resumes (a document's seq, a collection's cursor), so any replica can
// serve it, and a client changes its set by opening a new stream.

// docSub is a subscription to one document.
type docSub struct {
	coll, id string
	key      string // hubKey
	resume   bool   // after was given
	after    uint64 // the last seq sent (or given)
	started  bool   // its snapshot or reset, if any, was sent
	presence presenceSub
}

// collSub is a subscription to a collection's changes.
type collSub struct {
	coll    string
	key     string // collKey
	where   *query.Where
	cursor  store.Cursor // after the last change read; nil until known
	pending bool         // changes wait to be readable (store.ChangeLog.Pending)
	gen     uint64       // the collection's generation when last woken (changeReads)
	read    time.Time    // when the last read it used began
	// atPresent says the stream's start set the cursor at the present (no
	// after given): a start resumed after a failed read leaves its changes
	// for after ready.
	atPresent bool
}

// eventsRequest is a parsed POST /events body.
type eventsRequest struct {
	docs     []*docSub
	colls    []*collSub
	presence bool // presence events for the document subscriptions
}

// encodeCursor is a cursor as the API shows it: base64url without padding.
func encodeCursor(c store.Cursor) string { return base64.RawURLEncoding.EncodeToString(c) }

// parseEventsRequest reads and checks a POST /events body. Errors are 400
// invalid-request (or invalid-json) naming what is wrong.
func parseEventsRequest(body []byte, maxSubs int) (*eventsRequest, error) {
	// A collection's where lies three levels down: the body, the
	// collections array, the subscription. It may nest as a listing's.
	v, err := patch.Parse(body, patch.Limits{MaxDepth: query.MaxDepth + 3, MaxNumber: patch.DefaultMaxNumber})
	if errors.Is(err, patch.ErrNumberTooLong) {
		return nil, fail(ErrInvalidRequest, "the body: "+err.Error())
	}
	if errors.Is(err, patch.ErrInvalidDocument) {
		return nil, fail(ErrInvalidRequest, fmt.Sprintf("the body nests deeper than the limit of %d levels (a where's %d and the three around it)", query.MaxDepth+3, query.MaxDepth))
	}
	if err != nil {
		return nil, err
	}
	top, ok := v.(map[string]any)
	if !ok {
		return nil, fail(ErrInvalidRequest, `the body must be a JSON object: {"docs": [...], "collections": [...]}`)
	}
	if err := onlyMembers("the body", top, "docs", "collections", "presence"); err != nil {
		return nil, err
	}
	var presence bool
	if p, ok := top["presence"]; ok {
		if presence, ok = p.(bool); !ok {
			return nil, fail(ErrInvalidRequest, "presence must be true or false")
		}
	}
	docs, err := arrayMember(top, "docs")
	if err != nil {
		return nil, err
	}
	colls, err := arrayMember(top, "collections")
	if err != nil {
		return nil, err
	}
	switch n := len(docs) + len(colls); {
	case n == 0:
		return nil, fail(ErrInvalidRequest, "nothing to follow: give at least one of docs and collections")
	case n > maxSubs:
		return nil, fail(ErrInvalidRequest, fmt.Sprintf("%d subscriptions; a stream may have at most %d (--max-subscriptions)", n, maxSubs))
	}
	req := &eventsRequest{presence: presence}
	seen := map[string]int{}
	for i, e := range docs {
		where := fmt.Sprintf("docs[%d]", i)
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fail(ErrInvalidRequest, where+` must be an object {"c", "id", "after"}`)
		}
		if err := onlyMembers(where, m, "c", "id", "after"); err != nil {
			return nil, err
		}
		d := &docSub{}
		if d.coll, err = nameMember(where, m, "c"); err != nil {
			return nil, err
		}
		if d.id, err = nameMember(where, m, "id"); err != nil {
			return nil, err
		}
		if a, ok := m["after"]; ok {
			n, isNum := a.(patch.Number)
			seq, perr := strconv.ParseUint(string(n), 10, 64)
			if !isNum || perr != nil {
				return nil, fail(ErrInvalidRequest, where+".after must be a version seq (a non-negative integer)")
			}
			d.resume, d.after = true, seq
		}
		d.key = hubKey(d.coll, d.id)
		d.presence.key = presenceKey(d.coll, d.id)
		if j, dup := seen[d.key]; dup {
			return nil, fail(ErrInvalidRequest, fmt.Sprintf("%s names the document of docs[%d] again", where, j))
		}
		seen[d.key] = i
		req.docs = append(req.docs, d)
	}
	whereBytes := 0
	for i, e := range colls {
		where := fmt.Sprintf("collections[%d]", i)
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fail(ErrInvalidRequest, where+` must be an object {"c", "after", "where"}`)
		}
		if err := onlyMembers(where, m, "c", "after", "where"); err != nil {
			return nil, err
		}
		cs := &collSub{}
		if cs.coll, err = nameMember(where, m, "c"); err != nil {
			return nil, err
		}
		if a, ok := m["after"]; ok {
			s, isStr := a.(string)
			cur, derr := base64.RawURLEncoding.Strict().DecodeString(s) // Strict: no aliases with other padding bits
			if derr == nil {
				derr = store.CheckCursorOf(cur, cs.coll)
			}
			if !isStr || derr != nil {
				return nil, fail(ErrInvalidRequest, fmt.Sprintf("%s.after must be a cursor of collection %s, as a change event gave it", where, cs.coll))
			}
			cs.cursor = cur
		}
		if w, ok := m["where"]; ok {
			if _, isObj := w.(map[string]any); !isObj {
				return nil, fail(ErrInvalidRequest, where+".where must be an object mapping JSON Pointers to values or operators")
			}
			canon := patch.Canonical(w)
			// The filters live as long as the stream: bound them in all.
			if whereBytes += len(canon); whereBytes > maxStreamWhereBytes {
				return nil, fail(ErrInvalidRequest, fmt.Sprintf("%s: the filters of one stream hold at most %d KiB of JSON in all; follow the collection with a smaller where, or in several streams", where, maxStreamWhereBytes>>10))
			}
			if cs.where, err = query.ParseWhere(string(canon)); err != nil {
				return nil, fail(ErrInvalidRequest, where+": "+err.Error())
			}
		}
		cs.key = collKey(cs.coll)
		if j, dup := seen[cs.key]; dup {
			return nil, fail(ErrInvalidRequest, fmt.Sprintf("%s names the collection of collections[%d] again: one subscription per collection and stream", where, j))
		}
		seen[cs.key] = i
		req.colls = append(req.colls, cs)
	}
	return req, nil
}

// maxStreamWhereBytes bounds the where filters of one POST /events, as
// canonical JSON, in all: parsed, they are held for the stream's life, at
// about twenty times their size.
const maxStreamWhereBytes = 64 << 10

// onlyMembers refuses members of m other than names.
func onlyMembers(where string, m map[string]any, names ...string) error {
	for k := range m {
		if !slices.Contains(names, k) {
			return fail(ErrInvalidRequest, fmt.Sprintf("%s has an unknown member %q", where, k))
		}
	}
	return nil
}

// arrayMember returns the array m[name], or nil when absent.
func arrayMember(m map[string]any, name string) ([]any, error) {
	v, ok := m[name]
	if !ok {
		return nil, nil
	}
	a, ok := v.([]any)
	if !ok {
		return nil, fail(ErrInvalidRequest, name+" must be an array")
	}
	return a, nil
}

// nameMember returns m[name] when it is a valid collection or id.
func nameMember(where string, m map[string]any, name string) (string, error) {
	s, ok := m[name].(string)
	if !ok || !store.ValidName(s) {
		return "", fail(ErrInvalidRequest, fmt.Sprintf("%s.%s must be a string matching [A-Za-z0-9._~-]{1,128}, not . or ..", where, name))
	}
	return s, nil
}

// eventsMany serves POST /events.
func (h *Handler) eventsMany(c echo.Context) error {
	if mediaType(c) != echo.MIMEApplicationJSON {
		return wrongType(c, "POST /events takes", "application/json")
	}
	if err := checkPreconditionSyntax(c); err != nil {
		return err
	}
	body, release, err := h.readBodyHeld(c)
	if err != nil {
		return err
	}
	limits := h.cfg.Streams.withDefaults()
	req, err := parseEventsRequest(body, limits.MaxSubscriptions)
	release() // the stream outlives its body: the decode budget is for others
	if err != nil {
		return err
	}
	if h.cfg.Tokens != nil {
		p := principal(c)
		for _, coll := range req.collections() {
			if !p.allows(RoleRead, coll) {
				return forbidden(c, fmt.Sprintf("a %s token for %s may not read collection %q", p.Role, scopeText(p), coll))
			}
		}
	}
	done, err := h.admitStream(c, len(req.docs)+len(req.colls))
	if err != nil {
		return err
	}
	defer done()
	// Errors come before the stream starts: a store that does not answer
	// is 503 now, not a stream that opens and ends at once. (The reads
	// below go on after the answer has started.)
	if err := h.svc.Ping(c.Request().Context()); err != nil {
		if c.Request().Context().Err() != nil {
			return err // the client is gone
		}
		h.log.Warn("change feed: the store does not answer", "request_id", info(c).id, "err", err)
		info(c).causeLogged = true
		return fail(store.ErrUnavailable, "the database is unavailable or did not answer in time; retry after the Retry-After delay")
	}
	// A cursor's head was checked with the body; its position is the
	// store's to read. One that does not parse is refused now, before the
	// stream starts, rather than reset later as if changes were pruned.
	for i, cs := range req.colls {
		if cs.cursor == nil {
			continue
		}
		_, err := h.svc.Changes(c.Request().Context(), cs.coll, cs.cursor, 1)
		switch {
		case errors.Is(err, store.ErrInvalidCursor):
			return fail(ErrInvalidRequest, fmt.Sprintf("collections[%d].after must be a cursor of collection %s, as a change event gave it", i, cs.coll))
		case errors.Is(err, store.ErrUnavailable):
			return err // 503, with Retry-After
		case err != nil && !errors.Is(err, store.ErrCursorGone) && c.Request().Context().Err() == nil:
			return err
		}
	}

	keys := make([]string, 0, 2*len(req.docs)+len(req.colls))
	for _, d := range req.docs {
		keys = append(keys, d.key)
		if req.presence {
			keys = append(keys, d.presence.key)
		}
	}
	for _, cs := range req.colls {
		keys = append(keys, cs.key)
	}
	// Subscribe before the first read: a commit after it wakes the stream.
	w, unsubscribe := h.hub.subscribeKeys(keys)
	defer unsubscribe()

	cfg := h.cfg.Events.withDefaults()
	res := c.Response()
	hdr := res.Header()
	hdr.Set(echo.HeaderContentType, "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	res.WriteHeader(http.StatusOK)
	s := &stream{rc: http.NewResponseController(res), w: res, timeout: cfg.WriteTimeout}
	defer s.ended(h.log, c.Request())
	_ = s.rc.SetReadDeadline(time.Time{})
	// The answer's head goes out at once: the client knows the stream is
	// open while its start waits for room in the answers' budget.
	if err := s.write(fmt.Appendf(nil, "retry: %d\n\n", cfg.Retry.Milliseconds())); err != nil {
		return nil
	}
	if err := s.flush(); err != nil {
		return nil
	}
	m := &multiStream{h: h, s: s, req: req, batch: cfg.Batch, client: clientOf(c, h.cfg.Tokens != nil)}
	ctx, stop := h.streamContext(c) // a stream ends with its client, half-closed or gone, or with the streams
	defer stop()
	// A read that fails because the store is unavailable (restarting,
	// failing over, slow) does not end the stream, as on GET .../events:
	// it is tried again after a backoff, or at a wake-up, while heartbeats
	// keep the connection open, and every subscription goes on where it
	// was. Clients thus do not all reconnect at once after a failover. Any
	// other error (history that does not decode, changes pruned faster
	// than read) ends the stream, as before: trying again would not mend
	// it.
	var (
		failures int
		again    <-chan time.Time // fires when a failed read is due again; nil otherwise
	)
	failed := func(err error) bool { // false: the stream ends
		if !errors.Is(err, store.ErrUnavailable) || ctx.Err() != nil {
			m.ended(ctx, err)
			return false
		}
		if failures == 0 {
			h.log.Warn("change feed: read failed; retrying", "err", err)
		}
		failures++
		h.metrics.feedRetries.Inc()
		again = time.After(feedRetryWait(failures))
		return true
	}
	if err := m.start(ctx); err != nil && !failed(err) {
		return nil
	}
	if err := s.flush(); err != nil {
		return nil
	}

	heartbeat := time.NewTicker(cfg.Heartbeat)
	defer heartbeat.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	presence := time.NewTimer(time.Hour) // the next presence event due
	presence.Stop()
	defer presence.Stop()
	backoff := minPendingWait
	if m.pending() { // the replay found changes still pending
		retry.Reset(backoff)
	}
	for {
		var all bool
		var keys map[string]struct{}
		select {
		case <-w.wake:
			keys, all = w.take()
		case <-retry.C:
		case <-again:
		case <-presence.C:
		case <-heartbeat.C:
			if err := s.write([]byte(": heartbeat\n\n")); err != nil {
				return nil
			}
			if err := s.flush(); err != nil {
				return nil
			}
			if h.following {
				continue
			}
			all = true // nobody tells this stream of commits: look
		case <-ctx.Done(): // the client went, or the streams were closed
			return nil
		}
		// After a failed read, every subscription is read again: the one
		// that failed may not be among those woken.
		all = all || failures > 0
		var err error
		if m.ready {
			err = m.pump(ctx, keys, all)
		} else if err = m.start(ctx); err == nil { // a read of the start failed: it goes on
			// Wake-ups taken while it failed are owed: read everything.
			err = m.pump(ctx, nil, true)
		}
		var next time.Time
		if err == nil {
			next, err = m.pumpDuePresence(ctx)
		}
		if err != nil {
			if !failed(err) {
				return nil
			}
			if err := s.flush(); err != nil {
				return nil
			}
			continue
		}
		if failures > 0 {
			h.log.Info("change feed: reading again", "failures", failures)
			failures, again = 0, nil
		}
		if !next.IsZero() {
			presence.Reset(time.Until(next))
		}
		if err := s.flush(); err != nil {
			return nil
		}
		if m.pending() {
			retry.Reset(backoff)
			backoff = min(2*backoff, maxPendingWait)
		} else {
			backoff = minPendingWait
		}
	}
}

// How soon a stream reads again a collection whose changes are pending
// (waiting for earlier transactions to end), doubling while they stay so.
const (
	minPendingWait = 2 * time.Millisecond
	maxPendingWait = 250 * time.Millisecond
)

// collections returns every collection the request reads.
func (r *eventsRequest) collections() []string {
	var out []string
	for _, d := range r.docs {
		out = append(out, d.coll)
	}
	for _, cs := range r.colls {
		out = append(out, cs.coll)
	}
	return out
}

// multiStream writes the events of one POST /events stream.
type multiStream struct {
	h      *Handler
	s      *stream
	req    *eventsRequest
	batch  int
	client string // clientOf the request: whose share its snapshots hold
	ready  bool   // start has sent everything, ready included
}

// errStreamWrite is a failed write to the client: the stream ends quietly.
var errStreamWrite = errors.New("stream write failed")

func (m *multiStream) write(name string, data []byte) error {
	head := make([]byte, 0, len(name)+16)
	head = append(head, "event: "...)
	head = append(head, name...)
	head = append(head, "\ndata: "...)
	if err := m.s.write(head, data, []byte("\n\n")); err != nil {
		return errStreamWrite
	}
	return nil
}

// ended logs why a stream ended, unless the client went away or the
// streams were closed (either ends ctx).
func (m *multiStream) ended(ctx context.Context, err error) {
	if errors.Is(err, errStreamWrite) || ctx.Err() != nil {
		return
	}
	m.h.log.Warn("change feed: stream ended", "err", err)
}

// start sends every snapshot and replay the request asks for, then ready.
// After a failed read it is called again, and goes on where it stopped:
// each subscription keeps what it has sent.
func (m *multiStream) start(ctx context.Context) error {
	for _, d := range m.req.docs {
		if err := ctx.Err(); err != nil { // the client went, or the streams were closed
			return err
		}
		if !d.started {
			if err := m.startDoc(ctx, d); err != nil {
				return err
			}
			d.started = true
		}
		if err := m.pumpDoc(ctx, d); err != nil {
			return err
		}
		if m.req.presence {
			if err := m.pumpPresence(ctx, d, true); err != nil {
				return err
			}
		}
	}
	for _, cs := range m.req.colls {
		if cs.cursor == nil {
			if err := m.present(ctx, cs); err != nil {
				return err
			}
			cs.atPresent = true
			continue
		}
		if cs.atPresent {
			continue // changes since the present are live: after ready
		}
		cs.gen = m.h.hub.reads.gen(cs.coll) // the stream is subscribed: reads from now on are new enough
		if err := m.pumpColl(ctx, cs, time.Time{}); err != nil {
			return err
		}
	}
	// ready is {} as API-2 writes it, with the collections' cursors when
	// there are collection subscriptions.
	data := map[string]any{}
	if len(m.req.colls) > 0 {
		cursors := make([]any, len(m.req.colls))
		for i, cs := range m.req.colls {
			cursors[i] = encodeCursor(cs.cursor)
		}
		data["cursors"] = cursors
	}
	if err := m.write("ready", patch.Canonical(data)); err != nil {
		return err
	}
	m.ready = true
	return nil
}

// pump sends what changed for the subscriptions under keys (or all).
func (m *multiStream) pump(ctx context.Context, keys map[string]struct{}, all bool) error {
	for _, d := range m.req.docs {
		if _, ok := keys[d.key]; ok || all {
			if err := m.pumpDoc(ctx, d); err != nil {
				return err
			}
		}
		if _, ok := keys[d.presence.key]; m.req.presence && (ok || all) {
			d.presence.due = true // sent by pumpDuePresence
		}
	}
	for _, cs := range m.req.colls {
		if _, ok := keys[cs.key]; ok || all || cs.pending {
			cs.gen = m.h.hub.reads.gen(cs.coll)
			// Pending changes become readable with time, not with a
			// commit: a read for them must be newer than the last.
			var notBefore time.Time
			if cs.pending {
				notBefore = cs.read
			}
			if err := m.pumpColl(ctx, cs, notBefore); err != nil {
				return err
			}
		}
	}
	return nil
}

// pending reports whether a collection has changes waiting to be readable.
func (m *multiStream) pending() bool {
	for _, cs := range m.req.colls {
		if cs.pending {
			return true
		}
	}
	return false
}

// startDoc sends where a document subscription starts: a snapshot when it
// names no seq (a document that does not exist is at seq 0, with etag and
// value null), or a reset when the seq it names is past the document's
// last version.
func (m *multiStream) startDoc(ctx context.Context, d *docSub) error {
	if d.resume {
		vs, _, err := m.h.svc.History(ctx, d.coll, d.id, d.after, 1, 0)
		if errors.Is(err, store.ErrNotFound) {
			if d.after == 0 {
				return nil
			}
			return m.docEvent("reset", d, docState{})
		}
		if err != nil || len(vs) > 0 {
			return err
		}
		snap, err := m.h.state(ctx, d.coll, d.id)
		if err != nil || snap.seq >= d.after {
			return err // caught up: nothing to send, nothing held
		}
		// A seq this document never reached: a reset, read again, held
		// until written.
		if snap, err = m.h.heldState(ctx, m.client, d.coll, d.id); err != nil {
			return err
		}
		return m.docEvent("reset", d, snap)
	}
	snap, err := m.h.heldState(ctx, m.client, d.coll, d.id)
	if errors.Is(err, store.ErrNotFound) {
		snap, err = docState{}, nil
	}
	if err != nil {
		return err
	}
	return m.docEvent("snapshot", d, snap)
}

// docEvent sends a snapshot or reset of a document and moves its seq,
// then releases what the state held.
func (m *multiStream) docEvent(name string, d *docSub, st docState) error {
	defer docState{held: st.held}.release() // not the body, which data copies
	d.after = st.seq
	data := st.dataOf(d.coll, d.id)
	st.body = nil
	return m.write(name, data)
}

// pumpDoc sends the versions of a document after the last one sent.
func (m *multiStream) pumpDoc(ctx context.Context, d *docSub) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		p, err := m.h.nextVersions(ctx, m.client, d.coll, d.id, d.after, m.batch)
		if errors.Is(err, store.ErrNotFound) {
			return nil // never written: nothing to send yet
		}
		if err != nil {
			return err
		}
		err = m.sendPage(d, p)
		p.release()
		if err != nil || !p.more {
			return err
		}
	}
}

// sendPage sends a page of a document's versions, or its reset.
func (m *multiStream) sendPage(d *docSub, p versionPage) error {
	if p.reset != nil {
		return m.docEvent("reset", d, *p.reset)
	}
	events, err := m.h.hub.versions.all(d.coll, d.id, p.versions, true)
	if err != nil {
		return err
	}
	for _, ev := range events {
		if err := m.write("version", ev.data); err != nil {
			return err
		}
		d.after = ev.seq
	}
	return nil
}

// present sets a collection subscription at the present.
func (m *multiStream) present(ctx context.Context, cs *collSub) error {
	log, err := m.h.svc.Changes(ctx, cs.coll, nil, 0)
	if err != nil {
		return err
	}
	cs.cursor = log.Next
	return nil
}

// maxResets bounds the reset-collection events one read may send in a row,
// in case changes are pruned faster than the stream reads them.
const maxResets = 3

// pumpColl sends the changes of a collection after the subscription's
// cursor, as far as they can be read now: from a read shared with the
// collection's other streams that is new enough for cs.gen and began after
// notBefore.
func (m *multiStream) pumpColl(ctx context.Context, cs *collSub, notBefore time.Time) error {
	for resets := 0; ; {
		var log store.ChangeLog
		read, err := m.h.hub.reads.read(ctx, m.h.svc, cs.coll, cs.cursor, m.batch, cs.gen, notBefore)
		if err == nil {
			log, cs.read = read.log, read.start
		}
		var (
			before, after []bool
			moved         bool
		)
		if err == nil && cs.where != nil {
			before, after, err = m.matches(ctx, cs, log.Changes)
			moved = errors.Is(err, document.ErrHistoryMoved)
		}
		if moved || errors.Is(err, store.ErrCursorGone) || errors.Is(err, store.ErrInvalidCursor) {
			// Changes after the cursor are no longer retained: the client
			// lists the collection again and goes on from the present.
			if resets++; resets > maxResets {
				return fmt.Errorf("%s: changes pruned faster than they are read", cs.coll)
			}
			if err := m.present(ctx, cs); err != nil {
				return err
			}
			data := map[string]any{"c": cs.coll, "cursor": encodeCursor(cs.cursor)}
			if err := m.write("reset-collection", patch.Canonical(data)); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		for i, ch := range log.Changes {
			var data []byte
			switch {
			case cs.where == nil:
				data, err = read.event(cs.coll, i)
			case before[i] || after[i]:
				data, err = changeData(cs.coll, ch, &after[i])
			default:
				continue // neither matched before nor matches now
			}
			if err != nil {
				return fmt.Errorf("%s/%s seq %d: %w", cs.coll, ch.ID, ch.Version.Seq, err)
			}
			if err := m.write("change", data); err != nil {
				return err
			}
		}
		cs.cursor, cs.pending = log.Next, log.Pending
		if !log.More {
			return nil
		}
	}
}

// matches evaluates a subscription's filter on the document before and
// after each change: from the stored body when that is enough
// (document.Service.Matches), else on each document's states rebuilt
// from its current one by undoing its versions (WalkMatches: one walk per
// read, shared with the other streams that judge the same document).
func (m *multiStream) matches(ctx context.Context, cs *collSub, changes []store.CollectionChange) (before, after []bool, err error) {
	first := map[string]uint64{} // per document, its oldest change here
	for _, ch := range changes {
		if s, ok := first[ch.ID]; !ok || ch.Version.Seq < s {
			first[ch.ID] = ch.Version.Seq
		}
	}
	count := map[string]int{}
	for _, ch := range changes {
		count[ch.ID]++
	}
	before, after = make([]bool, len(changes)), make([]bool, len(changes))
	decided := make([]bool, len(changes))
	for i, ch := range changes {
		if count[ch.ID] != 1 {
			continue
		}
		b, a, ok, err := m.h.svc.Matches(ctx, cs.coll, ch, cs.where)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			before[i], after[i], decided[i] = b, a, true
			delete(first, ch.ID)
		}
	}
	match := make(map[string]map[uint64]bool, len(first))
	for id, from := range first {
		states, err := m.h.svc.WalkMatches(ctx, cs.coll, id, from, cs.where)
		if err != nil {
			return nil, nil, err
		}
		match[id] = states
	}
	for i, ch := range changes {
		if !decided[i] {
			before[i] = match[ch.ID][ch.Version.Seq-1]
			after[i] = match[ch.ID][ch.Version.Seq]
		}
	}
	return before, after, nil
}
