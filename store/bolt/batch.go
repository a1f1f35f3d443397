package bolt

import (
	"errors"
	"fmt"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/patchd/patchd/store"
)

// Group commit.
//
// Every write transaction waits for a sync (of the write-ahead log, wal.go,
// or of bbolt's file), and bbolt runs one write transaction at a time.
// Updates therefore hand their prepared writes to one committer goroutine,
// which writes everything queued in a single transaction: while one commit
// syncs, the next batch gathers. Nothing waits on a timer, so a lone writer
// commits at once and pays no batch delay; under load, batches grow by
// themselves.
//
// An Update holds its document's lock only while its UpdateFunc runs and
// its write is queued, not while the write syncs. The next Update of the
// same document then sees the queued write as the current state (the
// pending overlay) and can queue its own version behind it: one hot
// document gets several versions per fsync, still in order and still one
// at a time through the UpdateFunc, so the outcome of a rebase never
// depends on timing. No Update returns before its write, and every queued
// write it built on, is durable and committed; one whose base write failed
// fails too.
//
// Only Update sees pending state: Get, List and History read what is
// committed. An Update that commits nothing but looked at a pending version
// waits until that version is durable and committed before it answers, so
// that no ETag leaves the store before its version is durable.
//
// The queued writes are idempotent puts of fixed keys and values. When a
// shared transaction fails, each write is retried in a transaction of its
// own, so that one bad write cannot fail the others.

// Bounds of one shared transaction.
const (
	maxBatchWrites = 256
	maxBatchBytes  = 32 << 20
)

// errBaseFailed is returned by an Update whose write was built on a pending
// write that failed to commit.
var errBaseFailed = errors.New("the version this write was built on failed to commit")

// commitReq is one document version on its way to disk. Its fields are set
// before it is queued and read-only after, except err, pruned and prev,
// which the committer sets (prev to nil) before closing done.
type commitReq struct {
	key        string // lockKey(collection, id)
	collection string
	id         string
	version    store.Version            // as store.History will return it; Seq set
	doc        *store.Document          // the document after this version; nil after a delete
	docVal     []byte                   // encoded document record; nil for a delete
	histVal    []byte                   // encoded history value; put sets its change log entry's number
	idem       *store.IdempotencyRecord // written with the version; nil for none
	prev       *commitReq               // the pending version this one was built on; nil once settled
	group      *commitGroup             // the UpdateMany it belongs to; nil for an Update
	done       chan struct{}
	err        error // valid once done is closed
	pruned     int   // set by the committer
}

// commitGroup is the writes of one UpdateMany: they are queued together,
// taken into the same transaction, and committed all or none.
type commitGroup struct {
	reqs []*commitReq
}

// failed reports whether r is settled with an error. Only the committer
// goroutine calls it, on requests it settled earlier, so it needs no lock.
func (r *commitReq) failed() bool {
	select {
	case <-r.done:
		return r.err != nil
	default:
		return false
	}
}

// pendingDoc is a document's queued versions, oldest first.
type pendingDoc struct {
	reqs []*commitReq
}

// committer is the group committer of one Store: the goroutine that
// writes every queued version in shared transactions.
type committer struct {
	b *Store

	mu      sync.Mutex
	queue   []*commitReq
	pending map[string]*pendingDoc // by lockKey; documents with queued versions

	wake    chan struct{} // capacity 1: "the queue is not empty"
	quit    chan struct{}
	stopped chan struct{}

	// Test hooks, nil outside tests: beforeCommit runs before each shared
	// transaction with its writes; putFault makes put fail.
	beforeCommit func(batch []*commitReq)
	putFault     func(collection, id string, seq uint64) error
}

