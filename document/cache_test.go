package document

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// newService serves a fresh bbolt file with the default configuration.
func newService(t *testing.T) (*Service, store.Store) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return New(st, DefaultConfig()), st
}

// kinds names the write kinds of the tests' requests.
var kinds = map[string]Kind{"PUT": Put, "PATCH json": JSONPatch, "PATCH merge": MergePatch}

// outcome sends one write of c/d and describes what came back: the
// error's sentinel and message, or the new ETag, Rebased-From and body.
func outcome(t *testing.T, s *Service, kind, ifMatch, body string) (code, etag, desc string) {
	t.Helper()
	w := Write{Kind: kinds[kind], Collection: "c", ID: "d", Body: []byte(body)}
	if ifMatch != "" {
		var err error
		if w.Pre.IfMatch, err = ParseETagList("If-Match", []string{ifMatch}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Write(context.Background(), w)
	var pe *PreconditionError
	switch {
	case errors.As(err, &pe):
		return "412", "", fmt.Sprintf("412 %s %s %v", pe.Current, pe.Base, err)
	case err != nil:
		return "error", "", fmt.Sprintf("error %v", err)
	}
	return "200", res.Doc.ETag, fmt.Sprintf("200 %s %s %s", res.Doc.ETag, res.RebasedFrom, res.Doc.Body)
}

// TestCachesChangeNothing sends the same random sequence of writes (JSON
// Patch, Merge Patch and PUT, from the current ETag and from older ones, so
// that many are rebased and some conflict) to two services, one with the
// tree and ops caches and one with both caches empty, and requires every
// answer to be the same: the caches only save work.
func TestCachesChangeNothing(t *testing.T) {
	a, _ := newService(t)
	b, _ := newService(t)
	b.trees, b.ops = newTreeCache(0), newOpsCache(0)
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
	_, etag, ra := outcome(t, a, "PUT", "", first)
	if _, _, rb := outcome(t, b, "PUT", "", first); ra != rb {
		t.Fatalf("PUT: %s vs %s", ra, rb)
	}
	etags := []string{etag}
	codes := map[string]int{}
	for i := range 600 {
		ifMatch := etags[len(etags)-1]
		if rng.IntN(2) == 0 {
			ifMatch = etags[max(0, len(etags)-1-rng.IntN(6))]
		}
		var method, body string
		switch rng.IntN(6) {
		case 0, 1:
			method = "PATCH merge"
			body = fmt.Sprintf(`{%q:%s}`, keys[rng.IntN(len(keys))], value())
		case 2:
			method = "PATCH json"
			body = fmt.Sprintf(`[{"op":"add","path":"/list/%d","value":{"id":%d}}]`, rng.IntN(3), 10+i)
		case 3:
			method = "PATCH json"
			body = fmt.Sprintf(`[{"op":"add","path":"/o/p/k%d","value":%s},{"op":"remove","path":"/list/0"}]`, rng.IntN(4), value())
		case 4:
			method = "PATCH json"
			body = fmt.Sprintf(`[{"op":"move","from":"/list/0","path":"/list/-"},{"op":"replace","path":"/a","value":%s}]`, value())
		default:
			method = "PUT"
			body = fmt.Sprintf(`{"a":%s,"b":{"x":%d},"list":[{"id":1},{"id":2}],"o":{"p":{}}}`, value(), rng.IntN(3))
		}
		code, etag, ra := outcome(t, a, method, ifMatch, body)
		if _, _, rb := outcome(t, b, method, ifMatch, body); ra != rb {
			t.Fatalf("step %d: %s %s If-Match %s\ncached:   %s\nuncached: %s", i, method, body, ifMatch, ra, rb)
		}
		codes[code]++
		if code == "200" {
			etags = append(etags, etag)
		}
	}
	if codes["200"] < 100 || codes["412"] < 20 {
		t.Fatalf("outcomes %v: want many commits and some conflicts", codes)
	}
	t.Logf("outcomes %v", codes)
}
