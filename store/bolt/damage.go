package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"runtime/debug"
	"syscall"

	bbolt "go.etcd.io/bbolt"

	"github.com/patchd/patchd/store"
)

// Damaged files.
//
// bbolt trusts its file: a damaged page makes it panic, and a read of a
// page past the end of a truncated file faults (SIGBUS), which kills the
// process. patchd checks what it can cheaply before it serves (checkFile:
// both meta pages, the file's length, the freelist; checkRoot: the pages
// from the root to every collection's first and last keys), and runs every
// transaction under guard, which turns a bbolt panic or a fault on the
// mapped file into an error wrapping store.ErrCorrupt. After a write
// transaction failed that way the store refuses further writes, so that a
// damaged file is not made worse. Check (the whole file) is patchd check's.

// guard runs fn and turns a panic, or a memory fault on the mapped file
// (made a panic by debug.SetPanicOnFault for this goroutine), into an error
// wrapping store.ErrCorrupt. what names the operation in the error.
func guard(what string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: %w (bbolt failed on it: %v)", what, store.ErrCorrupt, r)
		}
	}()
	return fn()
}

// view runs fn in a read transaction under guard.
func (b *Store) view(fn func(*bbolt.Tx) error) error {
	return guard("read", func() error { return b.db.View(fn) })
}

// bbolt's on-disk format (go.etcd.io/bbolt/internal/common), read here
// without bbolt so that a damaged file can be described rather than
// crash the process.
const (
	pageHeaderLen  = 16 // id (8), flags (2), count (2), overflow (4)
	metaLen        = 64 // magic, version, pageSize, flags (4 each), root (8+8), freelist, pgid, txid, checksum (8 each)
	metaSumLen     = 56 // the checksum covers the meta up to itself
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	flagBranch     = 0x01
	flagLeaf       = 0x02
	flagFreelist   = 0x10
	noFreelist     = ^uint64(0)
	minPageSize    = 1024
	maxPageShift   = 14 // bbolt looks for the second meta page up to 1024<<14
	freelistMaxIDs = 1 << 31
)

// meta is one decoded meta page.
type meta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64 // high water mark: pages [0, pgid) are the database
	txid     uint64
	err      error // why the page is not valid; nil when it is
}

// decodeMeta decodes the meta page at the start of buf (a page header and
// the meta after it).
func decodeMeta(buf []byte) meta {
	if len(buf) < pageHeaderLen+metaLen {
		return meta{err: errors.New("the file ends before it")}
	}
	m := buf[pageHeaderLen : pageHeaderLen+metaLen]
	le := binary.LittleEndian
	h := fnv.New64a()
	_, _ = h.Write(m[:metaSumLen])
	out := meta{
		pageSize: le.Uint32(m[8:]),
		root:     le.Uint64(m[16:]),
		freelist: le.Uint64(m[32:]),
		pgid:     le.Uint64(m[40:]),
		txid:     le.Uint64(m[48:]),
	}
	switch {
	case le.Uint32(m[0:]) != boltMagic:
		out.err = errors.New("no bbolt magic number")
	case le.Uint32(m[4:]) != boltVersion:
		out.err = fmt.Errorf("bbolt format version %d, want %d", le.Uint32(m[4:]), boltVersion)
	case le.Uint64(m[56:]) != h.Sum64():
		out.err = errors.New("its checksum does not match")
	case out.pageSize < minPageSize || out.pageSize > minPageSize<<maxPageShift || out.pageSize&(out.pageSize-1) != 0:
		out.err = fmt.Errorf("page size %d", out.pageSize)
	}
	return out
}

// fileReport is what checkFile finds.
type fileReport struct {
	// fatal are problems that make the file unusable; warnings are
	// problems it can be served with (one damaged meta page).
	fatal, warnings []error
	// noFreelist: the newest meta page names no freelist page, which
	// bbolt then rebuilds from the file's pages.
	noFreelist bool
}

func (r *fileReport) fail(format string, args ...any) {
	r.fatal = append(r.fatal, fmt.Errorf("%w: "+format, append([]any{store.ErrCorrupt}, args...)...))
}

// err joins the fatal problems, nil when there are none.
func (r *fileReport) err() error { return errors.Join(r.fatal...) }

