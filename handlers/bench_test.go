package handlers_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/patchd/patchd/internal/benchdoc"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// Whole requests through the handler, over loopback, on a real bbolt file
// with fsync on: what a client waits for. Run with
//
//	go test -run='^$' -bench=. -benchmem ./handlers
//
// One client sends one request at a time, except in BenchmarkPatchParallel.

// benchServer is a patchd on a fresh bbolt file for a benchmark.
type benchServer struct {
	srv    *httptest.Server
	client *http.Client
}

func newBenchServer(b *testing.B) *benchServer {
	b.Helper()
	st, err := bolt.Open(filepath.Join(b.TempDir(), "bench.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(newHandler(st, newConfig()).Echo())
	b.Cleanup(func() {
		srv.Close()
		if err := st.Close(); err != nil {
			b.Error(err)
		}
	})
	tr := srv.Client().Transport.(*http.Transport)
	tr.MaxIdleConnsPerHost = 64
	return &benchServer{srv: srv, client: srv.Client()}
}

// do sends a request and returns the status and ETag, reading the body.
func (s *benchServer) do(b *testing.B, method, path string, h []string, body []byte) (int, string) {
	req, err := http.NewRequest(method, s.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Set(h[i], h[i+1])
	}
	res, err := s.client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		b.Fatal(err)
	}
	return res.StatusCode, res.Header.Get("ETag")
}

func (s *benchServer) put(b *testing.B, path string, body []byte) string {
	status, etag := s.do(b, http.MethodPut, path, []string{"Content-Type", ctJSON}, body)
	if status != http.StatusCreated {
		b.Fatalf("PUT %s: %d", path, status)
	}
	return etag
}

// patch sends a JSON Patch under If-Match and fails unless it is a 200.
func (s *benchServer) patch(b *testing.B, path, ifMatch string, body []byte) string {
	status, etag := s.do(b, http.MethodPatch, path, []string{"Content-Type", ctPatch, "If-Match", ifMatch}, body)
	if status != http.StatusOK {
		b.Fatalf("PATCH %s: %d", path, status)
	}
	return etag
}

// BenchmarkPatch is a one-op JSON Patch with the current ETag on a
// document of each size: the whole request, fsync included.
func BenchmarkPatch(b *testing.B) {
	for _, sz := range benchdoc.Sizes {
		b.Run(sz.Name, func(b *testing.B) {
			s := newBenchServer(b)
			doc := benchdoc.Doc(sz.Bytes, 1)
			etag := s.put(b, "/docs/b/d", doc)
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				etag = s.patch(b, "/docs/b/d", etag, benchdoc.ReplaceN(i))
			}
		})
	}
}

// BenchmarkPatchParallel is BenchmarkPatch/1KB from 32 concurrent clients
// on distinct documents, so that commits are shared.
func BenchmarkPatchParallel(b *testing.B) { benchPatchParallel(b, false) }

// BenchmarkPatchParallelSchema is BenchmarkPatchParallel in a collection
// with a realistic form schema (benchFormSchema): every write validates,
// and holds one of the schema's instances (as many as cores) from before
// its document's lock until it is decided.
func BenchmarkPatchParallelSchema(b *testing.B) { benchPatchParallel(b, true) }

func benchPatchParallel(b *testing.B, schema bool) {
	s := newBenchServer(b)
	if schema {
		if status, _ := s.do(b, http.MethodPut, "/schemas/b", []string{"Content-Type", ctJSON}, []byte(benchFormSchema)); status != http.StatusCreated {
			b.Fatalf("PUT schema: %d", status)
		}
	}
	const docs = 64
	etags := make([]atomic.Value, docs)
	for i := range docs {
		etags[i].Store(s.put(b, fmt.Sprintf("/docs/b/d%d", i), benchdoc.Doc(1<<10, i)))
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16) // 16 x GOMAXPROCS clients
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)) % docs // each goroutine owns its documents
		n := 0
		for pb.Next() {
			n++
			path := fmt.Sprintf("/docs/b/d%d", i)
			etags[i].Store(s.patch(b, path, etags[i].Load().(string), benchdoc.ReplaceN(n)))
		}
	})
}

