package document

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// Idempotency keys (draft-ietf-httpapi-idempotency-key-header): the first
// write with a key is applied and its record is stored with the write, in
// the same transaction, which claims the key on every replica; a retry
// with the same key and the same request gets the first answer again
// without being applied twice.
//
// A record costs O(1) whatever the document's size: it names the version
// the write produced (its seq and ETag) and what the answer said about it
// (created, rebased), never the body. A replay rebuilds the body from the
// document: the current body when the document is still at that version,
// else by reverting the versions committed since, at most
// Config.ReplayVersions of them. When that version has been pruned from
// history, or more versions followed it, the replay is a
// *AnswerGoneError: the write was applied, but its answer cannot be sent
// again.

// inflight is the set of idempotency keys whose first request is being
// processed by this process: a second one is refused at once, without a
// trip to the store. Across processes, the store's claim decides.
type inflight struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

// take adds key, or reports false if it is there already.
func (f *inflight) take(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, busy := f.keys[key]; busy {
		return false
	}
	f.keys[key] = struct{}{}
	return true
}

// release removes key.
func (f *inflight) release(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.keys, key)
}

// answerVersion is the version of records that keep no body.
const answerVersion = 2

// answer is what a record stores: enough to answer the retry exactly as
// the first request was answered. The seq of the version is the store's
// (store.IdempotencyRecord.Seq). Records written before version 2 carry
// the body of the answer itself.
type answer struct {
	V           int    `json:"v,omitempty"`
	Fingerprint string `json:"fp"`
	Collection  string `json:"c"`
	ID          string `json:"id"`
	Created     bool   `json:"created,omitempty"`
	RebasedFrom string `json:"rebasedFrom,omitempty"`
	ETag        string `json:"etag"`
	Body        []byte `json:"body,omitempty"` // before version 2 only
}

// AnswerGoneError is the replay of a write that was applied, as version
// Seq of its document with ETag ETag, but whose answer can no longer be
// rebuilt: that version was pruned from history, or too many versions
// followed it (Config.ReplayVersions). It wraps ErrIdempotencyAnswerGone.
type AnswerGoneError struct {
	Err        error
	Collection string
	ID         string
	Seq        uint64
	ETag       string
	// Created is set when the write created the document.
	Created bool
}

func (e *AnswerGoneError) Error() string { return e.Err.Error() }

// Unwrap returns the error with the client's detail.
func (e *AnswerGoneError) Unwrap() error { return e.Err }

// holdOrReplay takes a keyed write's key for this process (held reports
// that it did: the caller releases it once answered) and looks for the
// record of an earlier write with the key, once: ok reports that it
// answered from it. Looking while holding the key, no request of this
// process with the key can commit between the look and the decision. A
// key another request of this process holds is no refusal when the record
// is there (retries of a committed write, answered together); without it,
// that request is the first, still being processed: errInUse.
func (s *Service) holdOrReplay(ctx context.Context, w *Write) (res Result, ok, held bool, err error) {
	held = s.inflight.take(w.Idempotency.Key)
	res, ok, err = s.replay(ctx, w)
	if !held && !ok && err == nil {
		err = errInUse
	}
	return res, ok, held, err
}

// replay answers a write from the record of an earlier one with the same
// key: ok reports that there was one.
func (s *Service) replay(ctx context.Context, w *Write) (res Result, ok bool, err error) {
	k := w.Idempotency
	rec, err := s.store.Idempotency(ctx, k.Key)
	if errors.Is(err, store.ErrNotFound) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, err
	}
	var a answer
	if err := json.Unmarshal(rec.Value, &a); err != nil {
		return Result{}, false, fmt.Errorf("idempotency record: %v", err)
	}
	if a.Fingerprint != k.Fingerprint {
		return Result{}, false, fail(ErrIdempotencyKeyReused, "this Idempotency-Key was used for a different request; use a new key for a new request")
	}
	res = Result{
		Doc:         &store.Document{Collection: a.Collection, ID: a.ID, ETag: a.ETag, Seq: rec.Seq, Body: a.Body},
		Created:     a.Created,
		RebasedFrom: a.RebasedFrom,
		Replayed:    true,
	}
	if a.V < answerVersion || w.Minimal {
		return res, true, nil // an older record has its body (none when minimal)
	}
	if res.Doc.Body, err = s.rebuild(ctx, a, rec.Seq); err != nil {
		return Result{Replayed: true}, true, err
	}
	return res, true, nil
}

