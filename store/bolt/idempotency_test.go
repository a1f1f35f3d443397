package bolt_test

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/storetest"
	bbolt "go.etcd.io/bbolt"
)

// TestBolt_IdempotencyPruneAndReopen checks what the conformance suite
// cannot see: expired records leave the file as later writes prune them
// (a bounded number per commit), and live ones survive a reopen.
func TestBolt_IdempotencyPruneAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "patchd.db")
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := mustOpenBolt(t, path, store.Options{Now: clock})
	const expired = 100
	for i := range expired {
		storetest.Commit(t, s, "c", "d", &store.Change{Body: []byte(fmt.Sprintf(`{"i":%d}`, i)), Kind: store.KindPut,
			Idempotency: &store.IdempotencyRecord{Key: fmt.Sprintf("old-%03d", i), Value: []byte("x"), Expires: now.Add(time.Minute)}})
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	// Each commit with a record prunes at most 32 expired ones: four
	// commits clear 100.
	for i := range 4 {
		storetest.Commit(t, s, "c", "d", &store.Change{Body: []byte(fmt.Sprintf(`{"new":%d}`, i)), Kind: store.KindPut,
			Idempotency: &store.IdempotencyRecord{Key: fmt.Sprintf("new-%d", i), Value: []byte("y"), Expires: now.Add(time.Hour)}})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var idem, exp int
	if err := db.View(func(tx *bbolt.Tx) error {
		idem = tx.Bucket([]byte("idem")).Stats().KeyN
		exp = tx.Bucket([]byte("idemexp")).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if idem != 4 || exp != 4 {
		t.Fatalf("after pruning: %d records, %d index entries; want 4 and 4", idem, exp)
	}

	s = mustOpenBolt(t, path, store.Options{Now: clock})
	for i := range 4 {
		rec, err := s.Idempotency(t.Context(), fmt.Sprintf("new-%d", i))
		if err != nil || string(rec.Value) != "y" {
			t.Fatalf("after reopen, new-%d: %+v, %v", i, rec, err)
		}
	}
}
