package handlers_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
)

// listPage is a GET /docs/{c} answer.
type listPage struct {
	Items []struct {
		ID    string          `json:"id"`
		ETag  string          `json:"etag"`
		Seq   uint64          `json:"seq"`
		Value json.RawMessage `json:"value"`
	} `json:"items"`
	Next *string `json:"next"`
}

// listAll reads every page of a listing with query q (without after).
func listAll(t *testing.T, s *server, c, q string, each func(listPage)) []string {
	t.Helper()
	var ids []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("more than 1000 pages")
		}
		path := "/docs/" + c + "?" + q
		if after != "" {
			path += "&after=" + url.QueryEscape(after)
		}
		r := s.do(t, "GET", path, nil, "")
		expect(t, r, http.StatusOK, "")
		var p listPage
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatalf("%s: %s: %v", path, r.body, err)
		}
		if each != nil {
			each(p)
		}
		for _, it := range p.Items {
			ids = append(ids, it.ID)
		}
		if p.Next == nil {
			return ids
		}
		after = *p.Next
	}
}

// TestListBodiesAndWhere: include=body adds each document exactly as GET
// answers it, and seq; where keeps the documents that match, in id order,
// over pages.
func TestListBodiesAndWhere(t *testing.T) {
	s := startServer(t)
	want := map[string]string{}
	for i := range 25 {
		body := fmt.Sprintf(`{"n":%d,"status":%q,"tags":["t%d"]}`, i, []string{"open", "closed"}[i%2], i%3)
		if i%5 == 0 {
			body = fmt.Sprintf(`{"n":%d.0,"note":"\u00e9<&>"}`, i)
		}
		id := fmt.Sprintf("d%02d", i)
		s.create(t, "/docs/lw/"+id, body)
		r := s.do(t, "GET", "/docs/lw/"+id, nil, "")
		want[id] = string(r.body)
	}
	s.do(t, "PATCH", "/docs/lw/d03", hdr{"Content-Type", ctMerge, "If-Match", "*"}, `{"x":1}`)
	want["d03"] = string(s.do(t, "GET", "/docs/lw/d03", nil, "").body)

	ids := listAll(t, s, "lw", "include=body&limit=7", func(p listPage) {
		for _, it := range p.Items {
			if string(it.Value) != want[it.ID] {
				t.Errorf("%s value %s, want %s", it.ID, it.Value, want[it.ID])
			}
			if wantSeq := map[bool]uint64{true: 2, false: 1}[it.ID == "d03"]; it.Seq != wantSeq {
				t.Errorf("%s seq %d, want %d", it.ID, it.Seq, wantSeq)
			}
		}
	})
	if len(ids) != 25 || !sort.StringsAreSorted(ids) {
		t.Fatalf("include=body listed %v", ids)
	}
	for _, tc := range []struct {
		where string
		want  func(i int) bool
	}{
		{`{"/status":"open"}`, func(i int) bool { return i%5 != 0 && i%2 == 0 }},
		{`{"/n":{"ge":10,"lt":20}}`, func(i int) bool { return i >= 10 && i < 20 }},
		{`{"/n":{"in":[5,15.0]}}`, func(i int) bool { return i == 5 || i == 15 }},
		{`{"/note":{"exists":true}}`, func(i int) bool { return i%5 == 0 }},
		{`{"/status":{"prefix":"clo"},"/n":{"gt":20}}`, func(i int) bool { return i > 20 && i%2 == 1 && i%5 != 0 }},
		{`{"/tags/0":"t1"}`, func(i int) bool { return i%5 != 0 && i%3 == 1 }},
		{`{"/status":{"ne":"open"}}`, func(i int) bool { return i%5 == 0 || i%2 == 1 }},
	} {
		var exp []string
		for i := range 25 {
			if tc.want(i) {
				exp = append(exp, fmt.Sprintf("d%02d", i))
			}
		}
		if got := listAll(t, s, "lw", "limit=3&where="+url.QueryEscape(tc.where), nil); !slices.Equal(got, exp) {
			t.Errorf("where %s: %v, want %v", tc.where, got, exp)
		}
	}
	r := s.do(t, "GET", "/docs/lw?where="+url.QueryEscape(`{"/n":{"between":[1,2]}}`), nil, "")
	expect(t, r, http.StatusBadRequest, "invalid-request")
	if d := r.problem(t)["detail"].(string); !strings.Contains(d, `"between" is not an operator`) {
		t.Fatalf("detail %q", d)
	}
}

