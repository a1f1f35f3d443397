package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/patchd/patchd/internal/benchdoc"
)

// client sends requests to one server.
type client struct {
	http *http.Client
	base string
}

// response is what the workloads need from an answer.
type response struct {
	status      int
	etag        string
	rebasedFrom string
	body        []byte
}

func (c *client) do(ctx context.Context, method, path string, hdr []string, body []byte) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.http.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: res.StatusCode, etag: res.Header.Get("ETag"), rebasedFrom: res.Header.Get("Rebased-From"), body: b}, nil
}

// recorder counts what one client saw during one run.
type recorder struct {
	lat     []time.Duration // of the primary requests (the edits, or the reads of scenario 4)
	status  map[int]int
	ok      int // acknowledged edits, or 304s
	pre     int // 412s
	retries int // edits sent again after a 412
	rebased int // 200s with Rebased-From
	errs    int // transport errors
}

func newRecorder() *recorder { return &recorder{status: map[int]int{}} }

// timed sends a primary request and records its latency and status.
func (r *recorder) timed(ctx context.Context, c *client, method, path string, hdr []string, body []byte) (response, error) {
	t0 := time.Now()
	res, err := c.do(ctx, method, path, hdr, body)
	if err != nil {
		if ctx.Err() == nil {
			r.errs++
		}
		return res, err
	}
	r.lat = append(r.lat, time.Since(t0))
	r.status[res.status]++
	if res.status == http.StatusPreconditionFailed {
		r.pre++
	}
	return res, nil
}

// workload is one scenario's clients, set up once per server and run for
// several samples; Verify reads every document back at the end.
type workload interface {
	Setup(ctx context.Context, c *client, kind string) error
	Client(ctx context.Context, c *client, id int, r *recorder)
	// Verify returns the number of acknowledged edits that are missing
	// from the documents, and a description of what it checked.
	Verify(ctx context.Context, c *client) (lost int, checked string, err error)
}

const (
	ctJSON  = "application/json"
	ctPatch = "application/json-patch+json"
)

// seedDocs creates docs concurrently with PUT and returns their ETags.
func seedDocs(ctx context.Context, c *client, coll string, bodies func(i int) []byte, n, workers int) ([]string, error) {
	etags := make([]string, n)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				res, err := c.do(ctx, http.MethodPut, fmt.Sprintf("/docs/%s/d%d", coll, i), []string{"Content-Type", ctJSON}, bodies(i))
				if err == nil && res.status != http.StatusCreated && res.status != http.StatusOK {
					err = fmt.Errorf("PUT %s/d%d: %d %s", coll, i, res.status, res.body)
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					continue
				}
				etags[i] = res.etag
			}
		})
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return etags, first
}

// nField reads the member "n" of one of benchdoc's documents without
// decoding the rest (it is the only member named "n").
func nField(body []byte) (int, bool) {
	i := bytes.Index(body, []byte(`"n":`))
	if i < 0 {
		return 0, false
	}
	rest := body[i+4:]
	j := 0
	for j < len(rest) && (rest[j] == '-' || '0' <= rest[j] && rest[j] <= '9') {
		j++
	}
	v, err := strconv.Atoi(string(rest[:j]))
	return v, err == nil
}

// fresh is scenarios 1 and 5: one-op JSON Patches with the current ETag on
// documents picked at random. Each edit replaces "n" with
// (count+1)*1000 + client, a value no other client sends, so the count of
// edits a document took is n/1000 and concurrent edits of one document
// conflict instead of coinciding. A 412 makes the client read the
// document again and retry.
type fresh struct {
	coll  string
	size  int
	docs  []*docState
	check bool // false for the no-op server, which stores nothing
	// seeded reports that the server seeded the documents itself (the
	// naive references); the ETags are then computed here.
	seeded bool
}

type docState struct {
	mu      sync.Mutex
	etag    string
	count   int // edits acknowledged to anyone, as far as the clients know
	acked   int
	unknown int // edits whose outcome is unknown (cut off by the run's end)
}

