package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Document is one version of a document, as a read or a write returned
// it.
type Document struct {
	// Collection and ID name the document.
	Collection, ID string
	// Value is the document as the server sent it: canonical JSON, with
	// every number literal as it was written. Decode it with Decode or
	// json.Unmarshal.
	Value json.RawMessage
	// ETag is the version's strong ETag, quotes included: pass it to
	// IfMatch.
	ETag string
	// RebasedFrom is set when a write named an older version in IfMatch
	// and the server rebased the edit over the versions committed since:
	// it is the ETag the write named.
	RebasedFrom string
	// Replayed reports that the server answered a retried write from its
	// record of the first attempt (Idempotent-Replayed), which had been
	// applied and whose answer was lost.
	Replayed bool
	// Created reports that the write created the document (201).
	Created bool
}

// Decode unmarshals the document's value into v.
func (d *Document) Decode(v any) error {
	return json.Unmarshal(d.Value, v)
}

// WriteOption changes how a write is sent.
type WriteOption func(*writeOptions)

type writeOptions struct {
	ifMatch string
	strict  bool
	key     string
	dryRun  bool
	err     error // an option that cannot be sent as given
}

// IfMatch makes the write conditional on the version with this ETag (as a
// Document reports it; a bare value gets its quotes added). A write to an
// existing document needs one on a server that requires it (the default:
// 428 otherwise). When the document has changed since, PUT and PATCH are
// rebased over the versions committed since, and the result reports
// RebasedFrom; overlapping edits give a *ConflictError. "*" matches any
// current version. IfMatch("") makes the write fail without being sent,
// rather than go out unconditional.
func IfMatch(etag string) WriteOption {
	return func(o *writeOptions) {
		if etag == "" {
			o.err = errors.New("patchd: IfMatch with an empty ETag: the write would be unconditional")
			return
		}
		o.ifMatch = quoteETag(etag)
	}
}

// Strict turns the server's rebase off for this write (Prefer:
// handling=strict): an IfMatch that does not name the current version
// gives a *PreconditionError.
func Strict() WriteOption {
	return func(o *writeOptions) { o.strict = true }
}

// IdempotencyKey sets the write's Idempotency-Key (1 to 255 printable
// ASCII characters). Without it, every write gets a fresh random key.
// The key is kept across the write's retries, so that a write whose
// answer was lost is applied once: the server replays the first answer
// (Document.Replayed). patchd honours keys on PATCH and POST; a retried
// PUT is safe through its rebase and Create and Delete through the checks
// described on them.
func IdempotencyKey(key string) WriteOption {
	return func(o *writeOptions) { o.key = key }
}

// DryRun asks the server to run the write (authorization, preconditions,
// rebase, schema, limits) and answer exactly as it would, without writing
// anything (?dryRun=true): no version, no feed event, no idempotency
// record. A dry-run POST names an id it then does not use.
func DryRun() WriteOption {
	return func(o *writeOptions) { o.dryRun = true }
}

// quoteETag adds the quotes of an entity tag to a bare value.
func quoteETag(s string) string {
	if s == "" || s == "*" || strings.HasPrefix(s, `"`) || strings.HasPrefix(s, "W/") {
		return s
	}
	return `"` + s + `"`
}

// quoteKey renders an idempotency key as a structured-field string.
func quoteKey(k string) (string, error) {
	if k == "" || len(k) > 255 {
		return "", errors.New("patchd: an idempotency key is 1 to 255 characters")
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c < 0x20 || c > 0x7e {
			return "", errors.New("patchd: an idempotency key is printable ASCII")
		}
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String(), nil
}

// writeCall builds the call of a write.
func writeCall(method, path, contentType string, body []byte, opts []WriteOption) (*call, error) {
	var o writeOptions
	for _, f := range opts {
		f(&o)
	}
	if o.err != nil {
		return nil, o.err
	}
	if o.key == "" {
		o.key = newKey()
	}
	key, err := quoteKey(o.key)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set("Accept", "application/json")
	h.Set("Idempotency-Key", key)
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	if o.ifMatch != "" {
		h.Set("If-Match", o.ifMatch)
	}
	if o.strict {
		h.Set("Prefer", "handling=strict")
	}
	c := &call{method: method, path: path, header: h, body: body}
	if o.dryRun {
		c.query = url.Values{"dryRun": {"true"}}
	}
	return c, nil
}

// document builds the Document of a successful answer to c, which must
// carry a strong ETag and a JSON object.
func document(c *call, coll, id string, a *answer) (*Document, error) {
	etag := a.header.Get("ETag")
	if !strongETag(etag) {
		return nil, fmt.Errorf("patchd: %s: answer %d with ETag %q, not a strong entity tag: %w", c, a.status, etag, ErrInvalidResponse)
	}
	if !jsonObject(a.body) {
		return nil, fmt.Errorf("patchd: %s: answer %d: body %.64q is not a JSON object: %w", c, a.status, a.body, ErrInvalidResponse)
	}
	return &Document{
		Collection:  coll,
		ID:          id,
		Value:       a.body,
		ETag:        etag,
		RebasedFrom: a.header.Get("Rebased-From"),
		Replayed:    a.header.Get("Idempotent-Replayed") == "true",
		Created:     a.status == http.StatusCreated,
	}, nil
}

// strongETag reports whether s is a strong entity tag (RFC 9110 section
// 8.8.3): a quoted string of etagc.
func strongETag(s string) bool {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; c < 0x21 || c == '"' || c == 0x7f {
			return false
		}
	}
	return true
}

