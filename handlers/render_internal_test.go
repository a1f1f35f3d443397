package handlers

import (
	"bytes"
	"strconv"
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
		// With the members of an event of POST /events, each in its place.
		yes, no := true, false
		for _, tg := range []eventTarget{
			{c: "forms", id: "42"},
			{c: "c\u00e9", id: "a~b", cursor: "YhwWitsAAAAAAAAAAKvNhaE"},
			{c: "o", id: "1", cursor: "Yh", match: &yes},
			{c: "o", id: "1", cursor: "Yh", match: &no},
		} {
			m := versionJSON(v, ops)
			m["c"], m["id"] = tg.c, tg.id
			if tg.cursor != "" {
				m["cursor"] = tg.cursor
			}
			if tg.match != nil {
				m["match"] = *tg.match
			}
			want := patch.Canonical(m)
			got, err := appendVersionOf(nil, v, &tg)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("seq %d, %+v: appendVersionOf = %s, %v\nwant %s", v.Seq, tg, got, err, want)
			}
		}
	}
}

// versionJSON renders a version as API.md's History section shows it,
// through the tree: the reference appendVersion is held to.
func versionJSON(v store.Version, ops []patch.Op) map[string]any {
	m := map[string]any{
		"seq":         patch.Number(strconv.FormatUint(v.Seq, 10)),
		"etag":        nil,
		"at":          v.At.UTC().Format(time.RFC3339Nano),
		"kind":        v.Kind,
		"ops":         patch.RFC6902(ops),
		"rebasedFrom": nil,
		"actor":       nil,
		"requestId":   nil,
	}
	if v.ETag != "" {
		m["etag"] = v.ETag
	}
	if v.RebasedFrom != "" {
		m["rebasedFrom"] = v.RebasedFrom
	}
	if v.Actor != "" {
		m["actor"] = v.Actor
	}
	if v.RequestID != "" {
		m["requestId"] = v.RequestID
	}
	if v.Reverts != 0 {
		m["reverts"] = patch.Number(strconv.FormatUint(v.Reverts, 10))
	}
	return m
}
