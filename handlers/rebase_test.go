package handlers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// rebaseCase is one record of testdata/rebase/cases.json (see its README).
type rebaseCase struct {
	Name   string `json:"name"`
	Base   json.RawMessage
	Theirs []struct {
		Kind string          `json:"kind"`
		Body json.RawMessage `json:"body"`
	} `json:"theirs"`
	Mine struct {
		Kind string          `json:"kind"`
		Body json.RawMessage `json:"body"`
	} `json:"mine"`
	IfMatch string `json:"ifMatch"`
	Want    struct {
		Outcome   string          `json:"outcome"`
		Doc       json.RawMessage `json:"doc"`
		Conflicts []struct {
			ClientOp          int    `json:"clientOp"`
			ClientPath        string `json:"clientPath"`
			ConcurrentPath    string `json:"concurrentPath"`
			ConcurrentVersion int    `json:"concurrentVersion"`
			Reason            string `json:"reason"`
		} `json:"conflicts"`
	} `json:"want"`
}

func canonicalJSON(t *testing.T, raw []byte) string {
	t.Helper()
	v, err := patch.Parse(raw, patch.Limits{})
	if err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return string(patch.Canonical(v))
}

// send writes one edit of a case with the given If-Match (none when "").
func (s *server) send(t *testing.T, path, kind string, body []byte, ifMatch string) response {
	t.Helper()
	h := hdr{}
	if ifMatch != "" {
		h = append(h, "If-Match", ifMatch)
	}
	switch kind {
	case "json-patch":
		return s.do(t, "PATCH", path, append(h, "Content-Type", ctPatch), string(body))
	case "merge-patch":
		return s.do(t, "PATCH", path, append(h, "Content-Type", ctMerge), string(body))
	case "put":
		return s.do(t, "PUT", path, append(h, "Content-Type", ctJSON), string(body))
	}
	t.Fatalf("unknown kind %q", kind)
	return response{}
}

func historyLen(t *testing.T, s *server, path string) int {
	t.Helper()
	r := s.do(t, "GET", path+"/history?limit=1000", nil, "")
	expect(t, r, 200, "")
	var h struct{ Versions []json.RawMessage }
	if err := json.Unmarshal(r.body, &h); err != nil {
		t.Fatal(err)
	}
	return len(h.Versions)
}

type version struct {
	Seq         int     `json:"seq"`
	ETag        *string `json:"etag"`
	Kind        string  `json:"kind"`
	RebasedFrom *string `json:"rebasedFrom"`
}

func lastVersion(t *testing.T, s *server, path string) version {
	t.Helper()
	r := s.do(t, "GET", path+"/history?limit=1000", nil, "")
	var h struct{ Versions []version }
	if err := json.Unmarshal(r.body, &h); err != nil || len(h.Versions) == 0 {
		t.Fatalf("history %s: %v", r.body, err)
	}
	return h.Versions[len(h.Versions)-1]
}

// TestRebaseTooFar: a base further back than the configured bound is a 412
// with a clear detail, not unbounded work.
func TestRebaseTooFar(t *testing.T) {
	s := startServer(t, func(c *config) { c.doc.Rebase.MaxOps = 5 })
	base := s.create(t, "/docs/c/d", `{"n":0,"x":0}`)
	cur := base
	for i := 1; i <= 6; i++ {
		r := s.send(t, "/docs/c/d", "merge-patch", fmt.Appendf(nil, `{"n":%d}`, i), cur)
		expect(t, r, 200, "")
		cur = r.header.Get("ETag")
	}
	r := s.send(t, "/docs/c/d", "merge-patch", []byte(`{"x":1}`), base)
	expect(t, r, 412, "rebase-too-far")
	if r.header.Get("ETag") != cur || !strings.Contains(string(r.body), "5") {
		t.Fatalf("412: %v %s", r.header, r.body)
	}
	// A nearer base is fine.
	r = s.send(t, "/docs/c/d", "merge-patch", []byte(`{"x":1}`), lastETagBefore(t, s, "/docs/c/d", 2))
	expect(t, r, 200, "")
}

