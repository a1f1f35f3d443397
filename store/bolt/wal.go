package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/patchd/patchd/store"
)

// The write-ahead log.
//
// A bbolt commit syncs twice: its new pages, then its meta page, each
// scattered over the file. With the log, the committer writes a batch in
// one bbolt transaction, appends the batch's writes to the log as one
// record with one sequential write and one fdatasync, and only then commits
// the transaction without syncing (bbolt's NoSync) and answers. An
// acknowledged write is therefore on disk in the log; readers see it in
// bbolt, as before, since the commit precedes the answer.
//
// A bbolt commit that was not synced is safe against kill -9 (the kernel
// keeps what was written) but not against a power loss: the disk may hold
// its meta page and not its pages, or a page reused over one the last
// synced state still needs. So the log keeps a checkpoint: a transaction
// whose state is synced (Sync, after its commit) and whose pages stay
// untouched until the next checkpoint, because the Store holds a read
// transaction open on it (the pin: bbolt reuses no page that an open
// transaction can see). The checkpoint records the transaction's meta page,
// as it was on disk, and the seq of the last record in it.
//
// Recovery, at Open, when the log exists (the Store was not closed):
// write the checkpoint's meta page over both meta pages of the file, which
// brings the file back to the synced checkpoint whatever the later,
// unsynced commits left; open it; replay every batch record after the
// checkpoint's seq, in order, in one synced transaction (the writes are
// puts of fixed keys and values, in the order they were first applied);
// then start a new log at that state. Close syncs the file and removes the
// log, so a file closed cleanly needs no log.
//
// The log file: two checkpoint slots (walSlotSize bytes each; checkpoint k
// goes to slot k%2, so a torn checkpoint leaves the previous one), then
// records from walDataStart. Each record is its length, a CRC-32 of the
// rest, the log's generation, a seq and a kind, then its payload. A
// checkpoint starts a new generation at walDataStart: records of an older
// generation beyond are stale and end the scan, as does a record whose
// checksum fails (a torn append, which was never acknowledged). The file
// is filled with zeros ahead of the records, so that an append writes into
// allocated blocks and its fdatasync need not update the file's size.

const (
	walSlotSize   = 4096
	walDataStart  = 2 * walSlotSize
	walRecHeader  = 4 + 4 + 8 + 8 + 1 // length, checksum, generation, seq, kind
	walMinSize    = 1 << 20           // a new log file's size, filled with zeros
	walMagic      = "patchdw2"        // a checkpoint naming its database
	walMagicV1    = "patchdwl"        // written before checkpoints named their database
	walSlotLenV1  = len(walMagicV1) + 4*8 + pageHeaderLen + metaLen + 4
	walSlotLen    = walSlotLenV1 + dbIDLen
	walMaxPayload = 1 << 30

	// A checkpoint is taken after this many bytes of records, or this long
	// after the last one when records were written since.
	walCheckpointBytes = 8 << 20
	walCheckpointEvery = time.Second
)

// Kinds of log records.
const (
	recBatch byte = 1 // the writes of one bbolt transaction (encodeBatch)
	recAbort byte = 2 // the batch with the seq in the payload was not committed
)

// ErrWALRefused marks an Open refused for the database's write-ahead log,
// not its file: a log that is damaged or does not fit the file. The file
// may be sound; the log holds writes it may lack.
var ErrWALRefused = errors.New("refused for its write-ahead log")

// errWALDamaged marks a log that cannot be read back.
var errWALDamaged = errors.New("the write-ahead log is damaged")

// walCheckpoint is a synced state of the bbolt file: transaction txid,
// which holds every batch record up to seq.
type walCheckpoint struct {
	k    uint64 // the checkpoint's number; it goes to slot k%2
	gen  uint64 // generation of the records that follow it
	txid uint64
	seq  uint64
	meta []byte // transaction txid's meta page: page header and meta, as on disk
	// id is the database's id (keyDBID in its meta bucket), nil in a
	// checkpoint written before checkpoints named their database.
	id []byte
}

