package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	bbolt "go.etcd.io/bbolt"

	"github.com/patchd/patchd/store"
)

// How the Store writes through its log (wal.go).
//
// Every write transaction runs under Store.wmu. The committer's batches go
// through logUpdate: transaction, log record and its sync, then a commit
// without sync. Every other write (layout, sweeps of expired records,
// Load, the freelist at Close) goes through update, a plain synced bbolt
// commit with the pin released, between two checkpoints: bbolt may then
// reuse any free page and remap the file, and the commit is durable on its
// own.

// mmapReserve is the address space bbolt maps for a database of size bytes
// opened for writing: 16 GiB, or twice the file. A write transaction that
// needs a larger map waits until every read transaction has ended, the pin
// included, so a batch that could come near it is committed by update
// instead (synced, unpinned).
func mmapReserve(size int64) int64 {
	if strconv.IntSize == 32 {
		return 1 << 29
	}
	return max(1<<34, 2*size)
}

// mapWithin returns the map to ask for when the process may hold at most
// limit bytes of address space (0: no limit): want, or half the limit in
// whole GiB if want is more (bbolt rounds a map above 1 GiB up to whole
// GiB), or 0 (bbolt's default: the file's size, rounded up) if that is
// none.
func mapWithin(want int, limit uint64) int {
	half := limit / 2
	if limit == 0 || uint64(want) <= half { // #nosec G115 -- want is not negative
		return want
	}
	return int(half &^ (1<<30 - 1)) // #nosec G115 -- at most want
}

// mmapMargin is kept free below the map on top of a batch's estimate.
const mmapMargin = 1 << 30

// initialMmap is bbolt's InitialMmapSize for the database at path opened
// so.
func initialMmap(path string, readOnly bool) int {
	if readOnly {
		return 0
	}
	fi, err := os.Stat(path)
	if err != nil {
		return int(mmapReserve(0))
	}
	return int(mmapReserve(fi.Size()))
}

// errNoRoom sends a batch that could outgrow the map to update.
var errNoRoom = errors.New("the batch could grow the file past its map")

// logUpdate runs fn, which writes reqs, in one write transaction committed
// through the log; growth bounds the bytes the transaction may add to the
// file.
func (b *Store) logUpdate(reqs []*commitReq, growth int64, fn func(*bbolt.Tx) error) error {
	if err := b.writesStopped(); err != nil {
		return err
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if b.wal == nil {
		return b.updateLocked(fn)
	}
	if b.wal.err != nil {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, b.wal.err)
	}
	err := guard("write", func() error {
		b.etags.begin(true) // put notes every document of the batch
		defer b.etags.begin(false)
		tx, err := b.db.Begin(true)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }() // ends it on every way out, a panic too; nothing after Commit
		if tx.Size()+growth+mmapMargin >= b.mmapLimit {
			return errNoRoom
		}
		if err := fn(tx); err != nil {
			return err
		}
		seq, err := b.wal.append(recBatch, encodeBatch(reqs))
		if err != nil {
			return err
		}
		b.hook("appended")
		if err := b.commitKeyed(tx); err != nil {
			// Marked so, the batch is not replayed; if the mark fails, the
			// log is dropped (w.err is set).
			_, _ = b.wal.append(recAbort, binary.LittleEndian.AppendUint64(nil, seq))
			return err
		}
		b.wal.applied = seq
		startWriteback(b.file)
		b.hook("committed")
		return nil
	})
	if errors.Is(err, errNoRoom) {
		return b.updateLocked(fn)
	}
	b.noteDamage(err)
	if b.wal.err != nil {
		b.dropWAL(false)
		return err
	}
	if errors.Is(noSpace(err), store.ErrNoSpace) {
		b.wal.shrink = true // the log's zeros may be what the file needs
	}
	if (err == nil || b.wal.shrink) && b.wal.due() {
		select {
		case b.walKick <- struct{}{}:
		default: // one is under way
		}
	}
	return err
}

// checkpointer takes the checkpoints logUpdate asks for. It syncs the file
// first without the lock, while batches go on, so that the sync under the
// lock, in checkpointLocked, finds few pages left to write.
func (b *Store) checkpointer(kick <-chan struct{}, quit <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-quit:
			return
		case <-kick:
		}
		// A failed sync is reported once (Linux clears the error), so it is
		// kept: a later sync's success does not mean these pages are on disk.
		serr := b.syncFile()
		b.wmu.Lock()
		if w := b.wal; w != nil {
			switch {
			case serr != nil:
				w.fileSyncErr = serr
				_ = w.fail(fmt.Errorf("sync %s: %w", b.path, serr))
				b.dropWAL(false)
			case w.due():
				if err := b.checkpointLocked(); err != nil {
					b.dropWAL(false)
				}
			}
		}
		b.wmu.Unlock()
	}
}

