package faults

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// TestModel checks the model on hand-made histories, so that the
// linearizability tests can fail: lost updates, stale reads, lost
// acknowledged writes and wrongly refused rebases must be illegal;
// rebases REBASE.md allows and maybe-applied writes legal.
func TestModel(t *testing.T) {
	v0 := fields{"a", "b", "c", "d", "e", "f", "g", "h"}
	set := func(f fields, i int, v string) fields { f[i] = v; return f }
	e0 := v0.etag()
	v1 := set(v0, 0, "x")    // client 1 writes f0 from v0
	v2 := set(v1, 1, "y")    // client 2 writes f1 from v0, rebased onto v1
	v2bad := set(v0, 1, "y") // ... as if v1 had been lost
	v1z := set(v0, 0, "z")   // client 2 writes f0 from v0 too
	create := input{Op: opCreate, Doc: 0, Base: v0}
	created := output{Status: 201, ETag: e0, Body: v0}
	type op struct {
		client    int
		in        input
		out       output
		call, ret int64
	}
	never := int64(1 << 62)
	cases := []struct {
		name  string
		ops   []op
		legal bool
	}{
		{"Sequential", []op{
			{0, create, created, 0, 1},
			{0, input{Op: opMerge, IfMatch: e0, Set: map[int]string{0: "x"}}, output{Status: 200, ETag: v1.etag(), Body: v1}, 2, 3},
			{1, input{Op: opGet}, output{Status: 200, ETag: v1.etag(), Body: v1}, 4, 5},
		}, true},
		{"RebaseDisjoint", []op{
			{0, create, created, 0, 1},
			{0, input{Op: opMerge, IfMatch: e0, Set: map[int]string{0: "x"}}, output{Status: 200, ETag: v1.etag(), Body: v1}, 2, 3},
			{1, input{Op: opJSON, IfMatch: e0, Set: map[int]string{1: "y"}, Reads: map[int]string{2: "c"}}, output{Status: 200, ETag: v2.etag(), Body: v2, RebasedFrom: e0}, 4, 5},
		}, true},
		{"RebaseWithoutRebasedFrom", []op{
			{0, create, created, 0, 1},
			{0, input{Op: opMerge, IfMatch: e0, Set: map[int]string{0: "x"}}, output{Status: 200, ETag: v1.etag(), Body: v1}, 2, 3},
			{1, input{Op: opMerge, IfMatch: e0, Set: map[int]string{1: "y"}}, output{Status: 200, ETag: v2.etag(), Body: v2}, 4, 5},
		}, false},
		{"LostUpdate", []op{
			{0, create, created, 0, 1},
			{0, input{Op: opMerge, IfMatch: e0, Set: map[int]string{0: "x"}}, output{Status: 200, ETag: v1.etag(), Body: v1}, 2, 3},
			{1, input{Op: opMerge, IfMatch: e0, Set: map[int]string{1: "y"}}, output{Status: 200, ETag: v2bad.etag(), Body: v2bad, RebasedFrom: e0}, 4, 5},
		}, false},
		{"SameFieldBothAccepted", []op{
			{0, create, created, 0, 1},
			{0, input{Op: opMerge, IfMatch: e0, Set: map[int]string{0: "x"}}, output{Status: 200, ETag: v1.etag(), Body: v1}, 2, 5},
			{1, input{Op: opMerge, IfMatch: e0, Set: map[int]string{0: "z"}}, output{Status: 200, ETag: v1z.etag(), Body: v1z}, 3, 4},
		}, false},
		{"SameFieldOneRefused", []op{
			{0, create, created, 0, 1},
			{0, input{Op: opMerge, IfMatch: e0, Set: map[int]string{0: "x"}}, output{Status: 200, ETag: v1.etag(), Body: v1}, 2, 5},
			{1, input{Op: opMerge, IfMatch: e0, Set: map[int]string{0: "z"}}, output{Status: 412, Problem: "rebase-conflict"}, 3, 4},
		}, true},
		{"ReadConflictIgnored", []op{
			{0, create, created, 0, 1},
			{0, input{Op: opMerge, IfMatch: e0, Set: map[int]string{0: "x"}}, output{Status: 200, ETag: v1.etag(), Body: v1}, 2, 3},
			// A test on f0 made from v0 must conflict with the write of f0.
			{1, input{Op: opJSON, IfMatch: e0, Set: map[int]string{1: "y"}, Reads: map[int]string{0: "a"}}, output{Status: 200, ETag: v2.etag(), Body: v2, RebasedFrom: e0}, 4, 5},
		}, false},
		{"RebaseWronglyRefused", []op{
			{0, create, created, 0, 1},
			{0, input{Op: opMerge, IfMatch: e0, Set: map[int]string{0: "x"}}, output{Status: 200, ETag: v1.etag(), Body: v1}, 2, 3},
			{1, input{Op: opMerge, IfMatch: e0, Set: map[int]string{1: "y"}}, output{Status: 412, Problem: "rebase-conflict"}, 4, 5},
		}, false},
		{"StrictRefusesStale", []op{
			{0, create, created, 0, 1},
			{0, input{Op: opMerge, IfMatch: e0, Set: map[int]string{0: "x"}}, output{Status: 200, ETag: v1.etag(), Body: v1}, 2, 3},
			{1, input{Op: opMerge, IfMatch: e0, Strict: true, Set: map[int]string{1: "y"}}, output{Status: 412, Problem: "precondition-failed"}, 4, 5},
		}, true},
		{"StaleRead", []op{
			{0, create, created, 0, 1},
			{0, input{Op: opMerge, IfMatch: e0, Set: map[int]string{0: "x"}}, output{Status: 200, ETag: v1.etag(), Body: v1}, 2, 3},
			{1, input{Op: opGet}, output{Status: 200, ETag: e0, Body: v0}, 4, 5},
		}, false},
		{"AckedWriteLost", []op{
			// After a crash and restart, a read misses an acknowledged write.
			{0, create, created, 0, 1},
			{0, input{Op: opMerge, IfMatch: e0, Set: map[int]string{0: "x"}}, output{Status: 200, ETag: v1.etag(), Body: v1}, 2, 3},
			{1, input{Op: opGet}, output{}, 4, never},
			{2, input{Op: opGet}, output{Status: 200, ETag: e0, Body: v0}, 10, 11},
		}, false},
		{"UnknownApplied", []op{
			{0, create, created, 0, 1},
			{0, input{Op: opMerge, IfMatch: e0, Set: map[int]string{0: "x"}}, output{}, 2, never},
			{1, input{Op: opGet}, output{Status: 200, ETag: e0, Body: v0}, 4, 5},
			{1, input{Op: opGet}, output{Status: 200, ETag: v1.etag(), Body: v1}, 6, 7},
		}, true},
		{"UnknownAppliedThenUndone", []op{
			{0, create, created, 0, 1},
			{0, input{Op: opMerge, IfMatch: e0, Set: map[int]string{0: "x"}}, output{}, 2, never},
			{1, input{Op: opGet}, output{Status: 200, ETag: v1.etag(), Body: v1}, 4, 5},
			{1, input{Op: opGet}, output{Status: 200, ETag: e0, Body: v0}, 6, 7},
		}, false},
		{"DeleteThenStaleEdit", []op{
			{0, create, created, 0, 1},
			{0, input{Op: opDelete, IfMatch: e0}, output{Status: 204}, 2, 3},
			{0, input{Op: opCreate, Base: v1}, output{Status: 201, ETag: v1.etag(), Body: v1}, 4, 5},
			// An edit from before the delete conflicts with the re-creation.
			{1, input{Op: opMerge, IfMatch: e0, Set: map[int]string{1: "y"}}, output{Status: 412, Problem: "rebase-conflict"}, 6, 7},
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h []porcupine.Operation
			for _, o := range tc.ops {
				h = append(h, porcupine.Operation{ClientId: o.client, Input: o.in, Output: o.out, Call: o.call, Return: o.ret})
			}
			res := porcupine.CheckOperationsTimeout(model.ToModel(), h, 10*time.Second)
			if got := res == porcupine.Ok; got != tc.legal {
				t.Fatalf("check = %v, want legal=%v", res, tc.legal)
			}
		})
	}
}