// encode returns the checkpoint's slot: the magic, k, gen, txid, seq, the
// meta page, the id and a CRC-32 of the rest. Without an id it has the
// layout written before checkpoints named their database.
func (cp *walCheckpoint) encode() []byte {
	magic := walMagic
	if cp.id == nil {
		magic = walMagicV1
	}
	buf := make([]byte, 0, walSlotLen)
	buf = append(buf, magic...)
	for _, v := range []uint64{cp.k, cp.gen, cp.txid, cp.seq} {
		buf = binary.LittleEndian.AppendUint64(buf, v)
	}
	buf = append(buf, cp.meta...)
	buf = append(buf, cp.id...)
	return binary.LittleEndian.AppendUint32(buf, crc32.ChecksumIEEE(buf))
}

func decodeCheckpoint(buf []byte) (walCheckpoint, bool) {
	n := walSlotLen
	switch {
	case len(buf) >= walSlotLen && string(buf[:len(walMagic)]) == walMagic:
	case len(buf) >= walSlotLenV1 && string(buf[:len(walMagicV1)]) == walMagicV1:
		n = walSlotLenV1
	default:
		return walCheckpoint{}, false
	}
	body := buf[:n-4]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(buf[n-4:]) {
		return walCheckpoint{}, false
	}
	le := binary.LittleEndian
	p := body[len(walMagic):]
	cp := walCheckpoint{
		k: le.Uint64(p), gen: le.Uint64(p[8:]), txid: le.Uint64(p[16:]), seq: le.Uint64(p[24:]),
		meta: bytes.Clone(p[32 : 32+pageHeaderLen+metaLen]),
	}
	if n == walSlotLen {
		cp.id = bytes.Clone(p[32+pageHeaderLen+metaLen:])
	}
	if m := decodeMeta(cp.meta); m.err != nil || m.txid != cp.txid {
		return walCheckpoint{}, false
	}
	return cp, true
}

// walRecord is one record of the log.
type walRecord struct {
	gen     uint64
	seq     uint64
	kind    byte
	payload []byte
}

// walContents is what a log file holds: its newest valid checkpoint and the
// records of its generation after it, up to the first that is not whole.
type walContents struct {
	cp   walCheckpoint
	recs []walRecord
	end  int64 // where the records end
}

// parseWAL reads a log file's contents.
func parseWAL(data []byte) (walContents, error) {
	var c walContents
	found := false
	for slot := range 2 {
		if len(data) < (slot+1)*walSlotSize {
			break
		}
		if cp, ok := decodeCheckpoint(data[slot*walSlotSize:]); ok && (!found || cp.k > c.cp.k) {
			c.cp, found = cp, true
		}
	}
	if !found {
		return c, fmt.Errorf("%w: no valid checkpoint", errWALDamaged)
	}
	// A checkpoint is synced before any record of its generation is
	// written, so a whole record of a newer generation means that the
	// newer checkpoint, in the other slot, was damaged after it was
	// written; the older one would drop the acknowledged writes since.
	if r, ok := recordAt(data, walDataStart); ok && r.gen > c.cp.gen {
		return c, fmt.Errorf("%w: the checkpoint before records of generation %d is damaged (the newest valid one is of generation %d)", errWALDamaged, r.gen, c.cp.gen)
	}
	off := int64(walDataStart)
	last := c.cp.seq
	for {
		r, ok := recordAt(data, off)
		if !ok || r.gen != c.cp.gen {
			break
		}
		if r.seq <= last {
			return c, fmt.Errorf("%w: record %d follows record %d", errWALDamaged, r.seq, last)
		}
		last = r.seq
		c.recs = append(c.recs, r)
		off += walRecHeader + int64(len(r.payload))
	}
	c.end = off
	// The log ends at the first record that is cut short, fails its
	// checksum or belongs to an older generation: an append torn by a
	// crash, never acknowledged. Records are appended one after the other
	// and each is synced before the next is written, so a valid record of
	// this generation further on means that this one was damaged after it
	// was written, and that later acknowledged writes would be dropped.
	if seq, ok := laterRecord(data, off, c.cp.gen, last); ok {
		return c, fmt.Errorf("%w: the record after record %d is damaged, but record %d, written after it, is whole: the log holds acknowledged writes after the damage", errWALDamaged, last, seq)
	}
	return c, nil
}

