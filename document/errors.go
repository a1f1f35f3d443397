package document

import "errors"

// Errors of the write decisions. Every error the Service returns wraps one
// of them, a sentinel of package patch (invalid JSON or patch, a patch that
// fails, a rebase conflict...) or of package store (not found, base
// unknown); the HTTP layer maps each to its status and problem type.
var (
	// ErrInvalidRequest: a malformed header or parameter (400
	// invalid-request).
	ErrInvalidRequest = errors.New("invalid request")
	// ErrPreconditionFailed: If-Match or If-None-Match is false and no
	// rebase applies (412 precondition-failed).
	ErrPreconditionFailed = errors.New("precondition failed")
	// ErrPreconditionRequired: a write to an existing document without
	// If-Match, when If-Match is required (428 precondition-required).
	ErrPreconditionRequired = errors.New("precondition required")
	// ErrPatchConflict: a write without a version to check (If-Match: *,
	// or none when allowed) whose patch does not apply to the current
	// version (409 patch-conflict). A patch that fails on the version the
	// client named is patch.ErrPatchFailed instead (422).
	ErrPatchConflict = errors.New("patch does not apply to the current version")
	// ErrIdempotencyKeyReused: the key was used before with a different
	// request (422 idempotency-key-reused).
	ErrIdempotencyKeyReused = errors.New("idempotency key reused for a different request")
	// ErrIdempotencyKeyInUse: a request with the same key is still being
	// processed (409 idempotency-key-in-use).
	ErrIdempotencyKeyInUse = errors.New("idempotency key in use")
	// ErrIdempotencyAnswerGone: the request with this key was applied, but
	// the version it made is no longer in history, so its answer cannot
	// be sent again (410 idempotency-answer-gone; see AnswerGoneError).
	ErrIdempotencyAnswerGone = errors.New("idempotency answer gone")
)

// Error is an error whose message is meant for the client: a sentinel,
// which errors.Is finds, with a detail that says what was wrong.
type Error struct {
	Err    error
	Detail string
}

func (e *Error) Error() string { return e.Detail }

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Err }

// fail returns sentinel with a detail for the client.
func fail(sentinel error, detail string) error {
	return &Error{Err: sentinel, Detail: detail}
}

// PreconditionError is a refused precondition (412, 428) with the ETags the
// answer reports.
type PreconditionError struct {
	Err error
	// Current is the current ETag, for the ETag header and currentEtag;
	// "" when the document does not exist.
	Current string
	// Base is the ETag the client's edit was made against, for baseEtag;
	// "" when none applies.
	Base string
}

func (e *PreconditionError) Error() string { return e.Err.Error() }

// Unwrap returns the error it qualifies.
func (e *PreconditionError) Unwrap() error { return e.Err }
