package gctune

import (
	"context"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		live, headroom uint64
		want           int
	}{
		{10 << 20, 16 << 20, 160}, // target 26 MiB: 16 above the live heap
		{4 << 20, 16 << 20, 400},
		{16 << 20, 16 << 20, 100},
		{200 << 20, 16 << 20, 100}, // a large live heap: the runtime's default
		{0, 16 << 20, 1 << 20},     // nothing live yet: bounded
		{10 << 20, 0, 100},
	} {
		if got := Percent(tc.live, tc.headroom); got != tc.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", tc.live, tc.headroom, got, tc.want)
		}
	}
}

func gogc() int64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// TestRun: Run raises GOGC for a small live heap while it runs, and puts
// back what it found when its context ends.
func TestRun(t *testing.T) {
	before := gogc()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, 1<<40, time.Millisecond) // a headroom far above any live heap of a test
	}()
	deadline := time.Now().Add(10 * time.Second)
	for gogc() <= 100 {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC still %d", gogc())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if got := gogc(); got != before {
		t.Fatalf("GOGC %d after Run ended, want %d back", got, before)
	}
}