// recordAt returns the record that starts at off in data, with its
// generation; ok is false unless one does, whole: its length within data
// and its checksum right.
func recordAt(data []byte, off int64) (r walRecord, ok bool) {
	le := binary.LittleEndian
	if off+walRecHeader > int64(len(data)) {
		return r, false
	}
	h := data[off:]
	n := int64(le.Uint32(h))
	if n == 0 || n > walMaxPayload || off+walRecHeader+n > int64(len(data)) {
		return r, false
	}
	if crc32.ChecksumIEEE(h[8:walRecHeader+n]) != le.Uint32(h[4:]) {
		return r, false
	}
	return walRecord{gen: le.Uint64(h[8:]), seq: le.Uint64(h[16:]), kind: h[24], payload: h[walRecHeader : walRecHeader+n]}, true
}

// laterRecord looks in data after off for a whole record of generation
// gen with a seq after last, and returns its seq.
func laterRecord(data []byte, off int64, gen, last uint64) (uint64, bool) {
	pat := binary.LittleEndian.AppendUint64(nil, gen)
	for from := off + 8; from < int64(len(data)); {
		i := bytes.Index(data[from:], pat)
		if i < 0 {
			return 0, false
		}
		at := from + int64(i) - 8 // the generation is at 8 in a header
		from += int64(i) + 1
		if at < off {
			continue
		}
		if r, ok := recordAt(data, at); ok && r.gen == gen && r.seq > last {
			return r.seq, true
		}
	}
	return 0, false
}

// batches returns the batch records after the checkpoint that were not
// aborted, in order.
func (c *walContents) batches() ([]walRecord, error) {
	var out []walRecord
	for _, r := range c.recs {
		switch r.kind {
		case recBatch:
			out = append(out, r)
		case recAbort:
			if len(r.payload) != 8 {
				return nil, fmt.Errorf("%w: abort record %d is %d bytes", errWALDamaged, r.seq, len(r.payload))
			}
			seq := binary.LittleEndian.Uint64(r.payload)
			if len(out) > 0 && out[len(out)-1].seq == seq {
				out = out[:len(out)-1]
			}
		default:
			return nil, fmt.Errorf("%w: record %d has kind %d", errWALDamaged, r.seq, r.kind)
		}
	}
	return out, nil
}

// wal is an open log. Only the committer appends, and every method runs
// under Store.wmu.
type wal struct {
	f    *os.File
	path string
	size int64 // of the file
	off  int64 // where the next record goes
	cp   walCheckpoint
	seq  uint64 // of the last record written
	// applied is the seq of the last batch committed to bbolt.
	applied uint64
	since   int64     // bytes of records since the checkpoint
	cpAt    time.Time // when the checkpoint was taken
	// A checkpoint is due after every bytes of records, or every after
	// the last one when records were written since.
	every time.Duration
	bytes int64
	// err is set once a write or sync of the log failed: what the log
	// holds is then unknown, and it takes no more records.
	err error
	// shrink asks the next checkpoint to give the log's zeros back: a
	// write found the device full.
	shrink bool
	// fillFault, set by tests, fails a grow's write that would end at end
	// (a device that fills up).
	fillFault func(end int64) error
	// fileSyncErr is set once a sync of the database file failed: its
	// unsynced pages may never reach the disk, whatever a later sync says,
	// so the log must stay.
	fileSyncErr error
}

// walPath names the log of the database at path.
func walPath(path string) string { return path + "-wal" }