// jsonObject reports whether b is one valid JSON object.
func jsonObject(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && json.Valid(b)
}

// Get reads a document. It returns an error wrapping ErrNotFound (a
// *Problem) if there is none.
func (cl *Client) Get(ctx context.Context, coll, id string) (*Document, error) {
	if err := cl.checkNames(coll, id, true); err != nil {
		return nil, err
	}
	c := &call{method: http.MethodGet, path: docPath(coll, id), header: http.Header{"Accept": {"application/json"}}}
	a, err := cl.send(ctx, c)
	if err != nil {
		return nil, err
	}
	if a.status != http.StatusOK {
		return nil, cl.fail(a, coll, id)
	}
	return document(c, coll, id, a)
}

// Put creates or replaces a document with value (anything that marshals
// to a JSON object; a json.RawMessage is sent as it is). Replacing an
// existing document needs IfMatch on a server that requires it; with an
// older version's ETag, the server rebases the change (the members that
// differ from that version) over the versions committed since.
//
// A Put retried after a lost answer that gets a 412 or 428 (the first
// attempt was applied) reads the document and returns it if it holds
// exactly value.
func (cl *Client) Put(ctx context.Context, coll, id string, value any, opts ...WriteOption) (*Document, error) {
	return cl.put(ctx, coll, id, value, opts)
}

// Create creates a document that must not exist yet (PUT with
// If-None-Match: *). It returns a *PreconditionError (412
// precondition-failed) if the document exists, unless a retry after a lost
// answer finds it holding exactly value: the first attempt created it, and
// Create returns it.
func (cl *Client) Create(ctx context.Context, coll, id string, value any, opts ...WriteOption) (*Document, error) {
	return cl.put(ctx, coll, id, value, opts, func(o *writeOptions) { o.ifMatch = "" })
}

// getJSON GETs path with query q and decodes its 200 answer into v (what
// names the answer in errors); another status is the error fail makes of
// it, about document coll/id.
func (cl *Client) getJSON(ctx context.Context, path string, q url.Values, coll, id, what string, v any) error {
	c := &call{method: http.MethodGet, path: path, query: q, header: http.Header{"Accept": {"application/json"}}}
	a, err := cl.send(ctx, c)
	if err != nil {
		return err
	}
	if a.status != http.StatusOK {
		return cl.fail(a, coll, id)
	}
	if err := json.Unmarshal(a.body, v); err != nil {
		return fmt.Errorf("patchd: %s: %s: %w", c, what, err)
	}
	return nil
}

// idOf returns the id of the document of coll that location (an answer's
// Location, /docs/{c}/{id}) names.
func idOf(coll, location string) (string, error) {
	prefix := docPath(coll, "") + "/"
	id, err := url.PathUnescape(strings.TrimPrefix(location, prefix))
	if !strings.HasPrefix(location, prefix) || err != nil || id == "" || strings.Contains(id, "/") {
		return "", fmt.Errorf("patchd: Location %q is not a document of %s: %w", location, coll, ErrInvalidResponse)
	}
	return id, nil
}

