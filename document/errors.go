package document

import (
	"errors"
	"fmt"
	"strings"

	"github.com/patchd/patchd/patch"
)

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
	// ErrSchemaViolation: the result of a write breaks its collection's
	// schema (422 schema-violation); see *SchemaViolationError.
	ErrSchemaViolation = errors.New("schema violation")
	// ErrInvalidSchema: a schema that does not compile (422
	// invalid-schema).
	ErrInvalidSchema = errors.New("invalid schema")
	// ErrCannotRevert: a revert of a version that cannot be undone by
	// editing the document, such as the one that created it (422
	// cannot-revert).
	ErrCannotRevert = errors.New("version cannot be reverted")
	// ErrIdempotencyAnswerGone: the request with this key was applied, but
	// the version it made is no longer in history, so its answer cannot
	// be sent again (410 idempotency-answer-gone; see AnswerGoneError).
	ErrIdempotencyAnswerGone = errors.New("idempotency answer gone")

	// ErrOverloaded: the request waited its most for a turn of work
	// shared with other requests (a schema's validations, the scans of
	// whole collections), and is refused (503 overloaded).
	ErrOverloaded = errors.New("overloaded")

	// ErrBatchTooLarge: the documents a batch's writes produce pass
	// MaxBatchBytes.
	ErrBatchTooLarge = errors.New("batch too large")
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

// SchemaError is one way in which a document breaks its collection's
// schema.
type SchemaError struct {
	// InstancePath is the JSON Pointer of the offending value ("" for
	// the whole document).
	InstancePath string `json:"instancePath"`
	// Keyword is the schema keyword that failed, such as "maximum".
	Keyword string `json:"keyword"`
	// Message says what is wrong, in English.
	Message string `json:"message"`
}

// SchemaViolationError is a write whose result breaks its collection's
// schema. errors.Is finds ErrSchemaViolation in it, or, when the write was
// rebased (Conflict is set), patch.ErrRebaseConflict: each edit was valid
// on its own, and together they are not.
type SchemaViolationError struct {
	Errors []SchemaError
	// Conflict, for a rebased write, names the versions it was rebased
	// over; its Reason is "schema-violation".
	Conflict *patch.Conflict
}

func (e *SchemaViolationError) Error() string {
	var b strings.Builder
	if e.Conflict != nil {
		fmt.Fprintf(&b, "the edit is valid on its own, but rebased over the versions up to %d its result breaks the collection's schema", e.Conflict.ConcurrentVersion)
	} else {
		b.WriteString("the result breaks the collection's schema")
	}
	for i, se := range e.Errors {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(e.Errors)-3)
			break
		}
		sep := ": "
		if i > 0 {
			sep = "; "
		}
		fmt.Fprintf(&b, "%sat %q: %s", sep, se.InstancePath, se.Message)
	}
	return b.String()
}

// Unwrap returns ErrSchemaViolation, or patch.ErrRebaseConflict for a
// rebased write.
func (e *SchemaViolationError) Unwrap() error {
	if e.Conflict != nil {
		return patch.ErrRebaseConflict
	}
	return ErrSchemaViolation
}

// ReasonSchemaViolation is the reason of the conflict a rebased write
// whose result breaks the schema reports.
const ReasonSchemaViolation = "schema-violation"
