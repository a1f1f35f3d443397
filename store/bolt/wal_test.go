package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/patchd/patchd/store"
)

// walFixture is a Store whose write-ahead log takes checkpoints only when
// the test says, and which copies its files, as kill -9 leaves them, at
// every step of the log.
type walFixture struct {
	t    *testing.T
	dir  string
	path string
	s    *Store

	// acked[id] is the body of the newest acknowledged write of id ("" for
	// none or a delete); inflight is the write under way.
	acked    map[string]string
	inflight struct{ id, body string }

	snaps []walSnap
	// lastCheckpoint is the copy taken when the newest checkpoint was
	// recorded: the file as a sync left it.
	lastCheckpoint string
}

// walSnap is a copy of the files taken at one step.
type walSnap struct {
	step       string
	dir        string
	acked      map[string]string
	inflight   struct{ id, body string }
	checkpoint string // lastCheckpoint when it was taken
}

func newWALFixture(t *testing.T) *walFixture {
	t.Helper()
	return newWALFixtureWith(t, store.Options{})
}

// newWALFixtureWith is newWALFixture with the Store opened with opts.
func newWALFixtureWith(t *testing.T, opts store.Options) *walFixture {
	t.Helper()
	f := &walFixture{t: t, dir: t.TempDir(), acked: map[string]string{}}
	f.path = filepath.Join(f.dir, "patchd.db")
	s, err := Open(f.path, opts)
	if err != nil {
		t.Fatal(err)
	}
	f.s = s
	SetCheckpointEvery(s, time.Hour, 1<<40)
	SetWALHook(s, f.snapshot)
	return f
}

