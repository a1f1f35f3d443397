package document

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"regexp"
	"regexp/syntax"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/patchd/patchd/internal/fair"
	"github.com/patchd/patchd/store"
)

// Schemas. Each collection may have a JSON Schema (draft 2020-12), kept in
// the store as the document store.SchemaCollection/<collection>, so that
// every replica reads the same one and it has an ETag, a history and a
// place in exports like a document. Every write to the collection is
// validated on its result. The compiled schema is cached per ETag, and
// every write reads the schema's current ETag from the store (a cheap
// read), so that a change made through any replica applies to the next
// write everywhere.

// Bounds of what a schema may ask for.
const (
	// maxPattern is the longest regular expression a schema may hold
	// (pattern, patternProperties, format "regex"), in bytes. Go's regexp
	// runs in linear time, but compiling a huge one takes memory.
	maxPattern = 4096
	// maxSchemaErrors bounds the errors one violation reports.
	maxSchemaErrors = 50
	// maxCollectedErrors bounds the errors collected from one validation,
	// sorted, of which the first maxSchemaErrors are reported.
	maxCollectedErrors = 10000
	// maxApplications bounds the subschemas a schema may apply to one
	// value ($ref, allOf, anyOf... without going down the document): a
	// schema whose applicators fan out level after level would make every
	// write take exponential time.
	maxApplications = 10_000
	// maxEnum bounds the values of one enum: validation compares a value
	// with each.
	maxEnum = 1000
	// maxNumberDigits and maxNumberExponent bound the numbers of a schema
	// and of the documents of a collection that has one. The validator
	// compares numbers exactly, as fractions of big integers: 1e999999
	// costs it 35 ms, and past about 1e1000000 it cannot compare at all.
	maxNumberDigits   = 1000
	maxNumberExponent = 1000
)

// draft2020 is the $schema of draft 2020-12, the one patchd takes.
const draft2020 = "https://json-schema.org/draft/2020-12/schema"

// compiledSchema is a collection's schema, compiled, with the ETag of the
// document it was compiled from.
type compiledSchema struct {
	etag string
	coll string
	body []byte // the schema, to compile more instances
	// work estimates the work of a validation (checkRefCycles).
	work *schemaWork
	// The compiled instances: a validation takes one for itself, so that
	// the schema's regular expressions count their work against that
	// validation's meter. Each holder of a turn (at most maxInstances at
	// once, the clients waiting served in turn) holds one instance: free
	// holds those not in use.
	turns *fair.Turns
	mu    sync.Mutex
	free  []*schemaInstance
}

// schemaInstance is one compilation of a schema, used by one validation at
// a time.
type schemaInstance struct {
	schema *jsonschema.Schema
	meter  *patternMeter // the running validation's; nil while compiling
}

// maxInstances bounds the compiled instances of one schema: validations
// take CPU, so more at once than cores only queue, and compiling a large
// schema again costs as much as a write.
func maxInstances() int { return max(2, runtime.GOMAXPROCS(0)) }

// clientKey is the context key of WithClient.
type clientKey struct{}

// WithClient returns a copy of ctx that names the client a request comes
// from (a token's name, or an address): where requests wait for a shared
// resource, a schema's validations, clients are served in turn.
func WithClient(ctx context.Context, client string) context.Context {
	return context.WithValue(ctx, clientKey{}, client)
}

// clientFrom returns the client WithClient named, or "".
func clientFrom(ctx context.Context) string {
	client, _ := ctx.Value(clientKey{}).(string)
	return client
}

// take returns an instance of the schema for one validation, once the
// client's turn comes (every validation ends within its bounds): a free
// one, or a new compilation. It gives up when ctx is done.
func (c *compiledSchema) take(ctx context.Context) (*schemaInstance, error) {
	if err := acquireTurn(ctx, c.turns, "to validate against the schema of collection %s", c.coll); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if n := len(c.free); n > 0 {
		inst := c.free[n-1]
		c.free = c.free[:n-1]
		c.mu.Unlock()
		return inst, nil
	}
	c.mu.Unlock()
	compiled := false
	defer func() {
		if !compiled { // failed, or the compiler panicked: the turn is not lost with it
			c.turns.Release()
		}
	}()
	inst := &schemaInstance{}
	sch, err := compileInstance(c.coll, c.body, inst)
	if err != nil {
		return nil, err
	}
	compiled = true // the instance holds the turn until give
	inst.schema = sch
	return inst, nil
}

// give hands back an instance take returned, and its turn.
func (c *compiledSchema) give(inst *schemaInstance) {
	inst.meter = nil
	c.mu.Lock()
	c.free = append(c.free, inst)
	c.mu.Unlock()
	c.turns.Release()
}

// turnWait is the longest a request waits for a turn of work shared with
// other requests (as long as for its share of the decode budget).
const turnWait = time.Second

// acquireTurn takes a turn of t for ctx's client (WithClient), waiting at
// most turnWait: past it, ErrOverloaded (503 with Retry-After) that says
// what it waited for (what, a format with one %s for name; formatted
// only then); a request that ends first gets its context's error.
func acquireTurn(ctx context.Context, t *fair.Turns, what, name string) error {
	if t.TryAcquire() { // a free turn needs no timer
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, turnWait)
	defer cancel()
	err := t.Acquire(wctx, clientFrom(ctx))
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("waiting for a turn %s: %w", fmt.Sprintf(what, name), ctx.Err())
	default:
		return &Error{Err: ErrOverloaded, Detail: fmt.Sprintf("waited %v for a turn %s, taken by other requests; retry after 1 s", turnWait, fmt.Sprintf(what, name))}
	}
}

