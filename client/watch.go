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

// Subscriptions lists what Watch follows.
//
// Today it holds documents, each followed over its own change feed (GET
// /docs/{c}/{id}/events). Collection subscriptions, and one stream for
// all of them over POST /events, will be added as new fields once the
// server serves that route (API-2 section 1); code that fills Docs keeps
// compiling and working.
type Subscriptions struct {
	// Docs are the documents to follow. A document listed twice is
	// followed once, as its first entry says.
	Docs []DocSubscription
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

// EventType says what an Event reports.
type EventType string

// Event types. More will come with collection subscriptions (change,
// ready, reset-collection); a consumer should ignore types it does not
// know.
const (
	// EventSnapshot is the document as it is when the feed starts without
	// a resume point: Seq, ETag and Value.
	EventSnapshot EventType = "snapshot"
	// EventVersion is one committed version, in seq order, each exactly
	// once: Seq, ETag and Version (whose Ops turn the previous version
	// into this one).
	EventVersion EventType = "version"
	// EventReset replaces the caller's copy: the versions after its resume
	// point are no longer in history (or the server never had them). Seq,
	// ETag and Value, as a snapshot.
	EventReset EventType = "reset"
	// EventError ends a subscription that cannot go on (the document never
	// existed, 401, 403...): Err says why. Network failures and server
	// restarts are not errors: the feed reconnects and resumes.
	EventError EventType = "error"
)

// Event is one event of Watch.
type Event struct {
	// Type says what the event reports.
	Type EventType
	// Collection and ID name the document.
	Collection, ID string
	// Seq is the version the event brings the caller to; pass the last
	// one received as DocSubscription.After to resume later.
	Seq uint64
	// ETag is that version's ETag; "" when the document is deleted.
	ETag string
	// Value is the document, for snapshot and reset; nil when it is
	// deleted.
	Value json.RawMessage
	// Version is the committed version, for version events.
	Version *Version
	// Err is why the subscription ended, for error events.
	Err error
}

// Deleted reports whether the event leaves the document deleted.
func (e Event) Deleted() bool {
	return (e.Type == EventSnapshot || e.Type == EventReset || e.Type == EventVersion) && e.ETag == ""
}

// Watch follows documents and sends their events on the returned channel:
// for each document a snapshot (or, with After, the versions since), then
// every version as it is committed, in order. When a stream breaks (the
// network, a server restart, an idle stream), Watch reconnects with the
// retry policy's backoff (or the server's retry hint after a stream that
// was open) and resumes after the last version it sent, so that no
// version is skipped or sent twice; a resume point past the retained
// history gives a reset event.
//
// Events of one document arrive in seq order; those of different documents
// interleave. The channel is unbuffered: a consumer that does not keep up
// slows the streams down and loses nothing. It is closed when ctx ends, or
// when every subscription has ended with an error event. Cancel ctx to
// stop; Watch's goroutines then end without the channel being drained.
func (cl *Client) Watch(ctx context.Context, subs Subscriptions) <-chan Event {
	out := make(chan Event)
	var wg sync.WaitGroup
	seen := map[[2]string]bool{}
	for _, s := range subs.Docs {
		k := [2]string{s.Collection, s.ID}
		if seen[k] {
			continue
		}
		seen[k] = true
		w := &docFeed{cl: cl, sub: s, out: out, last: s.After}
		wg.Go(func() { w.run(ctx) })
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}

// docFeed follows one document's change feed.
type docFeed struct {
	cl   *Client
	sub  DocSubscription
	out  chan<- Event
	last uint64 // the seq of the last event sent; 0: none yet
	// hint is the server's reconnection delay (the SSE retry field).
	hint time.Duration
}

// permanentError ends a subscription.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// errIdle ends a stream on which nothing arrived for the idle timeout.
var errIdle = errors.New("patchd: change feed idle")

// errGap ends a stream that skipped a version.
var errGap = errors.New("patchd: change feed skipped a version")

// run connects and reconnects until ctx ends or the subscription fails
// for good.
func (f *docFeed) run(ctx context.Context) {
	if err := f.cl.checkNames(f.sub.Collection, f.sub.ID, true); err != nil {
		f.send(ctx, Event{Type: EventError, Err: err})
		return
	}
	failures := 0
	f.hint = 2 * time.Second
	for {
		opened, wait, err := f.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			f.send(ctx, Event{Type: EventError, Err: perm.err})
			return
		}
		switch {
		case wait > 0:
			// The server said when (Retry-After).
		case opened:
			failures = 0
			h := min(f.hint, f.cl.retry.MaxDelay)
			wait = h/2 + time.Duration(float64(h/2)*jitter())
		default:
			wait = f.cl.retry.delay(failures)
			failures++
		}
		if !sleep(ctx, wait) {
			return
		}
	}
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
func (f *docFeed) stream(ctx context.Context) (opened bool, wait time.Duration, err error) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	h := http.Header{"Accept": {"text/event-stream"}, "Cache-Control": {"no-cache"}}
	if f.last > 0 {
		h.Set("Last-Event-ID", strconv.FormatUint(f.last, 10))
	}
	c := &call{method: http.MethodGet, path: docPath(f.sub.Collection, f.sub.ID) + "/events", header: h}
	req, err := f.cl.request(sctx, c)
	if err != nil {
		return false, 0, &permanentError{err}
	}
	idle := time.AfterFunc(f.cl.idle, func() { cancel(errIdle) })
	defer idle.Stop()
	res, err := f.cl.hc.Do(req)
	if err != nil {
		return false, 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		a := &answer{status: res.StatusCode, header: res.Header, body: body}
		if retryable(a) {
			d, _ := retryAfter(res.Header)
			return false, d, f.cl.fail(a, f.sub.Collection, f.sub.ID)
		}
		return false, 0, &permanentError{f.cl.fail(a, f.sub.Collection, f.sub.ID)}
	}
	if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); mt != "text/event-stream" {
		return false, 0, &permanentError{fmt.Errorf("patchd: %s: answered %q, not an event stream", c, mt)}
	}
	r := &sseReader{r: bufio.NewReaderSize(res.Body, 64<<10), touch: func() { idle.Reset(f.cl.idle) }}
	for {
		ev, err := r.next()
		if err != nil {
			if cause := context.Cause(sctx); cause != nil && ctx.Err() == nil {
				err = cause // the idle timer
			}
			return true, 0, err
		}
		if r.retry > 0 {
			f.hint = r.retry
		}
		// A consumer that is slow to take the event does not make the
		// stream idle.
		idle.Stop()
		if err := f.handle(ctx, ev); err != nil {
			return true, 0, err
		}
		idle.Reset(f.cl.idle)
	}
}

