package postgres

import (
	"context"
	"encoding/json"
	"time"
)

// channel is the NOTIFY channel of commit hints.
const channel = "patchd"

// maxHint bounds a NOTIFY payload; PostgreSQL refuses 8000 bytes or more.
const maxHint = 7900

// Hints wait in a queue of hintQueue; a sender takes up to hintBatch at a
// time. A hint that finds the queue full is dropped, and a Resync hint
// ({}) goes with the next batch instead.
const (
	hintQueue = 4096
	hintBatch = 256
)

// hint is a NOTIFY payload: which document got which version, and which
// store sent it. One without a document ({}) tells listeners to resync.
type hint struct {
	Collection string `json:"c,omitempty"`
	ID         string `json:"i,omitempty"`
	Seq        uint64 `json:"s,omitempty"`
	// Presence means the document's presence sessions changed, not its
	// versions.
	Presence bool `json:"p,omitempty"`
	// Origin names the Store that committed the version: it told its own
	// subscribers at the commit, so it passes over its own hints.
	Origin string `json:"o,omitempty"`
}

// encodeHint returns the NOTIFY payload of a commit; one too large for
// NOTIFY names no document, which listeners read as a Resync.
func encodeHint(origin, collection, id string, seq uint64) string {
	return encode(hint{Collection: collection, ID: id, Seq: seq, Origin: origin})
}

// encode returns the NOTIFY payload of h ({} when too large).
func encode(h hint) string {
	b, _ := json.Marshal(h)
	if len(b) > maxHint {
		return `{}`
	}
	return string(b)
}

// queueHint queues the hint of a committed version without waiting.
//
// Hints are sent after the commit, not by a NOTIFY inside the write
// transaction: PostgreSQL holds one database-wide lock from a notifying
// transaction's pre-commit to its end, across the flush of its commit
// record, which would serialize every commit of every replica (no group
// commit). A hint lost to a crash between the commit and the send is
// covered by the listeners' periodic Resync.
func (s *Store) queueHint(collection, id string, seq uint64) {
	select {
	case s.hints <- encodeHint(s.origin, collection, id, seq):
	default:
		s.hintsDropped.Store(true)
	}
}

// queueHintOf queues h without waiting, as queueHint does.
func (s *Store) queueHintOf(h hint) {
	select {
	case s.hints <- encode(h):
	default:
		s.hintsDropped.Store(true)
	}
}

// sendHints sends queued hints in batches, each batch one short
// transaction committed without waiting for a WAL flush, until the queue
// is closed and drained.
func (s *Store) sendHints() {
	defer close(s.hintsDone)
	batch := make([]string, 0, hintBatch+1)
	for h := range s.hints {
		batch = append(batch[:0], h)
	fill:
		for len(batch) < hintBatch {
			select {
			case h, ok := <-s.hints:
				if !ok {
					break fill
				}
				batch = append(batch, h)
			default:
				break fill
			}
		}
		if s.hintsDropped.Swap(false) {
			batch = append(batch, `{}`)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		// A hint need not be durable: without the flush (the transaction
		// has an XID, so its commit would wait for one), PostgreSQL's
		// notify lock is held only for a moment.
		_, err := s.pool.Exec(ctx, `SELECT pg_notify($1, h)
			FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async, unnest($2::text[]) AS h`,
			channel, batch)
		cancel()
		if err != nil {
			s.log.Warn("change feed: could not send hints; listeners will resync", "hints", len(batch), "err", err)
			s.hintsDropped.Store(true)
		}
	}
}