// patternMeter counts the work of the regular expressions of one
// validation: a string's length times the size of its pattern's program,
// for every match (about 6 ns per unit here).
type patternMeter struct {
	limit, used int
	over        bool // a match was refused: the validation's result does not count
}

// spend counts n units, or reports false (and marks the meter over) if
// they would pass its limit.
func (m *patternMeter) spend(n int) bool {
	if m.over || n > m.limit-m.used {
		m.over = true
		return false
	}
	m.used += n
	return true
}

// schemaCache holds the compiled schema of each collection that has one.
type schemaCache struct {
	mu sync.Mutex
	m  map[string]*compiledSchema
}

// printer formats the validator's messages.
var printer = message.NewPrinter(language.English)

// schemaLocation is the URL a collection's schema is compiled at: relative
// references resolve against it, and nothing is ever loaded from it.
func schemaLocation(coll string) string {
	return "https://patchd.invalid/schemas/" + coll
}

// errNoLoad is what a schema that refers outside itself gets: the server
// loads nothing from the network or the file system.
var errNoLoad = errors.New("patchd loads no schema from outside the one given: every $ref must point inside it")

// noLoader refuses every load.
type noLoader struct{}

func (noLoader) Load(string) (any, error) { return nil, errNoLoad }

// Bounds of a regular expression's cost. Go's regexp runs in time
// linear in the input, times the size of the compiled program: about
// 6 ns per byte and instruction here, so [a-z]{0,1000}x (2003
// instructions) took 11 s on a string of 900 KB.
const (
	// maxPatternInsts bounds a pattern's compiled program.
	maxPatternInsts = 1000
	// maxPatternWork bounds the length of a string times the program's
	// size for one match (about 0.1 s): a longer string fails the
	// pattern, with a message that says why.
	maxPatternWork = 20_000_000
)

// boundedRegexp is Go's regexp with bounds on the pattern's size, its
// compiled program, and the work of one match; its matches count against
// the meter of inst's running validation.
func boundedRegexp(s string, inst *schemaInstance) (jsonschema.Regexp, error) {
	if len(s) > maxPattern {
		return nil, fmt.Errorf("a regular expression of %d bytes; the limit is %d", len(s), maxPattern)
	}
	// During a validation this is a document's string under format
	// "regex": compiling it counts against the validation's meter, its
	// size estimated from the parse before any compiling (a{999} compiles
	// to a thousand instructions; a body of them took 17 s unbounded).
	if m := inst.meter; m != nil && !m.spend(len(s)*compileUnitsPerByte) {
		return nil, errCompileMeter
	}
	parsed, err := syntax.Parse(s, syntax.Perl)
	if err != nil {
		return nil, err
	}
	if m := inst.meter; m != nil {
		est := progSize(parsed)
		if est > maxPatternEstimate {
			return nil, fmt.Errorf("the regular expression %q would compile to more than %d instructions", shorten(s), maxPatternEstimate)
		}
		if !m.spend(est * compileUnitsPerInst) {
			return nil, errCompileMeter
		}
	}
	re, err := regexp.Compile(s)
	if err != nil {
		return nil, err
	}
	insts := progInsts(parsed)
	if insts > maxPatternInsts {
		return nil, fmt.Errorf("the regular expression %q compiles to %d instructions; the limit is %d (a bounded repeat such as {0,1000} copies its operand that many times)", shorten(s), insts, maxPatternInsts)
	}
	return &costlyRegexp{Regexp: re, insts: insts, inst: inst}, nil
}

// The cost of compiling a document's string under format "regex", in a
// validation meter's units (about 6 ns each): per byte parsed, and per
// instruction of the program as progSize estimates it (two compilations,
// about 60 ns each). maxPatternEstimate refuses a string whose program
// would be far past maxPatternInsts before compiling it.
const (
	compileUnitsPerByte = 10
	compileUnitsPerInst = 20
	maxPatternEstimate  = 20 * maxPatternInsts
)

// errCompileMeter refuses a string under format "regex" once the
// validation's meter is spent (the meter says why).
var errCompileMeter = errors.New("the work of this validation's regular expressions is spent")

// progSize estimates, from above, the instructions of a parsed regular
// expression's program without compiling it: a repeat counts its operand
// as many times as it may repeat. It saturates far above any bound.
func progSize(re *syntax.Regexp) int {
	const ceiling = 1 << 30
	var n int64
	switch re.Op {
	case syntax.OpLiteral:
		n = int64(len(re.Rune)) + 1
	case syntax.OpRepeat:
		times := re.Max
		if times < 0 {
			times = re.Min + 1
		}
		n = int64(progSize(re.Sub[0])+2) * int64(max(times, 1)) // at most 2^30 times 1000
	default:
		n = 2
		for _, sub := range re.Sub {
			n += int64(progSize(sub))
			if n > ceiling {
				return ceiling
			}
		}
	}
	return int(min(n, ceiling))
}

