package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// Errors of the HTTP layer. Handlers return them (wrapped with a detail by
// fail) and the error handler maps them, with the document service's, the
// store's and patch's sentinels, to API.md's status and problem table.
var (
	// ErrInvalidRequest is the document service's: a bad name, header or
	// query parameter.
	ErrInvalidRequest       = document.ErrInvalidRequest
	ErrMethodNotAllowed     = errors.New("method not allowed")
	ErrTooLarge             = errors.New("request body too large")
	ErrUnsupportedMediaType = errors.New("unsupported media type")
	// ErrOverloaded: the request could not get its share of a bounded
	// resource soon enough (503 with Retry-After); the document service's.
	ErrOverloaded = document.ErrOverloaded
)

// problemKind is one row of API.md's error table.
type problemKind struct {
	err    error
	status int
	name   string
	title  string
}

// problemKinds maps every error sentinel to its status and problem type.
// The first row whose sentinel errors.Is finds wins.
var problemKinds = []problemKind{
	{patch.ErrInvalidJSON, http.StatusBadRequest, "invalid-json", "Body is not valid JSON"},
	{patch.ErrInvalidPatch, http.StatusBadRequest, "invalid-patch", "Malformed patch document"},
	{ErrInvalidRequest, http.StatusBadRequest, "invalid-request", "Invalid request"},
	{store.ErrInvalidKey, http.StatusBadRequest, "invalid-request", "Invalid request"},
	{store.ErrNotFound, http.StatusNotFound, "not-found", "Not found"},
	{ErrMethodNotAllowed, http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed"},
	{document.ErrPatchConflict, http.StatusConflict, "patch-conflict", "Patch does not apply to the current version"},
	{document.ErrPreconditionFailed, http.StatusPreconditionFailed, "precondition-failed", "Precondition failed"},
	{patch.ErrRebaseConflict, http.StatusPreconditionFailed, "rebase-conflict", "Edit conflicts with concurrent edits"},
	{store.ErrBaseUnknown, http.StatusPreconditionFailed, "base-unknown", "Base version not in history"},
	{patch.ErrRebaseTooFar, http.StatusPreconditionFailed, "rebase-too-far", "Base version too far behind"},
	{patch.ErrRebaseApplyFailed, http.StatusPreconditionFailed, "rebase-apply-failed", "Rebased edit does not apply"},
	{ErrTooLarge, http.StatusRequestEntityTooLarge, "too-large", "Request body too large"},
	{document.ErrBatchTooLarge, http.StatusRequestEntityTooLarge, "too-large", "Batch too large"},
	{ErrUnsupportedMediaType, http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type"},
	{patch.ErrPatchFailed, http.StatusUnprocessableEntity, "patch-failed", "Patch does not apply"},
	{patch.ErrInvalidDocument, http.StatusUnprocessableEntity, "invalid-document", "Invalid document"},
	{document.ErrPreconditionRequired, http.StatusPreconditionRequired, "precondition-required", "Precondition required"},
	{ErrUnauthorized, http.StatusUnauthorized, "unauthorized", "Authentication required"},
	{ErrForbidden, http.StatusForbidden, "forbidden", "Not allowed"},
	{ErrRateLimited, http.StatusTooManyRequests, "rate-limited", "Too many requests"},
	{store.ErrIdempotencyExists, http.StatusConflict, "idempotency-key-in-use", "Idempotency key in use"},
	{document.ErrIdempotencyKeyInUse, http.StatusConflict, "idempotency-key-in-use", "Idempotency key in use"},
	{document.ErrIdempotencyKeyReused, http.StatusUnprocessableEntity, "idempotency-key-reused", "Idempotency key reused"},
	{document.ErrSchemaViolation, http.StatusUnprocessableEntity, "schema-violation", "Document breaks the collection's schema"},
	{document.ErrInvalidSchema, http.StatusUnprocessableEntity, "invalid-schema", "Invalid schema"},
	{document.ErrCannotRevert, http.StatusUnprocessableEntity, "cannot-revert", "Version cannot be reverted"},
	{ErrOverloaded, http.StatusServiceUnavailable, "overloaded", "Server overloaded"},
	{store.ErrNoSpace, http.StatusInsufficientStorage, "insufficient-storage", "Insufficient storage"},
	{document.ErrIdempotencyAnswerGone, http.StatusGone, "idempotency-answer-gone", "Answer no longer available"},
	{store.ErrUnavailable, http.StatusServiceUnavailable, "unavailable", "Service unavailable"},
	{errStreamsClosed, http.StatusServiceUnavailable, "unavailable", "Service unavailable"},
}

// unavailableRetryAfter is the Retry-After of a 503, in seconds: a
// database restart takes about that long, and clients back off beyond it.
const unavailableRetryAfter = "1"

var internalKind = problemKind{nil, http.StatusInternalServerError, "internal", "Internal server error"}

// diskFullRetry is the Retry-After of a 507: space comes back when an
// operator frees it, not in a second.
const diskFullRetry = 30 * time.Second

// diskFullLog logs a full device at most once a minute, with the number of
// writes refused since the last line.
type diskFullLog struct {
	mu      sync.Mutex
	last    time.Time
	refused int
}

// diskFullEvery is how often a full device is logged while it lasts.
const diskFullEvery = time.Minute

// note counts a write refused for a full device and logs it when the last
// line is a minute old.
func (d *diskFullLog) note(log *slog.Logger, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refused++
	if now := time.Now(); now.Sub(d.last) >= diskFullEvery {
		log.Error("storage full: writes are refused with 507 until space is freed", slog.Int("refused", d.refused), slog.Any("err", err))
		d.last, d.refused = now, 0
	}
}

// fail returns sentinel with a detail for the client.
func fail(sentinel error, detail string) error {
	return &document.Error{Err: sentinel, Detail: detail}
}

// problem is an RFC 9457 problem details body.
type problem struct {
	Type        string                 `json:"type"`
	Title       string                 `json:"title"`
	Status      int                    `json:"status"`
	Detail      string                 `json:"detail"`
	CurrentETag any                    `json:"currentEtag,omitempty"` // a string, or null: no current version
	BaseETag    any                    `json:"baseEtag,omitempty"`    // a string, or null: the base is a delete
	Conflicts   []conflict             `json:"conflicts,omitempty"`
	Errors      []document.SchemaError `json:"errors,omitempty"`
	Index       *int                   `json:"index,omitempty"`
	// AppliedETag and AppliedSeq name the version an idempotent request
	// made, when its answer is gone (410).
	AppliedETag *string `json:"appliedEtag,omitempty"`
	AppliedSeq  *uint64 `json:"appliedSeq,omitempty"`
}

// conflict is one conflict of a rebase-conflict problem; one of reason
// schema-violation carries the schema's errors.
type conflict struct {
	patch.Conflict
	Errors []document.SchemaError `json:"errors,omitempty"`
}

// maxDetail bounds the detail of a problem: details quote the client's
// paths and values, which can be as long as the body.
const maxDetail = 1024

// truncateDetail cuts d to maxDetail bytes at a rune boundary.
func truncateDetail(d string) string {
	if len(d) <= maxDetail {
		return d
	}
	cut := maxDetail
	for cut > 0 && !utf8.RuneStart(d[cut]) {
		cut--
	}
	return d[:cut] + "... (truncated)"
}

// classify finds the problem kind of err.
func classify(err error) problemKind {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			return problemKind{store.ErrNotFound, http.StatusNotFound, "not-found", "Not found"}
		case http.StatusMethodNotAllowed:
			return kindOf(ErrMethodNotAllowed)
		case http.StatusRequestEntityTooLarge:
			return kindOf(ErrTooLarge)
		}
		return internalKind
	}
	for _, k := range problemKinds {
		if errors.Is(err, k.err) {
			return k
		}
	}
	return internalKind
}

