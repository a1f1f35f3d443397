package faults

import (
	"context"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// nemesis injects one fault from kinds every 150-500 ms until ctx ends:
// "kill" (SIGKILL, then a restart that the proxy follows), "pause"
// (SIGSTOP for 0.2-2.5 s, then SIGCONT) or "cut" (every connection through
// the proxy reset). It returns how many of each it injected.
func nemesis(ctx context.Context, t *testing.T, srv *Server, px *Proxy, kinds []string, seed uint64) map[string]int {
	t.Helper()
	counts := map[string]int{}
	if len(kinds) == 0 {
		return counts
	}
	rnd := rand.New(rand.NewPCG(seed, 1<<32))
	for {
		select {
		case <-ctx.Done():
			return counts
		case <-time.After(time.Duration(150+rnd.IntN(350)) * time.Millisecond):
		}
		f := kinds[rnd.IntN(len(kinds))]
		switch f {
		case "kill":
			if err := srv.Kill(); err != nil {
				t.Errorf("nemesis kill: %v", err)
				return counts
			}
			addr, err := srv.Start()
			if err != nil {
				t.Errorf("nemesis restart: %v", err)
				return counts
			}
			px.SetTarget(addr)
		case "pause":
			if err := srv.Signal(syscall.SIGSTOP); err != nil {
				t.Errorf("nemesis SIGSTOP: %v", err)
				return counts
			}
			time.Sleep(time.Duration(200+rnd.IntN(2300)) * time.Millisecond)
			if err := srv.Signal(syscall.SIGCONT); err != nil {
				t.Errorf("nemesis SIGCONT: %v", err)
				return counts
			}
		case "cut":
			px.Cut()
		}
		counts[f]++
	}
}

// proxied starts a proxy in front of srv; it closes at cleanup.
func proxied(t *testing.T, srv *Server) *Proxy {
	t.Helper()
	px, err := NewProxy()
	if err != nil {
		t.Fatal(err)
	}
	px.SetTarget(srv.Addr())
	t.Cleanup(func() { px.Close() })
	return px
}