// patternInsts returns the size of a pattern's compiled program (0 if it
// does not compile).
func patternInsts(s string) int {
	re, err := syntax.Parse(s, syntax.Perl)
	if err != nil {
		return 0
	}
	return progInsts(re)
}

// progInsts returns the size of a parsed pattern's compiled program (0 if
// it does not compile).
func progInsts(re *syntax.Regexp) int {
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return 0
	}
	return len(prog.Inst)
}

// costlyRegexp refuses a match whose work would pass maxPatternWork, or
// the rest of its validation's meter.
type costlyRegexp struct {
	*regexp.Regexp
	insts int
	inst  *schemaInstance
}

// MatchString reports whether s holds a match; a string too long to
// check against this pattern fails it, and so does every string once the
// validation's meter is spent.
func (r *costlyRegexp) MatchString(s string) bool {
	if r.tooCostly(len(s)) {
		return false
	}
	if m := r.inst.meter; m != nil && !m.spend(len(s)*max(r.insts, 1)) {
		return false
	}
	return r.Regexp.MatchString(s)
}

func (r *costlyRegexp) tooCostly(n int) bool { return n > maxPatternWork/max(r.insts, 1) }

// compileSchema compiles the schema of a collection. Errors wrap
// ErrInvalidSchema and say what is wrong: not a JSON object, another draft,
// a $ref outside the schema, a pattern too large or invalid, a $ref cycle
// that never reaches into the document, or anything the draft's
// meta-schema refuses.
func compileSchema(coll string, body []byte) (*compiledSchema, error) {
	invalid := func(format string, args ...any) error {
		return fail(ErrInvalidSchema, fmt.Sprintf(format, args...))
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return nil, invalid("the schema is not JSON: %v", err)
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, invalid("a schema must be a JSON object (use {} to accept every document)")
	}
	if e := checkNumbers(doc); e != nil {
		return nil, invalid("the schema's number at %q: %s", e.path, e.problem)
	}
	if v, ok := obj["$schema"]; ok {
		if s, _ := v.(string); strings.TrimSuffix(s, "#") != draft2020 {
			return nil, invalid("$schema %v: patchd takes JSON Schema draft 2020-12 (%q), or no $schema", v, draft2020)
		}
	}
	inst := &schemaInstance{}
	sch, err := compileInstance(coll, body, inst)
	if err != nil {
		return nil, err
	}
	inst.schema = sch
	work, err := checkRefCycles(sch)
	if err != nil {
		return nil, invalid("%v", err)
	}
	cs := &compiledSchema{coll: coll, body: bytes.Clone(body), work: work, turns: fair.New(maxInstances()), free: []*schemaInstance{inst}}
	return cs, nil
}

// CheckSchema reports whether body is a schema PUT /schemas/{collection}
// would take: nil, or an error wrapping ErrInvalidSchema that says what is
// wrong. Imports check stored schemas with it, for a schema the server
// cannot compile makes every write to its collection fail.
func CheckSchema(collection string, body []byte) error {
	_, err := compileSchema(collection, body)
	return err
}

