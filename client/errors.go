package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Sentinels that errors.Is finds in the errors of this package's methods:
// ErrNotFound, ErrPreconditionFailed, ErrPreconditionRequired,
// ErrRateLimited and ErrUnavailable through *Problem and the types that
// wrap it, the others wrapped with the details.
var (
	// ErrNotFound: the document does not exist (404 not-found).
	ErrNotFound = errors.New("not found")
	// ErrPreconditionFailed: any 412, a rebase conflict included.
	ErrPreconditionFailed = errors.New("precondition failed")
	// ErrPreconditionRequired: a write to an existing document without
	// IfMatch, on a server that requires it (428).
	ErrPreconditionRequired = errors.New("precondition required")
	// ErrRateLimited: the client has sent more than its share (429), and
	// retries, if any, ran out; Problem.RetryAfter says when to try again.
	ErrRateLimited = errors.New("rate limited")
	// ErrUnavailable: the server could not serve the request for now
	// (503: overloaded, or its database unreachable), and retries, if
	// any, ran out; Problem.RetryAfter says when to try again.
	ErrUnavailable = errors.New("unavailable")
	// ErrUnsupported: the server lacks something asked for (a Watch of a
	// collection, on a server without POST /events).
	ErrUnsupported = errors.New("not supported by the server")
	// ErrResponseTooLarge: an answer's body is longer than the Client
	// accepts (see WithMaxResponse).
	ErrResponseTooLarge = errors.New("answer too large")
	// ErrInvalidResponse: the server's answer is not what the protocol
	// says it is, such as a document without a strong ETag or whose body
	// is not a JSON object.
	ErrInvalidResponse = errors.New("invalid answer")
	// ErrOutcomeUnknown: a Put, Create or Delete was refused, but an
	// earlier attempt of it, whose answer was lost, may have been applied.
	ErrOutcomeUnknown = errors.New("outcome unknown: an earlier attempt, whose answer was lost, may have been applied")
)

// Problem is an error answer from the server: its status and its RFC 9457
// problem details. Every error answer of patchd is problem+json; an answer
// that is not (from a proxy, say) gives a Problem with Status only and the
// status text as Detail.
type Problem struct {
	// Status is the HTTP status of the answer.
	Status int
	// Type is the problem type as sent, such as "/problems/not-found";
	// Name returns its last segment.
	Type string
	// Title and Detail are the problem's human-readable summary and
	// explanation.
	Title, Detail string
	// Members holds every member of the problem object as sent, the
	// standard ones and extensions (currentEtag, conflicts...) alike; nil
	// when the body was not a JSON object.
	Members map[string]json.RawMessage
	// ETag is the ETag field of the answer: the current version's ETag on
	// a 412 or 428, else usually "".
	ETag string
	// RetryAfter is how long the answer's Retry-After field asked to
	// wait (a 429 or 503), else 0.
	RetryAfter time.Duration
}

// Name returns the problem's name: the last segment of Type, such as
// "rebase-conflict".
func (p *Problem) Name() string {
	return p.Type[strings.LastIndexByte(p.Type, '/')+1:]
}

// Error implements error.
func (p *Problem) Error() string {
	name := p.Name()
	if name == "" {
		name = strings.ToLower(http.StatusText(p.Status))
	}
	if p.Detail != "" {
		return fmt.Sprintf("patchd: %d %s: %s", p.Status, name, p.Detail)
	}
	return fmt.Sprintf("patchd: %d %s", p.Status, name)
}

// Is reports whether the problem is the one a sentinel of this package
// names: ErrNotFound, ErrPreconditionFailed, ErrPreconditionRequired,
// ErrRateLimited, ErrUnavailable.
func (p *Problem) Is(target error) bool {
	switch target {
	case ErrRateLimited:
		return p.Status == http.StatusTooManyRequests
	case ErrUnavailable:
		return p.Status == http.StatusServiceUnavailable
	case ErrNotFound:
		return p.Status == http.StatusNotFound
	case ErrPreconditionFailed:
		return p.Status == http.StatusPreconditionFailed
	case ErrPreconditionRequired:
		return p.Status == http.StatusPreconditionRequired
	}
	return false
}

// member decodes the member name into v; false when it is absent or does
// not decode.
func (p *Problem) member(name string, v any) bool {
	raw, ok := p.Members[name]
	return ok && json.Unmarshal(raw, v) == nil
}

// Conflict is one pair of a rebase conflict: an op of the refused edit and
// a concurrent version's change that it overlaps.
type Conflict struct {
	// ClientOp is the index of the edit's op in the JSON Patch as sent
	// (for a Merge Patch or PUT, in the ops the server derived from it).
	ClientOp int `json:"clientOp"`
	// ClientPath is that op's JSON Pointer, as sent.
	ClientPath string `json:"clientPath"`
	// ConcurrentPath is the JSON Pointer the concurrent version changed.
	ConcurrentPath string `json:"concurrentPath"`
	// ConcurrentVersion is that version's seq.
	ConcurrentVersion uint64 `json:"concurrentVersion"`
	// Reason is overlap, ancestor-replaced, element-removed,
	// test-invalidated or array-replaced (REBASE.md).
	Reason string `json:"reason"`
}

