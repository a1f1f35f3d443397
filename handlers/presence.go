package handlers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// Presence (API.md, "Presence"): who has a document open, and where in it.
// Sessions live in a store.Presence registry (Config.Presence); handlers
// only translate HTTP, and streams that asked for presence follow it.

// maxPresenceBody is the largest PUT .../presence/{session} body.
const maxPresenceBody = 1024

// Bounds of a session id, of the characters of document ids.
const (
	minSessionLen = 16
	maxSessionLen = 64
)

// DefaultPresenceTTL is how long a session lives unless renewed.
const DefaultPresenceTTL = 30 * time.Second

// DefaultPresenceLimits bound the presence sessions of a server.
var DefaultPresenceLimits = store.PresenceLimits{PerDocument: 100, PerClient: 500, Total: 10000, PerClientDocument: 50}

// presenceTarget reads and checks the collection, id and session of a
// presence request.
func presenceTarget(c echo.Context) (coll, id, session string, err error) {
	if coll, id, err = target(c, true); err != nil {
		return "", "", "", err
	}
	session = c.Param("session")
	if len(session) < minSessionLen || len(session) > maxSessionLen || !store.ValidName(session) {
		return "", "", "", badSession(session)
	}
	return coll, id, session, nil
}

// badSession is the error of a presence session id that is not one.
func badSession(session string) error {
	return fail(ErrInvalidRequest, fmt.Sprintf("session %q must match [A-Za-z0-9._~-]{%d,%d}", session, minSessionLen, maxSessionLen))
}

// presenceMembers are the members of a presence body, all optional.
var presenceMembers = []string{"name", "color", "focus", "data"}

// presenceDepth bounds the nesting of a presence body, data included.
const presenceDepth = 16

// parsePresence checks a presence body and returns its canonical state:
// every member, null when absent.
func parsePresence(body []byte) ([]byte, error) {
	v, err := patch.Parse(body, patch.Limits{MaxDepth: presenceDepth})
	if errors.Is(err, patch.ErrInvalidDocument) {
		return nil, fail(ErrInvalidRequest, fmt.Sprintf("the body nests deeper than the limit of %d levels", presenceDepth))
	}
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fail(ErrInvalidRequest, `the body must be a JSON object {"name", "color", "focus", "data"}`)
	}
	if err := onlyMembers("the body", m, presenceMembers...); err != nil {
		return nil, err
	}
	for _, k := range []string{"name", "color"} {
		switch m[k].(type) {
		case nil, string:
		default:
			return nil, fail(ErrInvalidRequest, k+" must be a string or null")
		}
	}
	switch f := m["focus"].(type) {
	case nil:
	case string:
		if _, err := patch.ParsePointer(f); err != nil {
			return nil, fail(ErrInvalidRequest, fmt.Sprintf("focus %q must be a JSON Pointer (RFC 6901) or null", f))
		}
	default:
		return nil, fail(ErrInvalidRequest, "focus must be a JSON Pointer (RFC 6901) string or null")
	}
	state := make(map[string]any, len(presenceMembers))
	for _, k := range presenceMembers {
		state[k] = m[k]
	}
	return patch.Canonical(state), nil
}

