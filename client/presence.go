package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// PresenceState is what a presence session shows of its client: every
// field optional. Focus is a JSON Pointer into the document ("" is the
// whole document), nil for none; Data is any JSON value, nil for null.
type PresenceState struct {
	Name  *string         `json:"name"`
	Color *string         `json:"color"`
	Focus *string         `json:"focus"`
	Data  json.RawMessage `json:"data"`
}

// PresenceSession is a live presence session of a document.
type PresenceSession struct {
	PresenceState
	// Session is the id its client picked.
	Session string `json:"session"`
	// Actor is who announced it, as history records actors; "" without
	// tokens.
	Actor string `json:"-"`
	// Expires is when the session ends unless renewed.
	Expires time.Time `json:"expires"`
}

// UnmarshalJSON reads a session, its null actor and data included.
func (s *PresenceSession) UnmarshalJSON(b []byte) error {
	type plain PresenceSession
	var v struct {
		plain
		Actor *string `json:"actor"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = PresenceSession(v.plain)
	if v.Actor != nil {
		s.Actor = *v.Actor
	}
	if string(s.Data) == "null" {
		s.Data = nil
	}
	return nil
}

// presencePath returns the escaped path of a document's presence, or of
// one session when session is not "".
func presencePath(coll, id, session string) string {
	p := docPath(coll, id) + "/presence"
	if session != "" {
		p += "/" + url.PathEscape(session)
	}
	return p
}

// SetPresence announces a presence session on a document, or renews it,
// for the server's --presence-ttl (30 s by default): call it again well
// within that time (every 10 s, say) while the document is open, and
// EndPresence when it closes. session is an id the caller picks for the
// life of its view, 16 to 64 characters of [A-Za-z0-9._~-] (a UUID will
// do). The document need not exist. A server with too many sessions
// answers 429 with a Retry-After of the session lifetime: past ctx's
// deadline, SetPresence returns the *Problem (rate-limited) rather than
// wait. A live session is its client's: one announced by another client
// (token, else address) is a *Problem 403 forbidden; pick an id of your
// own.
func (cl *Client) SetPresence(ctx context.Context, coll, id, session string, state PresenceState) (*PresenceSession, error) {
	if err := cl.checkNames(coll, id, true); err != nil {
		return nil, err
	}
	if state.Data == nil {
		state.Data = json.RawMessage("null")
	}
	body, err := json.Marshal(state)
	if err != nil {
		return nil, fmt.Errorf("patchd: presence: %w", err)
	}
	c := &call{method: http.MethodPut, path: presencePath(coll, id, session), body: body,
		header: http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json"}}}
	a, err := cl.send(ctx, c)
	if err != nil {
		return nil, err
	}
	if a.status != http.StatusOK {
		return nil, cl.fail(a, coll, id)
	}
	var s PresenceSession
	if err := json.Unmarshal(a.body, &s); err != nil {
		return nil, fmt.Errorf("patchd: %s: %w", c, err)
	}
	return &s, nil
}

// Presence returns the live presence sessions of a document, in session
// order (none for a document without any, or that does not exist).
func (cl *Client) Presence(ctx context.Context, coll, id string) ([]PresenceSession, error) {
	if err := cl.checkNames(coll, id, true); err != nil {
		return nil, err
	}
	c := &call{method: http.MethodGet, path: presencePath(coll, id, ""), header: http.Header{"Accept": {"application/json"}}}
	a, err := cl.send(ctx, c)
	if err != nil {
		return nil, err
	}
	if a.status != http.StatusOK {
		return nil, cl.fail(a, coll, id)
	}
	var list struct {
		Sessions []PresenceSession `json:"sessions"`
	}
	if err := json.Unmarshal(a.body, &list); err != nil {
		return nil, fmt.Errorf("patchd: %s: %w", c, err)
	}
	return list.Sessions, nil
}

// EndPresence ends a presence session. It returns an error wrapping
// ErrNotFound if there is no such live session (never announced, ended,
// or expired), unless a retry after a lost answer gets the 404: the first
// attempt ended it, and EndPresence returns nil. Another client's live
// session is a *Problem 403 forbidden.
func (cl *Client) EndPresence(ctx context.Context, coll, id, session string) error {
	if err := cl.checkNames(coll, id, true); err != nil {
		return err
	}
	c := &call{method: http.MethodDelete, path: presencePath(coll, id, session)}
	a, err := cl.send(ctx, c)
	if err != nil {
		return err
	}
	switch {
	case a.status == http.StatusNoContent:
		return nil
	case a.status == http.StatusNotFound && a.unsure:
		return nil
	}
	return cl.fail(a, coll, id)
}