func (w *fresh) Setup(ctx context.Context, c *client, kind string) error {
	w.check = kind != kindEcho
	n := len(w.docs)
	if w.seeded {
		for i := range n {
			body := benchdoc.Doc(w.size, i)
			sum := sha256.Sum256(body)
			w.docs[i] = &docState{etag: `"` + hex.EncodeToString(sum[:]) + `"`}
		}
		return nil
	}
	etags, err := seedDocs(ctx, c, w.coll, func(i int) []byte { return benchdoc.Doc(w.size, i) }, n, 16)
	if err != nil {
		return err
	}
	for i, e := range etags {
		w.docs[i] = &docState{etag: e}
	}
	return nil
}

func (w *fresh) Client(ctx context.Context, c *client, id int, r *recorder) {
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano()))) // #nosec G115 G404 -- load generation: any seed bits will do, no secret
	for ctx.Err() == nil {
		i := rng.IntN(len(w.docs))
		d := w.docs[i]
		path := fmt.Sprintf("/docs/%s/d%d", w.coll, i)
		for attempt := 0; attempt < 100 && ctx.Err() == nil; attempt++ {
			d.mu.Lock()
			etag, count := d.etag, d.count
			d.mu.Unlock()
			res, err := r.timed(ctx, c, http.MethodPatch, path, []string{"Content-Type", ctPatch, "If-Match", etag}, benchdoc.ReplaceN((count+1)*1000+id))
			if err != nil {
				d.mu.Lock()
				d.unknown++
				d.mu.Unlock()
				break
			}
			if res.status == http.StatusPreconditionFailed {
				r.retries++
				g, err := c.do(ctx, http.MethodGet, path, nil, nil)
				if err != nil {
					break
				}
				if n, ok := nField(g.body); ok {
					d.mu.Lock()
					if n/1000 >= d.count {
						d.count, d.etag = n/1000, g.etag
					}
					d.mu.Unlock()
				}
				continue
			}
			if res.status == http.StatusOK {
				r.ok++
				d.mu.Lock()
				d.acked++
				if count+1 > d.count {
					d.count, d.etag = count+1, res.etag
				}
				d.mu.Unlock()
			}
			break
		}
	}
}

func (w *fresh) Verify(ctx context.Context, c *client) (int, string, error) {
	if !w.check {
		return 0, "not checked (no-op server)", nil
	}
	lost, acked := 0, 0
	for i, d := range w.docs {
		if d.acked == 0 && d.unknown == 0 {
			continue
		}
		g, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/docs/%s/d%d", w.coll, i), nil, nil)
		if err != nil {
			return 0, "", err
		}
		n, ok := nField(g.body)
		if g.status != http.StatusOK || !ok {
			return 0, "", fmt.Errorf("read back %s/d%d: %d", w.coll, i, g.status)
		}
		acked += d.acked
		if got := n / 1000; got < d.acked {
			lost += d.acked - got
		} else if got > d.acked+d.unknown {
			return 0, "", fmt.Errorf("%s/d%d took %d edits; only %d were sent", w.coll, i, got, d.acked+d.unknown)
		}
	}
	return lost, fmt.Sprintf("%d acknowledged edits read back", acked), nil
}

// fields is scenarios 2 and 3: every client owns one member of one shared
// document and sets it to 1, 2, 3... each time with the ETag of its own
// last answer, which is stale whenever another client wrote in between.
// With rebase (scenario 2) the edit is rebased over the others'; with
// strict (scenario 3) it is a 412 and the client retries: by reading the
// document again (retry "get") or with the ETag of the 412 (retry "etag").
type fields struct {
	doc     string
	clients int
	strict  bool
	retry   string
	size    int

	mu      sync.Mutex
	etag    []string
	last    []int
	unknown []bool
}

func fieldName(i int) string { return fmt.Sprintf("f%03d", i) }

func (w *fields) Setup(ctx context.Context, c *client, _ string) error {
	var b strings.Builder
	b.WriteString("{")
	for i := range w.clients {
		fmt.Fprintf(&b, "%q:0,", fieldName(i))
	}
	base := benchdoc.Doc(w.size, 0)
	b.Write(base[1:])
	res, err := c.do(ctx, http.MethodPut, "/docs/shared/"+w.doc, []string{"Content-Type", ctJSON}, []byte(b.String()))
	if err != nil {
		return err
	}
	if res.status != http.StatusCreated {
		return fmt.Errorf("PUT shared/%s: %d %s", w.doc, res.status, res.body)
	}
	w.etag = make([]string, w.clients)
	w.last = make([]int, w.clients)
	w.unknown = make([]bool, w.clients)
	for i := range w.etag {
		w.etag[i] = res.etag
	}
	return nil
}