// sessionJSON is a session as the API shows it.
func sessionJSON(s store.PresenceSession) (map[string]any, error) {
	v, err := patch.Parse(s.State, patch.Limits{MaxDepth: 64})
	if err != nil {
		return nil, fmt.Errorf("presence %s: stored state: %w", s.Session, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("presence %s: stored state is not an object", s.Session)
	}
	m["session"] = s.Session
	m["actor"] = nil
	if s.Actor != "" {
		m["actor"] = s.Actor
	}
	m["expires"] = s.Expires.UTC().Format(time.RFC3339Nano)
	return m, nil
}

// sessionsJSON is a document's sessions as the API shows them.
func sessionsJSON(ss []store.PresenceSession) ([]any, error) {
	out := make([]any, 0, len(ss))
	for _, s := range ss {
		m, err := sessionJSON(s)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// clientOf names the client of a request for the per-client bounds
// (presence sessions, request bodies, pages and batches in progress): its
// token with --tokens, else its address (as for streams).
func clientOf(c echo.Context, tokens bool) string {
	if tokens {
		if p := principal(c); p.Name != "" {
			return "token " + p.Name
		}
	}
	return clientKey(c.Request())
}

// notYours refuses a client another's live session.
func notYours(coll, id, session string) error {
	return fail(ErrForbidden, fmt.Sprintf("presence session %s on %s/%s was announced by another client: only it may renew or end it (pick a session id of your own)", session, coll, id))
}

// putPresence serves PUT /docs/{c}/{id}/presence/{session}.
func (h *Handler) putPresence(c echo.Context) error {
	coll, id, session, err := presenceTarget(c)
	if err != nil {
		return err
	}
	if err := noDryRun(c, "presence"); err != nil {
		return err
	}
	if mediaType(c) != echo.MIMEApplicationJSON {
		return wrongType(c, "presence is sent as", "application/json")
	}
	r := c.Request()
	if err := plainBody(r); err != nil {
		return err
	}
	if r.ContentLength > maxPresenceBody {
		return fail(ErrTooLarge, fmt.Sprintf("the body is %d bytes; presence is at most %d", r.ContentLength, maxPresenceBody))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPresenceBody+1))
	if err != nil {
		return fail(ErrInvalidRequest, "could not read the request body")
	}
	if len(body) > maxPresenceBody {
		return fail(ErrTooLarge, fmt.Sprintf("presence is at most %d bytes", maxPresenceBody))
	}
	state, err := parsePresence(body)
	if err != nil {
		return err
	}
	s := store.PresenceSession{Collection: coll, ID: id, Session: session, State: state,
		Client: clientOf(c, h.cfg.Tokens != nil), Actor: principal(c).Actor}
	s.Expires, err = h.presence.PutPresence(r.Context(), s, h.presenceTTL)
	if errors.Is(err, store.ErrPresenceNotYours) {
		return notYours(coll, id, session)
	}
	var full *store.PresenceFullError
	if errors.As(err, &full) {
		secs := int(math.Ceil(h.presenceTTL.Seconds()))
		c.Response().Header().Set(echo.HeaderRetryAfter, strconv.Itoa(max(secs, 1)))
		if full.Scope == store.PresenceShareScope {
			return fail(ErrRateLimited, fmt.Sprintf("this client has %d presence sessions of this document already, its share: the most one client may hold, so that others can join too; end one, or retry after %d s, when sessions may have expired", full.Limit, max(secs, 1)))
		}
		return fail(ErrRateLimited, fmt.Sprintf("%d presence sessions already (the %s limit); retry after %d s, when sessions may have expired", full.Limit, full.Scope, max(secs, 1)))
	}
	if err != nil {
		return err
	}
	m, err := sessionJSON(s)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-cache")
	return c.JSONBlob(http.StatusOK, patch.Canonical(m))
}

// deletePresence serves DELETE /docs/{c}/{id}/presence/{session}.
func (h *Handler) deletePresence(c echo.Context) error {
	coll, id, session, err := presenceTarget(c)
	if err != nil {
		return err
	}
	if err := noDryRun(c, "presence"); err != nil {
		return err
	}
	err = h.presence.EndPresence(c.Request().Context(), coll, id, session, clientOf(c, h.cfg.Tokens != nil))
	if errors.Is(err, store.ErrPresenceNotYours) {
		return notYours(coll, id, session)
	}
	if errors.Is(err, store.ErrNotFound) {
		return fail(store.ErrNotFound, fmt.Sprintf("no presence session %s on %s/%s (ended, or expired)", session, coll, id))
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-cache")
	return c.NoContent(http.StatusNoContent)
}

// getPresence serves GET /docs/{c}/{id}/presence.
func (h *Handler) getPresence(c echo.Context) error {
	coll, id, err := target(c, true)
	if err != nil {
		return err
	}
	ss, err := h.presence.ListPresence(c.Request().Context(), coll, id)
	if err != nil {
		return err
	}
	list, err := sessionsJSON(ss)
	if err != nil {
		return err
	}
	body := patch.Canonical(map[string]any{"sessions": list})
	c.Response().Header().Set("Cache-Control", "no-cache")
	c.Response().Header().Set(echo.HeaderContentLength, strconv.Itoa(len(body)))
	return c.JSONBlob(http.StatusOK, body)
}

// presenceKey is the hub key of a document's presence: it never meets
// hubKey and collKey values (names never contain 0x00, nor start with it).
func presenceKey(coll, id string) string { return presencePrefix + coll + "\x00" + id }

// presencePrefix begins every presenceKey.
const presencePrefix = "\x00\x00"

// followPresence wakes the streams that follow a document's presence when
// events hint that it changed, until the channel closes.
func (h *hub) followPresence(events <-chan store.Event) {
	for ev := range events {
		if ev.Resync {
			h.presence.bump("")
		} else {
			h.presence.bump(presenceKey(ev.Collection, ev.ID))
		}
		h.mu.RLock()
		if ev.Resync { // hints may have been missed: every follower looks again
			for k, ws := range h.subs {
				if strings.HasPrefix(k, presencePrefix) {
					for w := range ws {
						w.notify(k)
					}
				}
			}
		} else {
			k := presenceKey(ev.Collection, ev.ID)
			for w := range h.subs[k] {
				w.notify(k)
			}
		}
		h.mu.RUnlock()
	}
}

// presenceSub is what a stream last sent of a document's presence.
type presenceSub struct {
	key  string    // presenceKey
	sent []byte    // fingerprint of the sessions last sent; nil: none sent
	last time.Time // when the last presence event was sent
	due  bool      // a change to send once presenceEvery has passed since last
}

// presenceEvery is the least time between two presence events of one
// document on one stream: the changes in between are sent together, as
// the list they leave (API-2 asks for them within one second), so that a
// storm of presence writes costs each stream a few events a second, not
// one per write (60 streams, 100 sessions of 1 KB: 6 MB of events a PUT).
const presenceEvery = 250 * time.Millisecond

// pumpDuePresence sends the presence events due now, and returns when the
// next one is due (zero if none is).
func (m *multiStream) pumpDuePresence(ctx context.Context) (time.Time, error) {
	var next time.Time
	for _, d := range m.req.docs {
		if !d.presence.due {
			continue
		}
		if at := d.presence.last.Add(presenceEvery); time.Now().Before(at) {
			if next.IsZero() || at.Before(next) {
				next = at
			}
			continue
		}
		d.presence.due = false
		if err := m.pumpPresence(ctx, d, false); err != nil {
			return time.Time{}, err
		}
	}
	return next, nil
}

// presenceFingerprint identifies what a client sees of sessions, expiry times
// aside: renewing a session alone changes nothing to show.
func presenceFingerprint(ss []store.PresenceSession) []byte {
	b := []byte{'['}
	for _, s := range ss {
		b = strconv.AppendQuote(b, s.Session)
		b = strconv.AppendQuote(b, s.Actor)
		b = append(b, s.State...)
		b = append(b, ',')
	}
	return b
}

// pumpPresence sends a presence event for d when its sessions differ from
// those last sent. At the start (start), an empty list is not sent.
func (m *multiStream) pumpPresence(ctx context.Context, d *docSub, start bool) error {
	r, err := m.h.hub.presence.read(ctx, m.h.presence, d.presence.key, d.coll, d.id)
	if err != nil {
		return err
	}
	if (start && r.empty) || bytes.Equal(r.fp, d.presence.sent) {
		d.presence.sent = r.fp
		return nil
	}
	if err := m.write("presence", r.data); err != nil {
		return err
	}
	d.presence.sent, d.presence.last = r.fp, time.Now()
	return nil
}
