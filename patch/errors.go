package patch

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error this package returns wraps exactly one of
// them; test with errors.Is.
var (
	// ErrInvalidJSON: the input is not valid JSON, or uses what the canonical
	// form cannot keep (duplicate member names, invalid UTF-8, lone
	// surrogates).
	ErrInvalidJSON = errors.New("invalid JSON")
	// ErrInvalidPatch: the patch document is malformed.
	ErrInvalidPatch = errors.New("invalid patch")
	// ErrPatchFailed: the patch is well formed but does not apply to the
	// document (a failed test, a missing path, an index out of range).
	ErrPatchFailed = errors.New("patch does not apply")
	// ErrInvalidDocument: the result is not a JSON object, nests too deeply
	// or is larger than the limit.
	ErrInvalidDocument = errors.New("invalid document")
	// ErrNumberTooLong: a number literal is longer than Limits.MaxNumber.
	// It wraps ErrInvalidDocument.
	ErrNumberTooLong = fmt.Errorf("%w: number literal too long", ErrInvalidDocument)
	// ErrRebaseConflict: a rebase found edits that overlap concurrent edits. The
	// error is a *ConflictError.
	ErrRebaseConflict = errors.New("rebase conflict")
	// ErrRebaseTooFar: a rebase would exceed its work bound.
	ErrRebaseTooFar = errors.New("rebase too far")
	// ErrRebaseApplyFailed: a rebased patch did not apply to the current
	// document although no conflict was found.
	ErrRebaseApplyFailed = errors.New("rebased patch does not apply")
)

// Error describes a failure in a client's input. Its message is meant for
// the client: it names the operation and path involved.
type Error struct {
	// Err is one of the package's sentinel errors.
	Err error
	// Op is the index of the offending operation in the patch, or -1.
	Op int
	// Detail says what was wrong.
	Detail string
}

func (e *Error) Error() string {
	if e.Op >= 0 {
		return fmt.Sprintf("operation %d: %s", e.Op, e.Detail)
	}
	return e.Detail
}

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Err }

func errorf(sentinel error, op int, format string, args ...any) error {
	return &Error{Err: sentinel, Op: op, Detail: fmt.Sprintf(format, args...)}
}