// compileInstance compiles a schema that compileSchema checked, for inst.
// Errors wrap ErrInvalidSchema.
func compileInstance(coll string, body []byte, inst *schemaInstance) (*jsonschema.Schema, error) {
	invalid := func(format string, args ...any) error {
		return fail(ErrInvalidSchema, fmt.Sprintf(format, args...))
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return nil, invalid("the schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(noLoader{})
	c.UseRegexpEngine(func(s string) (jsonschema.Regexp, error) { return boundedRegexp(s, inst) })
	c.AssertFormat()
	loc := schemaLocation(coll)
	if err := c.AddResource(loc, doc); err != nil {
		return nil, invalid("%v", err)
	}
	sch, err := c.Compile(loc)
	var sve *jsonschema.SchemaValidationError
	var ve *jsonschema.ValidationError
	switch {
	case errors.As(err, &sve) && errors.As(sve.Err, &ve):
		errs := schemaErrors(ve)
		var b strings.Builder
		b.WriteString("not a valid JSON Schema (draft 2020-12)")
		for i, e := range errs {
			if i == 3 {
				fmt.Fprintf(&b, "; and %d more", len(errs)-3)
				break
			}
			fmt.Fprintf(&b, "; at %q: %s", e.InstancePath, shorten(e.Message))
		}
		return nil, invalid("%s", b.String())
	case err != nil:
		return nil, invalid("%s", shorten(strings.ReplaceAll(err.Error(), loc, "")))
	}
	return sch, nil
}

// shorten cuts a message that quotes a long value (a pattern, say) to its
// start and its end, which says what is wrong.
func shorten(s string) string {
	if len(s) <= 240 {
		return s
	}
	head, tail := s[:80], s[len(s)-140:]
	return strings.ToValidUTF8(head, "") + " ... " + strings.ToValidUTF8(tail, "")
}

// checkRefCycles refuses a schema in which a subschema applies itself to
// the same value again ($ref, allOf, anyOf, oneOf, not, if/then/else,
// dependentSchemas) without descending into it: validation would never
// end. Recursion through properties, items and the like is fine: each step
// goes one level down the document, whose depth is bounded.
func checkRefCycles(root *jsonschema.Schema) (*schemaWork, error) {
	// A $dynamicRef resolves at validation time to a $dynamicAnchor of
	// the same name in the dynamic scope: count every subschema that
	// declares one as a target, not only its static one.
	var dyn map[string][]*jsonschema.Schema
	same := func(s *jsonschema.Schema) []*jsonschema.Schema {
		out := sameValue(s)
		if s.DynamicRef != nil && dyn != nil {
			for _, t := range dyn[s.DynamicRef.Anchor] {
				if t != s.DynamicRef.Ref { // counted by sameValue already
					out = append(out, t)
				}
			}
		}
		return out
	}
	// Every subschema reachable from the root, by any keyword.
	var all []*jsonschema.Schema
	seen := map[*jsonschema.Schema]bool{}
	var reach func(s *jsonschema.Schema)
	reach = func(s *jsonschema.Schema) {
		if s == nil || seen[s] {
			return
		}
		seen[s] = true
		all = append(all, s)
		for _, c := range same(s) {
			reach(c)
		}
		for _, c := range children(s) {
			reach(c)
		}
	}
	reach(root)
	for _, s := range all {
		if s.DynamicAnchor != "" {
			if dyn == nil {
				dyn = map[string][]*jsonschema.Schema{}
			}
			dyn[s.DynamicAnchor] = append(dyn[s.DynamicAnchor], s)
		}
	}
	if dyn != nil { // again, with the dynamic targets
		all, seen = nil, map[*jsonschema.Schema]bool{}
		reach(root)
	}
	const (
		unvisited = iota
		onPath
		done
	)
	state := make(map[*jsonschema.Schema]int, len(all))
	var visit func(s *jsonschema.Schema) *jsonschema.Schema
	visit = func(s *jsonschema.Schema) *jsonschema.Schema {
		switch state[s] {
		case onPath:
			return s
		case done:
			return nil
		}
		state[s] = onPath
		for _, c := range same(s) {
			if c != nil {
				if loop := visit(c); loop != nil {
					return loop
				}
			}
		}
		state[s] = done
		return nil
	}
	where := func(s *jsonschema.Schema) string {
		w := s.Location
		if i := strings.IndexByte(w, '#'); i >= 0 {
			w = w[i:]
		}
		return w
	}
	for _, s := range all {
		if loop := visit(s); loop != nil {
			return nil, fmt.Errorf("the subschema at %s refers back to itself without descending into the document ($ref cycle)", where(loop))
		}
	}
	for _, s := range all {
		if s.Enum != nil && len(s.Enum.Values) > maxEnum {
			return nil, fmt.Errorf("the enum at %s has %d values; the limit is %d (each value is compared with every one)", where(s), len(s.Enum.Values), maxEnum)
		}
	}
	// Without cycles, bound the subschemas that applying one to a value
	// applies to it, and to one value k levels below it: applicators that
	// also descend (properties and a $ref each level, say) fan out across
	// the levels of the document.
	count := fan(same, func(*jsonschema.Schema) int { return 1 }, maxApplications)
	for _, s := range all {
		if count(s, 0) > maxApplications {
			return nil, fmt.Errorf("the subschema at %s applies more than %d subschemas to one value; the limit is %d", where(s), maxApplications, maxApplications)
		}
	}
	cost := fan(same, func(s *jsonschema.Schema) int { return 1 + comparedWork(s) }, maxValidationWork)
	numbers := fan(same, func(s *jsonschema.Schema) int { return 1 + comparedValues(s) }, maxValidationWork)
	w := &schemaWork{cost: make([]int, schemaDepth+1), numbers: make([]int, schemaDepth+1)}
	for k := range w.cost {
		if n := count(root, k); n > maxApplications {
			return nil, fmt.Errorf("the schema applies more than %d subschemas to one value %d levels down (applicators that also descend into the document fan out level after level); the limit is %d", maxApplications, k, maxApplications)
		}
		w.cost[k], w.numbers[k] = cost(root, k), numbers(root, k)
	}
	return w, nil
}

// schemaWork is what checkRefCycles estimates of a schema's validation
// work, per level of the document: cost[k] bounds the work of applying
// it to one value k levels down (subschemas applied, and their enum and
// const values compared), in units of about 0.2 us; numbers[k] bounds the
// subschemas and enum or const values a number there is compared with,
// each comparison taking longer the more digits it has.
type schemaWork struct {
	cost, numbers []int
}

// comparedWork is the work of comparing a value with s's enum and const
// values, beyond applying s: about 1 us per number (more with its
// digits), less per other value.
func comparedWork(s *jsonschema.Schema) int {
	n := 0
	if s.Enum != nil {
		for _, v := range s.Enum.Values {
			n += valueWork(v)
		}
	}
	if s.Const != nil {
		n += valueWork(*s.Const)
	}
	return n
}

// comparedValues is how many values s compares a value with: its enum's
// and its const.
func comparedValues(s *jsonschema.Schema) int {
	n := 0
	if s.Enum != nil {
		n += len(s.Enum.Values)
	}
	if s.Const != nil {
		n++
	}
	return n
}

// valueWork is the work of comparing a value with v (an enum or const
// value): the validator compares numbers as fractions of big integers.
func valueWork(v any) int {
	switch v := v.(type) {
	case json.Number:
		return 5 + numberWork(string(v))
	case string:
		return 1 + len(v)/3000
	case []any:
		n := 1
		for _, x := range v {
			n += valueWork(x)
		}
		return n
	case map[string]any:
		n := 1
		for k, x := range v {
			n += 1 + len(k)/3000 + valueWork(x)
		}
		return n
	}
	return 1
}

// numberWork is the work, beyond the first unit, of one comparison of a
// number as the validator makes it (a fraction of big integers), which
// grows with its digits and with its exponent: 1e-999 compares as a
// fraction over 10^999 (about 22 us, as costly as 900 digits).
func numberWork(n string) int {
	mant, exp := n, ""
	if i := strings.IndexAny(n, "eE"); i >= 0 {
		mant, exp = n[:i], strings.TrimLeft(strings.TrimLeft(n[i+1:], "+-"), "0")
	}
	x, err := strconv.Atoi(exp)
	if err != nil && exp != "" {
		x = maxValidationWork // beyond any bound numberProblem lets through
	}
	return (len(mant) + x) / 8
}

// fan returns f(s, k): the sum of base over the subschemas that applying s
// to a value applies to one value k levels below it (k = 0: to the value
// itself, s included), capped just past limit. same lists the subschemas s
// applies to the value itself.
func fan(same func(*jsonschema.Schema) []*jsonschema.Schema, base func(*jsonschema.Schema) int, limit int) func(*jsonschema.Schema, int) int {
	here := map[*jsonschema.Schema]int{}
	var applied func(s *jsonschema.Schema) int
	applied = func(s *jsonschema.Schema) int {
		if n, ok := here[s]; ok {
			return n
		}
		n := base(s)
		for _, c := range same(s) {
			if c != nil && n <= limit {
				n += applied(c)
			}
		}
		n = min(n, limit+1)
		here[s] = n
		return n
	}
	type at struct {
		s *jsonschema.Schema
		k int
	}
	memo := map[at]int{}
	var f func(s *jsonschema.Schema, k int) int
	f = func(s *jsonschema.Schema, k int) int {
		if s == nil {
			return 0
		}
		if k == 0 {
			return applied(s)
		}
		if n, ok := memo[at{s, k}]; ok {
			return n
		}
		n := below(s, k, f)
		for _, c := range same(s) {
			if n > limit {
				break
			}
			n += f(c, k)
		}
		n = min(n, limit+1)
		memo[at{s, k}] = n
		return n
	}
	return f
}

// schemaDepth is how deep checkRefCycles follows a schema into the
// document: the default --max-depth.
const schemaDepth = 64

// below bounds the subschemas s applies to one value one level down, each
// with the count f gives for it k-1 levels further: at most one of the
// properties or prefixItems applies to a given member or element, the
// other keywords may all apply.
func below(s *jsonschema.Schema, k int, f func(*jsonschema.Schema, int) int) int {
	one := 0
	for _, c := range s.Properties {
		one = max(one, f(c, k-1))
	}
	items := 0
	for _, c := range s.PrefixItems {
		items = max(items, f(c, k-1))
	}
	n := one + items
	for _, c := range s.PatternProperties {
		n += f(c, k-1)
	}
	for _, c := range []*jsonschema.Schema{s.PropertyNames, s.Contains, s.Items2020, s.UnevaluatedProperties, s.UnevaluatedItems, s.ContentSchema} {
		n += f(c, k-1)
	}
	for _, v := range []any{s.AdditionalProperties, s.AdditionalItems, s.Items} {
		switch v := v.(type) {
		case *jsonschema.Schema:
			n += f(v, k-1)
		case []*jsonschema.Schema:
			for _, c := range v {
				n += f(c, k-1)
			}
		}
	}
	return n
}

// sameValue returns the subschemas that s applies to the value it
// validates.
func sameValue(s *jsonschema.Schema) []*jsonschema.Schema {
	out := []*jsonschema.Schema{s.Ref, s.RecursiveRef, s.Not, s.If, s.Then, s.Else}
	if s.DynamicRef != nil {
		out = append(out, s.DynamicRef.Ref)
	}
	out = append(out, s.AllOf...)
	out = append(out, s.AnyOf...)
	out = append(out, s.OneOf...)
	for _, c := range s.DependentSchemas {
		out = append(out, c)
	}
	for _, d := range s.Dependencies {
		if c, ok := d.(*jsonschema.Schema); ok {
			out = append(out, c)
		}
	}
	return out
}

// children returns the subschemas that s applies to values inside the
// value it validates (or to property names, or decoded content).
func children(s *jsonschema.Schema) []*jsonschema.Schema {
	out := []*jsonschema.Schema{s.PropertyNames, s.Contains, s.Items2020, s.UnevaluatedProperties, s.UnevaluatedItems, s.ContentSchema}
	for _, c := range s.Properties {
		out = append(out, c)
	}
	for _, c := range s.PatternProperties {
		out = append(out, c)
	}
	out = append(out, s.PrefixItems...)
	for _, v := range []any{s.AdditionalProperties, s.AdditionalItems, s.Items} {
		switch v := v.(type) {
		case *jsonschema.Schema:
			out = append(out, v)
		case []*jsonschema.Schema:
			out = append(out, v...)
		}
	}
	return out
}

// numberError is a number beyond maxNumberDigits or maxNumberExponent.
type numberError struct {
	path    string // JSON Pointer
	problem string
}

// Error says where the number is and what is wrong with it.
func (e *numberError) Error() string {
	return fmt.Sprintf("the number at %q %s", e.path, e.problem)
}

// detail is the detail of the 422 a write with such a number gets.
func (e *numberError) detail() string {
	return fmt.Sprintf("the number at %q %s; in a collection with a schema, numbers have at most %d digits and a decimal exponent within ±%d, so that they can be validated",
		e.path, e.problem, maxNumberDigits, maxNumberExponent)
}

// scan walks a decoded value once: it returns the validation work w
// estimates for it (0 with w nil; it stops counting past
// maxValidationWork), and whether a number in it is beyond what the
// validator compares at a bounded cost (see checkNumbers).
func scan(v any, w *schemaWork) (work int, badNumber bool) {
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		k := 0
		if w != nil && work <= maxValidationWork {
			k = min(depth, len(w.cost)-1)
			work += w.cost[k]
		}
		switch v := v.(type) {
		case map[string]any:
			for _, x := range v {
				walk(x, depth+1)
			}
		case []any:
			for _, x := range v {
				walk(x, depth+1)
			}
		case json.Number:
			badNumber = badNumber || numberProblem(string(v)) != ""
			if w != nil && work <= maxValidationWork {
				work += w.numbers[k] * numberWork(string(v)) // each comparison reads its digits
			}
		}
	}
	walk(v, 0)
	return work, badNumber
}

// checkNumbers returns the first number in a decoded value (depth first,
// members in sorted order, so that an answer names the same number every
// time) that the validator cannot compare at a bounded cost, or nil.
func checkNumbers(v any) *numberError {
	if _, bad := scan(v, nil); !bad {
		return nil // the common case builds no paths
	}
	var walk func(v any, path string) *numberError
	walk = func(v any, path string) *numberError {
		switch v := v.(type) {
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(v)) {
				if e := walk(v[k], path+"/"+pointerEscaper.Replace(k)); e != nil {
					return e
				}
			}
		case []any:
			for i, x := range v {
				if e := walk(x, path+"/"+strconv.Itoa(i)); e != nil {
					return e
				}
			}
		case json.Number:
			if p := numberProblem(string(v)); p != "" {
				return &numberError{path: path, problem: p}
			}
		}
		return nil
	}
	return walk(v, "")
}

