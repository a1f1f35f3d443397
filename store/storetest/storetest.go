// Package storetest is the conformance suite that every store.Store backend
// must pass.
//
// A backend's tests call RunConformance with a function that opens a new,
// empty store:
//
//	func TestConformance(t *testing.T) {
//		storetest.RunConformance(t, func(t *testing.T, opts storetest.Options) store.Store {
//			s, err := bolt.Open(filepath.Join(t.TempDir(), "db"), store.Options{
//				Retention: opts.Retention,
//				Now:       opts.Now,
//			})
//			...
//		})
//	}
//
// The suite uses the store.Store interface, and the optional interfaces
// (store.Dumper, store.Loader) where the backend has them, so it runs
// unchanged against any backend.
package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
)

// Options configures a store opened for one conformance test.
type Options struct {
	// Retention is the history bound the store must apply. Zero fields
	// mean the backend's defaults; the suite sets both fields whenever it
	// depends on them.
	Retention store.Retention
	// Now is the clock the store must use for commit times (Document.
	// UpdatedAt and Version.At). The suite always sets it, to a fake clock
	// at whole seconds, so microsecond precision is enough.
	Now func() time.Time
	// Timeout is the store's deadline for one call (store.Options.Timeout);
	// zero means the backend's default.
	Timeout time.Duration
	// IdempotencyPerScope is the store's bound on the idempotency records
	// of one scope (store.Options.IdempotencyPerScope); zero means the
	// default.
	IdempotencyPerScope int
	// MaxHistoryRead is store.Options.MaxHistoryRead; zero means the
	// default.
	MaxHistoryRead int
}

// RunConformance runs the conformance suite as subtests of t, each against
// a store returned by open. open must return a new, empty store configured
// with opts and arrange with t.Cleanup to release it. Some tests close the
// store themselves, so that cleanup must accept an error wrapping
// store.ErrClosed from a second Close.
//
// Subtests are named "Group/Name" (for example "Update/Create") and run in
// parallel with each other.
func RunConformance(t *testing.T, open func(t *testing.T, opts Options) store.Store) {
	t.Helper()
	for _, g := range groups() {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.fn(t, open)
				})
			}
		})
	}
}

// opener opens a store for one test.
type opener = func(t *testing.T, opts Options) store.Store

// testCase is one conformance test.
type testCase struct {
	name string
	fn   func(t *testing.T, open opener)
}

// group is a named list of conformance tests.
type group struct {
	name  string
	tests []testCase
}

