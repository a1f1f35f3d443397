package handlers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/internal/budget"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// EventsConfig tunes the change feed (GET /docs/{c}/{id}/events). Zero
// fields take the defaults noted on each.
type EventsConfig struct {
	// Heartbeat is how often an idle stream gets a comment line, so that
	// proxies keep it open; the stream also re-reads history then, which
	// picks up writes this process was not told about. Default 15s.
	Heartbeat time.Duration
	// WriteTimeout is how long one write to a stream may block before the
	// consumer counts as too slow and its stream is ended. Default 10s.
	WriteTimeout time.Duration
	// Retry is the reconnection delay suggested to clients (the SSE retry
	// field). Default 2s.
	Retry time.Duration
	// Batch is how many versions one history read fetches (fewer when
	// they are large: see historyPageBytes). Default 100.
	Batch int
}

func (c EventsConfig) withDefaults() EventsConfig {
	if c.Heartbeat <= 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Retry <= 0 {
		c.Retry = 2 * time.Second
	}
	if c.Batch <= 0 {
		c.Batch = 100
	}
	return c
}

// hub tells the streams of a document that a write to it returned. It only
// wakes them: each stream reads what changed from the store's history, so a
// notification can never be lost to a full buffer, and a writer never waits
// for a reader.
type hub struct {
	mu   sync.RWMutex
	subs map[string]map[*waker]struct{}
	// ctx is done once close is called: every stream's context ends with
	// it (streamContext).
	ctx    context.Context
	cancel context.CancelFunc
	// reads shares the change log reads of collection streams; notify
	// raises a collection's generation there before it wakes them.
	reads *changeReads
	// presence shares the presence reads of document streams, likewise.
	presence *presenceReads
	// versions shares the rendered version events of document streams.
	versions *versionEvents
}

// waker is one stream's wake-up channel. It holds at most one pending
// wake-up: several writes while the stream is busy coalesce into one. A
// stream of many subscriptions also learns which of its keys were woken
// (track), so that it reads only what changed.
type waker struct {
	wake chan struct{}

	track bool       // record the keys woken
	mu    sync.Mutex // guards dirty and all
	dirty map[string]struct{}
	all   bool // every key: commits may have been missed
}

// notify records key (when tracking) and wakes the stream without
// blocking.
func (w *waker) notify(key string) {
	if w.track {
		w.mu.Lock()
		if key == "" {
			w.all = true
		} else if !w.all {
			w.dirty[key] = struct{}{}
		}
		w.mu.Unlock()
	}
	select {
	case w.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// take returns the keys woken since the last take, or all when commits
// may have been missed, and forgets them.
func (w *waker) take() (keys map[string]struct{}, all bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys, all = w.dirty, w.all
	w.dirty, w.all = make(map[string]struct{}), false
	return keys, all
}

func newHub() *hub {
	ctx, cancel := context.WithCancel(context.Background())
	return &hub{subs: make(map[string]map[*waker]struct{}), ctx: ctx, cancel: cancel,
		reads: newChangeReads(), presence: newPresenceReads(), versions: newVersionEvents()}
}

// hubKey is the key of a document's streams; collKey that of a
// collection's. Names never contain 0x00 and are never empty, so the two
// kinds of keys never meet.
func hubKey(coll, id string) string { return coll + "\x00" + id }
func collKey(coll string) string    { return "\x00" + coll }

// subscribe registers a stream for a document; the returned function
// unregisters it.
func (h *hub) subscribe(coll, id string) (*waker, func()) {
	w := &waker{wake: make(chan struct{}, 1)}
	return w, h.register(w, []string{hubKey(coll, id)})
}

// subscribeKeys registers a stream of many subscriptions under every key
// (hubKey and collKey values), with one waker that tracks which were woken.
func (h *hub) subscribeKeys(keys []string) (*waker, func()) {
	w := &waker{wake: make(chan struct{}, 1), track: true, dirty: make(map[string]struct{})}
	return w, h.register(w, keys)
}

// register adds w under keys; the returned function removes it.
func (h *hub) register(w *waker, keys []string) func() {
	h.mu.Lock()
	for _, key := range keys {
		m := h.subs[key]
		if m == nil {
			m = make(map[*waker]struct{})
			h.subs[key] = m
		}
		m[w] = struct{}{}
	}
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		for _, key := range keys {
			if m := h.subs[key]; m != nil {
				delete(m, w)
				if len(m) == 0 {
					delete(h.subs, key)
				}
			}
		}
		h.mu.Unlock()
	}
}

// notify wakes every stream of a document, and of its collection, without
// blocking.
func (h *hub) notify(coll, id string) {
	h.reads.bump(coll)
	dk, ck := hubKey(coll, id), collKey(coll)
	h.mu.RLock()
	for w := range h.subs[dk] {
		w.notify(dk)
	}
	for w := range h.subs[ck] {
		w.notify(ck)
	}
	h.mu.RUnlock()
}

// notifyAll wakes every stream, for when writes may have been missed.
func (h *hub) notifyAll() {
	h.reads.bump("")
	h.mu.RLock()
	for _, m := range h.subs {
		for w := range m {
			w.notify("")
		}
	}
	h.mu.RUnlock()
}

// follow wakes streams for the commits of events, the store's, those of
// other processes sharing its database included, until the channel closes.
func (h *hub) follow(events <-chan store.Event) {
	for ev := range events {
		if ev.Resync {
			h.notifyAll()
		} else {
			h.notify(ev.Collection, ev.ID)
		}
	}
}

// count returns the number of streams subscribed.
func (h *hub) count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	seen := make(map[*waker]struct{})
	for _, m := range h.subs {
		for w := range m {
			seen[w] = struct{}{}
		}
	}
	return len(seen)
}

