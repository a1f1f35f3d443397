package bolt

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
)

// TestVersionEncoding: versions round-trip with and without the fields
// added later, and a record written before they existed still decodes.
func TestVersionEncoding(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	etag := store.ETagOf([]byte(`{}`))
	seq := binary.BigEndian.AppendUint64(nil, 7)
	for _, v := range []store.Version{
		{Seq: 7, ETag: etag, At: at, Kind: store.KindPut, Ops: []byte(`[1]`)},
		{Seq: 7, At: at, Kind: store.KindDelete, Ops: []byte(`[2]`), Actor: "alice"},
		{Seq: 7, ETag: etag, At: at, Kind: store.KindRevert, Ops: []byte(`[3]`), RebasedFrom: etag, Actor: "token:01234567", RequestID: "r-1", Reverts: 1 << 40},
		{Seq: 7, ETag: etag, At: at, Kind: store.KindJSONPatch, RequestID: "r"},
	} {
		enc := encodeVersion(&v)
		got, err := decodeVersion(seq, enc)
		if err != nil {
			t.Fatalf("decode %+v: %v", v, err)
		}
		if got.Seq != v.Seq || got.ETag != v.ETag || !got.At.Equal(v.At) || got.Kind != v.Kind || string(got.Ops) != string(v.Ops) ||
			got.RebasedFrom != v.RebasedFrom || got.Actor != v.Actor || got.RequestID != v.RequestID || got.Reverts != v.Reverts {
			t.Errorf("round trip: %+v, want %+v", got, v)
		}
		if e, err := versionETag(enc); err != nil || string(e) != v.ETag {
			t.Errorf("versionETag: %q %v, want %q", e, err, v.ETag)
		}
		// The committer records the change log entry in place; the ops,
		// which the pending version aliases, do not move.
		ops := enc[len(enc)-len(v.Ops):]
		binary.BigEndian.PutUint64(enc[logSeqAt:logSeqEnd], 1<<33+5)
		if cseq, ok := versionLogSeq(enc); !ok || cseq != 1<<33+5 {
			t.Errorf("versionLogSeq: %d %v, want %d", cseq, ok, uint64(1<<33+5))
		}
		if got2, err := decodeVersion(seq, enc); err != nil || got2.Actor != v.Actor || string(got2.Ops) != string(v.Ops) || string(ops) != string(v.Ops) {
			t.Errorf("after the entry is set: %+v %v", got2, err)
		}
		// As format "2" wrote it: versionExt and no entry.
		v2 := append(append(enc[:8:8], versionExt), enc[logSeqEnd:]...)
		got2, err := decodeVersion(seq, v2)
		if err != nil || got2.ETag != v.ETag || got2.Kind != v.Kind || got2.RequestID != v.RequestID || got2.Reverts != v.Reverts || string(got2.Ops) != string(v.Ops) {
			t.Errorf("format 2 record: %+v %v, want %+v", got2, err, v)
		}
		if _, ok := versionLogSeq(v2); ok {
			t.Errorf("versionLogSeq found an entry in a format 2 record")
		}
	}
	// A record as format "1" wrote it before actors: At, ETag, Kind,
	// RebasedFrom, Ops.
	old := binary.BigEndian.AppendUint64(nil, uint64(at.UnixNano()))
	for _, s := range []string{etag, store.KindMergePatch, ""} {
		old = binary.AppendUvarint(old, uint64(len(s)))
		old = append(old, s...)
	}
	old = append(old, `[{"k":"put"}]`...)
	got, err := decodeVersion(seq, old)
	if err != nil {
		t.Fatal(err)
	}
	if got.ETag != etag || got.Kind != store.KindMergePatch || string(got.Ops) != `[{"k":"put"}]` || got.Actor != "" || got.Reverts != 0 {
		t.Fatalf("old record: %+v", got)
	}
	// Damaged records are errors, not panics.
	if _, ok := versionLogSeq(old); ok {
		t.Errorf("versionLogSeq found an entry in a format 1 record")
	}
	for _, bad := range [][]byte{old[:8], append(old[:8:8], versionExt), append(old[:8:8], versionExt, 0, 0, 0, 0, 0),
		append(old[:8:8], versionLogged, 0, 0, 0), append(old[:8:8], versionLogged, 0, 0, 0, 0, 0, 0, 0, 1)} {
		if _, err := decodeVersion(seq, bad); err == nil {
			t.Errorf("decodeVersion(%q) succeeded", bad)
		}
	}
}
