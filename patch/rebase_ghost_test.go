package patch

import (
	"errors"
	"testing"

	"pgregory.net/rapid"
)

// ghostScenario is the scenario the property tests check, for a stale JSON
// Patch p against base with one concurrent version q.
func ghostScenario(t testing.TB, base, q, p string) *rbScenario {
	b := rbMustParse(t, base)
	cur, qops := rbMustApply(t, b, q)
	stored, err := DecodeOps(EncodeOps(qops))
	if err != nil {
		t.Fatal(err)
	}
	spec := rbEditSpec{kind: "json-patch", body: rbMustParse(t, p)}
	fn, _ := spec.edit()
	res, pops, err := fn(Clone(b))
	if err != nil {
		t.Fatal(err)
	}
	return &rbScenario{b: b, states: []any{b, cur}, since: []Committed{{Seq: 1, Ops: stored}}, p: rbEdit{spec: spec, result: res, ops: pops}}
}

// TestRebaseGhostPairsSound: past a client op that lost a concurrent op,
// the later client ops named against it are real pairs (the property
// tests' check of every pair against REBASE.md section 3), also when the
// client replaced an array or the root on the way, or moved an array in.
// A first version of the recording past a lost op named these.
func TestRebaseGhostPairsSound(t *testing.T) {
	for _, c := range []struct{ name, base, q, p string }{
		{"array above replaced by the client, then read through",
			`{"arr":[{"id":1,"tags":["x"]},{"id":2,"tags":["y"]}]}`,
			`[{"op":"replace","path":"/arr/1/tags/0","value":"z"}]`,
			`[{"op":"replace","path":"/arr/1/tags","value":[]},{"op":"replace","path":"/arr","value":[{"id":3},{"id":4}]},{"op":"test","path":"/arr/1","value":{"id":4}}]`},
		{"root replaced by the client, then read through",
			`{"arr":[{"id":1,"tags":["x"]},{"id":2,"tags":["y"]}]}`,
			`[{"op":"replace","path":"/arr/1/tags/0","value":"z"}]`,
			`[{"op":"remove","path":"/arr/1/tags"},{"op":"replace","path":"","value":{"arr":[{"id":3},{"id":4}]}},{"op":"test","path":"/arr/1","value":{"id":4}}]`},
		{"array above moved in by the client, then read through",
			`{"arr":[{"id":1,"tags":["x"]},{"id":2,"tags":["y"]}],"o":[{"id":5},{"id":6}]}`,
			`[{"op":"replace","path":"/arr/1/tags/0","value":"z"}]`,
			`[{"op":"remove","path":"/arr/1/tags"},{"op":"move","from":"/o","path":"/arr"},{"op":"test","path":"/arr/1","value":{"id":6}}]`},
		{"element replaced, array replaced, then element removed",
			`{"x":[[1]]}`,
			`[{"op":"add","path":"/x/0/-","value":2}]`,
			`[{"op":"replace","path":"/x/0","value":null},{"op":"replace","path":"/x","value":[{"id":1}]},{"op":"remove","path":"/x/0"}]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			rapid.Check(t, func(rt *rapid.T) {
				rbCheckScenario(rt, ghostScenario(t, c.base, c.q, c.p))
			})
		})
	}
}

// TestRebaseGhostNamesDoneOps: in a revert's grid, which keeps the client
// ops another version did as done, a done op above a lost concurrent op
// is named as it is without a lost op before it.
func TestRebaseGhostNamesDoneOps(t *testing.T) {
	put := func(v any, client int, sent string, path ...Seg) Op {
		return Op{Kind: OpPut, Path: path, Value: v, Client: client, Sent: sent}
	}
	p := []Op{
		put([]any{Number("7")}, 0, "/a/b", Key("a"), Key("b")),
		put(map[string]any{"b": []any{Number("8")}}, 1, "/a", Key("a")),
	}
	v1 := []Op{put(map[string]any{"b": []any{Number("8")}}, 0, "", Key("a"))}
	v2 := []Op{{Kind: OpSet, Path: Path{Key("a"), Key("b"), Idx(0)}, Value: Number("5")}}
	g := newGrid(p)
	g.keepDone = true
	_, err := rebaseGrid(g, p, []Committed{{Seq: 1, Ops: v1}, {Seq: 2, Ops: v2}}, RebaseLimits{})
	var ce *ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v, want a conflict", err)
	}
	for _, c := range ce.Conflicts {
		if c.ClientOp == 1 && c.ConcurrentVersion == 2 {
			return
		}
	}
	t.Fatalf("the done op 1 (/a) against version 2 (/a/b/0) is not named:\n%s", rbFmtConflicts(ce.Conflicts))
}
