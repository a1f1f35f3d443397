package document

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// Kind is what a write does.
type Kind uint8

// Kinds of writes.
const (
	// Put creates or replaces a document with Body, a JSON object.
	Put Kind = iota + 1
	// Post creates a document with Body under a new, time-ordered id; its
	// preconditions are ignored (they would apply to the collection).
	Post
	// JSONPatch applies Body, an RFC 6902 JSON Patch.
	JSONPatch
	// MergePatch applies Body, an RFC 7396 JSON Merge Patch.
	MergePatch
	// Delete deletes the document; it is never rebased.
	Delete
	// Revert undoes the version Write.Revert of the document: the inverse
	// of its ops, rebased over every later version.
	Revert
)

// String names the kind as history does.
func (k Kind) String() string {
	switch k {
	case Put, Post:
		return store.KindPut
	case JSONPatch:
		return store.KindJSONPatch
	case MergePatch:
		return store.KindMergePatch
	case Delete:
		return store.KindDelete
	case Revert:
		return store.KindRevert
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Write is one write to a document.
type Write struct {
	Kind       Kind
	Collection string
	// ID names the document; Post leaves it empty and gets a new one.
	ID string
	// Body is the request body as the client sent it: the document of a
	// Put or Post, the patch of a JSONPatch or MergePatch; nil for Delete.
	Body []byte
	// Pre are the write's preconditions.
	Pre Preconditions
	// Idempotency, when not nil, makes a retry of the same write answer
	// what the first one did instead of applying it again.
	Idempotency *IdempotencyKey
	// Minimal says the answer carries no body (Prefer: return=minimal), so
	// a replay need not rebuild one.
	Minimal bool
	// Revert is the seq of the version a Revert undoes.
	Revert uint64
	// Actor and RequestID are recorded in the new version: who made the
	// write ("" for nobody in particular), in which request.
	Actor     string
	RequestID string
	// DryRun decides the write and commits nothing: the Result is what
	// the write would have done, and no version, event or idempotency
	// record is written.
	DryRun bool
}

// IdempotencyKey identifies a write across retries.
type IdempotencyKey struct {
	// Key is the client's key, qualified by whoever sent it, so that two
	// clients' keys never collide.
	Key string
	// Scope names whoever sent it: the store keeps a bounded number of
	// records per scope (store.Options.IdempotencyPerScope).
	Scope string
	// Fingerprint hashes what makes two requests the same; a retry with
	// another fingerprint is ErrIdempotencyKeyReused.
	Fingerprint string
}

// Result is what a write did.
type Result struct {
	// Doc is the document as committed (or as it is, when the write
	// changed nothing); nil after a delete. A replayed answer has its
	// name, ETag and, unless the first answer was minimal, its body.
	Doc *store.Document
	// Created is set when the write created the document.
	Created bool
	// RebasedFrom is the ETag a stale edit was rebased from, or "".
	RebasedFrom string
	// Replayed is set when the answer is that of an earlier write with the
	// same idempotency key, which was not applied again.
	Replayed bool
	// Before is the ETag of the version the write was decided against (""
	// when the document did not exist). It is set whenever the write
	// reached the document, also when it returns an error.
	Before string
	// DryRun is set when nothing was written: Doc, Created and
	// RebasedFrom say what the write would have done.
	DryRun bool
}

// Write decides and commits one write. The errors it returns wrap the
// sentinels listed in errors.go, package patch's (invalid JSON or patch,
// a patch that fails, a rebase conflict, an invalid document) and package
// store's (not found, base unknown, unavailable); a 412 or 428 is a
// *PreconditionError and a rebase conflict a *patch.ConflictError within
// it; a replay whose answer cannot be rebuilt, an *AnswerGoneError.
func (s *Service) Write(ctx context.Context, w Write) (Result, error) {
	if w.Collection == store.SchemaCollection {
		return Result{}, fail(ErrInvalidRequest, "schemas are written with WriteSchema")
	}
	return s.write(ctx, w, nil)
}

// write is Write, and WriteSchema's write of a schema document (sch says
// how to check it).
func (s *Service) write(ctx context.Context, w Write, sch *schemaWrite) (Result, error) {
	if w.Idempotency != nil {
		res, ok, held, err := s.holdOrReplay(ctx, &w)
		if held {
			defer s.inflight.release(w.Idempotency.Key)
		}
		if ok || err != nil {
			return res, err
		}
		res, err = s.decideAndCommit(ctx, w, sch)
		if err != nil && ctx.Err() == nil && !errors.Is(err, store.ErrUnavailable) {
			// Refused, perhaps for what the first request with the key
			// did: it may have committed meanwhile on another replica
			// (this process's hold on the key is this process's only).
			// Then its answer is this one's.
			if rres, ok, rerr := s.replay(ctx, &w); ok || rerr != nil {
				return rres, rerr
			}
		}
		return res, err
	}
	return s.decideAndCommit(ctx, w, sch)
}

// decideAndCommit is write past its idempotency key: it decides the write
// and commits it.
func (s *Service) decideAndCommit(ctx context.Context, w Write, sch *schemaWrite) (Result, error) {
	d := &decision{s: s, w: &w, schemaWrite: sch}
	if err := d.parse(); err != nil {
		return Result{}, err
	}
	if err := d.loadSchema(ctx); err != nil {
		return Result{}, err
	}
	if w.Kind == Revert {
		if err := d.holdInstance(ctx); err != nil {
			return Result{}, err
		}
		defer d.giveInstance()
		return d.single(ctx)
	}
	if w.Kind == Post {
		d.w.ID = s.ids.Next()
	} else if d.w.Pre.fastDecidable() || w.Kind == Delete {
		// A 412 or 428 that the current ETag decides is answered without
		// the document lock; anything else is decided again under it.
		// A store that does not answer is not asked twice: each call may
		// wait the store's whole timeout.
		etag, err := s.store.ETag(ctx, w.Collection, w.ID)
		switch {
		case err == nil:
			if err := d.precondition(etag); err != nil {
				return Result{Before: etag}, err
			}
		case !errors.Is(err, store.ErrNotFound):
			return Result{}, err
		}
	}
	if err := d.holdInstance(ctx); err != nil {
		return Result{Before: d.before}, err
	}
	defer d.giveInstance()
	doc, err := s.store.Update(ctx, w.Collection, d.w.ID, d.decide)
	res := Result{Doc: doc, Created: d.created, RebasedFrom: d.rebasedFrom, Before: d.before, DryRun: w.DryRun}
	if errors.Is(err, store.ErrIdempotencyExists) && w.Idempotency != nil {
		// Another request with the key, on this replica or another, got
		// there first: answer as it was answered, once it has been.
		rres, ok, rerr := s.replay(ctx, &w)
		switch {
		case rerr != nil:
			return rres, rerr
		case !ok:
			return Result{Before: d.before}, errInUse
		}
		rres.Before = d.before
		return rres, nil
	}
	if err != nil {
		return res, err
	}
	if doc == nil && w.Kind != Delete {
		return res, fail(store.ErrNotFound, "no such document")
	}
	return res, nil
}

// errInUse answers a request whose idempotency key another request holds.
var errInUse = fail(ErrIdempotencyKeyInUse, "a request with this Idempotency-Key is still being processed; retry later")

// decision is one write's decision function and what it found. decide may
// run more than once (a backend retries after a concurrent commit), so it
// resets what it reports each time; everything else it reads is fixed
// before the first call.
type decision struct {
	s    *Service
	w    *Write
	edit edit

	// schema is the collection's schema, nil when it has none;
	// schemaWrite is set when the write is of a schema. inst, when not
	// nil, is an instance of schema taken before the document's lock
	// (holdInstance), so that the decision's validations wait for no turn
	// while it holds the lock.
	schema      *compiledSchema
	inst        *schemaInstance
	lent        bool // inst is a batch's, for all its writes of the schema: not given back here
	schemaWrite *schemaWrite
	// patterns, when not nil, is the work its schema's patterns may still
	// take, shared by the writes of one batch.
	patterns *patternBudget
	// rebaseWork, when not nil, is the rebase work (|P|·|Q|) the writes of
	// one batch may still take.
	rebaseWork *int

	before      string
	created     bool
	rebasedFrom string
	// baseResult is, for a rebased write, the edit's result on its own
	// base: a result that breaks the schema is 422, not a conflict, when
	// the edit broke it already there.
	baseResult any
}

// loadSchema reads the schema the write's result must follow.
func (d *decision) loadSchema(ctx context.Context) error {
	if d.w.Kind == Delete || d.schemaWrite != nil {
		return nil
	}
	var err error
	d.schema, err = d.s.schemaFor(ctx, d.w.Collection)
	return err
}

// holdInstance takes an instance of the write's schema, if it has one,
// for its decision, before the document's lock: the wait for a turn of
// the schema's validations (in turn per client) then holds up no other
// writer of the document. decideAt gives it back when it returns, before
// the commit; a decision run again (a backend's retry) takes one itself.
func (d *decision) holdInstance(ctx context.Context) error {
	if d.schema == nil || d.w.Kind == Delete {
		return nil
	}
	inst, err := d.schema.take(ctx)
	d.inst = inst
	return err
}

// giveInstance gives back the instance holdInstance took, if it is held.
func (d *decision) giveInstance() {
	if d.inst != nil && !d.lent {
		d.schema.give(d.inst)
		d.inst = nil
	}
}

// single decides a write through store.UpdateMany with one document, which
// tells the decision the seq of the document's newest version even when it
// is deleted (a revert needs it).
func (d *decision) single(ctx context.Context) (Result, error) {
	key := []store.Key{{Collection: d.w.Collection, ID: d.w.ID}}
	var cur *store.Document
	docs, err := d.s.store.UpdateMany(ctx, key, func(ctx context.Context, locked []store.Locked) (*store.ManyChange, error) {
		cur = locked[0].Doc
		ch, err := d.decideAt(ctx, cur, locked[0].Seq, locked[0].History)
		if err != nil || ch == nil {
			return nil, err
		}
		return &store.ManyChange{Changes: []store.DocChange{{Doc: 0, Change: ch}}, DryRun: ch.DryRun}, nil
	})
	res := Result{Doc: cur, Created: d.created, RebasedFrom: d.rebasedFrom, Before: d.before, DryRun: d.w.DryRun}
	if err != nil {
		res.Doc = nil
		return res, err
	}
	if len(docs) > 0 {
		res.Doc = docs[0]
	}
	if res.Doc == nil {
		return res, fail(store.ErrNotFound, "no such document")
	}
	return res, nil
}

// decide is the store.UpdateFunc of a write.
func (d *decision) decide(ctx context.Context, cur *store.Document, h store.History) (*store.Change, error) {
	var seq uint64
	if cur != nil {
		seq = cur.Seq
	}
	return d.decideAt(ctx, cur, seq, h)
}

// decideAt decides a write given the current document and the seq of its
// newest version (0 when it has none, or when it is deleted and the
// caller cannot tell; only a revert needs it then).
func (d *decision) decideAt(ctx context.Context, cur *store.Document, seq uint64, h store.History) (*store.Change, error) {
	d.before, d.created, d.rebasedFrom, d.baseResult = "", false, "", nil
	defer func() { d.baseResult = nil }() // a tree: a batch keeps its decisions
	defer d.giveInstance()                // validated: the commit's wait holds no instance
	if cur != nil {
		d.before = cur.ETag
	}
	var (
		ch  *store.Change
		err error
	)
	switch {
	case d.w.Kind == Revert:
		ch, err = d.revert(ctx, cur, seq, h)
	case d.w.Kind == Delete:
		ch, err = d.delete(cur)
	case cur == nil:
		ch, err = d.create()
	default:
		ch, err = d.change(ctx, cur, h)
	}
	if err != nil || ch == nil {
		return ch, err
	}
	ch.Actor, ch.RequestID, ch.DryRun = d.w.Actor, d.w.RequestID, d.w.DryRun
	if ch.Body == nil {
		return ch, nil
	}
	if d.schema != nil {
		errs, err := d.schema.validateWithin(ctx, d.inst, ch.Body, d.patterns)
		if ne := (*numberError)(nil); errors.As(err, &ne) {
			return nil, fail(patch.ErrInvalidDocument, ne.detail())
		}
		if we := (*workError)(nil); errors.As(err, &we) {
			return nil, fail(patch.ErrInvalidDocument, we.Error())
		}
		if err != nil {
			return nil, err
		}
		if len(errs) > 0 {
			return nil, d.violation(ctx, cur, seq, errs)
		}
	}
	if d.w.Idempotency == nil || d.w.DryRun {
		return ch, nil
	}
	if ch.Idempotency, err = d.record(ch.Body); err != nil {
		return nil, err
	}
	return ch, nil
}

// violation is the error of a write whose result breaks the schema: 422,
// or, when the write was rebased, a 412 rebase conflict with the versions
// it was rebased over.
func (d *decision) violation(ctx context.Context, cur *store.Document, seq uint64, errs []SchemaError) error {
	if d.rebasedFrom == "" || cur == nil {
		return &SchemaViolationError{Errors: errs}
	}
	if own := d.baseViolations(ctx); len(own) > 0 {
		return &SchemaViolationError{Errors: own} // invalid on its own base
	}
	return &PreconditionError{
		Err: &SchemaViolationError{Errors: errs, Conflict: &patch.Conflict{
			ClientOp:          0,
			ClientPath:        "",
			ConcurrentPath:    "",
			ConcurrentVersion: seq,
			Reason:            ReasonSchemaViolation,
		}},
		Current: cur.ETag,
		Base:    d.rebasedFrom,
	}
}

// baseViolations returns how a rebased edit's result on its own base
// breaks the schema, or nil (also when that cannot be told).
func (d *decision) baseViolations(ctx context.Context) []SchemaError {
	if d.baseResult == nil {
		return nil
	}
	body, err := patch.CheckDocument(d.baseResult, d.s.cfg.Limits)
	if err != nil {
		return nil
	}
	errs, err := d.schema.validateWithin(ctx, d.inst, body, nil)
	if err != nil {
		return nil
	}
	return errs
}

// delete decides a Delete.
func (d *decision) delete(cur *store.Document) (*store.Change, error) {
	if cur == nil {
		return nil, fail(store.ErrNotFound, "no such document")
	}
	if err := d.precondition(cur.ETag); err != nil {
		return nil, err
	}
	return &store.Change{Kind: store.KindDelete, Ops: patch.EncodeDelete(cur.Body)}, nil
}

// create decides a write to a document that does not exist.
func (d *decision) create() (*store.Change, error) {
	e := d.edit
	if e.create == nil {
		return nil, fail(store.ErrNotFound, "no such document")
	}
	switch {
	case d.w.Kind == Post && d.w.Pre.IfMatch.Present && !d.w.Pre.IfMatch.Any:
		// A new id: no version of it exists for an ETag to name, and
		// If-Match: * holds for the collection the POST goes to.
		return nil, &PreconditionError{Err: fail(ErrPreconditionFailed, "If-Match names a version, but POST creates a new document, which has none yet (send If-Match: * or none)")}
	case d.w.Kind != Post && d.w.Pre.IfMatch.Present:
		// If-Match is false when there is no current representation.
		what := "document"
		if d.w.Collection == store.SchemaCollection {
			what = "collection's schema"
		}
		return nil, &PreconditionError{Err: fail(ErrPreconditionFailed, "If-Match given but the "+what+" does not exist")}
	}
	d.created = true
	return &store.Change{Body: e.body, Kind: d.w.Kind.String(), Ops: patch.EncodeCreate(e.body)}, nil
}

// change decides a write to an existing document.
func (d *decision) change(ctx context.Context, cur *store.Document, h store.History) (*store.Change, error) {
	if d.w.Kind == Post {
		return nil, fail(ErrPreconditionFailed, "a document with the generated id exists")
	}
	if err := d.precondition(cur.ETag); err != nil {
		return nil, err
	}
	if d.w.Pre.IfMatch.Present && !d.w.Pre.IfMatch.MatchStrong(cur.ETag) {
		return d.rebase(ctx, cur, h)
	}
	e := d.edit
	if e.canonical != nil {
		if body, ops, ok := e.canonical(cur.Body); ok {
			return change(cur, body, ops, d.w.Kind, "")
		}
	}
	release, err := d.s.docs.Acquire(ctx, len(cur.Body))
	if err != nil {
		return nil, err
	}
	defer release()
	doc, err := d.s.decode(cur)
	if err != nil {
		return nil, err
	}
	result, ops, err := e.apply(doc)
	if err != nil {
		conditional := d.w.Pre.IfMatch.Present && !d.w.Pre.IfMatch.Any
		if !conditional && errors.Is(err, patch.ErrPatchFailed) {
			return nil, fail(ErrPatchConflict, err.Error())
		}
		return nil, err
	}
	if e.body != nil {
		// A PUT's result is its body, whose canonical bytes are known.
		d.s.trees.put(cur.Collection, cur.ID, e.body, result)
		return change(cur, e.body, ops, d.w.Kind, "")
	}
	return d.s.commit(cur, result, ops, d.w.Kind, "")
}

// precondition evaluates the preconditions of a write against the current
// ETag of an existing document (RFC 9110 section 13.2.2). It returns the
// 412 or 428 they call for; nil also when If-Match names an older version,
// which change then rebases.
func (d *decision) precondition(etag string) error {
	pre := d.w.Pre
	refuse := func(sentinel error, detail string) error {
		return &PreconditionError{Err: fail(sentinel, detail), Current: etag}
	}
	what := "a document"
	if d.w.Collection == store.SchemaCollection {
		what = "a schema"
	}
	if d.w.Kind == Delete { // never rebased
		switch {
		case pre.IfMatch.Present && !pre.IfMatch.MatchStrong(etag):
			return refuse(ErrPreconditionFailed, "If-Match does not match the current ETag (DELETE is never rebased)")
		case pre.IfNoneMatch.Present && pre.IfNoneMatch.MatchWeak(etag):
			return refuse(ErrPreconditionFailed, "If-None-Match matches the current ETag")
		case !pre.IfMatch.Present && d.s.cfg.RequireIfMatch:
			return refuse(ErrPreconditionRequired, "deleting "+what+" needs If-Match with its current ETag")
		}
		return nil
	}
	// Step 1, If-Match (strong), is the rebase decision; step 3:
	// If-None-Match (weak), evaluated against the current version.
	if pre.IfNoneMatch.Present && pre.IfNoneMatch.MatchWeak(etag) {
		if pre.IfNoneMatch.Any {
			return refuse(ErrPreconditionFailed, "If-None-Match: * and the "+what[2:]+" exists")
		}
		return refuse(ErrPreconditionFailed, "If-None-Match matches the current ETag")
	}
	if !pre.IfMatch.Present && d.s.cfg.RequireIfMatch {
		return refuse(ErrPreconditionRequired, "writes to an existing "+what[2:]+" need If-Match with its current ETag")
	}
	if pre.IfMatch.Present && !pre.IfMatch.MatchStrong(etag) && pre.Strict {
		return &PreconditionError{
			Err:     fail(ErrPreconditionFailed, strictDetail(d.schemaWrite != nil)),
			Current: etag,
			Base:    pre.client(),
		}
	}
	return nil
}

// decode returns the current version as a tree the caller owns: from the
// tree cache, or decoded.
func (s *Service) decode(cur *store.Document) (any, error) {
	if doc := s.trees.take(cur.Collection, cur.ID, cur.ETag); doc != nil {
		return doc, nil
	}
	doc, err := patch.Parse(cur.Body, patch.Limits{})
	if err != nil {
		return nil, fmt.Errorf("stored document %s/%s: %w", cur.Collection, cur.ID, err)
	}
	return doc, nil
}

// change turns checked canonical bytes into a change; nil when they equal
// the current version.
func change(cur *store.Document, body []byte, ops []patch.Op, kind Kind, rebasedFrom string) (*store.Change, error) {
	if bytes.Equal(body, cur.Body) {
		return nil, nil
	}
	return &store.Change{Body: body, Kind: kind.String(), Ops: patch.EncodeOps(ops), RebasedFrom: rebasedFrom}, nil
}

// commit checks a result tree against the limits and turns it into a
// change; nil when it equals the current version. It keeps the tree for
// the next write of the document: the cache is keyed by the content's
// hash, so a tree kept for a version that is not committed in the end is
// right for whatever version has that content.
func (s *Service) commit(cur *store.Document, result any, ops []patch.Op, kind Kind, rebasedFrom string) (*store.Change, error) {
	body, err := patch.CheckDocument(result, s.cfg.Limits)
	if err != nil {
		return nil, err
	}
	s.trees.put(cur.Collection, cur.ID, body, result)
	return change(cur, body, ops, kind, rebasedFrom)
}

// strictDetail is the detail of a stale If-Match on a write that is not
// rebased: a schema's, or one sent with Prefer: handling=strict.
func strictDetail(schema bool) string {
	if schema {
		return "If-Match does not match the schema's current ETag; a schema is never rebased: read it again and resend"
	}
	return "If-Match does not match the current ETag, and Prefer: handling=strict turns rebase off"
}