// TestListBodiesBounded: a page with bodies stops once its values pass
// about 4 MiB, whatever the limit, and the next pages go on.
func TestListBodiesBounded(t *testing.T) {
	s := startServer(t)
	big := strings.Repeat("x", 900<<10)
	for i := range 7 {
		s.create(t, fmt.Sprintf("/docs/lb/d%d", i), `{"pad":"`+big+`"}`)
	}
	pages := 0
	ids := listAll(t, s, "lb", "include=body&limit=100", func(p listPage) {
		pages++
		size := 0
		for _, it := range p.Items {
			size += len(it.Value)
		}
		if size > 5<<20 {
			t.Errorf("a page of %d bytes of values", size)
		}
	})
	if len(ids) != 7 || pages < 2 {
		t.Fatalf("%d documents in %d pages", len(ids), pages)
	}
}

// TestListOrder: order sorts by a member (descending with -), ties by id,
// documents without the member last, over pages of any size; and a pass
// lists a document at most once while documents change.
func TestListOrder(t *testing.T) {
	s := startServer(t)
	rng := rand.New(rand.NewPCG(1, 2))
	type doc struct {
		id      string
		n       float64
		missing bool
	}
	var docs []doc
	for i := range 40 {
		d := doc{id: fmt.Sprintf("k%02d", i), n: float64(rng.IntN(10)) / 2}
		body := fmt.Sprintf(`{"n":%g}`, d.n)
		if i%7 == 0 {
			d.missing, body = true, `{"other":1}`
		}
		docs = append(docs, d)
		s.create(t, "/docs/lo/"+d.id, body)
	}
	for _, desc := range []bool{false, true} {
		exp := slices.Clone(docs)
		sort.SliceStable(exp, func(i, j int) bool {
			a, b := exp[i], exp[j]
			if a.missing != b.missing {
				return !a.missing
			}
			if !a.missing && a.n != b.n {
				return (a.n < b.n) != desc
			}
			return a.id < b.id
		})
		var want []string
		for _, d := range exp {
			want = append(want, d.id)
		}
		order := "/n"
		if desc {
			order = "-/n"
		}
		for _, limit := range []int{1, 6, 40, 100} {
			got := listAll(t, s, "lo", fmt.Sprintf("order=%s&limit=%d", url.QueryEscape(order), limit), nil)
			if !slices.Equal(got, want) {
				t.Fatalf("order=%s limit=%d:\n%v\nwant\n%v", order, limit, got, want)
			}
		}
	}
	// "-" alone is the pointer "" (the whole document) descending: objects
	// sort by their canonical encoding.
	bodyOf := func(d doc) string {
		if d.missing {
			return `{"other":1}`
		}
		return fmt.Sprintf(`{"n":%g}`, d.n)
	}
	exp := slices.Clone(docs)
	sort.SliceStable(exp, func(i, j int) bool {
		if a, b := bodyOf(exp[i]), bodyOf(exp[j]); a != b {
			return a > b
		}
		return exp[i].id < exp[j].id
	})
	var whole []string
	for _, d := range exp {
		whole = append(whole, d.id)
	}
	if got := listAll(t, s, "lo", "order=-&limit=7", nil); !slices.Equal(got, whole) {
		t.Fatalf("order=-:\n%v\nwant\n%v", got, whole)
	}
	// A pass while documents change: the first page is read, then every
	// document is moved to the other end of the order; no document shows
	// twice, and those not changed show once.
	seen := map[string]int{}
	first := true
	listAll(t, s, "lo", "order=/n&limit=5&where="+url.QueryEscape(`{"/n":{"exists":true}}`), func(p listPage) {
		for _, it := range p.Items {
			seen[it.ID]++
		}
		if first {
			first = false
			for _, it := range p.Items {
				s.do(t, "PATCH", "/docs/lo/"+it.ID, hdr{"Content-Type", ctMerge, "If-Match", "*"}, `{"n":100}`)
			}
			s.do(t, "PATCH", "/docs/lo/k39", hdr{"Content-Type", ctMerge, "If-Match", "*"}, `{"n":-1}`)
		}
	})
	for id, n := range seen {
		if n > 1 {
			t.Errorf("%s listed %d times in one pass", id, n)
		}
	}
	for _, d := range docs {
		if !d.missing && d.id != "k39" && seen[d.id] != 1 {
			t.Errorf("%s, not changed during the pass, listed %d times", d.id, seen[d.id])
		}
	}
	r := s.do(t, "GET", "/docs/lo?order=/n&after=k01", nil, "")
	expect(t, r, http.StatusBadRequest, "invalid-request")
	// The next of an ordered page sent without its order is refused, not
	// read as an id (a listing that would end there, or skip documents).
	var p listPage
	r = s.do(t, "GET", "/docs/lo?order=/n&limit=2", nil, "")
	if err := json.Unmarshal(r.body, &p); err != nil || p.Next == nil {
		t.Fatalf("first page: %s (%v)", r.body, err)
	}
	for _, q := range []string{"", "&include=body", "&order=-/n", "&order=/other"} {
		r = s.do(t, "GET", "/docs/lo?after="+url.QueryEscape(*p.Next)+q, nil, "")
		expect(t, r, http.StatusBadRequest, "invalid-request")
		if !strings.Contains(string(r.body), "order=/n") {
			t.Errorf("after=<token of order=/n>%s: %s, want the token's order named", q, r.body)
		}
	}
	// A token whose value was replaced with a number longer than any a
	// document may hold (each comparison would cost its length) is
	// refused, as where refuses such a number.
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(*p.Next, "o:"))
	if err != nil {
		t.Fatal(err)
	}
	var tok map[string]any
	if err := json.Unmarshal(raw, &tok); err != nil || tok["v"] == nil {
		t.Fatalf("the token %s: %v", raw, err)
	}
	tok["v"] = json.RawMessage(strings.Repeat("9", 2000))
	forged, _ := json.Marshal(tok)
	r = s.do(t, "GET", "/docs/lo?order=/n&after=o:"+base64.RawURLEncoding.EncodeToString(forged), nil, "")
	expect(t, r, http.StatusBadRequest, "invalid-request")
}