// copyFiles copies the database and its log (if any) from one directory to
// another.
func copyFiles(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"patchd.db", "patchd.db-wal"} {
		data, err := os.ReadFile(filepath.Join(from, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *walFixture) snapshot(step string) {
	dir := filepath.Join(f.t.TempDir(), fmt.Sprintf("%03d-%s", len(f.snaps), step))
	copyFiles(f.t, f.dir, dir)
	if step == "checkpointed" {
		f.lastCheckpoint = dir
	}
	f.snaps = append(f.snaps, walSnap{step: step, dir: dir, acked: clone(f.acked), inflight: f.inflight, checkpoint: f.lastCheckpoint})
}

func clone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// crash copies the files as kill -9 leaves them, into a directory it
// returns, then closes the Store.
func (f *walFixture) crash() string {
	f.t.Helper()
	dir := filepath.Join(f.t.TempDir(), "crash")
	copyFiles(f.t, f.dir, dir)
	if err := f.s.Close(); err != nil {
		f.t.Fatal(err)
	}
	return dir
}

// write puts body under id (deletes it when body is ""), with an
// idempotency record when keyed.
func (f *walFixture) write(id, body string, keyed bool) {
	f.t.Helper()
	f.inflight = struct{ id, body string }{id, body}
	_, err := f.s.Update(context.Background(), "c", id, func(_ context.Context, cur *store.Document, _ store.History) (*store.Change, error) {
		if body == "" {
			return &store.Change{Kind: store.KindDelete}, nil
		}
		ch := &store.Change{Body: []byte(body), Kind: store.KindPut}
		if keyed {
			ch.Idempotency = &store.IdempotencyRecord{Key: fmt.Sprintf("k-%s-%d", id, len(f.snaps)), Scope: "s", Value: []byte(body), Expires: time.Now().Add(time.Hour)}
		}
		return ch, nil
	})
	if err != nil {
		f.t.Fatalf("write %s: %v", id, err)
	}
	f.acked[id] = body
	f.inflight = struct{ id, body string }{}
}

// check opens the database in dir and requires every acknowledged write,
// and nothing but them and the write in flight.
func checkSnap(t *testing.T, dir string, acked map[string]string, inflight struct{ id, body string }) {
	t.Helper()
	s, err := Open(filepath.Join(dir, "patchd.db"), store.Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Check(ctx); err != nil {
		t.Fatalf("check: %v", err)
	}
	ids := map[string]bool{inflight.id: inflight.id != ""}
	for id := range acked {
		ids[id] = true
	}
	for id := range ids {
		var got string
		doc, err := s.Get(ctx, "c", id)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			t.Fatalf("get %s: %v", id, err)
		default:
			got = string(doc.Body)
		}
		if got != acked[id] && !(id == inflight.id && got == inflight.body) {
			t.Fatalf("%s is %q; acknowledged %q (in flight: %q)", id, got, acked[id], inflight)
		}
	}
}

// TestWALCrashAtEveryStep kills the store (copies its files as kill -9
// leaves them) at every step of the log: after a batch's record is synced
// and before its commit, after the commit, inside checkpoints (after the
// file's sync, after the checkpoint record), and inside Close (after the
// last sync, after the log is removed). Every copy opens, passes bbolt's
// check, and holds every acknowledged write and nothing unacknowledged but
// the write in flight.
func TestWALCrashAtEveryStep(t *testing.T) {
	f := newWALFixture(t)
	for i := range 40 {
		id := fmt.Sprintf("d%d", i%7)
		body := fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat("x", i*50))
		switch {
		case i%11 == 10:
			if f.acked[id] != "" {
				body = "" // a delete
			}
		case i%5 == 4:
			f.write(id, body, true)
			continue
		}
		f.write(id, body, false)
		if i%9 == 8 {
			Checkpoint(t, f.s)
		}
	}
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	steps := map[string]int{}
	for _, snap := range f.snaps {
		steps[snap.step]++
		t.Run(filepath.Base(snap.dir), func(t *testing.T) {
			checkSnap(t, snap.dir, snap.acked, snap.inflight)
		})
	}
	for _, step := range []string{"appended", "committed", "synced", "checkpointed", "close-synced", "close-removed"} {
		if steps[step] == 0 {
			t.Errorf("no copy was taken at step %q (%v)", step, steps)
		}
	}
	if _, err := os.Stat(WALPath(f.path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the log is still there after Close: %v", err)
	}
}

// TestWALPowerLoss builds what a power loss can leave: the file's pages as
// the last checkpoint synced them, but its meta pages from later unsynced
// commits (which point to pages that never reached the disk), and the
// log. The store opens it with every acknowledged write; without the log,
// the same file is damaged or lacks writes (so the case is real).
func TestWALPowerLoss(t *testing.T) {
	f := newWALFixture(t)
	for i := range 12 {
		f.write(fmt.Sprintf("d%d", i%5), fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat("y", 300)), i%3 == 0)
	}
	Checkpoint(t, f.s)
	for i := 12; i < 30; i++ {
		f.write(fmt.Sprintf("d%d", i%5), fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat("y", 300)), i%3 == 0)
	}
	var last walSnap
	for _, snap := range f.snaps {
		if snap.step == "committed" {
			last = snap
		}
	}
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	if last.checkpoint == "" {
		t.Fatal("no checkpoint before the last commit")
	}
	torn := filepath.Join(t.TempDir(), "torn")
	copyFiles(t, last.checkpoint, torn)
	synced, err := os.ReadFile(filepath.Join(last.checkpoint, "patchd.db"))
	if err != nil {
		t.Fatal(err)
	}
	later, err := os.ReadFile(filepath.Join(last.dir, "patchd.db"))
	if err != nil {
		t.Fatal(err)
	}
	ps := int(decodeMeta(synced).pageSize)
	copy(synced[:2*ps], later[:2*ps])
	if err := os.WriteFile(filepath.Join(torn, "patchd.db"), synced, 0o600); err != nil {
		t.Fatal(err)
	}
	logData, err := os.ReadFile(filepath.Join(last.dir, "patchd.db-wal"))
	if err != nil {
		t.Fatal(err)
	}
	noLog := filepath.Join(t.TempDir(), "nolog")
	copyFiles(t, torn, noLog)
	if err := os.Remove(filepath.Join(noLog, "patchd.db-wal")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(torn, "patchd.db-wal"), logData, 0o600); err != nil {
		t.Fatal(err)
	}

	checkSnap(t, torn, last.acked, last.inflight)

	// The control: the file alone.
	s, err := Open(filepath.Join(noLog, "patchd.db"), store.Options{})
	if err == nil {
		err = s.Check(context.Background())
		for id, body := range last.acked {
			if err != nil {
				break
			}
			doc, gerr := s.Get(context.Background(), "c", id)
			if gerr != nil || string(doc.Body) != body {
				got := ""
				if doc != nil {
					got = string(doc.Body)
				}
				err = fmt.Errorf("%s lacks its acknowledged body %.24q...: got %.24q..., %v", id, body, got, gerr)
			}
		}
		s.Close()
	}
	if err == nil {
		t.Fatal("the torn file opened whole without its log: the test does not build a power loss")
	}
	t.Logf("without the log: %v", err)
}