// numberProblem says what puts a JSON number beyond the validator's
// bounds, or returns "".
func numberProblem(n string) string {
	mant, exp, _ := strings.Cut(strings.ToLower(n), "e")
	digits := len(mant) - strings.Count(mant, "-") - strings.Count(mant, ".")
	if digits > maxNumberDigits {
		return fmt.Sprintf("has %d digits", digits)
	}
	if exp == "" {
		return ""
	}
	e := strings.TrimLeft(strings.TrimLeft(exp, "+-"), "0")
	if x, err := strconv.Atoi(e); e != "" && (err != nil || x > maxNumberExponent) {
		return "has an exponent beyond ±" + strconv.Itoa(maxNumberExponent)
	}
	return ""
}

// maxValidationWork bounds the work of one validation, as scan estimates
// it (subschemas applied, enum and const values compared, more for long
// numbers): about 0.4 s here.
const maxValidationWork = 2_000_000

// maxValidationPatternWork bounds the work of the regular expressions of
// one validation (patternMeter's units): about 0.5 s here. maxPatternWork
// bounds one match; this bounds a document of many strings.
const maxValidationPatternWork = 4 * maxPatternWork

// workError is a document whose validation would pass maxValidationWork or
// maxValidationPatternWork.
type workError struct {
	n        int
	patterns bool // the patterns' work, not the subschemas'
	batch    bool // the patterns' work of the whole batch
}

