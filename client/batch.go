package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// BatchWrite is one write of a batch (Client.Batch). Build it with
// BatchPut, BatchInsert, BatchPatch, BatchMerge, BatchDelete or
// BatchRevert; each takes the options of its single request but DryRun,
// which applies to the batch as a whole.
type BatchWrite struct {
	coll, id string
	method   string
	path     string
	headers  map[string]string
	body     json.RawMessage
	err      error // a write that cannot be sent as given
}

// BatchPut is a Put as a write of a batch.
func BatchPut(coll, id string, value any, opts ...WriteOption) BatchWrite {
	return batchWrite(http.MethodPut, coll, id, "", "application/json", value, opts)
}

// BatchInsert is an Insert as a write of a batch: its document's ID is in
// its result.
func BatchInsert(coll string, value any, opts ...WriteOption) BatchWrite {
	return batchWrite(http.MethodPost, coll, "", "", "application/json", value, opts)
}

// BatchPatch is a Patch as a write of a batch.
func BatchPatch(coll, id string, ops any, opts ...WriteOption) BatchWrite {
	return batchWrite(http.MethodPatch, coll, id, "", "application/json-patch+json", ops, opts)
}

// BatchMerge is a Merge as a write of a batch.
func BatchMerge(coll, id string, patch any, opts ...WriteOption) BatchWrite {
	return batchWrite(http.MethodPatch, coll, id, "", "application/merge-patch+json", patch, opts)
}

// BatchDelete is a Delete as a write of a batch: its result is nil.
func BatchDelete(coll, id string, opts ...WriteOption) BatchWrite {
	return batchWrite(http.MethodDelete, coll, id, "", "", nil, opts)
}

// BatchRevert is a Revert as a write of a batch.
func BatchRevert(coll, id string, seq uint64, opts ...WriteOption) BatchWrite {
	w := batchWrite(http.MethodPost, coll, id, "/revert", "application/json", struct {
		Seq uint64 `json:"seq"`
	}{seq}, opts)
	if seq == 0 && w.err == nil {
		w.err = errors.New("patchd: revert of version 0: versions are numbered from 1")
	}
	return w
}

// batchWrite builds a write of a batch; suffix follows the document's
// path (revert).
func batchWrite(method, coll, id, suffix, contentType string, v any, opts []WriteOption) BatchWrite {
	w := BatchWrite{coll: coll, id: id, method: method, path: docPath(coll, id) + suffix, headers: map[string]string{}}
	var o writeOptions
	for _, f := range opts {
		f(&o)
	}
	switch {
	case o.err != nil:
		w.err = o.err
	case o.dryRun:
		w.err = errors.New("patchd: DryRun applies to a batch as a whole: pass it to Batch")
	case coll == "" || (id == "" && !(method == http.MethodPost && suffix == "")):
		w.err = errors.New("patchd: a write of a batch with an empty collection or document id")
	}
	if w.err != nil {
		return w
	}
	if contentType != "" {
		w.headers["Content-Type"] = contentType
	}
	if o.ifMatch != "" {
		w.headers["If-Match"] = o.ifMatch
	}
	if o.strict {
		w.headers["Prefer"] = "handling=strict"
	}
	// Keyed as on their own requests: a retried batch gets their answers
	// again (PUT and DELETE take no key).
	if method == http.MethodPost || method == http.MethodPatch {
		if o.key == "" {
			o.key = newKey()
		}
		w.headers["Idempotency-Key"], w.err = quoteKey(o.key)
	}
	if v != nil && w.err == nil {
		w.body, w.err = encodeJSON(v)
	}
	return w
}

// BatchError is the refusal of a batch because of one of its writes:
// nothing was written. Err is that write's error, as its own request would
// have returned it (a *ConflictError, a *PreconditionError, a *Problem),
// so that errors.As and errors.Is find it.
type BatchError struct {
	// Index is the refused write's place in the batch, from 0.
	Index int
	// Err is the write's error.
	Err error
}

func (e *BatchError) Error() string { return fmt.Sprintf("patchd: batch write %d: %v", e.Index, e.Err) }

// Unwrap returns the write's error.
func (e *BatchError) Unwrap() error { return e.Err }

