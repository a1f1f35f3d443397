package document

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/patchd/patchd/store"
)

// BatchError is the write of a batch that was refused; nothing of the
// batch was written. errors.Is and errors.As see the write's own error.
type BatchError struct {
	// Index is the write's position in the batch, from 0.
	Index int
	Err   error
}

func (e *BatchError) Error() string { return fmt.Sprintf("write %d: %v", e.Index, e.Err) }

// Unwrap returns the write's error.
func (e *BatchError) Unwrap() error { return e.Err }

// MaxBatchBytes bounds the bytes of the documents the writes of one batch
// produce together: every version of the batch is held until the batch
// commits, and its answer holds them all.
const MaxBatchBytes = 32 << 20

// Batch decides several writes, in order, each as Write would (its own
// preconditions, rebase, schema and limits), each seeing what the writes
// before it in the batch did, and commits them all in one transaction, or
// none. A write that is refused refuses the batch: the error is a
// *BatchError naming it. With dryRun nothing is written; the results say
// what the writes would have done. Writes with an idempotency key whose
// answer is stored are answered from it and not applied again; keys must
// be distinct within a batch.
func (s *Service) Batch(ctx context.Context, ws []Write, dryRun bool) ([]Result, error) {
	results := make([]Result, len(ws))
	ds := make([]*decision, len(ws))
	keys := []store.Key{}
	keyOf := make([]int, len(ws)) // index in keys; -1 for a replayed write
	seen := map[store.Key]int{}
	idem := map[string]int{} // the write of each key
	var taken []string       // the keys of first requests, held until the batch is answered
	defer func() {
		for _, key := range taken {
			s.inflight.release(key)
		}
	}()
	for i := range ws {
		w := &ws[i]
		w.DryRun = dryRun
		refuse := func(err error) ([]Result, error) { return nil, &BatchError{Index: i, Err: err} }
		if w.Collection == store.SchemaCollection {
			return refuse(fail(ErrInvalidRequest, "schemas are not written in batches"))
		}
		if w.Idempotency != nil {
			key := w.Idempotency.Key
			if j, dup := idem[key]; dup {
				return refuse(fail(ErrInvalidRequest, fmt.Sprintf("Idempotency-Key used by write %d too: each write of a batch needs its own", j)))
			}
			idem[key] = i
			res, ok, held, err := s.holdOrReplay(ctx, w)
			if held {
				taken = append(taken, key)
			}
			if err != nil {
				return refuse(err)
			}
			if ok {
				res.DryRun = dryRun
				results[i], keyOf[i] = res, -1
				continue
			}
		}
		d := &decision{s: s, w: w}
		if err := d.parse(); err != nil {
			return refuse(err)
		}
		if w.Kind == Post {
			w.ID = s.ids.Next()
		}
		ds[i] = d
		k := store.Key{Collection: w.Collection, ID: w.ID}
		j, ok := seen[k]
		if !ok {
			j = len(keys)
			seen[k] = j
			keys = append(keys, k)
		}
		keyOf[i] = j
	}
	if len(keys) == 0 {
		return results, nil // every write was replayed
	}
	// The schemas, once per collection.
	schemas := map[string]*compiledSchema{}
	firstOf := map[string]int{} // the first write of each collection with a schema
	patterns, rebaseWork := new(patternBudget), new(int)
	for i, d := range ds {
		if d != nil {
			d.rebaseWork = rebaseWork
		}
		if d == nil || d.w.Kind == Delete {
			continue
		}
		sch, ok := schemas[d.w.Collection]
		if !ok {
			var err error
			if sch, err = s.schemaFor(ctx, d.w.Collection); err != nil {
				return nil, &BatchError{Index: i, Err: err}
			}
			schemas[d.w.Collection] = sch
			if sch != nil {
				firstOf[d.w.Collection] = i
			}
		}
		d.schema, d.patterns = sch, patterns
	}
	// The batch's validations run one at a time: each schema lends one
	// instance to all its writes, taken before the documents' locks (the
	// wait for a turn then holds up no other writer of them), in the order
	// of the collections' names, so that two batches never each hold a
	// turn the other waits for.
	// They go back once the batch is decided, before its commit; a store
	// that decides it again has its decisions take instances as a single
	// write's do.
	lent := make(map[string]*schemaInstance, len(firstOf))
	giveLent := func() {
		for coll, inst := range lent {
			schemas[coll].give(inst)
		}
		clear(lent)
		for _, d := range ds {
			if d != nil && d.lent {
				d.inst, d.lent = nil, false
			}
		}
	}
	defer giveLent()
	for _, coll := range slices.Sorted(maps.Keys(firstOf)) {
		inst, err := schemas[coll].take(ctx)
		if err != nil {
			return nil, &BatchError{Index: firstOf[coll], Err: err}
		}
		lent[coll] = inst
	}
	for _, d := range ds {
		if d != nil && d.schema != nil {
			d.inst, d.lent = lent[d.w.Collection], true
		}
	}

	// resultFrom[i] is the change whose document write i answers with: its
	// own, or the last one before it of the same document; -1 for the
	// document as it was before the batch.
	resultFrom := make([]int, len(ws))
	var initial []*store.Document
	fn := func(ctx context.Context, locked []store.Locked) (*store.ManyChange, error) {
		views := make([]*store.Document, len(locked))
		seqs := make([]uint64, len(locked))
		hists := make([]*overlayHistory, len(locked))
		last := make([]int, len(locked))
		for j, l := range locked {
			views[j], seqs[j], last[j] = l.Doc, l.Seq, -1
			hists[j] = &overlayHistory{base: l.History}
		}
		defer giveLent() // decided: the commit's wait holds no instance
		initial = append([]*store.Document(nil), views...)
		*patterns = newBatchBudget() // a store that calls fn again decides again
		*rebaseWork = s.batchRebaseWork()
		mc := &store.ManyChange{DryRun: dryRun}
		size := 0
		for i, d := range ds {
			if d == nil {
				continue
			}
			j := keyOf[i]
			ch, err := d.decideAt(ctx, views[j], seqs[j], hists[j])
			if err != nil {
				return nil, &BatchError{Index: i, Err: err}
			}
			if ch != nil {
				if size += len(ch.Body); size > MaxBatchBytes {
					return nil, &BatchError{Index: i, Err: fail(ErrBatchTooLarge, fmt.Sprintf(
						"the documents this batch's writes produce pass %d MiB by this write; send the writes in smaller batches", MaxBatchBytes>>20))}
				}
				seqs[j]++
				mc.Changes = append(mc.Changes, store.DocChange{Doc: j, Change: ch})
				last[j] = len(mc.Changes) - 1
				views[j] = nil
				v := store.Version{Seq: seqs[j], Kind: ch.Kind, Ops: ch.Ops, RebasedFrom: ch.RebasedFrom,
					Actor: ch.Actor, RequestID: ch.RequestID, Reverts: ch.Reverts}
				if ch.Body != nil {
					v.ETag = store.ETagOf(ch.Body)
					views[j] = &store.Document{Collection: keys[j].Collection, ID: keys[j].ID, Body: ch.Body, ETag: v.ETag, Seq: seqs[j]}
				}
				hists[j].later = append(hists[j].later, v)
			}
			resultFrom[i] = last[j]
		}
		return mc, nil
	}
	docs, err := s.store.UpdateMany(ctx, keys, fn)
	if err != nil {
		return nil, err
	}
	for i, d := range ds {
		if d == nil {
			continue
		}
		doc := initial[keyOf[i]]
		if resultFrom[i] >= 0 {
			doc = docs[resultFrom[i]]
		}
		results[i] = Result{Doc: doc, Created: d.created, RebasedFrom: d.rebasedFrom, Before: d.before, DryRun: dryRun}
		if doc == nil && d.w.Kind != Delete {
			return nil, &BatchError{Index: i, Err: fail(store.ErrNotFound, "no such document")}
		}
	}
	return results, nil
}