// Error says how much work the validation would take.
func (e *workError) Error() string {
	if e.batch && !e.patterns {
		return fmt.Sprintf("validating this batch's documents against their collections' schemas would take more than %d units of work in all (subschemas applied and values compared), the limit for one batch; send the writes in smaller batches", maxBatchValidationWork)
	}
	if e.batch {
		return fmt.Sprintf("checking the strings of this batch's documents against the patterns of their collections' schemas takes more than the limit of %d units of work for one batch (a string's length times the size of its pattern's compiled program, for every match); send the writes in smaller batches", maxBatchPatternWork)
	}
	if e.patterns {
		return fmt.Sprintf("checking the document's strings against the patterns of its collection's schema (and compiling those that must be regular expressions, format \"regex\") takes more than the limit of %d units of work (a string's length times the size of its pattern's compiled program, for every match); make the strings fewer, shorter or the patterns simpler", maxValidationPatternWork)
	}
	return fmt.Sprintf("validating the document against its collection's schema would take up to %d units of work; the limit is %d (a unit is a subschema applied or an enum or const value compared, more for long numbers: a schema that applies many subschemas or compares many values, to each of many values)", e.n, maxValidationWork)
}

// pointerEscaper escapes a member name as a JSON Pointer token.
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// maxBatchPatternWork and maxBatchValidationWork bound the work of all the
// validations of one batch (about 1 s of patterns and 0.8 s of
// subschemas here: twice one document's), so that a batch of many writes,
// each within the bounds of one validation, is answered in time and one
// request takes no more than about a second of CPU.
const (
	maxBatchPatternWork    = 2 * maxValidationPatternWork
	maxBatchValidationWork = 2 * maxValidationWork
)

