package handlers

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"weak"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// TestVersionEventsSharedOnce: the streams that send one version event get
// the same bytes, rendered once, as appendVersionOf renders them; the kept
// events stay within their bounds, and a version too large to keep is
// rendered for each.
func TestVersionEventsSharedOnce(t *testing.T) {
	ve := newVersionEvents()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	version := func(seq uint64, size int) store.Version {
		body := patch.Canonical(map[string]any{"pad": strings.Repeat("x", size)})
		return store.Version{Seq: seq, ETag: store.ETagOf(body), At: at, Kind: store.KindPut, Ops: patch.EncodeCreate(body)}
	}
	v := version(1, 1000)
	want, err := appendVersionOf(nil, v, &eventTarget{c: "c", id: "d"})
	if err != nil {
		t.Fatal(err)
	}
	const streams = 50
	got := make([][]byte, streams)
	var wg sync.WaitGroup
	for i := range streams {
		wg.Go(func() {
			events, err := ve.all("c", "d", []store.Version{v}, true)
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = events[0].data
		})
	}
	wg.Wait()
	for i, b := range got {
		if !bytes.Equal(b, want) || &b[0] != &got[0][0] {
			t.Fatalf("stream %d got %d bytes, not the shared %d", i, len(b), len(want))
		}
	}
	if ve.renders != 1 {
		t.Fatalf("%d renders for %d streams, want 1", ve.renders, streams)
	}
	// Without c and id (GET .../events): another event.
	if d, _ := ve.data("c", "d", v, false); bytes.Contains(d, []byte(`"c":`)) || ve.renders != 2 {
		t.Fatalf("GET's event %s (%d renders)", d, ve.renders)
	}
	// Bounds: 40 events of 1 MiB keep at most 32 MiB.
	for seq := uint64(2); seq < 42; seq++ {
		if _, err := ve.data("c", "big", version(seq, 1<<20), true); err != nil {
			t.Fatal(err)
		}
		if ve.size > maxVersionEventsBytes || len(ve.events) > maxVersionEvents {
			t.Fatalf("after seq %d: %d events of %d bytes kept", seq, len(ve.events), ve.size)
		}
	}
	// One larger than half the bound is never kept.
	before := ve.renders
	huge := version(50, maxVersionEventsBytes/2+1)
	for range 2 {
		if _, err := ve.data("c", "huge", huge, true); err != nil {
			t.Fatal(err)
		}
	}
	if ve.renders != before || ve.events[versionEventKey{c: "c", id: "huge", seq: 50, etag: huge.ETag, target: true}] != nil {
		t.Fatal("a version larger than half the bound was kept")
	}
	// A version that does not render is an error for each, and not kept.
	bad := store.Version{Seq: 60, At: at, Kind: store.KindJSONPatch, Ops: []byte("not ops")}
	for range 2 {
		if _, err := ve.all("c", "bad", []store.Version{bad}, true); err == nil || !strings.Contains(err.Error(), "c/bad seq 60") {
			t.Fatalf("bad ops: %v", err)
		}
	}
}

// TestVersionEventsAccounting: under streams rendering different events
// at once (and evicting each other's, some still rendering), the bytes
// counted are those of the events kept, so that the bound holds.
func TestVersionEventsAccounting(t *testing.T) {
	ve := newVersionEvents()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	body := patch.Canonical(map[string]any{"pad": strings.Repeat("x", 80)})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for seq := range 3000 {
				v := store.Version{Seq: uint64(seq + 1), ETag: store.ETagOf(body), At: at, Kind: store.KindPut, Ops: patch.EncodeCreate(body)}
				if _, err := ve.data("c", fmt.Sprint("d", g), v, true); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	sum := 0
	for _, e := range ve.events {
		sum += len(e.data)
	}
	if sum != ve.size || len(ve.events) > maxVersionEvents || len(ve.order) > 4*maxVersionEvents+1 {
		t.Fatalf("%d bytes counted, %d kept in %d events (%d in order)", ve.size, sum, len(ve.events), len(ve.order))
	}
}

// TestVersionEventsLetGoOfEvicted: an event dropped from the kept ones is
// garbage once no stream writes it; before, the array under the order of
// the kept events held every one dropped since it was last grown, past
// the bounds (the heap of BenchmarkHistoryLargeVersions).
func TestVersionEventsLetGoOfEvicted(t *testing.T) {
	ve := newVersionEvents()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var refs []weak.Pointer[versionEvent]
	for seq := uint64(1); seq <= 40; seq++ {
		body := patch.Canonical(map[string]any{"pad": strings.Repeat("x", 900<<10)})
		v := store.Version{Seq: seq, ETag: store.ETagOf(body), At: at, Kind: store.KindPut, Ops: patch.EncodeCreate(body)}
		if _, err := ve.data("c", "d", v, false); err != nil {
			t.Fatal(err)
		}
		if e := ve.events[versionEventKey{c: "c", id: "d", seq: seq, etag: v.ETag}]; e != nil {
			refs = append(refs, weak.Make(e))
		}
	}
	runtime.GC()
	alive := 0
	for _, r := range refs {
		if r.Value() != nil {
			alive++
		}
	}
	if alive > len(ve.events) {
		t.Fatalf("%d events still reachable, %d of them kept (%d bytes)", alive, len(ve.events), ve.size)
	}
}
