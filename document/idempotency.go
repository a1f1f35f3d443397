package document

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/patchd/patchd/store"
)

// Idempotency keys (draft-ietf-httpapi-idempotency-key-header): the first
// write with a key is applied and its answer is stored with the write, in
// the same transaction; a retry with the same key and the same request gets
// that answer again without being applied twice.

// inflight is the set of idempotency keys whose first request is being
// processed by this process.
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

// answer is what a record stores: enough to answer the retry exactly as the
// first request was answered.
type answer struct {
	Fingerprint string `json:"fp"`
	Collection  string `json:"c"`
	ID          string `json:"id"`
	Created     bool   `json:"created,omitempty"`
	RebasedFrom string `json:"rebasedFrom,omitempty"`
	ETag        string `json:"etag"`
	Body        []byte `json:"body,omitempty"`
}

// replay answers a write from the record of an earlier one with the same
// key: ok reports that there was one.
func (s *Service) replay(ctx context.Context, k *IdempotencyKey) (res Result, ok bool, err error) {
	rec, err := s.store.Idempotency(ctx, k.Key)
	if errors.Is(err, store.ErrNotFound) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, err
	}
	var a answer
	if err := json.Unmarshal(rec.Value, &a); err != nil {
		return Result{}, false, fmt.Errorf("idempotency record: %w", err)
	}
	if a.Fingerprint != k.Fingerprint {
		return Result{}, false, fail(ErrIdempotencyKeyReused, "this Idempotency-Key was used for a different request; use a new key for a new request")
	}
	return Result{
		Doc:         &store.Document{Collection: a.Collection, ID: a.ID, ETag: a.ETag, Body: a.Body},
		Created:     a.Created,
		RebasedFrom: a.RebasedFrom,
		Replayed:    true,
	}, true, nil
}

// record returns the idempotency record of a write that commits body.
func (d *decision) record(body []byte) (*store.IdempotencyRecord, error) {
	a := answer{Fingerprint: d.w.Idempotency.Fingerprint, Collection: d.w.Collection, ID: d.w.ID,
		Created: d.created, RebasedFrom: d.rebasedFrom, ETag: store.ETagOf(body)}
	if !d.w.Minimal {
		a.Body = body
	}
	val, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("idempotency record: %w", err)
	}
	return &store.IdempotencyRecord{Key: d.w.Idempotency.Key, Value: val, Expires: d.s.cfg.Now().Add(d.s.cfg.IdempotencyTTL)}, nil
}