// patternBudget is the work the validations of one batch may still take:
// their patterns' (patternMeter's units) and their subschemas' (scan's).
type patternBudget struct{ left, workLeft int }

// newBatchBudget returns the budget of one batch's validations.
func newBatchBudget() patternBudget {
	return patternBudget{left: maxBatchPatternWork, workLeft: maxBatchValidationWork}
}

// validateWithin checks a canonical body against the schema and returns
// how it fails (at most maxSchemaErrors ways), or nil. A number the
// validator cannot compare at a bounded cost is an error *numberError; a
// validation that would pass maxValidationWork, or whose patterns' work
// passes maxValidationPatternWork, is an error *workError. Its work also
// counts against b (nil: no budget beyond the validation's own). inst,
// when not nil, is an instance the caller holds (take); else one is taken
// for this validation.
func (c *compiledSchema) validateWithin(ctx context.Context, inst *schemaInstance, body []byte, b *patternBudget) ([]SchemaError, error) {
	limit, workLimit := maxValidationPatternWork, maxValidationWork
	if b != nil {
		limit, workLimit = min(limit, b.left), min(workLimit, b.workLeft)
	}
	errs, used, work, err := c.validateLimited(ctx, inst, body, limit, workLimit)
	if b != nil {
		b.left -= used
		b.workLeft -= min(work, b.workLeft)
		if we := (*workError)(nil); errors.As(err, &we) {
			we.batch = (we.patterns && limit < maxValidationPatternWork) || (!we.patterns && workLimit < maxValidationWork && work <= maxValidationWork)
		}
	}
	return errs, err
}

// validateLimited is validateWithin's check, with limit on the work of its patterns and
// workLimit on its subschemas' (as scan estimates it); it also returns the
// work its patterns took and the estimate.
func (c *compiledSchema) validateLimited(ctx context.Context, inst *schemaInstance, body []byte, limit, workLimit int) (_ []SchemaError, patternWork, work int, _ error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("schema validation: the body does not decode: %w", err)
	}
	// One walk for both bounds; paths are built only for a bad number.
	work, badNumber := scan(v, c.work)
	if badNumber {
		return nil, 0, 0, checkNumbers(v)
	}
	if work > workLimit {
		return nil, 0, work, &workError{n: work}
	}
	held := inst != nil
	if !held {
		if inst, err = c.take(ctx); err != nil {
			return nil, 0, work, err
		}
	}
	m := &patternMeter{limit: limit}
	err = func() error {
		inst.meter = m
		defer func() {
			inst.meter = nil
			if !held {
				c.give(inst) // also if the validator panics: an instance lost would be a turn lost
			}
		}()
		return inst.schema.Validate(v)
	}()
	if m.over {
		return nil, m.used, work, &workError{patterns: true}
	}
	if err == nil {
		return nil, m.used, work, nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return nil, m.used, work, fmt.Errorf("schema validation: %w", err)
	}
	out := schemaErrors(ve)
	if len(out) == 0 { // a failure with no detail: say so at the root
		out = append(out, SchemaError{Keyword: "", Message: ve.ErrorKind.LocalizedString(printer)})
	}
	return out, m.used, work, nil
}

// schemaErrors returns how a validation failed: the leaves of its error
// tree in the order of where they failed, then of the keyword; the first
// maxSchemaErrors of them, whose messages alone are written (a number's
// exact message can cost thousands of multiplications).
func schemaErrors(ve *jsonschema.ValidationError) []SchemaError {
	var leaves []*jsonschema.ValidationError
	flattenErrors(ve, &leaves)
	slices.SortStableFunc(leaves, func(a, b *jsonschema.ValidationError) int {
		return cmp.Or(slices.CompareFunc(a.InstanceLocation, b.InstanceLocation, compareTokens),
			strings.Compare(leafKeyword(a), leafKeyword(b)))
	})
	out := make([]SchemaError, 0, min(len(leaves), maxSchemaErrors))
	for _, l := range leaves[:min(len(leaves), maxSchemaErrors)] {
		out = append(out, schemaError(l))
	}
	return out
}

// flattenErrors appends the leaves of a validation error tree, at most
// maxCollectedErrors of them: the keywords that failed, where they failed.
// The validator gives the causes of one error in map order: they are
// taken in the order of where they failed (the instance path, token by
// token), then of the keyword, so that one write always collects the same
// errors.
func flattenErrors(ve *jsonschema.ValidationError, out *[]*jsonschema.ValidationError) {
	if len(*out) >= maxCollectedErrors {
		return
	}
	if len(ve.Causes) > 0 {
		causes := slices.Clone(ve.Causes)
		slices.SortStableFunc(causes, func(a, b *jsonschema.ValidationError) int {
			if c := slices.CompareFunc(a.InstanceLocation, b.InstanceLocation, compareTokens); c != 0 {
				return c
			}
			if c := slices.Compare(a.ErrorKind.KeywordPath(), b.ErrorKind.KeywordPath()); c != 0 {
				return c
			}
			return strings.Compare(a.SchemaURL, b.SchemaURL)
		})
		for _, c := range causes {
			flattenErrors(c, out)
		}
		return
	}
	if _, ok := ve.ErrorKind.(*kind.Schema); ok {
		return
	}
	*out = append(*out, ve)
}

