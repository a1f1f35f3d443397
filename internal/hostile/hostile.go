// Package hostile replays the corpus of hostile and broken requests in
// testdata/hostile against a running patchd and checks every answer: the
// status and problem type the corpus expects, never a 5xx, an answer
// within a time bound, and no change to the stored documents unless the
// case says exactly which one it creates.
//
// Requests are written byte for byte on a fresh TCP connection, so that a
// case can hold what an HTTP client library would refuse to send.
package hostile

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// Part is a piece of a generated body or header value: S, or the bytes
// Hex spells (for bytes a JSON string cannot hold, such as invalid UTF-8),
// repeated N times (once when N is 0). With Range [from, to, step], S is
// a fmt format with one %d, written for each number of the range instead.
type Part struct {
	S     string  `json:"s,omitempty"`
	Hex   string  `json:"hex,omitempty"`
	N     int     `json:"n,omitempty"`
	Range *[3]int `json:"range,omitempty"`
}

// Text is a literal string or a list of parts.
type Text struct {
	Literal *string
	Parts   []Part
}

// UnmarshalJSON accepts a string or an array of parts.
func (t *Text) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		t.Literal = &s
		return nil
	}
	return json.Unmarshal(b, &t.Parts)
}

// build returns the text with placeholders replaced.
func (t *Text) build(vars map[string]string) []byte {
	if t == nil {
		return nil
	}
	var b bytes.Buffer
	if t.Literal != nil {
		b.WriteString(*t.Literal)
	}
	for _, p := range t.Parts {
		n := p.N
		if n == 0 {
			n = 1
		}
		if r := p.Range; r != nil {
			for i := r[0]; (r[2] > 0 && i < r[1]) || (r[2] < 0 && i > r[1]); i += r[2] {
				fmt.Fprintf(&b, p.S, i)
			}
			continue
		}
		piece := []byte(p.S)
		if p.Hex != "" {
			piece, _ = hex.DecodeString(p.Hex) // checked by Load
		}
		for range n {
			b.Write(piece)
		}
	}
	out := b.Bytes()
	for k, v := range vars {
		out = bytes.ReplaceAll(out, []byte(k), []byte(v))
	}
	return out
}

// Fixture is a document created before the cases run.
type Fixture struct {
	Path string `json:"path"`
	Body Text   `json:"body"`
	// Var names the placeholder (such as $ETAG) that cases use for the
	// fixture's ETag.
	Var string `json:"var"`
}

// Case is one request and what must come of it.
type Case struct {
	Name string `json:"name"`
	// Why says what the case attacks.
	Why    string `json:"why"`
	Method string `json:"method"`
	Path   string `json:"path"`
	// Headers are name, value pairs sent in order (duplicates allowed).
	Headers [][2]string `json:"headers"`
	// BigHeaders are generated header values.
	BigHeaders map[string]Text `json:"bigHeaders"`
	Body       *Text           `json:"body"`
	// Chunked sends the body with Transfer-Encoding: chunked instead of
	// Content-Length.
	Chunked bool `json:"chunked"`
	// ContentLength, when not empty, is sent instead of the body's length.
	ContentLength string `json:"contentLength"`
	// Raw is sent verbatim instead of a request built from the fields
	// above; {{auth}} in it stands for the Options.Header lines.
	Raw *Text `json:"raw"`
	// OnlyWithoutHeader skips the case when Options.Header is set (a case
	// about requests without credentials).
	OnlyWithoutHeader bool `json:"onlyWithoutHeader"`

	Status int `json:"status"`
	// Problem is the problem type name of an error answer.
	Problem string `json:"problem"`
	// Transport marks requests that Go's net/http refuses before patchd
	// sees them: its answers are plain text, not problem+json.
	Transport bool `json:"transport"`
	// Stored, for a write that succeeds, is the exact body then stored at
	// Path; every other case must leave every document as it was.
	Stored *Text `json:"stored"`
}

// Corpus is the file testdata/hostile/cases.json.
type Corpus struct {
	Collection string    `json:"collection"`
	Fixtures   []Fixture `json:"fixtures"`
	Cases      []Case    `json:"cases"`
}