// TestRebaseTooManyBytes: a base behind more bytes of changes than one
// rebase reads (store.Options.MaxHistoryRead, 8 times --max-doc in the
// binary) is a 412 rebase-too-far, for a stale PATCH and for a revert, and
// nothing is written: the versions are neither read nor decoded, however
// few ops they hold. A base within the bound is rebased as before.
func TestRebaseTooManyBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "patchd.db")
	if dsn := replicaDatabase(t); dsn != "" {
		path = dsn
	}
	s := startServerAt(t, path, store.Options{MaxHistoryRead: 64 << 10})
	base := s.create(t, "/docs/c/big", `{"s":"base","x":0}`)
	cur := base
	for i := range 4 { // each version replaces a 20 KB string: about 40 KB of ops
		body := fmt.Sprintf(`{"s":%q}`, strings.Repeat(string(rune('a'+i)), 20_000))
		r := s.send(t, "/docs/c/big", "merge-patch", []byte(body), cur)
		expect(t, r, 200, "")
		cur = r.header.Get("ETag")
	}
	r := s.send(t, "/docs/c/big", "merge-patch", []byte(`{"x":1}`), base)
	expect(t, r, 412, "rebase-too-far")
	if r.header.Get("ETag") != cur {
		t.Fatalf("412 with ETag %q, want the current %q", r.header.Get("ETag"), cur)
	}
	r = s.do(t, "POST", "/docs/c/big/revert", hdr{"Content-Type", ctJSON, "If-Match", cur}, `{"seq":2}`)
	expect(t, r, 412, "rebase-too-far")
	if got := s.do(t, "GET", "/docs/c/big", nil, ""); got.header.Get("ETag") != cur {
		t.Fatalf("a refused edit changed the document: %s", got.header.Get("ETag"))
	}
	// One version behind: about 40 KB, within the bound.
	r = s.send(t, "/docs/c/big", "merge-patch", []byte(`{"x":1}`), lastETagBefore(t, s, "/docs/c/big", 1))
	expect(t, r, 200, "")
}

// lastETagBefore returns the ETag of the version back versions before the
// newest.
func lastETagBefore(t *testing.T, s *server, path string, back int) string {
	t.Helper()
	r := s.do(t, "GET", path+"/history?limit=1000", nil, "")
	var h struct{ Versions []version }
	if err := json.Unmarshal(r.body, &h); err != nil {
		t.Fatal(err)
	}
	return *h.Versions[len(h.Versions)-1-back].ETag
}