// commitKeyed commits tx without syncing the file, and writes the ETags
// its batch noted through to the cache (a panic included, the cache is
// left consistent: emptied).
func (b *Store) commitKeyed(tx *bbolt.Tx) (err error) {
	b.etags.committing()
	ok := false
	defer func() { b.etags.committed(ok) }()
	err = b.commitNoSync(tx)
	ok = err == nil
	return err
}

// commitNoSync commits tx without syncing the file.
func (b *Store) commitNoSync(tx *bbolt.Tx) error {
	if b.commitFault != nil {
		if err := b.commitFault(); err != nil {
			return err // the caller rolls tx back
		}
	}
	b.db.NoSync = true
	defer func() { b.db.NoSync = false }()
	return tx.Commit() // a failed Commit rolls back itself
}

// update runs fn in a synced write transaction under guard. Once a write
// transaction has failed on damaged data, every later one is refused.
func (b *Store) update(fn func(*bbolt.Tx) error) error {
	if err := b.writesStopped(); err != nil {
		return err
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	return b.updateLocked(fn)
}

// updateLocked is update with b.wmu held: with a log, it takes a
// checkpoint, releases the pin, commits with sync, and takes a checkpoint
// on the new state.
func (b *Store) updateLocked(fn func(*bbolt.Tx) error) error {
	if b.wal != nil && b.wal.err == nil {
		if err := b.checkpointLocked(); err != nil {
			b.dropWAL(false)
		}
	}
	if w := b.wal; w != nil {
		if w.err != nil {
			return fmt.Errorf("%w: %w", store.ErrUnavailable, w.err)
		}
		b.unpin()
	}
	err := guard("write", func() error {
		b.etags.committing()
		defer b.etags.committed(false) // which documents fn writes is not known: the cache is emptied
		return b.db.Update(fn)
	})
	b.noteDamage(err)
	if b.wal != nil {
		if cerr := b.checkpointLocked(); cerr != nil {
			// bbolt synced the file in its commit (or, if the commit
			// failed, nothing changed since the last checkpoint).
			b.dropWAL(true)
		}
	}
	return err
}

// dropWAL ends a log that failed (w.err is set). Once the file is synced,
// by bbolt's own commit when synced is set or here, it holds every batch
// that committed, so the log, which may also hold a batch answered with an
// error, is removed, and the Store goes on without one: every write a
// synced commit, until the next start makes a new log. If a sync of the
// file has failed, now or before, the log stays and writes stay refused;
// the next start replays it (a batch answered with an error whose abort
// record failed too is then replayed: two failures). b.wmu is held.
func (b *Store) dropWAL(synced bool) {
	w := b.wal
	cause := w.err
	if !synced {
		if w.fileSyncErr != nil {
			b.log.Error("the database file failed to sync: writes are refused until a restart, which replays the write-ahead log",
				"path", w.path, "err", cause)
			return
		}
		if err := b.syncFile(); err != nil {
			w.fileSyncErr = err
			b.log.Error("the write-ahead log failed and the database file could not be synced: writes are refused until a restart, which replays the log",
				"path", w.path, "err", cause, "sync_err", err)
			return
		}
	}
	if err := w.remove(); err != nil {
		b.log.Error("the write-ahead log failed and could not be removed: writes are refused until a restart", "path", w.path, "err", cause, "remove_err", err)
		return
	}
	b.unpin()
	b.wal = nil
	b.stopCheckpointer()
	b.log.Warn("the write-ahead log failed and was removed: until the next start, every write syncs the database file itself", "path", w.path, "err", cause)
}

// syncFile syncs the database file (fdatasync).
func (b *Store) syncFile() error {
	if f := b.syncFault; f != nil {
		if err := f(); err != nil {
			return err
		}
	}
	return b.db.Sync()
}

// stopCheckpointer tells the checkpointer goroutine, if any, to end.
func (b *Store) stopCheckpointer() {
	if b.walQuit != nil {
		b.walStop.Do(func() { close(b.walQuit) })
	}
}

// writesStopped returns the error that refuses writes once one failed on
// damaged data; nil before.
func (b *Store) writesStopped() error {
	if err := b.damaged.Load(); err != nil {
		return fmt.Errorf("%w: writes stopped after an earlier failure: %w", store.ErrCorrupt, *err)
	}
	return nil
}

// noteDamage stops writes after one failed on damaged data.
func (b *Store) noteDamage(err error) {
	if errors.Is(err, store.ErrCorrupt) && b.damaged.CompareAndSwap(nil, &err) {
		b.log.Error("the database file is damaged: writes are refused from now on; run patchd check on a copy, and restore from a backup",
			"path", b.path, "err", err)
	}
}

// checkpointLocked syncs the file, records its newest transaction as the
// log's checkpoint and pins it. b.wmu is held.
func (b *Store) checkpointLocked() error {
	w := b.wal
	if w.err != nil {
		return w.err
	}
	if err := b.syncFile(); err != nil {
		w.fileSyncErr = err
		return w.fail(fmt.Errorf("sync %s: %w", b.path, err))
	}
	b.hook("synced")
	var tx *bbolt.Tx
	err := guard("read", func() (err error) {
		tx, err = b.db.Begin(false)
		return err
	})
	if err != nil {
		return w.fail(err)
	}
	txid := uint64(tx.ID()) // #nosec G115 -- bbolt's ids are positive
	if b.pin != nil && txid == w.cp.txid && w.since == 0 {
		_ = tx.Rollback() // nothing changed since the last one
		w.shrinkIfAsked()
		return nil
	}
	meta, err := readMetaPage(b.file, b.db.Info().PageSize, txid)
	if err == nil {
		err = w.checkpoint(txid, meta)
	}
	if err != nil {
		_ = tx.Rollback()
		return w.fail(err)
	}
	b.hook("checkpointed")
	b.unpin()
	b.pin = tx
	return nil
}

// hook runs the test hook, if any, at a step of the log.
func (b *Store) hook(step string) {
	if b.walHook != nil {
		b.walHook(step)
	}
}

// unpin ends the pin's read transaction.
func (b *Store) unpin() {
	if b.pin != nil {
		_ = b.pin.Rollback()
		b.pin = nil
	}
}

// lastTxID returns the id of the newest committed transaction.
func (b *Store) lastTxID() (uint64, error) {
	var id int
	err := b.view(func(tx *bbolt.Tx) error {
		id = tx.ID()
		return nil
	})
	return uint64(id), err // #nosec G115 -- bbolt's ids are positive
}

// readWAL reads the log of the database at path; nil when there is none.
func readWAL(path string) (*walContents, error) {
	data, err := os.ReadFile(walPath(path)) // #nosec G304 -- next to the database the operator named
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	c, err := parseWAL(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: %s: %w; it holds writes the database file may lack, so patchd does not open the file without it", store.ErrCorrupt, ErrWALRefused, walPath(path), err)
	}
	return &c, nil
}

// prepareWAL runs before Open checks the file f (open for writing and
// locked): if the database has a log, the file's meta pages are brought
// back to its checkpoint; undo (nil when nothing changed) puts them back
// as they were, for an Open that fails later.
func prepareWAL(path string, f *os.File) (undo func() error, err error) {
	c, err := readWAL(path)
	if c == nil || err != nil {
		return nil, err
	}
	undo, err = restoreMeta(f, c.cp)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", walPath(path), err)
	}
	return undo, nil
}

