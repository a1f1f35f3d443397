package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
)

// A collection's JSON Schema (draft 2020-12) is a resource of its own,
// /schemas/{c}, with the ETags and preconditions of a document but never
// rebased; every call needs an admin token on a server with tokens.

// SchemaError is one way a document breaks its collection's schema: where
// (a JSON Pointer into the document), the keyword that failed, and why.
type SchemaError struct {
	InstancePath string `json:"instancePath"`
	Keyword      string `json:"keyword"`
	Message      string `json:"message"`
}

// SchemaErrors returns the errors of a 422 schema-violation (or of a 412
// whose rebased result broke the schema); nil for any other problem.
func (p *Problem) SchemaErrors() []SchemaError {
	var errs []SchemaError
	p.member("errors", &errs)
	return errs
}

func schemaPath(coll string) string { return "/schemas/" + url.PathEscape(coll) }

// PutSchema stores schema (anything that marshals to a JSON object) as
// collection coll's: every later write to the collection must match it.
// Replacing a schema needs IfMatch naming the current one on a server
// that requires it; a schema that does not compile is a *Problem with
// Status 422 (invalid-schema). The result's Collection is coll and its ID
// is "".
func (cl *Client) PutSchema(ctx context.Context, coll string, schema any, opts ...WriteOption) (*Document, error) {
	if err := cl.checkNames(coll, "", false); err != nil {
		return nil, err
	}
	body, err := encodeJSON(schema)
	if err != nil {
		return nil, err
	}
	c, err := writeCall(http.MethodPut, schemaPath(coll), "application/json", body, opts)
	if err != nil {
		return nil, err
	}
	c.header.Del("Idempotency-Key") // a PUT needs none
	a, err := cl.send(ctx, c)
	if err != nil {
		return nil, err
	}
	if a.status != http.StatusOK && a.status != http.StatusCreated {
		return nil, cl.fail(a, coll, "")
	}
	return document(c, coll, "", a)
}

// Schema returns collection coll's schema, or an error wrapping
// ErrNotFound when it has none.
func (cl *Client) Schema(ctx context.Context, coll string) (*Document, error) {
	if err := cl.checkNames(coll, "", false); err != nil {
		return nil, err
	}
	c := &call{method: http.MethodGet, path: schemaPath(coll), header: http.Header{"Accept": {"application/json"}}}
	a, err := cl.send(ctx, c)
	if err != nil {
		return nil, err
	}
	if a.status != http.StatusOK {
		return nil, cl.fail(a, coll, "")
	}
	return document(c, coll, "", a)
}

// DeleteSchema removes collection coll's schema (IfMatch naming it, on a
// server that requires it); an error wraps ErrNotFound when there is
// none.
func (cl *Client) DeleteSchema(ctx context.Context, coll string, opts ...WriteOption) error {
	if err := cl.checkNames(coll, "", false); err != nil {
		return err
	}
	c, err := writeCall(http.MethodDelete, schemaPath(coll), "", nil, opts)
	if err != nil {
		return err
	}
	c.header.Del("Idempotency-Key")
	a, err := cl.send(ctx, c)
	if err != nil {
		return err
	}
	if a.status == http.StatusNoContent || a.status == http.StatusOK || (a.status == http.StatusNotFound && a.unsure) {
		return nil
	}
	return cl.fail(a, coll, "")
}

// Violation is a document that breaks its collection's schema, as it
// stands (a schema put after it was written).
type Violation struct {
	ID     string        `json:"id"`
	Errors []SchemaError `json:"errors"`
}

// ViolationsPage is a page of Violations.
type ViolationsPage struct {
	Items []Violation `json:"items"`
	// Next, when not "", is the After of the next page. A page may hold
	// fewer items than asked for, none even, with Next set: the server
	// bounds the documents one page examines.
	Next string `json:"-"`
}

// Violations lists, in id order, the documents of coll that break its
// schema: after the id after ("" from the first), at most limit of them
// (0: the server's default, 100).
func (cl *Client) Violations(ctx context.Context, coll, after string, limit int) (*ViolationsPage, error) {
	if err := cl.checkNames(coll, "", false); err != nil {
		return nil, err
	}
	if limit < 0 {
		return nil, errors.New("patchd: a negative limit")
	}
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var page struct {
		ViolationsPage
		Next *string `json:"next"`
	}
	if err := cl.getJSON(ctx, schemaPath(coll)+"/violations", q, coll, "", "violations", &page); err != nil {
		return nil, err
	}
	if page.Next != nil {
		page.ViolationsPage.Next = *page.Next
	}
	return &page.ViolationsPage, nil
}