// close ends every stream, present and future.
func (h *hub) close() { h.cancel() }

// CloseStreams ends every change feed stream and makes new ones end at once.
// Call it when the server shuts down: streams never go idle by themselves,
// so a graceful shutdown would otherwise wait for them until its deadline.
func (h *Handler) CloseStreams() {
	h.hub.close()
	h.stopFollow()
	if h.ownPresence != nil {
		h.ownPresence.Close()
	}
}

// resumePoint reads where a stream starts: the Last-Event-ID header, else
// the after query parameter. ok is false when neither is given.
func resumePoint(c echo.Context) (after uint64, ok bool, err error) {
	if s := c.Request().Header.Get("Last-Event-ID"); s != "" {
		after, err = strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, false, fail(ErrInvalidRequest, "Last-Event-ID must be a version seq (a non-negative integer)")
		}
		return after, true, nil
	}
	if s := c.QueryParam("after"); s != "" {
		after, err = strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, false, fail(ErrInvalidRequest, "after must be a version seq (a non-negative integer)")
		}
		return after, true, nil
	}
	return 0, false, nil
}

// docState is a document's state at one seq: the body of a snapshot or
// reset event.
type docState struct {
	seq  uint64
	etag string // "" when deleted
	body []byte // nil when deleted
	// held gives back the bytes of the answers' budget the body holds
	// until its event is written (heldState); nil when it holds none.
	held func()
}

// release gives back what the state holds of the answers' budget. A
// caller that keeps only what to release, not the body, keeps
// docState{held: s.held}.
func (s docState) release() {
	if s.held != nil {
		s.held()
	}
}

// data renders {"etag","seq","value"} with the body's bytes as they are.
func (s docState) data() []byte { return s.dataOf("", "") }

// dataOf renders data with "c" and "id" (when coll is not ""), members in
// canonical order.
func (s docState) dataOf(coll, id string) []byte {
	var b bytes.Buffer
	b.Grow(len(s.body) + 6*(len(coll)+len(id)) + len(s.etag) + 64) // the body's bytes are copied once
	b.WriteByte('{')
	if coll != "" {
		b.WriteString(`"c":`)
		b.Write(patch.Canonical(coll))
		b.WriteByte(',')
	}
	b.WriteString(`"etag":`)
	if s.etag == "" {
		b.WriteString("null")
	} else {
		b.Write(patch.Canonical(s.etag))
	}
	if coll != "" {
		b.WriteString(`,"id":`)
		b.Write(patch.Canonical(id))
	}
	b.WriteString(`,"seq":`)
	b.WriteString(strconv.FormatUint(s.seq, 10))
	b.WriteString(`,"value":`)
	if s.body == nil {
		b.WriteString("null")
	} else {
		b.Write(s.body)
	}
	b.WriteString("}")
	return b.Bytes()
}

