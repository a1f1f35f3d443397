package bolt_test

import (
	"bytes"
	"context"
	"errors"
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

// TestBolt_CursorOfAnotherDatabase: a cursor names its database. One of
// another database (a new file in the old one's place) is gone, not read
// as a position of this log, which skipped the changes before it; a
// cursor made before cursors named their database still resumes.
func TestBolt_CursorOfAnotherDatabase(t *testing.T) {
	dir := t.TempDir()
	a := mustOpenBolt(t, filepath.Join(dir, "a.db"), store.Options{})
	storetest.Commit(t, a, "c", "a1", &store.Change{Body: []byte(`{}`), Kind: store.KindPut})
	_, cur := readAll(t, a, "c", mustPresent(t, a, "c"))

	b := mustOpenBolt(t, filepath.Join(dir, "b.db"), store.Options{})
	for _, id := range []string{"b1", "b2", "b3"} {
		storetest.Commit(t, b, "c", id, &store.Change{Body: []byte(`{}`), Kind: store.KindPut})
	}
	if _, err := b.Changes(context.Background(), "c", cur, 100); !errors.Is(err, store.ErrCursorGone) {
		t.Fatalf("a cursor of another database: %v, want ErrCursorGone", err)
	}
	// Its own database reads it, and a cursor without a database (the
	// format before) is read as before.
	if got, _ := readAll(t, a, "c", cur); len(got) != 0 {
		t.Fatalf("its own database: %v", got)
	}
	old := cur[:len(cur)-4]
	if got, _ := readAll(t, b, "c", old); fmt.Sprint(got) != "[b2/1 b3/1]" {
		t.Fatalf("a cursor without a database: %v", got)
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

// TestBolt_FormatUpgrade: a file of format "1" opens, becomes format "3",
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
	if f := bolt.Format(t, s); f != "3" {
		t.Fatalf("format %q after a writable open, want 3", f)
	}
	deadline, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Check(deadline); err != nil {
		t.Fatal(err)
	}
}

// TestBolt_FormatUpgradeFrom2: in a file of format "2" the change log
// entries' numbers are in chidx, not in the history values. After the
// upgrade to format "3", listings still tell which documents changed since
// a cursor, and pruning an old version deletes its entry, whichever of the
// two places holds its number.
func TestBolt_FormatUpgradeFrom2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "patchd.db")
	s, err := bolt.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		for _, id := range []string{"a", "b"} {
			storetest.Commit(t, s, "c", id, &store.Change{Body: fmt.Appendf(nil, `{"v":%d}`, i), Kind: store.KindPut})
		}
	}
	mid := mustPresent(t, s, "c")
	storetest.Commit(t, s, "c", "a", &store.Change{Body: []byte(`{"v":3}`), Kind: store.KindPut})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What format "2" wrote: history values with the byte 0xff after At and
	// no entry number, which chidx holds.
	converted := 0
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		hist := tx.Bucket([]byte("hist")).Bucket([]byte("c"))
		idx, err := tx.Bucket([]byte("chidx")).CreateBucketIfNotExists([]byte("c"))
		if err != nil {
			return err
		}
		type kv struct{ k, v []byte }
		var all []kv
		if err := hist.ForEach(func(k, v []byte) error {
			all = append(all, kv{bytes.Clone(k), bytes.Clone(v)})
			return nil
		}); err != nil {
			return err
		}
		for _, e := range all {
			if len(e.v) < 17 || e.v[8] != 0xfe {
				return fmt.Errorf("history value %q is not of format 3", e.v)
			}
			if err := idx.Put(e.k, e.v[9:17]); err != nil {
				return err
			}
			old := append(append(e.v[:8:8], 0xff), e.v[17:]...)
			if err := hist.Put(e.k, old); err != nil {
				return err
			}
			converted++
		}
		return tx.Bucket([]byte("meta")).Put([]byte("format"), []byte("2"))
	})
	if converted != 7 {
		t.Fatalf("converted %d versions, want 7", converted)
	}

	s = mustOpenBolt(t, path, store.Options{Retention: store.Retention{Versions: 2, Age: -1}})
	if f := bolt.Format(t, s); f != "3" {
		t.Fatalf("format %q after a writable open, want 3", f)
	}
	listed, _, err := s.ListDocuments(context.Background(), "c", "", 0, mid)
	if err != nil {
		t.Fatal(err)
	}
	var changed []string
	for _, d := range listed {
		changed = append(changed, fmt.Sprintf("%s:%v", d.ID, d.ChangedSince))
	}
	if fmt.Sprint(changed) != "[a:true b:false]" {
		t.Fatalf("changed since the cursor, from chidx: %v", changed)
	}
	// Each new version prunes the oldest ones: their entries were in chidx.
	storetest.Commit(t, s, "c", "a", &store.Change{Body: []byte(`{"v":4}`), Kind: store.KindPut})
	storetest.Commit(t, s, "c", "b", &store.Change{Body: []byte(`{"v":4}`), Kind: store.KindPut})
	if got := bolt.LogIDs(t, s, "c"); fmt.Sprint(got) != "[b/3 a/4 a/5 b/4]" {
		t.Fatalf("change log after pruning the versions of format 2: %v", got)
	}
	// Then versions of format 3 are pruned: their entries' numbers are in
	// their values.
	storetest.Commit(t, s, "c", "a", &store.Change{Body: []byte(`{"v":5}`), Kind: store.KindPut})
	storetest.Commit(t, s, "c", "a", &store.Change{Body: []byte(`{"v":6}`), Kind: store.KindPut})
	if got := bolt.LogIDs(t, s, "c"); fmt.Sprint(got) != "[b/3 b/4 a/6 a/7]" {
		t.Fatalf("change log after pruning the versions of format 3: %v", got)
	}
	listed, _, err = s.ListDocuments(context.Background(), "c", "", 0, mid)
	if err != nil {
		t.Fatal(err)
	}
	changed = changed[:0]
	for _, d := range listed {
		changed = append(changed, fmt.Sprintf("%s:%v", d.ID, d.ChangedSince))
	}
	if fmt.Sprint(changed) != "[a:true b:true]" {
		t.Fatalf("changed since the cursor, from the history values: %v", changed)
	}
}