// pendingWAL reports whether the database at path has a log with writes
// after its checkpoint, which only a writable Open replays.
func pendingWAL(path string) error {
	c, err := readWAL(path)
	if c == nil && err == nil {
		return nil
	}
	if err == nil {
		var batches []walRecord
		if batches, err = c.batches(); err == nil && len(batches) == 0 {
			return nil
		}
	}
	return fmt.Errorf("%w: the database was not closed and its write-ahead log %s holds writes to replay; open it for writing once (start patchd on it) first", store.ErrUnavailable, walPath(path))
}

// startWAL replays the log of a database that was not closed, if any, and
// starts a new one at the file's state, pinned. It runs in Open, after
// bbolt opened the file and before any write.
func (b *Store) startWAL(mapped int) error {
	b.mmapLimit = int64(mapped) // bbolt maps at least this much
	txid, err := b.lastTxID()
	if err != nil {
		return err
	}
	cp := walCheckpoint{k: 1, gen: 1}
	c, err := readWAL(b.path)
	if err != nil {
		return err
	}
	if c != nil {
		if c.cp.txid != txid {
			return fmt.Errorf("%w: %w: the write-ahead log %s starts at transaction %d, the file is at %d", store.ErrCorrupt, ErrWALRefused, walPath(b.path), c.cp.txid, txid)
		}
		if err := b.sameDatabase(c.cp); err != nil {
			return err
		}
		batches, err := c.batches()
		if err != nil {
			return fmt.Errorf("%w: %w: %s: %w", store.ErrCorrupt, ErrWALRefused, walPath(b.path), err)
		}
		cp.k, cp.gen, cp.seq = c.cp.k+1, c.cp.gen+1, c.cp.seq
		if len(c.recs) > 0 {
			cp.seq = c.recs[len(c.recs)-1].seq
		}
		if len(batches) > 0 {
			if err := b.replay(batches); err != nil {
				return fmt.Errorf("store: replay the write-ahead log %s: %w", walPath(b.path), err)
			}
			b.walReplayed = true
			b.log.Info("replayed the write-ahead log of a database that was not closed", "path", b.path, "batches", len(batches))
		}
	}
	// The layout, the database's id included, is written before the new
	// log's first checkpoint, which names the id.
	if err := b.update(func(tx *bbolt.Tx) error {
		if err := initLayout(tx, true); err != nil {
			return err
		}
		cp.id = bytes.Clone(tx.Bucket(bucketMeta).Get(keyDBID))
		return nil
	}); err != nil {
		return err
	}
	if txid, err = b.lastTxID(); err != nil {
		return err
	}
	cp.txid = txid
	meta, err := readMetaPage(b.file, b.db.Info().PageSize, txid)
	if err != nil {
		return err
	}
	cp.meta = meta
	w, err := createWAL(walPath(b.path), cp)
	if errors.Is(noSpace(err), store.ErrNoSpace) {
		// A full device must not keep the database from opening: without
		// a log every write is a synced commit of the file, as bbolt
		// makes it. An older log goes first, for its checkpoint's pages
		// are no longer kept; the file holds all it had (replayed and
		// synced above).
		if rerr := os.Remove(walPath(b.path)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return fmt.Errorf("store: create the write-ahead log: %w; remove the old one: %w", err, rerr)
		}
		if serr := syncDir(filepath.Dir(b.path)); serr != nil {
			return fmt.Errorf("store: create the write-ahead log: %w; remove the old one: %w", err, serr)
		}
		b.log.Warn("no space for the write-ahead log: until the next start, every write syncs the database file itself", "path", walPath(b.path), "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: create the write-ahead log: %w", err)
	}
	if err := guard("read", func() (err error) {
		b.pin, err = b.db.Begin(false)
		return err
	}); err != nil {
		_ = w.f.Close()
		return err
	}
	b.wal = w
	b.walKick, b.walQuit, b.walDone = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go b.checkpointer(b.walKick, b.walQuit, b.walDone)
	return nil
}

