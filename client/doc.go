// Package client is the Go client of patchd, a JSON document server with
// strong ETags, JSON Patch and Merge Patch under If-Match, and server-side
// rebase of stale edits.
//
// # Basics
//
// A Client talks to one server:
//
//	cl := client.New("http://127.0.0.1:8080", client.WithToken(token))
//	doc, err := cl.Get(ctx, "forms", "42")                 // doc.Value, doc.ETag
//	doc, err = cl.Patch(ctx, "forms", "42", ops, client.IfMatch(doc.ETag))
//
// Every write takes IfMatch, Strict, IdempotencyKey and DryRun. A write
// whose IfMatch names an older version is rebased by the server over the
// versions committed since; the result's RebasedFrom says so. When the
// edits overlap, the error is a *ConflictError naming the conflicting
// paths. Errors are values: use errors.As with *ConflictError,
// *PreconditionError and *Problem, and errors.Is with ErrNotFound,
// ErrPreconditionFailed and ErrPreconditionRequired. A successful answer
// that is not what the protocol says (a document without a strong ETag,
// or whose body is not a JSON object) is an error wrapping
// ErrInvalidResponse, never a Document. A Put, Create or Delete refused
// (412, 428) on a retry that followed an attempt whose answer was lost
// wraps ErrOutcomeUnknown as well: that attempt may have been applied
// (the other writes carry an idempotency key the server records, so a
// refused retry means nothing was written).
//
// Update is a typed read-modify-write: it decodes the document into a Go
// value, lets a function change it, sends one JSON Patch op per changed
// member, and runs the function again when a concurrent edit of the same
// members conflicts. Watch follows documents and collections (filtered
// by Where) over one stream, and resumes across reconnections and server
// restarts without skipping or repeating a version or a change.
//
// # Retries
//
// Network errors and 502, 503, 504 and 429 answers are retried with "full
// jitter" backoff (see RetryPolicy); no other 4xx is, except a 409
// idempotency-key-in-use: the write's own earlier attempt still in progress. Every write carries
// an Idempotency-Key kept across its retries, so a write whose answer was
// lost is applied once. An answer whose body is longer than
// WithMaxResponse's bound (64 MiB by default) fails the call with an
// error wrapping ErrResponseTooLarge and is not retried.
//
// # Older servers
//
// Watch falls back to one change feed per document on a server that
// answers POST /events with 404 or 405; collection subscriptions then end
// with an error wrapping ErrUnsupported.
package client