// Load reads a corpus file.
func Load(path string) (*Corpus, error) {
	b, err := os.ReadFile(path) // #nosec G304 -- a test fixture path
	if err != nil {
		return nil, err
	}
	var c Corpus
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	names := map[string]bool{}
	for _, tc := range c.Cases {
		if names[tc.Name] {
			return nil, fmt.Errorf("%s: case %q twice", path, tc.Name)
		}
		names[tc.Name] = true
		texts := []*Text{tc.Body, tc.Raw, tc.Stored}
		for _, v := range tc.BigHeaders {
			texts = append(texts, &v)
		}
		for _, x := range texts {
			if x == nil {
				continue
			}
			for _, p := range x.Parts {
				if _, err := hex.DecodeString(p.Hex); err != nil {
					return nil, fmt.Errorf("%s: case %q: hex %q: %w", path, tc.Name, p.Hex, err)
				}
				if p.Range != nil && p.Range[2] == 0 {
					return nil, fmt.Errorf("%s: case %q: a range with step 0", path, tc.Name)
				}
			}
		}
	}
	return &c, nil
}

// Options configure Run.
type Options struct {
	// Addr is the server's host:port, on loopback.
	Addr string
	// Header is added to every request but Raw ones (a bearer token).
	Header [][2]string
	// Bound is the longest any one request may take; 0 means 10 s.
	Bound time.Duration
}

// Result sums up a run.
type Result struct {
	// Cases is the number of cases sent.
	Cases int
	// Slowest is the longest answer time, and SlowestCase its case.
	Slowest     time.Duration
	SlowestCase string
}

// Run creates the fixtures, then sends every case as a subtest of t.
func Run(t *testing.T, c *Corpus, o Options) Result {
	t.Helper()
	if o.Bound <= 0 {
		o.Bound = 10 * time.Second
	}
	vars := map[string]string{}
	for _, f := range c.Fixtures {
		r, err := o.send(o.request("PUT", f.Path, append(slices.Clone(o.Header), [2]string{"Content-Type", "application/json"}), f.Body.build(vars), false, ""))
		if err != nil || r.status != http.StatusCreated {
			t.Fatalf("fixture %s: %v %+v", f.Path, err, r)
		}
		vars[f.Var] = r.header.Get("ETag")
	}
	var res Result
	seqs := map[string]uint64{}
	var auth strings.Builder
	for _, h := range o.Header {
		fmt.Fprintf(&auth, "%s: %s\r\n", h[0], h[1])
	}
	vars["{{auth}}"] = auth.String()
	for _, tc := range c.Cases {
		if tc.OnlyWithoutHeader && len(o.Header) > 0 {
			continue
		}
		t.Run(tc.Name, func(t *testing.T) {
			// A case that changed a fixture fails itself; the ETags are
			// read afresh so that it does not fail the rest.
			for _, f := range c.Fixtures {
				vars[f.Var] = o.get(t, f.Path).header.Get("ETag")
			}
			before := o.snapshot(t, c, seqs)
			var req []byte
			if tc.Raw != nil {
				req = tc.Raw.build(vars)
			} else {
				hdrs := slices.Clone(o.Header)
				for _, h := range tc.Headers {
					hdrs = append(hdrs, [2]string{h[0], string((&Text{Literal: &h[1]}).build(vars))})
				}
				names := make([]string, 0, len(tc.BigHeaders))
				for name := range tc.BigHeaders {
					names = append(names, name)
				}
				slices.Sort(names)
				for _, name := range names {
					v := tc.BigHeaders[name]
					hdrs = append(hdrs, [2]string{name, string(v.build(vars))})
				}
				req = o.request(tc.Method, tc.Path, hdrs, tc.Body.build(vars), tc.Chunked, tc.ContentLength)
			}
			start := time.Now()
			r, err := o.send(req)
			took := time.Since(start)
			if took > res.Slowest {
				res.Slowest, res.SlowestCase = took, tc.Name
			}
			if err != nil {
				t.Fatalf("%s: no answer after %v: %v", tc.Why, took, err)
			}
			if took > o.Bound {
				t.Errorf("answered in %v, over the bound of %v", took, o.Bound)
			}
			check(t, tc, r)
			after := o.snapshot(t, c, seqs)
			want := before
			if tc.Stored != nil {
				stored := tc.Stored.build(vars)
				want = maps(before, tc.Path, etagOf(stored))
				g := o.get(t, tc.Path)
				if g.status != http.StatusOK || !bytes.Equal(g.body, stored) {
					t.Errorf("stored %d %.200q, want %.200q", g.status, g.body, stored)
				}
			}
			if !equalMaps(after, want) {
				t.Errorf("documents changed: before %v, after %v, want %v", before, after, want)
			}
		})
		res.Cases++
	}
	return res
}