// Insert creates a document under an id the server picks (POST
// /docs/{c}), and returns it with that ID. It carries an idempotency key
// (see IdempotencyKey), so that a retry after a lost answer gets the
// first attempt's document rather than a second one. IfMatch is refused
// by the server (412): the document is new.
func (cl *Client) Insert(ctx context.Context, coll string, value any, opts ...WriteOption) (*Document, error) {
	if err := cl.checkNames(coll, "", false); err != nil {
		return nil, err
	}
	body, err := encodeJSON(value)
	if err != nil {
		return nil, err
	}
	c, err := writeCall(http.MethodPost, docPath(coll, ""), "application/json", body, opts)
	if err != nil {
		return nil, err
	}
	a, err := cl.send(ctx, c)
	if err != nil {
		return nil, err
	}
	if a.status != http.StatusCreated && a.status != http.StatusOK {
		return nil, cl.failWrite(c, a, coll, "")
	}
	id, err := idOf(coll, a.header.Get("Location"))
	if err != nil {
		return nil, fmt.Errorf("patchd: %s: answer %d: %w", c, a.status, err)
	}
	return document(c, coll, id, a)
}

func (cl *Client) put(ctx context.Context, coll, id string, value any, opts []WriteOption, create ...WriteOption) (*Document, error) {
	if err := cl.checkNames(coll, id, true); err != nil {
		return nil, err
	}
	body, err := encodeJSON(value)
	if err != nil {
		return nil, err
	}
	// A new slice: appending to opts could write into the caller's array.
	c, err := writeCall(http.MethodPut, docPath(coll, id), "application/json", body, slices.Concat(opts, create))
	if err != nil {
		return nil, err
	}
	if len(create) > 0 {
		c.header.Set("If-None-Match", "*")
	}
	a, err := cl.send(ctx, c)
	if err != nil {
		return nil, err
	}
	switch a.status {
	case http.StatusOK, http.StatusCreated:
		return document(c, coll, id, a)
	case http.StatusPreconditionFailed, http.StatusPreconditionRequired:
		if a.unsure && c.query.Get("dryRun") == "" {
			if doc, ok := cl.holds(ctx, coll, id, body); ok {
				// A Create refused because its own first attempt made
				// the document: that attempt created it.
				doc.Created = len(create) > 0
				return doc, nil
			}
		}
	}
	return nil, cl.failWrite(c, a, coll, id)
}

// holds reads the document and reports whether its value equals the JSON
// body.
func (cl *Client) holds(ctx context.Context, coll, id string, body []byte) (*Document, bool) {
	doc, err := cl.Get(ctx, coll, id)
	if err != nil {
		return nil, false
	}
	want, err1 := decodeTree(body)
	got, err2 := decodeTree(doc.Value)
	if err1 != nil || err2 != nil || !equalTree(want, got) {
		return nil, false
	}
	return doc, true
}

// Patch applies an RFC 6902 JSON Patch to a document. ops is anything that
// marshals to a JSON array of operations ([]Op, a json.RawMessage...).
// With IfMatch naming an older version, the server rebases the ops over
// the versions committed since, or returns a *ConflictError when they
// overlap. A patch that does not apply to the version it was made against
// gives a *Problem with Status 422 (patch-failed).
func (cl *Client) Patch(ctx context.Context, coll, id string, ops any, opts ...WriteOption) (*Document, error) {
	return cl.patch(ctx, coll, id, "application/json-patch+json", ops, opts)
}

// Merge applies an RFC 7396 JSON Merge Patch to a document. patch is
// anything that marshals to the JSON to send (an object; null members
// remove). Otherwise as Patch.
func (cl *Client) Merge(ctx context.Context, coll, id string, patch any, opts ...WriteOption) (*Document, error) {
	return cl.patch(ctx, coll, id, "application/merge-patch+json", patch, opts)
}

func (cl *Client) patch(ctx context.Context, coll, id, contentType string, v any, opts []WriteOption) (*Document, error) {
	if err := cl.checkNames(coll, id, true); err != nil {
		return nil, err
	}
	body, err := encodeJSON(v)
	if err != nil {
		return nil, err
	}
	c, err := writeCall(http.MethodPatch, docPath(coll, id), contentType, body, opts)
	if err != nil {
		return nil, err
	}
	a, err := cl.send(ctx, c)
	if err != nil {
		return nil, err
	}
	if a.status != http.StatusOK {
		return nil, cl.failWrite(c, a, coll, id)
	}
	return document(c, coll, id, a)
}

