package handlers

import (
	"bytes"
	"testing"
	"time"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// TestAppendVersion: a version rendered without decoding its values is
// byte for byte the version rendered through the tree.
func TestAppendVersion(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	big := map[string]any{"name": "Ann \u2028 \"quoted\" <tag>", "n": patch.Number("1e400"), "list": []any{patch.Number("-0.0"), nil, true}}
	for _, v := range []store.Version{
		{Seq: 1, ETag: store.ETagOf([]byte(`{}`)), At: at, Kind: store.KindPut, Ops: patch.EncodeCreate(patch.Canonical(big))},
		{Seq: 2, ETag: `"x"`, At: at, Kind: store.KindJSONPatch, RebasedFrom: store.ETagOf([]byte(`{"a":1}`)), Ops: patch.EncodeOps([]patch.Op{
			{Kind: patch.OpPut, Path: patch.Path{patch.Key("a/b"), patch.Key("~")}, Value: big, Old: patch.Number("1"), HadOld: true},
			{Kind: patch.OpIns, Path: patch.Path{patch.Key("list"), patch.Idx(3)}, Value: "x", Append: true},
			{Kind: patch.OpRm, Path: patch.Path{patch.Key("list"), patch.Idx(0)}, Old: big},
			{Kind: patch.OpSet, Path: patch.Path{patch.Key("list"), patch.Idx(1)}, Value: nil, Old: false},
			{Kind: patch.OpDel, Path: patch.Path{patch.Key("gone")}, Old: "x", Moved: true},
		})},
		{Seq: 3, At: at, Kind: store.KindDelete, Ops: patch.EncodeDelete(patch.Canonical(big))},
		{Seq: 4, ETag: `"y"`, At: at, Kind: store.KindMergePatch},
		{Seq: 5, ETag: `"z"`, At: at, Kind: "revert", Actor: "ann", RequestID: "req-1", Reverts: 2, Ops: patch.EncodeOps([]patch.Op{
			{Kind: patch.OpPut, Path: patch.Path{patch.Key("a")}, Value: "v", Old: "w", HadOld: true},
		})},
	} {
		ops, err := patch.DecodeOps(v.Ops)
		if err != nil {
			t.Fatal(err)
		}
		want := patch.Canonical(versionJSON(v, ops))
		got, err := appendVersion([]byte("head"), v)
		if err != nil || !bytes.Equal(got, append([]byte("head"), want...)) {
			t.Fatalf("seq %d: appendVersion = %s, %v\nwant %s", v.Seq, got, err, want)
		}
	}
}
