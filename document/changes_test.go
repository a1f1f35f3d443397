package document

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/query"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// newServiceWith serves a fresh bbolt file that keeps history by r.
func newServiceWith(t *testing.T, r store.Retention) *Service {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "patchd.db"), store.Options{Retention: r})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return New(st, DefaultConfig())
}

// write commits w unconditionally (If-Match: * on an existing document).
func write(t *testing.T, s *Service, w Write, exists bool) Result {
	t.Helper()
	if exists {
		w.Pre.IfMatch, _ = ParseETagList("If-Match", []string{"*"})
	}
	res, err := s.Write(context.Background(), w)
	if err != nil {
		t.Fatalf("write %s %s: %v", w.Kind, w.Body, err)
	}
	return res
}

// hasList reports whether a document has an array at /list.
func hasList(body []byte) bool {
	p, _ := patch.ParsePointer("/list")
	v, ok := p.Lookup(body)
	_, isArray := v.([]any)
	return ok && isArray
}

// TestWalkBack: random writes of every kind (creates, JSON Patches, Merge
// Patches, PUTs, deletes and re-creations) to one document; walking back
// from the current state gives, at every seq, exactly the body committed
// then (nil while the document did not exist), from any starting seq.
func TestWalkBack(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	bodies := map[uint64]string{0: ""} // by seq; "" while deleted
	var (
		seq uint64
		cur []byte // nil while deleted
	)
	for range 60 {
		w := Write{Collection: "c", ID: "d"}
		switch r := rng.IntN(10); {
		case cur == nil:
			w.Kind, w.Body = Put, fmt.Appendf(nil, `{"a":%d,"list":[1,2,3]}`, rng.IntN(100))
		case r == 0:
			w.Kind = Delete
		case r < 4:
			w.Kind, w.Body = MergePatch, fmt.Appendf(nil, `{"b":{"c":%d},"a":null}`, rng.IntN(1000))
		case r < 7 && hasList(cur):
			w.Kind, w.Body = JSONPatch, fmt.Appendf(nil, `[{"op":"add","path":"/list/0","value":%d},{"op":"replace","path":"/list/1","value":"%d"}]`, rng.IntN(100), rng.IntN(100))
		default:
			w.Kind, w.Body = Put, fmt.Appendf(nil, `{"a":%d,"list":[%d],"x":"z"}`, rng.IntN(1000), rng.IntN(100))
		}
		res := write(t, s, w, cur != nil)
		switch {
		case res.Doc == nil:
			seq++
			cur, bodies[seq] = nil, ""
		case res.Doc.Seq > seq:
			seq = res.Doc.Seq
			cur, bodies[seq] = res.Doc.Body, string(res.Doc.Body)
		}
	}
	for _, from := range []uint64{1, 2, seq / 2, seq} {
		want := seq
		err := s.WalkBack(ctx, "c", "d", from, func(at uint64, doc any) error {
			if at != want {
				return fmt.Errorf("state at %d, want %d", at, want)
			}
			want--
			got := ""
			if doc != nil {
				got = string(patch.Canonical(doc))
			}
			if got != bodies[at] {
				return fmt.Errorf("at seq %d: %s, want %s", at, got, bodies[at])
			}
			return nil
		})
		if err != nil {
			t.Fatalf("WalkBack from %d: %v", from, err)
		}
		if want+2 != from {
			t.Fatalf("WalkBack from %d stopped before seq %d", from, want+1)
		}
	}
}

// TestWalkBackPruned: versions no longer retained are ErrHistoryMoved.
func TestWalkBackPruned(t *testing.T) {
	one := newServiceWith(t, store.Retention{Versions: 1, Age: -1})
	for i := range 3 {
		write(t, one, Write{Kind: Put, Collection: "c", ID: "p", Body: fmt.Appendf(nil, `{"v":%d}`, i)}, i > 0)
	}
	err := one.WalkBack(context.Background(), "c", "p", 1, func(uint64, any) error { return nil })
	if !errors.Is(err, ErrHistoryMoved) {
		t.Fatalf("WalkBack over pruned versions: %v, want ErrHistoryMoved", err)
	}
	if err := one.WalkBack(context.Background(), "c", "p", 3, func(uint64, any) error { return nil }); err != nil {
		t.Fatalf("WalkBack over the retained version: %v", err)
	}
}

// TestMatchesAgreesWithWalkBack: for each of a run of random writes, the
// quick evaluation of a filter before and after the write, when it
// decides, gives what evaluating the rebuilt states gives.
func TestMatchesAgreesWithWalkBack(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 6))
	wheres := []string{`{"/a":{"lt":50}}`, `{"/list/0":{"exists":true}}`, `{"/list/1":3}`, `{"/b/c":{"ge":500}}`, `{"/x":"z","/a":{"exists":false}}`}
	var cur []byte
	decided := 0
	start, err := s.Changes(ctx, "c", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	cursor := start.Next
	for range 80 {
		w := Write{Collection: "c", ID: "d"}
		switch r := rng.IntN(10); {
		case cur == nil:
			w.Kind, w.Body = Put, fmt.Appendf(nil, `{"a":%d,"list":[1,%d,3]}`, rng.IntN(100), rng.IntN(4))
		case r == 0:
			w.Kind = Delete
		case r < 4:
			w.Kind, w.Body = MergePatch, fmt.Appendf(nil, `{"b":{"c":%d},"x":"z"}`, rng.IntN(1000))
		case r < 7 && hasList(cur):
			w.Kind, w.Body = JSONPatch, fmt.Appendf(nil, `[{"op":"add","path":"/list/0","value":%d}]`, rng.IntN(4))
		default:
			w.Kind, w.Body = MergePatch, fmt.Appendf(nil, `{"a":%d}`, rng.IntN(100))
		}
		res := write(t, s, w, cur != nil)
		if res.Doc == nil {
			cur = nil
		} else {
			cur = res.Doc.Body
		}
		log, err := s.Changes(ctx, "c", cursor, 0)
		if err != nil {
			t.Fatal(err)
		}
		cursor = log.Next
		for _, ch := range log.Changes {
			for _, ws := range wheres {
				where, err := query.ParseWhere(ws)
				if err != nil {
					t.Fatal(err)
				}
				b, a, ok, err := s.Matches(ctx, "c", ch, where)
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					continue
				}
				decided++
				states := map[uint64]bool{}
				if err := s.WalkBack(ctx, "c", ch.ID, ch.Version.Seq, func(seq uint64, doc any) error {
					states[seq] = where.Match(doc)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if b != states[ch.Version.Seq-1] || a != states[ch.Version.Seq] {
					t.Fatalf("seq %d %s: Matches %v %v, states %v %v", ch.Version.Seq, ws, b, a, states[ch.Version.Seq-1], states[ch.Version.Seq])
				}
			}
		}
	}
	if decided < 50 {
		t.Fatalf("Matches decided only %d times", decided)
	}
}