// check compares an answer with what the case expects.
func check(t *testing.T, tc Case, r answer) {
	t.Helper()
	if r.status >= 500 {
		t.Fatalf("%s: %d %.300s", tc.Why, r.status, r.body)
	}
	if r.status != tc.Status {
		t.Fatalf("%s: status %d, want %d (%.300s)", tc.Why, r.status, tc.Status, r.body)
	}
	if r.status < 400 || tc.Transport {
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	if tc.Method == "HEAD" {
		return
	}
	var p struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %.300q: %v", r.body, err)
	}
	if p.Type != "/problems/"+tc.Problem || p.Status != r.status || p.Title == "" || p.Detail == "" {
		t.Fatalf("problem %+v, want type /problems/%s", p, tc.Problem)
	}
	if len(r.body) > 64<<10 {
		t.Errorf("a %d-byte problem body: details must not echo the input", len(r.body))
	}
}

// request builds the bytes of an HTTP/1.1 request.
func (o Options) request(method, path string, hdrs [][2]string, body []byte, chunked bool, contentLength string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: patchd.test\r\nConnection: close\r\n", method, path)
	for _, h := range hdrs {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	switch {
	case chunked:
		b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		for rest := body; len(rest) > 0; {
			n := min(len(rest), 64<<10)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, rest[:n])
			rest = rest[n:]
		}
		b.WriteString("0\r\n\r\n")
		return b.Bytes()
	case contentLength != "":
		fmt.Fprintf(&b, "Content-Length: %s\r\n", contentLength)
	case body != nil:
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// answer is a response read off the wire.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// send writes req on a new connection and reads one response. The
// request is written while the response is read, so that a server that
// answers before reading the whole body is not blocked by it.
func (o Options) send(req []byte) (answer, error) {
	conn, err := net.DialTimeout("tcp", o.Addr, 5*time.Second)
	if err != nil {
		return answer{}, err
	}
	defer conn.Close()
	bound := o.Bound
	if bound <= 0 {
		bound = 10 * time.Second
	}
	if err := conn.SetDeadline(time.Now().Add(bound + 5*time.Second)); err != nil {
		return answer{}, err
	}
	go func() { _, _ = conn.Write(req) }() // errors show as a failed read
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return answer{}, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return answer{}, err
	}
	return answer{status: res.StatusCode, header: res.Header, body: body}, nil
}

// get reads a path.
func (o Options) get(t *testing.T, path string) answer {
	t.Helper()
	r, err := o.send(o.request("GET", path, o.Header, nil, false, ""))
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return r
}

// snapshot lists the corpus collection's documents with their ETags and
// newest history seqs. seqs caches the seqs of the previous snapshot, so
// that only versions after them are read.
func (o Options) snapshot(t *testing.T, c *Corpus, seqs map[string]uint64) map[string]string {
	t.Helper()
	r := o.get(t, "/docs/"+c.Collection+"?limit=1000")
	var list struct {
		Items []struct{ ID, ETag string }
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &list) != nil {
		t.Fatalf("list: %d %.300s", r.status, r.body)
	}
	out := map[string]string{}
	for _, it := range list.Items {
		path := "/docs/" + c.Collection + "/" + it.ID
		for {
			h := o.get(t, fmt.Sprintf("%s/history?after=%d&limit=1000", path, seqs[path]))
			var page struct {
				Versions []struct{ Seq uint64 }
			}
			if h.status != http.StatusOK || json.Unmarshal(h.body, &page) != nil {
				t.Fatalf("history of %s: %d %.300s", path, h.status, h.body)
			}
			if len(page.Versions) == 0 {
				break
			}
			seqs[path] = page.Versions[len(page.Versions)-1].Seq
		}
		out[path] = fmt.Sprintf("%s@%d", it.ETag, seqs[path])
	}
	return out
}

// maps returns m with path set to a first version with the given ETag.
func maps(m map[string]string, path, etag string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	out[path] = etag + "@1"
	return out
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// etagOf is patchd's ETag of a canonical body.
func etagOf(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}