// heldState reads a document's state for a stream's snapshot or reset
// event, holding its body's bytes of the answers' budget, and of its
// client's share, until the state's release once the event is written
// (see heldRead).
func (h *Handler) heldState(ctx context.Context, client, coll, id string) (docState, error) {
	var st docState
	held, err := h.heldRead(ctx, client, func() (n int, err error) {
		st, err = h.state(ctx, coll, id)
		return len(st.body), err
	}, func() { st = docState{} })
	if err != nil {
		return docState{}, err
	}
	st.held = held
	return st, nil
}

// heldRead calls read, which reads what a stream is about to send (a
// snapshot, a page of versions) and returns its size, and holds that many
// bytes of the answers' budget and of client's share until the returned
// function is called, once the stream has written it: what streams hold
// while their clients do not read is bounded as the documents being
// written are, in all and per client. Less than budget.Min holds nothing.
// Unlike a GET, a stream is not refused when there is no room: heldRead
// calls drop to let go of what was read, waits for room, and calls read
// again, until ctx is done (errStreamsClosed when the streams were
// closed).
func (h *Handler) heldRead(ctx context.Context, client string, read func() (int, error), drop func()) (func(), error) {
	n, err := read()
	for err == nil {
		if n < budget.Min {
			return func() {}, nil
		}
		if held, ok := h.tryHoldStream(client, n); ok {
			return held, nil
		}
		drop() // a stream waiting for room holds nothing it read
		var held func()
		if held, err = h.waitHoldStream(ctx, client, n); err != nil {
			break
		}
		var again int
		if again, err = read(); err == nil && again <= n {
			return held, nil
		}
		held() // an error, or it grew meanwhile
		n = again
	}
	return nil, h.streamErr(err)
}

// streamErr is err, or errStreamsClosed when the streams were closed: a
// stream's context ends with them (streamContext).
func (h *Handler) streamErr(err error) error {
	if err != nil && h.hub.ctx.Err() != nil {
		return errStreamsClosed
	}
	return err
}

// streamContext returns the context of a stream: done when its client
// goes (half-closed or gone) or when the streams are closed.
func (h *Handler) streamContext(c echo.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(clientContext(c))
	stop := context.AfterFunc(h.hub.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// errStreamsClosed is the error of a stream's read or wait once the
// streams are closed (503 before a stream's answer has begun).
var errStreamsClosed = errors.New("the server closed its streams")

// tryHoldStream takes n bytes of the answers' budget and of client's
// share for a stream's event if they are free now; the returned function
// gives them back.
func (h *Handler) tryHoldStream(client string, n int) (func(), bool) {
	share := min(int64(n), h.answerShares.Max())
	if !h.answerShares.Take(client, share) {
		return nil, false
	}
	held, ok := h.answers.TryAcquire(n)
	if !ok {
		h.answerShares.Give(client, share)
		return nil, false
	}
	return releaseOnce(held, func() { h.answerShares.Give(client, share) }), true
}

// waitHoldStream is tryHoldStream that waits for room, until ctx is done.
func (h *Handler) waitHoldStream(ctx context.Context, client string, n int) (func(), error) {
	share := min(int64(n), h.answerShares.Max())
	if err := h.answerShares.Wait(ctx, client, share); err != nil {
		return nil, err
	}
	held, err := h.answers.Acquire(ctx, n)
	if err != nil {
		h.answerShares.Give(client, share)
		return nil, err
	}
	return releaseOnce(held, func() { h.answerShares.Give(client, share) }), nil
}

// releaseOnce returns a function that calls each of fs, once.
func releaseOnce(fs ...func()) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			for _, f := range fs {
				f()
			}
		})
	}
}