// overlayHistory is a document's history as a write of a batch sees it:
// the store's, then the versions the writes before it in the batch made.
type overlayHistory struct {
	base  store.History
	later []store.Version
}

// Since finds the newest version with one of etags, in the batch's
// versions first.
func (o *overlayHistory) Since(ctx context.Context, etags []string) (store.Version, []store.Version, error) {
	for i := len(o.later) - 1; i >= 0; i-- {
		for _, e := range etags {
			if e != "" && o.later[i].ETag == e {
				return o.later[i], o.later[i+1:], nil
			}
		}
	}
	base, later, err := o.base.Since(ctx, etags)
	if err != nil {
		return store.Version{}, nil, err
	}
	return base, append(later, o.later...), nil
}

// SinceSeq returns version seq and the later ones, the batch's included.
func (o *overlayHistory) SinceSeq(ctx context.Context, seq uint64) (store.Version, []store.Version, error) {
	if n := len(o.later); n > 0 && seq >= o.later[0].Seq {
		i := seq - o.later[0].Seq
		if i >= uint64(n) {
			return store.Version{}, nil, fmt.Errorf("document: since seq %d: %w", seq, store.ErrBaseUnknown)
		}
		return o.later[i], o.later[i+1:], nil
	}
	v, later, err := o.base.SinceSeq(ctx, seq)
	if err != nil {
		return store.Version{}, nil, err
	}
	return v, append(later, o.later...), nil
}