// TestRebaseCasesOverHTTP runs every case of REBASE.md section 9 end to end
// against a real server: the base and the concurrent versions are committed
// with If-Match, then the client's edit is sent with the If-Match the case
// names.
func TestRebaseCasesOverHTTP(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "rebase", "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []rebaseCase
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 36 {
		t.Fatalf("only %d cases", len(cases))
	}
	s := startServer(t)
	for i, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			path := fmt.Sprintf("/docs/rebase/case%d", i)
			base := s.create(t, path, string(tc.Base))
			cur := base
			for k, q := range tc.Theirs {
				r := s.send(t, path, q.Kind, q.Body, cur)
				expect(t, r, 200, "")
				if r.header.Get("Rebased-From") != "" {
					t.Fatalf("theirs[%d] was rebased", k)
				}
				cur = r.header.Get("ETag")
			}
			before := s.do(t, "GET", path, nil, "")
			versions := historyLen(t, s, path)
			ifMatch := base
			switch tc.IfMatch {
			case "current":
				ifMatch = cur
			case "*":
				ifMatch = "*"
			}
			r := s.send(t, path, tc.Mine.Kind, tc.Mine.Body, ifMatch)
			unchanged := func() {
				t.Helper()
				after := s.do(t, "GET", path, nil, "")
				if after.header.Get("ETag") != cur || string(after.body) != string(before.body) {
					t.Fatalf("document changed: %s -> %s", before.body, after.body)
				}
				if n := historyLen(t, s, path); n != versions {
					t.Fatalf("history grew from %d to %d", versions, n)
				}
			}
			switch tc.Want.Outcome {
			case "ok":
				expect(t, r, 200, "")
				if got, want := string(r.body), canonicalJSON(t, tc.Want.Doc); got != want {
					t.Fatalf("doc=%s\nwant %s", got, want)
				}
				if r.header.Get("ETag") != etagOf(string(r.body)) {
					t.Fatalf("ETag %s does not hash the body", r.header.Get("ETag"))
				}
				rebased := ifMatch == base && base != cur
				if got := r.header.Get("Rebased-From"); rebased && got != base || !rebased && got != "" {
					t.Fatalf("Rebased-From=%q (base %s, current %s)", got, base, cur)
				}
				if string(r.body) != string(before.body) {
					if n := historyLen(t, s, path); n != versions+1 {
						t.Fatalf("history has %d versions, want %d", n, versions+1)
					}
					last := lastVersion(t, s, path)
					if rebased && (last.RebasedFrom == nil || *last.RebasedFrom != base) || !rebased && last.RebasedFrom != nil {
						t.Fatalf("history rebasedFrom=%v, want %s (rebased %v)", last.RebasedFrom, base, rebased)
					}
				}
			case "noop":
				expect(t, r, 200, "")
				if r.header.Get("ETag") != cur {
					t.Fatalf("ETag=%s, want the current %s", r.header.Get("ETag"), cur)
				}
				unchanged()
			case "conflict":
				expect(t, r, 412, "rebase-conflict")
				var p struct {
					CurrentETag string `json:"currentEtag"`
					BaseETag    string `json:"baseEtag"`
					Conflicts   []struct {
						ClientOp          int    `json:"clientOp"`
						ClientPath        string `json:"clientPath"`
						ConcurrentPath    string `json:"concurrentPath"`
						ConcurrentVersion int    `json:"concurrentVersion"`
						Reason            string `json:"reason"`
					} `json:"conflicts"`
				}
				if err := json.Unmarshal(r.body, &p); err != nil {
					t.Fatal(err)
				}
				if p.CurrentETag != cur || r.header.Get("ETag") != cur || p.BaseETag != base {
					t.Fatalf("ETags: header %s, body %+v; want current %s base %s", r.header.Get("ETag"), p, cur, base)
				}
				// Versions are numbered from the base, which is seq 1.
				want := tc.Want.Conflicts
				for k := range want {
					want[k].ConcurrentVersion++
				}
				if got, w := fmt.Sprintf("%+v", p.Conflicts), fmt.Sprintf("%+v", want); got != w {
					t.Fatalf("conflicts=%s\nwant %s", got, w)
				}
				unchanged()
			case "patch-failed":
				expect(t, r, 422, "patch-failed")
				unchanged()
			default:
				t.Fatalf("unknown outcome %q", tc.Want.Outcome)
			}
		})
	}
}

