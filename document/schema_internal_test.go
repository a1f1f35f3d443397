package document

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/internal/fair"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// TestSchemaCompiledOncePerETag: writes reuse the compiled schema until
// the schema changes.
func TestSchemaCompiledOncePerETag(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	put := func(id string) {
		t.Helper()
		if _, err := s.Write(ctx, Write{Kind: Put, Collection: "c", ID: id, Body: []byte(`{"n":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
	cached := func() *compiledSchema {
		s.schemas.mu.Lock()
		defer s.schemas.mu.Unlock()
		return s.schemas.m["c"]
	}
	res, err := s.WriteSchema(ctx, Write{Kind: Put, Collection: "c", Body: []byte(`{"type":"object"}`)})
	if err != nil {
		t.Fatal(err)
	}
	put("a")
	first := cached()
	if first == nil || first.etag != res.Doc.ETag {
		t.Fatalf("cache after a write: %+v", first)
	}
	put("b")
	if cached() != first {
		t.Fatal("the schema was compiled again for an unchanged ETag")
	}
	pre := Preconditions{IfMatch: ETagList{Present: true, Tags: []EntityTag{{Opaque: res.Doc.ETag}}}}
	if res, err = s.WriteSchema(ctx, Write{Kind: Put, Collection: "c", Body: []byte(`{"type":"object","required":["n"]}`), Pre: pre}); err != nil {
		t.Fatal(err)
	}
	put("c")
	if c := cached(); c == first || c.etag != res.Doc.ETag {
		t.Fatalf("cache after the schema changed: %+v", c)
	}
}

// TestSchemaPatternWorkPerDocument: the work of a schema's regular
// expressions is bounded per document, not only per string: a document of
// many long strings, each within the bound of one match, is refused (422)
// once their sum passes maxValidationPatternWork, and a page of violations
// ends once its documents' sum passes violationsPatternWork.
func TestSchemaPatternWorkPerDocument(t *testing.T) {
	s, _, pattern, insts := newPatternService(t)
	ctx := context.Background()
	str := strings.Repeat("a", maxPatternWork/insts-1) // one match: just within its bound
	members := maxValidationPatternWork/(len(str)*insts) + 2
	doc := map[string]string{}
	for i := range members {
		doc[fmt.Sprintf("k%d", i)] = str
	}
	body, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	const docs = 8
	for i := range docs {
		if _, err := s.Write(ctx, Write{Kind: Put, Collection: "c", ID: fmt.Sprintf("d%d", i), Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	schema := `{"type":"object","additionalProperties":{"type":"string","pattern":"` + pattern + `"}}`
	if _, err := s.WriteSchema(ctx, Write{Kind: Put, Collection: "c", Body: []byte(schema)}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Write(ctx, Write{Kind: Put, Collection: "c", ID: "new", Body: body})
	if !errors.Is(err, patch.ErrInvalidDocument) || !strings.Contains(err.Error(), "patterns") {
		t.Fatalf("a write of %d strings of %d bytes against %q: %v, want 422 for the patterns' work", members, len(str), pattern, err)
	}
	vs, next, err := s.Violations(ctx, "c", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if next == "" || len(vs) == 0 || len(vs) >= docs {
		t.Fatalf("violations: %d documents, next %q; want a page that ends early", len(vs), next)
	}
	for _, v := range vs {
		if len(v.Errors) != 1 || !strings.Contains(v.Errors[0].Message, "patterns") {
			t.Fatalf("violation of %s: %+v, want the patterns' work named", v.ID, v.Errors)
		}
	}
	// A document within the bound still validates.
	small, _ := json.Marshal(map[string]string{"k": str})
	if _, err := s.Write(ctx, Write{Kind: Put, Collection: "c", ID: "small", Body: small}); err != nil {
		t.Fatalf("one string within the bound: %v", err)
	}
}

// TestSchemaPatternWorkPerBatch: the writes of one batch share a bound on
// their patterns' work (maxBatchPatternWork): a batch of writes each
// within the bound of one validation, together past it, is refused whole,
// naming the batch, and writes nothing.
func TestSchemaPatternWorkPerBatch(t *testing.T) {
	s, st, pattern, insts := newPatternService(t)
	ctx := context.Background()
	str := strings.Repeat("a", maxPatternWork/insts-1)
	// One document: a little under one validation's bound.
	doc := map[string]string{}
	for i := range maxValidationPatternWork/(len(str)*insts) - 1 {
		doc[fmt.Sprintf("k%d", i)] = str
	}
	body, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	schema := `{"type":"object","additionalProperties":{"type":"string","pattern":"` + pattern + `"}}`
	if _, err := s.WriteSchema(ctx, Write{Kind: Put, Collection: "c", Body: []byte(schema)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(ctx, Write{Kind: Put, Collection: "c", ID: "one", Body: body}); err != nil {
		t.Fatalf("one document within the bound: %v", err)
	}
	var ws []Write
	for i := range maxBatchPatternWork/maxValidationPatternWork + 2 {
		ws = append(ws, Write{Kind: Put, Collection: "c", ID: fmt.Sprintf("b%d", i), Body: body})
	}
	_, err = s.Batch(ctx, ws, false)
	if !errors.Is(err, patch.ErrInvalidDocument) || !strings.Contains(err.Error(), "batch") {
		t.Fatalf("a batch of %d such writes: %v, want 422 naming the batch's bound", len(ws), err)
	}
	if _, err := st.Get(ctx, "c", "b0"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused batch wrote: %v", err)
	}
}

// TestSchemaSubschemaWorkPerBatch: the writes of one batch share a bound
// on the subschemas their validations apply (maxBatchValidationWork), as
// scan estimates it: a batch of writes each within one validation's bound,
// together past it, is refused whole, naming the batch.
func TestSchemaSubschemaWorkPerBatch(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	schema := `{"type":"object","properties":{"a":{"type":"array","items":{"allOf":[` + strings.TrimSuffix(strings.Repeat(`true,`, 1000), ",") + `]}}}}`
	if _, err := s.WriteSchema(ctx, Write{Kind: Put, Collection: "c", Body: []byte(schema)}); err != nil {
		t.Fatal(err)
	}
	cs, err := s.schemaFor(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	items := 1
	for ; ; items *= 2 { // the most items one validation takes
		body := []byte(`{"a":[` + strings.TrimSuffix(strings.Repeat("1,", items*2), ",") + `]}`)
		v, _ := patch.Parse(body, patch.Limits{})
		if w, _ := scan(v, cs.work); w > maxValidationWork {
			break
		}
	}
	body := []byte(`{"a":[` + strings.TrimSuffix(strings.Repeat("1,", items), ",") + `]}`)
	if _, err := s.Write(ctx, Write{Kind: Put, Collection: "c", ID: "one", Body: body}); err != nil {
		t.Fatalf("one document within the bound: %v", err)
	}
	var ws []Write
	for i := range 2 * maxBatchValidationWork / maxValidationWork {
		ws = append(ws, Write{Kind: Put, Collection: "c", ID: fmt.Sprintf("b%d", i), Body: body})
	}
	_, err = s.Batch(ctx, ws, false)
	if !errors.Is(err, patch.ErrInvalidDocument) || !strings.Contains(err.Error(), "batch") {
		t.Fatalf("a batch of %d writes of %d items: %v, want 422 naming the batch's bound", len(ws), items, err)
	}
}

// newPatternService is newService with the costly pattern of the
// pattern-work tests and the size of its compiled program.
// Its tests run regular expressions up to their real bounds, single
// threaded: ten times slower under the race detector, which finds nothing
// in them, they skip under it (the plain run, go test ./..., has them).
func newPatternService(t *testing.T) (s *Service, st store.Store, pattern string, insts int) {
	t.Helper()
	if raceEnabled {
		t.Skip("regular expression work up to its bounds: skipped under -race")
	}
	s, st = newService(t)
	pattern = `(a?){0,199}$`
	return s, st, pattern, patternInsts(pattern)
}

// TestSchemaEnumWork: the work estimate counts the values of an enum a
// value is compared with, and the digits of numbers, which the validator
// compares as fractions: an enum of 1000 numbers of 900 digits took 51 s
// of CPU to validate a document of 1,100 members, counted as one
// subschema each. Such a document is now refused before validating, and
// one within the estimate validates in about its time (logged).
func TestSchemaEnumWork(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	var vals []string
	for i := range 1000 {
		vals = append(vals, fmt.Sprintf("1.%s%03de-999", strings.Repeat("7", 893), i))
	}
	schema := `{"additionalProperties":{"enum":[` + strings.Join(vals, ",") + `]}}`
	if _, err := s.WriteSchema(ctx, Write{Kind: Put, Collection: "en", Body: []byte(schema)}); err != nil {
		t.Fatal(err)
	}
	doc := func(members int) []byte {
		var m []string
		for i := range members {
			m = append(m, fmt.Sprintf(`"k%d":%s`, i, vals[len(vals)-1]))
		}
		return []byte("{" + strings.Join(m, ",") + "}")
	}
	start := time.Now()
	_, err := s.Write(ctx, Write{Kind: Put, Collection: "en", ID: "many", Body: doc(100)})
	if !errors.Is(err, patch.ErrInvalidDocument) {
		t.Fatalf("100 members compared with 1000 numbers of 900 digits each: %v after %v, want 422 before validating", err, time.Since(start))
	}
	start = time.Now()
	if _, err := s.Write(ctx, Write{Kind: Put, Collection: "en", ID: "one", Body: doc(1)}); err != nil {
		t.Fatalf("one member: %v", err)
	}
	t.Logf("one member compared with 1000 numbers of 900 digits: %v", time.Since(start))

	// Short numbers with large exponents compare as costly fractions too.
	vals = vals[:0]
	for i := 1; i <= 1000; i++ {
		vals = append(vals, fmt.Sprintf("%de-999", i))
	}
	schema = `{"additionalProperties":{"enum":[` + strings.Join(vals, ",") + `]}}`
	if _, err := s.WriteSchema(ctx, Write{Kind: Put, Collection: "ex", Body: []byte(schema)}); err != nil {
		t.Fatal(err)
	}
	var m []string
	for i := range 100 {
		m = append(m, fmt.Sprintf(`"k%d":7e-1000`, i))
	}
	if _, err := s.Write(ctx, Write{Kind: Put, Collection: "ex", ID: "many", Body: []byte("{" + strings.Join(m, ",") + "}")}); !errors.Is(err, patch.ErrInvalidDocument) {
		t.Fatalf("100 members of 7e-1000 compared with 1000 numbers of exponent -999: %v, want 422 before validating", err)
	}
}

// TestSchemaInstanceWaitEnds: a validation waiting for its turn gives up
// when its request ends (the client gone: its context's error), and after
// turnWait: 503 overloaded (ErrOverloaded). The turns are internal/fair's, in turn per
// client (WithClient).
func TestSchemaInstanceWaitEnds(t *testing.T) {
	c, err := compileSchema("c", []byte(`{"type":"object"}`))
	if err != nil {
		t.Fatal(err)
	}
	c.turns = fair.New(1)
	held, err := c.take(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(WithClient(context.Background(), "a"))
	cancel()
	if _, err := c.take(ctx); !errors.Is(err, context.Canceled) || errors.Is(err, ErrOverloaded) {
		t.Fatalf("take after its request ended: %v, want context.Canceled alone", err)
	}
	if _, err := c.take(WithClient(context.Background(), "a")); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("take while the turn is held past turnWait: %v, want ErrOverloaded", err)
	}
	c.give(held)
	if _, err := c.take(ctx); err != nil {
		t.Fatalf("take of the instance given back: %v", err)
	}
}

// TestSchemaViolationsWorkPerPage: a page of GET /schemas/{c}/violations
// ends once its documents' subschema work reaches violationsWork, each
// document within one write's bound, and the next page goes on where it
// ended: every document is listed once.
func TestSchemaViolationsWorkPerPage(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	var enum []string
	for i := range 1000 {
		enum = append(enum, fmt.Sprint(i))
	}
	schema := []byte(`{"properties":{"a":{"items":{"enum":[` + strings.Join(enum, ",") + `]}}}}`)
	c, err := compileSchema("c", schema)
	if err != nil {
		t.Fatal(err)
	}
	// Documents of just over a third of violationsWork each, all breaking
	// the schema (1000 is not in the enum).
	items := slices.Repeat([]string{"1000"}, 100)
	body := func() []byte { return []byte(`{"a":[` + strings.Join(items, ",") + `]}`) }
	work := func() int {
		_, _, w, err := c.validateLimited(ctx, nil, body(), maxValidationPatternWork, maxValidationWork)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	items = slices.Repeat([]string{"1000"}, 100*(violationsWork/3)/work()+1) // the work grows with the items
	if w := work(); 3*w <= violationsWork || 2*w > violationsWork {
		t.Fatalf("a document of %d items: %d units of work, want just over a third of %d", len(items), w, violationsWork)
	}
	const docs = 7
	for i := range docs {
		if _, err := s.Write(ctx, Write{Kind: Put, Collection: "c", ID: fmt.Sprintf("d%d", i), Body: body()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.WriteSchema(ctx, Write{Kind: Put, Collection: "c", Body: schema}); err != nil {
		t.Fatal(err)
	}
	var pages [][]Violation
	for after := ""; ; {
		vs, next, err := s.Violations(ctx, "c", after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, vs)
		if next == "" {
			break
		}
		after = next
	}
	seen := 0
	for i, p := range pages {
		if len(p) > 2 {
			t.Fatalf("page %d holds %d documents of just over a third of the page's work each, want at most 2: the third begins the next page", i, len(p))
		}
		for _, v := range p {
			if want := fmt.Sprintf("d%d", seen); v.ID != want {
				t.Fatalf("page %d lists %s, want %s", i, v.ID, want)
			}
			seen++
		}
	}
	if seen != docs {
		t.Fatalf("%d documents listed over %d pages, want %d", seen, len(pages), docs)
	}
}

// TestValidationTurnBeforeLock: a write waits for a turn of its schema's
// validations before it takes the document's lock, so that while it
// waits another writer of the document (here a delete, which validates
// nothing) is not held up by it.
func TestValidationTurnBeforeLock(t *testing.T) {
	turnBeforeLock(t, []string{"c"}, "c", func(s *Service, ctx context.Context, pre Preconditions) error {
		_, err := s.Write(ctx, Write{Kind: Put, Collection: "c", ID: "d", Body: []byte(`{"n":2}`), Pre: pre})
		return err
	})
}

// TestBatchValidationTurnBeforeLock: a batch takes its schemas' validation
// turns before its documents' locks, as a single write does: while it
// waits for one (of its second collection's schema), other writers of its
// documents go on.
func TestBatchValidationTurnBeforeLock(t *testing.T) {
	turnBeforeLock(t, []string{"c", "e"}, "e", func(s *Service, ctx context.Context, pre Preconditions) error {
		_, err := s.Batch(ctx, []Write{
			{Kind: Put, Collection: "c", ID: "d", Body: []byte(`{"n":2}`), Pre: pre},
			{Kind: Put, Collection: "e", ID: "f", Body: []byte(`{"n":3}`)},
		}, false)
		return err
	})
}

// turnBeforeLock gives the collections schemas and c/d a version, holds
// the only validation turn of collection busy's schema, and runs write
// (of c/d, with pre) meanwhile: once it waits for the turn, a delete of
// c/d must go through at once, not once the write gives up.
func turnBeforeLock(t *testing.T, schemas []string, busy string, write func(*Service, context.Context, Preconditions) error) {
	t.Helper()
	s, _ := newService(t)
	ctx := context.Background()
	for _, coll := range schemas {
		if _, err := s.WriteSchema(ctx, Write{Kind: Put, Collection: coll, Body: []byte(`{"type":"object"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	anyETag := Preconditions{IfMatch: ETagList{Present: true, Any: true}}
	if _, err := s.Write(ctx, Write{Kind: Put, Collection: "c", ID: "d", Body: []byte(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	c, err := s.schemaFor(ctx, busy)
	if err != nil {
		t.Fatal(err)
	}
	c.turns = fair.New(1)
	held, err := c.take(WithClient(ctx, "holder"))
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() { waiting <- write(s, WithClient(ctx, "a"), anyETag) }()
	for deadline := time.Now().Add(10 * time.Second); c.turns.Waiting() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the write never waited for a turn")
		}
	}
	dctx, cancel := context.WithTimeout(WithClient(ctx, "b"), 3*time.Second)
	defer cancel()
	if _, err := s.Write(dctx, Write{Kind: Delete, Collection: "c", ID: "d", Pre: anyETag}); err != nil {
		t.Fatalf("a delete of the document while a write of it waits for a validation turn: %v", err)
	}
	select {
	case err := <-waiting:
		t.Fatalf("the delete went through only once the write waiting for a turn (up to %v) gave up: %v", turnWait, err)
	default:
	}
	c.give(held)
	if err := <-waiting; err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("the waiting write, after the delete: %v", err)
	}
}

// decidedHook is a store whose UpdateMany calls decided once the caller's
// decision function has returned, before the store commits.
type decidedHook struct {
	store.Store
	decided func()
}

func (h decidedHook) UpdateMany(ctx context.Context, keys []store.Key, fn store.ManyFunc) ([]*store.Document, error) {
	return h.Store.UpdateMany(ctx, keys, func(ctx context.Context, locked []store.Locked) (*store.ManyChange, error) {
		mc, err := fn(ctx, locked)
		h.decided()
		return mc, err
	})
}

// TestBatchGivesTurnsBeforeCommit: a batch gives its schemas' validation
// turns back once it is decided, as a single write does, not after its
// commit (whose sync other writers of the schema would wait for).
func TestBatchGivesTurnsBeforeCommit(t *testing.T) {
	_, st := newService(t)
	var c *compiledSchema
	freeAtCommit := false
	s := New(decidedHook{Store: st, decided: func() {
		if c != nil && c.turns.TryAcquire() {
			freeAtCommit = true
			c.turns.Release()
		}
	}}, DefaultConfig())
	ctx := context.Background()
	if _, err := s.WriteSchema(ctx, Write{Kind: Put, Collection: "c", Body: []byte(`{"type":"object"}`)}); err != nil {
		t.Fatal(err)
	}
	var err error
	if c, err = s.schemaFor(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	c.turns = fair.New(1)
	if _, err := s.Batch(ctx, []Write{{Kind: Put, Collection: "c", ID: "d", Body: []byte(`{"n":1}`)}}, false); err != nil {
		t.Fatal(err)
	}
	if !freeAtCommit {
		t.Fatal("the batch held its schema's only turn into its commit")
	}
}
