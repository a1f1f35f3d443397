package faults

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
)

// The linearizability model: a sequential specification of the part of
// the API the history uses, documents of nFields string fields, in which
// a stale edit is allowed exactly when REBASE.md allows it.

// nFields is the number of fields every document of the test has.
const nFields = 8

// fields is a document: field i is "f<i>". Every document of the test has
// all of them.
type fields [nFields]string

// canonical returns patchd's canonical JSON of the document: members
// sorted, no white space. Values are plain ASCII without escapes.
func (f fields) canonical() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, v := range f {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"f%d":"%s"`, i, v)
	}
	b.WriteByte('}')
	return b.String()
}

// etag returns patchd's ETag of the document.
func (f fields) etag() string {
	sum := sha256.Sum256([]byte(f.canonical()))
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

// parseFields decodes a document body; ok is false unless it has
// exactly the fields f0..f7, all strings.
func parseFields(body []byte) (fields, bool) {
	var m map[string]string
	var f fields
	if json.Unmarshal(body, &m) != nil || len(m) != nFields {
		return f, false
	}
	for i := range f {
		v, ok := m[fmt.Sprintf("f%d", i)]
		if !ok {
			return f, false
		}
		f[i] = v
	}
	return f, true
}

// Operations of the model.
const (
	opGet    = "get"    // GET
	opCreate = "create" // PUT with If-None-Match: * and every field
	opMerge  = "merge"  // PATCH merge-patch+json setting fields
	opJSON   = "json"   // PATCH json-patch+json: test Reads, replace Set
	opPut    = "put"    // PUT with If-Match: Base with Set applied
	opDelete = "delete" // DELETE with If-Match
)

// input is one request of the history.
type input struct {
	Op      string
	Doc     int            // the document (the partition key)
	IfMatch string         // "" for none
	Strict  bool           // Prefer: handling=strict
	Set     map[int]string // fields written, with their new values
	Reads   map[int]string // fields a JSON Patch tests, with the values tested
	Base    fields         // put: the version the client edited; create: the body
}

// output is what came back. Status 0 means no answer: a timeout, a
// reset, a kill. Such a request may or may not have been applied.
type output struct {
	Status      int
	Problem     string // problem type name of an error answer
	ETag        string
	RebasedFrom string // the Rebased-From header
	Body        fields // for 200 and 201 answers with a body
}

// version is one entry of a document's history in the model.
type version struct {
	ETag    string // "" for a delete
	Changed uint32 // bit i: field i written
	Root    bool   // created or deleted the whole document
}

// state is one document.
type state struct {
	Exists bool
	Doc    fields
	Hist   []version
}

// key returns a string that identifies the state, for Equal and Hash.
func (s state) key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v|%s|", s.Exists, s.Doc.canonical())
	for _, v := range s.Hist {
		fmt.Fprintf(&b, "%s:%x:%v;", v.ETag, v.Changed, v.Root)
	}
	return b.String()
}

// with returns s after committing doc with a new version.
func (s state) with(doc fields, exists bool, v version) state {
	h := make([]version, len(s.Hist), len(s.Hist)+1)
	copy(h, s.Hist)
	return state{Exists: exists, Doc: doc, Hist: append(h, v)}
}

// expected is what the model says one request does from a state: the
// answer it must get, and the state after it when it commits.
type expected struct {
	out     output // Status and Problem, and ETag and Body for 2xx
	next    state
	commits bool // the request, if applied, makes next
}

// decide runs one request against a state.
func decide(s state, in input) expected {
	fail := func(status int, problem string) expected {
		return expected{out: output{Status: status, Problem: problem}}
	}
	switch in.Op {
	case opCreate:
		if s.Exists {
			return fail(412, "precondition-failed")
		}
		return expected{out: output{Status: 201, ETag: in.Base.etag(), Body: in.Base}, commits: true,
			next: s.with(in.Base, true, version{ETag: in.Base.etag(), Root: true})}
	case opDelete:
		switch {
		case !s.Exists:
			return fail(404, "not-found")
		case in.IfMatch != s.Doc.etag():
			return fail(412, "precondition-failed")
		}
		return expected{out: output{Status: 204}, commits: true, next: s.with(fields{}, false, version{Root: true})}
	}
	// merge, json, put
	if !s.Exists {
		if in.Op == opPut {
			return fail(412, "precondition-failed") // If-Match and no document
		}
		return fail(404, "not-found")
	}
	var writes, reads uint32
	for i := range in.Set {
		writes |= 1 << i
	}
	for i := range in.Reads {
		reads |= 1 << i
	}
	result, rebasedFrom := s.Doc, ""
	if in.IfMatch == s.Doc.etag() {
		if in.Op == opPut {
			result = in.Base
		}
		// Tests pass: the client read them from this very content.
	} else {
		if in.Strict {
			return fail(412, "precondition-failed")
		}
		base := -1
		for i := len(s.Hist) - 1; i >= 0; i-- {
			if s.Hist[i].ETag != "" && s.Hist[i].ETag == in.IfMatch {
				base = i
				break
			}
		}
		if base < 0 {
			return fail(412, "base-unknown")
		}
		for _, v := range s.Hist[base+1:] {
			if v.Root || v.Changed&(writes|reads) != 0 {
				return fail(412, "rebase-conflict")
			}
		}
		rebasedFrom = in.IfMatch
	}
	for i, v := range in.Set {
		result[i] = v
	}
	if result == s.Doc {
		return expected{out: output{Status: 200, ETag: s.Doc.etag(), Body: s.Doc, RebasedFrom: rebasedFrom}}
	}
	var changed uint32
	for i := range result {
		if result[i] != s.Doc[i] {
			changed |= 1 << i
		}
	}
	return expected{out: output{Status: 200, ETag: result.etag(), Body: result, RebasedFrom: rebasedFrom}, commits: true,
		next: s.with(result, true, version{ETag: result.etag(), Changed: changed})}
}

// step is the model's Step: the states possible after the request.
func step(st, inp, outp any) []any {
	s, in, out := st.(state), inp.(input), outp.(output)
	if in.Op == opGet {
		switch {
		case out.Status == 0:
			return []any{s}
		case !s.Exists && out.Status == 404 && out.Problem == "not-found":
			return []any{s}
		case s.Exists && out.Status == 200 && out.Body == s.Doc && out.ETag == s.Doc.etag():
			return []any{s}
		}
		return nil
	}
	e := decide(s, in)
	if out.Status == 0 {
		if e.commits {
			return []any{s, e.next} // maybe applied
		}
		return []any{s}
	}
	if out.Status != e.out.Status || out.Problem != e.out.Problem {
		return nil
	}
	if out.Status == 200 || out.Status == 201 {
		if out.ETag != e.out.ETag || out.Body != e.out.Body || out.RebasedFrom != e.out.RebasedFrom {
			return nil
		}
	}
	if e.commits {
		return []any{e.next}
	}
	return []any{s}
}

// model is the porcupine model, partitioned by document.
var model = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[int][]porcupine.Operation{}
		for _, op := range h {
			d := op.Input.(input).Doc
			by[d] = append(by[d], op)
		}
		keys := make([]int, 0, len(by))
		for k := range by {
			keys = append(keys, k)
		}
		sort.Ints(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() []any { return []any{state{}} },
	Step: step,
	Equal: func(a, b any) bool {
		return a.(state).key() == b.(state).key()
	},
	Hash: func(a any) uint64 {
		h := fnv.New64a()
		h.Write([]byte(a.(state).key()))
		return h.Sum64()
	},
	DescribeOperation: func(inp, outp any) string {
		in, out := inp.(input), outp.(output)
		return fmt.Sprintf("doc%d %s if-match=%s strict=%v set=%v reads=%v -> %d %s %s", in.Doc, in.Op, in.IfMatch, in.Strict, in.Set, in.Reads, out.Status, out.Problem, out.ETag)
	},
	DescribeState: func(st any) string {
		s := st.(state)
		return fmt.Sprintf("exists=%v %s (%d versions)", s.Exists, s.Doc.canonical(), len(s.Hist))
	},
}