// sameDatabase refuses the log whose checkpoint is cp if it names another
// database than the file's (cp is the state the file was brought back
// to). A checkpoint written before checkpoints named their database is
// taken as the file's.
func (b *Store) sameDatabase(cp walCheckpoint) error {
	if cp.id == nil {
		return nil
	}
	var id []byte
	if err := b.view(func(tx *bbolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil {
			id = bytes.Clone(meta.Get(keyDBID))
		}
		return nil
	}); err != nil {
		return err
	}
	if !bytes.Equal(id, cp.id) {
		return fmt.Errorf("%w: %w: the write-ahead log %s belongs to another database (its checkpoint names database %x, the file is database %x): was the file replaced after a crash? Move the log away to open the file as it is", store.ErrCorrupt, ErrWALRefused, walPath(b.path), cp.id, id)
	}
	return nil
}

// replay writes the batches of the log again, in one synced transaction.
func (b *Store) replay(batches []walRecord) error {
	return b.update(func(tx *bbolt.Tx) error {
		for _, rec := range batches {
			reqs, err := decodeBatch(rec.payload)
			if err != nil {
				return err
			}
			for _, r := range reqs {
				if err := b.put(tx, r); err != nil {
					return fmt.Errorf("record %d: %w", rec.seq, err)
				}
			}
		}
		return nil
	})
}

// closeWAL syncs the file and removes the log: the file alone then holds
// every write. It reports whether the file may still be written before it
// is closed: not when the log stays (it failed, or the file is damaged),
// for the next Open to replay from its checkpoint, whose pages no later
// write may reuse.
func (b *Store) closeWAL() (writable bool) {
	b.stopCheckpointer()
	if b.walDone != nil {
		<-b.walDone // before wmu, which the checkpointer takes
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	w := b.wal
	if w == nil {
		return b.damaged.Load() == nil
	}
	b.wal = nil
	defer b.unpin()
	if w.err == nil {
		if err := b.syncFile(); err != nil {
			w.err = err
		}
	}
	b.hook("close-synced")
	if w.err != nil || b.damaged.Load() != nil {
		b.log.Warn("the write-ahead log stays for the next open to replay", "path", w.path, "err", w.err)
		_ = w.f.Close()
		return false
	}
	if err := w.remove(); err != nil {
		b.log.Warn("the write-ahead log was not removed; the next open replays it", "path", w.path, "err", err)
		return false
	}
	b.hook("close-removed")
	return true
}