// BenchmarkRebase is a one-op JSON Patch whose If-Match is k versions
// behind, each of them a single-field edit by someone else, rebased over
// all k; Fresh/k=K is the same patch with the current ETag on the same
// document, for the ratio. The document has k+1 extra fields c0000...; the
// patch at step t sets field t mod (k+1), which none of the k versions
// since its base touched, so that every rebase succeeds.
func BenchmarkRebase(b *testing.B) {
	for _, k := range []int{1, 10, 100, 1000} {
		setup := func(b *testing.B) (*benchServer, string) {
			s := newBenchServer(b)
			var doc strings.Builder
			doc.WriteString("{")
			for f := 0; f <= k; f++ {
				fmt.Fprintf(&doc, `"c%04d":0,`, f)
			}
			doc.Write(benchdoc.Doc(1<<10, 1)[1:])
			return s, s.put(b, "/docs/b/d", []byte(doc.String()))
		}
		edit := func(t int) []byte {
			return fmt.Appendf(nil, `[{"op":"replace","path":"/c%04d","value":%d}]`, t%(k+1), t+1)
		}
		b.Run(fmt.Sprintf("Fresh/k=%d", k), func(b *testing.B) {
			s, etag := setup(b)
			b.ReportAllocs()
			t := 0
			for b.Loop() {
				etag = s.patch(b, "/docs/b/d", etag, edit(t))
				t++
			}
		})
		b.Run(fmt.Sprintf("Rebase/k=%d", k), func(b *testing.B) {
			s, first := setup(b)
			after := make([]string, k+1) // after[t mod (k+1)]: the ETag after step t
			for t := range k {           // warm up: steps 0..k-1, all from the first version
				after[t] = s.patch(b, "/docs/b/d", first, edit(t))
			}
			b.ReportAllocs()
			t := k
			for b.Loop() {
				slot := t % (k + 1) // holds the ETag after step t-k-1: k versions ago
				base := after[slot]
				if t == k {
					base = first
				}
				after[slot] = s.patch(b, "/docs/b/d", base, edit(t))
				t++
			}
		})
	}
}

// BenchmarkGet is a GET of a 1 KB document: 200 with the body, and 304
// with If-None-Match.
func BenchmarkGet(b *testing.B) {
	s := newBenchServer(b)
	etag := s.put(b, "/docs/b/d", benchdoc.Doc(1<<10, 1))
	b.Run("200", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if status, _ := s.do(b, http.MethodGet, "/docs/b/d", nil, nil); status != http.StatusOK {
				b.Fatal(status)
			}
		}
	})
	b.Run("304", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if status, _ := s.do(b, http.MethodGet, "/docs/b/d", []string{"If-None-Match", etag}, nil); status != http.StatusNotModified {
				b.Fatal(status)
			}
		}
	})
}

// BenchmarkPresence: a renewal of a presence session (PUT), and the
// listing of a document's 10 sessions (GET), beside BenchmarkGet.
func BenchmarkPresence(b *testing.B) {
	s := newBenchServer(b)
	body := []byte(`{"name":"Ann","color":"#c33","focus":"/items/3/qty","data":{"typing":true}}`)
	ct := []string{"Content-Type", "application/json"}
	for i := range 10 {
		if status, _ := s.do(b, http.MethodPut, fmt.Sprintf("/docs/b/d/presence/session-%012d", i), ct, body); status != http.StatusOK {
			b.Fatal(status)
		}
	}
	b.Run("Put", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if status, _ := s.do(b, http.MethodPut, "/docs/b/d/presence/session-000000000000", ct, body); status != http.StatusOK {
				b.Fatal(status)
			}
		}
	})
	b.Run("Get10", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if status, _ := s.do(b, http.MethodGet, "/docs/b/d/presence", nil, nil); status != http.StatusOK {
				b.Fatal(status)
			}
		}
	})
}

// The performance targets that compare two costs are measured interleaved,
// iteration by iteration, so that noise on a shared machine hits both
// sides alike; each reports both costs and their ratio.

// BenchmarkTargetLargePatch: a one-op JSON Patch of a 1 MB document,
// the whole request with fsync, against evanphx/json-patch applying the
// same patch to the same bytes plus jsontext canonicalization alone.
// Target: ratio at most 1.5.
func BenchmarkTargetLargePatch(b *testing.B) {
	s := newBenchServer(b)
	doc := benchdoc.Doc(1000<<10, 1)
	etag := s.put(b, "/docs/b/d", doc)
	opts := jsonpatch.NewApplyOptions()
	opts.SupportNegativeIndices, opts.EscapeHTML = false, false
	opts.AccumulatedCopySizeLimit = 1 << 20
	var ref, ours time.Duration
	i := 0
	for b.Loop() {
		i++
		t0 := time.Now()
		p, err := jsonpatch.DecodePatch(benchdoc.ReplaceN(i))
		if err != nil {
			b.Fatal(err)
		}
		out, err := p.ApplyWithOptions(doc, opts)
		if err != nil {
			b.Fatal(err)
		}
		v := jsontext.Value(out)
		if err := v.Canonicalize(jsontext.CanonicalizeRawInts(false), jsontext.CanonicalizeRawFloats(false)); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		etag = s.patch(b, "/docs/b/d", etag, benchdoc.ReplaceN(i))
		ours += time.Since(t1)
		ref += t1.Sub(t0)
	}
	b.ReportMetric(float64(ref.Nanoseconds())/float64(i), "evanphx-ns/op")
	b.ReportMetric(float64(ours.Nanoseconds())/float64(i), "patchd-ns/op")
	b.ReportMetric(float64(ours)/float64(ref), "ratio")
}

