package patch_test

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/patchd/patchd/internal/benchdoc"
	"github.com/patchd/patchd/patch"
)

// The hot path of a write, piece by piece, on documents of 1 KB, 100 KB
// and 1 MB (internal/benchdoc). Run with
//
//	go test -run='^$' -bench=. -benchmem ./patch

var benchLimits = patch.Limits{MaxDepth: 64, MaxDoc: 1 << 20, MaxOps: 1000}

func parseBench(b *testing.B, data []byte) any {
	b.Helper()
	v, err := patch.Parse(data, patch.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkParse decodes a stored (canonical) body into a tree.
func BenchmarkParse(b *testing.B) {
	for _, s := range benchdoc.Sizes {
		data := benchdoc.Doc(s.Bytes, 1)
		b.Run(s.Name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := patch.Parse(data, benchLimits); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCanonicalHash is what a write spends on the representation:
// the canonical bytes of a tree and their SHA-256 (the ETag).
func BenchmarkCanonicalHash(b *testing.B) {
	for _, s := range benchdoc.Sizes {
		data := benchdoc.Doc(s.Bytes, 1)
		doc := parseBench(b, data)
		b.Run(s.Name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				body, err := patch.CheckDocument(doc, benchLimits)
				if err != nil {
					b.Fatal(err)
				}
				sha256.Sum256(body)
			}
		})
	}
}

// BenchmarkParseCanonicalHash is a PUT body's whole trip: parse,
// canonicalize, hash.
func BenchmarkParseCanonicalHash(b *testing.B) {
	for _, s := range benchdoc.Sizes {
		data := benchdoc.Doc(s.Bytes, 1)
		b.Run(s.Name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				doc, err := patch.Parse(data, benchLimits)
				if err != nil {
					b.Fatal(err)
				}
				body, err := patch.CheckDocument(doc, benchLimits)
				if err != nil {
					b.Fatal(err)
				}
				sha256.Sum256(body)
			}
		})
	}
}

// BenchmarkValidateApply validates a one-op JSON Patch and applies it to a
// parsed document (the document stays parsed between iterations: this is
// the cost of the patch alone).
func BenchmarkValidateApply(b *testing.B) {
	for _, s := range benchdoc.Sizes {
		doc := parseBench(b, benchdoc.Doc(s.Bytes, 1))
		b.Run(s.Name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				ops, err := patch.ParseJSONPatch(benchdoc.ReplaceN(i), benchLimits)
				if err != nil {
					b.Fatal(err)
				}
				if doc, _, err = patch.Apply(doc, ops, benchLimits); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// freshWrite is the CPU work of a fresh-If-Match JSON Patch: parse the
// stored body, validate and apply the patch, canonicalize and hash the
// result, encode the history ops. It returns the new body.
func freshWrite(b *testing.B, stored, body []byte) []byte {
	doc, err := patch.Parse(stored, patch.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	ops, err := patch.ParseJSONPatch(body, benchLimits)
	if err != nil {
		b.Fatal(err)
	}
	res, nops, err := patch.Apply(doc, ops, benchLimits)
	if err != nil {
		b.Fatal(err)
	}
	out, err := patch.CheckDocument(res, benchLimits)
	if err != nil {
		b.Fatal(err)
	}
	patch.EncodeOps(nops)
	sha256.Sum256(out)
	return out
}

// BenchmarkFreshWrite is the whole CPU work of a fresh PATCH (freshWrite),
// without HTTP or storage.
func BenchmarkFreshWrite(b *testing.B) {
	for _, s := range benchdoc.Sizes {
		stored := benchdoc.Doc(s.Bytes, 1)
		b.Run(s.Name, func(b *testing.B) {
			b.SetBytes(int64(len(stored)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				freshWrite(b, stored, benchdoc.ReplaceN(i))
			}
		})
	}
}

// spliceWrite is freshWrite through ApplyCanonical, the path patchd takes
// for such a patch: no parse and no re-encode of the document.
func spliceWrite(b *testing.B, stored, body []byte) []byte {
	ops, err := patch.ParseJSONPatch(body, benchLimits)
	if err != nil {
		b.Fatal(err)
	}
	out, nops, ok := patch.ApplyCanonical(stored, ops, benchLimits)
	if !ok {
		b.Fatal("ApplyCanonical declined")
	}
	patch.EncodeOps(nops)
	sha256.Sum256(out)
	return out
}

// BenchmarkSpliceWrite is BenchmarkFreshWrite through ApplyCanonical.
func BenchmarkSpliceWrite(b *testing.B) {
	for _, s := range benchdoc.Sizes {
		stored := benchdoc.Doc(s.Bytes, 1)
		b.Run(s.Name, func(b *testing.B) {
			b.SetBytes(int64(len(stored)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				spliceWrite(b, stored, benchdoc.ReplaceN(i))
			}
		})
	}
}

// BenchmarkEvanphx is the reference the targets name: evanphx/json-patch
// decoding and applying the same one-op patch to the same bytes, then the
// result canonicalized by jsontext (numbers kept) and hashed; the three
// stages are also timed alone.
func BenchmarkEvanphx(b *testing.B) {
	opts := jsonpatch.NewApplyOptions()
	opts.SupportNegativeIndices = false
	opts.AccumulatedCopySizeLimit = 1 << 20
	opts.EscapeHTML = false
	for _, s := range benchdoc.Sizes {
		stored := benchdoc.Doc(s.Bytes, 1)
		apply := func(b *testing.B, i int) []byte {
			p, err := jsonpatch.DecodePatch(benchdoc.ReplaceN(i))
			if err != nil {
				b.Fatal(err)
			}
			out, err := p.ApplyWithOptions(stored, opts)
			if err != nil {
				b.Fatal(err)
			}
			return out
		}
		canon := func(b *testing.B, out []byte) []byte {
			v := jsontext.Value(out)
			if err := v.Canonicalize(jsontext.CanonicalizeRawInts(false), jsontext.CanonicalizeRawFloats(false)); err != nil {
				b.Fatal(err)
			}
			return v
		}
		b.Run("Apply/"+s.Name, func(b *testing.B) {
			b.SetBytes(int64(len(stored)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				apply(b, i)
			}
		})
		b.Run("Canonicalize/"+s.Name, func(b *testing.B) {
			b.SetBytes(int64(len(stored)))
			b.ReportAllocs()
			out := apply(b, 1)
			buf := make([]byte, len(out))
			for b.Loop() {
				copy(buf, out)
				canon(b, buf)
			}
		})
		b.Run("ApplyCanonicalize/"+s.Name, func(b *testing.B) {
			b.SetBytes(int64(len(stored)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				canon(b, apply(b, i))
			}
		})
		b.Run("ApplyCanonicalizeHash/"+s.Name, func(b *testing.B) {
			b.SetBytes(int64(len(stored)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				sha256.Sum256(canon(b, apply(b, i)))
			}
		})
	}
}

// rebaseSetup returns a 1 KB document with 32 extra members c00..c31, the
// history of k single-field versions committed since a base (each sets one
// of the c members, round robin), encoded as the store keeps them, and the
// current document.
func rebaseSetup(b *testing.B, k int) (current []byte, history [][]byte) {
	b.Helper()
	doc := parseBench(b, benchdoc.Doc(1<<10, 1)).(map[string]any)
	for j := range 32 {
		doc[fmt.Sprintf("c%02d", j)] = patch.Number("0")
	}
	for j := range k {
		p := fmt.Appendf(nil, `[{"op":"replace","path":"/c%02d","value":%d}]`, j%32, j+1)
		ops, err := patch.ParseJSONPatch(p, benchLimits)
		if err != nil {
			b.Fatal(err)
		}
		res, nops, err := patch.Apply(doc, ops, benchLimits)
		if err != nil {
			b.Fatal(err)
		}
		doc = res.(map[string]any)
		history = append(history, patch.EncodeOps(nops))
	}
	return patch.Canonical(doc), history
}

// BenchmarkRebase is the CPU work of a stale-If-Match JSON Patch rebased
// over k concurrent single-field versions: parse the current body,
// RebaseOnto (rebuild the base, apply, transform, apply to current),
// canonicalize, hash and encode the ops. The k versions' ops are decoded
// once, as patchd's cache of decoded history does on a hot document;
// Decode/k=K decodes them every time (a cold cache). Fresh/k=K is
// freshWrite on the same document, for the ratio.
func BenchmarkRebase(b *testing.B) {
	for _, k := range []int{1, 10, 100, 1000} {
		current, history := rebaseSetup(b, k)
		edit := benchdoc.ReplaceN(7)
		decode := func(b *testing.B) []patch.Committed {
			since := make([]patch.Committed, len(history))
			for i, h := range history {
				ops, err := patch.DecodeOps(h)
				if err != nil {
					b.Fatal(err)
				}
				since[i] = patch.Committed{Seq: uint64(i + 2), Ops: ops}
			}
			return since
		}
		rebase := func(b *testing.B, since []patch.Committed) {
			doc, err := patch.Parse(current, patch.Limits{})
			if err != nil {
				b.Fatal(err)
			}
			ops, err := patch.ParseJSONPatch(edit, benchLimits)
			if err != nil {
				b.Fatal(err)
			}
			res, nops, err := patch.RebaseOnto(doc, since, func(base any) (any, []patch.Op, error) {
				return patch.Apply(base, ops, benchLimits)
			}, patch.RebaseLimits{})
			if err != nil {
				b.Fatal(err)
			}
			out, err := patch.CheckDocument(res, benchLimits)
			if err != nil {
				b.Fatal(err)
			}
			patch.EncodeOps(nops)
			sha256.Sum256(out)
		}
		b.Run(fmt.Sprintf("Fresh/k=%d", k), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				freshWrite(b, current, edit)
			}
		})
		b.Run(fmt.Sprintf("Rebase/k=%d", k), func(b *testing.B) {
			b.ReportAllocs()
			since := decode(b)
			for b.Loop() {
				rebase(b, since)
			}
		})
		b.Run(fmt.Sprintf("Decode/k=%d", k), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rebase(b, decode(b))
			}
		})
	}
}

// BenchmarkTargetRebase100CPU is the CPU side of README's rebase target,
// interleaved: the work of a patch rebased over 100 single-field versions
// (decoded ops cached, as on a hot document), against the work of the same
// patch with the current ETag, through the tree (freshWrite) and through
// ApplyCanonical (what patchd does for it). The target itself is on whole
// requests (handlers' BenchmarkTargetRebase100).
func BenchmarkTargetRebase100CPU(b *testing.B) {
	current, history := rebaseSetup(b, 100)
	edit := benchdoc.ReplaceN(7)
	since := make([]patch.Committed, len(history))
	for i, h := range history {
		ops, err := patch.DecodeOps(h)
		if err != nil {
			b.Fatal(err)
		}
		since[i] = patch.Committed{Seq: uint64(i + 2), Ops: ops}
	}
	var tTree, tSplice, tRebase time.Duration
	n := 0
	for b.Loop() {
		t0 := time.Now()
		freshWrite(b, current, edit)
		t1 := time.Now()
		spliceWrite(b, current, edit)
		t2 := time.Now()
		doc, err := patch.Parse(current, patch.Limits{})
		if err != nil {
			b.Fatal(err)
		}
		ops, err := patch.ParseJSONPatch(edit, benchLimits)
		if err != nil {
			b.Fatal(err)
		}
		res, nops, err := patch.RebaseOnto(doc, since, func(base any) (any, []patch.Op, error) {
			return patch.Apply(base, ops, benchLimits)
		}, patch.RebaseLimits{})
		if err != nil {
			b.Fatal(err)
		}
		out, err := patch.CheckDocument(res, benchLimits)
		if err != nil {
			b.Fatal(err)
		}
		patch.EncodeOps(nops)
		sha256.Sum256(out)
		tRebase += time.Since(t2)
		tTree += t1.Sub(t0)
		tSplice += t2.Sub(t1)
		n++
	}
	b.ReportMetric(float64(tRebase)/float64(tTree), "rebase/tree")
	b.ReportMetric(float64(tRebase)/float64(tSplice), "rebase/splice")
}