// leafKeyword is the keyword a leaf of a validation error tree failed.
func leafKeyword(ve *jsonschema.ValidationError) string {
	switch k := ve.ErrorKind.(type) {
	case *kind.Not:
		return "not" // the library names no keyword for these two
	case *kind.FalseSchema:
		return "false" // the subschema false, which nothing matches
	default:
		if kp := k.KeywordPath(); len(kp) > 0 {
			return kp[0] // ["dependentRequired", "prop"]: the keyword first
		}
	}
	return ""
}

// schemaError is the SchemaError of a leaf of a validation error tree.
func schemaError(ve *jsonschema.ValidationError) SchemaError {
	msg := shorten(numberMessage(ve.ErrorKind)) // it may quote a whole value
	if p, ok := ve.ErrorKind.(*kind.Pattern); ok {
		if r := (&costlyRegexp{insts: patternInsts(p.Want)}); r.tooCostly(len(p.Got)) {
			msg = fmt.Sprintf("a string of %d bytes is too long to check against pattern %q (at most %d bytes for it)",
				len(p.Got), shorten(p.Want), maxPatternWork/max(r.insts, 1))
		}
	}
	var ptr strings.Builder
	for _, tok := range ve.InstanceLocation {
		ptr.WriteByte('/')
		ptr.WriteString(pointerEscaper.Replace(tok))
	}
	return SchemaError{InstancePath: ptr.String(), Keyword: leafKeyword(ve), Message: msg}
}

// compareTokens orders two tokens of instance paths: array indices by
// their numbers (/items/9 before /items/10), anything else by its bytes.
func compareTokens(a, b string) int {
	if digits(a) && digits(b) && len(a) != len(b) {
		return cmp.Compare(len(a), len(b))
	}
	return strings.Compare(a, b)
}

// digits reports whether s is an array index: digits without a leading
// zero.
func digits(s string) bool {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// numberMessage is the message of an error kind, with the numbers of the
// numeric keywords written exactly: the validator's own messages go through
// float64 ("got 9.007199254740992×10¹⁵, want 9.007199254740992×10¹⁵" for
// 9007199254740993 against a maximum of 9007199254740992).
func numberMessage(k jsonschema.ErrorKind) string {
	var name string
	var got, want *big.Rat
	switch k := k.(type) {
	case *kind.Minimum:
		name, got, want = "minimum", k.Got, k.Want
	case *kind.Maximum:
		name, got, want = "maximum", k.Got, k.Want
	case *kind.ExclusiveMinimum:
		name, got, want = "exclusiveMinimum", k.Got, k.Want
	case *kind.ExclusiveMaximum:
		name, got, want = "exclusiveMaximum", k.Got, k.Want
	case *kind.MultipleOf:
		name, got, want = "multipleOf", k.Got, k.Want
	default:
		return k.LocalizedString(printer)
	}
	return fmt.Sprintf("%s: got %s, want %s", name, exactDecimal(got), exactDecimal(want))
}

// exactDecimal writes a rational number from a JSON number (its
// denominator divides a power of ten) in decimal, exactly; another one to
// 20 places.
func exactDecimal(r *big.Rat) string {
	if r.IsInt() {
		return r.Num().String()
	}
	p, ten, rem := big.NewInt(10), big.NewInt(10), new(big.Int)
	for places := 1; places <= 2*maxNumberExponent+maxNumberDigits; places++ {
		if rem.Mod(p, r.Denom()).Sign() == 0 {
			return r.FloatString(places)
		}
		p.Mul(p, ten)
	}
	return r.FloatString(20)
}

// schemaFor returns the compiled schema of a collection, nil when it has
// none. It reads the schema's current ETag from the store and compiles
// the schema again only when that changed.
func (s *Service) schemaFor(ctx context.Context, coll string) (*compiledSchema, error) {
	etag, err := s.store.ETag(ctx, store.SchemaCollection, coll)
	if errors.Is(err, store.ErrNotFound) {
		s.schemas.mu.Lock()
		delete(s.schemas.m, coll)
		s.schemas.mu.Unlock()
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s.schemas.mu.Lock()
	c := s.schemas.m[coll]
	s.schemas.mu.Unlock()
	if c != nil && c.etag == etag {
		return c, nil
	}
	doc, err := s.store.Get(ctx, store.SchemaCollection, coll)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil // deleted meanwhile
	}
	if err != nil {
		return nil, err
	}
	sch, err := compileSchema(coll, doc.Body)
	if err != nil {
		// Only a schema put in place around the API (an import) can get
		// here: writes to the collection fail until it is replaced.
		s.log.Error("the stored schema does not compile", "collection", coll, "etag", doc.ETag, "err", err)
		return nil, fmt.Errorf("the stored schema of collection %s does not compile: %v", coll, err)
	}
	c = sch
	c.etag = doc.ETag
	s.schemas.mu.Lock()
	s.schemas.m[coll] = c
	s.schemas.mu.Unlock()
	return c, nil
}