// TestWALTornRecord: a record cut short or with a changed byte (an append
// a crash interrupted, never acknowledged) ends the log: the writes before
// it are there, its own is not.
func TestWALTornRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		tear func(data []byte, lastAt int64) []byte
	}{
		{"flipped", func(data []byte, lastAt int64) []byte { data[lastAt+walRecHeader+3] ^= 0x40; return data }},
		{"cut", func(data []byte, lastAt int64) []byte { return data[:lastAt+walRecHeader+5] }},
		{"zeroed", func(data []byte, lastAt int64) []byte { clear(data[lastAt:]); return data }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newWALFixture(t)
			for i := range 6 {
				f.write(fmt.Sprintf("d%d", i), fmt.Sprintf(`{"i":%d}`, i), false)
			}
			crash := f.crash()
			logPath := filepath.Join(crash, "patchd.db-wal")
			seqs, lastAt := WALRecords(t, logPath)
			if len(seqs) != 6 {
				t.Fatalf("the log holds %d records after the checkpoint, want 6", len(seqs))
			}
			data, err := os.ReadFile(logPath)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(logPath, tc.tear(data, lastAt), 0o600); err != nil {
				t.Fatal(err)
			}
			acked := clone(f.acked)
			delete(acked, "d5")
			checkSnap(t, crash, acked, struct{ id, body string }{"d5", ""})
		})
	}
}

// TestWALDamageBeforeLaterRecords: a record damaged after it was written
// (a flipped byte, a wrong length, zeros), with whole records after it, is
// not taken for a torn append: Open refuses the log, which holds
// acknowledged writes after the damage, instead of dropping them, and
// changes neither file.
func TestWALDamageBeforeLaterRecords(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(rec []byte)
	}{
		{"flipped", func(rec []byte) { rec[walRecHeader+3] ^= 0x40 }},
		{"length", func(rec []byte) { binary.LittleEndian.PutUint32(rec, binary.LittleEndian.Uint32(rec)+7) }},
		{"zeroed", func(rec []byte) { clear(rec) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newWALFixture(t)
			for i := range 6 {
				f.write(fmt.Sprintf("d%d", i), fmt.Sprintf(`{"i":%d}`, i), false)
			}
			crash, data, c := crashLog(t, f, 6)
			at := int64(walDataStart) // the third record's offset
			for _, r := range c.recs[:2] {
				at += walRecHeader + int64(len(r.payload))
			}
			tc.damage(data[at : at+walRecHeader+int64(len(c.recs[2].payload))])
			openRefusedForLog(t, crash, data, "acknowledged writes after the damage")
		})
	}
}

// TestWALDamagedNewestCheckpoint: a flipped byte in the newest checkpoint
// slot, with records of its generation after it, does not make the start
// fall back to the older checkpoint (and drop the writes since): it is
// refused, and neither file changes.
func TestWALDamagedNewestCheckpoint(t *testing.T) {
	f := newWALFixture(t)
	f.write("a0", `{"a":0}`, false)
	Checkpoint(t, f.s)
	f.write("a1", `{"a":1}`, false)
	Checkpoint(t, f.s)
	for i := range 6 {
		f.write(fmt.Sprintf("b%d", i), `{"b":1}`, false)
	}
	crash, data, c := crashLog(t, f, 6)
	data[int64(c.cp.k%2)*walSlotSize+40] ^= 1
	openRefusedForLog(t, crash, data, "checkpoint before records")
}