// state reads the current state of a document and the seq it is at.
// Returns store.ErrNotFound when the document has no history at all.
func (h *Handler) state(ctx context.Context, coll, id string) (docState, error) {
	// A deleted document has no body to read its seq from; its last
	// version is found in history. A re-creation between the two reads
	// shows as a last version that is not a delete: read again.
	for range 3 {
		doc, err := h.svc.Get(ctx, coll, id)
		if err == nil {
			return docState{seq: doc.Seq, etag: doc.ETag, body: doc.Body}, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return docState{}, err
		}
		last, err := h.lastVersion(ctx, coll, id)
		if err != nil {
			return docState{}, err
		}
		if last != nil && last.Kind == store.KindDelete {
			return docState{seq: last.Seq}, nil
		}
	}
	return docState{}, fmt.Errorf("events %s/%s: the document kept changing between reads", coll, id)
}

// events serves GET /docs/{c}/{id}/events: the document's committed
// versions as Server-Sent Events (see API.md, "Change feed").
func (h *Handler) events(c echo.Context) error {
	coll, id, err := target(c, true)
	if err != nil {
		return err
	}
	if err := checkPreconditionSyntax(c); err != nil {
		return err
	}
	after, resume, err := resumePoint(c)
	if err != nil {
		return err
	}
	release, err := h.admitStream(c, 1)
	if err != nil {
		return err
	}
	defer release()
	ctx, stop := h.streamContext(c) // a stream ends with its client, half-closed or gone, or with the streams
	defer stop()
	cfg := h.cfg.Events.withDefaults()
	client := clientOf(c, h.cfg.Tokens != nil)

	// Subscribe before the first read: a write that commits after it
	// wakes this stream, and the read after the wake-up finds it.
	sub, unsubscribe := h.hub.subscribe(coll, id)
	defer unsubscribe()

	// The first read happens before the answer starts, so that a missing
	// document or a failing store is still a problem+json answer.
	var first [][]byte   // snapshot or reset event, if any, in parts
	var held docState    // what first holds of the answers' budget (not its body), until written
	var page versionPage // versions to send, holding their bytes until written
	defer func() { held.release(); page.release() }()
	if resume {
		page, err = h.nextVersions(ctx, client, coll, id, after, cfg.Batch)
		if err != nil {
			return h.streamErr(err)
		}
		switch {
		case page.reset != nil: // the versions after it were pruned
			snap := *page.reset
			first, after, page.reset = eventParts("reset", snap.seq, snap.data()), snap.seq, nil
		case len(page.versions) == 0:
			// An empty read means "nothing new", unless the client names
			// a seq this document never reached (another database, say).
			snap, err := h.state(ctx, coll, id)
			if err == nil && snap.seq < after {
				snap, err = h.heldState(ctx, client, coll, id) // a reset: read again, held until written
				held = docState{held: snap.held}
				first, after, page.more = eventParts("reset", snap.seq, snap.data()), snap.seq, true
			}
			if err != nil {
				return h.streamErr(err)
			}
		}
	} else {
		snap, err := h.heldState(ctx, client, coll, id)
		if err != nil {
			return h.streamErr(err)
		}
		held = docState{held: snap.held}
		first, after, page.more = eventParts("snapshot", snap.seq, snap.data()), snap.seq, true
	}

	res := c.Response()
	hdr := res.Header()
	hdr.Set(echo.HeaderContentType, "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	hdr.Del("Accept-Patch")
	res.WriteHeader(http.StatusOK)

	s := &stream{rc: http.NewResponseController(res), w: res, timeout: cfg.WriteTimeout}
	defer s.ended(h.log, c.Request())
	// The server's read and write timeouts are meant for requests, not for
	// a stream that lives for hours: lift them; each write below sets its
	// own deadline instead. Errors mean the connection cannot set
	// deadlines, which only an unusual server gives.
	_ = s.rc.SetReadDeadline(time.Time{})
	if err := s.write(fmt.Appendf(nil, "retry: %d\n\n", cfg.Retry.Milliseconds())); err != nil {
		return nil
	}
	if first != nil {
		err := s.write(first...)
		first = nil
		held.release()
		if err != nil {
			return nil
		}
	}
	if err := s.flush(); err != nil {
		return nil
	}

	heartbeat := time.NewTicker(cfg.Heartbeat)
	defer heartbeat.Stop()
	// A read that fails (the store restarting, failing over, slow) does not
	// end the stream: it is tried again after a backoff, or at a wake-up,
	// while heartbeats keep the connection open, and the stream goes on
	// where it was. Clients thus do not all reconnect at once after a
	// failover.
	var (
		failures int
		retry    <-chan time.Time // fires when a failed read is due again; nil otherwise
	)
	failed := func(err error) {
		if failures == 0 {
			h.log.Warn("change feed: read failed; retrying", "collection", coll, "id", id, "err", err)
		}
		failures++
		h.metrics.feedRetries.Inc()
		retry = time.After(feedRetryWait(failures))
		page = versionPage{}
	}
	for {
		events, err := h.hub.versions.all(coll, id, page.versions, false)
		if err != nil {
			h.log.Error("change feed: undecodable history", "err", err)
			return nil // the stream ends; the client resumes from the last id
		}
		for _, ev := range events {
			if err := s.write(eventHead(nil, "version", ev.seq), ev.data, []byte("\n\n")); err != nil {
				return nil
			}
			after = ev.seq
		}
		if len(page.versions) > 0 {
			if err := s.flush(); err != nil {
				return nil
			}
		}
		page.release()
		if !page.more {
			select {
			case <-sub.wake:
			case <-retry:
			case <-heartbeat.C:
				if err := s.write([]byte(": heartbeat\n\n")); err != nil {
					return nil
				}
				if err := s.flush(); err != nil {
					return nil
				}
			case <-ctx.Done(): // the client went, or the streams were closed
				return nil
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		page, err = h.nextVersions(ctx, client, coll, id, after, cfg.Batch)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failed(err)
			continue
		}
		if page.reset != nil {
			if err := s.write(eventParts("reset", page.reset.seq, page.reset.data())...); err != nil {
				return nil
			}
			if err := s.flush(); err != nil {
				return nil
			}
			after, page.reset = page.reset.seq, nil
		}
		if failures > 0 {
			h.log.Info("change feed: reading again", "collection", coll, "id", id, "failures", failures)
			failures, retry = 0, nil
		}
	}
}

// lastVersion returns the last version in a document's history, nil when
// there is none, or store.ErrNotFound when the document never existed. A
// history of one page is read whole; a longer one is searched, a version
// at a time (at most about twice log2 of the last seq reads), so that the
// snapshot of a deleted document whose history holds many large versions
// costs no more than a few of them.
func (h *Handler) lastVersion(ctx context.Context, coll, id string) (*store.Version, error) {
	vs, more, err := h.svc.History(ctx, coll, id, 0, maxPageSize, historyPageBytes)
	if err != nil || len(vs) == 0 {
		return nil, err
	}
	last := vs[len(vs)-1]
	if !more {
		return &last, nil
	}
	// after reports the first version after seq, if any.
	after := func(seq uint64) (*store.Version, error) {
		vs, _, err := h.svc.History(ctx, coll, id, seq, 1, 0)
		if err != nil || len(vs) == 0 {
			return nil, err
		}
		return &vs[0], nil
	}
	// Gallop to a seq with no version after it (hi), then bisect between
	// the last version found (lo) and hi.
	var hi uint64
	for step := uint64(1); ; step *= 2 {
		if step > math.MaxUint64-last.Seq {
			hi = math.MaxUint64
			break
		}
		v, err := after(last.Seq + step)
		if err != nil {
			return nil, err
		}
		if v == nil {
			hi = last.Seq + step
			break
		}
		last = *v
	}
	for lo := last.Seq; lo < hi; {
		mid := lo + (hi-lo)/2
		v, err := after(mid)
		if err != nil {
			return nil, err
		}
		if v == nil {
			hi = mid
		} else {
			last, lo = *v, v.Seq
		}
	}
	return &last, nil
}

// feedRetryWait is how long a stream waits before it reads again after its
// n-th failed read in a row: from 100ms, doubling up to 5s, with jitter so
// that the streams of a replica do not all read at once.
func feedRetryWait(n int) time.Duration {
	wait := min(5*time.Second, 100*time.Millisecond<<min(n-1, 6))
	return wait/2 + rand.N(wait/2) // #nosec G404 -- jitter, not a secret

}

// versionPage is what a stream reads after the last seq it sent: the
// versions to send, or, when the versions right after it were pruned from
// history, the document's current state to reset to (more is then set:
// versions after that state may follow). It holds its bytes of the
// answers' budget (heldRead) until release, once written.
type versionPage struct {
	versions []store.Version
	more     bool
	reset    *docState
	held     func()
}

// release gives back what the page holds of the answers' budget.
func (p versionPage) release() {
	if p.held != nil {
		p.held()
	}
}

// versionEventOverhead is about what a version event adds to its ops:
// seq, etag, at, kind, actor, requestId and the rest.
const versionEventOverhead = 256

// nextVersions reads the page of up to batch versions of a document after
// seq after, held for client.
func (h *Handler) nextVersions(ctx context.Context, client, coll, id string, after uint64, batch int) (versionPage, error) {
	var p versionPage
	held, err := h.heldRead(ctx, client, func() (int, error) {
		p = versionPage{}
		vs, more, err := h.svc.History(ctx, coll, id, after, batch, historyPageBytes)
		if err != nil {
			return 0, err
		}
		if !gap(after, vs) {
			p.versions, p.more = vs, more
			n := 0
			for _, v := range vs {
				n += len(v.Ops) + versionEventOverhead
			}
			return n, nil
		}
		snap, err := h.state(ctx, coll, id)
		if err != nil {
			return 0, err
		}
		p.reset, p.more = &snap, true
		return len(snap.body), nil
	}, func() { p = versionPage{} })
	if err != nil {
		return versionPage{}, err
	}
	p.held = held
	return p, nil
}

// gap reports whether versions, read after seq after, do not start right
// after it: the versions in between were pruned from history.
func gap(after uint64, versions []store.Version) bool {
	return len(versions) > 0 && versions[0].Seq != after+1
}

// eventParts renders one Server-Sent Event in parts, for a stream's
// write, without copying data: one line of JSON (canonical JSON has no
// line breaks).
func eventParts(name string, id uint64, data []byte) [][]byte {
	return [][]byte{eventHead(nil, name, id), data, []byte("\n\n")}
}

// eventHead appends an event's lines up to its data, which the caller
// appends, followed by a blank line.
func eventHead(b []byte, name string, id uint64) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, "\nevent: "...)
	b = append(b, name...)
	return append(b, "\ndata: "...)
}