// groups returns the conformance suite.
func groups() []group {
	return []group{
		{name: "Get", tests: []testCase{
			{name: "NotFound", fn: testGetNotFound},
			{name: "ETag", fn: testETag},
		}},
		{name: "Update", tests: []testCase{
			{name: "Create", fn: testUpdateCreate},
			{name: "Replace", fn: testUpdateReplace},
			{name: "SameBody", fn: testUpdateSameBody},
			{name: "NilChange", fn: testUpdateNilChange},
			{name: "FuncError", fn: testUpdateFuncError},
			{name: "Delete", fn: testUpdateDelete},
			{name: "DeleteMissing", fn: testUpdateDeleteMissing},
			{name: "Recreate", fn: testUpdateRecreate},
			{name: "CanceledContext", fn: testUpdateCanceledContext},
			{name: "ContextDoneWhileWaiting", fn: testUpdateContextDoneWhileWaiting},
			{name: "LockWaitTimeout", fn: testUpdateLockWaitTimeout},
			{name: "HistoryInFunc", fn: testUpdateHistoryInFunc},
			{name: "Counter", fn: testUpdateCounter},
			{name: "ConcurrentDocuments", fn: testUpdateConcurrentDocuments},
			{name: "InvalidKey", fn: testUpdateInvalidKey},
			{name: "DryRun", fn: testUpdateDryRun},
			{name: "Who", fn: testVersionWho},
		}},
		{name: "Many", tests: []testCase{
			{name: "Commit", fn: testManyCommit},
			{name: "SameDocument", fn: testManySameDocument},
			{name: "Nothing", fn: testManyNothing},
			{name: "InvalidKeys", fn: testManyInvalidKeys},
			{name: "DryRun", fn: testManyDryRun},
			{name: "Idempotency", fn: testManyIdempotency},
			{name: "History", fn: testManyHistory},
			{name: "Concurrent", fn: testManyConcurrent},
		}},
		{name: "List", tests: []testCase{
			{name: "UnknownCollection", fn: testListUnknownCollection},
			{name: "Order", fn: testListOrder},
			{name: "Paging", fn: testListPaging},
			{name: "CollectionsIsolated", fn: testListCollectionsIsolated},
			{name: "DeletedNotListed", fn: testListDeletedNotListed},
		}},
		{name: "History", tests: []testCase{
			{name: "NotFound", fn: testHistoryNotFound},
			{name: "Paging", fn: testHistoryPaging},
			{name: "Bytes", fn: testHistoryBytes},
			{name: "Fields", fn: testHistoryFields},
		}},
		{name: "Since", tests: []testCase{
			{name: "Current", fn: testSinceCurrent},
			{name: "ABA", fn: testSinceABA},
			{name: "AnyOf", fn: testSinceAnyOf},
			{name: "Unknown", fn: testSinceUnknown},
			{name: "Fields", fn: testSinceFields},
			{name: "AcrossDelete", fn: testSinceAcrossDelete},
			{name: "Seq", fn: testSinceSeq},
			{name: "TooLarge", fn: testSinceTooLarge},
		}},
		{name: "Retention", tests: []testCase{
			{name: "Versions", fn: testRetentionVersions},
			{name: "Age", fn: testRetentionAge},
			{name: "SeqContinues", fn: testRetentionSeqContinues},
		}},
		{name: "Idempotency", tests: []testCase{
			{name: "RoundTrip", fn: testIdempotencyRoundTrip},
			{name: "OnlyWithCommit", fn: testIdempotencyOnlyWithCommit},
			{name: "Expiry", fn: testIdempotencyExpiry},
			{name: "Replace", fn: testIdempotencyReplace},
			{name: "Claim", fn: testIdempotencyClaim},
			{name: "ClaimConcurrent", fn: testIdempotencyClaimConcurrent},
			{name: "PerScope", fn: testIdempotencyPerScope},
			{name: "Invalid", fn: testIdempotencyInvalid},
			{name: "Closed", fn: testIdempotencyClosed},
		}},
		{name: "Changes", tests: []testCase{
			{name: "FromPresent", fn: testChangesFromPresent},
			{name: "Resume", fn: testChangesResume},
			{name: "Cursors", fn: testChangesCursors},
			{name: "Pruned", fn: testChangesPruned},
			{name: "Concurrent", fn: testChangesConcurrent},
			{name: "ListDocuments", fn: testListDocuments},
		}},
		{name: "Subscribe", tests: []testCase{
			{name: "Commits", fn: testSubscribeCommits},
			{name: "Closed", fn: testSubscribeClosed},
		}},
		{name: "Metrics", tests: []testCase{
			{name: "Count", fn: testMetricsCount},
		}},
		{name: "Dump", tests: []testCase{
			{name: "Order", fn: testDumpOrder},
			{name: "LoadRoundTrip", fn: testLoadRoundTrip},
			{name: "LoadInvalid", fn: testLoadInvalid},
			{name: "Copy", fn: testCopy},
			{name: "CopyIdempotency", fn: testCopyIdempotency},
		}},
		{name: "Close", tests: []testCase{
			{name: "Ping", fn: testPing},
			{name: "ErrClosed", fn: testCloseErrClosed},
			{name: "WaitsForUpdate", fn: testCloseWaitsForUpdate},
		}},
	}
}

// clock is a fake clock that moves only when told to.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

// newClock returns a clock at a fixed whole second.
func newClock() *clock {
	return &clock{t: time.Date(2025, time.March, 4, 5, 6, 7, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is one test's store and clock.
type env struct {
	s     store.Store
	clock *clock
}

// newEnv opens a store with the given retention and a fresh fake clock.
func newEnv(t *testing.T, open opener, r store.Retention) *env {
	t.Helper()
	return newEnvWith(t, open, Options{Retention: r})
}

// newEnvWith opens a store with opts and a fresh fake clock.
func newEnvWith(t *testing.T, open opener, opts Options) *env {
	t.Helper()
	c := newClock()
	opts.Now = c.Now
	s := open(t, opts)
	if s == nil {
		t.Fatal("open returned a nil store")
	}
	return &env{s: s, clock: c}
}