// crashLog copies f's files as a crash leaves them and returns the copy's
// directory and its log, which must hold records records after its
// checkpoint.
func crashLog(t *testing.T, f *walFixture, records int) (dir string, log []byte, c walContents) {
	t.Helper()
	dir = f.crash()
	log, err := os.ReadFile(walPath(filepath.Join(dir, "patchd.db")))
	if err != nil {
		t.Fatal(err)
	}
	if c, err = parseWAL(log); err != nil || len(c.recs) != records {
		t.Fatalf("the log holds %d records after its checkpoint (%v), want %d", len(c.recs), err, records)
	}
	return dir, log, c
}

// openRefusedForLog writes log as the log of the database in dir, opens
// the database, and requires the open to be refused for its log with an
// error that says want, changing neither file.
func openRefusedForLog(t *testing.T, dir string, log []byte, want string) {
	t.Helper()
	dbPath := filepath.Join(dir, "patchd.db")
	if err := os.WriteFile(walPath(dbPath), log, 0o600); err != nil {
		t.Fatal(err)
	}
	dbBefore, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(dbPath, store.Options{})
	if err == nil {
		s.Close()
		t.Fatalf("opened a database whose log is damaged (%s)", want)
	}
	if !errors.Is(err, ErrWALRefused) || !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), want) {
		t.Fatalf("open: %v, want the damage named (%s)", err, want)
	}
	for path, before := range map[string][]byte{dbPath: dbBefore, walPath(dbPath): log} {
		if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, before) {
			t.Fatalf("%s changed by the refused open (%v)", path, err)
		}
	}
}

// TestWALAbortedBatch: a batch whose record reached the log but whose
// commit failed is answered with the error and not replayed after a crash.
func TestWALAbortedBatch(t *testing.T) {
	f := newWALFixture(t)
	failedCommit(t, f, func() {})
	crash := f.crash()
	if seqs, _ := WALRecords(t, filepath.Join(crash, "patchd.db-wal")); len(seqs) != 4 {
		t.Fatalf("records %v; want a, b, b's abort, c", seqs)
	}
	acked := clone(f.acked)
	acked["b"] = ""
	checkSnap(t, crash, acked, struct{ id, body string }{})
}

// failedCommit writes a, then b, whose commit fails (after also runs,
// when it does), answered with the error, then c.
func failedCommit(t *testing.T, f *walFixture, also func()) {
	t.Helper()
	f.write("a", `{"a":1}`, false)
	boom := errors.New("injected commit failure")
	SetCommitFault(f.s, func() error {
		also()
		return boom
	})
	_, err := f.s.Update(context.Background(), "c", "b", func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return &store.Change{Body: []byte(`{"b":1}`), Kind: store.KindPut}, nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("the write whose commit failed: %v", err)
	}
	SetCommitFault(f.s, nil)
	f.write("c", `{"c":1}`, false)
}

// TestWALReadOnlyNeedsReplay: a read-only open of a database whose log
// holds writes to replay is refused (the file alone may lack them); once a
// writable open has replayed them, it works.
func TestWALReadOnlyNeedsReplay(t *testing.T) {
	f := newWALFixture(t)
	f.write("a", `{"a":1}`, false)
	crash := f.crash()
	path := filepath.Join(crash, "patchd.db")
	if s, err := Open(path, store.Options{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "write-ahead log") {
		if err == nil {
			s.Close()
		}
		t.Fatalf("read-only open with a log to replay: %v", err)
	}
	checkSnap(t, crash, f.acked, struct{ id, body string }{})
	s, err := Open(path, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open after a writable one: %v", err)
	}
	defer s.Close()
	if doc, err := s.Get(context.Background(), "c", "a"); err != nil || string(doc.Body) != `{"a":1}` {
		t.Fatalf("get: %v, %v", doc, err)
	}
}

// TestWALOfAnotherFile: a log next to a file older than its checkpoint (a
// backup restored over the database after a crash) is refused, not
// replayed over it, and the file is left as it was.
func TestWALOfAnotherFile(t *testing.T) {
	f := newWALFixture(t)
	f.write("a", `{"a":1}`, false)
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(f.path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.s = s
	for i := range 5 {
		f.write(fmt.Sprintf("b%d", i), `{"b":1}`, false)
		Checkpoint(t, s)
	}
	crash := filepath.Join(t.TempDir(), "crash")
	copyFiles(t, f.dir, crash)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(crash, "patchd.db")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, store.Options{})
	if err == nil {
		s.Close()
		t.Fatal("a log was replayed over a file older than its checkpoint")
	}
	if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), "does not belong to this file") {
		t.Fatalf("open: %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(old) {
		t.Fatal("the refused open changed the file")
	}
}

