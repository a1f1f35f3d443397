package bolt

import (
	"context"
	"fmt"

	"github.com/patchd/patchd/store"
)

// UpdateMany runs fn on the current state of several documents and commits
// its changes, all or none, in one bbolt transaction of the group
// committer, synced to disk before it returns (see store.Store).
//
// The documents are locked in the byte order of their collection and id,
// as Update locks one, so that two UpdateManys, or an UpdateMany and
// Updates, never wait for each other in a cycle. fn runs outside any bbolt
// transaction, like an UpdateFunc, and sees pending writes as current. Its
// changes are queued together: the committer writes them in one
// transaction, and when that fails, none of them is written.
func (b *Store) UpdateMany(ctx context.Context, keys []store.Key, fn store.ManyFunc) ([]*store.Document, error) {
	order, err := b.gate.EnterWriteMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	defer b.gate.Leave()

	var unlocks []func()
	unlockAll := func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
		unlocks = nil
	}
	defer unlockAll()
	for _, i := range order {
		unlock, err := b.lockDoc(ctx, keys[i].Collection, keys[i].ID)
		if err != nil {
			return nil, fmt.Errorf("store: update many: %w", err)
		}
		unlocks = append(unlocks, unlock)
	}

	docs := make([]store.Locked, len(keys))
	bases := make([]*commitReq, len(keys))
	hists := make([]*boltHistory, len(keys))
	for i, k := range keys {
		cur, last, base, err := b.current(k.Collection, k.ID)
		if err != nil {
			return nil, fmt.Errorf("store: update %s/%s: %w", k.Collection, k.ID, err)
		}
		hists[i] = &boltHistory{b: b, collection: k.Collection, id: k.ID}
		docs[i] = store.Locked{Doc: cur, Seq: last, History: hists[i]}
		bases[i] = base
	}
	// settled unlocks the documents and waits until the pending versions
	// fn saw are synced, as Update does.
	settled := func() error {
		unlockAll()
		for i, base := range bases {
			if base == nil {
				continue
			}
			<-base.done
			if base.err != nil {
				return fmt.Errorf("store: update %s/%s: %w: %w", keys[i].Collection, keys[i].ID, errBaseFailed, noSpace(base.err))
			}
		}
		return nil
	}
	mc, err := fn(ctx, docs)
	for _, h := range hists {
		h.done.Store(true)
	}
	if err == nil && mc != nil {
		err = store.CheckMany(keys, docs, mc)
	}
	if err == nil && mc != nil && len(mc.Changes) > 0 && !mc.DryRun {
		err = ctx.Err()
		if err != nil {
			err = fmt.Errorf("store: update many: %w", err)
		}
	}
	if err != nil || mc == nil || len(mc.Changes) == 0 {
		if serr := settled(); serr != nil {
			return nil, serr
		}
		return nil, err
	}

	// Each change builds on the one before it of the same document, or on
	// the document's pending or committed state.
	reqs := make([]*commitReq, len(mc.Changes))
	prev := make([]*commitReq, len(keys))
	copy(prev, bases)
	seqs := make([]uint64, len(keys))
	for i, d := range docs {
		seqs[i] = d.Seq
	}
	for j, dc := range mc.Changes {
		k := keys[dc.Doc]
		seqs[dc.Doc]++
		reqs[j] = b.prepare(k.Collection, k.ID, seqs[dc.Doc], dc.Change, prev[dc.Doc])
		prev[dc.Doc] = reqs[j]
	}
	out := make([]*store.Document, len(reqs))
	if mc.DryRun {
		if err := settled(); err != nil {
			return nil, err
		}
		for j, r := range reqs {
			out[j] = r.cloneDoc()
		}
		return out, nil
	}
	// Every idempotency key of the group is claimed, or none is.
	for j, r := range reqs {
		if r.idem == nil {
			continue
		}
		if err := b.claim(r.idem.Key); err != nil {
			for _, c := range reqs[:j] {
				if c.idem != nil {
					b.unclaim(c.idem.Key)
				}
			}
			if serr := settled(); serr != nil {
				return nil, serr
			}
			return nil, fmt.Errorf("store: update many: %s/%s: %w", r.collection, r.id, err)
		}
	}
	b.committer.enqueueGroup(reqs)
	unlockAll()
	for _, r := range reqs {
		<-r.done
	}
	for _, r := range reqs {
		if r.err != nil {
			return nil, fmt.Errorf("store: update many: %s/%s: %w", r.collection, r.id, noSpace(r.err))
		}
	}
	for j, r := range reqs {
		b.feed.Publish(store.Event{Collection: r.collection, ID: r.id, Seq: r.version.Seq})
		out[j] = r.cloneDoc()
	}
	return out, nil
}