// stream writes to one consumer. Every write must finish within timeout:
// a consumer that does not read is cut off, and it resumes by id.
type stream struct {
	rc      *http.ResponseController
	w       http.ResponseWriter
	timeout time.Duration
	stalled bool // a write timed out: the consumer stopped reading
}

// The deadline is lifted again after each write: over HTTP/2 a deadline
// that passes resets the stream even while nothing is being written, and
// a stream may rightly stay idle for longer than timeout.
func (s *stream) write(parts ...[]byte) error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	defer func() { _ = s.rc.SetWriteDeadline(time.Time{}) }()
	for _, b := range parts {
		if _, err := s.w.Write(b); err != nil {
			return s.failed(err)
		}
	}
	return nil
}

// failed notes a write that timed out, and returns err.
func (s *stream) failed(err error) error {
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		s.stalled = true
	}
	return err
}

// ended logs, when the stream was cut off because its consumer stopped
// reading, that it was: its request's log line says only 200.
func (s *stream) ended(log *slog.Logger, r *http.Request) {
	if s.stalled {
		log.Info("change feed: closed a stream whose client stopped reading", "method", r.Method, "path", r.URL.Path, "write_timeout", s.timeout)
	}
}

func (s *stream) flush() error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	err := s.rc.Flush()
	_ = s.rc.SetWriteDeadline(time.Time{})
	if err != nil {
		return s.failed(err)
	}
	return nil
}