// ConflictError is a 412 rebase-conflict: the write's If-Match named an
// older version and its edit overlaps edits committed since. The attempt
// that got this answer wrote nothing; for a Put whose earlier attempt's
// answer was lost, the error returned wraps ErrOutcomeUnknown too (see
// PreconditionError). It wraps the *Problem, so errors.Is(err,
// ErrPreconditionFailed) holds too.
type ConflictError struct {
	// Problem is the answer.
	Problem *Problem
	// Conflicts names every conflicting pair, as the server sent them.
	Conflicts []Conflict
	// BaseETag is the version the edit was made against; CurrentETag the
	// version that refused it.
	BaseETag, CurrentETag string

	cl       *Client
	coll, id string
}

// Error implements error.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("patchd: %s/%s: edit conflicts with concurrent edits of %s", e.coll, e.id, strings.Join(e.Paths(), ", "))
}

// Unwrap returns the Problem.
func (e *ConflictError) Unwrap() error { return e.Problem }

// Paths returns the JSON Pointers of the edit that conflict, in the order
// of Conflicts, without duplicates.
func (e *ConflictError) Paths() []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range e.Conflicts {
		if !seen[c.ClientPath] {
			seen[c.ClientPath] = true
			out = append(out, c.ClientPath)
		}
	}
	return out
}

// Current reads the document as it is now; it may have changed again
// since the conflict. It returns an error wrapping ErrNotFound if the
// document has been deleted since.
func (e *ConflictError) Current(ctx context.Context) (*Document, error) {
	return e.cl.Get(ctx, e.coll, e.id)
}

// PreconditionError is a write refused because of its preconditions,
// other than a rebase conflict: a 412 (precondition-failed: an If-Match
// with Strict, a DELETE's If-Match, Create on an existing document;
// base-unknown: the version If-Match names is no longer in history;
// rebase-too-far; rebase-apply-failed) or a 428 (precondition-required).
// It wraps the *Problem.
//
// The attempt that got this answer wrote nothing. But when an earlier
// attempt of the same Put, Create or Delete was sent and its answer lost
// (the network, a 502 or 504, a 503 such as a commit the database did not
// confirm), that attempt may have been applied, and this refusal may be
// due to it (a Delete's If-Match no longer matches because the first
// attempt deleted, then someone wrote again): the error returned then
// wraps ErrOutcomeUnknown as well as the *PreconditionError. Read the
// document (Current) to find out what it holds. Patch and Merge
// carry an idempotency key that the server records with the commit: a
// retry of one that was applied gets its first answer again, so their
// refusal means nothing was written.
type PreconditionError struct {
	// Problem is the answer; Problem.Name() says which of the above.
	Problem *Problem
	// CurrentETag is the document's ETag when the write was refused.
	CurrentETag string
	// BaseETag is the ETag the write's If-Match named, when the server
	// reports it.
	BaseETag string

	cl       *Client
	coll, id string
}

// Error implements error.
func (e *PreconditionError) Error() string { return e.Problem.Error() }

// Unwrap returns the Problem.
func (e *PreconditionError) Unwrap() error { return e.Problem }

// Current reads the document as it is now; see ConflictError.Current.
func (e *PreconditionError) Current(ctx context.Context) (*Document, error) {
	return e.cl.Get(ctx, e.coll, e.id)
}

// problemName returns the name of a problem+json body's type, or "".
func problemName(body []byte) string {
	var p struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(body, &p) != nil {
		return ""
	}
	return p.Type[strings.LastIndexByte(p.Type, '/')+1:]
}

// parseProblem builds the Problem of an error answer.
func parseProblem(a *answer) *Problem {
	p := &Problem{Status: a.status, ETag: a.header.Get("ETag")}
	p.RetryAfter, _ = retryAfter(a.header)
	var members map[string]json.RawMessage
	if json.Unmarshal(a.body, &members) == nil && members != nil {
		p.Members = members
		p.member("type", &p.Type)
		p.member("title", &p.Title)
		p.member("detail", &p.Detail)
	}
	if p.Detail == "" && p.Title == "" {
		p.Detail = http.StatusText(a.status)
	}
	return p
}

// failWrite is fail for the answer to the write c: a refused precondition
// after an attempt whose answer was lost also wraps ErrOutcomeUnknown.
func (cl *Client) failWrite(c *call, a *answer, coll, id string) error {
	err := cl.fail(a, coll, id)
	precondition := a.status == http.StatusPreconditionFailed || a.status == http.StatusPreconditionRequired
	// PATCH, POST and revert carry an idempotency key the server records
	// with the commit: a retry of one that was applied gets its answer
	// again, so a refusal shows it was not. PUT and DELETE have none.
	unkeyed := c.method == http.MethodPut || c.method == http.MethodDelete
	if a.unsure && precondition && unkeyed && c.query.Get("dryRun") == "" {
		return fmt.Errorf("%w; %w", err, ErrOutcomeUnknown)
	}
	return err
}

// fail turns an error answer about document coll/id into the error to
// return: a *ConflictError, a *PreconditionError or a *Problem.
func (cl *Client) fail(a *answer, coll, id string) error {
	p := parseProblem(a)
	switch {
	case a.status == http.StatusPreconditionFailed && p.Name() == "rebase-conflict":
		e := &ConflictError{Problem: p, cl: cl, coll: coll, id: id, CurrentETag: p.ETag}
		p.member("conflicts", &e.Conflicts)
		p.member("baseEtag", &e.BaseETag)
		p.member("currentEtag", &e.CurrentETag)
		return e
	case a.status == http.StatusPreconditionFailed || a.status == http.StatusPreconditionRequired:
		e := &PreconditionError{Problem: p, cl: cl, coll: coll, id: id, CurrentETag: p.ETag}
		p.member("baseEtag", &e.BaseETag)
		p.member("currentEtag", &e.CurrentETag)
		return e
	}
	return p
}
