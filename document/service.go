// Package document decides every write to patchd's documents: it parses the
// client's edit, evaluates the preconditions, rebases a stale edit over the
// versions committed since its base (package patch), enforces the limits,
// builds the idempotency record and the new version, and has the store
// commit it. It reads for the HTTP layer too, so that handlers talk to one
// service and the store is reached only from here.
//
// A write flows top-down: handlers parse HTTP into a Write, Service.Write
// decides it under the document's lock through store.Update, whose closure
// is the service's own decision, built from values, and the Result says
// what happened (created, rebased, replayed) for the answer, the log and
// the metrics.
package document

import (
	"context"
	"log/slog"
	"runtime"
	"time"

	"github.com/patchd/patchd/internal/budget"
	"github.com/patchd/patchd/internal/fair"
	"github.com/patchd/patchd/internal/ids"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Config holds the service's settings. Start from DefaultConfig.
type Config struct {
	// RequireIfMatch refuses writes to existing documents without
	// If-Match (428).
	RequireIfMatch bool
	// Limits bound documents and patches (depth, size, operations).
	Limits patch.Limits
	// Rebase bounds the work of one rebase.
	Rebase patch.RebaseLimits
	// IdempotencyTTL is how long the answer to a write with an idempotency
	// key is kept for retries. Zero means 24h.
	IdempotencyTTL time.Duration
	// ReplayVersions bounds the versions a replay of such an answer reverts
	// to rebuild its body; past it the replay is an *AnswerGoneError. Zero
	// means 1000.
	ReplayVersions int
	// ReplayBytes bounds, likewise, the bytes of the ops of those versions
	// (read and decoded at once). Zero means 8 MiB.
	ReplayBytes int
	// DecodeBudget bounds the bytes of stored documents held decoded as
	// trees at once; past it, writes of large documents wait for one
	// another. Zero means 2 MiB.
	DecodeBudget int64
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
	// Now is the clock of idempotency records; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults API.md documents.
func DefaultConfig() Config {
	return Config{
		RequireIfMatch: true,
		Limits:         patch.Limits{MaxDepth: 64, MaxDoc: 1 << 20, MaxOps: 1000, MaxNumber: patch.DefaultMaxNumber},
		Rebase:         patch.RebaseLimits{MaxOps: 10_000, MaxWork: 1_000_000},
		IdempotencyTTL: 24 * time.Hour,
		ReplayVersions: 1000,
		ReplayBytes:    8 << 20,
		DecodeBudget:   2 << 20,
	}
}

// Service reads and writes documents in a store. It is safe for concurrent
// use.
type Service struct {
	store store.Store
	cfg   Config
	log   *slog.Logger
	ids   *ids.Generator

	inflight *inflight // idempotency keys being processed
	schemas  schemaCache
	ops      *opsCache
	trees    *treeCache
	states   *stateCache    // versions as collection filters judge them
	walks    *walkGroup     // walks of past states shared by collection filters
	docs     *budget.Budget // decode budget of stored documents
	// scans are the turns of the work that reads a whole collection (a
	// page sorted by a member, a page of violations): half the cores at
	// once, the clients waiting served in turn, so that one client's
	// scans neither take every core from the other requests nor hold
	// back another client's scans.
	scans *fair.Turns
}

// New returns a Service over st.
func New(st store.Store, cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IdempotencyTTL <= 0 {
		cfg.IdempotencyTTL = 24 * time.Hour
	}
	if cfg.DecodeBudget <= 0 {
		cfg.DecodeBudget = 2 << 20
	}
	if cfg.ReplayVersions <= 0 {
		cfg.ReplayVersions = 1000
	}
	if cfg.ReplayBytes <= 0 {
		cfg.ReplayBytes = 8 << 20
	}
	return &Service{
		store:    st,
		cfg:      cfg,
		log:      cfg.Logger,
		ids:      ids.New(),
		inflight: &inflight{keys: map[string]struct{}{}},
		schemas:  schemaCache{m: map[string]*compiledSchema{}},
		ops:      newOpsCache(opsCacheBytes),
		trees:    newTreeCache(treeCacheBytes),
		states:   newStateCache(),
		walks:    newWalkGroup(),
		docs:     budget.New(cfg.DecodeBudget),
		scans:    fair.New(runtime.GOMAXPROCS(0) / 2),
	}
}

// Limits returns the limits the service enforces on documents and patches.
func (s *Service) Limits() patch.Limits { return s.cfg.Limits }

// Get returns the current document. Returns an error wrapping
// store.ErrNotFound if it does not exist.
func (s *Service) Get(ctx context.Context, collection, id string) (*store.Document, error) {
	return s.store.Get(ctx, collection, id)
}

// ETag returns the current document's ETag without reading its body.
// Returns an error wrapping store.ErrNotFound if it does not exist.
func (s *Service) ETag(ctx context.Context, collection, id string) (string, error) {
	return s.store.ETag(ctx, collection, id)
}

// List returns a page of a collection's ids and ETags (see store.Store).
func (s *Service) List(ctx context.Context, collection, after string, limit int) ([]store.ListEntry, bool, error) {
	return s.store.List(ctx, collection, after, limit)
}

// History returns a page of a document's retained versions, at most limit
// of them and at most maxBytes of ops unless the first alone is more (see
// store.Store).
func (s *Service) History(ctx context.Context, collection, id string, after uint64, limit, maxBytes int) ([]store.Version, bool, error) {
	return s.store.History(ctx, collection, id, after, limit, maxBytes)
}

// Ping checks that the store can serve now (see store.Store): for
// readiness probes.
func (s *Service) Ping(ctx context.Context) error { return s.store.Ping(ctx) }

// Subscribe returns the store's commit events (see store.Store).
func (s *Service) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	return s.store.Subscribe(ctx)
}

// Collector returns the store's Prometheus metrics.
func (s *Service) Collector() prometheus.Collector { return s.store.Collector() }