// createWAL writes a new log holding checkpoint cp and no records, under a
// temporary name, syncs it and renames it to path, replacing any older log.
func createWAL(path string, cp walCheckpoint) (_ *wal, err error) {
	dir := filepath.Dir(path)
	pattern := "." + filepath.Base(path) + ".new*"
	if stale, _ := filepath.Glob(filepath.Join(dir, pattern)); len(stale) > 0 {
		for _, name := range stale { // left by a crash inside createWAL
			_ = os.Remove(name)
		}
	}
	tmp, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(make([]byte, walMinSize)); err != nil {
		return nil, err
	}
	if _, err := tmp.WriteAt(cp.encode(), int64(cp.k%2)*walSlotSize); err != nil { // #nosec G115 -- 0 or 1
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return &wal{f: tmp, path: path, size: walMinSize, off: walDataStart, cp: cp, seq: cp.seq, applied: cp.seq, cpAt: time.Now(),
		every: walCheckpointEvery, bytes: walCheckpointBytes}, nil
}

// append writes one record and syncs it; it returns the record's seq.
func (w *wal) append(kind byte, payload []byte) (uint64, error) {
	if w.err != nil {
		return 0, w.err
	}
	if len(payload) > walMaxPayload {
		return 0, fmt.Errorf("a batch of %d bytes is too large for the write-ahead log", len(payload))
	}
	seq := w.seq + 1
	rec := make([]byte, walRecHeader, walRecHeader+len(payload))
	le := binary.LittleEndian
	le.PutUint32(rec, uint32(len(payload))) // #nosec G115 -- bounded by walMaxPayload
	le.PutUint64(rec[8:], w.cp.gen)
	le.PutUint64(rec[16:], seq)
	rec[24] = kind
	rec = append(rec, payload...)
	le.PutUint32(rec[4:], crc32.ChecksumIEEE(rec[8:]))
	end := w.off + int64(len(rec))
	// A batch leaves room for its abort record, so that marking it failed
	// never needs the file to grow. A failed grow changes nothing the log
	// holds: the write fails, and the next one tries again.
	need := end
	if kind == recBatch {
		need += walRecHeader + 8
	}
	if need > w.size {
		if err := w.grow(need); err != nil {
			return 0, err
		}
	}
	if _, err := w.f.WriteAt(rec, w.off); err != nil {
		return 0, w.fail(err)
	}
	if err := fdatasync(w.f); err != nil {
		return 0, w.fail(err)
	}
	w.off, w.seq = end, seq
	w.since += int64(len(rec))
	return seq, nil
}

// grow fills the file with zeros to at least twice its size or to end,
// with room for a terminating zero length. When the device cannot hold
// that, it tries with only what end needs (in whole 64 KiB); a grow that
// fails gives back what it wrote: on a device that filled up, the space
// freed goes to the writes that need it, not to zeros the log would hold.
func (w *wal) grow(end int64) error {
	want := max(2*w.size, end+walRecHeader)
	err := w.fill(want)
	if least := (end + walRecHeader + walGrowUnit - 1) / walGrowUnit * walGrowUnit; err != nil && least < want {
		err = w.fill(least)
	}
	return err
}

// walGrowUnit is the least a grow adds, rounded up.
const walGrowUnit = 64 << 10

// fill writes zeros from the end of the file up to size, or, failing,
// truncates the file back to its size and returns the error.
func (w *wal) fill(size int64) error {
	zeros := make([]byte, min(1<<20, size-w.size))
	for off := w.size; off < size; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), size-off)
		_, err := w.f.WriteAt(zeros[:n], off)
		if err == nil && w.fillFault != nil {
			err = w.fillFault(off + n)
		}
		if err != nil {
			_ = w.f.Truncate(w.size) // best effort: what it holds is zeros past the records
			return err
		}
	}
	w.size = size
	return nil // the caller's fdatasync covers the new size
}

// checkpoint records that transaction txid, whose meta page is meta, is
// synced and holds every batch up to w.applied, and starts a new
// generation of records.
func (w *wal) checkpoint(txid uint64, meta []byte) error {
	if w.err != nil {
		return w.err
	}
	cp := walCheckpoint{k: w.cp.k + 1, gen: w.cp.gen + 1, txid: txid, seq: w.applied, meta: meta, id: w.cp.id}
	if _, err := w.f.WriteAt(cp.encode(), int64(cp.k%2)*walSlotSize); err != nil { // #nosec G115 -- 0 or 1
		return w.fail(err)
	}
	if err := fdatasync(w.f); err != nil {
		return w.fail(err)
	}
	w.cp, w.off, w.since, w.cpAt = cp, walDataStart, 0, time.Now()
	w.shrinkIfAsked()
	return nil
}