// BenchmarkTargetRebase100: a one-op JSON Patch rebased over 100
// concurrent single-field versions (as in BenchmarkRebase), against the
// same patch with the current ETag on a document of the same shape; whole
// requests with fsync. Target: ratio at most 2.
func BenchmarkTargetRebase100(b *testing.B) {
	const k = 100
	s := newBenchServer(b)
	var doc strings.Builder
	doc.WriteString("{")
	for f := 0; f <= k; f++ {
		fmt.Fprintf(&doc, `"c%04d":0,`, f)
	}
	doc.Write(benchdoc.Doc(1<<10, 1)[1:])
	fresh := s.put(b, "/docs/b/fresh", []byte(doc.String()))
	first := s.put(b, "/docs/b/stale", []byte(doc.String()))
	edit := func(t int) []byte {
		return fmt.Appendf(nil, `[{"op":"replace","path":"/c%04d","value":%d}]`, t%(k+1), t+1)
	}
	after := make([]string, k+1)
	for t := range k {
		after[t] = s.patch(b, "/docs/b/stale", first, edit(t))
	}
	var tf, tr time.Duration
	n := 0
	t := k
	for b.Loop() {
		t0 := time.Now()
		fresh = s.patch(b, "/docs/b/fresh", fresh, edit(t))
		t1 := time.Now()
		slot := t % (k + 1)
		base := after[slot]
		if t == k {
			base = first
		}
		after[slot] = s.patch(b, "/docs/b/stale", base, edit(t))
		tr += time.Since(t1)
		tf += t1.Sub(t0)
		t++
		n++
	}
	b.ReportMetric(float64(tf.Nanoseconds())/float64(n), "fresh-ns/op")
	b.ReportMetric(float64(tr.Nanoseconds())/float64(n), "rebase-ns/op")
	b.ReportMetric(float64(tr)/float64(tf), "ratio")
}

// benchFormSchema is a realistic schema of benchdoc's documents: an
// order form with typed, bounded and patterned fields and line items.
const benchFormSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["email", "name", "items", "n"],
  "additionalProperties": false,
  "properties": {
    "email": {"type": "string", "format": "email", "maxLength": 254},
    "name": {"type": "string", "minLength": 1, "maxLength": 100},
    "phone": {"type": "string", "pattern": "^555-[0-9]{4}$"},
    "notes": {"type": "string", "maxLength": 2000},
    "n": {"type": "integer", "minimum": 0},
    "items": {"type": "array", "maxItems": 1000, "items": {"$ref": "#/$defs/item"}}
  },
  "$defs": {
    "item": {
      "type": "object",
      "required": ["sku", "qty", "price"],
      "additionalProperties": false,
      "properties": {
        "sku": {"type": "string", "pattern": "^SKU-[0-9]{6}$"},
        "qty": {"type": "integer", "minimum": 1, "maximum": 99},
        "price": {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "uniqueItems": true}
      }
    }
  }
}`

// BenchmarkTargetSchema: a one-op JSON Patch of a 1 KB document in a
// collection with a realistic form schema (benchFormSchema), against the
// same patch of the same document in a collection without one; whole
// requests with fsync, interleaved. Target: ratio under 1.2.
func BenchmarkTargetSchema(b *testing.B) {
	s := newBenchServer(b)
	if status, _ := s.do(b, http.MethodPut, "/schemas/forms", []string{"Content-Type", ctJSON}, []byte(benchFormSchema)); status != http.StatusCreated {
		b.Fatalf("PUT schema: %d", status)
	}
	doc := benchdoc.Doc(1<<10, 1)
	plain := s.put(b, "/docs/plain/d", doc)
	forms := s.put(b, "/docs/forms/d", doc)
	// The schema is enforced: a patch that breaks it is refused.
	if status, _ := s.do(b, http.MethodPatch, "/docs/forms/d", []string{"Content-Type", ctPatch, "If-Match", forms}, []byte(`[{"op":"replace","path":"/n","value":-1}]`)); status != http.StatusUnprocessableEntity {
		b.Fatalf("a patch that breaks the schema: %d", status)
	}
	var tp, ts time.Duration
	n := 0
	for b.Loop() {
		n++
		t0 := time.Now()
		plain = s.patch(b, "/docs/plain/d", plain, benchdoc.ReplaceN(n))
		t1 := time.Now()
		forms = s.patch(b, "/docs/forms/d", forms, benchdoc.ReplaceN(n))
		ts += time.Since(t1)
		tp += t1.Sub(t0)
	}
	b.ReportMetric(float64(tp.Nanoseconds())/float64(n), "plain-ns/op")
	b.ReportMetric(float64(ts.Nanoseconds())/float64(n), "schema-ns/op")
	b.ReportMetric(float64(ts)/float64(tp), "ratio")
}
