package postgres

import (
	"testing"
	"time"
)

// TestListenBackoffResets: a change feed connection lost again and again
// backs off up to listenMaxWait; one that stayed up for the healthy period
// before it was lost reconnects as fast as the first time.
func TestListenBackoffResets(t *testing.T) {
	b := listenBackoff{healthy: 30 * time.Second}
	first := b.lost(0)
	var last time.Duration
	for range 10 {
		last = b.lost(time.Second)
	}
	if last != listenMaxWait || first >= last {
		t.Fatalf("after 11 losses in a row: first wait %v, last %v; want growth up to %v", first, last, listenMaxWait)
	}
	if got := b.lost(time.Minute); got != first {
		t.Fatalf("a loss after a minute up waits up to %v, want %v as the first time", got, first)
	}
	if got := b.lost(time.Second); got <= first {
		t.Fatalf("a second loss in a row waits up to %v, want more than %v", got, first)
	}
}