// checkFile reads the meta pages and the freelist of the bbolt file f
// directly: both meta pages should be valid; the newest valid one decides
// how long the file must be and where the root and the freelist are; the
// freelist must be a freelist page naming distinct pages of the file that
// are neither meta pages nor the root.
func checkFile(f *os.File) fileReport {
	var r fileReport
	fi, err := f.Stat()
	if err != nil {
		r.fatal = append(r.fatal, err)
		return r
	}
	size := fi.Size()
	if size == 0 {
		r.fail("the file is empty (0 bytes), so it holds no database; patchd creates a database only where no file exists: move this one away to start afresh")
		return r
	}
	read := func(off int64, n int) []byte {
		buf := make([]byte, n)
		k, _ := f.ReadAt(buf, off)
		return buf[:k]
	}
	m0 := decodeMeta(read(0, pageHeaderLen+metaLen))
	// The second meta page is one page in; its size is the first's, else
	// the first size at which a valid meta page is found, as bbolt does.
	m1 := meta{err: errors.New("not found at any page size")}
	if m0.err == nil {
		m1 = decodeMeta(read(int64(m0.pageSize), pageHeaderLen+metaLen))
	} else {
		for i := range maxPageShift + 1 {
			off := int64(minPageSize) << i
			if off >= size {
				break
			}
			if m := decodeMeta(read(off, pageHeaderLen+metaLen)); m.err == nil {
				m1 = m
				break
			}
		}
	}
	var cur meta
	switch {
	case m0.err != nil && m1.err != nil:
		r.fail("neither meta page is valid (page 0: %v; page 1: %v): this is not a bbolt file, or it is damaged", m0.err, m1.err)
		return r
	case m0.err != nil:
		cur = m1
		r.warnings = append(r.warnings, fmt.Errorf("%w: meta page 0 is not valid (%v): the file opens at transaction %d of meta page 1, and if the damaged page was the newer one, the transaction committed last is lost",
			store.ErrCorrupt, m0.err, m1.txid))
	case m1.err != nil:
		cur = m0
		r.warnings = append(r.warnings, fmt.Errorf("%w: meta page 1 is not valid (%v): the file opens at transaction %d of meta page 0, and if the damaged page was the newer one, the transaction committed last is lost",
			store.ErrCorrupt, m1.err, m0.txid))
	case m1.txid > m0.txid:
		cur = m1
	default:
		cur = m0
	}
	ps := int64(cur.pageSize)
	if cur.pgid < 3 || cur.pgid > uint64(1<<62)/uint64(ps) { // #nosec G115 -- ps is at most 16 MiB
		r.fail("meta page of transaction %d: high water mark %d is out of range", cur.txid, cur.pgid)
		return r
	}
	if need := int64(cur.pgid) * ps; size < need { // #nosec G115 -- bounded above
		r.fail("the file is truncated: it has %d bytes, its %d pages need %d", size, cur.pgid, need)
		return r
	}
	if cur.root < 2 || cur.root >= cur.pgid {
		r.fail("the root page %d is outside the file's pages 2 to %d", cur.root, cur.pgid-1)
		return r
	}
	if root := read(int64(cur.root)*ps, pageHeaderLen); len(root) < pageHeaderLen || // #nosec G115 -- root < pgid
		(binary.LittleEndian.Uint16(root[8:]) != flagBranch && binary.LittleEndian.Uint16(root[8:]) != flagLeaf) {
		r.fail("the root page %d is neither a branch nor a leaf page", cur.root)
		return r
	}
	if cur.freelist != noFreelist {
		if err := checkFreelist(read, cur, ps); err != nil {
			r.fail("the freelist (page %d): %v", cur.freelist, err)
		}
	} else {
		r.noFreelist = true
	}
	return r
}

// checkFreelist checks the freelist page of the meta m.
func checkFreelist(read func(off int64, n int) []byte, m meta, ps int64) error {
	if m.freelist < 2 || m.freelist >= m.pgid {
		return fmt.Errorf("it is outside the file's pages 2 to %d", m.pgid-1)
	}
	off := int64(m.freelist) * ps // #nosec G115 -- freelist < pgid, checked against the file size
	hdr := read(off, pageHeaderLen+8)
	if len(hdr) < pageHeaderLen+8 {
		return errors.New("the file ends in it")
	}
	le := binary.LittleEndian
	if flags := le.Uint16(hdr[8:]); flags != flagFreelist {
		return fmt.Errorf("it is no freelist page (flags %#x)", flags)
	}
	overflow := uint64(le.Uint32(hdr[12:]))
	if m.freelist+overflow >= m.pgid {
		return fmt.Errorf("its %d overflow pages run past the file's pages", overflow)
	}
	count, start := uint64(le.Uint16(hdr[10:])), int64(pageHeaderLen)
	if count == 0xFFFF { // the count is the first id's slot
		count, start = le.Uint64(hdr[pageHeaderLen:]), pageHeaderLen+8
	}
	if count > freelistMaxIDs || start+int64(count)*8 > int64(overflow+1)*ps { // #nosec G115 -- both bounded
		return fmt.Errorf("it names %d pages, more than its %d pages hold", count, overflow+1)
	}
	ids := read(off+start, int(count)*8) // #nosec G115 -- count is bounded above
	if len(ids) != int(count)*8 {        // #nosec G115 -- as above
		return errors.New("the file ends in it")
	}
	var prev uint64
	for i := range int(count) { // #nosec G115 -- as above
		id := le.Uint64(ids[i*8:])
		switch {
		case id < 2 || id >= m.pgid:
			return fmt.Errorf("it names page %d, outside the file's pages 2 to %d", id, m.pgid-1)
		case i > 0 && id <= prev:
			return fmt.Errorf("it names page %d after page %d (its pages must be distinct and sorted)", id, prev)
		case id == m.root:
			return fmt.Errorf("it names the root page %d as free", id)
		case id >= m.freelist && id <= m.freelist+overflow:
			return fmt.Errorf("it names its own page %d as free", id)
		}
		prev = id
	}
	return nil
}

// checkRoot reads the root structure through bbolt, under guard: every
// top-level bucket, and for each collection the pages from its root to its
// first and last keys. Damage there would fail every request; damage deeper
// in a collection's tree fails the requests that reach it (as
// store.ErrCorrupt) and is found by Check.
func (b *Store) checkRoot() error {
	return b.view(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketDocs, bucketHist, bucketIdem, bucketIdemExp} {
			top := tx.Bucket(name)
			if top == nil {
				continue // initLayout decides whether that is allowed
			}
			c := top.Cursor()
			c.First()
			c.Last()
			if string(name) != string(bucketDocs) && string(name) != string(bucketHist) {
				continue
			}
			err := top.ForEachBucket(func(coll []byte) error {
				cb := top.Bucket(coll)
				if cb == nil {
					return fmt.Errorf("%w: bucket %s/%s cannot be opened", store.ErrCorrupt, name, coll)
				}
				cc := cb.Cursor()
				cc.First()
				cc.Last()
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// noSpace marks an error of a full device (ENOSPC, or EDQUOT for a quota)
// as store.ErrNoSpace, keeping it in the chain.
func noSpace(err error) error {
	if err == nil || errors.Is(err, store.ErrNoSpace) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", store.ErrNoSpace, err)
	}
	return err
}