// rebuild returns the body of version seq of a record's document, whose
// ETag the record gives.
func (s *Service) rebuild(ctx context.Context, a answer, seq uint64) ([]byte, error) {
	gone := func(why string) error {
		return &AnswerGoneError{
			Err: fail(ErrIdempotencyAnswerGone, fmt.Sprintf("this request was applied: it made version %d of %s/%s (ETag %s), but %s, so its answer cannot be sent again; read the document for its current state",
				seq, a.Collection, a.ID, a.ETag, why)),
			Collection: a.Collection, ID: a.ID, Seq: seq, ETag: a.ETag, Created: a.Created,
		}
	}
	// Broken invariants: the store's and the record's versions disagree.
	// Their errors keep patch's sentinels out of the chain (they are not
	// the client's 412s or 422s).
	broken := func(format string, args ...any) error {
		return fmt.Errorf("idempotency record of %s/%s: %s", a.Collection, a.ID, fmt.Sprintf(format, args...))
	}
	if seq == 0 {
		return nil, broken("no seq")
	}
	// A write can commit between the two reads below: read again then.
	for range 3 {
		doc, err := s.store.Get(ctx, a.Collection, a.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if doc != nil && doc.Seq == seq {
			if doc.ETag != a.ETag {
				return nil, broken("version %d has ETag %s, the record %s", seq, doc.ETag, a.ETag)
			}
			return doc.Body, nil
		}
		if doc != nil && doc.Seq < seq {
			return nil, broken("the document is at version %d, before the record's %d", doc.Seq, seq)
		}
		limit := uint64(s.cfg.ReplayVersions) // #nosec G115 -- positive (New)
		vs, more, err := s.store.History(ctx, a.Collection, a.ID, seq-1, s.cfg.ReplayVersions+1, s.cfg.ReplayBytes)
		if errors.Is(err, store.ErrNotFound) || (err == nil && (len(vs) == 0 || vs[0].Seq != seq)) {
			return nil, gone("that version is no longer in the document's history")
		}
		if err != nil {
			return nil, err
		}
		if vs[0].ETag != a.ETag {
			return nil, broken("version %d has ETag %s, the record %s", seq, vs[0].ETag, a.ETag)
		}
		// The versions to revert: those after seq, up to the current one.
		top := vs[len(vs)-1].Seq
		if doc != nil {
			top = doc.Seq
		}
		// The page stopped at its size before the current version (short
		// of its count; a page that reached it may stop at a later write).
		cut := more && len(vs) <= s.cfg.ReplayVersions && vs[len(vs)-1].Seq < top
		switch {
		case top-seq > limit:
			return nil, gone(fmt.Sprintf("more than %d versions followed it", limit))
		case cut:
			return nil, gone(fmt.Sprintf("the versions that followed it hold more than %d bytes of changes", s.cfg.ReplayBytes))
		case doc == nil && more:
			return nil, gone(fmt.Sprintf("more than %d versions followed it", limit))
		}
		if vs[len(vs)-1].Seq < top || (doc == nil && vs[len(vs)-1].Kind != store.KindDelete) {
			continue // a write committed between the reads
		}
		later := vs[1 : 1+top-seq]
		return s.revert(ctx, a, doc, later, broken)
	}
	return nil, fmt.Errorf("%w: %s/%s kept changing while its answer was rebuilt", store.ErrUnavailable, a.Collection, a.ID)
}

// revert undoes later, the versions after the record's, from doc (nil when
// deleted) and returns the body the record's version had.
func (s *Service) revert(ctx context.Context, a answer, doc *store.Document, later []store.Version, broken func(string, ...any) error) ([]byte, error) {
	size := len(a.ETag)
	if doc != nil {
		size = len(doc.Body)
	}
	for _, v := range later {
		size = max(size, len(v.Ops))
	}
	release, err := s.docs.Acquire(ctx, 2*size)
	if err != nil {
		return nil, err
	}
	defer release()
	var state any
	if doc != nil {
		if state, err = s.decode(doc); err != nil {
			return nil, err
		}
	}
	for i := len(later) - 1; i >= 0; i-- {
		ops, err := s.ops.decode(a.Collection, a.ID, later[i])
		if err != nil {
			return nil, broken("version %d: %v", later[i].Seq, err)
		}
		var exists bool
		if state, exists, err = patch.Revert(state, ops); err != nil || !exists {
			return nil, broken("reverting version %d: %v (exists %v)", later[i].Seq, err, exists)
		}
	}
	body := patch.Canonical(state)
	if got := store.ETagOf(body); got != a.ETag {
		return nil, broken("the rebuilt version has ETag %s, the record %s", got, a.ETag)
	}
	return body, nil
}

// record returns the idempotency record of a write that commits body; the
// store adds the seq of its version.
func (d *decision) record(body []byte) (*store.IdempotencyRecord, error) {
	a := answer{V: answerVersion, Fingerprint: d.w.Idempotency.Fingerprint, Collection: d.w.Collection, ID: d.w.ID,
		Created: d.created, RebasedFrom: d.rebasedFrom, ETag: store.ETagOf(body)}
	val, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("idempotency record: %w", err)
	}
	return &store.IdempotencyRecord{Key: d.w.Idempotency.Key, Scope: d.w.Idempotency.Scope, Value: val,
		Expires: d.s.cfg.Now().Add(d.s.cfg.IdempotencyTTL)}, nil
}