// TestWALOfAnotherDatabase: the log of another database is refused, even
// next to a file made by the same steps up to the log's checkpoint (the
// same transactions, pages and meta pages), whose own later writes the
// log's checkpoint would take back.
func TestWALOfAnotherDatabase(t *testing.T) {
	opts := store.Options{Now: func() time.Time { return time.Unix(1_800_000_000, 0) }}
	build := func() *walFixture {
		f := newWALFixtureWith(t, opts)
		f.write("a", `{"a":1}`, false)
		Checkpoint(t, f.s)
		return f
	}
	a, b := build(), build()
	a.write("x", `{"from":"a"}`, false)
	_, log, _ := crashLog(t, a, 1)
	if err := b.s.Close(); err != nil {
		t.Fatal(err)
	}
	openRefusedForLog(t, b.dir, log, "another database")
}

// TestWALCheckpointWithoutID: a log written before checkpoints named their
// database (no id in the slot) is still replayed.
func TestWALCheckpointWithoutID(t *testing.T) {
	f := newWALFixture(t)
	f.write("a", `{"a":1}`, false)
	f.write("b", `{"b":1}`, false)
	dir, log, c := crashLog(t, f, 2)
	old := c.cp
	old.id = nil
	slot := int64(old.k%2) * walSlotSize // #nosec G115 -- 0 or 1
	copy(log[slot:slot+walSlotSize], make([]byte, walSlotSize))
	copy(log[slot:], old.encode())
	if got, err := parseWAL(log); err != nil || got.cp.id != nil || len(got.recs) != 2 {
		t.Fatalf("the slot without an id reads as %+v (%v)", got.cp, err)
	}
	path := filepath.Join(dir, "patchd.db")
	if err := os.WriteFile(walPath(path), log, 0o600); err != nil {
		t.Fatal(err)
	}
	checkSnap(t, dir, f.acked, f.inflight)
}