func (w *fields) Client(ctx context.Context, c *client, id int, r *recorder) {
	if id >= w.clients {
		return
	}
	path := "/docs/shared/" + w.doc
	hdr := []string{"Content-Type", ctPatch, "If-Match", ""}
	if w.strict {
		hdr = append(hdr, "Prefer", "handling=strict")
	}
	w.mu.Lock()
	etag, k := w.etag[id], w.last[id]+1
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.etag[id] = etag
		w.mu.Unlock()
	}()
	for ctx.Err() == nil {
		hdr[3] = etag
		body := fmt.Appendf(nil, `[{"op":"replace","path":"/%s","value":%d}]`, fieldName(id), k)
		res, err := r.timed(ctx, c, http.MethodPatch, path, hdr, body)
		if err != nil {
			w.mu.Lock()
			w.unknown[id] = true
			w.mu.Unlock()
			return
		}
		switch res.status {
		case http.StatusOK:
			r.ok++
			if res.rebasedFrom != "" {
				r.rebased++
			}
			w.mu.Lock()
			w.last[id] = k
			w.mu.Unlock()
			etag, k = res.etag, k+1
		case http.StatusPreconditionFailed:
			r.retries++
			if w.retry == "etag" && res.etag != "" {
				etag = res.etag
				continue
			}
			g, err := c.do(ctx, http.MethodGet, path, nil, nil)
			if err != nil {
				return
			}
			etag = g.etag
		default:
			return
		}
	}
}

func (w *fields) Verify(ctx context.Context, c *client) (int, string, error) {
	g, err := c.do(ctx, http.MethodGet, "/docs/shared/"+w.doc, nil, nil)
	if err != nil {
		return 0, "", err
	}
	var doc map[string]any
	d := json.NewDecoder(bytes.NewReader(g.body))
	d.UseNumber()
	if err := d.Decode(&doc); err != nil {
		return 0, "", fmt.Errorf("read back shared/%s: %d %v", w.doc, g.status, err)
	}
	lost, acked := 0, 0
	for i := range w.clients {
		n, ok := doc[fieldName(i)].(json.Number)
		if !ok {
			return 0, "", fmt.Errorf("%s: %s is missing", w.doc, fieldName(i))
		}
		got, _ := n.Int64()
		acked += w.last[i]
		switch {
		case int(got) == w.last[i], w.unknown[i] && int(got) == w.last[i]+1:
		case int(got) < w.last[i]:
			lost += w.last[i] - int(got)
		default:
			return 0, "", fmt.Errorf("%s: %s is %d, but only %d was acknowledged", w.doc, fieldName(i), got, w.last[i])
		}
	}
	return lost, fmt.Sprintf("%d acknowledged edits of %d clients read back", acked, w.clients), nil
}

// reads is scenario 4: conditional GETs with the current ETag (304).
type reads struct {
	coll  string
	size  int
	etags []string
}

func (w *reads) Setup(ctx context.Context, c *client, kind string) error {
	if kind == kindEcho {
		w.etags = make([]string, len(w.etags))
		for i := range w.etags {
			w.etags[i] = `"0"`
		}
		return nil
	}
	etags, err := seedDocs(ctx, c, w.coll, func(i int) []byte { return benchdoc.Doc(w.size, i) }, len(w.etags), 16)
	w.etags = etags
	return err
}

func (w *reads) Client(ctx context.Context, c *client, id int, r *recorder) {
	rng := rand.New(rand.NewPCG(uint64(id), 7)) // #nosec G115 G404 -- load generation: a client number (non-negative) seeds a reproducible stream, no secret
	hdr := []string{"If-None-Match", ""}
	for ctx.Err() == nil {
		i := rng.IntN(len(w.etags))
		hdr[1] = w.etags[i]
		res, err := r.timed(ctx, c, http.MethodGet, fmt.Sprintf("/docs/%s/d%d", w.coll, i), hdr, nil)
		if err != nil {
			return
		}
		if res.status == http.StatusNotModified {
			r.ok++
		}
	}
}

func (w *reads) Verify(context.Context, *client) (int, string, error) {
	return 0, "read only", nil
}
