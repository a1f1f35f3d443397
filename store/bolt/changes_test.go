package bolt_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
	"github.com/patchd/patchd/store/storetest"
	bbolt "go.etcd.io/bbolt"
)

// readAll reads a collection's change log after cur.
func readAll(t *testing.T, s *bolt.Store, c string, cur store.Cursor) ([]string, store.Cursor) {
	t.Helper()
	var out []string
	for {
		log, err := s.Changes(context.Background(), c, cur, 100)
		if err != nil {
			t.Fatalf("Changes: %v", err)
		}
		for _, ch := range log.Changes {
			out = append(out, fmt.Sprintf("%s/%d", ch.ID, ch.Version.Seq))
		}
		cur = log.Next
		if !log.More {
			return out, cur
		}
	}
}

// TestBolt_ChangesSurviveRestart: a cursor read before a restart resumes
// after it.
func TestBolt_ChangesSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "patchd.db")
	s, err := bolt.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	storetest.Commit(t, s, "c", "a", &store.Change{Body: []byte(`{}`), Kind: store.KindPut})
	_, cur := readAll(t, s, "c", mustPresent(t, s, "c"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpenBolt(t, path, store.Options{})
	storetest.Commit(t, s, "c", "b", &store.Change{Body: []byte(`{}`), Kind: store.KindPut})
	if got, _ := readAll(t, s, "c", cur); fmt.Sprint(got) != "[b/1]" {
		t.Fatalf("after the restart: %v, want [b/1]", got)
	}
}

// mustPresent returns the present cursor of a collection.
func mustPresent(t *testing.T, s *bolt.Store, c string) store.Cursor {
	t.Helper()
	log, err := s.Changes(context.Background(), c, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return log.Next
}

// TestBolt_ChangesPrunedWithHistory: a change's log entry goes with its
// version, so the log holds one entry per retained version, however many
// versions were written.
func TestBolt_ChangesPrunedWithHistory(t *testing.T) {
	s := mustOpenBolt(t, filepath.Join(t.TempDir(), "patchd.db"), store.Options{Retention: store.Retention{Versions: 3, Age: -1}})
	for i := range 50 {
		storetest.Commit(t, s, "c", fmt.Sprintf("d%d", i%2), &store.Change{Body: fmt.Appendf(nil, `{"v":%d}`, i), Kind: store.KindPut})
	}
	if n := bolt.LogEntries(t, s, "c"); n != 6 {
		t.Fatalf("%d log entries, want 6 (3 retained versions of 2 documents)", n)
	}
}

// TestBolt_FormatUpgrade: a file of format "1" opens, becomes format "2",
// and logs the writes made from then on; what it held comes before every
// cursor. A build of format "1" would refuse it from then on.
func TestBolt_FormatUpgrade(t *testing.T) {
	path := filepath.Join(t.TempDir(), "patchd.db")
	s, err := bolt.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	storetest.Commit(t, s, "c", "old", &store.Change{Body: []byte(`{}`), Kind: store.KindPut})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What format "1" was: no log buckets.
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		for _, b := range []string{"chlog", "chidx"} {
			if err := tx.DeleteBucket([]byte(b)); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("meta")).Put([]byte("format"), []byte("1"))
	})
	s = mustOpenBolt(t, path, store.Options{})
	start := mustPresent(t, s, "c")
	storetest.Commit(t, s, "c", "new", &store.Change{Body: []byte(`{}`), Kind: store.KindPut})
	storetest.Commit(t, s, "c", "old", &store.Change{Body: []byte(`{"v":2}`), Kind: store.KindPut})
	if got, _ := readAll(t, s, "c", start); fmt.Sprint(got) != "[new/1 old/2]" {
		t.Fatalf("changes after the upgrade: %v", got)
	}
	if f := bolt.Format(t, s); f != "2" {
		t.Fatalf("format %q after a writable open, want 2", f)
	}
	deadline, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Check(deadline); err != nil {
		t.Fatal(err)
	}
}
