package handlers_test

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads /metrics and parses it.
func (s *server) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	r := s.do(t, "GET", "/metrics", nil, "")
	expect(t, r, http.StatusOK, "")
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type=%q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("parse metrics: %v\n%s", err, r.body)
	}
	return fams
}

// value returns the value of the sample of family name whose labels
// include the given name/value pairs; ok is false when there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (v float64, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			if !slices.ContainsFunc(m.Label, func(l *dto.LabelPair) bool {
				return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
			}) {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

func mustValue(t *testing.T, fams map[string]*dto.MetricFamily, want float64, name string, labels ...string) {
	t.Helper()
	got, ok := value(fams, name, labels...)
	if !ok {
		t.Fatalf("no %s%v", name, labels)
	}
	if got != want {
		t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	s := startServer(t, func(c *config) { c.http.Version = "v9.9.9-test" })
	e0 := s.create(t, "/docs/m/a", `{"p":1,"q":1}`)
	s.create(t, "/docs/m/b", `{}`)
	e1 := s.do(t, "PATCH", "/docs/m/a", hdr{"Content-Type", ctMerge, "If-Match", e0}, `{"p":2}`).header.Get("ETag")
	expect(t, s.do(t, "PATCH", "/docs/m/a", hdr{"Content-Type", ctMerge, "If-Match", e0}, `{"q":2}`), 200, "")                 // rebased
	expect(t, s.do(t, "PATCH", "/docs/m/a", hdr{"Content-Type", ctMerge, "If-Match", e0}, `{"p":3}`), 412, "rebase-conflict")  // conflict
	expect(t, s.do(t, "PATCH", "/docs/m/a", hdr{"Content-Type", ctMerge, "If-Match", `"zz"`}, `{"p":3}`), 412, "base-unknown") // base unknown
	expect(t, s.do(t, "PATCH", "/docs/m/a", hdr{"Content-Type", ctMerge}, `{"p":3}`), 428, "precondition-required")            // 428
	expect(t, s.do(t, "DELETE", "/docs/m/a", hdr{"If-Match", e1}, ""), 412, "precondition-failed")                             // stale delete
	expect(t, s.do(t, "DELETE", "/docs/m/b", hdr{"If-Match", etagOf(`{}`)}, ""), 204, "")                                      // delete
	expect(t, s.do(t, "GET", "/nowhere/at/all", nil, ""), 404, "not-found")                                                    // unmatched
	for range 3 {
		expect(t, s.do(t, "GET", "/docs/m/a", nil, ""), 200, "")
	}
	// A keyed PATCH sent twice: applied once, answered twice.
	c0 := s.create(t, "/docs/m/c", `{}`)
	for range 2 {
		expect(t, s.do(t, "PATCH", "/docs/m/c", hdr{"Content-Type", ctMerge, "If-Match", c0, "Idempotency-Key", `"k1"`}, `{"x":1}`), 200, "")
	}

	f := s.scrape(t)
	mustValue(t, f, 3, "patchd_http_requests_total", "route", "/docs/:c/:id", "method", "PUT", "status", "201")
	mustValue(t, f, 3, "patchd_http_requests_total", "route", "/docs/:c/:id", "method", "GET", "status", "200")
	mustValue(t, f, 1, "patchd_http_requests_total", "route", "unmatched", "method", "GET", "status", "404")
	mustValue(t, f, 3, "patchd_http_request_duration_seconds", "route", "/docs/:c/:id", "method", "GET")
	mustValue(t, f, 1, "patchd_rebases_total", "outcome", "rebased")
	mustValue(t, f, 1, "patchd_rebases_total", "outcome", "conflict")
	mustValue(t, f, 1, "patchd_rebases_total", "outcome", "base-unknown")
	mustValue(t, f, 0, "patchd_rebases_total", "outcome", "too-far")
	mustValue(t, f, 1, "patchd_http_problems_total", "status", "412", "type", "rebase-conflict")
	mustValue(t, f, 1, "patchd_http_problems_total", "status", "412", "type", "precondition-failed")
	mustValue(t, f, 1, "patchd_http_problems_total", "status", "428", "type", "precondition-required")
	mustValue(t, f, 1, "patchd_idempotent_replays_total")
	mustValue(t, f, 1, "patchd_build_info", "version", "v9.9.9-test")
	// m/a has 3 versions (create, patch, rebased patch); m/b 2 (create,
	// delete); m/c 2 (create, the keyed patch once); m/a and m/c are
	// current.
	mustValue(t, f, 2, "patchd_documents")
	mustValue(t, f, 7, "patchd_history_versions")
	mustValue(t, f, 1, "patchd_collections")
	for _, name := range []string{"patchd_bolt_file_size_bytes", "patchd_bolt_read_tx_total"} {
		if v, ok := value(f, name); !ok || v <= 0 {
			t.Errorf("%s = %v, %v", name, v, ok)
		}
	}
	if v, ok := value(f, "patchd_bolt_tx_operations_total", "op", "page_write"); !ok || v <= 0 {
		t.Errorf("page writes = %v, %v", v, ok)
	}
	if v, ok := value(f, "patchd_bolt_pages", "bucket", "hist", "type", "leaf"); !ok || v < 0 {
		t.Errorf("hist leaf pages = %v, %v", v, ok)
	}
	for _, name := range []string{"patchd_bolt_free_pages", "patchd_bolt_pending_pages", "patchd_bolt_open_read_tx",
		"patchd_bolt_tx_seconds_total", "patchd_bolt_bucket_bytes", "patchd_bolt_tree_depth", "go_goroutines"} {
		if _, ok := f[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
	// A second scrape counts the first.
	f = s.scrape(t)
	mustValue(t, f, 1, "patchd_http_requests_total", "route", "/metrics", "method", "GET", "status", "200")
}

// TestMetricsPerServer runs two servers at once: each counts only its own
// requests (no global registry).
func TestMetricsPerServer(t *testing.T) {
	t.Parallel()
	a, b := startServer(t), startServer(t)
	for i := range 4 {
		a.create(t, fmt.Sprintf("/docs/x/%d", i), `{}`)
	}
	b.create(t, "/docs/x/0", `{}`)
	mustValue(t, a.scrape(t), 4, "patchd_http_requests_total", "route", "/docs/:c/:id", "method", "PUT", "status", "201")
	mustValue(t, b.scrape(t), 1, "patchd_http_requests_total", "route", "/docs/:c/:id", "method", "PUT", "status", "201")
}