// Revert undoes version seq of a document (anyone's): the inverse of its
// ops, rebased over the versions after it, committed as a new version of
// kind revert (POST /docs/{c}/{id}/revert). It needs IfMatch on a server
// that requires it; an older ETag is rebased over as for Patch. A later
// version that wrote what seq wrote gives a *ConflictError; a version no
// longer in history a *PreconditionError; the version that created the
// document a *Problem with Status 422 (cannot-revert: Delete it instead).
// Reverting the delete that is the newest version brings the document
// back (Created is true); undoing a version already undone changes
// nothing and returns the current document.
func (cl *Client) Revert(ctx context.Context, coll, id string, seq uint64, opts ...WriteOption) (*Document, error) {
	if err := cl.checkNames(coll, id, true); err != nil {
		return nil, err
	}
	if seq == 0 {
		return nil, errors.New("patchd: revert of version 0: versions are numbered from 1")
	}
	body, err := encodeJSON(struct {
		Seq uint64 `json:"seq"`
	}{seq})
	if err != nil {
		return nil, err
	}
	c, err := writeCall(http.MethodPost, docPath(coll, id)+"/revert", "application/json", body, opts)
	if err != nil {
		return nil, err
	}
	a, err := cl.send(ctx, c)
	if err != nil {
		return nil, err
	}
	if a.status != http.StatusOK && a.status != http.StatusCreated {
		return nil, cl.failWrite(c, a, coll, id)
	}
	return document(c, coll, id, a)
}

// Delete deletes a document; it needs IfMatch on a server that requires it,
// and is never rebased (an older ETag gives a *PreconditionError). It
// returns an error wrapping ErrNotFound if there is no such document,
// unless a retry after a lost answer gets the 404: the first attempt
// deleted it, and Delete returns nil.
func (cl *Client) Delete(ctx context.Context, coll, id string, opts ...WriteOption) error {
	if err := cl.checkNames(coll, id, true); err != nil {
		return err
	}
	c, err := writeCall(http.MethodDelete, docPath(coll, id), "", nil, opts)
	if err != nil {
		return err
	}
	a, err := cl.send(ctx, c)
	if err != nil {
		return err
	}
	switch {
	case a.status == http.StatusNoContent || a.status == http.StatusOK:
		return nil
	case a.status == http.StatusNotFound && a.unsure && c.query.Get("dryRun") == "":
		return nil
	}
	return cl.failWrite(c, a, coll, id)
}

// ListOptions select a page of a collection's listing.
type ListOptions struct {
	// Limit is the most items on the page, 1 to 1000; zero takes the
	// server's default (100).
	Limit int
	// After is the Next of the previous page; "" starts at the beginning.
	After string
	// IncludeBody asks for each document's value (include=body).
	IncludeBody bool
	// Where filters the documents: anything that marshals to a JSON object
	// mapping JSON Pointers to a value or an object of operators, such as
	// map[string]any{"/status": "open", "/total": map[string]any{"gt": 100}}.
	Where any
	// Order sorts by the member at a JSON Pointer, "-" in front for
	// descending, such as "-/total"; ties are broken by id, and documents
	// without the member come last. The server refuses (400) to sort a
	// collection of more than 100,000 documents or 128 MiB.
	Order string
}

// ListItem is one document of a listing.
type ListItem struct {
	// ID is the document's id and ETag its current ETag.
	ID   string `json:"id"`
	ETag string `json:"etag"`
	// Seq is the seq of the document's current version: a change of a
	// collection Watch with a Seq up to it is already in the listing.
	Seq uint64 `json:"seq"`
	// Value is the document, with IncludeBody; else nil.
	Value json.RawMessage `json:"value,omitempty"`
}

// ListPage is one page of a listing.
type ListPage struct {
	// Items are the page's documents, in id order (or Order's).
	Items []ListItem
	// Next is the After of the next page; "" on the last page.
	Next string
}

// List reads one page of a collection's documents. A collection that holds
// no document lists empty.
func (cl *Client) List(ctx context.Context, coll string, opts ListOptions) (*ListPage, error) {
	if err := cl.checkNames(coll, "", false); err != nil {
		return nil, err
	}
	q := url.Values{}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.After != "" {
		q.Set("after", opts.After)
	}
	if opts.IncludeBody {
		q.Set("include", "body")
	}
	if opts.Where != nil {
		w, err := encodeJSON(opts.Where)
		if err != nil {
			return nil, err
		}
		q.Set("where", string(w))
	}
	if opts.Order != "" {
		q.Set("order", opts.Order)
	}
	var page struct {
		Items []ListItem `json:"items"`
		Next  *string    `json:"next"`
	}
	if err := cl.getJSON(ctx, docPath(coll, ""), q, coll, "", "listing", &page); err != nil {
		return nil, err
	}
	out := &ListPage{Items: page.Items}
	if page.Next != nil {
		out.Next = *page.Next
	}
	return out, nil
}