// shrinkIfAsked gives the log's zeros back to the device when a write
// found it full (shrink), right after a checkpoint: the log then holds no
// record it needs, and grows again as records need it. A log cut so is as
// a new one is, zeros and all; a truncate a crash undoes leaves the larger
// file, which is as good.
func (w *wal) shrinkIfAsked() {
	if !w.shrink {
		return
	}
	w.shrink = false
	if w.size > walMinSize && w.f.Truncate(walMinSize) == nil {
		w.size = walMinSize
	}
}

// due reports whether a checkpoint should be taken now.
func (w *wal) due() bool {
	return w.err == nil && (w.shrink || w.since >= w.bytes || (w.since > 0 && time.Since(w.cpAt) >= w.every))
}

func (w *wal) fail(err error) error {
	w.err = fmt.Errorf("write-ahead log %s: %w", w.path, err)
	return w.err
}

// remove closes the log and deletes its file.
func (w *wal) remove() error {
	_ = w.f.Close() // what it holds no longer matters
	if err := os.Remove(w.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(filepath.Dir(w.path))
}

// syncDir syncs a directory, so that a file created, renamed or removed in
// it stays so.
func syncDir(dir string) error {
	d, err := os.Open(dir) // #nosec G304 -- the directory of the database the operator named
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

// readMetaPage reads the meta page of transaction txid from the bbolt file
// f: the one of its two meta pages that holds it (a commit writes slot
// txid%2; a copy made by bbolt's WriteTo holds it in slot 0).
func readMetaPage(f io.ReaderAt, pageSize int, txid uint64) ([]byte, error) {
	var found []uint64
	for slot := range int64(2) {
		buf := make([]byte, pageHeaderLen+metaLen)
		if _, err := f.ReadAt(buf, slot*int64(pageSize)); err != nil {
			return nil, err
		}
		m := decodeMeta(buf)
		if m.err == nil && m.txid == txid {
			return buf, nil
		}
		found = append(found, m.txid)
	}
	return nil, fmt.Errorf("%w: no meta page holds transaction %d after a sync (they hold %v)", store.ErrCorrupt, txid, found)
}

// restoreMeta writes the checkpoint's meta page over both meta pages of
// the bbolt file f and syncs it; undo writes back what they held. It refuses a
// file that cannot be the one the log was written for: one whose meta
// pages are all older than the checkpoint, or that holds the checkpoint's
// transaction with another meta page (a file restored or copied over the
// database after a crash).
func restoreMeta(f *os.File, cp walCheckpoint) (undo func() error, err error) {
	ps := int64(decodeMeta(cp.meta).pageSize)
	var have [2][]byte
	newest := uint64(0)
	for slot := range 2 {
		have[slot] = make([]byte, len(cp.meta))
		if _, err := f.ReadAt(have[slot], int64(slot)*ps); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		m := decodeMeta(have[slot])
		if m.err != nil {
			continue
		}
		newest = max(newest, m.txid)
		if m.txid == cp.txid && !bytes.Equal(have[slot][8:], cp.meta[8:]) {
			newest = 0
			break
		}
	}
	if newest < cp.txid {
		return nil, fmt.Errorf("%w: %w: the write-ahead log does not belong to this file (its checkpoint is transaction %d with other pages): was the file replaced after a crash? Move the log away to open the file as it is", store.ErrCorrupt, ErrWALRefused, cp.txid)
	}
	write := func(f *os.File, metas func(slot int64) []byte) error {
		for slot := range int64(2) {
			if _, err := f.WriteAt(metas(slot), slot*ps); err != nil {
				return err
			}
		}
		return f.Sync()
	}
	restored := func(slot int64) []byte {
		want := bytes.Clone(cp.meta)
		binary.LittleEndian.PutUint64(want, uint64(slot)) // #nosec G115 -- 0 or 1: the page id
		return want
	}
	name := f.Name()
	undo = func() error {
		g, err := os.OpenFile(name, os.O_RDWR, 0) // #nosec G304 -- the database the operator named
		if err != nil {
			return err
		}
		defer g.Close()
		// Only while no other process holds the file, and only if no one
		// wrote it since: one that opened it meanwhile made the restored
		// state its own.
		if err := lockFile(g, true, 0); err != nil {
			return fmt.Errorf("left as restored, for another process holds the file: %w", err)
		}
		for slot := range int64(2) {
			now := make([]byte, len(cp.meta))
			if _, err := g.ReadAt(now, slot*ps); err != nil {
				return err
			}
			if !bytes.Equal(now, restored(slot)) {
				return errors.New("left as it is, for it was written since it was restored")
			}
		}
		return write(g, func(slot int64) []byte { return have[slot] })
	}
	return undo, write(f, restored)
}

// encodeBatch encodes the writes of one bbolt transaction for the log:
// everything put needs to write them again.
func encodeBatch(reqs []*commitReq) []byte {
	n := 16
	for _, r := range reqs {
		n += 64 + len(r.collection) + len(r.id) + len(r.docVal) + len(r.histVal)
		if r.idem != nil {
			n += 32 + len(r.idem.Key) + len(r.idem.Scope) + len(r.idem.Value)
		}
	}
	buf := make([]byte, 0, n)
	buf = binary.AppendUvarint(buf, uint64(len(reqs)))
	bytesField := func(b []byte, present bool) {
		if !present {
			buf = binary.AppendUvarint(buf, 0)
			return
		}
		buf = binary.AppendUvarint(buf, uint64(len(b))+1)
		buf = append(buf, b...)
	}
	for _, r := range reqs {
		bytesField([]byte(r.collection), true)
		bytesField([]byte(r.id), true)
		buf = binary.AppendUvarint(buf, r.version.Seq)
		buf = binary.AppendVarint(buf, r.version.At.UnixNano())
		bytesField(r.docVal, r.docVal != nil)
		bytesField(r.histVal, true)
		if r.idem == nil {
			buf = append(buf, 0)
			continue
		}
		buf = append(buf, 1)
		bytesField([]byte(r.idem.Key), true)
		bytesField([]byte(r.idem.Scope), true)
		bytesField(r.idem.Value, true)
		buf = binary.AppendVarint(buf, r.idem.Expires.UnixNano())
	}
	return buf
}

// decodeBatch is the inverse of encodeBatch.
func decodeBatch(p []byte) ([]*commitReq, error) {
	bad := fmt.Errorf("%w: a batch record does not decode", errWALDamaged)
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, false
		}
		p = p[n:]
		return v, true
	}
	sv := func() (int64, bool) {
		v, n := binary.Varint(p)
		if n <= 0 {
			return 0, false
		}
		p = p[n:]
		return v, true
	}
	field := func() ([]byte, bool, bool) {
		n, ok := uv()
		if !ok || n > uint64(len(p))+1 {
			return nil, false, false
		}
		if n == 0 {
			return nil, false, true
		}
		b := p[: n-1 : n-1]
		p = p[n-1:]
		return b, true, true
	}
	count, ok := uv()
	if !ok || count > uint64(len(p)) {
		return nil, bad
	}
	reqs := make([]*commitReq, 0, count)
	for range count {
		var r commitReq
		coll, _, ok1 := field()
		id, _, ok2 := field()
		seq, ok3 := uv()
		at, ok4 := sv()
		doc, hasDoc, ok5 := field()
		hist, _, ok6 := field()
		if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || len(p) == 0 {
			return nil, bad
		}
		r.collection, r.id = string(coll), string(id)
		r.key = lockKey(r.collection, r.id)
		r.version = store.Version{Seq: seq, At: time.Unix(0, at).UTC()}
		if hasDoc {
			r.docVal = doc
		}
		r.histVal = hist
		hasIdem := p[0]
		p = p[1:]
		if hasIdem == 1 {
			key, _, ok1 := field()
			scope, _, ok2 := field()
			val, _, ok3 := field()
			exp, ok4 := sv()
			if !ok1 || !ok2 || !ok3 || !ok4 {
				return nil, bad
			}
			r.idem = &store.IdempotencyRecord{Key: string(key), Scope: string(scope), Value: val, Expires: time.Unix(0, exp).UTC(), Seq: seq}
		}
		reqs = append(reqs, &r)
	}
	if len(p) != 0 {
		return nil, bad
	}
	return reqs, nil
}
