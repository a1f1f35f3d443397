// Package gctune keeps the garbage collector from running more often than
// a server needs: with a small live heap, the runtime's default (GOGC=100,
// a heap target of twice the live heap) runs a cycle for every few MB
// allocated, which a busy server allocates many times a second. Run keeps
// the heap target at least a fixed headroom above the live heap instead,
// and leaves GOGC at 100 once the live heap is larger than the headroom, so
// memory grows by at most the headroom.
package gctune

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// DefaultHeadroom is the headroom patchd serves with: fewer cycles under
// load, for at most this much more memory.
const DefaultHeadroom = 16 << 20

// minHeap is the runtime's smallest heap target at GOGC=100: before the
// first cycle (when the live heap reads 0) and for a tiny live heap, the
// target is minHeap scaled by GOGC/100.
const minHeap = 4 << 20

// Percent returns the GOGC that puts the heap target headroom bytes above
// a live heap of live bytes: never below 100, and 100 when headroom is 0.
// A live heap below the runtime's 4 MiB minimum (none before the first
// cycle) counts as 4 MiB, which bounds the result by headroom/40 KiB: a
// GOGC computed for a few live bytes would put the first target at tens of
// GiB, and no cycle would ever run.
func Percent(live, headroom uint64) int {
	live = max(live, minHeap)
	p := headroom * 100 / live
	if p < 100 {
		return 100
	}
	const most = 1 << 20 // a headroom of many TiB: no overflow of int
	return int(min(p, most))
}

// liveMetric is the runtime's live heap after the last cycle.
const liveMetric = "/gc/heap/live:bytes"

// running is set while a Run goroutine tunes: GOGC is the process's, so
// one Run tunes it at a time (tests run several servers in one process).
var running atomic.Bool

// Run sets GOGC from Percent for the live heap every interval until ctx
// is done, then puts back the GOGC it found. While another Run tunes, it
// returns at once.
func Run(ctx context.Context, headroom uint64, interval time.Duration) {
	if !running.CompareAndSwap(false, true) {
		return
	}
	defer running.Store(false)
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	sample := []metrics.Sample{{Name: liveMetric}}
	current := 100
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			// Only a change of a tenth or more: each call makes the
			// runtime recompute its pacing.
			if p := Percent(sample[0].Value.Uint64(), headroom); p*10 < current*9 || p*10 > current*11 {
				debug.SetGCPercent(p)
				current = p
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