// TestWALFailedCheckpointKeepsWrites: when the checkpoint after a write
// outside the log (here LoadIdempotency) fails, the write stays: the log is
// dropped (the file is synced by the write's own commit) rather than left
// to bring the file back to the checkpoint before it at the next Open.
func TestWALFailedCheckpointKeepsWrites(t *testing.T) {
	f := newWALFixture(t)
	f.write("a", `{"a":1}`, false)
	synced := 0
	SetWALHook(f.s, func(step string) {
		if step == "synced" {
			if synced++; synced == 2 { // the checkpoint after the write
				_ = f.s.wal.f.Close() // its record cannot be written (EIO in real life)
			}
		}
	})
	ctx := context.Background()
	rec := &store.IdempotencyRecord{Key: "k1", Scope: "s", Value: []byte("v"), Expires: time.Now().Add(time.Hour), Seq: 1}
	if n, err := f.s.LoadIdempotency(ctx, []*store.IdempotencyRecord{rec}); n != 1 || err != nil {
		t.Fatalf("LoadIdempotency: %d, %v", n, err)
	}
	if _, err := os.Stat(WALPath(f.path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the failed log is still there: %v", err)
	}
	f.write("b", `{"b":1}`, false) // writes go on, synced by bbolt
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(f.path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, err := s.Idempotency(ctx, "k1"); err != nil || r == nil {
		t.Fatalf("the loaded record after reopening: %v, %v", r, err)
	}
	if doc, err := s.Get(ctx, "c", "b"); err != nil || string(doc.Body) != `{"b":1}` {
		t.Fatalf("b after reopening: %v, %v", doc, err)
	}
}

// TestWALAbortFails: a batch whose commit failed, and whose abort record
// could not be written, is answered with the error and never replayed: the
// log is dropped once the file is synced without it.
func TestWALAbortFails(t *testing.T) {
	f := newWALFixture(t)
	failedCommit(t, f, func() {
		_ = f.s.wal.f.Close() // the abort record cannot be written either
	})
	crash := f.crash()
	acked := clone(f.acked)
	acked["b"] = ""
	checkSnap(t, crash, acked, struct{ id, body string }{})
}

// TestWALAbortNeedsNoGrow: the abort record of a batch fits in the room the
// batch reserved, so marking it failed never needs the log to grow (on the
// full device that made the commit fail). Here the log's file is a full
// device from the commit on: the abort fails, the log is dropped, and the
// retry of the write commits; a kill -9 copy opens with the retry.
func TestWALAbortNeedsNoGrow(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip(err)
	}
	defer full.Close()
	f := newWALFixture(t)
	f.write("a", `{"a":1}`, false)
	SetCommitFault(f.s, func() error {
		// The batch's record ended where its reserved room ends.
		f.s.wal.size = f.s.wal.off + walRecHeader + 8
		f.s.wal.f = full
		return errors.New("injected ENOSPC in the commit")
	})
	if _, err := f.s.Update(context.Background(), "c", "a", func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return &store.Change{Body: []byte(`{"a":"failed"}`), Kind: store.KindPut}, nil
	}); err == nil {
		t.Fatal("the write whose commit failed succeeded")
	}
	SetCommitFault(f.s, nil)
	f.write("a", `{"a":"retried"}`, false)
	crash := f.crash()
	checkSnap(t, crash, f.acked, struct{ id, body string }{})
}

// TestWALUndoOnlyWithTheLock: an Open that restored a checkpoint and then
// failed puts the meta pages back only while no other process holds the
// file: here another Store opened it meanwhile (it lost the race for
// bbolt's lock), and its file is left alone.
func TestWALUndoOnlyWithTheLock(t *testing.T) {
	f := newWALFixture(t)
	for i := range 20 {
		f.write(fmt.Sprintf("d%d", i), fmt.Sprintf(`{"i":%d,"p":%q}`, i, strings.Repeat("x", 2000)), false)
	}
	crash := f.crash()
	path := filepath.Join(crash, "patchd.db")
	opts := store.Options{}.WithDefaults()
	if _, _, _, err := precheck(path, opts); err != nil { // one Open's check
		t.Fatal(err)
	}
	_, _, undo, err := precheck(path, opts) // another's, in the gap before bbolt's lock
	if err != nil || undo == nil {
		t.Fatalf("precheck: %v (undo %v)", err, undo != nil)
	}
	s, err := Open(path, store.Options{}) // the first wins the lock
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 40 {
		put(t, s, "c", fmt.Sprintf("e%d", i), fmt.Sprintf(`{"i":%d,"p":%q}`, i, strings.Repeat("y", 2000)))
	}
	Checkpoint(t, s)
	if err := undo(); err == nil { // the loser's Open fails: its undo runs
		t.Fatal("the undo of the Open that lost the lock wrote over the file of the one that won")
	}
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("the winner's file: %v", err)
	}
	put(t, s, "c", "g", `{"g":1}`)
}

// TestWALNotLeftByFailedOpen: an Open that fails after starting a log (a
// bbolt file of another program) removes it, so that it is never restored
// over that file later.
func TestWALNotLeftByFailedOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("other"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(path, store.Options{}); err == nil || !errors.Is(err, store.ErrUnknownFormat) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("open of another program's file: %v", err)
	}
	if _, err := os.Stat(WALPath(path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a log was left next to it: %v", err)
	}
}

