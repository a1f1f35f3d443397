package gctune

import (
	"context"
	"os"
	"os/exec"
	"runtime/metrics"
	"strconv"
	"strings"
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
		{0, 16 << 20, 400},         // no cycle yet: the runtime's 4 MiB minimum heap
		{1 << 10, 16 << 20, 400},   // a tiny live heap: likewise
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

func readUint(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestCollectsFromTheStart: a process that Run tunes before its first
// garbage collection still collects. It runs in a process of its own, so
// that no cycle has run before Run starts (the live heap then reads 0); a GOGC set for "nothing live"
// would put the first heap target at tens of GiB, and memory would grow
// without bound.
func TestCollectsFromTheStart(t *testing.T) {
	if os.Getenv("GCTUNE_CHILD") == "1" {
		collectsChild()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCollectsFromTheStart$") // #nosec G204 -- the test binary itself
	cmd.Env = append(os.Environ(), "GCTUNE_CHILD=1", "GOGC=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	line, ok := "", false
	for l := range strings.Lines(string(out)) {
		if v, found := strings.CutPrefix(strings.TrimSpace(l), "cycles "); found {
			line, ok = v, true
		}
	}
	if !ok {
		t.Fatalf("child said no cycles line:\n%s", out)
	}
	f := strings.Fields(line)
	cycles, _ := strconv.ParseUint(f[0], 10, 64)
	goal, _ := strconv.ParseUint(f[1], 10, 64)
	if cycles == 0 || goal > 64<<20 {
		t.Fatalf("after 256 MiB of garbage: %d cycles, heap target %d MiB; want cycles and a target within the headroom", cycles, goal>>20)
	}
}

var sink []byte

func collectsChild() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Run(ctx, DefaultHeadroom, time.Millisecond)
	for deadline := time.Now().Add(10 * time.Second); gogc() == 100 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	for range 256 {
		sink = make([]byte, 1<<20)
	}
	println("cycles", readUint("/gc/cycles/total:gc-cycles"), readUint("/gc/heap/goal:bytes"))
}