// handle checks one event's place in the sequence and sends it on.
func (f *docFeed) handle(ctx context.Context, ev sseEvent) error {
	switch ev.name {
	case "snapshot", "reset":
		var d struct {
			Seq   uint64          `json:"seq"`
			ETag  *string         `json:"etag"`
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(ev.data, &d); err != nil {
			return fmt.Errorf("patchd: change feed %s event: %w", ev.name, err)
		}
		out := Event{Type: EventType(ev.name), Seq: d.Seq}
		if d.ETag != nil {
			out.ETag = *d.ETag
		}
		if string(d.Value) != "null" {
			out.Value = d.Value
		}
		if !f.send(ctx, out) {
			return context.Cause(ctx)
		}
		f.last = d.Seq // a reset may go back (another database)
	case "version":
		var v Version
		if err := json.Unmarshal(ev.data, &v); err != nil {
			return fmt.Errorf("patchd: change feed version event: %w", err)
		}
		if f.last > 0 && v.Seq <= f.last {
			return nil // sent already
		}
		if f.last > 0 && v.Seq != f.last+1 {
			return errGap // reconnect: the server replays from f.last or resets
		}
		if !f.send(ctx, Event{Type: EventVersion, Seq: v.Seq, ETag: v.ETag, Version: &v}) {
			return context.Cause(ctx)
		}
		f.last = v.Seq
	}
	return nil
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