// TestWALUndoAfterFailedCheck: when the checkpoint's own pages turn out
// damaged, the Open that restored its meta page fails and puts the file's
// newer meta pages back as they were (precheck's undo takes the file's lock
// after precheck let go of it).
func TestWALUndoAfterFailedCheck(t *testing.T) {
	f := newWALFixture(t)
	for i := range 10 {
		f.write(fmt.Sprintf("d%d", i), fmt.Sprintf(`{"i":%d}`, i), false)
	}
	crash := f.crash()
	path := filepath.Join(crash, "patchd.db")
	data, err := os.ReadFile(walPath(path))
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseWAL(data)
	if err != nil {
		t.Fatal(err)
	}
	cm := decodeMeta(c.cp.meta)
	before, _ := os.ReadFile(path)
	ps := int(cm.pageSize)
	m0 := decodeMeta(before[:pageHeaderLen+metaLen])
	m1 := decodeMeta(before[ps : ps+pageHeaderLen+metaLen])
	t.Logf("checkpoint txid %d root %d; metas txid %d root %d, txid %d root %d", cm.txid, cm.root, m0.txid, m0.root, m1.txid, m1.root)
	if m0.root == cm.root || m1.root == cm.root {
		t.Skip("checkpoint root shared")
	}
	// damage the checkpoint's root page header (flags)
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte{0x77, 0x77}, int64(cm.root)*int64(ps)+8); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	before, _ = os.ReadFile(path)
	_, err = Open(path, store.Options{})
	t.Logf("open: %v", err)
	if err == nil {
		t.Fatal("open succeeded")
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before[:2*ps], after[:2*ps]) {
		t.Fatalf("precheck's undo did not put the meta pages back: a = txid %d, b = txid %d",
			decodeMeta(after[:pageHeaderLen+metaLen]).txid, decodeMeta(after[ps:ps+pageHeaderLen+metaLen]).txid)
	}
}

// TestWALUndoAfterOtherOpenClosed: the undo of an Open that lost the race
// runs after the winner opened the file, wrote and closed it: the lock is
// free, but the file was written since it was restored, so it is left
// alone.
func TestWALUndoAfterOtherOpenClosed(t *testing.T) {
	f := newWALFixture(t)
	for i := range 20 {
		f.write(fmt.Sprintf("d%d", i), fmt.Sprintf(`{"i":%d,"p":%q}`, i, bytes.Repeat([]byte("x"), 2000)), false)
	}
	crash := f.crash()
	path := filepath.Join(crash, "patchd.db")
	opts := store.Options{}.WithDefaults()
	_, _, undo, err := precheck(path, opts) // the loser's check
	if err != nil || undo == nil {
		t.Fatalf("precheck: %v", err)
	}
	s, err := Open(path, store.Options{}) // the winner
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		put(t, s, "c", fmt.Sprintf("e%d", i), fmt.Sprintf(`{"i":%d,"p":%q}`, i, bytes.Repeat([]byte("y"), 2000)))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := undo(); err == nil { // the loser's Open failed (lock timeout); its undo runs now
		t.Error("undo wrote the old meta pages over the winner's closed file")
	}
	s, err = Open(path, store.Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("check: %v", err)
	}
	if _, err := s.Get(context.Background(), "c", "e39"); err != nil {
		t.Fatalf("the winner's write e39: %v", err)
	}
}