// TestQueryParamEmpty: a query parameter of the API given with an empty
// value (where=, limit=, ...) is a bad query parameter, 400, not the
// parameter left out: an empty where is no JSON object, an empty limit no
// number. An empty after is the first page.
func TestQueryParamEmpty(t *testing.T) {
	s := startServer(t)
	s.create(t, "/docs/qe/a", `{"n":1}`)
	for _, path := range []string{
		"/docs/qe?where=", "/docs/qe?order=", "/docs/qe?include=", "/docs/qe?limit=",
		"/docs/qe?limit=5&where=", "/docs/qe/a/history?limit=", "/docs/qe/a/events?limit=",
		"/schemas/qe/violations?limit=", "/docs/qe/a?dryRun=",
	} {
		for _, method := range []string{"GET", "HEAD"} {
			var r response
			switch {
			case !strings.Contains(path, "/events"):
				r = s.do(t, method, path, nil, "")
			case method == "HEAD":
				continue
			default:
				var f *feed
				if f, r = openStream(t, s, method, path, nil, ""); f != nil {
					t.Errorf("%s %s: a stream, want 400", method, path)
					continue
				}
			}
			if r.status != http.StatusBadRequest {
				t.Errorf("%s %s: %d %s, want 400", method, path, r.status, r.body)
			} else if method == "GET" && !strings.Contains(string(r.body), "empty") && !strings.Contains(string(r.body), "must name a member") {
				t.Errorf("%s %s: %s, want the empty parameter named", method, path, r.body)
			}
		}
	}
	// Parameters the API does not name are left alone, empty or not.
	r := s.do(t, "GET", "/docs/qe?_=&limit=1", nil, "")
	expect(t, r, http.StatusOK, "")
	for _, path := range []string{"/docs/qe?after=", "/docs/qe?after=&include=body", "/docs/qe/a/history?after="} {
		r := s.do(t, "GET", path, nil, "")
		expect(t, r, http.StatusOK, "")
		if !strings.Contains(string(r.body), `"seq":1`) {
			t.Errorf("%s: %s, want the first page", path, r.body)
		}
	}
}
