package handlers_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/handlers"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Schemas, dry runs, actors, revert and batches over HTTP. These tests
// also run over PostgreSQL replicas (e2e), each request going to the next
// replica: a schema put through one is enforced by the next.

// planSchema is the write-skew example: a plan and its seats, each fine on
// its own, and a rule that ties them.
const planSchema = `{
  "type": "object",
  "required": ["plan", "seats"],
  "properties": {
    "plan": {"enum": ["free", "pro"]},
    "seats": {"type": "integer", "minimum": 1}
  },
  "if": {"properties": {"plan": {"const": "free"}}},
  "then": {"properties": {"seats": {"maximum": 5}}}
}`

// backend returns the store of a test server (the first replica's over
// PostgreSQL), for checks that no answer can make.
func (s *server) backend() store.Store {
	if s.pg != nil {
		return s.pg.stores[0]
	}
	return s.store
}

// replicaServers returns every HTTP server of a test server.
func (s *server) replicaServers() []*httptest.Server {
	if s.pg != nil {
		return s.pg.servers
	}
	return []*httptest.Server{s.Server}
}

// writeMetrics sums, over every replica, the metrics that count writes.
func (s *server) writeMetrics(t *testing.T) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, srv := range s.replicaServers() {
		res, err := srv.Client().Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"patchd_rebases_total", "patchd_idempotent_replays_total"} {
			f := fams[name]
			if f == nil {
				continue
			}
			for _, m := range f.Metric {
				key := name
				for _, l := range m.Label {
					key += "," + l.GetName() + "=" + l.GetValue()
				}
				out[key] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// historyOf returns a document's history entries as JSON objects.
func (s *server) historyOf(t *testing.T, path string) []map[string]any {
	t.Helper()
	r := s.do(t, "GET", path+"/history?limit=1000", nil, "")
	expect(t, r, http.StatusOK, "")
	var page struct{ Versions []map[string]any }
	if err := json.Unmarshal(r.body, &page); err != nil {
		t.Fatalf("history %s: %v", r.body, err)
	}
	return page.Versions
}

// schemaErrors returns the errors of a schema-violation problem.
func schemaErrors(t *testing.T, r response) []map[string]any {
	t.Helper()
	var p struct {
		Errors []map[string]any
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	return p.Errors
}

// fanOut returns a schema without cycles whose every level applies the
// next one twice to the same value: 2^levels subschemas per value.
func fanOut(levels int) string {
	var b strings.Builder
	b.WriteString(`{"$defs":{`)
	for i := range levels {
		fmt.Fprintf(&b, `"l%d":{"anyOf":[{"$ref":"#/$defs/l%d"},{"allOf":[{"$ref":"#/$defs/l%d"}]}]},`, i, i+1, i+1)
	}
	fmt.Fprintf(&b, `"l%d":{"type":"object"}},"$ref":"#/$defs/l0"}`, levels)
	return b.String()
}

func TestSchemaRefusals(t *testing.T) {
	s := startServer(t)
	for _, tc := range []struct {
		name, schema, detail string
	}{
		{"NotASchema", `{"type":5}`, "type"},
		{"NotAnObject", `true`, "JSON object"},
		{"UnknownType", `{"properties":{"a":{"type":"strin"}}}`, "strin"},
		{"SelfRef", `{"$ref":"#"}`, "cycle"},
		{"RefCycle", `{"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"anyOf":[{"$ref":"#/$defs/a"}]}},"properties":{"x":{"$ref":"#/$defs/a"}}}`, "cycle"},
		{"NotCycle", `{"not":{"$ref":"#"}}`, "cycle"},
		{"RemoteRef", `{"$ref":"https://example.com/schema.json"}`, "outside"},
		{"FileRef", `{"$ref":"file:///etc/passwd"}`, "outside"},
		{"RelativeRef", `{"properties":{"a":{"$ref":"other.json"}}}`, "outside"},
		{"RemoteMetaSchema", `{"$schema":"https://example.com/meta"}`, "2020-12"},
		{"OtherDraft", `{"$schema":"http://json-schema.org/draft-07/schema#"}`, "2020-12"},
		{"HugePattern", `{"properties":{"a":{"pattern":"` + strings.Repeat("a", 5000) + `"}}}`, "limit"},
		{"BadPattern", `{"patternProperties":{"(":{}}}`, "("},
		{"RepeatTooLarge", `{"properties":{"a":{"pattern":"(a{1000}){1000}"}}}`, "pattern"},
		{"Exponential", fanOut(20), "limit"},
		{"DeeperThanADocument", strings.Repeat(`{"not":`, 70) + `{}` + strings.Repeat(`}`, 70), "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(t, "PUT", "/schemas/c", hdr{"Content-Type", ctJSON}, tc.schema)
			expect(t, r, http.StatusUnprocessableEntity, "invalid-schema")
			if d := r.problem(t)["detail"].(string); !strings.Contains(d, tc.detail) {
				t.Errorf("detail %q does not mention %q", d, tc.detail)
			}
			expect(t, s.do(t, "GET", "/schemas/c", nil, ""), http.StatusNotFound, "not-found")
		})
	}
	// A few levels of the same are fine.
	expect(t, s.do(t, "PUT", "/schemas/fan", hdr{"Content-Type", ctJSON}, fanOut(6)), http.StatusCreated, "")
	s.create(t, "/docs/fan/1", `{}`)
	// Recursion that goes down the document is fine, and enforced.
	tree := `{"type":"object","properties":{"name":{"type":"string"},"children":{"type":"array","items":{"$ref":"#"}}}}`
	expect(t, s.do(t, "PUT", "/schemas/tree", hdr{"Content-Type", ctJSON}, tree), http.StatusCreated, "")
	s.create(t, "/docs/tree/ok", `{"name":"a","children":[{"name":"b","children":[{"name":"c"}]}]}`)
	r := s.do(t, "PUT", "/docs/tree/bad", hdr{"Content-Type", ctJSON}, `{"name":"a","children":[{"children":[{"name":7}]}]}`)
	expect(t, r, http.StatusUnprocessableEntity, "schema-violation")
	if errs := schemaErrors(t, r); len(errs) != 1 || errs[0]["instancePath"] != "/children/0/children/0/name" || errs[0]["keyword"] != "type" {
		t.Fatalf("errors %v", errs)
	}
}

func TestSchemas(t *testing.T) {
	s := startServer(t)
	// Documents from before the schema stay as they are.
	s.create(t, "/docs/acct/old", `{"plan":"free","seats":9}`)
	s.create(t, "/docs/acct/fine", `{"plan":"pro","seats":9}`)
	s.create(t, "/docs/acct/pro", `{"plan":"pro","seats":1}`)
	r := s.do(t, "PUT", "/schemas/acct", hdr{"Content-Type", ctJSON, "If-None-Match", "*"}, planSchema)
	expect(t, r, http.StatusCreated, "")
	if loc := r.header.Get("Location"); loc != "/schemas/acct" {
		t.Fatalf("Location %q", loc)
	}
	v1 := r.header.Get("ETag")
	if got := s.do(t, "GET", "/schemas/acct", nil, ""); got.header.Get("ETag") != v1 || !bytes.Equal(got.body, r.body) {
		t.Fatalf("GET: %s %s, PUT answered %s %s", got.header.Get("ETag"), got.body, v1, r.body)
	}
	// Preconditions as for a document; never rebased.
	expect(t, s.do(t, "PUT", "/schemas/acct", hdr{"Content-Type", ctJSON, "If-None-Match", "*"}, planSchema), http.StatusPreconditionFailed, "precondition-failed")
	// The refusals name a schema, not a document.
	for _, r := range []response{
		s.do(t, "PUT", "/schemas/acct", hdr{"Content-Type", ctJSON, "If-None-Match", "*"}, planSchema),
		s.do(t, "PUT", "/schemas/acct", hdr{"Content-Type", ctJSON}, planSchema),
		s.do(t, "DELETE", "/schemas/acct", nil, ""),
		s.do(t, "PUT", "/schemas/nothing", hdr{"Content-Type", ctJSON, "If-Match", v1}, planSchema),
	} {
		if d := r.problem(t)["detail"]; !strings.Contains(fmt.Sprint(d), "schema") || strings.Contains(fmt.Sprint(d), "document") {
			t.Errorf("%d %q: the detail should name the schema", r.status, d)
		}
	}
	expect(t, s.do(t, "PUT", "/schemas/acct", hdr{"Content-Type", ctJSON}, planSchema), http.StatusPreconditionRequired, "precondition-required")

	// Every write is validated on its result, and names where it fails.
	r = s.do(t, "PUT", "/docs/acct/new", hdr{"Content-Type", ctJSON}, `{"plan":"free","seats":25}`)
	expect(t, r, http.StatusUnprocessableEntity, "schema-violation")
	if errs := schemaErrors(t, r); len(errs) != 1 || errs[0]["instancePath"] != "/seats" || errs[0]["keyword"] != "maximum" || errs[0]["message"] == "" {
		t.Fatalf("errors %v", errs)
	}
	expect(t, s.do(t, "GET", "/docs/acct/new", nil, ""), http.StatusNotFound, "")
	expect(t, s.do(t, "POST", "/docs/acct", hdr{"Content-Type", ctJSON}, `{"plan":"gold","seats":1}`), http.StatusUnprocessableEntity, "schema-violation")
	e := s.create(t, "/docs/acct/new", `{"plan":"free","seats":2}`)
	r = s.do(t, "PATCH", "/docs/acct/new", hdr{"Content-Type", ctPatch, "If-Match", e}, `[{"op":"remove","path":"/seats"}]`)
	expect(t, r, http.StatusUnprocessableEntity, "schema-violation")
	if errs := schemaErrors(t, r); len(errs) != 1 || errs[0]["keyword"] != "required" || errs[0]["instancePath"] != "" {
		t.Fatalf("errors %v", errs)
	}
	if h := s.historyOf(t, "/docs/acct/new"); len(h) != 1 {
		t.Fatalf("%d versions after refused writes", len(h))
	}
	// format is asserted.
	expect(t, s.do(t, "PUT", "/schemas/mail", hdr{"Content-Type", ctJSON}, `{"properties":{"to":{"format":"email"}}}`), http.StatusCreated, "")
	expect(t, s.do(t, "PUT", "/docs/mail/1", hdr{"Content-Type", ctJSON}, `{"to":"not an address"}`), http.StatusUnprocessableEntity, "schema-violation")

	// Existing documents that do not match, paged like a listing.
	r = s.do(t, "GET", "/schemas/acct/violations?limit=1", nil, "")
	expect(t, r, http.StatusOK, "")
	var page struct {
		Items []struct {
			ID     string
			Errors []map[string]any
		}
		Next *string
	}
	if err := json.Unmarshal(r.body, &page); err != nil || len(page.Items) != 1 || page.Items[0].ID != "old" || page.Next == nil {
		t.Fatalf("violations %s (%v)", r.body, err)
	}
	r = s.do(t, "GET", "/schemas/acct/violations?limit=1&after="+*page.Next, nil, "")
	if err := json.Unmarshal(r.body, &page); err != nil || len(page.Items) != 0 || page.Next != nil {
		t.Fatalf("second page %s (%v)", r.body, err)
	}

	// A new schema applies to the very next write (over replicas: made
	// through another replica), and a stale If-Match is refused.
	loose := `{"type":"object"}`
	expect(t, s.do(t, "PUT", "/schemas/acct", hdr{"Content-Type", ctJSON, "If-Match", `"0123456789abcdef0123456789abcdef"`}, loose), http.StatusPreconditionFailed, "precondition-failed")
	r = s.do(t, "PUT", "/schemas/acct", hdr{"Content-Type", ctJSON, "If-Match", v1}, loose)
	expect(t, r, http.StatusOK, "")
	for range 3 {
		s.create(t, "/docs/acct/n"+fmt.Sprint(time.Now().UnixNano()), `{"plan":"free","seats":25}`)
	}
	r = s.do(t, "PUT", "/schemas/acct", hdr{"Content-Type", ctJSON, "If-Match", r.header.Get("ETag")}, planSchema)
	expect(t, r, http.StatusOK, "")
	for range 3 {
		expect(t, s.do(t, "PUT", "/docs/acct/later", hdr{"Content-Type", ctJSON}, `{"plan":"free","seats":25}`), http.StatusUnprocessableEntity, "schema-violation")
	}
	// Without a schema, nothing is checked.
	expect(t, s.do(t, "DELETE", "/schemas/acct", hdr{"If-Match", r.header.Get("ETag")}, ""), http.StatusNoContent, "")
	s.create(t, "/docs/acct/later", `{"x":1}`)
	expect(t, s.do(t, "GET", "/schemas/acct/violations", nil, ""), http.StatusNotFound, "not-found")
	// Schemas are not documents: the collection cannot be reached.
	expect(t, s.do(t, "GET", "/docs/$schemas/acct", nil, ""), http.StatusBadRequest, "invalid-request")
}

// TestWriteSkewPlanSeats is the write skew that rebase alone lets through:
// a plan downgraded to free while someone raises its seats to 25. Each
// edit is valid on the version it was made against, they touch different
// members, and together they break the rule.
func TestWriteSkewPlanSeats(t *testing.T) {
	s := startServer(t)
	expect(t, s.do(t, "PUT", "/schemas/accounts", hdr{"Content-Type", ctJSON}, planSchema), http.StatusCreated, "")
	e0 := s.create(t, "/docs/accounts/acme", `{"plan":"pro","seats":3}`)

	alice := s.do(t, "PATCH", "/docs/accounts/acme", hdr{"Content-Type", ctMerge, "If-Match", e0}, `{"plan":"free"}`)
	expect(t, alice, http.StatusOK, "")
	bob := s.do(t, "PATCH", "/docs/accounts/acme", hdr{"Content-Type", ctMerge, "If-Match", e0}, `{"seats":25}`)
	expect(t, bob, http.StatusPreconditionFailed, "rebase-conflict")
	var p struct {
		CurrentETag string `json:"currentEtag"`
		BaseETag    string `json:"baseEtag"`
		Conflicts   []struct {
			ClientOp          int    `json:"clientOp"`
			ConcurrentVersion uint64 `json:"concurrentVersion"`
			Reason            string `json:"reason"`
			Errors            []struct {
				InstancePath string `json:"instancePath"`
				Keyword      string `json:"keyword"`
			} `json:"errors"`
		} `json:"conflicts"`
	}
	if err := json.Unmarshal(bob.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.CurrentETag != alice.header.Get("ETag") || p.BaseETag != e0 || len(p.Conflicts) != 1 {
		t.Fatalf("problem %s", bob.body)
	}
	c := p.Conflicts[0]
	if c.Reason != "schema-violation" || c.ConcurrentVersion != 2 || len(c.Errors) != 1 || c.Errors[0].InstancePath != "/seats" || c.Errors[0].Keyword != "maximum" {
		t.Fatalf("conflict %+v", c)
	}
	if g := s.do(t, "GET", "/docs/accounts/acme", nil, ""); string(g.body) != `{"plan":"free","seats":3}` {
		t.Fatalf("document %s", g.body)
	}
	// Bob's edit was fine on its own: on the current version it is a
	// plain 422, and on a pro plan it passes.
	expect(t, s.do(t, "PATCH", "/docs/accounts/acme", hdr{"Content-Type", ctMerge, "If-Match", alice.header.Get("ETag")}, `{"seats":25}`), http.StatusUnprocessableEntity, "schema-violation")
	expect(t, s.do(t, "PATCH", "/docs/accounts/acme", hdr{"Content-Type", ctMerge, "If-Match", alice.header.Get("ETag")}, `{"plan":"pro","seats":25}`), http.StatusOK, "")
	// The same edits without the schema rebase, as they always did.
	e1 := s.create(t, "/docs/plain/acme", `{"plan":"pro","seats":3}`)
	expect(t, s.do(t, "PATCH", "/docs/plain/acme", hdr{"Content-Type", ctMerge, "If-Match", e1}, `{"plan":"free"}`), http.StatusOK, "")
	expect(t, s.do(t, "PATCH", "/docs/plain/acme", hdr{"Content-Type", ctMerge, "If-Match", e1}, `{"seats":25}`), http.StatusOK, "")
}

// answerOf is what a client sees of an answer: status, the headers that
// matter, and the body.
func answerOf(r response) string {
	return fmt.Sprintf("%d etag=%s rebased=%s loc=%v replayed=%s\n%s", r.status, r.header.Get("ETag"), r.header.Get("Rebased-From"),
		r.header.Get("Location") != "", r.header.Get("Idempotent-Replayed"), r.body)
}

// TestDryRunLeavesNoTrace: a dry run of every kind of write answers what
// the real request then answers, and leaves no version, no event, no
// idempotency record and no metric of a write behind.
func TestDryRunLeavesNoTrace(t *testing.T) {
	s := startServer(t)
	expect(t, s.do(t, "PUT", "/schemas/acct", hdr{"Content-Type", ctJSON}, planSchema), http.StatusCreated, "")
	base := s.create(t, "/docs/d/r", `{"a":1,"b":1}`)
	expect(t, s.do(t, "PATCH", "/docs/d/r", hdr{"Content-Type", ctMerge, "If-Match", base}, `{"a":2}`), http.StatusOK, "")
	pcur := s.create(t, "/docs/d/p", `{"p":1}`)
	gone := s.create(t, "/docs/d/gone", `{"x":1}`)
	expect(t, s.do(t, "DELETE", "/docs/d/gone", hdr{"If-Match", gone}, ""), http.StatusNoContent, "")
	acme := s.create(t, "/docs/acct/acme", `{"plan":"pro","seats":3}`)
	expect(t, s.do(t, "PATCH", "/docs/acct/acme", hdr{"Content-Type", ctMerge, "If-Match", acme}, `{"plan":"free"}`), http.StatusOK, "")

	// Every replica's commits: a dry run that published an event would
	// have done so before its answer, on the replica that served it.
	var events []<-chan store.Event
	stores := []store.Store{s.store}
	if s.pg != nil {
		stores = nil
		for _, st := range s.pg.stores {
			stores = append(stores, st)
		}
	}
	for _, st := range stores {
		ch, err := st.Subscribe(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ch)
	}
	// noPhantom fails on an event of a version that does not exist: one
	// that only a dry run could have announced. Events of real writes
	// may still be arriving from other replicas.
	noPhantom := func(t *testing.T) {
		t.Helper()
		for _, ch := range events {
			for {
				var ev store.Event
				select {
				case ev = <-ch:
				default:
				}
				if ev.Collection == "" {
					break
				}
				vs, _, err := s.backend().History(t.Context(), ev.Collection, ev.ID, ev.Seq-1, 1, 0)
				if err != nil || len(vs) == 0 || vs[0].Seq != ev.Seq {
					t.Fatalf("event %+v of a version that was never committed (%v %v)", ev, vs, err)
				}
			}
		}
	}
	cases := []struct {
		name, method, path string
		h                  hdr
		body               string
		touches            []string // what must not change
		keys               []string // idempotency keys that must not be recorded
		status             int
	}{
		{"Create", "PUT", "/docs/d/new", hdr{"Content-Type", ctJSON}, `{"n":1}`, []string{"/docs/d/new"}, nil, 201},
		{"Replace", "PUT", "/docs/d/p", hdr{"Content-Type", ctJSON, "If-Match", pcur}, `{"p":2}`, []string{"/docs/d/p"}, nil, 200},
		{"Post", "POST", "/docs/d", hdr{"Content-Type", ctJSON, "Idempotency-Key", "dry-post"}, `{"n":2}`, []string{"/docs/d"}, []string{"dry-post"}, 201},
		{"Rebased", "PATCH", "/docs/d/r", hdr{"Content-Type", ctMerge, "If-Match", base, "Idempotency-Key", "dry-patch"}, `{"b":2}`, []string{"/docs/d/r"}, []string{"dry-patch"}, 200},
		{"Conflict", "PATCH", "/docs/d/r", hdr{"Content-Type", ctMerge, "If-Match", base}, `{"a":9}`, []string{"/docs/d/r"}, nil, 412},
		{"SchemaSkew", "PATCH", "/docs/acct/acme", hdr{"Content-Type", ctMerge, "If-Match", acme}, `{"seats":25}`, []string{"/docs/acct/acme"}, nil, 412},
		{"Revert", "POST", "/docs/d/r/revert", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"seq":2}`, []string{"/docs/d/r"}, nil, 200},
		{"Undelete", "POST", "/docs/d/gone/revert", hdr{"Content-Type", ctJSON}, `{"seq":2}`, []string{"/docs/d/gone"}, nil, 201},
		{"Batch", "POST", "/batch", hdr{"Content-Type", ctJSON}, `{"writes":[` +
			`{"method":"PUT","path":"/docs/d/b1","body":{"k":1}},` +
			`{"method":"PATCH","path":"/docs/d/r","headers":{"Content-Type":"application/merge-patch+json","If-Match":"*","Idempotency-Key":"dry-batch"},"body":{"z":1}},` +
			`{"method":"POST","path":"/docs/d/r/revert","headers":{"If-Match":"*"},"body":{"seq":5}}]}`,
			[]string{"/docs/d/b1", "/docs/d/r"}, []string{"dry-batch"}, 200},
		{"Schema", "PUT", "/schemas/d", hdr{"Content-Type", ctJSON}, `{"type":"object"}`, []string{"/schemas/d"}, nil, 201},
		{"Delete", "DELETE", "/docs/d/r", hdr{"If-Match", "*"}, "", []string{"/docs/d/r"}, nil, 204},
	}
	state := func(path string) string {
		g := s.do(t, "GET", path, nil, "")
		if strings.HasPrefix(path, "/schemas/") {
			return answerOf(g)
		}
		h := s.do(t, "GET", path+"/history?limit=1000", nil, "")
		return answerOf(g) + "\n" + string(h.body)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := map[string]string{}
			for _, p := range tc.touches {
				before[p] = state(p)
			}
			metrics := s.writeMetrics(t)
			dry := s.do(t, tc.method, tc.path+"?dryRun=true", tc.h, tc.body)
			if dry.status != tc.status {
				t.Fatalf("dry run: %d %s, want %d", dry.status, dry.body, tc.status)
			}
			noPhantom(t)
			for _, p := range tc.touches {
				if got := state(p); got != before[p] {
					t.Fatalf("%s changed:\n%s\nwas\n%s", p, got, before[p])
				}
			}
			for _, k := range tc.keys {
				if rec, err := s.backend().Idempotency(t.Context(), "\x00"+k); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("idempotency record %q: %+v %v", k, rec, err)
				}
			}
			if got := s.writeMetrics(t); fmt.Sprint(got) != fmt.Sprint(metrics) {
				t.Fatalf("write metrics changed: %v, were %v", got, metrics)
			}
			// The real request answers the same (but for the id a POST
			// makes).
			real := s.do(t, tc.method, tc.path, tc.h, tc.body)
			if d, r := answerOf(dry), answerOf(real); d != r {
				t.Fatalf("dry run answered\n%s\nthe request\n%s", d, r)
			}
			if tc.status < 300 && state(tc.touches[0]) == before[tc.touches[0]] {
				t.Fatalf("the real request left %s as it was", tc.touches[0])
			}
		})
	}
}

// nextStoreEvent waits for the next event that is not a Resync.
func nextStoreEvent(t *testing.T, ch <-chan store.Event) store.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-ch:
			if !ev.Resync {
				return ev
			}
		case <-timeout:
			t.Fatal("no event within 10s")
		}
	}
}

func TestRevert(t *testing.T) {
	s := startServer(t)
	e1 := s.create(t, "/docs/r/x", `{"a":1,"b":[1,2],"c":{"d":1}}`)
	e2 := s.do(t, "PATCH", "/docs/r/x", hdr{"Content-Type", ctPatch, "If-Match", e1}, `[{"op":"replace","path":"/a","value":2},{"op":"add","path":"/b/0","value":0}]`).header.Get("ETag")
	e3 := s.do(t, "PATCH", "/docs/r/x", hdr{"Content-Type", ctMerge, "If-Match", e2}, `{"c":{"e":2}}`).header.Get("ETag")
	revert := func(seq int, h ...string) response {
		return s.do(t, "POST", "/docs/r/x/revert", append(hdr{"Content-Type", ctJSON}, h...), fmt.Sprintf(`{"seq":%d}`, seq))
	}
	// An older version, rebased over the later one: its inverse only.
	r := revert(2, "If-Match", e3, "X-Request-Id", "undo-2")
	expect(t, r, http.StatusOK, "")
	if string(r.body) != `{"a":1,"b":[1,2],"c":{"d":1,"e":2}}` || r.header.Get("Rebased-From") != e2 {
		t.Fatalf("revert 2: %s (Rebased-From %q)", r.body, r.header.Get("Rebased-From"))
	}
	h := s.historyOf(t, "/docs/r/x")
	last := h[len(h)-1]
	if last["kind"] != "revert" || last["reverts"] != float64(2) || last["rebasedFrom"] != e2 || last["requestId"] != "undo-2" || last["actor"] != nil {
		t.Fatalf("history entry %v", last)
	}
	if _, ok := h[1]["reverts"]; ok {
		t.Fatalf("a patch has reverts: %v", h[1])
	}
	// The newest version (the revert itself): back to version 3's body.
	e4 := r.header.Get("ETag")
	r = revert(4, "If-Match", e4)
	expect(t, r, http.StatusOK, "")
	if r.header.Get("ETag") != e3 || r.header.Get("Rebased-From") != "" {
		t.Fatalf("revert 4: %s %s", r.header.Get("ETag"), r.body)
	}
	// Version 3 added /c/e, which nothing after it touched.
	r = revert(3, "If-Match", r.header.Get("ETag"))
	expect(t, r, http.StatusOK, "")
	if string(r.body) != `{"a":2,"b":[0,1,2],"c":{"d":1}}` {
		t.Fatalf("revert 3: %s", r.body)
	}
	// A version whose paths a later one wrote: a conflict naming it.
	y1 := s.create(t, "/docs/r/y", `{"a":1}`)
	y2 := s.do(t, "PATCH", "/docs/r/y", hdr{"Content-Type", ctMerge, "If-Match", y1}, `{"a":2}`).header.Get("ETag")
	y3 := s.do(t, "PATCH", "/docs/r/y", hdr{"Content-Type", ctMerge, "If-Match", y2}, `{"a":3}`).header.Get("ETag")
	r = s.do(t, "POST", "/docs/r/y/revert", hdr{"Content-Type", ctJSON, "If-Match", y3}, `{"seq":2}`)
	expect(t, r, http.StatusPreconditionFailed, "rebase-conflict")
	if p := r.problem(t); p["currentEtag"] != y3 || p["baseEtag"] != y2 || !strings.Contains(string(r.body), `"concurrentVersion":3`) {
		t.Fatalf("conflict %s", r.body)
	}
	// The undo of a delete that a later create overwrote: a conflict whose
	// base is the delete, which has no ETag: baseEtag null, not left out.
	s.create(t, "/docs/r/del", `{"v":1}`)
	expect(t, s.do(t, "DELETE", "/docs/r/del", hdr{"If-Match", "*"}, ""), http.StatusNoContent, "")
	s.create(t, "/docs/r/del", `{"v":2}`)
	r = s.do(t, "POST", "/docs/r/del/revert", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"seq":2}`)
	expect(t, r, http.StatusPreconditionFailed, "rebase-conflict")
	if p := r.problem(t); p["currentEtag"] == nil || !strings.Contains(string(r.body), `"baseEtag":null`) || p["conflicts"] == nil {
		t.Fatalf("conflict over the undo of a delete: %s", r.body)
	}
	// Refusals change nothing.
	before := s.historyOf(t, "/docs/r/x")
	expect(t, revert(1, "If-Match", "*"), http.StatusUnprocessableEntity, "cannot-revert")
	expect(t, revert(99, "If-Match", "*"), http.StatusPreconditionFailed, "base-unknown")
	// K past any seq, even past what 64 bits hold: never reached too.
	for _, k := range []string{"18446744073709551615", "99999999999999999999999"} {
		expect(t, s.do(t, "POST", "/docs/r/x/revert", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"seq":`+k+`}`), http.StatusPreconditionFailed, "base-unknown")
	}
	// K written in any form of an integer JSON allows: a dry run of each
	// undoes the newest version, 6, as {"seq":6} does.
	want := s.do(t, "POST", "/docs/r/x/revert?dryRun=true", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"seq":6}`)
	expect(t, want, http.StatusOK, "")
	for _, k := range []string{"6.0", "60e-1", "0.6E1"} {
		r := s.do(t, "POST", "/docs/r/x/revert?dryRun=true", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"seq":`+k+`}`)
		expect(t, r, http.StatusOK, "")
		if string(r.body) != string(want.body) || r.header.Get("ETag") != want.header.Get("ETag") {
			t.Fatalf(`dry run of {"seq":%s}: %s %s; of {"seq":6}: %s %s`, k, r.header.Get("ETag"), r.body, want.header.Get("ETag"), want.body)
		}
	}
	// A body past a document's limits is no {"seq": K} either: 400, not 422.
	deep := `{"seq":1,"x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`
	for _, body := range []string{deep, strings.Repeat("[", 70) + strings.Repeat("]", 70), `{"seq":1` + strings.Repeat("0", 5000) + `}`} {
		expect(t, s.do(t, "POST", "/docs/r/x/revert", hdr{"Content-Type", ctJSON, "If-Match", "*"}, body), http.StatusBadRequest, "invalid-request")
	}
	for _, k := range []string{"2.5", "0.0", "-2", "1e-1"} {
		expect(t, s.do(t, "POST", "/docs/r/x/revert", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"seq":`+k+`}`), http.StatusBadRequest, "invalid-request")
	}
	expect(t, s.do(t, "POST", "/docs/r/x/revert", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"seq":1e400}`), http.StatusPreconditionFailed, "base-unknown")
	expect(t, revert(0, "If-Match", "*"), http.StatusBadRequest, "invalid-request")
	expect(t, revert(2), http.StatusPreconditionRequired, "precondition-required")
	expect(t, revert(2, "If-Match", "*", "If-None-Match", "*"), http.StatusPreconditionFailed, "precondition-failed")
	expect(t, revert(2, "If-Match", `"0123456789abcdef0123456789abcdef"`), http.StatusPreconditionFailed, "base-unknown")
	expect(t, s.do(t, "POST", "/docs/r/x/revert", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"seq":"2"}`), http.StatusBadRequest, "invalid-request")
	expect(t, s.do(t, "POST", "/docs/r/x/revert", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"seq":2.5}`), http.StatusBadRequest, "invalid-request")
	expect(t, s.do(t, "POST", "/docs/r/none/revert", hdr{"Content-Type", ctJSON}, `{"seq":1}`), http.StatusNotFound, "not-found")
	if after := s.historyOf(t, "/docs/r/x"); len(after) != len(before) {
		t.Fatalf("%d versions after refusals, were %d", len(after), len(before))
	}

	// A delete: reverting it brings the document back, once.
	cur := s.do(t, "GET", "/docs/r/x", nil, "")
	expect(t, s.do(t, "DELETE", "/docs/r/x", hdr{"If-Match", cur.header.Get("ETag")}, ""), http.StatusNoContent, "")
	del := len(s.historyOf(t, "/docs/r/x"))
	expect(t, revert(3, "If-Match", "*"), http.StatusNotFound, "not-found") // deleted since
	// A 412 on a deleted document: no ETag is current, and it says so.
	r = revert(99)
	expect(t, r, http.StatusPreconditionFailed, "base-unknown")
	if p := r.problem(t); r.header.Get("ETag") != "" || !strings.Contains(string(r.body), `"currentEtag":null`) {
		t.Fatalf("a 412 of a deleted document: ETag %q, %v; want no ETag and currentEtag null", r.header.Get("ETag"), p)
	}
	r = revert(del)
	expect(t, r, http.StatusCreated, "")
	if r.header.Get("Location") != "/docs/r/x" || !bytes.Equal(r.body, cur.body) || r.header.Get("ETag") != cur.header.Get("ETag") {
		t.Fatalf("undelete: %s %s, was %s", r.header.Get("Location"), r.body, cur.body)
	}
	expect(t, revert(del, "If-Match", "*"), http.StatusPreconditionFailed, "rebase-conflict") // written since

	// A version that later versions already undid: nothing to do.
	w1 := s.create(t, "/docs/r/w", `{"a":1}`)
	w2 := s.do(t, "PATCH", "/docs/r/w", hdr{"Content-Type", ctMerge, "If-Match", w1}, `{"a":2}`).header.Get("ETag")
	expect(t, s.do(t, "PATCH", "/docs/r/w", hdr{"Content-Type", ctMerge, "If-Match", w2}, `{"a":1}`), http.StatusOK, "")
	r = s.do(t, "POST", "/docs/r/w/revert", hdr{"Content-Type", ctJSON, "If-Match", "*"}, `{"seq":2}`)
	expect(t, r, http.StatusOK, "")
	if r.header.Get("ETag") != w1 || len(s.historyOf(t, "/docs/r/w")) != 3 {
		t.Fatalf("revert of an undone version: %s, %d versions", answerOf(r), len(s.historyOf(t, "/docs/r/w")))
	}

	// Undone by a later version, then written again (a redo included): the
	// later write conflicts; a success would leave version 2's write in
	// the document, or claim an undo that another write overwrote.
	for _, tc := range []struct {
		name, redo string
	}{{"redone", `{"a":2}`}, {"changed", `{"a":5}`}} {
		v1 := s.create(t, "/docs/r/"+tc.name, `{"a":1}`)
		v2 := s.do(t, "PATCH", "/docs/r/"+tc.name, hdr{"Content-Type", ctMerge, "If-Match", v1}, `{"a":2}`).header.Get("ETag")
		v3 := s.do(t, "PATCH", "/docs/r/"+tc.name, hdr{"Content-Type", ctMerge, "If-Match", v2}, `{"a":1}`).header.Get("ETag")
		v4 := s.do(t, "PATCH", "/docs/r/"+tc.name, hdr{"Content-Type", ctMerge, "If-Match", v3}, tc.redo).header.Get("ETag")
		r = s.do(t, "POST", "/docs/r/"+tc.name+"/revert", hdr{"Content-Type", ctJSON, "If-Match", v4}, `{"seq":2}`)
		expect(t, r, http.StatusPreconditionFailed, "rebase-conflict")
		if p := r.problem(t); p["currentEtag"] != v4 || p["baseEtag"] != v2 || !strings.Contains(string(r.body), `"concurrentVersion":4`) {
			t.Fatalf("%s: conflict %s", tc.name, r.body)
		}
		if n := len(s.historyOf(t, "/docs/r/"+tc.name)); n != 4 {
			t.Fatalf("%s: %d versions after a refused revert, want 4", tc.name, n)
		}
	}

	// An idempotency key: the retry is answered, not applied again.
	z1 := s.create(t, "/docs/r/z", `{"a":1,"b":1}`)
	expect(t, s.do(t, "PATCH", "/docs/r/z", hdr{"Content-Type", ctMerge, "If-Match", z1}, `{"a":2}`), http.StatusOK, "")
	k := hdr{"Content-Type", ctJSON, "If-Match", "*", "Idempotency-Key", `"undo-once"`}
	first := s.do(t, "POST", "/docs/r/z/revert", k, `{"seq":2}`)
	again := s.do(t, "POST", "/docs/r/z/revert", k, `{"seq":2}`)
	expect(t, first, http.StatusOK, "")
	if first.header.Get("ETag") != z1 || !bytes.Equal(first.body, again.body) || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %s then %s", answerOf(first), answerOf(again))
	}
	if h := s.historyOf(t, "/docs/r/z"); len(h) != 3 {
		t.Fatalf("%d versions after a replayed revert", len(h))
	}
}

func TestBatch(t *testing.T) {
	s := startServer(t, func(c *config) { c.http.MaxBatch = 4; c.http.MaxBody = 8 << 10 })
	eA := s.create(t, "/docs/a/1", `{"n":1}`)
	batch := func(h hdr, writes ...string) response {
		return s.do(t, "POST", "/batch", append(hdr{"Content-Type", ctJSON}, h...), `{"writes":[`+strings.Join(writes, ",")+`]}`)
	}
	q := func(etag string) string { return strings.ReplaceAll(etag, `"`, `\"`) }

	// In order, across collections; each write sees the ones before it,
	// and a stale If-Match rebases over them.
	r := batch(nil,
		`{"method":"PUT","path":"/docs/b/1","body":{"x":1}}`,
		`{"method":"PATCH","path":"/docs/a/1","headers":{"Content-Type":"application/merge-patch+json","If-Match":"`+q(eA)+`"},"body":{"m":1}}`,
		`{"method":"PATCH","path":"/docs/a/1","headers":{"Content-Type":"application/json-patch+json","If-Match":"`+q(eA)+`"},"body":[{"op":"add","path":"/p","value":2}]}`,
		`{"method":"POST","path":"/docs/b","headers":{"Prefer":"return=minimal"},"body":{"y":1}}`)
	expect(t, r, http.StatusOK, "")
	var res struct {
		Results []struct {
			Status      int
			ETag        *string `json:"etag"`
			Location    *string
			RebasedFrom *string `json:"rebasedFrom"`
			Body        json.RawMessage
		}
	}
	if err := json.Unmarshal(r.body, &res); err != nil || len(res.Results) != 4 {
		t.Fatalf("results %s (%v)", r.body, err)
	}
	rs := res.Results
	if rs[0].Status != 201 || *rs[0].Location != "/docs/b/1" || rs[1].Status != 200 || rs[1].RebasedFrom != nil ||
		rs[2].Status != 200 || rs[2].RebasedFrom == nil || *rs[2].RebasedFrom != eA || string(rs[2].Body) != `{"m":1,"n":1,"p":2}` ||
		rs[3].Status != 201 || string(rs[3].Body) != "null" || !strings.HasPrefix(*rs[3].Location, "/docs/b/") {
		t.Fatalf("results %s", r.body)
	}
	if g := s.do(t, "GET", "/docs/a/1", nil, ""); g.header.Get("ETag") != *rs[2].ETag {
		t.Fatalf("a/1: %s", g.body)
	}
	if h := s.historyOf(t, "/docs/a/1"); len(h) != 3 || h[1]["requestId"] != h[2]["requestId"] {
		t.Fatalf("history %v", h)
	}

	// All or nothing: the third write is refused, the first two are not
	// written, and the answer is the third's, with its index.
	before := map[string]string{}
	for _, p := range []string{"/docs/a/1", "/docs/b/1", "/docs/c/new"} {
		before[p] = answerOf(s.do(t, "GET", p, nil, ""))
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events, err := s.backend().Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r = batch(nil,
		`{"method":"PUT","path":"/docs/c/new","body":{"k":1}}`,
		`{"method":"PATCH","path":"/docs/a/1","headers":{"Content-Type":"application/merge-patch+json","If-Match":"*","Idempotency-Key":"k-1"},"body":{"gone":1}}`,
		`{"method":"PUT","path":"/docs/b/1","headers":{"If-None-Match":"*"},"body":{}}`)
	expect(t, r, http.StatusPreconditionFailed, "precondition-failed")
	// A 412 carries the current ETag in the ETag header (API.md), in a
	// batch that of the refused write's document.
	if p := r.problem(t); p["index"] != float64(2) || p["currentEtag"] == nil || r.header.Get("ETag") != p["currentEtag"] {
		t.Fatalf("problem %s, ETag %q", r.body, r.header.Get("ETag"))
	}
	for p, was := range before {
		if now := answerOf(s.do(t, "GET", p, nil, "")); now != was {
			t.Fatalf("%s changed by a refused batch:\n%s\nwas\n%s", p, now, was)
		}
	}
	if _, err := s.backend().Idempotency(t.Context(), "\x00k-1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("idempotency record of a refused batch: %v", err)
	}
	s.create(t, "/docs/marker/1", `{}`)
	// Until the marker's event, none of a version past those made before
	// the refused batch (a/1 at seq 3, b/... at 1): over replicas an
	// earlier commit's event may come late (hints are sent after commits).
	for ev := nextStoreEvent(t, events); ev.Collection != "marker"; ev = nextStoreEvent(t, events) {
		if last := map[string]uint64{"a": 3, "b": 1}[ev.Collection]; ev.Seq > last || ev.Collection == "a" && ev.ID != "1" {
			t.Fatalf("event %+v from a refused batch", ev)
		}
	}

	// A retried batch is answered from its writes' records.
	k := `{"method":"POST","path":"/docs/k","headers":{"Idempotency-Key":"batch-k"},"body":{"once":true}}`
	first, again := batch(nil, k), batch(nil, k)
	expect(t, first, http.StatusOK, "")
	if !bytes.Equal(first.body, again.body) {
		t.Fatalf("retry answered %s, first %s", again.body, first.body)
	}
	if l := s.do(t, "GET", "/docs/k", nil, ""); strings.Count(string(l.body), `"id"`) != 1 {
		t.Fatalf("a retried batch applied twice: %s", l.body)
	}

	// Bad batches: 4xx, nothing written.
	put := `{"method":"PUT","path":"/docs/c/bad","body":{}}`
	for _, tc := range []struct {
		name    string
		h       hdr
		body    string
		status  int
		problem string
		index   any
	}{
		{"TooMany", nil, `{"writes":[` + strings.Repeat(put+",", 4) + put + `]}`, 400, "invalid-request", nil},
		{"NoWrites", nil, `{"writes":[]}`, 400, "invalid-request", nil},
		{"ExtraMember", nil, `{"writes":[` + put + `],"atomic":true}`, 400, "invalid-request", nil},
		{"UnknownMethod", nil, `{"writes":[` + put + `,{"method":"GET","path":"/docs/c/x"}]}`, 400, "invalid-request", float64(1)},
		{"LowercaseMethod", nil, `{"writes":[{"method":"put","path":"/docs/c/x","body":{}}]}`, 400, "invalid-request", float64(0)},
		{"OutsideDocs", nil, `{"writes":[{"method":"PUT","path":"/schemas/c","body":{}}]}`, 400, "invalid-request", float64(0)},
		{"Nested", nil, `{"writes":[{"method":"POST","path":"/batch","body":{"writes":[]}}]}`, 400, "invalid-request", float64(0)},
		{"History", nil, `{"writes":[{"method":"POST","path":"/docs/c/x/history","body":{}}]}`, 400, "invalid-request", float64(0)},
		{"WrongRoute", nil, `{"writes":[{"method":"PATCH","path":"/docs/c","headers":{"Content-Type":"application/merge-patch+json"},"body":{}}]}`, 400, "invalid-request", float64(0)},
		{"BadName", nil, `{"writes":[{"method":"PUT","path":"/docs/c/a%20b","body":{}}]}`, 400, "invalid-request", float64(0)},
		{"UnknownHeader", nil, `{"writes":[{"method":"PUT","path":"/docs/c/x","headers":{"Authorization":"Bearer x"},"body":{}}]}`, 400, "invalid-request", float64(0)},
		{"HeaderTwice", nil, `{"writes":[{"method":"PUT","path":"/docs/c/x","headers":{"If-Match":"*","if-match":"*"},"body":{}}]}`, 400, "invalid-request", float64(0)},
		{"NoBody", nil, `{"writes":[{"method":"PUT","path":"/docs/c/x"}]}`, 400, "invalid-request", float64(0)},
		{"DeleteBody", nil, `{"writes":[{"method":"DELETE","path":"/docs/c/x","body":{}}]}`, 400, "invalid-request", float64(0)},
		{"DuplicateKeys", nil, `{"writes":[{"method":"POST","path":"/docs/c","headers":{"Idempotency-Key":"d"},"body":{}},{"method":"POST","path":"/docs/c","headers":{"Idempotency-Key":"\"d\""},"body":{}}]}`, 400, "invalid-request", float64(1)},
		{"BatchKey", hdr{"Idempotency-Key", "k"}, `{"writes":[` + put + `]}`, 400, "invalid-request", nil},
		{"Duplicate", nil, `{"writes":[{"method":"PUT","path":"/docs/c/x","body":{}}],"writes":[]}`, 400, "invalid-json", nil},
		{"TooLarge", nil, `{"writes":[{"method":"PUT","path":"/docs/c/x","body":{"s":"` + strings.Repeat("x", 9000) + `"}}]}`, 413, "too-large", nil},
		{"PatchType", nil, `{"writes":[{"method":"PATCH","path":"/docs/a/1","body":{}}]}`, 415, "unsupported-media-type", float64(0)},
		{"DryRunBad", nil, `{"writes":[` + put + `]}`, 0, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/batch"
			if tc.name == "DryRunBad" {
				path, tc.status, tc.problem = "/batch?dryRun=1", 400, "invalid-request"
			}
			r := s.do(t, "POST", path, append(hdr{"Content-Type", ctJSON}, tc.h...), tc.body)
			expect(t, r, tc.status, tc.problem)
			if got := r.problem(t)["index"]; got != tc.index {
				t.Fatalf("index %v, want %v (%s)", got, tc.index, r.body)
			}
			if tc.name == "ExtraMember" && !strings.Contains(string(r.body), `unknown member \"atomic\"`) {
				t.Fatalf("the detail should name the unknown member: %s", r.body)
			}
			expect(t, s.do(t, "GET", "/docs/c/bad", nil, ""), http.StatusNotFound, "")
			expect(t, s.do(t, "GET", "/docs/c/x", nil, ""), http.StatusNotFound, "")
		})
	}
}

// TestBatchAuthorization: each write of a batch needs a token that may
// write to its collection.
func TestBatchAuthorization(t *testing.T) {
	s := startServer(t, withTokens(t))
	body := `{"writes":[{"method":"PUT","path":"/docs/a/1","body":{}},{"method":"PUT","path":"/docs/b/1","body":{}}]}`
	r := s.do(t, "POST", "/batch", append(bearer(tokWriteA), "Content-Type", ctJSON), body)
	expect(t, r, http.StatusForbidden, "forbidden")
	if r.problem(t)["index"] != float64(1) {
		t.Fatalf("problem %s", r.body)
	}
	expect(t, s.do(t, "GET", "/docs/a/1", bearer(tokRead), ""), http.StatusNotFound, "")
	expect(t, s.do(t, "POST", "/batch", append(bearer(tokRead), "Content-Type", ctJSON), body), http.StatusForbidden, "forbidden")
	expect(t, s.do(t, "POST", "/batch", hdr{"Content-Type", ctJSON}, body), http.StatusUnauthorized, "unauthorized")
	expect(t, s.do(t, "POST", "/batch", append(bearer(tokAdmin), "Content-Type", ctJSON), body), http.StatusOK, "")
}

func TestActors(t *testing.T) {
	const named, anonymous = "0123456789abcdef-named", "0123456789abcdef-anon"
	toks, err := handlers.ParseTokens(strings.NewReader(named + " write name=alice\n" + anonymous + " write docs\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, func(c *config) { c.http.Tokens = toks })
	e := s.do(t, "PUT", "/docs/docs/1", append(bearer(named), "Content-Type", ctJSON, "X-Request-Id", "req-1"), `{"a":1}`)
	expect(t, e, http.StatusCreated, "")
	e2 := s.do(t, "PATCH", "/docs/docs/1", append(bearer(anonymous), "Content-Type", ctMerge, "If-Match", e.header.Get("ETag")), `{"a":2}`)
	expect(t, e2, http.StatusOK, "")
	r := s.do(t, "GET", "/docs/docs/1/history", bearer(named), "")
	var page struct{ Versions []map[string]any }
	if err := json.Unmarshal(r.body, &page); err != nil || len(page.Versions) != 2 {
		t.Fatalf("history %s", r.body)
	}
	sum := sha256.Sum256([]byte(anonymous))
	v1, v2 := page.Versions[0], page.Versions[1]
	if v1["actor"] != "alice" || v1["requestId"] != "req-1" || v2["actor"] != "token:"+hex.EncodeToString(sum[:4]) || v2["requestId"] != e2.header.Get("X-Request-Id") {
		t.Fatalf("history %s", r.body)
	}
	// The feed's version events are the history entries.
	f := s.do(t, "GET", "/docs/docs/1/history?after=1", bearer(named), "")
	if !strings.Contains(string(f.body), `"actor":"token:`) {
		t.Fatalf("history page %s", f.body)
	}
	ev := firstFeedEvent(t, s, "/docs/docs/1/events?after=0", bearer(named))
	if !strings.Contains(ev, `"actor":"alice"`) || !strings.Contains(ev, `"requestId":"req-1"`) {
		t.Fatalf("feed event %s", ev)
	}

	// Without tokens, actor is null.
	open := startServer(t)
	open.create(t, "/docs/c/1", `{}`)
	if h := open.historyOf(t, "/docs/c/1"); h[0]["actor"] != nil || h[0]["requestId"] == nil {
		t.Fatalf("history %v", h)
	}

	for _, bad := range []string{
		"0123456789abcdef-xx write name=",
		"0123456789abcdef-xx write name=a/b",
		"0123456789abcdef-xx write name=a name=b",
	} {
		if _, err := handlers.ParseTokens(strings.NewReader(bad)); !errors.Is(err, handlers.ErrTokensFile) || strings.Contains(err.Error(), "0123456789abcdef") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// firstFeedEvent opens a change feed and returns the data of its first
// event.
func firstFeedEvent(t *testing.T, s *server, path string, h hdr) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	srv := s.replicaServers()[0]
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Add(h[i], h[i+1])
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	chunk := make([]byte, 4096)
	for !strings.Contains(buf.String(), "\ndata: ") || !strings.Contains(buf.String()[strings.Index(buf.String(), "\ndata: "):], "\n\n") {
		n, err := res.Body.Read(chunk)
		buf.Write(chunk[:n])
		if err == io.EOF || err != nil {
			t.Fatalf("feed ended: %v after %q", err, buf.String())
		}
	}
	s2 := buf.String()
	i := strings.Index(s2, "\ndata: ") + len("\ndata: ")
	return s2[i : i+strings.Index(s2[i:], "\n")]
}

// TestStalledBodyAnswered: a body that stops arriving gets its 400 when the
// server's read timeout passes, even where the write timeout has passed
// too (here before it), rather than a closed connection.
func TestStalledBodyAnswered(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "p.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := httptest.NewUnstartedServer(newHandler(st, newConfig()).Echo())
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = time.Second, 500*time.Millisecond
	srv.Start()
	defer srv.Close()
	for _, length := range []int{1000, 1 << 20} { // read whole, and read as it comes
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "PUT /docs/c/d HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"a\":", length)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("Content-Length %d, 5 bytes sent: no answer: %v", length, err)
		}
		body, _ := io.ReadAll(res.Body)
		conn.Close()
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "did not arrive in time") {
			t.Fatalf("Content-Length %d, 5 bytes sent: %d %s", length, res.StatusCode, body)
		}
	}
	if _, err := st.Get(context.Background(), "c", "d"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a stalled body wrote something: %v", err)
	}
}

// TestBatchTurns: at most MaxBatches batches are decided at once (each may
// hold 32 MiB of results); one more, of another client, waits
// OverloadWait for its turn, then is answered 503 overloaded with
// Retry-After, having read nothing. The batches in flight are not
// disturbed.
func TestBatchTurns(t *testing.T) {
	held := newBlockingStore()
	s := startServerWith(t, func(st store.Store) store.Store { held.Store = st; return held }, nil, func(c *config) {
		c.http.MaxBatches = 2
		c.http.OverloadWait = 50 * time.Millisecond
	})
	var once sync.Once
	release := func() { once.Do(func() { close(held.release) }) }
	t.Cleanup(release) // before the server stops, should the test fail
	batch := func(id string) string {
		return `{"writes":[{"method":"PUT","path":"/docs/bt/` + id + `","body":{"n":1}}]}`
	}
	results := make(chan response, 2)
	for _, id := range []string{"a", "b"} {
		go func() { results <- s.do(t, "POST", "/batch", hdr{"Content-Type", ctJSON}, batch(id)) }()
	}
	<-held.entered
	<-held.entered
	// From another client: this one has its two batches in progress.
	r := s.doWith(t, fromClient(slowClient), "POST", "/batch", hdr{"Content-Type", ctJSON}, batch("c"))
	expect(t, r, http.StatusServiceUnavailable, "overloaded")
	if r.header.Get("Retry-After") == "" {
		t.Fatalf("503 without Retry-After: %v", r.header)
	}
	release()
	for range 2 {
		expect(t, <-results, http.StatusOK, "")
	}
	if _, err := held.Store.Get(context.Background(), "bt", "c"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused batch wrote: %v", err)
	}
	expect(t, s.do(t, "POST", "/batch", hdr{"Content-Type", ctJSON}, batch("c")), http.StatusOK, "")
}

// TestBatchRebaseWorkBound: each stale write of a batch keeps within
// --max-rebase-work, and the batch's writes together within four times
// it; past that the write that passes it is 412 rebase-too-far naming the
// batch, and nothing is written (100 writes of 100 ops rebased over each
// other took 4 to 5 s of CPU).
func TestBatchRebaseWorkBound(t *testing.T) {
	s := startServer(t, func(c *config) { c.doc.Rebase.MaxWork = 100 })
	const docs = 9
	bases := make([]string, docs)
	for d := range docs {
		path := fmt.Sprintf("/docs/rw/d%d", d)
		bases[d] = s.create(t, path, `{"q":0}`)
		cur := bases[d]
		for v := 1; v <= 10; v++ { // 10 versions of one op after the base
			r := s.do(t, "PATCH", path, hdr{"Content-Type", ctMerge, "If-Match", cur}, fmt.Sprintf(`{"q":%d}`, v))
			expect(t, r, http.StatusOK, "")
			cur = r.header.Get("ETag")
		}
	}
	// Each write: 5 ops over 10, 50 pairs; the batch's bound is 400.
	writes := func(n int) string {
		var ws []string
		for d := range n {
			ws = append(ws, fmt.Sprintf(`{"method":"PATCH","path":"/docs/rw/d%d","headers":{"Content-Type":"application/merge-patch+json","If-Match":%q},"body":{"a":1,"b":2,"c":3,"d":4,"e":5}}`, d, bases[d]))
		}
		return `{"writes":[` + strings.Join(ws, ",") + `]}`
	}
	h := hdr{"Content-Type", ctJSON}
	r := s.do(t, "POST", "/batch?dryRun=true", h, writes(8))
	expect(t, r, http.StatusOK, "")
	r = s.do(t, "POST", "/batch", h, writes(9))
	expect(t, r, http.StatusPreconditionFailed, "rebase-too-far")
	if p := r.problem(t); p["index"] != float64(8) || !strings.Contains(p["detail"].(string), "batch") {
		t.Fatalf("9 writes of 50 pairs: %s, want the ninth refused, naming the batch", r.body)
	}
	if got := s.do(t, "GET", "/docs/rw/d0", nil, ""); strings.Contains(string(got.body), `"a"`) {
		t.Fatalf("a refused batch wrote: %s", got.body)
	}
}
