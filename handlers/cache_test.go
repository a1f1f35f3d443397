package handlers

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/patchd/patchd/store"
)

// TestCachesChangeNothing sends the same random sequence of writes (JSON
// Patch, Merge Patch and PUT, from the current ETag and from older ones, so
// that many are rebased and some conflict) to two servers, one with the
// tree and ops caches and one with both caches empty, and requires every
// answer to be the same: the caches only save work.
func TestCachesChangeNothing(t *testing.T) {
	type srv struct {
		*httptest.Server
		st *store.Bolt
	}
	start := func(cached bool) srv {
		st, err := store.OpenBolt(filepath.Join(t.TempDir(), "patchd.db"), store.BoltOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h := New(st, DefaultConfig())
		if !cached {
			h.trees, h.ops = newTreeCache(0), newOpsCache(0)
		}
		s := srv{httptest.NewServer(h.Echo()), st}
		t.Cleanup(func() { s.Close(); st.Close() })
		return s
	}
	a, b := start(true), start(false)
	send := func(s srv, method, ct, ifMatch, body string) string {
		req, _ := http.NewRequest(method, s.URL+"/docs/c/d", strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		res, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		return fmt.Sprintf("%d %s %s %s", res.StatusCode, res.Header.Get("ETag"), res.Header.Get("Rebased-From"), out)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"a", "b", "c", "list", "o"}
	value := func() string {
		switch rng.IntN(5) {
		case 0:
			return fmt.Sprint(rng.IntN(100))
		case 1:
			return fmt.Sprintf(`{"x":%d,"y":[1,%d]}`, rng.IntN(9), rng.IntN(9))
		case 2:
			return `[1,2,3]`
		case 3:
			return "null"
		}
		return fmt.Sprintf(`"s%d"`, rng.IntN(9))
	}
	first := `{"a":1,"b":{"x":1},"list":[{"id":1},{"id":2},{"id":3}],"o":{"p":{"q":1}}}`
	ra, rb := send(a, "PUT", "application/json", "", first), send(b, "PUT", "application/json", "", first)
	if ra != rb {
		t.Fatalf("PUT: %s vs %s", ra, rb)
	}
	etags := []string{strings.Fields(ra)[1]}
	codes := map[string]int{}
	for i := range 600 {
		ifMatch := etags[len(etags)-1]
		if rng.IntN(2) == 0 {
			ifMatch = etags[max(0, len(etags)-1-rng.IntN(6))]
		}
		var method, ct, body string
		switch rng.IntN(6) {
		case 0, 1:
			method, ct = "PATCH", "application/merge-patch+json"
			body = fmt.Sprintf(`{%q:%s}`, keys[rng.IntN(len(keys))], value())
		case 2:
			method, ct = "PATCH", "application/json-patch+json"
			body = fmt.Sprintf(`[{"op":"add","path":"/list/%d","value":{"id":%d}}]`, rng.IntN(3), 10+i)
		case 3:
			method, ct = "PATCH", "application/json-patch+json"
			body = fmt.Sprintf(`[{"op":"add","path":"/o/p/k%d","value":%s},{"op":"remove","path":"/list/0"}]`, rng.IntN(4), value())
		case 4:
			method, ct = "PATCH", "application/json-patch+json"
			body = fmt.Sprintf(`[{"op":"move","from":"/list/0","path":"/list/-"},{"op":"replace","path":"/a","value":%s}]`, value())
		default:
			method, ct = "PUT", "application/json"
			body = fmt.Sprintf(`{"a":%s,"b":{"x":%d},"list":[{"id":1},{"id":2}],"o":{"p":{}}}`, value(), rng.IntN(3))
		}
		ra, rb := send(a, method, ct, ifMatch, body), send(b, method, ct, ifMatch, body)
		if ra != rb {
			t.Fatalf("step %d: %s %s If-Match %s\n%s\ncached:   %s\nuncached: %s", i, method, body, ifMatch, body, ra, rb)
		}
		codes[strings.Fields(ra)[0]]++
		if strings.HasPrefix(ra, "200") {
			etags = append(etags, strings.Fields(ra)[1])
		}
	}
	if codes["200"] < 100 || codes["412"] < 20 {
		t.Fatalf("outcomes %v: want many commits and some conflicts", codes)
	}
	t.Logf("outcomes %v", codes)
}