// ListAll iterates over every document of a collection, page after page
// from opts.After, with opts' other settings. It stops at the first error,
// which it yields.
func (cl *Client) ListAll(ctx context.Context, coll string, opts ListOptions) iter.Seq2[ListItem, error] {
	return func(yield func(ListItem, error) bool) {
		for {
			page, err := cl.List(ctx, coll, opts)
			if err != nil {
				yield(ListItem{}, err)
				return
			}
			for _, it := range page.Items {
				if !yield(it, nil) {
					return
				}
			}
			if page.Next == "" {
				return
			}
			if page.Next == opts.After || len(page.Items) == 0 {
				yield(ListItem{}, fmt.Errorf("patchd: listing %s: page after %q does not advance", coll, opts.After))
				return
			}
			opts.After = page.Next
		}
	}
}

// Op is one RFC 6902 operation.
type Op struct {
	// Op is add, remove, replace, move, copy or test.
	Op string `json:"op"`
	// Path is the target's JSON Pointer.
	Path string `json:"path"`
	// From is the source's JSON Pointer, for move and copy.
	From string `json:"from,omitempty"`
	// Value is the JSON value, for add, replace and test; nil stands for
	// null there.
	Value json.RawMessage `json:"value,omitempty"`
}

// MarshalJSON renders the op with the members its kind needs: from for
// move and copy (even ""), value for add, replace and test (null when
// nil).
func (o Op) MarshalJSON() ([]byte, error) {
	type wire struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		From  *string         `json:"from,omitempty"`
		Value json.RawMessage `json:"value,omitempty"`
	}
	w := wire{Op: o.Op, Path: o.Path, Value: o.Value}
	if o.From != "" || o.Op == "move" || o.Op == "copy" {
		w.From = &o.From
	}
	if w.Value == nil && (o.Op == "add" || o.Op == "replace" || o.Op == "test") {
		w.Value = json.RawMessage("null")
	}
	return json.Marshal(w)
}

// Version is one committed version of a document: an entry of its history
// and the data of a version event.
type Version struct {
	// Seq numbers the document's versions from 1, without gaps, across
	// deletes.
	Seq uint64 `json:"seq"`
	// ETag is the version's ETag; "" when the version is a delete.
	ETag string `json:"etag"`
	// At is when it was committed.
	At time.Time `json:"at"`
	// Kind is put, json-patch, merge-patch, delete or revert.
	Kind string `json:"kind"`
	// Ops are the RFC 6902 ops that turn the previous version into this
	// one.
	Ops []Op `json:"ops"`
	// RebasedFrom is the ETag the write named when it was rebased; else "".
	RebasedFrom string `json:"rebasedFrom"`
	// Actor is who wrote it, as the server's tokens name writers; "" when
	// none did (no tokens) or before the server recorded actors.
	Actor string `json:"actor"`
	// RequestID is the X-Request-Id of the request that wrote it (the
	// client's, or one the server made); "" before the server recorded
	// them.
	RequestID string `json:"requestId"`
	// Reverts, for a version of kind revert, is the seq of the version it
	// undid; else 0.
	Reverts uint64 `json:"reverts,omitempty"`
}

// HistoryOptions select a page of a document's history.
type HistoryOptions struct {
	// After is the seq after which the page starts; zero starts at the
	// oldest retained version.
	After uint64
	// Limit is the most versions on the page, 1 to 1000; zero takes the
	// server's default (100).
	Limit int
}

// HistoryPage is one page of a document's history, oldest first.
type HistoryPage struct {
	// Versions are the page's versions.
	Versions []Version
	// Next is the After of the next page; zero on the last page.
	Next uint64
}

// History reads one page of a document's committed versions, oldest
// first. History is pruned by count and age on the server: the oldest
// retained version may not be seq 1.
func (cl *Client) History(ctx context.Context, coll, id string, opts HistoryOptions) (*HistoryPage, error) {
	if err := cl.checkNames(coll, id, true); err != nil {
		return nil, err
	}
	q := url.Values{}
	if opts.After > 0 {
		q.Set("after", strconv.FormatUint(opts.After, 10))
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	var page struct {
		Versions []Version `json:"versions"`
		Next     *uint64   `json:"next"`
	}
	if err := cl.getJSON(ctx, docPath(coll, id)+"/history", q, coll, id, "history", &page); err != nil {
		return nil, err
	}
	out := &HistoryPage{Versions: page.Versions}
	if page.Next != nil {
		out.Next = *page.Next
	}
	return out, nil
}