// Batch applies writes all or nothing, in order, in one transaction (POST
// /batch): each with its own preconditions and rebase, each seeing the
// writes before it. It returns one Document per write, nil for a delete
// (with Prefer return=minimal, which the server may apply, Value is
// nil). A refused write refuses the batch: the error is a *BatchError
// naming it. The only option is DryRun: the server answers as the batch
// would, and writes nothing.
func (cl *Client) Batch(ctx context.Context, writes []BatchWrite, opts ...WriteOption) ([]*Document, error) {
	if cl.err != nil {
		return nil, cl.err
	}
	var o writeOptions
	for _, f := range opts {
		f(&o)
	}
	if o.err != nil || o.ifMatch != "" || o.strict || o.key != "" {
		return nil, errors.New("patchd: Batch takes DryRun only: give each write its own options")
	}
	type wire struct {
		Method  string            `json:"method"`
		Path    string            `json:"path"`
		Headers map[string]string `json:"headers"`
		Body    json.RawMessage   `json:"body,omitempty"`
	}
	req := struct {
		Writes []wire `json:"writes"`
	}{Writes: make([]wire, len(writes))}
	unkeyed := false
	for i, w := range writes {
		if w.err != nil {
			return nil, &BatchError{Index: i, Err: w.err}
		}
		if w.method == "" {
			return nil, &BatchError{Index: i, Err: errors.New("patchd: a BatchWrite must be built with BatchPut, BatchPatch or another Batch function")}
		}
		req.Writes[i] = wire{Method: w.method, Path: w.path, Headers: w.headers, Body: w.body}
		unkeyed = unkeyed || w.method == http.MethodPut || w.method == http.MethodDelete
	}
	body, err := encodeJSON(&req)
	if err != nil {
		return nil, err
	}
	c := &call{method: http.MethodPost, path: "/batch", body: body, header: http.Header{
		"Accept": {"application/json"}, "Content-Type": {"application/json"},
	}}
	if o.dryRun {
		c.query = url.Values{"dryRun": {"true"}}
	}
	a, err := cl.send(ctx, c)
	if err != nil {
		return nil, err
	}
	if a.status != http.StatusOK {
		p := parseProblem(a)
		var index int
		if !p.member("index", &index) || index < 0 || index >= len(writes) {
			return nil, p
		}
		w := writes[index]
		err := cl.fail(a, w.coll, w.id)
		precondition := a.status == http.StatusPreconditionFailed || a.status == http.StatusPreconditionRequired
		if a.unsure && precondition && unkeyed && !o.dryRun {
			err = fmt.Errorf("%w; %w", err, ErrOutcomeUnknown)
		}
		return nil, &BatchError{Index: index, Err: err}
	}
	var res struct {
		Results []struct {
			Status      int             `json:"status"`
			ETag        *string         `json:"etag"`
			Location    *string         `json:"location"`
			RebasedFrom *string         `json:"rebasedFrom"`
			Body        json.RawMessage `json:"body"`
		} `json:"results"`
	}
	if err := json.Unmarshal(a.body, &res); err != nil || len(res.Results) != len(writes) {
		return nil, fmt.Errorf("patchd: %s: answer is not one result per write (%v): %w", c, err, ErrInvalidResponse)
	}
	docs := make([]*Document, len(writes))
	for i, r := range res.Results {
		if r.ETag == nil { // a delete
			continue
		}
		w := writes[i]
		d := &Document{Collection: w.coll, ID: w.id, ETag: *r.ETag, Created: r.Status == http.StatusCreated}
		if !strongETag(d.ETag) {
			return nil, fmt.Errorf("patchd: %s: result %d with ETag %q, not a strong entity tag: %w", c, i, d.ETag, ErrInvalidResponse)
		}
		if r.Location != nil && d.ID == "" {
			if d.ID, err = idOf(w.coll, *r.Location); err != nil {
				return nil, fmt.Errorf("patchd: %s: result %d: %w", c, i, err)
			}
		}
		if r.RebasedFrom != nil {
			d.RebasedFrom = *r.RebasedFrom
		}
		if len(r.Body) > 0 && string(r.Body) != "null" {
			d.Value = r.Body
		}
		docs[i] = d
	}
	return docs, nil
}
