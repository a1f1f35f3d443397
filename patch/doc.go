// Package patch is the pure core of patchd: JSON values that keep their
// number literals, the canonical encoding that ETags hash, RFC 6902 JSON
// Patch and RFC 7396 Merge Patch, the normalized operations that history
// records, and the rebase of a stale edit over concurrent ones (REBASE.md).
//
// Nothing here does I/O. Values are plain Go trees: nil, bool, string,
// Number, []any and map[string]any.
//
// # Errors
//
// Every error wraps one sentinel (ErrInvalidJSON, ErrInvalidPatch,
// ErrPatchFailed, ErrInvalidDocument, ErrRebaseConflict, ErrRebaseTooFar,
// ErrRebaseApplyFailed); client-facing ones are *Error values whose message
// names the operation and path at fault.
package patch