func newCommitter(b *Store) *committer {
	c := &committer{
		b:       b,
		pending: make(map[string]*pendingDoc),
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go c.run()
	return c
}

// stop ends the committer goroutine. The caller makes sure that nothing is
// queued (Close waits for every Update first).
func (c *committer) stop() {
	close(c.quit)
	<-c.stopped
}

// latest returns the newest pending version of a document, or nil.
func (c *committer) latest(key string) *commitReq {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pd := c.pending[key]; pd != nil {
		return pd.reqs[len(pd.reqs)-1]
	}
	return nil
}

// pendingVersions returns the pending versions of a document, oldest first.
func (c *committer) pendingVersions(key string) []store.Version {
	c.mu.Lock()
	defer c.mu.Unlock()
	pd := c.pending[key]
	if pd == nil {
		return nil
	}
	vs := make([]store.Version, len(pd.reqs))
	for i, r := range pd.reqs {
		vs[i] = r.version
	}
	return vs
}

// enqueue makes r the newest pending version of its document and queues it
// for the committer.
func (c *committer) enqueue(r *commitReq) {
	c.mu.Lock()
	pd := c.pending[r.key]
	if pd == nil {
		pd = &pendingDoc{}
		c.pending[r.key] = pd
	}
	pd.reqs = append(pd.reqs, r)
	c.queue = append(c.queue, r)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// enqueueGroup queues the writes of an UpdateMany, in order, together:
// take never splits them.
func (c *committer) enqueueGroup(reqs []*commitReq) {
	g := &commitGroup{reqs: reqs}
	c.mu.Lock()
	for _, r := range reqs {
		r.group = g
		pd := c.pending[r.key]
		if pd == nil {
			pd = &pendingDoc{}
			c.pending[r.key] = pd
		}
		pd.reqs = append(pd.reqs, r)
	}
	c.queue = append(c.queue, reqs...)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// take removes the next batch from the queue. A group is taken whole, even
// past the bounds when it comes first.
func (c *committer) take() []*commitReq {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, size := 0, 0
	for n < len(c.queue) {
		unit := c.queue[n : n+1]
		if g := c.queue[n].group; g != nil {
			unit = c.queue[n : n+len(g.reqs)]
		}
		add := 0
		for _, r := range unit {
			add += len(r.docVal) + len(r.histVal)
		}
		if n > 0 && (n+len(unit) > maxBatchWrites || size+add > maxBatchBytes) {
			break
		}
		n += len(unit)
		size += add
	}
	batch := make([]*commitReq, n)
	copy(batch, c.queue)
	rest := copy(c.queue, c.queue[n:])
	clear(c.queue[rest:])
	c.queue = c.queue[:rest]
	return batch
}

func (c *committer) run() {
	defer close(c.stopped)
	for {
		select {
		case <-c.quit:
			return
		case <-c.wake:
		}
		for {
			batch := c.take()
			if len(batch) == 0 {
				break
			}
			c.commit(batch)
		}
	}
}

// commit writes a batch in one transaction, or, if that fails, each unit
// (a write, or the group of an UpdateMany) in its own, and settles every
// request.
func (c *committer) commit(batch []*commitReq) {
	if c.beforeCommit != nil {
		c.beforeCommit(batch)
	}
	units := splitUnits(batch)
	start := time.Now()
	var reqs []*commitReq // the writes of units not built on a failed write
	for _, u := range units {
		if !baseFailed(u) {
			reqs = append(reqs, u...)
		}
	}
	err := c.write(reqs)
	if err == nil {
		c.b.log.Debug("group commit", "writes", len(batch), "took", time.Since(start))
		for _, u := range units {
			c.settleUnit(u, nil)
		}
		return
	}
	if len(units) > 1 {
		c.b.log.Debug("group commit failed; committing one by one", "writes", len(batch), "err", err)
	}
	for _, u := range units {
		if len(units) > 1 {
			if baseFailed(u) {
				c.settleUnit(u, nil)
				continue
			}
			err = c.write(u)
		}
		c.settleUnit(u, err)
	}
}

// write puts reqs in one transaction, through the log.
func (c *committer) write(reqs []*commitReq) error {
	var size int64
	for _, r := range reqs {
		size += int64(len(r.docVal) + len(r.histVal))
		if r.idem != nil {
			size += int64(len(r.idem.Value))
		}
	}
	// A put copies the leaf pages it changes (and splits full ones), so a
	// transaction adds at most a few times its bytes, plus a few pages per
	// write (documents, history, change log, their branches).
	growth := 4*size + int64(len(reqs))*16*int64(c.b.db.Info().PageSize) + 16<<20
	return c.b.logUpdate(reqs, growth, func(tx *bbolt.Tx) error {
		for _, r := range reqs {
			if err := c.b.put(tx, r); err != nil {
				return err
			}
		}
		return nil
	})
}

// splitUnits cuts a batch into its units: each write alone, except the
// writes of a group, which stay together.
func splitUnits(batch []*commitReq) [][]*commitReq {
	units := make([][]*commitReq, 0, len(batch))
	for i := 0; i < len(batch); {
		n := 1
		if g := batch[i].group; g != nil {
			n = len(g.reqs)
		}
		units = append(units, batch[i:i+n])
		i += n
	}
	return units
}

// baseFailed reports whether a write of the unit was built on a pending
// write, outside the unit, that failed.
func baseFailed(unit []*commitReq) bool {
	for _, r := range unit {
		if r.prev != nil && (r.group == nil || r.prev.group != r.group) && r.prev.failed() {
			return true
		}
	}
	return false
}

// settleUnit settles every request of a unit with the same outcome: err,
// or errBaseFailed when the unit was built on a write that failed.
func (c *committer) settleUnit(unit []*commitReq, err error) {
	if err == nil && baseFailed(unit) {
		err = errBaseFailed
	}
	for _, r := range unit {
		c.settle(r, err)
	}
}

// settle records the outcome of r, removes it from the pending overlay and
// wakes its Update.
func (c *committer) settle(r *commitReq, err error) {
	r.err = err
	r.prev = nil // settled: no longer needed, and it would chain every version of a hot document
	if r.idem != nil {
		c.b.unclaim(r.idem.Key) // committed, so the record holds the key now; or failed
	}
	c.mu.Lock()
	if pd := c.pending[r.key]; pd != nil {
		// Requests of one document settle in queue order, so r is first.
		if i := indexOf(pd.reqs, r); i >= 0 {
			pd.reqs = append(pd.reqs[:i], pd.reqs[i+1:]...)
		}
		if len(pd.reqs) == 0 {
			delete(c.pending, r.key)
		}
	}
	c.mu.Unlock()
	close(r.done)
}

func indexOf(reqs []*commitReq, r *commitReq) int {
	for i, x := range reqs {
		if x == r {
			return i
		}
	}
	return -1
}

// put writes one version inside a write transaction: the document record
// (or its deletion), the history value, the idempotency record if any, and
// the pruning of old versions.
// It is idempotent: the same request writes the same keys and values.
func (b *Store) put(tx *bbolt.Tx, r *commitReq) error {
	docs, err := tx.Bucket(bucketDocs).CreateBucketIfNotExists([]byte(r.collection))
	if err != nil {
		return err
	}
	hist, err := tx.Bucket(bucketHist).CreateBucketIfNotExists([]byte(r.collection))
	if err != nil {
		return err
	}
	seq := r.version.Seq
	if c := b.committer; c != nil && c.putFault != nil {
		f := c.putFault
		if err := f(r.collection, r.id, seq); err != nil {
			return err
		}
	}
	if last, _ := lastSeq(hist.Cursor(), r.id); last+1 != seq {
		return fmt.Errorf("store: %s/%s: version %d does not follow version %d", r.collection, r.id, seq, last)
	}
	key := []byte(r.id)
	if r.docVal == nil {
		err = docs.Delete(key)
	} else {
		err = docs.Put(key, r.docVal)
	}
	if err != nil {
		return err
	}
	if b.etags.keyed {
		etag := "" // deleted
		if r.docVal != nil {
			etag = string(r.docVal[16:docHeaderLen])
			if r.doc != nil {
				etag = r.doc.ETag // the same, without a copy
			}
		}
		b.etags.note(r.collection, r.id, etag)
	}
	if err := putVersion(tx, hist, r.collection, histKey(r.id, seq), r.histVal); err != nil {
		return err
	}
	if err := putIdempotency(tx, r.idem, seq, r.version.At, b.idemPerScope); err != nil {
		return err
	}
	r.pruned, err = b.prune(tx, r.collection, hist, r.id, seq, r.version.At)
	return err
}