// TestCollaborativeForm: 32 clients, each owning one field of one document,
// edit it from the ETag they last saw and never re-read. Every edit must
// commit (no 412) and every field must end with its owner's last value.
func TestCollaborativeForm(t *testing.T) {
	s := startServer(t)
	const clients, edits = 32, 15
	fields := make([]string, clients)
	for i := range fields {
		fields[i] = fmt.Sprintf(`"f%02d":"v0"`, i)
	}
	start := s.create(t, "/docs/forms/shared", "{"+strings.Join(fields, ",")+"}")
	var wg sync.WaitGroup
	failures := make(chan string, clients*edits)
	for i := range clients {
		wg.Go(func() {
			etag := start
			for n := 1; n <= edits; n++ {
				var r response
				if i%2 == 0 {
					r = s.send(t, "/docs/forms/shared", "json-patch", fmt.Appendf(nil, `[{"op":"replace","path":"/f%02d","value":"v%d"}]`, i, n), etag)
				} else {
					r = s.send(t, "/docs/forms/shared", "merge-patch", fmt.Appendf(nil, `{"f%02d":"v%d"}`, i, n), etag)
				}
				if r.status != http.StatusOK {
					failures <- fmt.Sprintf("client %d edit %d: %d %s", i, n, r.status, r.body)
					return
				}
				etag = r.header.Get("ETag")
			}
		})
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	var doc map[string]string
	if err := json.Unmarshal(s.do(t, "GET", "/docs/forms/shared", nil, "").body, &doc); err != nil {
		t.Fatal(err)
	}
	for i := range clients {
		if got, want := doc[fmt.Sprintf("f%02d", i)], fmt.Sprintf("v%d", edits); got != want {
			t.Errorf("f%02d=%q, want %q", i, got, want)
		}
	}
	if n := historyLen(t, s, "/docs/forms/shared"); n != 1+clients*edits {
		t.Errorf("history has %d versions, want %d", n, 1+clients*edits)
	}
}

// TestContestedFields: two clients per field. Every 412 must name exactly the
// contested field, and every acknowledged value must be in history.
func TestContestedFields(t *testing.T) {
	s := startServer(t)
	const fieldsN, edits = 16, 10
	fields := make([]string, fieldsN)
	for i := range fields {
		fields[i] = fmt.Sprintf(`"f%02d":"init"`, i)
	}
	start := s.create(t, "/docs/forms/contested", "{"+strings.Join(fields, ",")+"}")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	conflicts := 0
	acked := map[string][]string{} // field -> values acknowledged
	for c := range 2 * fieldsN {
		field := fmt.Sprintf("f%02d", c/2)
		wg.Go(func() {
			etag := start
			for n := 1; n <= edits; n++ {
				value := fmt.Sprintf("c%d-%d", c, n)
				r := s.send(t, "/docs/forms/contested", "merge-patch", fmt.Appendf(nil, `{%q:%q}`, field, value), etag)
				mu.Lock()
				switch r.status {
				case http.StatusOK:
					acked[field] = append(acked[field], value)
					etag = r.header.Get("ETag")
				case http.StatusPreconditionFailed:
					conflicts++
					var p struct {
						Type      string `json:"type"`
						Conflicts []struct{ ClientPath, ConcurrentPath string }
					}
					if err := json.Unmarshal(r.body, &p); err != nil || p.Type != "/problems/rebase-conflict" || len(p.Conflicts) == 0 {
						errs = append(errs, fmt.Sprintf("412 %s", r.body))
					}
					for _, cf := range p.Conflicts {
						if cf.ClientPath != "/"+field || cf.ConcurrentPath != "/"+field {
							errs = append(errs, fmt.Sprintf("client on %s got conflict %+v", field, cf))
						}
					}
					etag = r.header.Get("ETag") // re-read: the 412 names the current ETag
				default:
					errs = append(errs, fmt.Sprintf("status %d: %s", r.status, r.body))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, e := range errs {
		t.Error(e)
	}
	hist := string(s.do(t, "GET", "/docs/forms/contested/history?limit=1000", nil, "").body)
	total := 0
	for field, values := range acked {
		for _, v := range values {
			total++
			if !strings.Contains(hist, fmt.Sprintf(`{"op":"replace","path":"/%s","value":%q}`, field, v)) {
				t.Errorf("acknowledged %s=%s is not in history", field, v)
			}
		}
	}
	if total+conflicts != 2*fieldsN*edits {
		t.Fatalf("acked %d + 412s %d != attempts %d", total, conflicts, 2*fieldsN*edits)
	}
	t.Logf("%d edits committed, %d refused with rebase-conflict", total, conflicts)
}