// kindOf returns the row of a sentinel.
func kindOf(sentinel error) problemKind {
	for _, k := range problemKinds {
		if k.err == sentinel {
			return k
		}
	}
	return internalKind
}

// errorHandler is the one place where errors become HTTP answers.
func (h *Handler) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	if errors.Is(err, echo.ErrNotFound) {
		if e := emptyName(c.Request().URL.Path); e != nil {
			err = e
		}
	}
	k := classify(err)
	p := problem{Type: "/problems/" + k.name, Title: k.title, Status: k.status, Detail: truncateDetail(err.Error())}
	var he *echo.HTTPError
	switch {
	case k.status == http.StatusInternalServerError && errors.Is(err, context.Canceled) && clientContext(c).Err() != nil:
		// The client went away mid-request: nothing failed here, and
		// nobody reads an answer. The request log and the metrics count
		// it as 499 (client closed request), never as a 500.
		h.log.Debug("client gone", slog.String("request_id", info(c).id), slog.String("method", c.Request().Method),
			slog.String("path", c.Request().URL.Path), slog.Any("err", err))
		info(c).clientGone = true
		return
	case k.status == http.StatusInternalServerError:
		h.log.Error("internal error", slog.String("request_id", info(c).id), slog.String("method", c.Request().Method),
			slog.String("path", c.Request().URL.Path), slog.Any("err", err))
		p.Detail = "internal error"
	case k.status == http.StatusInsufficientStorage:
		// The device is full: every write fails alike until space is
		// freed, so the condition is logged once a minute, not per request.
		h.diskFull.note(h.log, err)
		p.Detail = "the server's storage is full: nothing was written; retry once space is freed"
		c.Response().Header().Set(echo.HeaderRetryAfter, strconv.Itoa(int(diskFullRetry/time.Second)))
	case errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrCommitUnknown):
		// The store's own words name hosts and drivers: they go to the
		// log; the client learns what to do.
		if !info(c).causeLogged {
			h.log.Warn("store unavailable", slog.String("request_id", info(c).id), slog.String("method", c.Request().Method),
				slog.String("path", c.Request().URL.Path), slog.Any("err", err))
		}
		var de *document.Error
		switch {
		case errors.As(err, &de) && errors.Is(de.Err, store.ErrUnavailable):
			p.Detail = de.Detail
		case errors.Is(err, store.ErrCommitUnknown) && (c.Request().Method == http.MethodPut || c.Request().Method == http.MethodDelete):
			p.Detail = "the database did not confirm whether this write committed; read the document to learn its outcome (PUT and DELETE take no Idempotency-Key)"
		case errors.Is(err, store.ErrCommitUnknown) && c.Path() == "/batch":
			p.Detail = "the database did not confirm whether this batch committed; retried, its writes with an Idempotency-Key get their real outcome, and its PUT and DELETE writes are learnt by reading their documents"
		case errors.Is(err, store.ErrCommitUnknown):
			p.Detail = "the database did not confirm whether this write committed; retry it with the same Idempotency-Key to learn its outcome, or read the document"
		default:
			p.Detail = "the database is unavailable or did not answer in time; retry after the Retry-After delay"
		}
		c.Response().Header().Set(echo.HeaderRetryAfter, unavailableRetryAfter)
	case k.status == http.StatusNotFound && !errors.As(err, new(*document.Error)) && !errors.As(err, &he):
		// The store's own words ("store: get c/id: not found") name
		// its internals; say what is missing instead.
		p.Detail = "no such document"
	case errors.As(err, &he):
		p.Detail = http.StatusText(he.Code)
		switch k.status {
		case http.StatusNotFound:
			p.Detail = "no such resource"
		case http.StatusMethodNotAllowed:
			p.Detail = fmt.Sprintf("%.32s is not allowed on this resource", c.Request().Method)
			if allow := c.Response().Header().Get(echo.HeaderAllow); allow != "" {
				p.Detail += "; it allows " + allow
			}
		}
	}
	hdr := c.Response().Header()
	if k.status == http.StatusServiceUnavailable && hdr.Get(echo.HeaderRetryAfter) == "" {
		hdr.Set(echo.HeaderRetryAfter, unavailableRetryAfter) // every 503 says when to retry
	}
	var be *document.BatchError
	inBatch := errors.As(err, &be)
	if inBatch {
		p.Index = &be.Index
	}
	var pe *document.PreconditionError
	if errors.As(err, &pe) && pe.Current != "" {
		hdr.Set("ETag", pe.Current) // in a batch, that of the refused write's document
		p.CurrentETag = pe.Current
		switch {
		case pe.Base != "" && len(pe.Base) <= maxDetail: // an ETag that long is no version's: not echoed
			p.BaseETag = pe.Base
		case pe.Base == "" && k.name == "rebase-conflict":
			p.BaseETag = json.RawMessage("null") // the undo of a delete: its base has no ETag
		}
	} else if errors.As(err, &pe) && k.status == http.StatusPreconditionFailed {
		p.CurrentETag = json.RawMessage("null") // the document does not exist: no ETag is current
	}
	var ce *patch.ConflictError
	if errors.As(err, &ce) {
		for _, c := range ce.Conflicts {
			p.Conflicts = append(p.Conflicts, conflict{Conflict: c})
		}
	}
	var sv *document.SchemaViolationError
	if errors.As(err, &sv) {
		if sv.Conflict != nil {
			p.Conflicts = append(p.Conflicts, conflict{Conflict: *sv.Conflict, Errors: sv.Errors})
		} else {
			p.Errors = sv.Errors
		}
	}
	var ge *document.AnswerGoneError
	if errors.As(err, &ge) {
		p.AppliedETag, p.AppliedSeq = &ge.ETag, &ge.Seq
		hdr.Set(replayedHeader, "true")
		if ge.Created {
			hdr.Set(echo.HeaderLocation, "/docs/"+ge.Collection+"/"+ge.ID)
		}
	}
	if k.status == http.StatusUnsupportedMediaType || k.status == http.StatusMethodNotAllowed {
		hdr.Set("Accept-Patch", acceptPatch)
	}
	body, mErr := json.Marshal(p)
	if mErr != nil {
		body = []byte(`{"type":"/problems/internal","title":"Internal server error","status":500,"detail":"internal error"}`)
	}
	hdr.Set(echo.HeaderContentType, "application/problem+json")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set(echo.HeaderContentLength, strconv.Itoa(len(body))) // a HEAD answer's too
	if c.Request().Method == http.MethodHead {
		c.Response().WriteHeader(k.status)
		return
	}
	if err := c.Blob(k.status, "application/problem+json", body); err != nil {
		h.log.Debug("write error response", slog.Any("err", err))
	}
}