// TestWALFileSyncFailureKeepsLog: once a sync of the database file has
// failed, its unsynced pages may never reach the disk whatever a later sync
// says (Linux reports a writeback error once), so the log that holds those
// writes stays, writes are refused, and the next start replays it.
func TestWALFileSyncFailureKeepsLog(t *testing.T) {
	f := newWALFixture(t)
	for i := range 5 {
		f.write(fmt.Sprintf("d%d", i), fmt.Sprintf(`{"i":%d}`, i), false)
	}
	failed := false
	SetSyncFault(f.s, func() error {
		if failed {
			return nil // a second sync succeeds, as Linux says after a writeback error
		}
		failed = true
		return errors.New("injected EIO")
	})
	f.s.wmu.Lock()
	if err := f.s.checkpointLocked(); err == nil {
		t.Fatal("the checkpoint whose sync failed succeeded")
	}
	f.s.dropWAL(false)
	f.s.wmu.Unlock()
	if _, err := os.Stat(WALPath(f.path)); err != nil {
		t.Fatalf("the log was dropped after the file failed to sync: %v", err)
	}
	_, err := f.s.Update(context.Background(), "c", "x", func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return &store.Change{Body: []byte(`{"x":1}`), Kind: store.KindPut}, nil
	})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("a write after the failed sync: %v; want store.ErrUnavailable", err)
	}
	crash := f.crash()
	if _, err := os.Stat(WALPath(f.path)); err != nil {
		t.Fatalf("Close removed the log after the file failed to sync: %v", err)
	}
	checkSnap(t, crash, f.acked, struct{ id, body string }{})
	checkSnap(t, f.dir, f.acked, struct{ id, body string }{})
}

// TestWALGrowOnFullDevice: a log that cannot double on a device that
// filled up grows by what its record needs, and a grow that fails leaves
// the file as it was: the zeros it wrote would hold the space freed for
// the writes (and every later grow would fail again).
func TestWALGrowOnFullDevice(t *testing.T) {
	w, err := createWAL(filepath.Join(t.TempDir(), "p.db-wal"), walCheckpoint{gen: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.f.Close() })
	room := int64(walMinSize + 256<<10) // what the device holds of the log
	w.fillFault = func(end int64) error {
		if end > room {
			return syscall.ENOSPC
		}
		return nil
	}
	sizeOnDisk := func() int64 {
		fi, err := w.f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	if err := w.grow(w.size + 1000); err != nil {
		t.Fatalf("a grow the device has room for, though not for twice the log: %v", err)
	}
	if w.size > room || sizeOnDisk() != w.size {
		t.Fatalf("after the grow: %d bytes on disk, %d said, room for %d", sizeOnDisk(), w.size, room)
	}
	before := w.size
	if err := w.grow(room + 100<<10); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a grow past the device's room: %v, want ENOSPC", err)
	}
	if got := sizeOnDisk(); got != before || w.size != before {
		t.Fatalf("a failed grow left %d bytes on disk (%d said), want the %d before it", got, w.size, before)
	}
}

// TestWALShrinksWhenTheDeviceIsFull: a write that finds the device full
// has the next checkpoint give the log's zeros back (the log had grown to
// hold the writes since the last checkpoint, and keeps its size): the
// space is the database file's to take, and writes go on once there is
// room.
func TestWALShrinksWhenTheDeviceIsFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "patchd.db")
	s, err := Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	SetCheckpointEvery(s, time.Hour, 1<<40)
	put := func(id string) error {
		body := fmt.Appendf(nil, `{"s":%q}`, strings.Repeat("x", 512<<10))
		_, err := s.Update(context.Background(), "c", id, func(context.Context, *store.Document, store.History) (*store.Change, error) {
			return &store.Change{Body: body, Kind: store.KindPut}, nil
		})
		return err
	}
	for i := range 6 {
		if err := put(fmt.Sprint("d", i)); err != nil {
			t.Fatal(err)
		}
	}
	logSize := func() int64 {
		fi, err := os.Stat(walPath(path))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	if n := logSize(); n <= walMinSize {
		t.Fatalf("the log holds %d bytes after 3 MiB of writes: the test needs it grown", n)
	}
	SetCheckpointEvery(s, time.Second, 1<<40) // as by default
	SetCommitFault(s, func() error { return syscall.ENOSPC })
	if err := put("full"); !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("the write on a full device: %v, want ErrNoSpace", err)
	}
	SetCommitFault(s, nil)
	for deadline := time.Now().Add(10 * time.Second); logSize() > walMinSize; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the log still holds %d bytes 10 s after a write found the device full", logSize())
		}
	}
	if err := put("after"); err != nil {
		t.Fatalf("a write once the log gave its space back: %v", err)
	}
}
